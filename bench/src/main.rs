//! `damocles-bench`: every performance scenario of damocles-rs against real processes on loopback, each measured
//! side by side with its baseline in the same run, printed as `ratio <name> <value> target <op><value>` lines;
//! `all` also rewrites `docs/performance.md`. Run: `cargo run --release -p bench -- all`.

mod daemon;
mod disk_probe;
mod echo;
mod http;
mod machine;
mod nginx;
mod proc_stats;
mod redis_peer;
mod report;
mod rocksdb_stats;
mod scenarios;
mod toolchain;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use report::Outcome;
use scenarios::{Scale, Scenario};

/// Runs damocles-rs benchmark scenarios and prints one `ratio` line per figure.
#[derive(Parser)]
#[command(name = "damocles-bench", version)]
struct Cli {
    /// `all`, or scenario names (`list` prints them).
    #[arg(required = true)]
    scenarios: Vec<String>,
    /// Smaller sizes (a smoke run of the command itself; its figures are not comparable).
    #[arg(long)]
    quick: bool,
    /// Where to write the performance document; by default `docs/performance.md` of the repository, and only
    /// when `all` ran in full size.
    #[arg(long)]
    doc: Option<PathBuf>,
    /// Never write the document.
    #[arg(long, conflicts_with = "doc")]
    no_doc: bool,
    /// Benchmark this `damocles-manager` binary instead of building one (same profile as this benchmark: the
    /// plugins are built for it).
    #[arg(long, value_name = "BIN")]
    manager: Option<PathBuf>,
}

fn main() -> ExitCode {
    // The baseline of `plugin_kv_process_vs_socket` re-runs this binary as its echo server.
    if echo::serve_if_asked() {
        return ExitCode::SUCCESS;
    }
    let cli = Cli::parse();
    match run(&cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("damocles-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the chosen scenarios; `Ok(false)` when a figure missed its target, an error when a scenario failed.
fn run(cli: &Cli) -> anyhow::Result<bool> {
    if cli.scenarios == ["list"] {
        for scenario in Scenario::ALL {
            println!("{:<20} {}", scenario.name(), scenario.about());
        }
        return Ok(true);
    }
    let all = cli.scenarios == ["all"];
    let chosen = if all { Scenario::ALL.to_vec() } else { Scenario::parse_list(&cli.scenarios)? };
    let scale = if cli.quick { Scale::Quick } else { Scale::Full };
    let tools = toolchain::Toolchain::prepare(cli.manager.clone())?;
    let machine = machine::describe(&tools);
    println!("# {machine}");
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut failed: Vec<&str> = Vec::new();
    for scenario in &chosen {
        eprintln!("== {} ({})", scenario.name(), scenario.about());
        match scenario.run(&tools, scale) {
            Ok(found) => {
                for outcome in &found {
                    println!("{}", outcome.line());
                    eprintln!("   {} | baseline: {}\n   {}", outcome.figure, outcome.baseline, outcome.note);
                }
                outcomes.extend(found);
            }
            Err(e) => {
                let outcome = Outcome::failed(scenario.name(), format!("{e:#}"));
                println!("{}", outcome.line());
                eprintln!("{}: {e:#}", scenario.name());
                outcomes.push(outcome);
                failed.push(scenario.name());
            }
        }
    }
    let doc = match (&cli.doc, cli.no_doc) {
        (_, true) => None,
        (Some(path), false) => Some(path.clone()),
        (None, false) if all && scale == Scale::Full => Some(toolchain::workspace_root().join("docs/performance.md")),
        (None, false) => None,
    };
    if let Some(path) = doc {
        std::fs::write(&path, report::document(&outcomes, &machine, &tools))
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if !failed.is_empty() {
        anyhow::bail!("could not measure: {}", failed.join(", "));
    }
    let missed: Vec<&str> = outcomes.iter().filter(|o| !o.met()).map(|o| o.name.as_str()).collect();
    if !missed.is_empty() {
        eprintln!("missed their targets: {}", missed.join(", "));
    }
    Ok(missed.is_empty())
}

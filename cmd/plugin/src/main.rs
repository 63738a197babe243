//! `plugin`: create, build and check damocles-rs manager plugins (see [`plugin::cli`]).

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match <plugin::cli::Cli as clap::Parser>::try_parse() {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match plugin::cli::run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

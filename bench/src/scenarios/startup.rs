//! `startup_plugins`: exec to the first answered RPC with 16 plugins installed (every load-time check included)
//! against none.

use std::time::Duration;

use super::sync::{home_with_plugins, plugin_name};
use super::{Scale, Scenario};
use crate::daemon::Home;
use crate::report::Outcome;
use crate::toolchain::Toolchain;

const PLUGINS: usize = 16;

/// `startup_plugins` and `startup_plugins_first_start`.
pub fn plugins(tools: &Toolchain, scale: Scale) -> anyhow::Result<Vec<Outcome>> {
    let rounds = scale.pick(7, 2);
    let bare = Home::init(tools)?;
    let full = home_with_plugins(tools, PLUGINS)?;
    // A first start of each (reported in the note, not in the ratio): what is done once per home or per plugin
    // file (the trial loads, remembered afterwards) happens here.
    let mut first = Vec::new();
    for home in [&bare, &full] {
        let daemon = home.start()?;
        first.push(daemon.startup);
        daemon.stop()?;
    }
    let (mut none, mut with) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        for side in if round % 2 == 0 { [0, 1] } else { [1, 0] } {
            let (home, times) = if side == 0 { (&bare, &mut none) } else { (&full, &mut with) };
            let daemon = home.start()?;
            times.push(daemon.startup);
            daemon.stop()?;
        }
    }
    let (none, with) = (median(none), median(with));
    let extra_ms = (with.as_secs_f64() - none.as_secs_f64()) * 1e3;
    let first_extra_ms = (first[1].as_secs_f64() - first[0].as_secs_f64()) * 1e3;
    Ok(vec![
        Outcome {
            name: Scenario::StartupPlugins.name().into(),
            figure: format!("{PLUGINS} plugins: {:.1} ms from exec to the first answer", with.as_secs_f64() * 1e3),
            baseline: format!("no plugins: {:.1} ms", none.as_secs_f64() * 1e3),
            value: extra_ms,
            target: Scenario::StartupPlugins.target(),
            note: format!(
                "value = extra milliseconds; medians of {rounds} starts per side, alternating; the plugins are \
             {}..{} (SyncSectorState, built with `plugin build`), each read, checked, sealed and \
             initialized, its trial load in a child process remembered from the first start (which took {:.1} ms \
             with the plugins, trial loads included, against {:.1} ms without)",
                plugin_name(0),
                plugin_name(PLUGINS - 1),
                first[1].as_secs_f64() * 1e3,
                first[0].as_secs_f64() * 1e3
            ),
        },
        Outcome {
            name: "startup_plugins_first_start".into(),
            figure: format!(
                "first start with {PLUGINS} new plugin files (each trial-loaded in a child process): {:.1} ms",
                first[1].as_secs_f64() * 1e3
            ),
            baseline: format!("first start without plugins: {:.1} ms", first[0].as_secs_f64() * 1e3),
            value: first_extra_ms,
            target: Scenario::StartupPlugins.target(),
            note:
                "value = extra milliseconds of the one start that trial-loads every file (after a plugin file or the \
               manager binary changed); one sample per side"
                    .into(),
        },
    ])
}

/// The median of at least one duration.
pub fn median(mut times: Vec<Duration>) -> Duration {
    times.sort_unstable();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

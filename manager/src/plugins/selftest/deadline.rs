//! A time limit per behaviour: the suite runs on its own thread and reports each behaviour's start and outcome
//! here; a behaviour still running after the limit (a hung plugin call, like a store whose `instance_info` never
//! returns) ends the run with what was checked so far and a failure naming that behaviour. The stuck thread is
//! left behind; the process exits after printing the report.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use manager_plugin::kv::Meta;

use super::{Outcome, Report};

/// The default limit per behaviour (`plugin test --timeout-secs`).
pub const DEFAULT_LIMIT: Duration = Duration::from_secs(60);

enum Event {
    Identified { kind: Option<String>, name: Option<String>, scratch: PathBuf },
    Started(String),
    Finished(Outcome),
    Done(Box<Report>),
}

static PROGRESS: Mutex<Option<Sender<Event>>> = Mutex::new(None);

fn send(event: Event) {
    if let Some(tx) = PROGRESS.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
        let _ = tx.send(event);
    }
}

/// A behaviour starts.
pub(super) fn started(behaviour: &str) {
    send(Event::Started(behaviour.to_string()));
}

/// A behaviour ended with `outcome`.
pub(super) fn finished(outcome: &Outcome) {
    send(Event::Finished(outcome.clone()));
}

/// The plugin's kind and name are known.
pub(super) fn identified(report: &Report) {
    send(Event::Identified { kind: report.kind.clone(), name: report.name.clone(), scratch: report.scratch.clone() });
}

/// [`super::run`] on its own thread, each behaviour limited to `limit`.
pub fn run(file: &Path, meta: &Meta, limit: Duration) -> Report {
    let (tx, rx) = mpsc::channel();
    *PROGRESS.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx.clone());
    let (worker_file, worker_meta) = (file.to_path_buf(), meta.clone());
    let spawned = std::thread::Builder::new().name("plugin-test".into()).spawn(move || {
        let report = super::run(&worker_file, &worker_meta);
        let _ = tx.send(Event::Done(Box::new(report)));
    });
    let scratch = super::scratch_dir();
    let mut partial =
        Report { file: file.to_path_buf(), kind: None, name: None, scratch, passed: false, results: vec![] };
    if let Err(e) = spawned {
        partial.results.push(Outcome::new(super::LOAD, Err(format!("cannot start the test thread: {e}"))));
        return partial;
    }
    let mut running: Option<(String, Instant)> = None;
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(Event::Done(report)) => return *report,
            Ok(Event::Identified { kind, name, scratch }) => {
                (partial.kind, partial.name, partial.scratch) = (kind, name, scratch)
            }
            Ok(Event::Started(behaviour)) => running = Some((behaviour, Instant::now())),
            Ok(Event::Finished(outcome)) => {
                running = None;
                partial.results.push(outcome);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                partial.results.push(Outcome::new("suite", Err("the test thread ended without a report".into())));
                return partial;
            }
        }
        if let Some((behaviour, since)) = &running
            && since.elapsed() >= limit
        {
            let reason = format!(
                "did not return within {} s: a plugin call hangs (the daemon would wait on it forever too); \
                 raise the limit with --timeout-secs if it is only slow",
                limit.as_secs()
            );
            partial.results.push(Outcome::new(behaviour.clone(), Err(reason)));
            // Best effort: the hung call may still hold files in it.
            let _ = std::fs::remove_dir_all(&partial.scratch);
            return partial;
        }
    }
}

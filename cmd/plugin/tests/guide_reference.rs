//! The plugin guide (en + zh) names every variant of the SDK enums a hook author matches on. The exhaustive `match`
//! below stops compiling when a variant is added, and the assertions then ask for it in both guides.

use std::path::Path;

use manager_plugin::sector::WorkerState;

/// Every `WorkerState` variant with the name the guide must show; adding a variant breaks this `match`.
fn worker_state_name(state: WorkerState) -> &'static str {
    match state {
        WorkerState::Online => "WorkerState::Online",
        WorkerState::Offline => "WorkerState::Offline",
    }
}

fn guide(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn both_guides_list_every_worker_state_variant() {
    for file in ["docs/plugin-guide.md", "docs/zh/plugin-guide.md"] {
        let text = guide(file);
        for state in [WorkerState::Online, WorkerState::Offline] {
            let name = worker_state_name(state);
            assert!(text.contains(name), "{file} does not name {name}");
            assert!(text.contains(&format!("\"{}\"", state.collection())), "{file}: {name}'s collection");
        }
    }
}

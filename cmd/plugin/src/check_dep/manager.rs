//! The manager's side of the comparison, captured by `build.rs` when this tool was compiled.

use std::sync::OnceLock;

use super::error::CheckDepError;
use super::graph::CrateGraph;

/// The snapshot `build.rs` wrote: `cargo build -p manager`'s graph from this workspace's `Cargo.lock`.
const MANAGER_SNAPSHOT: &str = include_str!(concat!(env!("OUT_DIR"), "/manager-graph.tsv"));

/// The manager's dependency graph as this tool was built with it: the version, source and compiled features of
/// every crate the `manager` package links, and of the proc-macros those crates use. Needs no network and no
/// manager checkout. `plugin build` can use it to give a generated wrapper crate the manager's pins and features.
pub fn manager_graph() -> Result<&'static CrateGraph, CheckDepError> {
    static GRAPH: OnceLock<Result<CrateGraph, String>> = OnceLock::new();
    let parsed = GRAPH.get_or_init(|| CrateGraph::from_snapshot(MANAGER_SNAPSHOT).map_err(|e| e.to_string()));
    parsed.as_ref().map_err(|reason| CheckDepError::ManagerGraph { reason: reason.clone() })
}

/// The target triple the manager's graph was resolved for; plugins are resolved for the same one.
pub const MANAGER_TARGET: &str = env!("CHECK_DEP_MANAGER_TARGET");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_manager_graph_parses_and_holds_the_sdk() {
        let graph = manager_graph().unwrap();
        assert!(graph.root.starts_with("manager "), "{}", graph.root);
        assert_eq!(graph.target, MANAGER_TARGET);
        assert!(graph.named("manager-plugin").next().is_some());
        assert!(graph.named("manager").next().is_none(), "the root itself is not part of its graph");
        let serde = graph.named("serde").next().unwrap();
        assert!(serde.source.starts_with("registry+"), "{}", serde.source);
        assert!(graph.named("syn").next().is_none(), "crates only proc-macros use are left out");
    }
}

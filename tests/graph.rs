//! The committed Mermaid graph of the weekly job (`docs/data-weekly.mmd`, shown in the
//! README) is the one `spotstep graph data-weekly` prints from the current definition.

use std::path::PathBuf;

use spotstep::asl::{definition, shape, Timing};
use spotstep::manifest::Job;

#[test]
fn the_committed_data_weekly_graph_is_current() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let fresh = spotstep::operator::graph(&root.join("jobs/data-weekly")).unwrap();
    let committed = std::fs::read_to_string(root.join("docs/data-weekly.mmd")).unwrap();
    assert!(
        fresh == committed,
        "docs/data-weekly.mmd is stale: regenerate it with \
         `cargo run --bin spotstep -- graph data-weekly > docs/data-weekly.mmd`"
    );
    // Every state is a node, and every transition an edge.
    let job = Job::load(&root.join("jobs/data-weekly")).unwrap();
    let states = shape(&definition(&job, &Timing::production()));
    for (name, _, next) in &states {
        assert!(committed.contains(&format!("\"{name}\"")), "{name}");
        assert!(next.iter().all(|n| committed.contains(&format!("\"{n}\""))));
    }
    let total: usize = states.iter().map(|(_, _, next)| next.len()).sum();
    let edges = committed
        .lines()
        .filter(|l| !l.starts_with("  start") && (l.contains(" --> ") || l.contains(" -.->")))
        .count();
    assert_eq!(edges, total);
    assert!(committed.contains("-.->|\"InstanceLost, InstanceReclaimed\"|"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("```mermaid\n{committed}```\n")),
        "the README's data-weekly graph differs from docs/data-weekly.mmd: paste it again"
    );
}

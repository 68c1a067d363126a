//! Plans once over `fixtures::disruption_cluster` and prints the plan's size and time: the
//! program to run under `valgrind --tool=callgrind` when profiling disruption planning.
//!
//! `cargo run --release -p karpenter-core --example plan_once -- NODES [PODS_PER_NODE] [FILL]
//! [SEED] [DUMP]`; with DUMP, the whole plan is written there (`{:#?}`) so two builds can be
//! compared byte for byte. `MULTI_NODE_CAP=all` (or a count) sets multi-node consolidation's
//! batch cap (default Karpenter's 100).

use std::time::Instant;

use karpenter_core::disruption::plan;
use karpenter_core::fixtures::disruption_cluster;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.into());
    let nodes: usize = arg(0, "1000").parse().expect("NODES");
    let per_node: usize = arg(1, "20").parse().expect("PODS_PER_NODE");
    let fill: f64 = arg(2, "1").parse().expect("FILL");
    let seed: u64 = arg(3, "7").parse().expect("SEED");
    let mut input = disruption_cluster(nodes, per_node, fill, seed);
    if let Ok(cap) = std::env::var("MULTI_NODE_CAP") {
        input.options.multi_node_cap = match cap.as_str() {
            "all" => None,
            n => Some(n.parse().expect("MULTI_NODE_CAP: a count or `all`")),
        };
    }
    let pods: usize = input.snapshot.nodes.iter().map(|n| n.pods.len()).sum();
    let start = Instant::now();
    let p = plan(&input);
    let took = start.elapsed();
    let disrupted: usize = p.commands.iter().map(|c| c.candidates.len()).sum();
    println!(
        "{nodes} nodes, {pods} pods: {} commands, {disrupted} nodes disrupted, {} kept, saves \
         ${:.2}/h, {took:.3?}",
        p.commands.len(),
        p.kept.len(),
        p.savings_per_hour()
    );
    if let Some(path) = args.get(4) {
        std::fs::write(path, format!("{p:#?}")).expect("write the plan");
    }
}

//! Solves Karpenter's benchmark workload once (for profilers such as callgrind):
//! `cargo run --release -p karpenter-core --example solve_only [pods]`.
use karpenter_core::fixtures::{benchmark_instance_types, diverse_pods, snapshot_with};
use karpenter_core::scheduling::{SolveOptions, solve};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5000);
    let snap = snapshot_with(diverse_pods(n, 42), benchmark_instance_types(400));
    let t = std::time::Instant::now();
    let d = solve(&snap, &SolveOptions::default());
    println!(
        "{n} pods -> {} nodes in {:?}",
        d.new_node_claims.len(),
        t.elapsed()
    );
}

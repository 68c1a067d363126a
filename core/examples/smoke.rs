//! Quick look at a plan for a handful of Karpenter-benchmark "diverse" pods:
//! `cargo run -p karpenter-core --example smoke [pods]`.
use karpenter_core::fixtures::*;
use karpenter_core::scheduling::report::render_text;
use karpenter_core::scheduling::*;
fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    let snap = snapshot_with(diverse_pods(n, 42), benchmark_instance_types(16));
    let d = solve(&snap, &SolveOptions::default());
    print!("{}", render_text(&snap, &d, 6));
}

use karpenter_core::fixtures::*;
use karpenter_core::scheduling::*;
fn main() {
    for n in [1000usize, 5000, 20000, 50000] {
        let snap = snapshot_with(diverse_pods(n, 42), benchmark_instance_types(400));
        let t = std::time::Instant::now();
        let d = solve(&snap, &SolveOptions::default());
        let el = t.elapsed();
        println!(
            "{n} pods: {:?} ({:.0} pods/s) claims={} placed={} unsched={} cost={:.2}",
            el,
            n as f64 / el.as_secs_f64(),
            d.new_node_claims.len(),
            d.placed_pods(),
            d.unschedulable.len(),
            d.new_cost_per_hour()
        );
        if let Some(u) = d.unschedulable.first() {
            println!("  e.g. {} {}", u.pod, u.reason);
        }
    }
}

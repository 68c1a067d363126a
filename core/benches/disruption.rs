//! Disruption planning over a cluster where every node is a candidate (budget 100%,
//! consolidateAfter 0): 1,000 nodes and 5,000 nodes of 8–32 vCPU, up to 20 random plain pods
//! each, all pods kept ("packed") or 40% kept ("fragmented"). Reports the plan's commands and
//! savings once per case.
//!
//! `cargo bench -p karpenter-core --bench disruption` (add `-- --quick` for a fast pass).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use karpenter_core::disruption::plan;
use karpenter_core::fixtures::disruption_cluster;

const CASES: [(usize, f64, &str); 4] = [
    (1_000, 1.0, "packed"),
    (1_000, 0.4, "fragmented"),
    (5_000, 1.0, "packed"),
    (5_000, 0.4, "fragmented"),
];

fn disruption(c: &mut Criterion) {
    let mut group = c.benchmark_group("disruption");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    for (nodes, fill, label) in CASES {
        let input = disruption_cluster(nodes, 20, fill, 7);
        let pods: usize = input.snapshot.nodes.iter().map(|n| n.pods.len()).sum();
        let p = plan(&input);
        println!(
            "disruption/{nodes}-{label}: {nodes} nodes, {pods} pods; {} commands, {} kept, saves ${:.2}/h",
            p.commands.len(),
            p.kept.len(),
            p.savings_per_hour()
        );
        group.bench_with_input(BenchmarkId::new(label, nodes), &input, |b, input| {
            b.iter(|| plan(black_box(input)))
        });
    }
    group.finish();
}

criterion_group!(benches, disruption);
criterion_main!(benches);

//! Disruption planning over clusters where every node is a consolidation candidate (budget
//! 100%, consolidateAfter elapsed, nothing do-not-disrupt): 1,000 nodes / 20,000 pods and
//! 5,000 nodes / 100,000 pods (`fixtures::disruption_cluster` with 20 pods per node), all pods
//! kept ("packed") or 40% of them ("fragmented"). Prints each plan's size once per case (the
//! line `cargo xtask bench` reads).
//!
//! `cargo bench -p karpenter-core --bench disruption` (add `-- --quick` for a fast pass).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, SamplingMode, criterion_group, criterion_main};
use karpenter_core::disruption::plan;
use karpenter_core::fixtures::disruption_cluster;

/// (nodes, pods per node, share of pods kept, label).
const CASES: [(usize, usize, f64, &str); 4] = [
    (1_000, 20, 1.0, "packed"),
    (1_000, 20, 0.4, "fragmented"),
    (5_000, 20, 1.0, "packed"),
    (5_000, 20, 0.4, "fragmented"),
];

fn disruption(c: &mut Criterion) {
    let mut group = c.benchmark_group("disruption");
    group.sample_size(10);
    // A plan takes up to tens of seconds at 5,000 nodes: one plan per iteration.
    group.sampling_mode(SamplingMode::Flat);
    group.measurement_time(Duration::from_secs(20));
    for (nodes, per_node, fill, label) in CASES {
        let input = disruption_cluster(nodes, per_node, fill, 7);
        let pods: usize = input.snapshot.nodes.iter().map(|n| n.pods.len()).sum();
        let p = plan(&input);
        let disrupted: usize = p.commands.iter().map(|c| c.candidates.len()).sum();
        println!(
            "disruption/{label}/{nodes}: {nodes} nodes, {pods} pods; {} commands, {disrupted} \
             nodes disrupted, {} kept, saves ${:.2}/h",
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

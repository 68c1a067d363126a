//! Karpenter's scheduling benchmark shape: "diverse" pods (plain, zone spread, hostname spread,
//! zone affinity, hostname anti-affinity) over 400 synthetic instance types, at 1k–50k pods.
//! Throughput is reported in pods/s; the nodes launched are printed once per size.
//!
//! `cargo bench -p karpenter-core --bench scheduling` (add `-- --quick` for a fast pass).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use karpenter_core::fixtures::{benchmark_instance_types, diverse_pods, snapshot_with};
use karpenter_core::scheduling::{SolveOptions, solve};

const SIZES: [usize; 4] = [1_000, 5_000, 20_000, 50_000];

fn scheduling(c: &mut Criterion) {
    let types = benchmark_instance_types(400);
    let options = SolveOptions::default();
    let mut group = c.benchmark_group("diverse");
    for &n in &SIZES {
        let snap = snapshot_with(diverse_pods(n, 42), types.clone());
        let d = solve(&snap, &options);
        println!(
            "diverse/{n}: {} nodes launched, {} pods placed, {} unschedulable, ${:.2}/h",
            d.new_node_claims.len(),
            d.placed_pods(),
            d.unschedulable.len(),
            d.new_cost_per_hour()
        );
        group.throughput(Throughput::Elements(n as u64));
        match n {
            n if n >= 50_000 => {
                group.sample_size(10);
                group.measurement_time(Duration::from_secs(20));
            }
            n if n >= 20_000 => {
                group.sample_size(10);
                group.measurement_time(Duration::from_secs(10));
            }
            _ => {
                group.sample_size(20);
                group.measurement_time(Duration::from_secs(5));
            }
        }
        group.bench_with_input(BenchmarkId::from_parameter(n), &snap, |b, snap| {
            b.iter(|| solve(black_box(snap), &options))
        });
    }
    group.finish();
}

criterion_group!(benches, scheduling);
criterion_main!(benches);

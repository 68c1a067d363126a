//! Consolidation quality: how close repeated disruption plans bring a fragmented cluster to the
//! cheapest fleet that could hold its pods.
//!
//! The cluster is `fixtures::disruption_cluster(1000, 20, 0.4, seed)`: 1,000 on-demand nodes
//! whose pods were drawn 20 per node, of which 60% were then deleted at random. Each round
//! plans ([`karpenter_core::disruption::plan_traced`], default options: Karpenter's
//! 100-candidate multi-node cap, no spot-to-spot) and applies the plan with
//! `fixtures::apply_plan` (disrupted nodes go, replacements join as their cheapest option, the
//! moved pods land where the plan's last simulation puts them), until a plan has no command. The fleet's price is the sum of each node's own offering
//! (type, zone, capacity type); the LP bound is the one `docs/benchmarks.md` defines (the
//! cheapest real-valued mix of the pool's types, at their cheapest offering and allocatable
//! capacity, that covers the pods' total CPU and memory), computed as in
//! `providers/examples/packing.rs`.
//!
//! `cargo run --release -p karpenter-core --example consolidation_quality [-- --quick]`

use std::time::Instant;

use karpenter_core::disruption::{DisruptionInput, plan_traced};
use karpenter_core::fixtures::{apply_plan, disruption_cluster};
use karpenter_core::instance_type::InstanceType;
use karpenter_core::labels;
use karpenter_core::requirements::Requirements;
use karpenter_core::resources::{CPU, MEMORY, Resources};

const GIB: f64 = (1u64 << 30) as f64;

/// Σ of every node's own offering price ($/h).
fn fleet_price(input: &DisruptionInput) -> f64 {
    let types = &input.snapshot.node_pools[0].instance_types;
    input
        .snapshot
        .nodes
        .iter()
        .map(|n| {
            let label = |k: &str| n.labels.get(k).map(String::as_str);
            let it = types
                .iter()
                .find(|t| Some(t.name.as_str()) == label(labels::INSTANCE_TYPE))
                .expect("a node of a known type");
            it.offerings
                .iter()
                .filter(|o| Some(o.zone.as_str()) == label(labels::ZONE))
                .filter(|o| Some(o.capacity_type.as_str()) == label(labels::CAPACITY_TYPE))
                .map(|o| o.price)
                .fold(f64::INFINITY, f64::min)
        })
        .sum()
}

/// Nodes whose pods request more than they can hold.
fn overcommitted(input: &DisruptionInput) -> usize {
    input
        .snapshot
        .nodes
        .iter()
        .filter(|n| {
            let used = n.pods.iter().fold(Resources::ZERO, |a, p| a + p.requests);
            !used.fits_in(&n.allocatable)
        })
        .count()
}

/// The LP lower bound of `docs/benchmarks.md` (as `lp_bound` in
/// `providers/examples/packing.rs`): min Σ price·n over real n ≥ 0 whose allocatable CPU and
/// memory cover the totals, solved through its two-variable dual.
fn lp_bound(types: &[InstanceType], reqs: &Requirements, cpu: f64, mem: f64) -> f64 {
    let rows: Vec<(f64, f64, f64)> = types
        .iter()
        .filter(|t| t.compatible(reqs))
        .filter_map(|t| {
            let o = t.cheapest_offering(reqs)?;
            let alloc = t.allocatable();
            Some((
                alloc.0[CPU] as f64 / 1000.0,
                alloc.0[MEMORY] as f64 / GIB,
                o.price,
            ))
        })
        .filter(|(a, b, _)| *a > 0.0 && *b > 0.0)
        .collect();
    let feasible = |uc: f64, um: f64| {
        uc >= -1e-12
            && um >= -1e-12
            && rows
                .iter()
                .all(|(a, b, c)| a * uc + b * um <= c * (1.0 + 1e-9))
    };
    let uc_axis = rows
        .iter()
        .map(|(a, _, c)| c / a)
        .fold(f64::INFINITY, f64::min);
    let um_axis = rows
        .iter()
        .map(|(_, b, c)| c / b)
        .fold(f64::INFINITY, f64::min);
    let mut best = (cpu * uc_axis).max(mem * um_axis);
    for i in 0..rows.len() {
        for j in i + 1..rows.len() {
            let (a1, b1, c1) = rows[i];
            let (a2, b2, c2) = rows[j];
            let det = a1 * b2 - a2 * b1;
            if det.abs() < 1e-12 {
                continue;
            }
            let uc = (c1 * b2 - c2 * b1) / det;
            let um = (a1 * c2 - a2 * c1) / det;
            let value = cpu * uc + mem * um;
            if value > best && feasible(uc, um) {
                best = value;
            }
        }
    }
    best
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let seeds: &[u64] = if quick { &[7] } else { &[7, 11, 13] };
    println!(
        "| seed | nodes | pods | $/h before | LP bound | before ÷ LP | rounds | commands | nodes \
         after | $/h after | after ÷ LP | saved | overcommitted nodes | plan time (all rounds) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut fleets = Vec::new();
    for &seed in seeds {
        let mut input = disruption_cluster(1000, 20, 0.4, seed);
        let pods: Vec<_> = input
            .snapshot
            .nodes
            .iter()
            .flat_map(|n| n.pods.iter())
            .collect();
        let total = pods.iter().fold(Resources::ZERO, |a, p| a + p.requests);
        let pool = &input.snapshot.node_pools[0];
        let bound = lp_bound(
            &pool.instance_types,
            &pool.requirements,
            total.0[CPU] as f64 / 1000.0,
            total.0[MEMORY] as f64 / GIB,
        );
        let (nodes_before, pods_before) = (input.snapshot.nodes.len(), pods.len());
        let before = fleet_price(&input);
        let (mut rounds, mut commands, mut over) = (0, 0, 0);
        let start = Instant::now();
        loop {
            let (p, sims) = plan_traced(&input);
            if p.commands.is_empty() {
                break;
            }
            rounds += 1;
            commands += p.commands.len();
            input = apply_plan(&input, &p, &sims, rounds);
            over = over.max(overcommitted(&input));
            assert!(rounds < 100, "plans keep acting after 100 rounds");
        }
        let took = start.elapsed();
        let after = fleet_price(&input);
        let pods_after: usize = input.snapshot.nodes.iter().map(|n| n.pods.len()).sum();
        assert_eq!(pods_after, pods_before, "every pod still bound");
        println!(
            "| {seed} | {nodes_before} | {pods_before} | {before:.2} | {bound:.2} | {:.3} | \
             {rounds} | {commands} | {} | {after:.2} | {:.3} | {:.1}% | {over} | {took:.2?} |",
            before / bound,
            input.snapshot.nodes.len(),
            after / bound,
            100.0 * (1.0 - after / before),
        );
        fleets.push(format!("seed {seed}: {}", fleet(&input)));
    }
    println!("\nFleets after the last round (count × type, capacity type; allocation in use):\n");
    for f in fleets {
        println!("- {f}");
    }
}

/// The nodes by type and capacity type, with the share of their CPU and memory the pods use.
fn fleet(input: &DisruptionInput) -> String {
    let mut by_type: std::collections::BTreeMap<(String, String), usize> = Default::default();
    let (mut used, mut alloc) = (Resources::ZERO, Resources::ZERO);
    for n in &input.snapshot.nodes {
        let label = |k: &str| n.labels.get(k).cloned().unwrap_or_default();
        *by_type
            .entry((label(labels::INSTANCE_TYPE), label(labels::CAPACITY_TYPE)))
            .or_default() += 1;
        used = n.pods.iter().fold(used, |a, p| a + p.requests);
        alloc += n.allocatable;
    }
    let types: Vec<String> = by_type
        .iter()
        .map(|((t, c), n)| format!("{n} × {t} {c}"))
        .collect();
    format!(
        "{}; CPU {:.0}%, memory {:.0}% requested",
        types.join(", "),
        100.0 * used.0[CPU] as f64 / alloc.0[CPU] as f64,
        100.0 * used.0[MEMORY] as f64 / alloc.0[MEMORY] as f64,
    )
}

//! Consolidation quality: how close repeated disruption plans bring a fragmented cluster to the
//! cheapest fleet that could hold its pods.
//!
//! The cluster is `fixtures::disruption_cluster(1000, 20, 0.4, seed)`: 1,000 on-demand nodes
//! whose pods were drawn 20 per node, of which 60% were then deleted at random. Each round
//! plans ([`karpenter_core::disruption::plan_traced`], default options: Karpenter's
//! 100-candidate multi-node cap, no spot-to-spot) and applies the plan with
//! `fixtures::apply_plan` (disrupted nodes go, replacements join as their cheapest option, the
//! moved pods land where the plan's last simulation puts them), until a plan has no command. The fleet's price is the sum of each node's own offering
//! (type, zone, capacity type); the LP bound is the configuration-LP bound
//! (`karpenter_core::scheduling::lower_bound`, docs/benchmarks.md): no set of nodes of the
//! pool's types holds these pods for less.
//!
//! `cargo run --release -p karpenter-core --example consolidation_quality [-- --quick]`

use std::time::Instant;

use karpenter_core::disruption::{DisruptionInput, plan_traced};
use karpenter_core::fixtures::{apply_plan, disruption_cluster};
use karpenter_core::labels;
use karpenter_core::resources::{CPU, MEMORY, Resources};
use karpenter_core::scheduling::{Burstable, lower_bound};

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
        let (bound, _, _) = lower_bound(
            pods.iter().map(|p| p.requests),
            &input.snapshot.node_pools,
            &input.snapshot.daemon_sets,
            Burstable::Allow,
        )
        .expect("the configuration LP solves");
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

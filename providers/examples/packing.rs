//! Packing quality of the scheduler on the real EC2 catalog, against the configuration-LP lower
//! bound.
//!
//! Generic pods (random benchmark-sized CPU and memory requests, seed 42) at 1k, 5k, 20k and
//! 50k pods, on one unconstrained NodePool over (a) every type of the embedded catalog and (b)
//! the `c`, `m`, `r`, `t` categories only, each without and with DaemonSet overhead (three
//! DaemonSets, 250m / 350Mi / 3 pods per node together). For each packing rule it prints the
//! fleet's $/h (cheapest option of each new claim), the fleet ÷ the configuration-LP bound
//! (`karpenter_core::scheduling::fleet_bound`: no fleet for these pods costs less), nodes,
//! pods per node, the median solve time and what `verify` finds wrong (0 expected).
//!
//! `cargo run --release -p karpenter-providers --example packing [-- --quick]` (`--quick`: one
//! run per row and no 50k rows).

use std::time::Instant;

use karpenter_core::fixtures::{generic_pods, snapshot_with};
use karpenter_core::labels;
use karpenter_core::requirements::{Requirement, Requirements};
use karpenter_core::resources::{CPU, MEMORY, PODS, Resources};
use karpenter_core::scheduling::{Packing, SolveOptions, fleet_bound, solve, verify};
use karpenter_core::snapshot::Pod;
use karpenter_providers::aws::catalog::Catalog;
use karpenter_providers::aws::instance_types::{InstanceTypeSettings, catalog_instance_types};

/// Three DaemonSets: 250m CPU, 350Mi memory and 3 pods on every node together.
fn daemon_sets() -> Vec<Pod> {
    [
        ("aws-node", 100, 150),
        ("kube-proxy", 100, 100),
        ("node-exporter", 50, 100),
    ]
    .iter()
    .map(|(name, cpu, mi)| {
        Pod::new(
            "kube-system",
            name,
            Resources::from_pairs(&[(CPU, *cpu), (MEMORY, mi << 20), (PODS, 1)]),
        )
    })
    .collect()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let runs = if quick { 1 } else { 3 };
    let sizes: &[usize] = if quick {
        &[1_000, 5_000, 20_000]
    } else {
        &[1_000, 5_000, 20_000, 50_000]
    };
    let types = catalog_instance_types(Catalog::embedded(), &InstanceTypeSettings::default());
    let mut cmrt = Requirements::new();
    cmrt.add(
        labels::aws::INSTANCE_CATEGORY,
        Requirement::is_in(&["c", "m", "r", "t"]),
    );
    let pools: [(&str, Requirements); 2] = [("all types", Requirements::new()), ("c/m/r/t", cmrt)];
    println!(
        "| pool | DaemonSets | packing | pods | nodes | pods/node | fleet $/h | LP bound $/h | fleet ÷ LP | solve (median of {runs}) | violations |"
    );
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut notes: Vec<String> = Vec::new();
    for (label, extra) in &pools {
        for with_daemons in [false, true] {
            for &n in sizes {
                let mut snap = snapshot_with(generic_pods(n, 42), types.clone());
                snap.node_pools[0].requirements.add_all(extra);
                if with_daemons {
                    snap.daemon_sets = daemon_sets();
                }
                let mut bound = None;
                for packing in [Packing::Karpenter, Packing::CostAware, Packing::Optimal] {
                    let options = SolveOptions {
                        packing,
                        ..SolveOptions::default()
                    };
                    let mut times = Vec::new();
                    let mut decision = None;
                    for _ in 0..runs {
                        let start = Instant::now();
                        let d = solve(&snap, &options);
                        times.push(start.elapsed().as_secs_f64());
                        decision = Some(d);
                    }
                    times.sort_by(f64::total_cmp);
                    let median = times[times.len() / 2];
                    let d = decision.expect("at least one run");
                    // Every rule places every pod here, so one bound serves the three rows.
                    let b = bound
                        .get_or_insert_with(|| fleet_bound(&snap, &d, &options))
                        .clone();
                    let violations = verify(&snap, &d).len();
                    let fleet = d.new_cost_per_hour();
                    let nodes = d.new_node_claims.len();
                    let (lp, ratio) = match &b {
                        Some(b) => (format!("{:.2}", b.bound), format!("{:.3}", fleet / b.bound)),
                        None => ("–".into(), "–".into()),
                    };
                    println!(
                        "| {label} | {} | {packing:?} | {n} | {nodes} | {:.1} | {fleet:.2} | {lp} | {ratio} | {:.1} ms | {violations} |",
                        if with_daemons { "250m/350Mi/3" } else { "none" },
                        d.placed_pods() as f64 / nodes.max(1) as f64,
                        median * 1000.0,
                    );
                    if !d.unschedulable.is_empty() {
                        notes.push(format!(
                            "{label}/{packing:?}/{n}: {} pods unschedulable",
                            d.unschedulable.len()
                        ));
                    }
                    if b.as_ref().is_some_and(|b| !b.converged) {
                        notes.push(format!(
                            "{label}/{n}: the LP search stopped early (bound valid, looser)"
                        ));
                    }
                    let mut chosen: std::collections::BTreeMap<String, usize> = Default::default();
                    for c in &d.new_node_claims {
                        if let Some(o) = c.instance_types.first() {
                            *chosen
                                .entry(format!("{} {} ${:.4}/h", o.name, o.capacity_type, o.price))
                                .or_default() += 1;
                        }
                    }
                    let mut chosen: Vec<_> = chosen.into_iter().collect();
                    chosen.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                    let top: Vec<String> = chosen
                        .iter()
                        .take(3)
                        .map(|(k, v)| format!("{v}× {k}"))
                        .collect();
                    notes.push(format!(
                        "{label}/{}/{packing:?}/{n}: cheapest options launched: {}",
                        if with_daemons { "ds" } else { "no ds" },
                        top.join(", ")
                    ));
                }
            }
        }
    }
    println!();
    for n in notes {
        println!("- {n}");
    }
}

//! Packing quality of the scheduler on the real EC2 catalog.
//!
//! For generic pods (random benchmark-sized CPU and memory requests) at 1k, 5k and 20k pods,
//! on one unconstrained NodePool over (a) every type of the embedded catalog and (b) the
//! `c`, `m`, `r`, `t` categories only, prints the fleet's $/h (cheapest option of each new
//! claim), a lower bound and their ratio, and the solve throughput:
//!
//! lower bound = max over resources of (total requests ÷ best price per unit over the offered
//! types), with cpu priced per vCPU-hour and memory per GiB-hour of raw capacity, each type at
//! its cheapest available offering (no DaemonSets here, so no daemon overhead).
//!
//! `cargo run --release -p karpenter-providers --example packing [-- --quick]`

use std::time::Instant;

use karpenter_core::fixtures::{generic_pods, snapshot_with};
use karpenter_core::instance_type::InstanceType;
use karpenter_core::labels;
use karpenter_core::requirements::{Requirement, Requirements};
use karpenter_core::resources::{CPU, MEMORY, Resources};
use karpenter_core::scheduling::{Packing, SolveOptions, solve, verify};
use karpenter_providers::aws::catalog::Catalog;
use karpenter_providers::aws::instance_types::{InstanceTypeSettings, catalog_instance_types};

const GIB: f64 = (1u64 << 30) as f64;

/// Best $/vCPU-h and $/GiB-h over the types that satisfy `reqs`, with the types giving them.
fn best_unit_prices(types: &[InstanceType], reqs: &Requirements) -> (f64, f64, String, String) {
    let mut cpu = f64::INFINITY;
    let mut mem = f64::INFINITY;
    let (mut cpu_by, mut mem_by) = (String::new(), String::new());
    for it in types.iter().filter(|t| t.compatible(reqs)) {
        let Some(o) = it.cheapest_offering(reqs) else {
            continue;
        };
        let vcpu = it.capacity.0[CPU] as f64 / 1000.0;
        let gib = it.capacity.0[MEMORY] as f64 / GIB;
        if vcpu > 0.0 && o.price / vcpu < cpu {
            cpu = o.price / vcpu;
            cpu_by = format!("{} {}", it.name, o.capacity_type);
        }
        if gib > 0.0 && o.price / gib < mem {
            mem = o.price / gib;
            mem_by = format!("{} {}", it.name, o.capacity_type);
        }
    }
    (cpu, mem, cpu_by, mem_by)
}

/// A tighter lower bound than §6's, still valid for any fleet: the LP relaxation
/// `min Σ price_t·n_t  s.t.  Σ alloc_t,r·n_t ≥ demand_r (r = cpu, memory), n_t ≥ 0` over the
/// offered types at their cheapest offering, with allocatable (what pods can actually use)
/// instead of raw capacity. It still lets a pod's CPU and memory sit on different nodes, so
/// real fleets stay above it. Solved through its dual (two variables: a price per vCPU and per
/// GiB that no type undercuts), whose optimum is at the intersection of two type constraints
/// or on an axis.
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
    let mut best = 0.0f64;
    let uc_axis = rows
        .iter()
        .map(|(a, _, c)| c / a)
        .fold(f64::INFINITY, f64::min);
    let um_axis = rows
        .iter()
        .map(|(_, b, c)| c / b)
        .fold(f64::INFINITY, f64::min);
    best = best.max(cpu * uc_axis).max(mem * um_axis);
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
    let runs = if quick { 1 } else { 3 };
    let types = catalog_instance_types(Catalog::embedded(), &InstanceTypeSettings::default());
    let mut cmrt = Requirements::new();
    cmrt.add(
        labels::aws::INSTANCE_CATEGORY,
        Requirement::is_in(&["c", "m", "r", "t"]),
    );
    let pools: [(&str, Requirements); 2] = [("all types", Requirements::new()), ("c/m/r/t", cmrt)];
    println!(
        "| pool | packing | pods | types | nodes | fleet $/h | §6 bound $/h | ratio | LP bound $/h | ratio to LP | LP ÷ §6 | solve (median of {runs}) | pods/s | violations |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut notes: Vec<String> = Vec::new();
    for (label, extra) in &pools {
        let offered = types.iter().filter(|t| t.compatible(extra)).count();
        let (cpu_price, mem_price, cpu_by, mem_by) = best_unit_prices(&types, extra);
        notes.push(format!(
            "{label}: best ${cpu_price:.5}/vCPU-h ({cpu_by}), best ${mem_price:.5}/GiB-h ({mem_by})"
        ));
        for (n, packing) in [1_000usize, 5_000, 20_000]
            .into_iter()
            .flat_map(|n| [(n, Packing::Karpenter), (n, Packing::CostAware)])
        {
            let pods = generic_pods(n, 42);
            let total = pods.iter().fold(Resources::ZERO, |a, p| a + p.requests);
            let mut snap = snapshot_with(pods, types.clone());
            snap.node_pools[0].requirements.add_all(extra);
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
            let violations = verify(&snap, &d).len();
            let fleet = d.new_cost_per_hour();
            let (cpu_demand, mem_demand) =
                (total.0[CPU] as f64 / 1000.0, total.0[MEMORY] as f64 / GIB);
            let bound = (cpu_demand * cpu_price).max(mem_demand * mem_price);
            let lp = lp_bound(&types, extra, cpu_demand, mem_demand);
            println!(
                "| {label} | {packing:?} | {n} | {offered} | {} | {fleet:.2} | {bound:.2} | {:.3} | {lp:.2} | {:.3} | {:.3} | {:.1} ms | {:.0} | {violations} |",
                d.new_node_claims.len(),
                fleet / bound,
                fleet / lp,
                lp / bound,
                median * 1000.0,
                n as f64 / median,
            );
            if !d.unschedulable.is_empty() {
                notes.push(format!(
                    "{label}/{packing:?}/{n}: {} pods unschedulable",
                    d.unschedulable.len()
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
                "{label}/{packing:?}/{n}: cheapest options launched: {}",
                top.join(", ")
            ));
        }
    }
    println!();
    for n in notes {
        println!("- {n}");
    }
}

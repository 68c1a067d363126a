//! A readable, stable text rendering of a [`Decision`]: what `karpenter simulate` prints and
//! what the scenario snapshot tests record.

use std::fmt::Write as _;

use super::decision::Decision;
use crate::instance_type::InstanceType;
use crate::resources::{CPU, MEMORY, PODS, Resources};
use crate::snapshot::Snapshot;

/// Per new node: the cheapest option's instance type and how full the pods make it.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeSummary {
    /// Instance type expected to launch (the cheapest option).
    pub instance_type: String,
    /// Its allocatable resources.
    pub allocatable: Resources,
    /// Pods plus DaemonSet requests.
    pub used: Resources,
}

impl NodeSummary {
    /// Used share of one slot, 0–100.
    pub fn utilization(&self, slot: usize) -> f64 {
        let a = self.allocatable.0[slot];
        if a <= 0 {
            0.0
        } else {
            100.0 * self.used.0[slot] as f64 / a as f64
        }
    }
}

fn find_type<'a>(snapshot: &'a Snapshot, pool: &str, name: &str) -> Option<&'a InstanceType> {
    snapshot
        .node_pools
        .iter()
        .filter(|p| p.name == pool)
        .flat_map(|p| p.instance_types.iter())
        .find(|it| it.name == name)
}

/// Summaries of the decision's new nodes, in order.
pub fn node_summaries(snapshot: &Snapshot, decision: &Decision) -> Vec<NodeSummary> {
    decision
        .new_node_claims
        .iter()
        .map(|c| {
            let cheapest = c.instance_types.first();
            let allocatable = cheapest
                .and_then(|o| find_type(snapshot, &c.node_pool, &o.name))
                .map_or(Resources::ZERO, |it| it.allocatable());
            NodeSummary {
                instance_type: cheapest.map_or_else(|| "-".to_string(), |o| o.name.clone()),
                allocatable,
                used: c.pod_requests + c.daemon_overhead,
            }
        })
        .collect()
}

fn amount(slot: usize, v: i64) -> String {
    Resources::format_amount(slot, v)
}

/// Renders the decision as text. `max_pods_listed` caps the pod names shown per node.
pub fn render_text(snapshot: &Snapshot, decision: &Decision, max_pods_listed: usize) -> String {
    let mut out = String::new();
    let summaries = node_summaries(snapshot, decision);
    if decision.new_node_claims.is_empty() {
        out.push_str("New nodes: none\n");
    } else {
        let _ = writeln!(out, "New nodes: {}", decision.new_node_claims.len());
    }
    for (i, (claim, summary)) in decision.new_node_claims.iter().zip(&summaries).enumerate() {
        let first = claim.instance_types.first();
        let _ = writeln!(
            out,
            "  #{:<3} nodepool={} type={} zone={} capacity={} price=${:.4}/h options={}",
            i + 1,
            claim.node_pool,
            summary.instance_type,
            first.map_or("-", |o| o.zone.as_str()),
            first.map_or("-", |o| o.capacity_type.as_str()),
            claim.cheapest_price(),
            claim.instance_types.len(),
        );
        let _ = writeln!(
            out,
            "       pods={} cpu={}/{} ({:.0}%) memory={}/{} ({:.0}%) pod-slots={}/{}",
            claim.pods.len(),
            amount(CPU, summary.used.0[CPU]),
            amount(CPU, summary.allocatable.0[CPU]),
            summary.utilization(CPU),
            amount(MEMORY, summary.used.0[MEMORY]),
            amount(MEMORY, summary.allocatable.0[MEMORY]),
            summary.utilization(MEMORY),
            summary.used.0[PODS],
            summary.allocatable.0[PODS],
        );
        let shown: Vec<String> = claim
            .instance_types
            .iter()
            .take(5)
            .map(|o| o.name.clone())
            .collect();
        let more = claim.instance_types.len().saturating_sub(shown.len());
        let _ = writeln!(
            out,
            "       cheapest options: {}{}",
            shown.join(", "),
            if more > 0 {
                format!(" (+{more} more)")
            } else {
                String::new()
            }
        );
        if !claim.requirements.is_empty() {
            let _ = writeln!(out, "       requirements: {}", claim.requirements);
        }
        if !claim.daemon_overhead.is_zero() {
            let _ = writeln!(out, "       daemonset overhead: {}", claim.daemon_overhead);
        }
        let _ = writeln!(out, "       {}", list_pods(&claim.pods, max_pods_listed));
    }
    if !decision.existing.is_empty() {
        out.push_str("Existing nodes receiving pods:\n");
        for plan in &decision.existing {
            let _ = writeln!(
                out,
                "  {}: {}",
                plan.node,
                list_pods(&plan.pods, max_pods_listed)
            );
        }
    }
    if !decision.unschedulable.is_empty() {
        let _ = writeln!(out, "Unschedulable pods: {}", decision.unschedulable.len());
        for u in &decision.unschedulable {
            let _ = writeln!(out, "  {}: {}", u.pod, u.reason);
        }
    }
    if !decision.relaxed.is_empty() {
        out.push_str("Preferences relaxed:\n");
        for (pod, notes) in &decision.relaxed {
            let _ = writeln!(out, "  {pod}: {}", notes.join("; "));
        }
    }
    let used = summaries.iter().fold(Resources::ZERO, |a, s| a + s.used);
    let alloc = summaries
        .iter()
        .fold(Resources::ZERO, |a, s| a + s.allocatable);
    let pct = |slot: usize| {
        if alloc.0[slot] > 0 {
            100.0 * used.0[slot] as f64 / alloc.0[slot] as f64
        } else {
            0.0
        }
    };
    let _ = writeln!(
        out,
        "Total: {} new nodes, ${:.4}/h; {} pods placed, {} unschedulable; new-node utilization cpu {:.0}%, memory {:.0}%",
        decision.new_node_claims.len(),
        decision.new_cost_per_hour(),
        decision.placed_pods(),
        decision.unschedulable.len(),
        pct(CPU),
        pct(MEMORY),
    );
    out
}

fn list_pods(pods: &[crate::snapshot::PodKey], max: usize) -> String {
    let names: Vec<String> = pods.iter().take(max).map(|p| p.to_string()).collect();
    let more = pods.len().saturating_sub(names.len());
    let suffix = if more > 0 {
        format!(" (+{more} more)")
    } else {
        String::new()
    };
    format!("pods: {}{suffix}", names.join(", "))
}

//! The writes of a provisioning pass: create the NodeClaims the decision calls for and tell
//! each pod (events) where it should land or why it cannot. The writes go through
//! [`PassWrites`], so the pass can be tested without a cluster.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use karpenter_core::api::NodeClaim;
use karpenter_core::scheduling::{Decision, NewNodeClaim};
use karpenter_core::snapshot::PodKey;
use kube_client::runtime::events::EventType;

use super::PassOutcome;
use crate::model::objects::PoolView;
use crate::model::snapshot::node_claim_for;
use crate::runtime::metrics::Metrics;

/// Reason of the Warning event on pods that cannot be placed, or whose NodeClaim was refused:
/// the scheduler's word, so `kubectl describe pod` reads the same either way.
pub const FAILED_SCHEDULING: &str = "FailedScheduling";

/// The writes a provisioning pass makes.
#[async_trait]
pub trait PassWrites: Send + Sync {
    /// Creates `claim`; returns the name the API server gave it, or why it refused.
    async fn create_claim(&self, claim: &NodeClaim) -> Result<String, String>;

    /// Publishes an Event about `pod` (failures are the implementation's to log).
    async fn pod_event(&self, pod: &Pod, type_: EventType, reason: &str, note: String);
}

/// Creates the NodeClaims `decision` calls for, each on its own: a refused create (a 422, a
/// webhook or quota refusal) is logged with its pool, told to the pods it was for and recorded
/// in `outcome.failed`, and the next claim is still created — one bad claim must not cost the
/// pods of every other claim of the pass their capacity. Then tells unplaceable pods why.
pub async fn apply_decision(
    writes: &dyn PassWrites,
    decision: &Decision,
    pools: &[PoolView],
    pods_by_key: &BTreeMap<PodKey, &Arc<Pod>>,
    metrics: &Metrics,
    outcome: &mut PassOutcome,
) {
    for new in &decision.new_node_claims {
        let created = match pools.iter().find(|p| p.name() == new.node_pool) {
            Some(pool) => writes.create_claim(&node_claim_for(new, pool)).await,
            // The decision was made from these pools, so this is a bug, not cluster data.
            None => Err(format!("NodePool/{} is not in the pass", new.node_pool)),
        };
        match created {
            Ok(name) => {
                metrics.nodeclaim_created(
                    &new.node_pool,
                    crate::runtime::metrics::reason::PROVISIONED,
                );
                tracing::info!(
                    nodeclaim = %name,
                    nodepool = %new.node_pool,
                    pods = new.pods.len(),
                    instance_types = %summarize_types(new),
                    "created nodeclaim"
                );
                let note = format!("Pod should schedule on: nodeclaim/{name}");
                tell_pods(
                    writes,
                    pods_by_key,
                    &new.pods,
                    EventType::Normal,
                    "Nominated",
                    &note,
                )
                .await;
                outcome.created.push(name);
            }
            Err(error) => {
                tracing::warn!(
                    nodepool = %new.node_pool,
                    pods = new.pods.len(),
                    instance_types = %summarize_types(new),
                    error = %error,
                    "creating nodeclaim failed"
                );
                let note = format!(
                    "Failed to create a nodeclaim for NodePool/{}: {error}",
                    new.node_pool
                );
                tell_pods(
                    writes,
                    pods_by_key,
                    &new.pods,
                    EventType::Warning,
                    FAILED_SCHEDULING,
                    &note,
                )
                .await;
                outcome.failed.push((new.node_pool.clone(), error));
            }
        }
    }
    for u in &decision.unschedulable {
        let note = format!("Failed to schedule pod, {}", u.reason);
        let pods = std::slice::from_ref(&u.pod);
        tell_pods(
            writes,
            pods_by_key,
            pods,
            EventType::Warning,
            FAILED_SCHEDULING,
            &note,
        )
        .await;
    }
    outcome.unschedulable = decision.unschedulable.len();
}

async fn tell_pods(
    writes: &dyn PassWrites,
    pods_by_key: &BTreeMap<PodKey, &Arc<Pod>>,
    keys: &[PodKey],
    type_: EventType,
    reason: &str,
    note: &str,
) {
    for key in keys {
        if let Some(pod) = pods_by_key.get(key) {
            writes.pod_event(pod, type_, reason, note.to_owned()).await;
        }
    }
}

/// `m5.large, c5.large and 3 other(s)` for logs.
fn summarize_types(claim: &NewNodeClaim) -> String {
    let names: Vec<&str> = claim
        .instance_types
        .iter()
        .take(3)
        .map(|o| o.name.as_str())
        .collect();
    let rest = claim.instance_types.len().saturating_sub(names.len());
    if rest > 0 {
        format!("{} and {rest} other(s)", names.join(", "))
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;

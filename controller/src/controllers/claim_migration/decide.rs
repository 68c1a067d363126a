//! The pure decision of the claim migration: which NodeClaims still have Karpenter 0.3x's
//! v1beta1 body and what each becomes in v1.

use karpenter_core::api::NodeClaim;
use karpenter_core::api::v1beta1::{KnativeCondition, created_at};
use karpenter_core::labels;
use kube_client::api::{DynamicObject, TypeMeta};
use serde_json::Value;

use crate::model::objects::{PoolView, is_v1beta1_node_claim, v1_node_claim};

/// One claim to rewrite.
#[derive(Clone, Debug, PartialEq)]
pub struct Migration {
    /// The claim's name.
    pub name: String,
    /// Written first, to `/status` through v1beta1: the claim with its knative conditions
    /// completed (`reason`, `message`, `lastTransitionTime`), when any lacks one. The API server
    /// validates the whole object on every write, against the schema of the version written
    /// through, and 0.36's conditions fail v1's while its spec fails v1's too: so the status is
    /// made valid for both through v1beta1 first, then the spec is rewritten through v1.
    pub status_first: Option<DynamicObject>,
    /// Its v1 form (metadata kept, `resourceVersion` included, so the write is conditional on
    /// the claim not having changed), or why it cannot be converted.
    pub outcome: Result<NodeClaim, String>,
}

/// The claims among `claims` (bodies as the API server serves them) whose body is v1beta1, each
/// converted with its NodePool from `pools` (by the `karpenter.sh/nodepool` label) supplying
/// `expireAfter` and `terminationGracePeriod`, as 0.36 applied them. In name order.
pub fn migrations(claims: &[DynamicObject], pools: &[PoolView]) -> Vec<Migration> {
    let mut out: Vec<Migration> = claims
        .iter()
        .filter(|c| is_v1beta1_node_claim(&c.data))
        .map(|c| {
            let pool = c
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(labels::NODE_POOL))
                .and_then(|name| pools.iter().find(|p| p.name() == name));
            let outcome = v1_node_claim(c, pool.map(|p| &p.node_pool)).map(|mut claim| {
                // The server keeps its own field ownership; sending a copy back is noise.
                claim.metadata.managed_fields = None;
                claim
            });
            Migration {
                name: c.metadata.name.clone().unwrap_or_default(),
                status_first: completed_status(c),
                outcome,
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// `claim` as a v1beta1 object with every knative condition completed, or `None` when all are
/// complete already (or do not read as conditions: the conversion reports that).
fn completed_status(claim: &DynamicObject) -> Option<DynamicObject> {
    let conditions = claim.data["status"]["conditions"].as_array()?;
    let read: Vec<KnativeCondition> = conditions
        .iter()
        .map(|c| serde_json::from_value(c.clone()))
        .collect::<Result<_, _>>()
        .ok()?;
    if read.iter().all(KnativeCondition::is_complete) {
        return None;
    }
    let created = created_at(&claim.metadata);
    let completed: Vec<Value> = read
        .iter()
        .map(|c| serde_json::to_value(c.completed(&created)).unwrap_or(Value::Null))
        .collect();
    let mut out = claim.clone();
    out.types = Some(TypeMeta {
        api_version: format!("{}/v1beta1", karpenter_core::api::GROUP),
        kind: "NodeClaim".into(),
    });
    out.metadata.managed_fields = None;
    out.data["status"]["conditions"] = Value::Array(completed);
    Some(out)
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;

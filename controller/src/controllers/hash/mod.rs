//! The hash controller (Karpenter's `nodepool.hash` and `nodeclass.hash`): keeps the static
//! drift hashes current, as annotations, on every NodePool
//! ([`karpenter_core::api::nodepool_hash`]) and EC2NodeClass
//! ([`karpenter_providers::aws::nodeclass::ec2nodeclass_hash`]), and stamps NodeClaims whose
//! hash-version annotation is not the current one (new claims without the EC2NodeClass hash,
//! claims made before an algorithm change or by Karpenter) with the current hashes, unless they
//! are already `Drifted` (spec §3.2: an upgrade never causes mass drift).
//!
//! New claims get the NodePool hash from the provisioner ([`crate::model::snapshot::node_claim_for`]);
//! the EC2NodeClass is not at hand there, so this controller stamps its hash shortly after
//! creation. The claim disruption controller compares the hashes.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use karpenter_core::api::{NodeClaim, nodepool_hash};
use karpenter_providers::aws::nodeclass::{self, ec2nodeclass_hash};
use kube_client::Client;
use kube_client::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::Value;

use crate::model::ClusterState;
use crate::model::objects;

mod decide;

pub use decide::{
    DRIFTED, HashKeys, NODE_CLASS_KEYS, NODE_POOL_KEYS, Stamp, claim_patch, object_patch,
};

/// How often everything is looked at without a change (a safety net for missed changes).
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(300);

/// The current hash of every NodePool that reads, by name.
pub fn pool_stamps(state: &ClusterState) -> BTreeMap<String, Stamp> {
    let (pools, _) = state.pools();
    pools
        .iter()
        .map(|p| {
            let stamp = Stamp::node_pool(nodepool_hash(&p.node_pool));
            (p.name().to_owned(), stamp)
        })
        .collect()
}

/// The current hash of every EC2NodeClass that reads, by name. A v1beta1 pool's kubelet
/// settings are not merged in: one class may serve several pools, and its hash is one value.
pub fn class_stamps(state: &ClusterState) -> BTreeMap<String, Stamp> {
    state
        .node_classes
        .state()
        .iter()
        .filter_map(|obj| {
            let class = objects::read_node_class(obj, None).ok()?;
            let name = obj.metadata.name.clone()?;
            Some((name, Stamp::node_class(ec2nodeclass_hash(&class))))
        })
        .collect()
}

/// The stamp of the EC2NodeClass a claim references, if it references one we have.
pub fn class_stamp_for<'a>(
    claim: &NodeClaim,
    classes: &'a BTreeMap<String, Stamp>,
) -> Option<&'a Stamp> {
    let r = &claim.spec.node_class_ref;
    (r.group == nodeclass::GROUP)
        .then(|| classes.get(&r.name))
        .flatten()
}

/// Runs until the process ends: everything at start, on each NodePool, EC2NodeClass or
/// NodeClaim change and every [`RESYNC_INTERVAL`].
pub async fn run(client: Client, state: ClusterState) {
    let claim_api: Api<NodeClaim> = Api::all(client.clone());
    let mut pools = std::pin::pin!(state.node_pools.changes().fuse());
    let mut classes = std::pin::pin!(state.node_classes.changes().fuse());
    let mut claims = std::pin::pin!(state.node_claims.changes().fuse());
    loop {
        reconcile_all(&state, &client, &claim_api).await;
        tokio::select! {
            Some(_) = pools.next() => {}
            Some(_) = classes.next() => {}
            Some(_) = claims.next() => {}
            _ = tokio::time::sleep(RESYNC_INTERVAL) => {}
        }
        // One pass covers a burst of changes (including our own writes).
        while let Some(Some(_)) = pools.next().now_or_never() {}
        while let Some(Some(_)) = classes.next().now_or_never() {}
        while let Some(Some(_)) = claims.next().now_or_never() {}
    }
}

async fn reconcile_all(state: &ClusterState, client: &Client, claim_api: &Api<NodeClaim>) {
    let pool_stamps = pool_stamps(state);
    let class_stamps = class_stamps(state);
    for obj in state.node_pools.state() {
        let name = obj.metadata.name.clone().unwrap_or_default();
        if let Some(stamp) = pool_stamps.get(&name) {
            let patch = object_patch(obj.metadata.annotations.as_ref(), NODE_POOL_KEYS, stamp);
            let api: Api<DynamicObject> =
                Api::all_with(client.clone(), &objects::node_pool_resource_for(&obj));
            write(&api, "NodePool", &name, patch).await;
        }
    }
    for obj in state.node_classes.state() {
        let name = obj.metadata.name.clone().unwrap_or_default();
        if let Some(stamp) = class_stamps.get(&name) {
            let patch = object_patch(obj.metadata.annotations.as_ref(), NODE_CLASS_KEYS, stamp);
            let api: Api<DynamicObject> =
                Api::all_with(client.clone(), &objects::node_class_resource_for(&obj));
            write(&api, "EC2NodeClass", &name, patch).await;
        }
    }
    for claim in state.node_claims.state() {
        if claim.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let labels = claim.metadata.labels.as_ref();
        let pool = labels
            .and_then(|l| l.get(karpenter_core::labels::NODE_POOL))
            .and_then(|p| pool_stamps.get(p));
        let class = class_stamp_for(&claim, &class_stamps);
        let name = claim.metadata.name.clone().unwrap_or_default();
        write(
            claim_api,
            "NodeClaim",
            &name,
            claim_patch(&claim, pool, class),
        )
        .await;
    }
}

/// Applies a metadata merge patch; a failure is logged and retried on the next pass.
async fn write<K>(api: &Api<K>, kind: &str, name: &str, patch: Option<Value>)
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let Some(patch) = patch else { return };
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => tracing::debug!(kind, name, "hash annotations written"),
        Err(e) => tracing::warn!(kind, name, error = %e, "writing hash annotations"),
    }
}

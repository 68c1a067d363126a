//! `lastPodEventTime` (Karpenter's `nodeclaim.podevents`): a non-DaemonSet pod on a managed
//! node got bound, went terminal or started terminating → the node's NodeClaim gets
//! `status.lastPodEventTime = now`, unless it was stamped less than
//! [`POD_EVENT_DEDUPE`](super::POD_EVENT_DEDUPE) ago. The stamp restarts the claim's
//! `consolidateAfter` window (spec §3.1).
//!
//! The shared model broadcasts each pod's new state only, so this keeps the last seen
//! [`PodPhase`] per pod UID to tell a transition from a repeat.

use std::collections::HashMap;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use karpenter_core::api::NodeClaim;
use kube_client::Client;
use kube_client::api::{Api, Patch, PatchParams};

use super::decide::{PodPhase, is_daemon_set_pod, should_stamp_pod_event};
use crate::model::ClusterState;

/// Forget pods no longer in the store after this many changes (keeps the phase map bounded).
const PRUNE_EVERY: usize = 10_000;

/// Runs until the process ends.
pub async fn run(client: Client, state: ClusterState) {
    let api: Api<NodeClaim> = Api::all(client);
    let mut changes = std::pin::pin!(state.pods.changes());
    // Seeded from the synced store, so a pod's first change after start-up (a pending pod
    // getting bound) is seen as the transition it is.
    let mut seen: HashMap<String, PodPhase> = state
        .pods
        .state()
        .iter()
        .filter_map(|p| Some((p.metadata.uid.clone()?, PodPhase::of(p))))
        .collect();
    let mut count = 0usize;
    while let Some(pod) = changes.next().await {
        count += 1;
        if count.is_multiple_of(PRUNE_EVERY) {
            let live: std::collections::HashSet<String> = state
                .pods
                .state()
                .iter()
                .filter_map(|p| p.metadata.uid.clone())
                .collect();
            seen.retain(|uid, _| live.contains(uid));
        }
        let Some(uid) = pod.metadata.uid.clone() else {
            continue;
        };
        let phase = PodPhase::of(&pod);
        let before = seen.insert(uid, phase);
        if !phase.is_event_after(before) || is_daemon_set_pod(&pod) {
            continue;
        }
        stamp(&api, &state, &pod).await;
    }
}

async fn stamp(api: &Api<NodeClaim>, state: &ClusterState, pod: &Pod) {
    let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
        return;
    };
    let Some(claim) = state
        .node_claims
        .find(|c| c.status.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
    else {
        return; // Not a managed node.
    };
    let now = Timestamp::now();
    if !should_stamp_pod_event(&claim, now) {
        return;
    }
    let name = claim.metadata.name.clone().unwrap_or_default();
    // One field, no list: a merge patch cannot clobber another writer's status.
    let patch = serde_json::json!({"status": {"lastPodEventTime": Time(now)}});
    if let Err(e) = api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        tracing::warn!(nodeclaim = %name, error = %e, "stamping lastPodEventTime");
    }
}

//! Garbage collection, as Karpenter's: instances tagged for this cluster that no NodeClaim
//! accounts for are terminated (e.g. launched by a controller that crashed before it wrote the
//! claim's status), with their Nodes; launched NodeClaims whose instance is gone are deleted.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use karpenter_core::api::NodeClaim;
use karpenter_providers::{CloudProvider, LaunchedInstance};
use kube_client::Client;
use kube_client::api::{Api, DeleteParams};

use crate::state::ClusterState;

/// What one collection decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Collection {
    /// Provider ids of instances to terminate.
    pub leaked_instances: Vec<String>,
    /// Names of launched NodeClaims whose instance no longer exists.
    pub orphaned_claims: Vec<String>,
}

/// The pure decision: an instance is leaked when no NodeClaim records its provider id, it is
/// older than `grace`, and it is not tagged for a claim that has recorded no instance yet (a
/// launch whose status write is in flight); a second instance of a claim that recorded
/// another one is leaked; a claim is orphaned when it has a provider id the provider no longer
/// lists, it was launched at least `grace` ago (a launch newer than the listing is not in it)
/// and it is not being deleted already.
pub fn collect(
    instances: &[LaunchedInstance],
    claims: &[Arc<NodeClaim>],
    now_unix: i64,
    grace: Duration,
) -> Collection {
    let claimed_ids: BTreeSet<&str> = claims
        .iter()
        .filter_map(|c| c.status.as_ref()?.provider_id.as_deref())
        .collect();
    // Claims that have not recorded an instance yet: an instance tagged with one of them may be
    // that claim's launch whose status write is still in flight.
    let unrecorded: BTreeSet<&str> = claims
        .iter()
        .filter(|c| {
            c.status
                .as_ref()
                .and_then(|s| s.provider_id.as_ref())
                .is_none()
        })
        .filter_map(|c| c.metadata.name.as_deref())
        .collect();
    let leaked_instances = instances
        .iter()
        .filter(|i| !claimed_ids.contains(i.provider_id.as_str()))
        .filter(|i| {
            i.node_claim
                .as_deref()
                .is_none_or(|n| !unrecorded.contains(n))
        })
        .filter(|i| now_unix - i.launch_time_unix >= grace.as_secs() as i64)
        .map(|i| i.provider_id.clone())
        .collect();
    let live: BTreeSet<&str> = instances.iter().map(|i| i.provider_id.as_str()).collect();
    let orphaned_claims = claims
        .iter()
        .filter(|c| c.metadata.deletion_timestamp.is_none())
        .filter(|c| {
            c.status
                .as_ref()
                .and_then(|s| s.condition(crate::lifecycle::conditions::LAUNCHED))
                .is_some_and(|l| {
                    now_unix - l.last_transition_time.0.as_second() >= grace.as_secs() as i64
                })
        })
        .filter(|c| {
            c.status
                .as_ref()
                .and_then(|s| s.provider_id.as_deref())
                .is_some_and(|id| !live.contains(id))
        })
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    Collection {
        leaked_instances,
        orphaned_claims,
    }
}

/// Runs a collection every `interval`.
pub async fn run(
    client: Client,
    state: ClusterState,
    provider: Arc<dyn CloudProvider>,
    interval: Duration,
    grace: Duration,
) {
    let mut tick = tokio::time::interval(interval);
    loop {
        tick.tick().await;
        if let Err(e) = collect_once(&client, &state, provider.as_ref(), grace).await {
            tracing::warn!(error = %e, "garbage collection failed");
        }
    }
}

/// One collection, with its I/O.
pub async fn collect_once(
    client: &Client,
    state: &ClusterState,
    provider: &dyn CloudProvider,
    grace: Duration,
) -> Result<Collection, String> {
    // Claims are read after the instances, so a claim created in between is seen.
    let instances = provider.list().await.map_err(|e| e.to_string())?;
    let claims = state.node_claims.state();
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let decision = collect(&instances, &claims, now, grace);
    let nodes: Api<Node> = Api::all(client.clone());
    for id in &decision.leaked_instances {
        tracing::info!(provider_id = %id, "garbage-collecting instance without a nodeclaim");
        match provider.delete(id).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => tracing::warn!(provider_id = %id, error = %e, "terminate failed"),
        }
        let node = state
            .nodes
            .find(|n| n.spec.as_ref().and_then(|s| s.provider_id.as_deref()) == Some(id.as_str()));
        if let Some(name) = node.and_then(|n| n.metadata.name.clone()) {
            let _ = nodes.delete(&name, &DeleteParams::default()).await;
        }
    }
    let api: Api<NodeClaim> = Api::all(client.clone());
    for name in &decision.orphaned_claims {
        tracing::info!(nodeclaim = %name, "deleting nodeclaim whose instance is gone");
        let _ = api.delete(name, &DeleteParams::default()).await;
    }
    Ok(decision)
}

#[cfg(test)]
#[path = "gc_tests.rs"]
mod tests;

//! Garbage collection, as Karpenter's: instances tagged for this cluster that no NodeClaim
//! accounts for are terminated (e.g. launched by a controller that crashed before it wrote the
//! claim's status); launched NodeClaims whose instance is gone are deleted (termination then
//! removes their Nodes without draining a dead kubelet).

use std::sync::Arc;
use std::time::Duration;

use karpenter_providers::CloudProvider;
use kube_client::Client;

use crate::controllers::claim_delete::delete_node_claim;
use crate::model::ClusterState;

mod decide;

pub use decide::{Collection, collect, collect_with_pools, hold_back_for_unread_claims};

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
    let pools: std::collections::BTreeSet<String> = state
        .node_pools
        .state()
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    let mut decision = collect_with_pools(&instances, &claims, Some(&pools), now, grace);
    let unread = state.node_claims.undecoded();
    let held = hold_back_for_unread_claims(&mut decision, &unread);
    if !held.is_empty() {
        tracing::warn!(
            nodeclaims = ?unread,
            instances = ?held,
            "NodeClaims that do not read: not terminating instances without a claim until they do"
        );
    }
    // Only the instance: its Node (if it ever registered, it is not ours: no claim took it
    // over) goes with the instance, through the cloud's node lifecycle. Nodes leave the
    // cluster through termination alone.
    for id in &decision.leaked_instances {
        tracing::info!(provider_id = %id, "garbage-collecting instance without a nodeclaim");
        match provider.delete(id).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => tracing::warn!(provider_id = %id, error = %e, "terminate failed"),
        }
    }
    for name in &decision.orphaned_claims {
        tracing::info!(nodeclaim = %name, "deleting nodeclaim whose instance or nodepool is gone");
        if let Err(e) = delete_node_claim(client, name, None).await {
            tracing::warn!(nodeclaim = %name, error = %e, "deleting nodeclaim failed; next pass retries");
        }
    }
    Ok(decision)
}

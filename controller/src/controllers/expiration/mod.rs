//! The expiration controller (Karpenter's `nodeclaim.expiration`, spec §14): a NodeClaim whose
//! `spec.expireAfter` has passed since its creation is deleted — forcefully: no disruption
//! budget, PDB or do-not-disrupt check, no replacement first (the provisioner places the
//! evicted pods; drain still honours PDBs until the claim's `terminationGracePeriod`).
//! `karpenter_nodeclaims_disrupted_total{reason="expired"}` is counted once per claim.
//! Karpenter publishes no event for expiry, so neither do we; the deletion is logged.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use karpenter_core::api::NodeClaim;
use karpenter_core::labels;
use kube_client::Client;
use kube_client::runtime::controller::{Action, Controller};

use crate::controllers::backoff::Backoff;
use crate::controllers::claim_delete::{ClaimDeleted, delete_this_node_claim};
use crate::model::ClusterState;
use crate::runtime::metrics::Metrics;

mod decide;

pub use decide::{Counted, Expiration, decide, expires_at};

/// Shared by every reconcile.
pub struct ExpirationContext {
    /// API client.
    pub client: Client,
    /// Reflector stores.
    pub state: ClusterState,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Claims already counted as expired.
    pub counted: Counted,
    /// Per-claim retry delays after failed deletes.
    pub backoff: Backoff,
}

/// Errors of one reconcile; retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum ExpirationError {
    /// An API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube_client::Error),
}

/// The `controller` label of this controller's reconcile metrics (Karpenter's name).
const CONTROLLER: &str = "nodeclaim.expiration";

/// Runs until the process ends.
pub async fn run(ctx: Arc<ExpirationContext>) {
    let store = ctx.state.node_claims.store.clone();
    Controller::for_shared_stream(ctx.state.node_claims.changes(), store)
        .reconcile_all_on(crate::controllers::resync_ticks())
        .run(
            |claim, ctx| async move {
                let metrics = ctx.metrics.clone();
                metrics
                    .reconcile
                    .measure(CONTROLLER, reconcile(claim, ctx))
                    .await
            },
            error_policy,
            ctx,
        )
        .for_each(|_| async {})
        .await;
}

fn error_policy(
    claim: Arc<NodeClaim>,
    err: &ExpirationError,
    ctx: Arc<ExpirationContext>,
) -> Action {
    let name = claim.metadata.name.as_deref().unwrap_or("");
    ctx.metrics.reconcile.error(CONTROLLER);
    let wait = ctx.backoff.failed(name);
    tracing::warn!(nodeclaim = %name, error = %err, retry_in_ms = wait.as_millis() as u64, "expiring nodeclaim failed");
    Action::requeue(wait)
}

/// One reconcile of one NodeClaim.
pub async fn reconcile(
    claim: Arc<NodeClaim>,
    ctx: Arc<ExpirationContext>,
) -> Result<Action, ExpirationError> {
    let name = claim.metadata.name.clone().unwrap_or_default();
    let uid = claim.metadata.uid.clone().unwrap_or_default();
    let now = Timestamp::now();
    match decide(&claim, now) {
        Expiration::Never => {
            if claim.metadata.deletion_timestamp.is_some() {
                ctx.counted.forget(&uid);
            }
            Ok(Action::await_change())
        }
        Expiration::At(at) => {
            let wait = Duration::try_from(now.duration_until(at)).unwrap_or(Duration::ZERO);
            Ok(Action::requeue(wait + Duration::from_millis(100)))
        }
        Expiration::Delete => {
            // The UID precondition: never delete a newer claim that reused the name.
            if delete_this_node_claim(&ctx.client, &claim).await? == ClaimDeleted::AlreadyGone {
                return Ok(Action::await_change());
            }
            ctx.backoff.succeeded(&name);
            if ctx.counted.first(&uid) {
                let l = claim.metadata.labels.clone().unwrap_or_default();
                let pool = l.get(labels::NODE_POOL).map_or("", String::as_str);
                let capacity = l.get(labels::CAPACITY_TYPE).map_or("", String::as_str);
                ctx.metrics.nodeclaim_disrupted(pool, "expired", capacity);
                tracing::info!(nodeclaim = %name, nodepool = %pool, expire_after = %claim.spec.expire_after, "deleted expired nodeclaim");
            }
            Ok(Action::await_change())
        }
    }
}

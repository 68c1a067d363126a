//! The claim disruption controller (Karpenter's `nodeclaim.disruption` and
//! `nodeclaim.podevents`): the one writer of the NodeClaim `Consolidatable` and `Drifted`
//! conditions and of `status.lastPodEventTime`, which disruption reads to pick candidates.
//!
//! - `Consolidatable` (spec §3.1): `True` once the pool's `consolidateAfter` has passed since
//!   the last pod event (or initialization); requeued at the end of the window.
//! - `Drifted` (spec §3.2), for launched claims with the `Drift` feature gate on: NodePool hash,
//!   requirements, instance type, EC2NodeClass hash ([`decide::static_drift`]), then the cloud
//!   provider's AMI / subnet / security-group checks. Re-evaluated on changes and every
//!   `drift_recheck_interval`.
//! - `lastPodEventTime` ([`pod_events`]): stamped when a non-DaemonSet pod on the node is bound,
//!   goes terminal or starts terminating, at most once per 10 s.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use karpenter_core::api::{NodeClaim, nodepool_hash};
use karpenter_core::labels;
use karpenter_core::resources::Resources;
use karpenter_providers::aws::nodeclass::ec2nodeclass_hash;
use karpenter_providers::{CloudProvider, LaunchedInstance, NodePoolRef};
use kube_client::Client;
use kube_client::api::{Api, Patch, PatchParams};
use kube_client::runtime::controller::{Action, Controller};

use crate::controllers::backoff::Backoff;
use crate::controllers::conditions::{guarded_status_patch, is_conflict};
use crate::controllers::hash::Stamp;
use crate::model::ClusterState;
use crate::model::objects::{PoolView, read_node_class};
use crate::runtime::metrics::Metrics;

mod decide;
pub mod pod_events;

pub use decide::{
    CONSOLIDATABLE, Consolidatable, DRIFTED, DriftVerdict, INSTANCE_TYPE_NOT_FOUND,
    NODE_CLASS_DRIFT, NODE_POOL_DRIFTED, POD_EVENT_DEDUPE, PodPhase, REQUIREMENTS_DRIFTED,
    StaticDriftInputs, consolidatable, drift_applies, hash_drifted, instance_type_gone,
    is_daemon_set_pod, should_stamp_pod_event, static_drift, status_update,
};

/// Shared by every reconcile.
pub struct ClaimDisruptionContext {
    /// API client.
    pub client: Client,
    /// Reflector stores.
    pub state: ClusterState,
    /// The cloud provider (instance types, dynamic drift).
    pub provider: Arc<dyn CloudProvider>,
    /// `settings.feature_gates.drift`: off, `Drifted` is never set (and removed).
    pub drift_gate: bool,
    /// `settings.drift_recheck_interval`: how often drift is evaluated without a change.
    pub drift_recheck: Duration,
    /// The reconcile metrics.
    pub metrics: Arc<Metrics>,
    /// Per-claim retry delays after failed reconciles.
    pub backoff: Backoff,
}

/// Errors of one reconcile; retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum ClaimDisruptionError {
    /// An API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube_client::Error),
}

/// The `controller` label of this controller's reconcile metrics (Karpenter's name).
const CONTROLLER: &str = "nodeclaim.disruption";

/// Runs until the process ends: each claim on its changes, every claim on a NodePool or
/// EC2NodeClass change and at every resync tick.
pub async fn run(ctx: Arc<ClaimDisruptionContext>) {
    let store = ctx.state.node_claims.store.clone();
    let others = futures::stream::select(
        ctx.state.node_pools.changes().map(|_| ()),
        ctx.state.node_classes.changes().map(|_| ()),
    );
    let trigger = futures::stream::select(crate::controllers::resync_ticks(), others);
    Controller::for_shared_stream(ctx.state.node_claims.changes(), store)
        .reconcile_all_on(trigger)
        .with_config(kube_client::runtime::controller::Config::default().concurrency(16))
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
    err: &ClaimDisruptionError,
    ctx: Arc<ClaimDisruptionContext>,
) -> Action {
    let name = claim.metadata.name.as_deref().unwrap_or("");
    let ClaimDisruptionError::Kube(e) = err;
    if is_conflict(e) {
        // A guarded patch lost a race; the watch brings the newer claim.
        return Action::requeue(Duration::from_secs(1));
    }
    ctx.metrics.reconcile.error(CONTROLLER);
    let wait = ctx.backoff.failed(name);
    tracing::warn!(nodeclaim = %name, error = %err, retry_in_ms = wait.as_millis() as u64, "claim disruption status failed");
    Action::requeue(wait)
}

/// One reconcile of one NodeClaim.
pub async fn reconcile(
    claim: Arc<NodeClaim>,
    ctx: Arc<ClaimDisruptionContext>,
) -> Result<Action, ClaimDisruptionError> {
    let name = claim.metadata.name.clone().unwrap_or_default();
    if claim.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let Some(pool) = claim
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(labels::NODE_POOL))
        .and_then(|p| ctx.state.pool(p))
    else {
        // Not managed, or its pool is gone (or unreadable): nothing to decide.
        return Ok(Action::await_change());
    };
    let now = Timestamp::now();
    // An unparsable consolidateAfter is refused by validation; treat it as `Never`.
    let after = pool
        .node_pool
        .spec
        .disruption
        .consolidate_after
        .parse()
        .ok()
        .flatten();
    let cons = consolidatable(&claim, after, now);
    let (drift, keep_drift) = if drift_applies(&claim, ctx.drift_gate) {
        evaluate_drift(&claim, &pool, &ctx).await
    } else {
        (None, false)
    };
    if let Some(status) = status_update(&claim, cons.set, drift.as_ref(), keep_drift) {
        let api: Api<NodeClaim> = Api::all(ctx.client.clone());
        let patch = guarded_status_patch(
            &claim.metadata,
            &serde_json::json!({"conditions": status.conditions}),
        );
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        if let Some(d) = &drift
            && !claim.status.as_ref().is_some_and(|s| s.is_true(DRIFTED))
        {
            tracing::info!(nodeclaim = %name, reason = %d.reason, message = %d.message, "nodeclaim drifted");
        }
    }
    ctx.backoff.succeeded(&name);
    let mut wait = ctx.drift_recheck;
    if let Some(at) = cons.requeue_at {
        let until = Duration::try_from(now.duration_until(at)).unwrap_or(Duration::ZERO);
        wait = wait.min(until + Duration::from_millis(100));
    }
    Ok(Action::requeue(wait))
}

/// The drift verdict and whether to keep the current condition (the cloud could not answer).
async fn evaluate_drift(
    claim: &NodeClaim,
    pool: &PoolView,
    ctx: &ClaimDisruptionContext,
) -> (Option<DriftVerdict>, bool) {
    let pool_stamp = Stamp::node_pool(nodepool_hash(&pool.node_pool));
    let class_name = &claim.spec.node_class_ref.name;
    let class = ctx
        .state
        .node_classes
        .find(|o| o.metadata.name.as_deref() == Some(class_name.as_str()))
        .and_then(|o| read_node_class(&o, None).ok());
    let class_stamp = class
        .as_ref()
        .map(|c| Stamp::node_class(ec2nodeclass_hash(c)));
    let key = NodePoolRef {
        name: pool.name().to_owned(),
        node_class: pool.node_class().to_owned(),
    };
    let types = match ctx.provider.instance_types(&key).await {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::debug!(nodepool = %key.name, error = %e, "instance-type drift not checked");
            None
        }
    };
    let inputs = StaticDriftInputs {
        claim,
        pool: &pool.node_pool,
        pool_stamp: &pool_stamp,
        instance_types: types.as_deref(),
        class_stamp: class_stamp.as_ref(),
    };
    if let Some(d) = static_drift(&inputs) {
        return (Some(d), false);
    }
    let Some(provider_id) = claim.status.as_ref().and_then(|s| s.provider_id.clone()) else {
        return (None, false);
    };
    let instance = LaunchedInstance {
        provider_id,
        instance_type: String::new(),
        zone: String::new(),
        capacity_type: String::new(),
        image_id: String::new(),
        capacity: Resources::ZERO,
        labels: Default::default(),
        launch_time_unix: 0,
        node_claim: claim.metadata.name.clone(),
        node_pool: Some(pool.name().to_owned()),
    };
    match ctx.provider.is_drifted(&instance).await {
        Ok(Some(r)) => (Some(DriftVerdict::new(r.reason(), r.detail())), false),
        Ok(None) => (None, false),
        Err(e) => {
            tracing::debug!(nodeclaim = ?claim.metadata.name, error = %e, "cloud drift not checked");
            (None, true)
        }
    }
}

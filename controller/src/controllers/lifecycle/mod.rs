//! The NodeClaim lifecycle controller, as Karpenter's: finalizer → launch (`Launched`) →
//! registration of the Node by provider id (`Registered`) → initialization (`Initialized`,
//! `Ready`), with liveness TTLs, and on deletion: Node deleted → instance terminated →
//! finalizer removed.
//!
//! The decisions are pure functions in `decide` ([`next_step`], [`registration_patch`],
//! [`is_initialized`]) tested without a cluster; `apply` does the I/O of each step.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use karpenter_core::api::NodeClaim;
use karpenter_providers::{CloudProvider, ProviderError};
use kube_client::Client;
use kube_client::api::{Api, Patch, PatchParams};
use kube_client::runtime::controller::{Action, Controller};
use kube_client::runtime::events::Recorder;
use kube_client::runtime::reflector::ObjectRef;

use crate::controllers::backoff::Backoff;
use crate::model::ClusterState;
use crate::runtime::metrics::Metrics;
pub use launch::Launches;

mod apply;
mod decide;
pub mod launch;

pub use crate::controllers::conditions;
use apply::apply;
pub use apply::request_for;

pub use decide::{
    LifecycleStep, has_unregistered_taint, is_initialized, next_step, registration_patch,
    unregistered_taint_removal,
};

pub use crate::controllers::termination::TERMINATION_FINALIZER;
use crate::controllers::termination::has_finalizer;

/// Shared by every reconcile.
pub struct LifecycleContext {
    /// API client.
    pub client: Client,
    /// Reflector stores.
    pub state: ClusterState,
    /// The cloud provider.
    pub provider: Arc<dyn CloudProvider>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Event recorder.
    pub recorder: Recorder,
    /// Claims not launched this long after creation are deleted.
    pub launch_ttl: Duration,
    /// Launched claims whose Node has not registered this long after launch are deleted.
    pub registration_ttl: Duration,
    /// This process's launch attempts per claim UID ([`launch`]).
    pub launches: Launches,
    /// When the controllers started: older claims may have been launched by a previous
    /// process, so they are looked for before launching.
    pub controllers_started: Timestamp,
    /// Per-claim retry delays after failed reconciles.
    pub backoff: Backoff,
}

/// Errors of one reconcile; all are retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// An API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube_client::Error),
    /// The cloud provider failed.
    #[error("cloud provider: {0}")]
    Provider(#[from] ProviderError),
}

impl LifecycleError {
    /// Whether the API server refused a write because the object changed since it was read.
    pub fn is_conflict(&self) -> bool {
        matches!(self, LifecycleError::Kube(e) if crate::controllers::conditions::is_conflict(e))
    }
}

/// The `controller` label of this controller's reconcile metrics (Karpenter's name).
const CONTROLLER: &str = "nodeclaim.lifecycle";

/// Runs the NodeClaim controller until the process ends (the caller treats a return as a
/// failure). Claims come from the shared model; Node changes trigger the claim with the same
/// provider id.
pub async fn run(ctx: Arc<LifecycleContext>) {
    let store = ctx.state.node_claims.store.clone();
    Controller::for_shared_stream(ctx.state.node_claims.changes(), store.clone())
        .watches_shared_stream(ctx.state.nodes.changes(), move |node: Arc<Node>| {
            let id = node.spec.as_ref().and_then(|s| s.provider_id.clone())?;
            store
                .find(|c| c.status.as_ref().and_then(|s| s.provider_id.as_deref()) == Some(&id))
                .map(|c| ObjectRef::from_obj(c.as_ref()))
        })
        .reconcile_all_on(crate::controllers::resync_ticks())
        .with_config(kube_client::runtime::controller::Config::default().concurrency(64))
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

fn error_policy(claim: Arc<NodeClaim>, err: &LifecycleError, ctx: Arc<LifecycleContext>) -> Action {
    let name = claim.metadata.name.as_deref().unwrap_or("");
    if err.is_conflict() {
        // A guarded patch lost a race; the watch brings the newer object, try again soon.
        tracing::debug!(nodeclaim = %name, error = %err, "conflict; retrying");
        return Action::requeue(Duration::from_secs(1));
    }
    ctx.metrics.reconcile.error(CONTROLLER);
    let wait = ctx.backoff.failed(name);
    tracing::warn!(nodeclaim = %name, error = %err, retry_in_ms = wait.as_millis() as u64, "reconcile failed");
    Action::requeue(wait)
}

/// One reconcile of one NodeClaim: the finalizer first, then the next lifecycle step. A claim
/// being deleted belongs to termination.
pub async fn reconcile(
    claim: Arc<NodeClaim>,
    ctx: Arc<LifecycleContext>,
) -> Result<Action, LifecycleError> {
    let name = claim.metadata.name.clone().unwrap_or_default();
    if claim.metadata.deletion_timestamp.is_some() {
        ctx.launches
            .forget(claim.metadata.uid.as_deref().unwrap_or(""));
        return Ok(Action::await_change());
    }
    if !has_finalizer(claim.metadata.finalizers.as_ref()) {
        let api: Api<NodeClaim> = Api::all(ctx.client.clone());
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(finalizer_addition(&claim.metadata)),
        )
        .await?;
        return Ok(Action::requeue(Duration::from_millis(100)));
    }
    let out = apply(&claim, &ctx).await;
    if out.is_ok() {
        ctx.backoff.succeeded(&name);
    }
    out
}

/// The merge patch that adds the termination finalizer, guarded by the resourceVersion.
pub fn finalizer_addition(meta: &ObjectMeta) -> serde_json::Value {
    let mut finalizers = meta.finalizers.clone().unwrap_or_default();
    finalizers.push(TERMINATION_FINALIZER.to_owned());
    serde_json::json!({"metadata": {"finalizers": finalizers, "resourceVersion": meta.resource_version}})
}

fn now() -> Timestamp {
    Timestamp::now()
}

fn node_for<'a>(nodes: &'a [Arc<Node>], provider_id: &str) -> Option<&'a Arc<Node>> {
    nodes
        .iter()
        .find(|n| n.spec.as_ref().and_then(|s| s.provider_id.as_deref()) == Some(provider_id))
}

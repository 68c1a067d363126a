//! Termination, as Karpenter v1's: the only way nodes leave the cluster.
//!
//! Every NodeClaim and every Node karpenter-rs manages carries the `karpenter.sh/termination`
//! finalizer. Deleting either one (or the NodePool, whose claims go by owner reference) starts
//! termination:
//!
//! - a deleted **NodeClaim** stamps its termination deadline (deletion time plus its
//!   `terminationGracePeriod`), deletes its Node and waits for it to go, terminates the
//!   instance, waits until the cloud reports it gone, and drops its finalizer;
//! - a deleted **Node** deletes its NodeClaim, taints itself `karpenter.sh/disrupted:NoSchedule`,
//!   drains through the Eviction API in four waves ([`drain`]), waits for its volumes to
//!   detach, terminates the instance and drops its finalizer. A NotReady node whose instance is
//!   already gone is not drained; past the deadline nothing is waited for.
//!
//! The decisions are pure ([`decide`], [`drain`]); [`apply`] does the I/O and [`eviction`] talks
//! to the Eviction API.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use karpenter_core::api::NodeClaim;
use karpenter_providers::{CloudProvider, ProviderError};
use kube_client::Client;
use kube_client::runtime::controller::{Action, Controller};
use kube_client::runtime::reflector::ObjectRef;

use crate::controllers::backoff::Backoff;
use crate::controllers::events::Events;
use crate::model::ClusterState;
use crate::runtime::metrics::Metrics;

mod apply;
pub mod decide;
pub mod drain;
pub mod eviction;

pub use decide::{ClaimStep, NodePhase, NodePlan, TERMINATION_DEADLINE_ANNOTATION};

/// Finalizer on every NodeClaim and managed Node: termination removes it last.
pub const TERMINATION_FINALIZER: &str = "karpenter.sh/termination";

/// How often a draining node is looked at again.
pub const DRAIN_POLL: Duration = Duration::from_secs(1);

/// How often a terminating instance is looked at again.
pub const INSTANCE_POLL: Duration = Duration::from_secs(2);

/// Everything termination shares.
pub struct TerminationContext {
    /// API client.
    pub client: Client,
    /// The shared cluster model.
    pub state: ClusterState,
    /// The cloud provider.
    pub provider: Arc<dyn CloudProvider>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Events.
    pub events: Arc<Events>,
    /// `policy/v1` or `policy/v1beta1`: where the API server serves Evictions.
    pub eviction_api_version: String,
    /// Per-pod eviction retry times.
    pub evictions: eviction::EvictionBackoff,
    /// Per-object retry delays after failed reconciles.
    pub backoff: Backoff,
    /// Nodes whose drain was counted (by UID), so `karpenter_nodes_drained_total` counts each
    /// node once.
    pub drained: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl TerminationContext {
    /// True the first time it is called for `node_uid`.
    fn drained_once(&self, node_uid: &str) -> bool {
        self.drained
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(node_uid.to_owned())
    }

    fn forget_drained(&self, node_uid: &str) {
        self.drained
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(node_uid);
    }
}

/// Why one reconcile failed; retried with per-object backoff.
#[derive(Debug, thiserror::Error)]
pub enum TerminationError {
    /// An API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube_client::Error),
    /// The cloud provider failed.
    #[error("cloud provider: {0}")]
    Provider(#[from] ProviderError),
}

impl TerminationError {
    /// Whether the API server refused a guarded write because the object changed since it was
    /// read: retried soon, not counted as a failure.
    pub fn is_conflict(&self) -> bool {
        matches!(self, TerminationError::Kube(e) if crate::controllers::conditions::is_conflict(e))
    }
}

/// The `controller` labels of the two loops' reconcile metrics (Karpenter's names).
const NODE_CONTROLLER: &str = "node.termination";
const CLAIM_CONTROLLER: &str = "nodeclaim.termination";

/// Runs the Node and NodeClaim termination loops until the process ends (the caller treats a
/// return as a failure).
pub async fn run(ctx: Arc<TerminationContext>) {
    let nodes =
        Controller::for_shared_stream(ctx.state.nodes.changes(), ctx.state.nodes.store.clone())
            .reconcile_all_on(crate::controllers::resync_ticks())
            .with_config(kube_client::runtime::controller::Config::default().concurrency(64))
            .run(
                |node, ctx| async move {
                    let metrics = ctx.metrics.clone();
                    let reconcile = reconcile_node(node, ctx);
                    metrics.reconcile.measure(NODE_CONTROLLER, reconcile).await
                },
                node_error_policy,
                ctx.clone(),
            )
            .for_each(|_| async {});
    let claims_store = ctx.state.node_claims.store.clone();
    let claims = Controller::for_shared_stream(
        ctx.state.node_claims.changes(),
        ctx.state.node_claims.store.clone(),
    )
    // A claim waits for its Nodes to go: their deletions wake it.
    .watches_shared_stream(ctx.state.nodes.changes(), move |node: Arc<Node>| {
        let id = node.spec.as_ref().and_then(|s| s.provider_id.clone())?;
        claims_store
            .find(|c| c.status.as_ref().and_then(|s| s.provider_id.as_deref()) == Some(&id))
            .map(|c| ObjectRef::from_obj(c.as_ref()))
    })
    .reconcile_all_on(crate::controllers::resync_ticks())
    .with_config(kube_client::runtime::controller::Config::default().concurrency(64))
    .run(
        |claim, ctx| async move {
            let metrics = ctx.metrics.clone();
            let reconcile = reconcile_claim(claim, ctx);
            metrics.reconcile.measure(CLAIM_CONTROLLER, reconcile).await
        },
        claim_error_policy,
        ctx.clone(),
    )
    .for_each(|_| async {});
    futures::future::join(nodes, claims).await;
}

async fn reconcile_node(
    node: Arc<Node>,
    ctx: Arc<TerminationContext>,
) -> Result<Action, TerminationError> {
    let key = format!("node/{}", node.metadata.name.as_deref().unwrap_or(""));
    let out = apply::node(&node, &ctx).await;
    if out.is_ok() {
        ctx.backoff.succeeded(&key);
    }
    out
}

async fn reconcile_claim(
    claim: Arc<NodeClaim>,
    ctx: Arc<TerminationContext>,
) -> Result<Action, TerminationError> {
    let key = format!("nodeclaim/{}", claim.metadata.name.as_deref().unwrap_or(""));
    let out = apply::claim(&claim, &ctx).await;
    if out.is_ok() {
        ctx.backoff.succeeded(&key);
    }
    out
}

fn node_error_policy(
    node: Arc<Node>,
    err: &TerminationError,
    ctx: Arc<TerminationContext>,
) -> Action {
    let name = node.metadata.name.as_deref().unwrap_or("");
    if err.is_conflict() {
        tracing::debug!(node = %name, error = %err, "conflict; retrying");
        return Action::requeue(Duration::from_secs(1));
    }
    ctx.metrics.reconcile.error(NODE_CONTROLLER);
    let wait = ctx.backoff.failed(&format!("node/{name}"));
    tracing::warn!(node = %name, error = %err, retry_in_ms = wait.as_millis() as u64, "node termination failed");
    Action::requeue(wait)
}

fn claim_error_policy(
    claim: Arc<NodeClaim>,
    err: &TerminationError,
    ctx: Arc<TerminationContext>,
) -> Action {
    let name = claim.metadata.name.as_deref().unwrap_or("");
    if err.is_conflict() {
        tracing::debug!(nodeclaim = %name, error = %err, "conflict; retrying");
        return Action::requeue(Duration::from_secs(1));
    }
    ctx.metrics.reconcile.error(CLAIM_CONTROLLER);
    let wait = ctx.backoff.failed(&format!("nodeclaim/{name}"));
    tracing::warn!(nodeclaim = %name, error = %err, retry_in_ms = wait.as_millis() as u64, "nodeclaim termination failed");
    Action::requeue(wait)
}

/// True when the object carries the termination finalizer.
pub fn has_finalizer(finalizers: Option<&Vec<String>>) -> bool {
    finalizers.is_some_and(|f| f.iter().any(|f| f == TERMINATION_FINALIZER))
}

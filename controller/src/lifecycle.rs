//! The NodeClaim lifecycle controller, as Karpenter's: finalizer → launch (`Launched`) →
//! registration of the Node by provider id (`Registered`) → initialization (`Initialized`,
//! `Ready`), with liveness TTLs, and on deletion: Node deleted → instance terminated →
//! finalizer removed.
//!
//! The decisions are pure functions ([`next_step`], [`registration_patch`],
//! [`is_initialized`]) tested without a cluster; [`reconcile`] does the I/O.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use karpenter_core::api::{self, NodeClaim, NodeClaimStatus};
use karpenter_core::labels;
use karpenter_providers::{CloudProvider, LaunchedInstance, NodeClaimRequest, ProviderError};
use kube_client::api::{Api, DeleteParams, Patch, PatchParams};
use kube_client::runtime::controller::{Action, Controller};
use kube_client::runtime::events::{Event, EventType, Recorder};
use kube_client::runtime::finalizer::{self, finalizer};
use kube_client::runtime::reflector::ObjectRef;
use kube_client::runtime::watcher;
use kube_client::{Client, Resource};
use serde_json::json;

use crate::cluster::{claim_requirements, resource_list};
use crate::metrics::Metrics;
use crate::state::ClusterState;

mod decide;

pub use decide::{
    LifecycleStep, has_unregistered_taint, is_initialized, next_step, registration_patch,
    unregistered_taint_removal,
};

/// Finalizer Karpenter puts on NodeClaims (and Nodes) it must clean up after.
pub const TERMINATION_FINALIZER: &str = "karpenter.sh/termination";

/// Condition types of a NodeClaim.
pub mod conditions {
    /// The instance exists.
    pub const LAUNCHED: &str = "Launched";
    /// A Node with the instance's provider id registered.
    pub const REGISTERED: &str = "Registered";
    /// The Node is ready, startup taints are gone and extended resources are registered.
    pub const INITIALIZED: &str = "Initialized";
    /// Roll-up of the three.
    pub const READY: &str = "Ready";
}

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
    /// Instances launched per claim UID. The store can hand a reconcile a claim older than our
    /// own status write; without this a stale read would launch a second instance (Karpenter
    /// keeps the same cache).
    pub launched: LaunchCache,
}

/// Instances launched per NodeClaim UID, so a stale cached claim is not launched twice.
#[derive(Default)]
pub struct LaunchCache(std::sync::Mutex<std::collections::HashMap<String, LaunchedInstance>>);

impl LaunchCache {
    fn get(&self, uid: &str) -> Option<LaunchedInstance> {
        self.0.lock().ok()?.get(uid).cloned()
    }

    fn insert(&self, uid: &str, instance: &LaunchedInstance) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(uid.to_owned(), instance.clone());
        }
    }

    fn remove(&self, uid: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(uid);
        }
    }
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
    /// The finalizer helper failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
}

impl LifecycleError {
    /// Whether the API server refused a write because the object changed since it was read.
    pub fn is_conflict(&self) -> bool {
        matches!(self, LifecycleError::Kube(kube_client::Error::Api(e)) if e.code == 409)
    }
}

/// Runs the NodeClaim controller until the process ends. Node changes trigger the claim with
/// the same provider id.
pub async fn run(ctx: Arc<LifecycleContext>) {
    let claims: Api<NodeClaim> = Api::all(ctx.client.clone());
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let store = ctx.state.node_claims.clone();
    Controller::new(claims, watcher::Config::default())
        .watches(nodes, watcher::Config::default(), move |node: Node| {
            let id = node.spec.and_then(|s| s.provider_id);
            store
                .find(|c| {
                    id.is_some()
                        && c.status.as_ref().and_then(|s| s.provider_id.as_ref()) == id.as_ref()
                })
                .map(|c| ObjectRef::from_obj(c.as_ref()))
        })
        .with_config(kube_client::runtime::controller::Config::default().concurrency(64))
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "nodeclaim reconcile");
            }
        })
        .await;
}

fn error_policy(claim: Arc<NodeClaim>, err: &LifecycleError, _: Arc<LifecycleContext>) -> Action {
    if err.is_conflict() {
        // A guarded patch lost a race; the watch brings the newer object, try again soon.
        tracing::debug!(nodeclaim = claim.metadata.name.as_deref().unwrap_or(""), error = %err, "conflict; retrying");
        return Action::requeue(Duration::from_secs(1));
    }
    tracing::warn!(nodeclaim = claim.metadata.name.as_deref().unwrap_or(""), error = %err, "reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

/// One reconcile of one NodeClaim.
pub async fn reconcile(
    claim: Arc<NodeClaim>,
    ctx: Arc<LifecycleContext>,
) -> Result<Action, LifecycleError> {
    let api: Api<NodeClaim> = Api::all(ctx.client.clone());
    finalizer(&api, TERMINATION_FINALIZER, claim, |event| async {
        match event {
            finalizer::Event::Apply(c) => apply(&c, &ctx).await,
            finalizer::Event::Cleanup(c) => cleanup(&c, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        other => LifecycleError::Finalizer(other.to_string()),
    })
}

fn now() -> Timestamp {
    Timestamp::now()
}

fn node_for<'a>(nodes: &'a [Arc<Node>], provider_id: &str) -> Option<&'a Arc<Node>> {
    nodes
        .iter()
        .find(|n| n.spec.as_ref().and_then(|s| s.provider_id.as_deref()) == Some(provider_id))
}

async fn apply(claim: &NodeClaim, ctx: &LifecycleContext) -> Result<Action, LifecycleError> {
    let name = claim.metadata.name.clone().unwrap_or_default();
    let nodes = ctx.state.nodes.state();
    let node = claim
        .status
        .as_ref()
        .and_then(|s| s.provider_id.as_deref())
        .and_then(|id| node_for(&nodes, id));
    let step = next_step(
        claim,
        node.map(|n| n.as_ref()),
        now(),
        ctx.launch_ttl,
        ctx.registration_ttl,
    );
    match step {
        LifecycleStep::Launch => launch(claim, ctx).await,
        LifecycleStep::Delete { reason, message } => {
            tracing::info!(nodeclaim = %name, reason, %message, "deleting nodeclaim");
            publish(ctx, claim, EventType::Warning, reason, message).await;
            delete_claim(ctx, &name).await?;
            Ok(Action::await_change())
        }
        LifecycleStep::WaitForRegistration { recheck } => Ok(Action::requeue(recheck)),
        LifecycleStep::Register => match node {
            Some(node) => register(claim, node, ctx).await,
            None => Ok(Action::requeue(Duration::from_secs(1))),
        },
        LifecycleStep::RemoveUnregisteredTaint => match node {
            Some(node) => remove_unregistered_taint(claim, node, ctx).await,
            None => Ok(Action::requeue(Duration::from_secs(1))),
        },
        LifecycleStep::WaitForInitialization => Ok(Action::requeue(Duration::from_secs(10))),
        LifecycleStep::Initialize => match node {
            Some(node) => initialize(claim, node, ctx).await,
            None => Ok(Action::requeue(Duration::from_secs(1))),
        },
        LifecycleStep::Done => Ok(Action::requeue(Duration::from_secs(300))),
    }
}

/// The provider-facing request for a claim.
pub fn request_for(claim: &NodeClaim) -> NodeClaimRequest {
    let labels_map = claim.metadata.labels.clone().unwrap_or_default();
    let instance_type_options = claim
        .spec
        .requirements
        .iter()
        .find(|r| r.key == labels::INSTANCE_TYPE && r.operator == api::NodeSelectorOperator::In)
        .map(|r| r.values.clone())
        .unwrap_or_default();
    let requests = crate::cluster::claim_requests(claim);
    NodeClaimRequest {
        name: claim.metadata.name.clone().unwrap_or_default(),
        node_pool: labels_map
            .get(labels::NODE_POOL)
            .cloned()
            .unwrap_or_default(),
        node_class: claim.spec.node_class_ref.name.clone(),
        requirements: claim_requirements(claim),
        instance_type_options,
        requests,
        labels: labels_map,
        taints: claim.spec.taints.clone(),
        startup_taints: claim.spec.startup_taints.clone(),
    }
}

async fn launch(claim: &NodeClaim, ctx: &LifecycleContext) -> Result<Action, LifecycleError> {
    let name = claim.metadata.name.clone().unwrap_or_default();
    let request = request_for(claim);
    let uid = claim.metadata.uid.clone().unwrap_or_default();
    if let Some(instance) = ctx.launched.get(&uid) {
        // Launched already; this read of the claim predates the status write.
        record_launch(claim, &request, &instance, ctx).await?;
        return Ok(Action::requeue(Duration::from_secs(10)));
    }
    match ctx.provider.create(&request).await {
        Ok(instance) => {
            ctx.launched.insert(&uid, &instance);
            record_launch(claim, &request, &instance, ctx).await?;
            tracing::info!(
                nodeclaim = %name,
                provider_id = %instance.provider_id,
                instance_type = %instance.instance_type,
                zone = %instance.zone,
                capacity_type = %instance.capacity_type,
                "launched nodeclaim"
            );
            Ok(Action::requeue(Duration::from_secs(10)))
        }
        Err(e @ ProviderError::InsufficientCapacity { .. })
        | Err(e @ ProviderError::Create { .. }) => {
            // Karpenter deletes the claim; the provisioner plans again without the offerings
            // that just failed (they are marked unavailable).
            let reason = if matches!(e, ProviderError::InsufficientCapacity { .. }) {
                "InsufficientCapacityError"
            } else {
                "LaunchFailed"
            };
            tracing::warn!(nodeclaim = %name, error = %e, "launch failed; deleting nodeclaim");
            publish(ctx, claim, EventType::Warning, reason, e.to_string()).await;
            delete_claim(ctx, &name).await?;
            Ok(Action::await_change())
        }
        Err(e) => {
            set_condition(
                ctx,
                claim,
                conditions::LAUNCHED,
                "False",
                "LaunchFailed",
                &e.to_string(),
            )
            .await?;
            Err(e.into())
        }
    }
}

async fn record_launch(
    claim: &NodeClaim,
    request: &NodeClaimRequest,
    instance: &LaunchedInstance,
    ctx: &LifecycleContext,
) -> Result<(), LifecycleError> {
    let name = claim.metadata.name.clone().unwrap_or_default();
    let api: Api<NodeClaim> = Api::all(ctx.client.clone());
    // Status first: every later event then carries the provider id.
    let allocatable = allocatable_of(ctx, request, &instance.instance_type).await;
    let mut status = claim.status.clone().unwrap_or_default();
    status.provider_id = Some(instance.provider_id.clone());
    status.image_id = Some(instance.image_id.clone());
    status.capacity = resource_list(&instance.capacity);
    status.allocatable = resource_list(&allocatable.unwrap_or(instance.capacity));
    upsert_condition(
        &mut status,
        conditions::LAUNCHED,
        "True",
        "Launched",
        "",
        claim,
    );
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await?;
    // The instance's facts (type, zone, capacity type, …) become the claim's labels.
    let mut new_labels = instance.labels.clone();
    new_labels.extend(request.labels.clone());
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": new_labels}})),
    )
    .await?;
    Ok(())
}

/// Allocatable of the launched type, from the provider's (cached) instance types.
async fn allocatable_of(
    ctx: &LifecycleContext,
    request: &NodeClaimRequest,
    instance_type: &str,
) -> Option<karpenter_core::resources::Resources> {
    let pool = karpenter_providers::NodePoolRef {
        name: request.node_pool.clone(),
        node_class: request.node_class.clone(),
    };
    let types = ctx.provider.instance_types(&pool).await.ok()?;
    types
        .iter()
        .find(|t| t.name == instance_type)
        .map(|t| t.allocatable())
}

async fn register(
    claim: &NodeClaim,
    node: &Node,
    ctx: &LifecycleContext,
) -> Result<Action, LifecycleError> {
    let claim_name = claim.metadata.name.clone().unwrap_or_default();
    let node_name = node.metadata.name.clone().unwrap_or_default();
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let owner = OwnerReference {
        api_version: format!("{}/v1", api::GROUP),
        kind: "NodeClaim".into(),
        name: claim_name.clone(),
        uid: claim.metadata.uid.clone().unwrap_or_default(),
        block_owner_deletion: Some(true),
        controller: None,
    };
    let patch = registration_patch(claim, node, owner);
    nodes
        .patch(&node_name, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    let api: Api<NodeClaim> = Api::all(ctx.client.clone());
    let mut status = claim.status.clone().unwrap_or_default();
    status.node_name = Some(node_name.clone());
    upsert_condition(
        &mut status,
        conditions::REGISTERED,
        "True",
        "Registered",
        "",
        claim,
    );
    api.patch_status(
        &claim_name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await?;
    let pool = claim_pool(claim);
    ctx.metrics.node_created(&pool);
    tracing::info!(nodeclaim = %claim_name, node = %node_name, "registered nodeclaim");
    Ok(Action::requeue(Duration::from_secs(5)))
}

async fn remove_unregistered_taint(
    claim: &NodeClaim,
    node: &Node,
    ctx: &LifecycleContext,
) -> Result<Action, LifecycleError> {
    let node_name = node.metadata.name.clone().unwrap_or_default();
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    nodes
        .patch(
            &node_name,
            &PatchParams::default(),
            &Patch::Merge(unregistered_taint_removal(node)),
        )
        .await?;
    tracing::info!(
        nodeclaim = claim.metadata.name.as_deref().unwrap_or(""),
        node = %node_name,
        "removed the unregistered taint written back onto a registered node"
    );
    Ok(Action::requeue(Duration::from_secs(5)))
}

async fn initialize(
    claim: &NodeClaim,
    node: &Node,
    ctx: &LifecycleContext,
) -> Result<Action, LifecycleError> {
    let claim_name = claim.metadata.name.clone().unwrap_or_default();
    let node_name = node.metadata.name.clone().unwrap_or_default();
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    nodes
        .patch(
            &node_name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {labels::NODE_INITIALIZED: "true"}}})),
        )
        .await?;
    let api: Api<NodeClaim> = Api::all(ctx.client.clone());
    let mut status = claim.status.clone().unwrap_or_default();
    upsert_condition(
        &mut status,
        conditions::INITIALIZED,
        "True",
        "Initialized",
        "",
        claim,
    );
    upsert_condition(&mut status, conditions::READY, "True", "Ready", "", claim);
    api.patch_status(
        &claim_name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await?;
    tracing::info!(nodeclaim = %claim_name, node = %node_name, "initialized nodeclaim");
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// Deletion: the Node goes first (so nothing new schedules there), then the instance; the
/// finalizer is removed only once the provider no longer finds the instance.
async fn cleanup(claim: &NodeClaim, ctx: &LifecycleContext) -> Result<Action, LifecycleError> {
    let name = claim.metadata.name.clone().unwrap_or_default();
    let uid = claim.metadata.uid.clone().unwrap_or_default();
    let recorded = claim.status.as_ref().and_then(|s| s.provider_id.clone());
    let Some(provider_id) = recorded.or_else(|| ctx.launched.get(&uid).map(|i| i.provider_id))
    else {
        // Never launched: nothing to terminate.
        ctx.metrics.nodeclaim_terminated(&claim_pool(claim));
        return Ok(Action::await_change());
    };
    let nodes = ctx.state.nodes.state();
    if let Some(node) = node_for(&nodes, &provider_id) {
        let node_api: Api<Node> = Api::all(ctx.client.clone());
        let node_name = node.metadata.name.clone().unwrap_or_default();
        match node_api.delete(&node_name, &DeleteParams::default()).await {
            Ok(_) => {
                ctx.metrics.node_terminated(&claim_pool(claim));
            }
            Err(kube_client::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    match ctx.provider.delete(&provider_id).await {
        Ok(()) => {}
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e.into()),
    }
    match ctx.provider.get(&provider_id).await {
        Err(e) if e.is_not_found() => {
            ctx.launched.remove(&uid);
            ctx.metrics.nodeclaim_terminated(&claim_pool(claim));
            tracing::info!(nodeclaim = %name, %provider_id, "terminated nodeclaim");
            Ok(Action::await_change())
        }
        // Still shutting down: keep the finalizer and look again.
        Ok(_) => Err(LifecycleError::Provider(ProviderError::Other(format!(
            "instance {provider_id} is still terminating"
        )))),
        Err(e) => Err(e.into()),
    }
}

fn claim_pool(claim: &NodeClaim) -> String {
    claim
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(labels::NODE_POOL))
        .cloned()
        .unwrap_or_default()
}

async fn delete_claim(ctx: &LifecycleContext, name: &str) -> Result<(), LifecycleError> {
    let api: Api<NodeClaim> = Api::all(ctx.client.clone());
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube_client::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn set_condition(
    ctx: &LifecycleContext,
    claim: &NodeClaim,
    type_: &str,
    status_value: &str,
    reason: &str,
    message: &str,
) -> Result<(), LifecycleError> {
    let name = claim.metadata.name.clone().unwrap_or_default();
    let mut status = claim.status.clone().unwrap_or_default();
    if !upsert_condition(&mut status, type_, status_value, reason, message, claim) {
        return Ok(());
    }
    let api: Api<NodeClaim> = Api::all(ctx.client.clone());
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await?;
    Ok(())
}

/// Gives every condition without a message its reason as message. The v1.20 API server the
/// e2e bed runs stores an empty `message` as null and then rejects it ("must be of type
/// string"), for merge and JSON patches alike; a non-empty message is valid everywhere.
pub fn fill_empty_messages(conditions: &mut [Condition]) {
    for c in conditions {
        if c.message.is_empty() {
            c.message = c.reason.clone();
        }
    }
}

/// Sets a condition; returns false when nothing changed. The transition time moves only when
/// the status does.
pub fn upsert_condition(
    status: &mut NodeClaimStatus,
    type_: &str,
    value: &str,
    reason: &str,
    message: &str,
    claim: &NodeClaim,
) -> bool {
    let generation = claim.metadata.generation;
    // Stored conditions carry their reason as message when there is none (see
    // `fill_empty_messages`); compare like with like.
    let message = if message.is_empty() { reason } else { message };
    match status.conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) if c.status == value && c.reason == reason && c.message == message => false,
        Some(c) => {
            if c.status != value {
                c.last_transition_time = Time(now());
            }
            c.status = value.to_owned();
            c.reason = reason.to_owned();
            c.message = message.to_owned();
            c.observed_generation = generation;
            fill_empty_messages(&mut status.conditions);
            true
        }
        None => {
            status.conditions.push(Condition {
                type_: type_.to_owned(),
                status: value.to_owned(),
                reason: reason.to_owned(),
                message: message.to_owned(),
                last_transition_time: Time(now()),
                observed_generation: generation,
            });
            fill_empty_messages(&mut status.conditions);
            true
        }
    }
}

async fn publish(
    ctx: &LifecycleContext,
    claim: &NodeClaim,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let ev = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: "Lifecycle".to_owned(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &claim.object_ref(&())).await {
        tracing::debug!(error = %e, "event not recorded");
    }
}

//! The I/O of each lifecycle step: launch, registration, initialization, deletion.

use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use karpenter_core::api::{self, NodeClaim};
use karpenter_core::labels;
use karpenter_providers::{LaunchedInstance, NodeClaimRequest, ProviderError};
use kube_client::Resource;
use kube_client::api::{Api, Patch, PatchParams};
use kube_client::runtime::controller::Action;
use kube_client::runtime::events::{Event, EventType};
use serde_json::json;

use super::launch::{LaunchPlan, launch_plan, launched_nothing};
use super::{
    LifecycleContext, LifecycleError, LifecycleStep, next_step, node_for, now, registration_patch,
    unregistered_taint_removal,
};
use crate::controllers::claim_delete::delete_this_node_claim;
use crate::controllers::conditions::{self, guarded_status_patch, upsert_condition};
use crate::controllers::events::series_action;
use crate::model::snapshot::{claim_requirements, resource_list};

pub(super) async fn apply(
    claim: &NodeClaim,
    ctx: &LifecycleContext,
) -> Result<Action, LifecycleError> {
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
            delete_claim(ctx, claim).await?;
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
        LifecycleStep::AddNodeFinalizer => match node {
            Some(node) => add_node_finalizer(node, ctx).await,
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
    let requests = crate::model::snapshot::claim_requests(claim);
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
    let plan = launch_plan(
        claim,
        ctx.launches.get(&uid).as_ref(),
        ctx.controllers_started,
        now(),
    );
    match plan {
        LaunchPlan::Record(instance) => {
            // Launched already; this read of the claim predates the status write.
            record_launch(claim, &request, &instance, ctx).await?;
            return Ok(Action::requeue(Duration::from_secs(10)));
        }
        LaunchPlan::Wait(left) => return Ok(Action::requeue(left)),
        LaunchPlan::FindThenLaunch {
            launched_after_unix,
        } => {
            if let Some(instance) = ctx
                .provider
                .find_launched(&request, launched_after_unix)
                .await?
            {
                tracing::info!(
                    nodeclaim = %name,
                    provider_id = %instance.provider_id,
                    "found the instance an earlier launch left; not launching again"
                );
                ctx.launches.launched(&uid, &instance);
                record_launch(claim, &request, &instance, ctx).await?;
                return Ok(Action::requeue(Duration::from_secs(10)));
            }
        }
        LaunchPlan::Launch => {}
    }
    ctx.launches.started(&uid, now());
    match ctx.provider.create(&request).await {
        Ok(instance) => {
            ctx.launches.launched(&uid, &instance);
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
        Err(e) => {
            if launched_nothing(&e) {
                ctx.launches.forget(&uid);
            }
            match e {
                ProviderError::InsufficientCapacity { .. } | ProviderError::Create { .. } => {
                    // Karpenter deletes the claim; the provisioner plans again without the
                    // offerings that just failed (they are marked unavailable).
                    let reason = if matches!(e, ProviderError::InsufficientCapacity { .. }) {
                        "InsufficientCapacityError"
                    } else {
                        "LaunchFailed"
                    };
                    tracing::warn!(nodeclaim = %name, error = %e, "launch failed; deleting nodeclaim");
                    publish(ctx, claim, EventType::Warning, reason, e.to_string()).await;
                    delete_claim(ctx, claim).await?;
                    Ok(Action::await_change())
                }
                e => {
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
        &Patch::Merge(guarded_status_patch(&claim.metadata, &status)),
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
        &Patch::Merge(guarded_status_patch(&claim.metadata, &status)),
    )
    .await?;
    let pool = claim_pool(claim);
    ctx.metrics.node_created(&pool);
    tracing::info!(nodeclaim = %claim_name, node = %node_name, "registered nodeclaim");
    Ok(Action::requeue(Duration::from_secs(5)))
}

async fn add_node_finalizer(node: &Node, ctx: &LifecycleContext) -> Result<Action, LifecycleError> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    nodes
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(super::finalizer_addition(&node.metadata)),
        )
        .await?;
    tracing::info!(node = %name, "added the termination finalizer to a registered node");
    Ok(Action::requeue(Duration::from_secs(1)))
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
        &Patch::Merge(guarded_status_patch(&claim.metadata, &status)),
    )
    .await?;
    tracing::info!(nodeclaim = %claim_name, node = %node_name, "initialized nodeclaim");
    Ok(Action::requeue(Duration::from_secs(300)))
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

async fn delete_claim(ctx: &LifecycleContext, claim: &NodeClaim) -> Result<(), LifecycleError> {
    delete_this_node_claim(&ctx.client, claim).await?;
    Ok(())
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
        &Patch::Merge(guarded_status_patch(&claim.metadata, &status)),
    )
    .await?;
    Ok(())
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
        action: series_action("Lifecycle", &note),
        note: Some(note),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &claim.object_ref(&())).await {
        tracing::debug!(error = %e, "event not recorded");
    }
}

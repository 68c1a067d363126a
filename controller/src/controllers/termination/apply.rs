//! The I/O of termination: deleting claims and Nodes, the taint, evictions, forced deletions,
//! instance termination and finalizer removal, with Events and metrics for each stage.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use karpenter_core::api::NodeClaim;
use karpenter_core::labels;
use kube_client::Resource;
use kube_client::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube_client::runtime::controller::Action;
use kube_client::runtime::events::EventType;
use serde_json::json;

use super::decide::{
    ClaimStep, InstanceState, NodeInputs, NodePhase, claim_step, disrupted_taint_patch,
    finalizer_removal, is_ready, node_plan,
};
use super::drain::{DrainPlan, PodRef};
use super::eviction::{Evicted, budgets_selecting, evict};
use super::{
    DRAIN_POLL, INSTANCE_POLL, TERMINATION_FINALIZER, TerminationContext, TerminationError,
    has_finalizer,
};
use crate::controllers::claim_delete::delete_node_claim;
use crate::controllers::conditions::{self, guarded_status_patch, upsert_condition};
use crate::controllers::events::Note;

/// How often a repeated stage Event (e.g. `FailedDraining`) may be written per object.
const REPEAT_FLOOR: Duration = Duration::from_secs(30);
/// Stage Events that happen once per termination.
const ONCE: Duration = Duration::from_secs(3600);

fn pool_of(labels_map: Option<&std::collections::BTreeMap<String, String>>) -> String {
    labels_map
        .and_then(|l| l.get(labels::NODE_POOL))
        .cloned()
        .unwrap_or_default()
}

fn since(t: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> Duration {
    t.and_then(|t| Duration::try_from(Timestamp::now().duration_since(t.0)).ok())
        .unwrap_or_default()
}

async fn note(
    ctx: &TerminationContext,
    obj: &impl Resource<DynamicType = ()>,
    n: Note<'_>,
    floor: Duration,
) {
    ctx.events.publish(&obj.object_ref(&()), n, floor).await;
}

fn normal<'a>(reason: &'a str, message: String) -> Note<'a> {
    Note {
        type_: EventType::Normal,
        reason,
        action: "Termination",
        message,
    }
}

fn warning<'a>(reason: &'a str, message: String) -> Note<'a> {
    Note {
        type_: EventType::Warning,
        reason,
        action: "Termination",
        message,
    }
}

/// One reconcile of a Node.
pub(super) async fn node(
    node: &Node,
    ctx: &Arc<TerminationContext>,
) -> Result<Action, TerminationError> {
    if node.metadata.deletion_timestamp.is_none()
        || !has_finalizer(node.metadata.finalizers.as_ref())
    {
        return Ok(Action::await_change());
    }
    let name = node.metadata.name.clone().unwrap_or_default();
    let provider_id = node
        .spec
        .as_ref()
        .and_then(|s| s.provider_id.clone())
        .unwrap_or_default();
    let claims = ctx.state.node_claims.state();
    let claims: Vec<&NodeClaim> = claims
        .iter()
        .map(Arc::as_ref)
        .filter(|c| {
            !provider_id.is_empty()
                && c.status.as_ref().and_then(|s| s.provider_id.as_deref()) == Some(&provider_id)
        })
        .collect();
    let all_pods = ctx.state.pods.state();
    let pods: Vec<&Pod> = all_pods
        .iter()
        .map(Arc::as_ref)
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(&name))
        .collect();
    let attachments = ctx.state.volume_attachments.state();
    let attachments: Vec<_> = attachments
        .iter()
        .map(Arc::as_ref)
        .filter(|a| a.spec.node_name == name)
        .collect();
    let volume_claims = ctx.state.volume_claims.state();
    let volume_claims: Vec<_> = volume_claims.iter().map(Arc::as_ref).collect();
    let instance = if is_ready(node) || provider_id.is_empty() {
        InstanceState::NotAsked
    } else {
        match ctx.provider.get(&provider_id).await {
            Err(e) if e.is_not_found() => InstanceState::Gone,
            _ => InstanceState::Present,
        }
    };
    let plan = node_plan(&NodeInputs {
        node,
        claims: &claims,
        pods: &pods,
        attachments: &attachments,
        volume_claims: &volume_claims,
        instance,
        now: Timestamp::now(),
    });
    for claim in &plan.delete_claims {
        tracing::info!(node = %name, nodeclaim = %claim, "node deleted; deleting its nodeclaim");
        delete_node_claim(&ctx.client, claim, None).await?;
    }
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    if plan.taint && plan.phase != NodePhase::InstanceGone {
        nodes
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(disrupted_taint_patch(node)),
            )
            .await?;
        tracing::info!(node = %name, "tainted karpenter.sh/disrupted; draining");
        let msg = format!(
            "Tainted {}:NoSchedule and draining",
            labels::DISRUPTED_TAINT
        );
        note(ctx, node, normal("Draining", msg.clone()), ONCE).await;
        for c in &claims {
            note(
                ctx,
                *c,
                normal("Draining", format!("Node {name}: {msg}")),
                ONCE,
            )
            .await;
        }
        // The next reconcile sees the tainted Node; pods may be placed elsewhere from now on.
        return Ok(Action::requeue(Duration::from_millis(100)));
    }
    let pool = pool_of(node.metadata.labels.as_ref());
    match plan.phase {
        NodePhase::Drain(drain) => {
            run_drain(node, &drain, &pods, ctx).await;
            Ok(Action::requeue(DRAIN_POLL))
        }
        NodePhase::AwaitVolumes(left) => {
            drained(node, &pool, ctx).await;
            let msg = format!(
                "Waiting on {} VolumeAttachment(s) to detach: {}",
                left.len(),
                left.join(", ")
            );
            note(
                ctx,
                node,
                normal("AwaitingVolumeDetachment", msg),
                REPEAT_FLOOR,
            )
            .await;
            Ok(Action::requeue(DRAIN_POLL))
        }
        NodePhase::TerminateInstance => {
            drained(node, &pool, ctx).await;
            if !provider_id.is_empty() {
                match ctx.provider.delete(&provider_id).await {
                    Ok(()) => {
                        for c in &claims {
                            mark_instance_terminating(c, ctx).await?;
                        }
                        note(
                            ctx,
                            node,
                            normal(
                                "InstanceTerminating",
                                format!("Terminating instance {provider_id}"),
                            ),
                            ONCE,
                        )
                        .await;
                        return Ok(Action::requeue(INSTANCE_POLL));
                    }
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e.into()),
                }
            }
            finish_node(node, &pool, ctx).await
        }
        NodePhase::InstanceGone => {
            tracing::info!(node = %name, %provider_id, "node is not ready and its instance is gone; not draining");
            finish_node(node, &pool, ctx).await
        }
    }
}

/// Forced deletions, evictions of the current wave, and a `FailedDraining` note while pods
/// are left.
async fn run_drain(node: &Node, drain: &DrainPlan, pods: &[&Pod], ctx: &Arc<TerminationContext>) {
    let name = node.metadata.name.as_deref().unwrap_or("");
    for forced in &drain.force {
        delete_pod(&forced.pod, forced.grace_seconds, ctx).await;
        if let Some(pod) = pods.iter().find(|p| PodRef::of(p) == forced.pod) {
            let msg = format!(
                "Deleting pod ahead of node {name}'s termination deadline (grace period {}s)",
                forced.grace_seconds
            );
            note(ctx, *pod, normal("Disrupted", msg), ONCE).await;
        }
    }
    // Evictions run in the background, one in flight per pod: an API server may hold an
    // eviction for seconds while it retries PDB status conflicts (v1.20 does, for up to 10 s),
    // and the drain must not wait for the slowest answer to look at the node again.
    let now = Instant::now();
    for p in &drain.evict {
        if !ctx.evictions.due(&p.uid, now) || !ctx.evictions.start(&p.uid) {
            continue;
        }
        let pod = pods
            .iter()
            .find(|x| PodRef::of(x) == *p)
            .map(|x| (*x).clone());
        let task = evict_one(ctx.clone(), node.clone(), p.clone(), pod, drain.wave);
        tokio::spawn(task);
    }
    let mut msg = format!(
        "Failed to drain node, {} pods are waiting to be evicted",
        drain.waiting
    );
    if !drain.do_not_disrupt.is_empty() {
        let names: Vec<String> = drain
            .do_not_disrupt
            .iter()
            .map(ToString::to_string)
            .collect();
        msg.push_str(&format!(
            " ({} has {}=true and is not evicted)",
            names.join(", "),
            labels::DO_NOT_DISRUPT
        ));
    }
    note(ctx, node, warning("FailedDraining", msg), REPEAT_FLOOR).await;
}

/// Posts one eviction and records its outcome: metrics, retry time, log, and events (an
/// `Evicted` note on the pod; a `FailedDraining` note on the node naming the PDB that refused).
async fn evict_one(
    ctx: Arc<TerminationContext>,
    node: Node,
    pod_ref: PodRef,
    pod: Option<Pod>,
    wave: Option<super::drain::Wave>,
) {
    let name = node.metadata.name.as_deref().unwrap_or("");
    let started = Instant::now();
    let (outcome, code) = evict(&ctx.client, &ctx.eviction_api_version, &pod_ref).await;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    ctx.metrics.termination.eviction_request(&code);
    match outcome {
        Evicted::Yes => {
            ctx.evictions.forget(&pod_ref.uid);
            tracing::info!(node = %name, pod = %pod_ref, ?wave, elapsed_ms, "evicted pod");
            if let Some(pod) = &pod {
                let n = normal("Evicted", "Evicted pod: Forceful Termination".into());
                note(&ctx, pod, n, ONCE).await;
            }
        }
        Evicted::Gone => ctx.evictions.forget(&pod_ref.uid),
        Evicted::Blocked(message) => {
            let wait = ctx.evictions.refused(&pod_ref.uid, Instant::now());
            let budgets = pod
                .as_ref()
                .map(|p| budgets_selecting(p, &ctx.state.disruption_budgets()))
                .unwrap_or_default();
            tracing::debug!(node = %name, pod = %pod_ref, ?budgets, elapsed_ms, retry_in_ms = wait.as_millis() as u64, "eviction refused");
            let by = if budgets.is_empty() {
                message
            } else {
                format!(
                    "PodDisruptionBudget {} does not allow it now",
                    budgets.join(", ")
                )
            };
            let msg = format!("Cannot evict pod {pod_ref}: {by}");
            note(&ctx, &node, warning("FailedDraining", msg), REPEAT_FLOOR).await;
        }
        Evicted::Failed(e) => {
            let wait = ctx.evictions.refused(&pod_ref.uid, Instant::now());
            tracing::warn!(node = %name, pod = %pod_ref, error = %e, elapsed_ms, retry_in_ms = wait.as_millis() as u64, "eviction failed");
        }
    }
    ctx.evictions.finish(&pod_ref.uid);
}

/// Deletes a pod for the termination deadline, with a UID precondition.
async fn delete_pod(pod: &PodRef, grace_seconds: i64, ctx: &TerminationContext) {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &pod.namespace);
    let params = DeleteParams {
        grace_period_seconds: Some(grace_seconds.max(0) as u32),
        preconditions: Some(Preconditions {
            uid: Some(pod.uid.clone()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&pod.name, &params).await {
        Ok(_) => {
            tracing::info!(pod = %pod, grace_seconds, "deleted pod at the termination deadline")
        }
        Err(kube_client::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
        Err(e) => tracing::warn!(pod = %pod, error = %e, "deleting pod for the deadline failed"),
    }
}

/// Counts the drain once per node (the `Drained` Event is the marker).
async fn drained(node: &Node, pool: &str, ctx: &TerminationContext) {
    let key = node.metadata.uid.clone().unwrap_or_default();
    if ctx.drained_once(&key) {
        ctx.metrics.termination.node_drained(pool);
        let name = node.metadata.name.as_deref().unwrap_or("");
        tracing::info!(node = %name, "drained node");
        note(ctx, node, normal("Drained", "Drained node".into()), ONCE).await;
    }
}

async fn finish_node(
    node: &Node,
    pool: &str,
    ctx: &TerminationContext,
) -> Result<Action, TerminationError> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    remove_finalizer(&nodes, node).await?;
    ctx.metrics.node_terminated(pool);
    ctx.metrics.termination.node_termination_finished(
        pool,
        since(node.metadata.deletion_timestamp.as_ref()),
        since(node.metadata.creation_timestamp.as_ref()),
    );
    ctx.forget_drained(node.metadata.uid.as_deref().unwrap_or(""));
    tracing::info!(node = %name, "terminated node");
    Ok(Action::await_change())
}

async fn remove_finalizer<K>(api: &Api<K>, obj: &K) -> Result<(), TerminationError>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let meta = obj.meta();
    let Some(patch) = finalizer_removal(
        meta.finalizers.as_deref().unwrap_or(&[]),
        meta.resource_version.as_deref(),
        TERMINATION_FINALIZER,
    ) else {
        return Ok(());
    };
    let name = meta.name.as_deref().unwrap_or("");
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube_client::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn delete_ignoring_gone<K>(api: &Api<K>, name: &str) -> Result<(), TerminationError>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube_client::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Sets `InstanceTerminating=True` on a claim (once).
async fn mark_instance_terminating(
    claim: &NodeClaim,
    ctx: &TerminationContext,
) -> Result<(), TerminationError> {
    let mut status = claim.status.clone().unwrap_or_default();
    if !upsert_condition(
        &mut status,
        conditions::INSTANCE_TERMINATING,
        "True",
        "InstanceTerminating",
        "Instance is terminating",
        claim,
    ) {
        return Ok(());
    }
    let api: Api<NodeClaim> = Api::all(ctx.client.clone());
    let name = claim.metadata.name.clone().unwrap_or_default();
    let patch = guarded_status_patch(&claim.metadata, &status);
    match api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube_client::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// One reconcile of a NodeClaim.
pub(super) async fn claim(
    claim: &NodeClaim,
    ctx: &TerminationContext,
) -> Result<Action, TerminationError> {
    if claim.metadata.deletion_timestamp.is_none()
        || !has_finalizer(claim.metadata.finalizers.as_ref())
    {
        return Ok(Action::await_change());
    }
    let name = claim.metadata.name.clone().unwrap_or_default();
    let api: Api<NodeClaim> = Api::all(ctx.client.clone());
    let provider_id = claim.status.as_ref().and_then(|s| s.provider_id.clone());
    let all_nodes = ctx.state.nodes.state();
    let nodes: Vec<&Node> = all_nodes
        .iter()
        .map(Arc::as_ref)
        .filter(|n| {
            provider_id.is_some()
                && n.spec.as_ref().and_then(|s| s.provider_id.as_ref()) == provider_id.as_ref()
        })
        .collect();
    let pool = pool_of(claim.metadata.labels.as_ref());
    match claim_step(claim, &nodes) {
        ClaimStep::StampDeadline(deadline) => {
            let patch = json!({"metadata": {"annotations": {super::TERMINATION_DEADLINE_ANNOTATION: deadline.to_string()}}});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await?;
            let msg = format!("All pods will be deleted by {deadline}");
            note(
                ctx,
                claim,
                warning("TerminationGracePeriodExpiring", msg.clone()),
                ONCE,
            )
            .await;
            for n in &nodes {
                note(
                    ctx,
                    *n,
                    warning("TerminationGracePeriodExpiring", msg.clone()),
                    ONCE,
                )
                .await;
            }
            Ok(Action::requeue(Duration::from_millis(100)))
        }
        ClaimStep::DeleteNodes(names) => {
            let nodes_api: Api<Node> = Api::all(ctx.client.clone());
            for node in &names {
                tracing::info!(nodeclaim = %name, node = %node, "nodeclaim deleted; deleting its node");
                delete_ignoring_gone(&nodes_api, node).await?;
            }
            let msg = format!("Deleting node(s) {}", names.join(", "));
            note(ctx, claim, normal("Terminating", msg), ONCE).await;
            Ok(Action::requeue(DRAIN_POLL))
        }
        ClaimStep::AwaitNodes => Ok(Action::requeue(DRAIN_POLL)),
        ClaimStep::TerminateInstance(id) => match ctx.provider.delete(&id).await {
            Ok(()) => {
                mark_instance_terminating(claim, ctx).await?;
                Ok(Action::requeue(INSTANCE_POLL))
            }
            Err(e) if e.is_not_found() => {
                if let Some(at) = claim
                    .status
                    .as_ref()
                    .and_then(|s| s.condition(conditions::INSTANCE_TERMINATING))
                {
                    ctx.metrics.termination.instance_termination_finished(
                        &pool,
                        since(Some(&at.last_transition_time)),
                    );
                }
                finish_claim(claim, &pool, ctx).await
            }
            Err(e) => Err(e.into()),
        },
        ClaimStep::RemoveFinalizer => finish_claim(claim, &pool, ctx).await,
    }
}

async fn finish_claim(
    claim: &NodeClaim,
    pool: &str,
    ctx: &TerminationContext,
) -> Result<Action, TerminationError> {
    let name = claim.metadata.name.clone().unwrap_or_default();
    let api: Api<NodeClaim> = Api::all(ctx.client.clone());
    remove_finalizer(&api, claim).await?;
    ctx.metrics.nodeclaim_terminated(pool);
    ctx.metrics
        .termination
        .nodeclaim_termination_finished(pool, since(claim.metadata.deletion_timestamp.as_ref()));
    tracing::info!(nodeclaim = %name, "terminated nodeclaim");
    Ok(Action::await_change())
}

//! The disruption controller's I/O: the planning loop (gather, plan, validate, mark, launch,
//! enqueue) and the orchestration queue (wait for replacements, delete candidates, roll back).

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use karpenter_core::api::NodeClaim;
use karpenter_core::disruption::{self, Command, DisruptionInput, Plan};
use karpenter_core::ingest::disruption::{DisruptionObjects, disruption_input_from};
use karpenter_core::snapshot::PodKey;
use kube_client::api::{Api, PostParams};
use kube_client::runtime::events::EventType;
use kube_client::{Resource, ResourceExt};

use super::decide::{
    QueuedCommand, blocked_pools, describe, eligible_counts, kept_event, mark_in_flight,
    needs_validation, next_command, next_wake, nominate_new_nodes, nominations, reason_label,
    reason_name, stale_marks,
};
use super::marks::{mark, unmark};
use super::{DisruptionContext, FORCED_PASS};
use crate::controllers::events::Note;
use crate::model::gather::{Gathered, gather};
use crate::model::snapshot::{node_claim_for, pod_key};

/// How often the same blocked/unconsolidatable Event may repeat per object (Karpenter: 15 min
/// for `Unconsolidatable`).
const KEPT_EVENT_FLOOR: Duration = Duration::from_secs(900);
/// Karpenter dedupes the NodePool `DisruptionBlocked` event for a minute.
const POOL_EVENT_FLOOR: Duration = Duration::from_secs(60);
/// Queue progress Events (`DisruptionWaitingReadiness`, …) per object.
pub(super) const QUEUE_EVENT_FLOOR: Duration = Duration::from_secs(60);

/// What the last pass saw, so an unchanged cluster is not re-planned.
#[derive(Default)]
struct Memo {
    fingerprint: Option<u64>,
    at: Option<Instant>,
    wake: Option<Instant>,
}

impl Memo {
    fn unchanged(&self, fingerprint: u64) -> bool {
        let now = Instant::now();
        self.fingerprint == Some(fingerprint)
            && self
                .at
                .is_some_and(|at| now.duration_since(at) < FORCED_PASS)
            && self.wake.is_none_or(|w| now < w)
    }
}

/// The planning loop: a pass, then the poll interval (none after a pass that started a
/// command, as Karpenter).
pub(super) async fn plan_loop(ctx: Arc<DisruptionContext>) {
    let mut memo = Memo::default();
    loop {
        let started = ctx
            .metrics
            .reconcile
            .measure_pass("disruption", pass(&ctx, &mut memo), |_| true)
            .await;
        if !started {
            tokio::time::sleep(ctx.settings.poll_interval).await;
        }
    }
}

/// Hash of what a plan depends on in the model: every object's resourceVersion and the
/// commands in flight.
fn fingerprint(g: &Gathered, ctx: &DisruptionContext, queued: usize) -> u64 {
    let mut h = DefaultHasher::new();
    for n in &g.nodes {
        n.metadata.resource_version.hash(&mut h);
    }
    for c in &g.claims {
        c.metadata.resource_version.hash(&mut h);
    }
    for p in &g.pods {
        p.metadata.resource_version.hash(&mut h);
    }
    for p in ctx.state.node_pools.state() {
        p.metadata.resource_version.hash(&mut h);
    }
    for b in ctx.state.disruption_budgets.state() {
        b.metadata.resource_version.hash(&mut h);
    }
    g.instance_types.len().hash(&mut h);
    queued.hash(&mut h);
    h.finish()
}

/// The planner's input over the model, with the queued commands marked; `None` (logged)
/// when an object does not read.
fn input_of(
    g: &Gathered,
    ctx: &DisruptionContext,
    now: Timestamp,
    queue: &[QueuedCommand],
) -> Option<DisruptionInput> {
    let pdbs = ctx.state.disruption_budgets();
    let objects = DisruptionObjects {
        nodes: g.nodes.iter().map(AsRef::as_ref).collect(),
        claims: g.claims.iter().map(AsRef::as_ref).collect(),
        pods: g.pods.iter().map(AsRef::as_ref).collect(),
        pdbs: pdbs.iter().collect(),
    };
    let node_pools = g.node_pools();
    match disruption_input_from(
        &objects,
        &g.built.snapshot,
        &node_pools,
        now,
        ctx.settings.options.clone(),
        ctx.settings.min_savings_per_hour,
    ) {
        Ok(mut input) => {
            mark_in_flight(&mut input, queue);
            nominate_new_nodes(&mut input);
            Some(input)
        }
        Err(errors) => {
            // Planning around an object we cannot read could disrupt what it protects.
            for e in errors {
                tracing::warn!(problem = %e, "disruption pass skipped");
            }
            None
        }
    }
}

/// Plans on a blocking thread: a large cluster takes a while.
async fn plan_off_thread(input: DisruptionInput) -> Option<(DisruptionInput, Plan)> {
    tokio::task::spawn_blocking(move || {
        let plan = disruption::plan(&input);
        (input, plan)
    })
    .await
    .map_err(|e| tracing::error!(error = %e, "disruption planning failed"))
    .ok()
}

/// One pass; true when it started a command.
async fn pass(ctx: &Arc<DisruptionContext>, memo: &mut Memo) -> bool {
    let g = gather(&ctx.state, ctx.provider.as_ref()).await;
    let queue = ctx.queue.lock().await.clone();
    clean_up(ctx, &g, &queue).await;
    let print = fingerprint(&g, ctx, queue.len());
    if memo.unchanged(print) {
        return false;
    }
    let now = Timestamp::now();
    let Some(input) = input_of(&g, ctx, now, &queue) else {
        return false;
    };
    let started = Instant::now();
    let Some((input, plan)) = plan_off_thread(input).await else {
        return false;
    };
    let took = started.elapsed();
    report(ctx, &g, &input, &plan).await;
    *memo = Memo {
        fingerprint: Some(print),
        at: Some(Instant::now()),
        wake: next_wake(&plan, now).map(|d| Instant::now() + d),
    };
    let Some(command) = next_command(&plan) else {
        ctx.metrics
            .disruption
            .observe_evaluation("underutilized", "single", took);
        return false;
    };
    ctx.metrics.disruption.observe_evaluation(
        reason_label(command.method),
        command.method.consolidation_type(),
        took,
    );
    let command = command.clone();
    let consolidation_type = command.method.consolidation_type();
    if needs_validation(&command) {
        tokio::time::sleep(ctx.settings.validation_wait).await;
        let g = gather(&ctx.state, ctx.provider.as_ref()).await;
        let queue = ctx.queue.lock().await.clone();
        let Some(fresh) = input_of(&g, ctx, Timestamp::now(), &queue) else {
            return false;
        };
        let checked = tokio::task::spawn_blocking(move || {
            disruption::validate(&fresh, &command).map(|()| command)
        })
        .await;
        match checked {
            Ok(Ok(command)) => execute(ctx, &g, &command).await,
            Ok(Err(why)) => {
                ctx.metrics.disruption.failed_validation(consolidation_type);
                tracing::info!(reason = %why, "disruption command no longer holds; dropped");
                // Re-plan soon: the cluster changed.
                memo.fingerprint = None;
                false
            }
            Err(e) => {
                tracing::error!(error = %e, "disruption validation failed");
                false
            }
        }
    } else {
        execute(ctx, &g, &command).await
    }
}

/// Gauges and Events of a pass.
async fn report(ctx: &DisruptionContext, g: &Gathered, input: &DisruptionInput, plan: &Plan) {
    let m = &ctx.metrics.disruption;
    for (reason, count) in eligible_counts(input) {
        m.set_eligible_nodes(reason, count);
    }
    let budgets = disruption::budgets(input);
    for ((pool, reason), detail) in &budgets.detail {
        let allowed = detail.allowed.unwrap_or(i32::MAX as u32);
        m.set_allowed_disruptions(pool, reason_name(*reason), allowed);
    }
    for (pool, reason, message) in blocked_pools(&budgets) {
        let Some(view) = g.pools.iter().find(|p| p.name() == pool) else {
            continue;
        };
        let note = Note {
            type_: EventType::Normal,
            reason: "DisruptionBlocked",
            action: reason,
            message,
        };
        ctx.events
            .publish_distinct(&view.node_pool.object_ref(&()), note, POOL_EVENT_FLOOR)
            .await;
    }
    for kept in &plan.kept {
        let Some((reason, action, message)) = kept_event(kept) else {
            continue;
        };
        let note = || Note {
            type_: EventType::Normal,
            reason,
            action,
            message: message.clone(),
        };
        if let Some(node) = g.nodes.iter().find(|n| n.name_any() == kept.node) {
            ctx.events
                .publish_distinct(&node.object_ref(&()), note(), KEPT_EVENT_FLOOR)
                .await;
        }
        if let Some(claim) = g.claims.iter().find(|c| c.name_any() == kept.node_claim) {
            ctx.events
                .publish_distinct(&claim.object_ref(&()), note(), KEPT_EVENT_FLOOR)
                .await;
        }
    }
}

/// Starts `command`: mark the candidates, launch the replacements, enqueue. Any failure
/// unmarks the candidates; true when the command was enqueued.
async fn execute(ctx: &DisruptionContext, g: &Gathered, command: &Command) -> bool {
    let id = ctx.next_id.fetch_add(1, Ordering::Relaxed);
    let text = describe(command);
    tracing::info!(
        command = id,
        reason = reason_label(command.method),
        "disrupting node(s): {text}"
    );
    let nodes: Vec<String> = command.candidates.iter().map(|d| d.node.clone()).collect();
    let claims: Vec<String> = command
        .candidates
        .iter()
        .map(|d| d.node_claim.clone())
        .collect();
    let reason = command.method.reason().map_or("Expired", reason_name);
    if let Err(e) = mark(ctx, &nodes, &claims, reason, &text).await {
        tracing::warn!(command = id, error = %e, "could not mark the candidates; not disrupting");
        unmark(ctx, &nodes, &claims).await;
        return false;
    }
    let mut created = Vec::new();
    for r in &command.replacements {
        let Some(pool) = g.pools.iter().find(|p| p.name() == r.node_pool) else {
            tracing::warn!(command = id, nodepool = %r.node_pool, "replacement's NodePool is gone");
            unmark(ctx, &nodes, &claims).await;
            return false;
        };
        let claim = node_claim_for(&r.launch_claim(), pool);
        let api: Api<NodeClaim> = Api::all(ctx.client.clone());
        match api.create(&PostParams::default(), &claim).await {
            Ok(c) => {
                ctx.metrics
                    .nodeclaim_created(pool.name(), reason_label(command.method));
                created.push(c.name_any());
            }
            Err(e) => {
                // Replacements already created stay as ordinary nodes (Karpenter does too).
                tracing::warn!(command = id, error = %e, "could not create a replacement; not disrupting");
                unmark(ctx, &nodes, &claims).await;
                return false;
            }
        }
    }
    if !created.is_empty() {
        tracing::info!(command = id, replacements = ?created, "launching replacement(s)");
    }
    let notes = nominations(command, &created);
    let queued = QueuedCommand::new(id, command, created, Timestamp::now());
    ctx.queue.lock().await.push(queued);
    if !notes.is_empty() {
        let pods: HashMap<PodKey, &Pod> = g.pods.iter().map(|p| (pod_key(p), p.as_ref())).collect();
        for (key, message) in notes {
            let Some(pod) = pods.get(&key) else { continue };
            let note = Note {
                type_: EventType::Normal,
                reason: "Nominated",
                action: "Disruption",
                message,
            };
            ctx.events
                .publish_distinct(&pod.object_ref(&()), note, QUEUE_EVENT_FLOOR)
                .await;
        }
    }
    ctx.metrics.disruption.decision(
        command.action.as_str(),
        reason_label(command.method),
        command.method.consolidation_type(),
    );
    true
}

/// Removes the marks of earlier commands that no queued command holds (a crash, a failed
/// start): Karpenter's cleanup at the start of every pass.
async fn clean_up(ctx: &DisruptionContext, g: &Gathered, queue: &[QueuedCommand]) {
    let nodes: Vec<&Node> = g.nodes.iter().map(AsRef::as_ref).collect();
    let claims: Vec<&NodeClaim> = g.claims.iter().map(AsRef::as_ref).collect();
    let stale = stale_marks(&nodes, &claims, queue);
    if stale.nodes.is_empty() && stale.claims.is_empty() {
        return;
    }
    tracing::info!(nodes = ?stale.nodes, nodeclaims = ?stale.claims, "removing disruption marks no command holds");
    unmark(ctx, &stale.nodes, &stale.claims).await;
}

//! The disruption controller's I/O: the planning loop (gather, plan, validate, mark, launch,
//! enqueue) and the orchestration queue (wait for replacements, delete candidates, roll back).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use karpenter_core::api::NodeClaim;
use karpenter_core::disruption::{self, Command, Disrupted, DisruptionInput, Plan};
use karpenter_core::ingest::disruption::{DisruptionObjects, disruption_input_from};
use kube_client::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube_client::runtime::events::EventType;
use kube_client::{Resource, ResourceExt};
use serde_json::Value;

use super::decide::{
    DISRUPTION_REASON, QueueStep, QueuedCommand, blocked_pools, describe, eligible_counts,
    kept_event, mark_in_flight, mark_patch, needs_validation, next_command, next_wake,
    nominate_new_nodes, queue_step, reason_label, reason_name, stale_marks, unmark_patch,
};
use super::{DisruptionContext, FORCED_PASS, QUEUE_POLL};
use crate::controllers::conditions::{guarded_status_patch, is_conflict, upsert_condition};
use crate::controllers::events::Note;
use crate::model::gather::{Gathered, gather};
use crate::model::snapshot::node_claim_for;

/// How often the same blocked/unconsolidatable Event may repeat per object (Karpenter: 15 min
/// for `Unconsolidatable`).
const KEPT_EVENT_FLOOR: Duration = Duration::from_secs(900);
/// Karpenter dedupes the NodePool `DisruptionBlocked` event for a minute.
const POOL_EVENT_FLOOR: Duration = Duration::from_secs(60);
/// Queue progress Events (`DisruptionWaitingReadiness`, …) per object.
const QUEUE_EVENT_FLOOR: Duration = Duration::from_secs(60);
/// Guarded writes retried this often on a conflict.
const WRITE_ATTEMPTS: usize = 3;

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
        let started = pass(&ctx, &mut memo).await;
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
    let queued = QueuedCommand::new(id, command, created, Timestamp::now());
    ctx.queue.lock().await.push(queued);
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

/// Patches the Node `name` with what `f` computes from its latest version, retrying on a
/// conflict; `Ok` when there was nothing to do or the Node is gone.
async fn patch_node(
    ctx: &DisruptionContext,
    name: &str,
    f: impl Fn(&Node) -> Option<Value>,
) -> Result<(), kube_client::Error> {
    let api: Api<Node> = Api::all(ctx.client.clone());
    for attempt in 1..=WRITE_ATTEMPTS {
        let Some(node) = api.get_opt(name).await? else {
            return Ok(());
        };
        let Some(patch) = f(&node) else {
            return Ok(());
        };
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if is_conflict(&e) && attempt < WRITE_ATTEMPTS => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sets (`Some(reason)`) or clears (`None`) the claim's `DisruptionReason` condition.
async fn set_reason(
    ctx: &DisruptionContext,
    name: &str,
    reason: Option<(&str, &str)>,
) -> Result<(), kube_client::Error> {
    let api: Api<NodeClaim> = Api::all(ctx.client.clone());
    for attempt in 1..=WRITE_ATTEMPTS {
        let Some(claim) = api.get_opt(name).await? else {
            return Ok(());
        };
        let mut status = claim.status.clone().unwrap_or_default();
        let changed = match reason {
            Some((reason, message)) => upsert_condition(
                &mut status,
                DISRUPTION_REASON,
                "True",
                reason,
                message,
                &claim,
            ),
            None => {
                let before = status.conditions.len();
                status.conditions.retain(|c| c.type_ != DISRUPTION_REASON);
                status.conditions.len() != before
            }
        };
        if !changed {
            return Ok(());
        }
        match api
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(guarded_status_patch(&claim.metadata, &status)),
            )
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if is_conflict(&e) && attempt < WRITE_ATTEMPTS => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Taints the candidates and sets their `DisruptionReason`.
async fn mark(
    ctx: &DisruptionContext,
    nodes: &[String],
    claims: &[String],
    reason: &str,
    message: &str,
) -> Result<(), kube_client::Error> {
    for n in nodes {
        patch_node(ctx, n, mark_patch).await?;
    }
    for c in claims {
        set_reason(ctx, c, Some((reason, message))).await?;
    }
    Ok(())
}

/// Untaints the nodes (unless they are being deleted: termination owns the taint then) and
/// clears the claims' `DisruptionReason`. Failures are logged; the next pass's cleanup
/// retries.
async fn unmark(ctx: &DisruptionContext, nodes: &[String], claims: &[String]) {
    for n in nodes {
        let deleting_claim = |node: &Node| {
            let name = node.metadata.name.as_deref();
            ctx.state
                .node_claims
                .find(|c| c.status.as_ref().and_then(|s| s.node_name.as_deref()) == name)
                .is_some_and(|c| c.metadata.deletion_timestamp.is_some())
        };
        let r = patch_node(ctx, n, |node| {
            if node.metadata.deletion_timestamp.is_some() || deleting_claim(node) {
                None
            } else {
                unmark_patch(node)
            }
        })
        .await;
        if let Err(e) = r {
            tracing::warn!(node = %n, error = %e, "could not remove the disrupted taint");
        }
    }
    for c in claims {
        if let Err(e) = set_reason(ctx, c, None).await {
            tracing::warn!(nodeclaim = %c, error = %e, "could not clear DisruptionReason");
        }
    }
}

/// The orchestration queue: every [`QUEUE_POLL`], each command in flight moves on.
pub(super) async fn queue_loop(ctx: Arc<DisruptionContext>) {
    loop {
        tokio::time::sleep(QUEUE_POLL).await;
        let commands = ctx.queue.lock().await.clone();
        if commands.is_empty() {
            continue;
        }
        let claims = ctx.state.node_claims.state();
        let claim_refs: Vec<&NodeClaim> = claims.iter().map(AsRef::as_ref).collect();
        for cmd in commands {
            let step = queue_step(
                &cmd,
                &claim_refs,
                Timestamp::now(),
                ctx.settings.queue_timeout,
            );
            let updated = advance(&ctx, cmd.clone(), step, &claims).await;
            let mut queue = ctx.queue.lock().await;
            match updated {
                Some(next) => {
                    if let Some(slot) = queue.iter_mut().find(|c| c.id == next.id) {
                        *slot = next;
                    }
                }
                None => queue.retain(|c| c.id != cmd.id),
            }
        }
    }
}

/// Publishes an Event on a candidate's Node and on its NodeClaim (those still in the model).
async fn note_candidate(
    ctx: &DisruptionContext,
    d: &Disrupted,
    type_: EventType,
    reason: &str,
    message: String,
) {
    if let Some(node) = ctx.state.nodes.find(|n| n.name_any() == d.node) {
        let note = queue_note(type_, reason, message.clone());
        ctx.events
            .publish(&node.object_ref(&()), note, QUEUE_EVENT_FLOOR)
            .await;
    }
    if let Some(claim) = ctx.state.node_claims.find(|c| c.name_any() == d.node_claim) {
        let note = queue_note(type_, reason, message);
        ctx.events
            .publish(&claim.object_ref(&()), note, QUEUE_EVENT_FLOOR)
            .await;
    }
}

fn queue_note<'a>(type_: EventType, reason: &'a str, message: String) -> Note<'a> {
    Note {
        type_,
        reason,
        action: "Disruption",
        message,
    }
}

/// Carries out one queue step; the command as it stays in the queue, or `None` when it
/// leaves it.
async fn advance(
    ctx: &DisruptionContext,
    mut cmd: QueuedCommand,
    step: QueueStep,
    claims: &[Arc<NodeClaim>],
) -> Option<QueuedCommand> {
    let claim_named = |name: &str| claims.iter().find(|c| c.name_any() == name).cloned();
    match step {
        QueueStep::Wait {
            launching,
            waiting,
            initialized,
        } => {
            cmd.initialized.extend(initialized);
            for (names, reason, verb) in [
                (&launching, "DisruptionLaunching", "Launching"),
                (
                    &waiting,
                    "DisruptionWaitingReadiness",
                    "Waiting on readiness to continue disruption for",
                ),
            ] {
                for name in names {
                    if let Some(c) = claim_named(name) {
                        let msg = format!("{verb} NodeClaim: {name}");
                        ctx.events
                            .publish(
                                &c.object_ref(&()),
                                queue_note(EventType::Normal, reason, msg),
                                QUEUE_EVENT_FLOOR,
                            )
                            .await;
                    }
                }
            }
            Some(cmd)
        }
        QueueStep::Delete { initialized } => {
            cmd.initialized.extend(initialized);
            let first = !cmd.deleted;
            let reason = cmd
                .method
                .reason()
                .map_or("Expired", reason_name)
                .to_owned();
            for d in cmd.candidates.clone() {
                if first {
                    let msg = format!("Disrupting Node: {reason}/{}", cmd.action.as_str());
                    note_candidate(ctx, &d, EventType::Normal, "DisruptionTerminating", msg).await;
                }
                let api: Api<NodeClaim> = Api::all(ctx.client.clone());
                match api.delete(&d.node_claim, &DeleteParams::default()).await {
                    Ok(_) => {
                        if first {
                            ctx.metrics.nodeclaim_disrupted(
                                &d.node_pool,
                                cmd.reason_label(),
                                d.capacity_type.as_deref().unwrap_or(""),
                            );
                        }
                    }
                    Err(kube_client::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => {
                        tracing::warn!(command = cmd.id, nodeclaim = %d.node_claim, error = %e, "could not delete a candidate; retrying");
                    }
                }
            }
            if first {
                tracing::info!(command = cmd.id, nodeclaims = ?cmd.candidates.iter().map(|d| &d.node_claim).collect::<Vec<_>>(), "replacements ready; deleting the candidates");
            }
            // Events and metrics once: while the model does not show every candidate
            // deleting, the next step deletes again (a failed delete is retried).
            cmd.deleted = true;
            Some(cmd)
        }
        QueueStep::Done => None,
        QueueStep::Rollback {
            why,
            never_initialized,
        } => {
            tracing::warn!(command = cmd.id, reason = %why, "disruption rolled back; the candidates stay");
            ctx.metrics.disruption.queue_failures(
                cmd.action.as_str(),
                cmd.reason_label(),
                cmd.method.consolidation_type(),
                never_initialized as u64,
            );
            let nodes: Vec<String> = cmd.candidates.iter().map(|d| d.node.clone()).collect();
            let claim_names: Vec<String> = cmd
                .candidates
                .iter()
                .map(|d| d.node_claim.clone())
                .collect();
            unmark(ctx, &nodes, &claim_names).await;
            let msg = format!("Disruption rolled back, the node stays: {why}");
            for d in &cmd.candidates {
                let (kind, reason) = (EventType::Warning, "DisruptionRolledBack");
                note_candidate(ctx, d, kind, reason, msg.clone()).await;
            }
            None
        }
    }
}

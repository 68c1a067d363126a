//! The orchestration queue: each command in flight waits for its replacements to initialize,
//! then deletes its candidates, or rolls back.

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use karpenter_core::api::NodeClaim;
use karpenter_core::disruption::Disrupted;
use kube_client::runtime::events::EventType;
use kube_client::{Resource, ResourceExt};

use super::apply::QUEUE_EVENT_FLOOR;
use super::decide::{QueueStep, QueuedCommand, queue_step, reason_name};
use super::marks::unmark;
use super::{DisruptionContext, QUEUE_POLL};
use crate::controllers::claim_delete::{ClaimDeleted, delete_node_claim};
use crate::controllers::events::Note;

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
                match delete_node_claim(&ctx.client, &d.node_claim, None).await {
                    Ok(ClaimDeleted::Now) => {
                        if first {
                            ctx.metrics.nodeclaim_disrupted(
                                &d.node_pool,
                                cmd.reason_label(),
                                d.capacity_type.as_deref().unwrap_or(""),
                            );
                            ctx.metrics.disruption.node_disrupted(
                                &d.node_pool,
                                cmd.action.as_str(),
                                cmd.reason_label(),
                                cmd.method.consolidation_type(),
                            );
                        }
                    }
                    Ok(ClaimDeleted::AlreadyGone) => {}
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

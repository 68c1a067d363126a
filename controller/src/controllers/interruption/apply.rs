//! Carries out one message's plan: events, the unavailable offering, the NodeClaim deletion,
//! the metrics, and the message's own deletion — which waits until every action succeeded, so
//! a failed API call gets the message again after the visibility timeout.

use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::jiff::Timestamp;
use karpenter_core::api::NodeClaim;
use karpenter_providers::aws::interruption::{InterruptionKind, parse};
use karpenter_providers::aws::sqs::QueueMessage;
use kube_client::runtime::events::EventType;
use kube_client::{Client, Resource};

use super::Handler;
use super::decide::{ClaimAction, EventNote, InstanceIndex, MessagePlan, TERMINATING, plan};
use crate::controllers::claim_delete::delete_this_node_claim;
use crate::controllers::events::{Events, Note};

/// The same event about the same object at most this often (Karpenter dedupes by UID).
const EVENT_FLOOR: Duration = Duration::from_secs(60);

/// The cluster writes of the handler, apart so tests can record them.
#[async_trait]
pub trait Writes: Send + Sync {
    /// Deletes the claim (with its UID as precondition); gone or replaced counts as done.
    async fn delete_claim(&self, claim: &NodeClaim) -> Result<(), String>;

    /// Publishes an Event about `object`.
    async fn publish(&self, object: &ObjectReference, note: Note<'_>);
}

/// [`Writes`] through the API server.
pub struct KubeWrites {
    /// API client.
    pub client: Client,
    /// Event publisher.
    pub events: Events,
}

#[async_trait]
impl Writes for KubeWrites {
    async fn delete_claim(&self, claim: &NodeClaim) -> Result<(), String> {
        delete_this_node_claim(&self.client, claim)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    async fn publish(&self, object: &ObjectReference, note: Note<'_>) {
        self.events.publish(object, note, EVENT_FLOOR).await
    }
}

/// How one received batch went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Messages deleted from the queue.
    pub deleted: usize,
    /// Messages left for redelivery (an action failed, or SQS refused the delete).
    pub kept: usize,
}

/// Handles a received batch, its messages concurrently, then deletes every handled one in a
/// single `DeleteMessageBatch`.
pub async fn handle_batch(
    ctx: &Handler,
    queue_url: &str,
    messages: &[QueueMessage],
    index: &InstanceIndex,
) -> BatchOutcome {
    let done = futures::future::join_all(messages.iter().map(|m| handle(ctx, m, index))).await;
    let handles: Vec<String> = messages
        .iter()
        .zip(&done)
        .filter(|(_, done)| **done)
        .map(|(m, _)| m.receipt_handle.clone())
        .collect();
    if handles.is_empty() {
        return BatchOutcome {
            deleted: 0,
            kept: messages.len(),
        };
    }
    let deleted = match ctx.sqs.delete(queue_url, &handles).await {
        Ok(refused) => {
            for (handle, code) in &refused {
                tracing::warn!(receipt_handle = %handle, code = %code, "SQS refused to delete an interruption message");
            }
            handles.len() - refused.len()
        }
        Err(err) => {
            // Redelivered after the visibility timeout; handling them again is harmless.
            tracing::warn!(error = %err, messages = handles.len(), "deleting interruption messages failed");
            0
        }
    };
    ctx.metrics.interruption.deleted(deleted as u64);
    BatchOutcome {
        deleted,
        kept: messages.len() - deleted,
    }
}

/// Handles `message`; true when it is done with and may be deleted from the queue.
pub async fn handle(ctx: &Handler, message: &QueueMessage, index: &InstanceIndex) -> bool {
    let id = message.message_id.as_str();
    match plan(parse(&message.body), index) {
        MessagePlan::Unreadable(err) => {
            tracing::warn!(message_id = %id, error = %err, "deleting an interruption message that cannot be read");
        }
        MessagePlan::Read {
            kind,
            message: parsed,
            actions,
            unknown,
        } => {
            ctx.metrics.interruption.received(kind.as_str());
            if !unknown.is_empty() {
                tracing::debug!(message_id = %id, kind = %kind, instances = ?unknown, "interruption message for instances that are not ours");
            }
            let mut failed = 0;
            for action in &actions {
                if !act(ctx, kind, action).await {
                    failed += 1;
                }
            }
            if failed > 0 {
                tracing::warn!(message_id = %id, kind = %kind, failed, "keeping the interruption message for redelivery");
                return false;
            }
            if let Some(at) = parsed.time {
                let waited = Timestamp::now().duration_since(at).as_secs_f64();
                ctx.metrics
                    .interruption
                    .observe_queue_duration(waited.max(0.0));
            }
        }
    }
    true
}

/// One claim's actions; false when an API call failed (the message is kept).
async fn act(ctx: &Handler, kind: InterruptionKind, action: &ClaimAction) -> bool {
    let target = &action.target;
    let claim = &target.claim;
    let name = target.claim_name();
    if let Some(offering) = &action.unavailable {
        ctx.provider.mark_unavailable(offering);
        tracing::info!(nodeclaim = %name, instance_type = %offering.0, zone = %offering.1, "spot offering unavailable for 3 minutes after an interruption warning");
    }
    let uid = claim.metadata.uid.clone().unwrap_or_default();
    if !action.delete {
        if let Some(event) = &action.event {
            publish(ctx, action, event, event.message, event.message).await;
        }
        return true;
    }
    if !ctx.first_action(&uid) {
        return true;
    }
    if let Some(event) = &action.event {
        publish(ctx, action, event, event.message, event.message).await;
    }
    match ctx.writes.delete_claim(claim).await {
        Ok(()) => {
            tracing::info!(nodeclaim = %name, instance = %target.instance_id, kind = %kind, "initiating delete from interruption message");
            ctx.metrics.nodeclaim_disrupted(
                target.node_pool(),
                kind.as_str(),
                target.capacity_type(),
            );
            let (reason, on_claim, on_node) = TERMINATING;
            let note = EventNote {
                type_: EventType::Warning,
                reason,
                message: on_claim,
            };
            publish(ctx, action, &note, on_claim, on_node).await;
            true
        }
        Err(err) => {
            ctx.forget_action(&uid);
            tracing::warn!(nodeclaim = %name, kind = %kind, error = %err, "deleting an interrupted nodeclaim failed");
            false
        }
    }
}

/// Publishes `note` on the claim (`on_claim`) and on its node (`on_node`).
async fn publish(
    ctx: &Handler,
    action: &ClaimAction,
    note: &EventNote,
    on_claim: &str,
    on_node: &str,
) {
    let make = |message: &str| Note {
        type_: note.type_,
        reason: note.reason,
        action: "Interruption",
        message: message.to_owned(),
    };
    ctx.writes
        .publish(&action.target.claim.object_ref(&()), make(on_claim))
        .await;
    if let Some(node) = &action.target.node {
        ctx.writes
            .publish(&node.object_ref(&()), make(on_node))
            .await;
    }
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;

//! The interruption controller (Karpenter's `interruption` controller): when
//! `INTERRUPTION_QUEUE` names an SQS queue, it long-polls the queue for the EC2 events
//! EventBridge forwards (spot interruption warnings, rebalance recommendations, instance
//! state changes, AWS Health scheduled changes, capacity reservation interruptions) and deletes
//! the NodeClaims they doom, so termination cordons and drains the node while the provisioner
//! launches replacement capacity inside the two-minute notice.
//!
//! - [`decide`] turns one message into actions, without I/O.
//! - [`apply`] performs them and says whether the message may be deleted.
//! - This module runs the loop: resolve the queue URL (`GetQueueUrl`), receive (10 messages,
//!   20 s long poll, 20 s visibility), handle the batch concurrently, repeat. A missing queue,
//!   denied permission or throttling is logged with what to fix, counted, and retried with
//!   backoff (1 s doubling to [`RETRY_MAX`]); the rest of the controller is untouched. A queue
//!   that disappears is looked up again by name, so a re-created queue is picked up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use karpenter_providers::CloudProvider;
use karpenter_providers::aws::sqs::{SqsApi, SqsError};

use crate::model::ClusterState;
use crate::runtime::metrics::Metrics;

pub mod apply;
pub mod decide;

pub use apply::{KubeWrites, Writes};
pub use decide::{InstanceIndex, MessagePlan, plan};

/// Longest wait between attempts while the queue cannot be read.
pub const RETRY_MAX: Duration = Duration::from_secs(30);

/// How long a claim this controller deleted is remembered, so a second message about the same
/// instance (a duplicate, a redelivery, or a state change after the spot warning) before the
/// store shows the deletion neither deletes nor counts it again.
const ACTED_MEMORY: Duration = Duration::from_secs(300);

/// What the message handlers share: the queue, the provider, the writes and the metrics.
pub struct Handler {
    /// The queue.
    pub sqs: Arc<dyn SqsApi>,
    /// Marks interrupted spot offerings unavailable.
    pub provider: Arc<dyn CloudProvider>,
    /// NodeClaim deletions and events.
    pub writes: Arc<dyn Writes>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Claims (by UID) deleted lately, with when.
    acted: Mutex<HashMap<String, Instant>>,
}

impl Handler {
    /// A handler over these.
    pub fn new(
        sqs: Arc<dyn SqsApi>,
        provider: Arc<dyn CloudProvider>,
        writes: Arc<dyn Writes>,
        metrics: Arc<Metrics>,
    ) -> Handler {
        Handler {
            sqs,
            provider,
            writes,
            metrics,
            acted: Mutex::new(HashMap::new()),
        }
    }

    /// True the first time `uid` is claimed for deletion within [`ACTED_MEMORY`].
    fn first_action(&self, uid: &str) -> bool {
        let mut acted = self.acted.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        acted.retain(|_, at| now.duration_since(*at) < ACTED_MEMORY);
        if acted.contains_key(uid) {
            return false;
        }
        acted.insert(uid.to_owned(), now);
        true
    }

    /// Forgets `uid` (its deletion failed; a redelivery should try again).
    fn forget_action(&self, uid: &str) {
        let mut acted = self.acted.lock().unwrap_or_else(|e| e.into_inner());
        acted.remove(uid);
    }
}

/// The loop's context.
pub struct InterruptionContext {
    /// The shared cluster model (claims and nodes by instance id).
    pub state: ClusterState,
    /// The queue's name (`INTERRUPTION_QUEUE`).
    pub queue_name: String,
    /// Handles each message.
    pub handler: Handler,
}

/// Where the loop stands with the queue.
#[derive(Debug, Default)]
pub struct QueueState {
    /// The resolved URL; `None` until resolved, and again after the queue went missing.
    pub url: Option<String>,
    /// Consecutive failed calls.
    pub failures: u32,
}

impl QueueState {
    /// After a failed call: forget the URL if the queue is gone (resolve it again next time),
    /// and how long to wait before the next attempt.
    pub fn failed(&mut self, err: &SqsError) -> Duration {
        if matches!(err, SqsError::QueueMissing { .. }) {
            self.url = None;
        }
        self.failures = self.failures.saturating_add(1);
        let exp = (self.failures - 1).min(10);
        Duration::from_secs(1 << exp).min(RETRY_MAX)
    }

    /// After a successful call; true when it ends a run of failures.
    pub fn succeeded(&mut self) -> bool {
        std::mem::take(&mut self.failures) > 0
    }
}

/// What an operator should do about `err`, for the log.
pub fn hint(err: &SqsError, queue: &str) -> String {
    match err {
        SqsError::QueueMissing { .. } => format!(
            "no SQS queue is named {queue:?} in this account and region: create it (the getting-started CloudFormation names it after the cluster, the Terraform module `Karpenter-<cluster>`) or fix settings.interruptionQueue"
        ),
        SqsError::AccessDenied { .. } => format!(
            "the controller role may not read queue {queue:?}: allow sqs:GetQueueUrl, sqs:ReceiveMessage and sqs:DeleteMessage on it"
        ),
        SqsError::Throttled { .. } => "SQS is throttling the controller".to_owned(),
        SqsError::Api { .. } | SqsError::Transport { .. } => {
            format!("queue {queue:?} could not be read")
        }
    }
}

/// Runs until the process ends.
pub async fn run(ctx: Arc<InterruptionContext>) {
    ctx.state.wait_synced().await;
    tracing::info!(queue = %ctx.queue_name, "interruption handling on");
    let mut queue = QueueState::default();
    loop {
        match poll_once(&ctx, &mut queue).await {
            Ok(()) => {
                ctx.handler.metrics.interruption.set_queue_available(true);
                if queue.succeeded() {
                    tracing::info!(queue = %ctx.queue_name, "interruption queue readable again");
                }
            }
            Err(err) => {
                ctx.handler.metrics.interruption.set_queue_available(false);
                ctx.handler
                    .metrics
                    .interruption
                    .queue_error(operation(&err), err.label());
                let wait = queue.failed(&err);
                tracing::warn!(
                    queue = %ctx.queue_name,
                    error = %err,
                    retry_in_s = wait.as_secs(),
                    "interruption handling paused: {}",
                    hint(&err, &ctx.queue_name)
                );
                tokio::time::sleep(wait).await;
            }
        }
    }
}

fn operation(err: &SqsError) -> &str {
    match err {
        SqsError::QueueMissing { operation, .. }
        | SqsError::AccessDenied { operation, .. }
        | SqsError::Throttled { operation, .. }
        | SqsError::Api { operation, .. }
        | SqsError::Transport { operation, .. } => operation,
    }
}

/// Resolves the queue if needed, receives one batch and handles it.
async fn poll_once(ctx: &InterruptionContext, queue: &mut QueueState) -> Result<(), SqsError> {
    let url = match &queue.url {
        Some(url) => url.clone(),
        None => {
            let url = ctx.handler.sqs.queue_url(&ctx.queue_name).await?;
            tracing::info!(queue = %ctx.queue_name, url = %url, "interruption queue found");
            queue.url = Some(url.clone());
            url
        }
    };
    let messages = ctx.handler.sqs.receive(&url).await?;
    if messages.is_empty() {
        return Ok(());
    }
    let index = InstanceIndex::new(&ctx.state.node_claims.state(), &ctx.state.nodes.state());
    // One received batch is one reconcile (the long poll that waited for it is not timed).
    let outcome = ctx
        .handler
        .metrics
        .reconcile
        .measure_pass(
            "interruption",
            apply::handle_batch(&ctx.handler, &url, &messages, &index),
            |o| o.kept == 0,
        )
        .await;
    tracing::debug!(
        received = messages.len(),
        deleted = outcome.deleted,
        kept = outcome.kept,
        "interruption messages handled"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn missing() -> SqsError {
        SqsError::from_code(
            "ReceiveMessage",
            "AWS.SimpleQueueService.NonExistentQueue",
            "gone",
        )
    }

    #[test]
    fn failures_back_off_to_the_cap_and_a_missing_queue_is_resolved_again() {
        let mut q = QueueState {
            url: Some("https://sqs/q".into()),
            failures: 0,
        };
        let throttled = SqsError::from_code("ReceiveMessage", "ThrottlingException", "slow");
        let waits: Vec<u64> = (0..4).map(|_| q.failed(&throttled).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8]);
        assert!(q.url.is_some(), "throttling keeps the URL");
        for _ in 0..10 {
            q.failed(&throttled);
        }
        assert_eq!(q.failed(&throttled), RETRY_MAX);
        q.failed(&missing());
        assert_eq!(q.url, None, "a missing queue is looked up by name again");
        assert!(q.succeeded(), "a success ends the run of failures");
        assert!(!q.succeeded());
        assert_eq!(q.failed(&missing()), Duration::from_secs(1));
    }

    #[test]
    fn hints_say_what_to_fix() {
        assert!(hint(&missing(), "prod").contains("settings.interruptionQueue"));
        let denied = SqsError::from_code("GetQueueUrl", "AccessDenied", "no");
        let h = hint(&denied, "prod");
        for action in ["sqs:GetQueueUrl", "sqs:ReceiveMessage", "sqs:DeleteMessage"] {
            assert!(h.contains(action), "{h}");
        }
    }
}

//! The disruption controller (Karpenter's `disruption` singleton and its orchestration queue):
//! a loop that asks `core` for a plan over the shared model, validates a consolidation after
//! a wait, marks the candidates, launches replacements and hands the command to a queue that
//! deletes the candidates once every replacement is initialized — or rolls the command back.
//! Termination then drains the deleted candidates within their PDBs.
//!
//! Decisions are pure ([`decide`]); the I/O is the plan pass ([`apply`]), the marks on
//! candidates ([`marks`]) and the queue ([`queue`]). This controller is the one writer
//! of the `DisruptionReason` condition, of the disrupted taint on nodes that are not being
//! deleted (termination owns it afterwards), and of replacement NodeClaims.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use karpenter_core::disruption::DisruptionOptions;
use karpenter_providers::CloudProvider;
use kube_client::Client;
use tokio::sync::Mutex;

use crate::controllers::events::Events;
use crate::model::ClusterState;
use crate::runtime::metrics::Metrics;

mod apply;
pub mod decide;
mod marks;
mod queue;

pub use decide::QueuedCommand;

/// How often the queue looks at the commands in flight (Karpenter: 1 s backoff start).
pub const QUEUE_POLL: Duration = Duration::from_secs(1);

/// A pass re-plans at least this often even when nothing it can see changed (prices,
/// capacity errors; Karpenter: 5 min).
pub const FORCED_PASS: Duration = Duration::from_secs(300);

/// The disruption controller's settings.
#[derive(Clone, Debug)]
pub struct DisruptionSettings {
    /// How often a pass runs when nothing changed.
    pub poll_interval: Duration,
    /// The wait before a consolidation is validated and carried out.
    pub validation_wait: Duration,
    /// A command whose replacements are not all initialized by then is rolled back.
    pub queue_timeout: Duration,
    /// Feature gates and extensions.
    pub options: DisruptionOptions,
    /// Least saving per hour of a consolidation (NodePools may override).
    pub min_savings_per_hour: f64,
}

/// Everything the disruption controller shares between its loop and its queue.
pub struct DisruptionContext {
    /// API client.
    pub client: Client,
    /// The shared cluster model.
    pub state: ClusterState,
    /// The cloud provider (instance types and prices).
    pub provider: Arc<dyn CloudProvider>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Events.
    pub events: Arc<Events>,
    /// Settings.
    pub settings: DisruptionSettings,
    /// Commands in flight.
    pub queue: Mutex<Vec<QueuedCommand>>,
    /// Command ids.
    pub next_id: AtomicU64,
}

impl DisruptionContext {
    /// A context with an empty queue.
    pub fn new(
        client: Client,
        state: ClusterState,
        provider: Arc<dyn CloudProvider>,
        metrics: Arc<Metrics>,
        events: Arc<Events>,
        settings: DisruptionSettings,
    ) -> DisruptionContext {
        DisruptionContext {
            client,
            state,
            provider,
            metrics,
            events,
            settings,
            queue: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
        }
    }
}

/// Runs the planning loop and the queue until the process ends (a return is a failure).
pub async fn run(ctx: Arc<DisruptionContext>) {
    tokio::join!(apply::plan_loop(ctx.clone()), queue::queue_loop(ctx));
}

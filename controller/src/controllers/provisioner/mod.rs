//! The provisioner: batches pending pods, asks `core` where they go, creates the NodeClaims the
//! decision calls for and tells each pod (events) where it should land or why it cannot.
//!
//! Batching is Karpenter's: a batch opens at the first pod change and closes when no change
//! came for `BATCH_IDLE_DURATION` or `BATCH_MAX_DURATION` has passed. A pass also runs every
//! [`RECHECK_INTERVAL`] so pods left pending (capacity errors, limits, a claim deleted by its
//! TTL) are looked at again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use karpenter_core::api::NodeClaim;
use karpenter_core::ingest::is_pending_unschedulable;
use karpenter_core::scheduling::{SolveOptions, solve};
use karpenter_providers::CloudProvider;
use kube_client::api::{Api, PostParams};
use kube_client::runtime::events::{Event, EventType, Recorder};
use kube_client::{Client, Resource};

use crate::controllers::events::series_action;
use crate::model::ClusterState;
use crate::model::gather::{Gathered, gather};
use crate::model::snapshot::pod_key;
use crate::runtime::metrics::Metrics;

mod apply;

pub use apply::{FAILED_SCHEDULING, PassWrites, apply_decision};

/// The `controller` label of the provisioner's metrics.
const CONTROLLER: &str = "provisioner";

/// The `scheduling_id` label: one series, the depth of the batch being solved.
const BATCH_ID: &str = "batch";

/// How often pending pods are looked at without any change.
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(10);

/// How long to wait for newly created NodeClaims to show up in the store before the next pass
/// (a pass that did not see them would launch for the same pods again).
const CLAIM_VISIBILITY_DEADLINE: Duration = Duration::from_secs(15);

/// What one provisioning pass did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PassOutcome {
    /// Pending pods considered.
    pub pending_pods: usize,
    /// Names of the NodeClaims created.
    pub created: Vec<String>,
    /// Pods that could not be placed, with core's reason.
    pub unschedulable: usize,
    /// NodeClaims the API server refused: (NodePool, error). The pass went on without them.
    pub failed: Vec<(String, String)>,
}

/// The provisioning loop.
pub struct Provisioner {
    client: Client,
    state: ClusterState,
    provider: Arc<dyn CloudProvider>,
    metrics: Arc<Metrics>,
    recorder: Recorder,
    batch_idle: Duration,
    batch_max: Duration,
    solve: SolveOptions,
}

impl Provisioner {
    /// A provisioner over the given state and provider.
    pub fn new(
        client: Client,
        state: ClusterState,
        provider: Arc<dyn CloudProvider>,
        metrics: Arc<Metrics>,
        recorder: Recorder,
        batch_idle: Duration,
        batch_max: Duration,
    ) -> Provisioner {
        Provisioner {
            client,
            state,
            provider,
            metrics,
            recorder,
            batch_idle,
            batch_max,
            solve: SolveOptions::default(),
        }
    }

    /// The same provisioner solving with `options` (packing rule and its knobs).
    pub fn with_solve_options(mut self, options: SolveOptions) -> Provisioner {
        self.solve = options;
        self
    }

    /// Runs forever: wait for a batch, provision, repeat.
    pub async fn run(self) {
        loop {
            self.wait_for_batch().await;
            let started = Instant::now();
            let outcome = self
                .metrics
                .reconcile
                .measure_pass(CONTROLLER, self.provision_once(), |o| o.failed.is_empty())
                .await;
            if outcome.pending_pods > 0 {
                tracing::info!(
                    pending = outcome.pending_pods,
                    created = outcome.created.len(),
                    failed = outcome.failed.len(),
                    unschedulable = outcome.unschedulable,
                    duration_ms = started.elapsed().as_millis() as u64,
                    "provisioning pass"
                );
            }
        }
    }

    fn pending_count(&self) -> usize {
        self.state
            .pods
            .state()
            .iter()
            .filter(|p| is_pending_unschedulable(p))
            .count()
    }

    /// Returns when a batch of pending pods is ready: after the idle window without pod
    /// changes, or the max window, or the periodic re-check.
    async fn wait_for_batch(&self) {
        loop {
            let tick = tokio::time::sleep(RECHECK_INTERVAL);
            tokio::select! {
                _ = self.state.pod_changed.notified() => {}
                _ = tick => {}
            }
            if self.pending_count() == 0 {
                continue;
            }
            let opened = tokio::time::Instant::now();
            let max = opened + self.batch_max;
            loop {
                let idle = tokio::time::Instant::now() + self.batch_idle;
                let deadline = idle.min(max);
                tokio::select! {
                    _ = self.state.pod_changed.notified() => {
                        if tokio::time::Instant::now() >= max { break; }
                    }
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
            self.metrics
                .set_scheduler_queue_depth(CONTROLLER, BATCH_ID, self.pending_count());
            return;
        }
    }

    /// One pass: snapshot, solve, create claims, emit events. A refused create is counted in
    /// [`PassOutcome::failed`]; it does not end the pass.
    pub async fn provision_once(&self) -> PassOutcome {
        let Gathered {
            pools, pods, built, ..
        } = gather(&self.state, self.provider.as_ref()).await;
        for p in &built.problems {
            tracing::warn!(problem = %p, "object left out of scheduling");
        }
        let mut outcome = PassOutcome {
            pending_pods: built.snapshot.pods.len(),
            ..PassOutcome::default()
        };
        if built.snapshot.pods.is_empty() {
            return outcome;
        }
        let started = Instant::now();
        let decision = solve(&built.snapshot, &self.solve);
        self.metrics
            .observe_scheduling_duration(CONTROLLER, started.elapsed());

        let pods_by_key: BTreeMap<_, &Arc<Pod>> = pods.iter().map(|p| (pod_key(p), p)).collect();
        apply_decision(
            self,
            &decision,
            &pools,
            &pods_by_key,
            &self.metrics,
            &mut outcome,
        )
        .await;
        self.wait_for_claims(&outcome.created).await;
        outcome
    }

    /// Polls the store until the created claims are visible, with a deadline.
    async fn wait_for_claims(&self, names: &[String]) {
        if names.is_empty() {
            return;
        }
        let wanted: BTreeSet<&str> = names.iter().map(String::as_str).collect();
        let deadline = Instant::now() + CLAIM_VISIBILITY_DEADLINE;
        while Instant::now() < deadline {
            let seen = self
                .state
                .node_claims
                .state()
                .iter()
                .filter(|c| {
                    c.metadata
                        .name
                        .as_deref()
                        .is_some_and(|n| wanted.contains(n))
                })
                .count();
            if seen == wanted.len() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::warn!(claims = ?names, "created nodeclaims not visible yet");
    }
}

#[async_trait]
impl PassWrites for Provisioner {
    async fn create_claim(&self, claim: &NodeClaim) -> Result<String, String> {
        let api: Api<NodeClaim> = Api::all(self.client.clone());
        let created = api
            .create(&PostParams::default(), claim)
            .await
            .map_err(|e| e.to_string())?;
        Ok(created.metadata.name.unwrap_or_default())
    }

    async fn pod_event(&self, pod: &Pod, type_: EventType, reason: &str, note: String) {
        let reference: ObjectReference = pod.object_ref(&());
        let ev = Event {
            type_,
            reason: reason.to_owned(),
            action: series_action("Provisioning", &note),
            note: Some(note),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &reference).await {
            tracing::debug!(error = %e, "event not recorded");
        }
    }
}

//! controller-runtime's reconcile metrics, which Karpenter's performance dashboards query
//! (`controller_runtime_reconcile_total{controller,result}`,
//! `controller_runtime_reconcile_time_seconds{controller}`,
//! `controller_runtime_reconcile_errors_total{controller}`), unprefixed as controller-runtime
//! names them. A reconcile of a kube-runtime controller and a pass of a loop controller
//! (provisioner, disruption, interruption, …) are each one reconcile.

use std::future::Future;
use std::time::{Duration, Instant};

use kube_client::runtime::controller::Action;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::{CounterVec, HistogramVec, duration_histogram, labels};

/// The `result` label of a reconcile (controller-runtime's values; karpenter-rs never asks for
/// an immediate requeue, so `requeue` does not occur).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReconcileResult {
    /// Done until the next change.
    Success,
    /// Done, with a reconcile asked for after a delay.
    RequeueAfter,
    /// Failed.
    Error,
}

impl ReconcileResult {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            ReconcileResult::Success => "success",
            ReconcileResult::RequeueAfter => "requeue_after",
            ReconcileResult::Error => "error",
        }
    }

    /// The result of a kube-runtime reconcile.
    pub fn of<E>(out: &Result<Action, E>) -> Self {
        match out {
            Ok(action) if *action == Action::await_change() => ReconcileResult::Success,
            Ok(_) => ReconcileResult::RequeueAfter,
            Err(_) => ReconcileResult::Error,
        }
    }
}

/// The reconcile counters and latency histogram.
pub struct ReconcileMetrics {
    total: CounterVec<2>,
    time: HistogramVec<1>,
    errors: CounterVec<1>,
}

impl ReconcileMetrics {
    /// The metrics, registered in the root (unprefixed) registry.
    pub(super) fn register(root: &mut Registry) -> ReconcileMetrics {
        let m = ReconcileMetrics {
            total: Family::default(),
            time: Family::new_with_constructor(duration_histogram),
            errors: Family::default(),
        };
        root.register(
            "controller_runtime_reconcile",
            "Total number of reconciliations per controller",
            m.total.clone(),
        );
        root.register(
            "controller_runtime_reconcile_time_seconds",
            "Length of time per reconciliation per controller",
            m.time.clone(),
        );
        root.register(
            "controller_runtime_reconcile_errors",
            "Total number of reconciliation errors per controller",
            m.errors.clone(),
        );
        m
    }

    /// One reconcile of `controller` ended with `result` after `took`.
    pub fn reconciled(&self, controller: &str, result: ReconcileResult, took: Duration) {
        self.total
            .get_or_create(&labels(
                ["controller", "result"],
                [controller, result.label()],
            ))
            .inc();
        self.time
            .get_or_create(&labels(["controller"], [controller]))
            .observe(took.as_secs_f64());
    }

    /// `controller_runtime_reconcile_errors_total{controller}` += 1 (a failed reconcile that
    /// was not a lost write race).
    pub fn error(&self, controller: &str) {
        self.errors
            .get_or_create(&labels(["controller"], [controller]))
            .inc();
    }

    /// Runs one kube-runtime reconcile of `controller`, counting and timing it.
    pub async fn measure<E>(
        &self,
        controller: &str,
        reconcile: impl Future<Output = Result<Action, E>>,
    ) -> Result<Action, E> {
        let started = Instant::now();
        let out = reconcile.await;
        self.reconciled(controller, ReconcileResult::of(&out), started.elapsed());
        out
    }

    /// Runs one pass of a loop controller, counting and timing it; `succeeded` says whether
    /// the pass's output was a success.
    pub async fn measure_pass<T>(
        &self,
        controller: &str,
        pass: impl Future<Output = T>,
        succeeded: impl FnOnce(&T) -> bool,
    ) -> T {
        let started = Instant::now();
        let out = pass.await;
        let result = if succeeded(&out) {
            ReconcileResult::Success
        } else {
            ReconcileResult::Error
        };
        self.reconciled(controller, result, started.elapsed());
        out
    }
}

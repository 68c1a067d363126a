//! Interruption metrics under Karpenter v1's names
//! (`karpenter_interruption_{received,deleted}_messages_total`,
//! `karpenter_interruption_message_queue_duration_seconds`), plus two of ours for the queue's
//! health: `karpenter_interruption_queue_available` and
//! `karpenter_interruption_queue_errors_total{operation,error}`. Interrupted claims are counted
//! in `karpenter_nodeclaims_disrupted_total{reason=<message type>}` with the other claims.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use super::v1beta1::{BareCounter, BareCounterVec};
use super::{CounterVec, duration_histogram, labels};

/// The interruption controller's metrics.
pub struct InterruptionMetrics {
    received: CounterVec<1>,
    deleted: Counter,
    queue_duration: Histogram,
    queue_available: Gauge<f64, AtomicU64>,
    queue_errors: CounterVec<2>,
    received_v1beta1: BareCounterVec<1>,
    deleted_v1beta1: BareCounter,
}

impl InterruptionMetrics {
    /// The metrics, registered in `r` (whose prefix is `karpenter`).
    pub(super) fn register(r: &mut Registry) -> InterruptionMetrics {
        let m = InterruptionMetrics {
            received: Family::default(),
            deleted: Counter::default(),
            queue_duration: duration_histogram(),
            queue_available: Gauge::default(),
            queue_errors: Family::default(),
            received_v1beta1: Family::default(),
            deleted_v1beta1: BareCounter::default(),
        };
        r.register(
            "interruption_received_messages",
            "Count of messages received from the SQS queue. Broken down by message type.",
            m.received.clone(),
        );
        r.register(
            "interruption_deleted_messages",
            "Count of messages deleted from the SQS queue.",
            m.deleted.clone(),
        );
        r.register(
            "interruption_message_queue_duration_seconds",
            "Amount of time an interruption message is on the queue before it is processed by karpenter.",
            m.queue_duration.clone(),
        );
        r.register(
            "interruption_queue_available",
            "1 when the last call to the interruption queue succeeded, 0 while it fails (missing queue, denied permission, throttling). karpenter-rs only.",
            m.queue_available.clone(),
        );
        r.register(
            "interruption_queue_errors",
            "Failed calls to the interruption queue, by SQS operation and error class. karpenter-rs only.",
            m.queue_errors.clone(),
        );
        m
    }

    /// Karpenter 0.36's names of the message counters (without `_total`).
    pub(super) fn register_v1beta1(&self, r: &mut Registry) {
        r.register(
            "interruption_received_messages",
            "Count of messages received from the SQS queue. Broken down by message type. (Karpenter 0.36 name.)",
            self.received_v1beta1.clone(),
        );
        r.register(
            "interruption_deleted_messages",
            "Count of messages deleted from the SQS queue. (Karpenter 0.36 name.)",
            self.deleted_v1beta1.clone(),
        );
    }

    /// `karpenter_interruption_received_messages_total{message_type}` += 1 (e.g.
    /// `spot_interrupted`, `scheduled_change`, `no_op`).
    pub fn received(&self, message_type: &str) {
        let l = labels(["message_type"], [message_type]);
        self.received.get_or_create(&l).inc();
        self.received_v1beta1.get_or_create(&l).inc();
    }

    /// `karpenter_interruption_deleted_messages_total` += `count`.
    pub fn deleted(&self, count: u64) {
        self.deleted.inc_by(count);
        self.deleted_v1beta1.inc_by(count);
    }

    /// `karpenter_interruption_message_queue_duration_seconds`: from the event's time to its
    /// handling.
    pub fn observe_queue_duration(&self, seconds: f64) {
        self.queue_duration.observe(seconds);
    }

    /// `karpenter_interruption_queue_available` = 1 or 0.
    pub fn set_queue_available(&self, available: bool) {
        self.queue_available.set(if available { 1.0 } else { 0.0 });
    }

    /// `karpenter_interruption_queue_errors_total{operation,error}` += 1.
    pub fn queue_error(&self, operation: &str, error: &str) {
        let l = labels(["operation", "error"], [operation, error]);
        self.queue_errors.get_or_create(&l).inc();
    }
}

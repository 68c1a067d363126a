//! The handler with a recording queue, recording writes and the fake provider: which messages
//! are deleted, what is written, what is counted.

use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Node;
use karpenter_providers::FakeCloudProvider;
use karpenter_providers::aws::sqs::{SqsApi, SqsError};
use karpenter_providers::fake::Call;
use serde_json::json;

use super::*;
use crate::runtime::metrics::Metrics;

#[derive(Default)]
struct FakeSqs {
    deleted: Mutex<Vec<String>>,
    refuse_deletes: bool,
}

#[async_trait]
impl SqsApi for FakeSqs {
    async fn queue_url(&self, _: &str) -> Result<String, SqsError> {
        Ok("url".into())
    }
    async fn receive(&self, _: &str) -> Result<Vec<QueueMessage>, SqsError> {
        Ok(vec![])
    }
    async fn delete(&self, _: &str, handles: &[String]) -> Result<Vec<(String, String)>, SqsError> {
        if self.refuse_deletes {
            return Err(SqsError::from_code(
                "DeleteMessageBatch",
                "AccessDenied",
                "no",
            ));
        }
        self.deleted.lock().unwrap().extend(handles.iter().cloned());
        Ok(vec![])
    }
}

#[derive(Default)]
struct FakeWrites {
    /// Claim deletes fail while set.
    failing: Mutex<bool>,
    deletes: Mutex<Vec<String>>,
    /// `(kind/name, reason, message)`.
    events: Mutex<Vec<(String, String, String)>>,
}

#[async_trait]
impl Writes for FakeWrites {
    async fn delete_claim(&self, claim: &NodeClaim) -> Result<(), String> {
        if *self.failing.lock().unwrap() {
            return Err("the server is currently unable to handle the request".into());
        }
        let name = claim.metadata.name.clone().unwrap_or_default();
        self.deletes.lock().unwrap().push(name);
        Ok(())
    }
    async fn publish(&self, object: &ObjectReference, note: Note<'_>) {
        let who = format!(
            "{}/{}",
            object.kind.as_deref().unwrap_or(""),
            object.name.as_deref().unwrap_or("")
        );
        self.events
            .lock()
            .unwrap()
            .push((who, note.reason.to_owned(), note.message));
    }
}

struct Bed {
    sqs: Arc<FakeSqs>,
    writes: Arc<FakeWrites>,
    provider: Arc<FakeCloudProvider>,
    metrics: Arc<Metrics>,
    handler: Handler,
    index: InstanceIndex,
}

fn bed(refuse_deletes: bool) -> Bed {
    let sqs = Arc::new(FakeSqs {
        refuse_deletes,
        ..FakeSqs::default()
    });
    let writes = Arc::new(FakeWrites::default());
    let provider = Arc::new(FakeCloudProvider::new());
    let metrics = Arc::new(Metrics::new());
    let handler = Handler::new(
        sqs.clone(),
        provider.clone(),
        writes.clone(),
        metrics.clone(),
    );
    let claim: NodeClaim = serde_json::from_value(json!({
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodeClaim",
        "metadata": {"name": "spot-1", "uid": "u-1", "labels": {
            "karpenter.sh/nodepool": "default",
            "karpenter.sh/capacity-type": "spot",
            "node.kubernetes.io/instance-type": "m5.large",
            "topology.kubernetes.io/zone": "us-east-1a",
        }},
        "spec": {
            "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
            "requirements": [],
        },
        "status": {"providerID": "aws:///us-east-1a/i-spot"},
    }))
    .unwrap();
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "ip-10-0-0-1"},
        "spec": {"providerID": "aws:///us-east-1a/i-spot"},
    }))
    .unwrap();
    let index = InstanceIndex::new(&[Arc::new(claim)], &[Arc::new(node)]);
    Bed {
        sqs,
        writes,
        provider,
        metrics,
        handler,
        index,
    }
}

fn message(receipt: &str, body: String) -> QueueMessage {
    QueueMessage {
        message_id: format!("m-{receipt}"),
        receipt_handle: receipt.into(),
        body,
        sent_at_ms: None,
    }
}

fn event(detail_type: &str, instance: &str) -> String {
    json!({
        "version": "0", "id": "e", "source": "aws.ec2", "detail-type": detail_type,
        "time": Timestamp::now().to_string(),
        "detail": {"instance-id": instance, "instance-action": "terminate"},
    })
    .to_string()
}

fn spot(instance: &str) -> String {
    event("EC2 Spot Instance Interruption Warning", instance)
}

/// Handles `m` as a batch of one; true when it was deleted from the queue.
async fn one(b: &Bed, m: QueueMessage) -> bool {
    handle_batch(&b.handler, "url", &[m], &b.index)
        .await
        .deleted
        == 1
}

/// The value of one series in the exposition, if present.
fn metric(m: &Metrics, series: &str) -> Option<f64> {
    m.encode().lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
    })
}

const DISRUPTED: &str = "karpenter_nodeclaims_disrupted_total{reason=\"spot_interrupted\",nodepool=\"default\",capacity_type=\"spot\"}";
const RECEIVED_SPOT: &str =
    "karpenter_interruption_received_messages_total{message_type=\"spot_interrupted\"}";
const DELETED: &str = "karpenter_interruption_deleted_messages_total";

#[tokio::test]
async fn a_spot_interruption_deletes_the_claim_marks_the_offering_and_deletes_the_message() {
    let b = bed(false);
    assert!(one(&b, message("r1", spot("i-spot"))).await);
    assert_eq!(*b.writes.deletes.lock().unwrap(), ["spot-1"]);
    assert_eq!(*b.sqs.deleted.lock().unwrap(), ["r1"]);
    let events = b.writes.events.lock().unwrap().clone();
    let expect = |who: &str, reason: &str, message: &str| {
        (who.to_owned(), reason.to_owned(), message.to_owned())
    };
    assert_eq!(
        events,
        [
            expect(
                "NodeClaim/spot-1",
                "SpotInterrupted",
                "Spot interruption warning was triggered"
            ),
            expect(
                "Node/ip-10-0-0-1",
                "SpotInterrupted",
                "Spot interruption warning was triggered"
            ),
            expect(
                "NodeClaim/spot-1",
                "TerminatingOnInterruption",
                "Interruption triggered termination for the NodeClaim"
            ),
            expect(
                "Node/ip-10-0-0-1",
                "TerminatingOnInterruption",
                "Interruption triggered termination for the Node"
            ),
        ]
    );
    assert!(b.provider.calls().contains(&Call::MarkUnavailable {
        offering: ("m5.large".into(), "us-east-1a".into(), "spot".into())
    }));
    assert_eq!(metric(&b.metrics, RECEIVED_SPOT), Some(1.0));
    assert_eq!(metric(&b.metrics, DELETED), Some(1.0));
    assert_eq!(metric(&b.metrics, DISRUPTED), Some(1.0));
    assert_eq!(
        metric(
            &b.metrics,
            "karpenter_interruption_message_queue_duration_seconds_count"
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn unreadable_no_op_and_foreign_messages_are_deleted_without_writes() {
    let b = bed(false);
    for (receipt, body) in [
        ("bad", "{\"version\": 0".to_owned()),
        (
            "noop",
            event("EC2 Instance Launch Successful", "i-spot").replace("aws.ec2", "aws.autoscaling"),
        ),
        ("foreign", spot("i-not-ours")),
    ] {
        assert!(one(&b, message(receipt, body)).await, "{receipt}");
    }
    assert_eq!(*b.sqs.deleted.lock().unwrap(), ["bad", "noop", "foreign"]);
    assert!(b.writes.deletes.lock().unwrap().is_empty());
    assert!(b.writes.events.lock().unwrap().is_empty());
    assert_eq!(metric(&b.metrics, DELETED), Some(3.0));
    assert_eq!(
        metric(
            &b.metrics,
            "karpenter_interruption_received_messages_total{message_type=\"no_op\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&b.metrics, RECEIVED_SPOT),
        Some(1.0),
        "the unreadable one is not counted as received"
    );
}

#[tokio::test]
async fn a_failed_delete_keeps_the_message_and_its_redelivery_acts_once() {
    let b = bed(false);
    *b.writes.failing.lock().unwrap() = true;
    assert!(!one(&b, message("r1", spot("i-spot"))).await);
    assert!(
        b.sqs.deleted.lock().unwrap().is_empty(),
        "kept for redelivery"
    );
    assert_eq!(metric(&b.metrics, DISRUPTED), None);
    *b.writes.failing.lock().unwrap() = false;
    assert!(one(&b, message("r1b", spot("i-spot"))).await);
    assert_eq!(*b.writes.deletes.lock().unwrap(), ["spot-1"]);
    assert_eq!(metric(&b.metrics, DISRUPTED), Some(1.0));
}

#[tokio::test]
async fn two_messages_about_one_instance_delete_and_count_it_once() {
    let b = bed(false);
    let terminated = json!({
        "version": "0", "source": "aws.ec2",
        "detail-type": "EC2 Instance State-change Notification",
        "detail": {"instance-id": "i-spot", "state": "shutting-down"},
    })
    .to_string();
    let batch = [message("a", spot("i-spot")), message("b", terminated)];
    let outcome = handle_batch(&b.handler, "url", &batch, &b.index).await;
    assert_eq!(
        outcome,
        BatchOutcome {
            deleted: 2,
            kept: 0
        },
        "both messages are deleted"
    );
    assert_eq!(b.writes.deletes.lock().unwrap().len(), 1);
    let disrupted: f64 = ["spot_interrupted", "instance_terminated"]
        .iter()
        .filter_map(|r| {
            metric(
                &b.metrics,
                &format!("karpenter_nodeclaims_disrupted_total{{reason=\"{r}\",nodepool=\"default\",capacity_type=\"spot\"}}"),
            )
        })
        .sum();
    assert_eq!(disrupted, 1.0);
}

#[tokio::test]
async fn a_rebalance_recommendation_only_publishes_events() {
    let b = bed(false);
    let body = event("EC2 Instance Rebalance Recommendation", "i-spot");
    assert!(one(&b, message("r", body)).await);
    assert!(b.writes.deletes.lock().unwrap().is_empty());
    let reasons: Vec<String> = b
        .writes
        .events
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.1.clone())
        .collect();
    assert_eq!(
        reasons,
        ["SpotRebalanceRecommendation", "SpotRebalanceRecommendation"]
    );
    assert!(
        !b.provider
            .calls()
            .iter()
            .any(|c| matches!(c, Call::MarkUnavailable { .. }))
    );
}

#[tokio::test]
async fn a_message_sqs_refuses_to_delete_is_reported_kept() {
    let b = bed(true);
    assert!(!one(&b, message("r", spot("i-spot"))).await);
    assert_eq!(metric(&b.metrics, DELETED), Some(0.0));
    assert_eq!(
        *b.writes.deletes.lock().unwrap(),
        ["spot-1"],
        "the claim still goes"
    );
}

#[tokio::test]
async fn a_batch_deletes_what_was_handled_and_keeps_only_what_failed() {
    let b = bed(false);
    *b.writes.failing.lock().unwrap() = true;
    let batch = [
        message("doomed", spot("i-spot")),
        message("foreign", spot("i-not-ours")),
        message("bad", "{".into()),
    ];
    let outcome = handle_batch(&b.handler, "url", &batch, &b.index).await;
    assert_eq!(
        outcome,
        BatchOutcome {
            deleted: 2,
            kept: 1
        }
    );
    assert_eq!(*b.sqs.deleted.lock().unwrap(), ["foreign", "bad"]);
    assert_eq!(metric(&b.metrics, DELETED), Some(2.0));
}

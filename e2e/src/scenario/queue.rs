//! The interruption queue from the tests' side: an SQS client on the fake AWS endpoint, a queue
//! per test (the seeded one is shared by every test), the EventBridge bodies EC2 and AWS
//! Health send, and reading the controller's metrics.

use aws_sdk_sqs::types::QueueAttributeName;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use crate::harness::Ctx;

/// A client of the bed's SQS, straight to moto (not through a controller's fault proxy).
pub fn sqs(ctx: &Ctx) -> aws_sdk_sqs::Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new(ctx.env.aws.region.clone()))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "e2e",
        ))
        .endpoint_url(&ctx.env.aws.endpoint)
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

/// Creates the queue `name` (as the getting-started CloudFormation does: 5 minutes retention)
/// and returns its URL.
pub async fn create_queue(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    let out = sqs
        .create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::MessageRetentionPeriod, "300")
        .send()
        .await
        .expect("create the interruption queue");
    out.queue_url().expect("queue url").to_owned()
}

/// Deletes the queue at `url`.
pub async fn delete_queue(sqs: &aws_sdk_sqs::Client, url: &str) {
    sqs.delete_queue()
        .queue_url(url)
        .send()
        .await
        .expect("delete the queue");
}

/// Sends one message with `body`.
pub async fn send(sqs: &aws_sdk_sqs::Client, url: &str, body: &str) {
    sqs.send_message()
        .queue_url(url)
        .message_body(body)
        .send()
        .await
        .expect("send a message");
}

/// Sends `bodies` in batches of 10 (SQS's `SendMessageBatch` limit).
pub async fn send_all(sqs: &aws_sdk_sqs::Client, url: &str, bodies: &[String]) {
    use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
    for (chunk_no, chunk) in bodies.chunks(10).enumerate() {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, body)| {
                SendMessageBatchRequestEntry::builder()
                    .id(format!("m{chunk_no}-{i}"))
                    .message_body(body)
                    .build()
                    .expect("entry")
            })
            .collect();
        let out = sqs
            .send_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .expect("send a batch");
        assert!(out.failed().is_empty(), "{:?}", out.failed());
    }
}

/// Messages on the queue, visible or in flight (`None` when the queue cannot be read).
pub async fn depth(sqs: &aws_sdk_sqs::Client, url: &str) -> Option<u64> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .ok()?;
    let attrs = out.attributes()?;
    let read = |name: QueueAttributeName| -> u64 {
        attrs
            .get(&name)
            .and_then(|v| v.parse().ok())
            .unwrap_or_default()
    };
    Some(
        read(QueueAttributeName::ApproximateNumberOfMessages)
            + read(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    )
}

/// An EventBridge event as EC2 or AWS Health sends it, timed now.
pub fn event(source: &str, detail_type: &str, detail: Value) -> String {
    json!({
        "version": "0",
        "id": format!("{:032x}", rand_id()),
        "detail-type": detail_type,
        "source": source,
        "account": "123456789012",
        "time": Timestamp::now().to_string(),
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    })
    .to_string()
}

fn rand_id() -> u128 {
    use std::hash::{BuildHasher, RandomState};
    u128::from(RandomState::new().hash_one(std::time::Instant::now()))
}

/// `EC2 Spot Instance Interruption Warning` for `instance`.
pub fn spot_interruption(instance: &str) -> String {
    event(
        "aws.ec2",
        "EC2 Spot Instance Interruption Warning",
        json!({"instance-id": instance, "instance-action": "terminate"}),
    )
}

/// `EC2 Instance Rebalance Recommendation` for `instance`.
pub fn rebalance(instance: &str) -> String {
    event(
        "aws.ec2",
        "EC2 Instance Rebalance Recommendation",
        json!({"instance-id": instance}),
    )
}

/// `EC2 Instance State-change Notification` of `instance` to `state`.
pub fn state_change(instance: &str, state: &str) -> String {
    event(
        "aws.ec2",
        "EC2 Instance State-change Notification",
        json!({"instance-id": instance, "state": state}),
    )
}

/// An AWS Health scheduled change (instance retirement) for `instances`.
pub fn scheduled_change(instances: &[&str]) -> String {
    let entities: Vec<Value> = instances
        .iter()
        .map(|i| json!({"entityValue": i}))
        .collect();
    event(
        "aws.health",
        "AWS Health Event",
        json!({
            "service": "EC2",
            "eventTypeCode": "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED",
            "eventTypeCategory": "scheduledChange",
            "affectedEntities": entities,
        }),
    )
}

/// `EC2 Capacity Reservation Instance Interruption Warning` for `instance`.
pub fn capacity_reservation_interruption(instance: &str) -> String {
    event(
        "aws.ec2",
        "EC2 Capacity Reservation Instance Interruption Warning",
        json!({"instance-id": instance, "instance-action": "terminate"}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_carry_the_envelope_the_controller_parses() {
        let v: Value = serde_json::from_str(&spot_interruption("i-1")).unwrap();
        assert_eq!(v["version"], "0");
        assert_eq!(v["source"], "aws.ec2");
        assert_eq!(v["detail"]["instance-id"], "i-1");
        assert!(v["time"].as_str().unwrap().parse::<Timestamp>().is_ok());
    }
}

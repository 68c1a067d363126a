//! EC2 interruption messages: the EventBridge events that reach the interruption queue, parsed
//! as Karpenter does (`pkg/controllers/interruption/messages`).
//!
//! A parser is picked by the exact (`version`, `source`, `detail-type`) triple; anything else
//! is [`InterruptionKind::NoOp`]. Bodies that are not JSON, or whose fields have the wrong type,
//! are a [`ParseError`] (the caller deletes the message and logs it). Parsing never panics on
//! any input; the property tests feed it arbitrary bytes, truncations and mistyped fields.

use std::fmt;

use k8s_openapi::jiff::Timestamp;
use serde::Deserialize;

/// What an interruption message announces, named as Karpenter v1's `message_type` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InterruptionKind {
    /// `EC2 Spot Instance Interruption Warning`: the instance goes in two minutes.
    SpotInterrupted,
    /// `EC2 Instance Rebalance Recommendation`: the instance is at elevated risk.
    RebalanceRecommendation,
    /// `EC2 Instance State-change Notification`, `stopping` or `stopped`.
    InstanceStopped,
    /// `EC2 Instance State-change Notification`, `shutting-down` or `terminated`.
    InstanceTerminated,
    /// `AWS Health Event` of service `EC2`, category `scheduledChange` (e.g. a retirement).
    ScheduledChange,
    /// `EC2 Capacity Reservation Instance Interruption Warning`.
    CapacityReservationInterrupted,
    /// Anything else: another event, another state, another Health service or category.
    NoOp,
}

impl InterruptionKind {
    /// Every kind, for pre-creating metric series and for tests.
    pub const ALL: [InterruptionKind; 7] = [
        InterruptionKind::SpotInterrupted,
        InterruptionKind::RebalanceRecommendation,
        InterruptionKind::InstanceStopped,
        InterruptionKind::InstanceTerminated,
        InterruptionKind::ScheduledChange,
        InterruptionKind::CapacityReservationInterrupted,
        InterruptionKind::NoOp,
    ];

    /// Karpenter v1's name: the `message_type` label of
    /// `karpenter_interruption_received_messages_total` and the `reason` of
    /// `karpenter_nodeclaims_disrupted_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            InterruptionKind::SpotInterrupted => "spot_interrupted",
            InterruptionKind::RebalanceRecommendation => "rebalance_recommendation",
            InterruptionKind::InstanceStopped => "instance_stopped",
            InterruptionKind::InstanceTerminated => "instance_terminated",
            InterruptionKind::ScheduledChange => "scheduled_change",
            InterruptionKind::CapacityReservationInterrupted => "capacity_reservation_interrupted",
            InterruptionKind::NoOp => "no_op",
        }
    }
}

impl fmt::Display for InterruptionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One parsed message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterruptionMessage {
    /// What it announces.
    pub kind: InterruptionKind,
    /// The EventBridge event id (empty when absent).
    pub id: String,
    /// The EC2 instance ids it is about (empty ids left out); empty for [`InterruptionKind::NoOp`].
    pub instance_ids: Vec<String>,
    /// When the event happened (`time`), if the event says.
    pub time: Option<Timestamp>,
}

/// Why a body is not a message we can read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not a JSON object with string metadata fields.
    #[error("not an EventBridge event: {0}")]
    NotAnEvent(String),
    /// `time` is not an RFC 3339 timestamp.
    #[error("field `time` is not an RFC 3339 timestamp: {0:?}")]
    BadTime(String),
    /// The `detail` of a known event does not have the shape of that event.
    #[error("field `detail` of a {detail_type:?} event: {error}")]
    BadDetail {
        /// The event's `detail-type`.
        detail_type: String,
        /// What did not fit.
        error: String,
    },
}

/// The envelope every EventBridge event has. Missing fields are empty, as Go's decoder leaves
/// them; fields of the wrong type are an error.
#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    version: String,
    #[serde(default)]
    id: String,
    #[serde(default, rename = "detail-type")]
    detail_type: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    time: Option<String>,
    #[serde(default)]
    detail: serde_json::Value,
}

/// `detail` of the spot, rebalance and capacity reservation warnings.
#[derive(Deserialize, Default)]
#[serde(default)]
struct InstanceDetail {
    #[serde(rename = "instance-id")]
    instance_id: String,
}

/// `detail` of a state-change notification.
#[derive(Deserialize, Default)]
#[serde(default)]
struct StateChangeDetail {
    #[serde(rename = "instance-id")]
    instance_id: String,
    state: String,
}

/// `detail` of an AWS Health event.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct HealthDetail {
    service: String,
    event_type_category: String,
    affected_entities: Vec<AffectedEntity>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct AffectedEntity {
    entity_value: String,
}

const EC2: &str = "aws.ec2";
const HEALTH: &str = "aws.health";

/// Parses one message body.
pub fn parse(body: &str) -> Result<InterruptionMessage, ParseError> {
    let no_op = |id: String, time| InterruptionMessage {
        kind: InterruptionKind::NoOp,
        id,
        instance_ids: Vec::new(),
        time,
    };
    if body.is_empty() {
        return Ok(no_op(String::new(), None));
    }
    let meta: Metadata =
        serde_json::from_str(body).map_err(|e| ParseError::NotAnEvent(e.to_string()))?;
    let time = match &meta.time {
        None => None,
        Some(t) => Some(
            t.parse::<Timestamp>()
                .map_err(|_| ParseError::BadTime(t.clone()))?,
        ),
    };
    let detail = |e: serde_json::Error| ParseError::BadDetail {
        detail_type: meta.detail_type.clone(),
        error: e.to_string(),
    };
    let one = |kind, id: String| {
        let instance_ids = if id.is_empty() { vec![] } else { vec![id] };
        (kind, instance_ids)
    };
    let (kind, instance_ids) = match (
        meta.version.as_str(),
        meta.source.as_str(),
        meta.detail_type.as_str(),
    ) {
        ("0", EC2, "EC2 Spot Instance Interruption Warning") => {
            let d: InstanceDetail = from_detail(&meta.detail).map_err(detail)?;
            one(InterruptionKind::SpotInterrupted, d.instance_id)
        }
        ("0", EC2, "EC2 Instance Rebalance Recommendation") => {
            let d: InstanceDetail = from_detail(&meta.detail).map_err(detail)?;
            one(InterruptionKind::RebalanceRecommendation, d.instance_id)
        }
        ("0", EC2, "EC2 Capacity Reservation Instance Interruption Warning") => {
            let d: InstanceDetail = from_detail(&meta.detail).map_err(detail)?;
            one(
                InterruptionKind::CapacityReservationInterrupted,
                d.instance_id,
            )
        }
        ("0", EC2, "EC2 Instance State-change Notification") => {
            let d: StateChangeDetail = from_detail(&meta.detail).map_err(detail)?;
            match d.state.to_ascii_lowercase().as_str() {
                "stopping" | "stopped" => one(InterruptionKind::InstanceStopped, d.instance_id),
                "shutting-down" | "terminated" => {
                    one(InterruptionKind::InstanceTerminated, d.instance_id)
                }
                _ => return Ok(no_op(meta.id, time)),
            }
        }
        ("0", HEALTH, "AWS Health Event") => {
            let d: HealthDetail = from_detail(&meta.detail).map_err(detail)?;
            // Case-sensitive, as Karpenter compares them.
            if d.service != "EC2" || d.event_type_category != "scheduledChange" {
                return Ok(no_op(meta.id, time));
            }
            let ids = d
                .affected_entities
                .into_iter()
                .map(|e| e.entity_value)
                .filter(|id| !id.is_empty())
                .collect();
            (InterruptionKind::ScheduledChange, ids)
        }
        _ => return Ok(no_op(meta.id, time)),
    };
    Ok(InterruptionMessage {
        kind,
        id: meta.id,
        instance_ids,
        time,
    })
}

/// A `detail` of `null` or absent reads as the empty detail, as Go's decoder leaves it.
fn from_detail<T: serde::de::DeserializeOwned + Default>(
    value: &serde_json::Value,
) -> Result<T, serde_json::Error> {
    if value.is_null() {
        return Ok(T::default());
    }
    T::deserialize(value)
}

#[cfg(test)]
#[path = "interruption_tests.rs"]
mod tests;

//! What one interruption message asks for, decided without I/O: which NodeClaims to delete,
//! which events to publish, which offering to mark unavailable (Karpenter's
//! `pkg/controllers/interruption`, spec in `ref/interruption.md` §4–5).

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use karpenter_core::api::NodeClaim;
use karpenter_core::labels;
use karpenter_providers::OfferingKey;
use karpenter_providers::aws::interruption::{InterruptionKind, InterruptionMessage, ParseError};
use karpenter_providers::provider::parse_provider_id;
use kube_client::runtime::events::EventType;

/// One NodeClaim (and its Node, if registered) an instance id leads to.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// The EC2 instance id.
    pub instance_id: String,
    /// The NodeClaim.
    pub claim: Arc<NodeClaim>,
    /// Its Node, when one has registered.
    pub node: Option<Arc<Node>>,
}

impl Target {
    fn label(&self, key: &str) -> &str {
        self.claim
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(key))
            .map_or("", String::as_str)
    }

    /// The claim's NodePool (`karpenter.sh/nodepool`), or empty.
    pub fn node_pool(&self) -> &str {
        self.label(labels::NODE_POOL)
    }

    /// The claim's capacity type (`karpenter.sh/capacity-type`), or empty.
    pub fn capacity_type(&self) -> &str {
        self.label(labels::CAPACITY_TYPE)
    }

    /// The claim's name.
    pub fn claim_name(&self) -> &str {
        self.claim.metadata.name.as_deref().unwrap_or("")
    }
}

/// Instance id → the claim launched for it, from the claims' `status.providerID` and the nodes'
/// `spec.providerID` (`aws:///<zone>/<instance-id>`).
#[derive(Debug, Default)]
pub struct InstanceIndex(HashMap<String, Target>);

impl InstanceIndex {
    /// Indexes `claims` and joins each to the node with the same provider id (the stores'
    /// shared objects: nothing is copied).
    pub fn new(claims: &[Arc<NodeClaim>], nodes: &[Arc<Node>]) -> InstanceIndex {
        let mut nodes_by_id: HashMap<&str, &Arc<Node>> = HashMap::new();
        for node in nodes {
            let provider_id = node.spec.as_ref().and_then(|s| s.provider_id.as_deref());
            if let Some((_, id)) = provider_id.and_then(parse_provider_id) {
                nodes_by_id.insert(id, node);
            }
        }
        let mut index = HashMap::new();
        for claim in claims {
            let provider_id = claim.status.as_ref().and_then(|s| s.provider_id.as_deref());
            let Some((_, id)) = provider_id.and_then(parse_provider_id) else {
                continue;
            };
            index.insert(
                id.to_owned(),
                Target {
                    instance_id: id.to_owned(),
                    claim: claim.clone(),
                    node: nodes_by_id.get(id).map(|n| Arc::clone(n)),
                },
            );
        }
        InstanceIndex(index)
    }

    /// The claim launched for `instance_id`.
    pub fn get(&self, instance_id: &str) -> Option<&Target> {
        self.0.get(instance_id)
    }

    /// Number of indexed instances.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when no claim has an instance yet.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// An Event to publish on a NodeClaim and on its Node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventNote {
    /// `Normal` or `Warning`.
    pub type_: EventType,
    /// Karpenter's reason.
    pub reason: &'static str,
    /// The sentence, the same on the claim and the node.
    pub message: &'static str,
}

/// What Karpenter does about one kind of message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KindAction {
    /// The event that names the message.
    pub event: EventNote,
    /// Delete the NodeClaim (termination cordons and drains it); false for rebalance
    /// recommendations, which only get the event.
    pub delete: bool,
}

/// Karpenter's reaction to `kind` (`None` for no-ops).
pub fn kind_action(kind: InterruptionKind) -> Option<KindAction> {
    let (type_, reason, message, delete) = match kind {
        InterruptionKind::SpotInterrupted => (
            EventType::Warning,
            "SpotInterrupted",
            "Spot interruption warning was triggered",
            true,
        ),
        InterruptionKind::RebalanceRecommendation => (
            EventType::Normal,
            "SpotRebalanceRecommendation",
            "Spot rebalance recommendation was triggered",
            false,
        ),
        InterruptionKind::InstanceStopped => (
            EventType::Warning,
            "InstanceStopping",
            "Instance is stopping",
            true,
        ),
        InterruptionKind::InstanceTerminated => (
            EventType::Warning,
            "InstanceTerminating",
            "Instance is terminating",
            true,
        ),
        InterruptionKind::ScheduledChange => (
            EventType::Warning,
            "InstanceUnhealthy",
            "An unhealthy warning was triggered for the instance",
            true,
        ),
        InterruptionKind::CapacityReservationInterrupted => (
            EventType::Warning,
            "CapacityReservationInstanceInterrupted",
            "Capacity reservation interruption warning was triggered",
            true,
        ),
        InterruptionKind::NoOp => return None,
    };
    Some(KindAction {
        event: EventNote {
            type_,
            reason,
            message,
        },
        delete,
    })
}

/// The event published when an interruption deletes a claim: `(reason, on the claim, on the
/// node)`.
pub const TERMINATING: (&str, &str, &str) = (
    "TerminatingOnInterruption",
    "Interruption triggered termination for the NodeClaim",
    "Interruption triggered termination for the Node",
);

/// What to do for one claim a message names.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimAction {
    /// The claim (and node) it is about.
    pub target: Target,
    /// The kind's event; `None` when the claim is already being deleted (nothing to say).
    pub event: Option<EventNote>,
    /// Delete the claim (it is not being deleted yet).
    pub delete: bool,
    /// Mark this offering unavailable (a spot interruption: the replacement must go elsewhere).
    pub unavailable: Option<OfferingKey>,
}

/// What one message asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum MessagePlan {
    /// The body is not a message we can read: delete it and log why. Not counted as received.
    Unreadable(ParseError),
    /// A message we read.
    Read {
        /// Its kind (the `message_type` label).
        kind: InterruptionKind,
        /// The parsed message.
        message: InterruptionMessage,
        /// One entry per instance that is one of our claims.
        actions: Vec<ClaimAction>,
        /// Instance ids that are not ours (deleted with the message, nothing done).
        unknown: Vec<String>,
    },
}

/// Decides what `parsed` asks of the claims in `index`.
pub fn plan(parsed: Result<InterruptionMessage, ParseError>, index: &InstanceIndex) -> MessagePlan {
    let message = match parsed {
        Ok(m) => m,
        Err(e) => return MessagePlan::Unreadable(e),
    };
    let kind = message.kind;
    let mut actions = Vec::new();
    let mut unknown = Vec::new();
    if let Some(reaction) = kind_action(kind) {
        let mut seen = std::collections::HashSet::new();
        for id in &message.instance_ids {
            // A Health event can list an instance twice; act once.
            if !seen.insert(id.as_str()) {
                continue;
            }
            let Some(target) = index.get(id) else {
                unknown.push(id.clone());
                continue;
            };
            let deleting = target.claim.metadata.deletion_timestamp.is_some();
            actions.push(ClaimAction {
                unavailable: spot_offering(kind, target),
                event: (!deleting).then(|| reaction.event.clone()),
                delete: reaction.delete && !deleting,
                target: target.clone(),
            });
        }
    }
    MessagePlan::Read {
        kind,
        message,
        actions,
        unknown,
    }
}

/// The offering a spot interruption takes away: `(type, zone, spot)` from the claim's labels
/// (the zone from the provider id when the label is missing).
fn spot_offering(kind: InterruptionKind, target: &Target) -> Option<OfferingKey> {
    if kind != InterruptionKind::SpotInterrupted {
        return None;
    }
    let instance_type = target.label(labels::INSTANCE_TYPE);
    let zone = match target.label(labels::ZONE) {
        "" => target
            .claim
            .status
            .as_ref()
            .and_then(|s| s.provider_id.as_deref())
            .and_then(parse_provider_id)
            .map_or("", |(zone, _)| zone),
        zone => zone,
    };
    if instance_type.is_empty() || zone.is_empty() {
        return None;
    }
    Some((
        instance_type.to_owned(),
        zone.to_owned(),
        labels::CAPACITY_SPOT.to_owned(),
    ))
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;

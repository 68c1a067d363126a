//! What a disruption plan says: the commands the controller would start, in order, and why
//! every other managed node is kept.

use crate::api::nodepool::DisruptionReason;
use crate::snapshot::PodKey;

use super::consolidation::Replacement;
use super::reasons::KeptReason;

/// How a command was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Method {
    /// `expireAfter` elapsed: forceful, no budget, no replacement ahead of time.
    Expiration,
    /// The NodeClaim is `Drifted`.
    Drift,
    /// Empty nodes.
    Emptiness,
    /// Several nodes replaced by at most one.
    MultiNodeConsolidation,
    /// One node deleted or replaced by a cheaper one.
    SingleNodeConsolidation,
}

impl Method {
    /// The name `simulate --output json` uses.
    pub fn as_str(&self) -> &'static str {
        match self {
            Method::Expiration => "expiration",
            Method::Drift => "drift",
            Method::Emptiness => "emptiness",
            Method::MultiNodeConsolidation => "multi_node_consolidation",
            Method::SingleNodeConsolidation => "single_node_consolidation",
        }
    }

    /// The budget reason the method is limited by (`None`: forceful, unbudgeted).
    pub fn reason(&self) -> Option<DisruptionReason> {
        match self {
            Method::Expiration => None,
            Method::Drift => Some(DisruptionReason::Drifted),
            Method::Emptiness => Some(DisruptionReason::Empty),
            Method::MultiNodeConsolidation | Method::SingleNodeConsolidation => {
                Some(DisruptionReason::Underutilized)
            }
        }
    }

    /// Karpenter's `consolidation_type` metric label.
    pub fn consolidation_type(&self) -> &'static str {
        match self {
            Method::Expiration | Method::Drift => "",
            Method::Emptiness => "empty",
            Method::MultiNodeConsolidation => "multi",
            Method::SingleNodeConsolidation => "single",
        }
    }
}

/// Delete the candidates, or replace them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Their pods fit elsewhere.
    Delete,
    /// New nodes first, then the candidates go.
    Replace,
}

impl Action {
    /// `delete` or `replace` (Karpenter's `decision` label).
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Delete => "delete",
            Action::Replace => "replace",
        }
    }
}

/// A node a command disrupts.
#[derive(Clone, Debug, PartialEq)]
pub struct Disrupted {
    /// Node name.
    pub node: String,
    /// NodeClaim name.
    pub node_claim: String,
    /// NodePool.
    pub node_pool: String,
    /// Instance type, capacity type and zone labels.
    pub instance_type: Option<String>,
    /// `spot`, `on-demand`, `reserved`.
    pub capacity_type: Option<String>,
    /// Zone.
    pub zone: Option<String>,
    /// Its price per hour, when known.
    pub price: Option<f64>,
}

/// Where a moved pod lands.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Destination {
    /// An existing node.
    Node(String),
    /// The command's replacement with this index.
    Replacement(usize),
}

/// One pod the command moves.
#[derive(Clone, Debug, PartialEq)]
pub struct PodMove {
    /// The pod.
    pub pod: PodKey,
    /// The node it leaves.
    pub from: String,
    /// Where it lands.
    pub to: Destination,
}

/// One disruption command.
#[derive(Clone, Debug, PartialEq)]
pub struct Command {
    /// How it was found.
    pub method: Method,
    /// Delete or replace.
    pub action: Action,
    /// The nodes disrupted.
    pub candidates: Vec<Disrupted>,
    /// New nodes launched first.
    pub replacements: Vec<Replacement>,
    /// Where each moved pod lands (expiration: none computed, the provisioner finds room
    /// after the drain).
    pub moves: Vec<PodMove>,
    /// Σ candidates' prices per hour.
    pub price_before: f64,
    /// Σ replacements' cheapest prices per hour.
    pub price_after: f64,
}

impl Command {
    /// `price_before − price_after` (negative when a drift replacement costs more).
    pub fn savings_per_hour(&self) -> f64 {
        self.price_before - self.price_after
    }

    /// The budget reason, if budgeted.
    pub fn reason(&self) -> Option<DisruptionReason> {
        self.method.reason()
    }
}

/// A managed node no command touches, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Kept {
    /// Node name.
    pub node: String,
    /// NodeClaim name.
    pub node_claim: String,
    /// NodePool.
    pub node_pool: String,
    /// Every reason found, most fundamental first; never empty.
    pub reasons: Vec<KeptReason>,
}

/// The plan: what the controller would start now, in order, and why the rest stays.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Commands in the order they would start (expiration first, then one voluntary command
    /// per pass: drift, emptiness, multi-node, single-node).
    pub commands: Vec<Command>,
    /// Every managed node not in a command, in snapshot order.
    pub kept: Vec<Kept>,
}

impl Plan {
    /// Σ savings of the commands.
    pub fn savings_per_hour(&self) -> f64 {
        self.commands.iter().map(Command::savings_per_hour).sum()
    }
}

//! The disruption half of `karpenter simulate`: when the manifests hold Nodes of a NodePool
//! (with their bound Pods, and optionally NodeClaims and PodDisruptionBudgets), what
//! Karpenter's disruption would do to them at `--now`, and why every other node is kept.

use k8s_openapi::jiff::Timestamp;
use karpenter_core::api::NodePool;
use karpenter_core::disruption::{self, Destination, DisruptionOptions};
use karpenter_core::ingest::Manifest;
use karpenter_core::ingest::disruption::disruption_input;
use karpenter_core::labels;
use karpenter_core::snapshot::Snapshot;
use serde::Serialize;

/// What the disruption plan depends on besides the manifests.
#[derive(Clone, Debug, PartialEq)]
pub struct DisruptionSettings {
    /// The plan's clock.
    pub now: Timestamp,
    /// Feature gate `SpotToSpotConsolidation`.
    pub spot_to_spot: bool,
    /// Least saving (USD per hour) a consolidation must bring, unless a NodePool's
    /// `karpenter-rs.io/min-consolidation-savings` annotation says otherwise.
    pub min_savings_per_hour: f64,
    /// Allow replacing one node by several cheaper ones (beyond Karpenter).
    pub replace_with_several: bool,
    /// Cap on multi-node consolidation's candidates (`None`: all; Karpenter: 100).
    pub multi_node_cap: Option<usize>,
}

/// The disruption plan, when the manifests have managed nodes.
#[derive(Clone, Debug)]
pub struct DisruptionPlan {
    /// The time it was planned for.
    pub now: Timestamp,
    /// The plan.
    pub plan: disruption::Plan,
}

/// Plans disruption for the Nodes in `manifests` that belong to a NodePool; `None` when
/// there are none. Problems (bad NodePool settings, bad PDBs) name the object and field.
pub fn plan(
    manifests: &[Manifest],
    snapshot: &Snapshot,
    node_pools: &[NodePool],
    settings: &DisruptionSettings,
) -> Result<Option<DisruptionPlan>, Vec<String>> {
    let managed = manifests.iter().any(|m| {
        matches!(m, Manifest::Node(n) if n
            .metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key(labels::NODE_POOL)))
    });
    if !managed {
        return Ok(None);
    }
    let options = DisruptionOptions {
        spot_to_spot: settings.spot_to_spot,
        replace_with_several: settings.replace_with_several,
        multi_node_cap: settings.multi_node_cap,
        ..DisruptionOptions::default()
    };
    let input = disruption_input(
        manifests,
        snapshot,
        node_pools,
        settings.now,
        options,
        settings.min_savings_per_hour,
    )
    .map_err(|errs| errs.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    Ok(Some(DisruptionPlan {
        now: settings.now,
        plan: disruption::plan(&input),
    }))
}

/// The text section printed after the provisioning plan.
pub fn render_text(d: &DisruptionPlan) -> String {
    format!(
        "Disruption at {}\n{}",
        d.now,
        disruption::report::render_text(&d.plan)
    )
}

/// `disruption` in `--output json`.
#[derive(Serialize, Debug)]
pub struct Report {
    /// The plan's clock (RFC 3339).
    pub now: String,
    /// Commands the controller would start now, in order (expiration included).
    pub commands: Vec<Command>,
    /// Every managed node not in a command, with why.
    pub kept: Vec<Kept>,
    /// Σ `savings_per_hour` of the commands.
    pub savings_per_hour: f64,
}

/// One command.
#[derive(Serialize, Debug)]
pub struct Command {
    /// `expiration`, `drift`, `emptiness`, `multi_node_consolidation`,
    /// `single_node_consolidation`.
    pub method: String,
    /// The budget reason (`Drifted`, `Empty`, `Underutilized`); `null` for expiration.
    pub reason: Option<String>,
    /// `delete` or `replace`.
    pub decision: String,
    /// Node names.
    pub candidates: Vec<String>,
    /// New nodes launched before the candidates go.
    pub replacements: Vec<Replacement>,
    /// Candidates' price minus the cheapest replacement options' (USD per hour).
    pub savings_per_hour: f64,
    /// Where each moved pod lands: a node name or `replacement-<n>` (1-based).
    pub moves: Vec<Move>,
}

/// A replacement node.
#[derive(Serialize, Debug)]
pub struct Replacement {
    /// NodePool.
    pub nodepool: String,
    /// Instance types it may launch as, cheapest first.
    pub instance_types: Vec<String>,
    /// Capacity type when pinned to one.
    pub capacity_type: Option<String>,
    /// Zone when pinned to one.
    pub zone: Option<String>,
    /// Price of the cheapest option (USD per hour).
    pub price: f64,
}

/// A pod moved by a command.
#[derive(Serialize, Debug)]
pub struct Move {
    /// `namespace/name`.
    pub pod: String,
    /// The node it leaves.
    pub from: String,
    /// The node or replacement it lands on.
    pub to: String,
}

/// A kept node.
#[derive(Serialize, Debug)]
pub struct Kept {
    /// Node name.
    pub node: String,
    /// NodeClaim name (the node's name when the manifests have no NodeClaim).
    pub nodeclaim: String,
    /// NodePool.
    pub nodepool: String,
    /// Why, most fundamental first.
    pub reasons: Vec<Reason>,
}

/// One reason.
#[derive(Serialize, Debug)]
pub struct Reason {
    /// Machine-readable kind (`pod_do_not_disrupt`, `pdb_blocks`, `budget_exhausted`, …).
    pub kind: String,
    /// A sentence naming what to change.
    pub message: String,
}

fn round(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

impl Report {
    /// The JSON view of a plan.
    pub fn of(d: &DisruptionPlan) -> Report {
        let commands = d
            .plan
            .commands
            .iter()
            .map(|c| Command {
                method: c.method.as_str().to_owned(),
                reason: c.reason().map(|r| format!("{r:?}")),
                decision: c.action.as_str().to_owned(),
                candidates: c.candidates.iter().map(|x| x.node.clone()).collect(),
                replacements: c
                    .replacements
                    .iter()
                    .map(|r| Replacement {
                        nodepool: r.node_pool.clone(),
                        instance_types: r.instance_types.iter().map(|o| o.name.clone()).collect(),
                        capacity_type: r.capacity_type.clone(),
                        zone: r.zone.clone(),
                        price: round(r.price),
                    })
                    .collect(),
                savings_per_hour: round(c.savings_per_hour()),
                moves: c
                    .moves
                    .iter()
                    .map(|m| Move {
                        pod: m.pod.to_string(),
                        from: m.from.clone(),
                        to: match &m.to {
                            Destination::Node(n) => n.clone(),
                            Destination::Replacement(i) => format!("replacement-{}", i + 1),
                        },
                    })
                    .collect(),
            })
            .collect();
        let kept = d
            .plan
            .kept
            .iter()
            .map(|k| Kept {
                node: k.node.clone(),
                nodeclaim: k.node_claim.clone(),
                nodepool: k.node_pool.clone(),
                reasons: k
                    .reasons
                    .iter()
                    .map(|r| Reason {
                        kind: r.kind().to_owned(),
                        message: r.to_string(),
                    })
                    .collect(),
            })
            .collect();
        Report {
            now: d.now.to_string(),
            commands,
            kept,
            savings_per_hour: round(d.plan.savings_per_hour()),
        }
    }
}

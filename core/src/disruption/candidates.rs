//! Which managed nodes voluntary disruption may consider (Karpenter v1 §4): node-level
//! eligibility, pod-level blocking (do-not-disrupt, PDBs), emptiness, the pods that would
//! move, `consolidateAfter`, and the disruption cost that orders candidates.

use std::time::Duration;

use crate::api::nodepool::ConsolidationPolicy;
use crate::instance_type::InstanceType;
use crate::labels;
use crate::snapshot::{ExistingNode, Pod, PodKey};

use super::input::{ClaimFacts, DisruptionInput, NodeFacts, PdbFacts, PodFacts, PoolDisruption};
use super::reasons::KeptReason;

/// A managed node looked at by one pass, with everything the methods need.
#[derive(Clone, Debug)]
pub struct Candidate<'a> {
    /// Index in `snapshot.nodes`.
    pub index: usize,
    /// The node.
    pub node: &'a ExistingNode,
    /// Its NodeClaim.
    pub claim: &'a ClaimFacts,
    /// Its NodePool's settings (`None` when the pool is gone).
    pub pool: Option<&'a PoolDisruption>,
    /// Reasons every voluntary method respects (deleting, not initialized, nominated, node
    /// do-not-disrupt, NodePool not found).
    pub node_blockers: Vec<KeptReason>,
    /// Pods that block graceful methods (do-not-disrupt pods, PDBs allowing nothing). Drift
    /// of a claim with `terminationGracePeriod` ignores them.
    pub pod_blockers: Vec<KeptReason>,
    /// No pod would move.
    pub empty: bool,
    /// The pods that would move (re-placed by simulations).
    pub moving: Vec<&'a Pod>,
    /// `Err` while `consolidateAfter` forbids consolidating it.
    pub consolidatable: Result<(), KeptReason>,
    /// Lower is disrupted first.
    pub cost: f64,
    /// The node's instance type among its pool's types, when found.
    pub instance_type: Option<&'a InstanceType>,
    /// Price per hour of the node's own offering (zone and capacity type), availability
    /// ignored; `None` when it cannot be priced.
    pub price: Option<f64>,
}

impl Candidate<'_> {
    /// The node's name.
    pub fn name(&self) -> &str {
        &self.node.name
    }

    /// The node's NodePool name.
    pub fn pool_name(&self) -> &str {
        &self.claim.node_pool
    }

    /// Capacity type label, when present.
    pub fn capacity_type(&self) -> Option<&str> {
        self.claim.capacity_type.as_deref()
    }

    /// Why consolidation (not emptiness, not drift) cannot touch it, if it cannot.
    pub fn consolidation_blockers(&self) -> Vec<KeptReason> {
        let mut out = Vec::new();
        let Some(pool) = self.pool else {
            return out;
        };
        if pool.consolidate_after.is_none() {
            out.push(KeptReason::ConsolidationDisabled {
                pool: self.pool_name().to_owned(),
            });
        }
        if pool.policy == ConsolidationPolicy::WhenEmpty && !self.empty {
            out.push(KeptReason::OnlyWhenEmpty {
                pool: self.pool_name().to_owned(),
            });
        }
        if self.instance_type.is_none() {
            out.push(KeptReason::InstanceTypeNotFound {
                instance_type: self.claim.instance_type.clone().unwrap_or_default(),
            });
        }
        for (label, value) in [
            (labels::CAPACITY_TYPE, &self.claim.capacity_type),
            (labels::ZONE, &self.claim.zone),
        ] {
            if value.is_none() {
                out.push(KeptReason::MissingLabel {
                    label: label.to_owned(),
                });
            }
        }
        if let Err(r) = &self.consolidatable {
            out.push(r.clone());
        }
        out
    }
}

fn facts_of<'a>(input: &'a DisruptionInput, key: &PodKey) -> std::borrow::Cow<'a, PodFacts> {
    match input.pods.get(key) {
        Some(f) => std::borrow::Cow::Borrowed(f),
        None => std::borrow::Cow::Owned(PodFacts::default()),
    }
}

/// Karpenter's per-pod disruption cost: `1 + deletionCost/2^27 + priority/2^25`, in [-10, 10].
pub fn pod_cost(facts: &PodFacts) -> f64 {
    let mut cost = 1.0;
    if let Some(c) = facts.deletion_cost {
        cost += f64::from(c) / f64::from(1u32 << 27);
    }
    if let Some(p) = facts.priority {
        cost += f64::from(p) / f64::from(1u32 << 25);
    }
    cost.clamp(-10.0, 10.0)
}

/// Fraction of the NodeClaim's lifetime left (1 without expiry).
pub fn lifetime_remaining(claim: &ClaimFacts, now: k8s_openapi::jiff::Timestamp) -> f64 {
    let Some(expire) = claim.expire_after else {
        return 1.0;
    };
    if expire.is_zero() {
        return 0.0;
    }
    let age = now.duration_since(claim.created).as_secs_f64().max(0.0);
    ((expire.as_secs_f64() - age) / expire.as_secs_f64()).clamp(0.0, 1.0)
}

fn pdb_blocking<'p>(pdbs: &'p [PdbFacts], pod: &Pod, facts: &PodFacts) -> Option<&'p PdbFacts> {
    pdbs.iter().find(|b| {
        b.namespace == pod.key.namespace
            && b.selector.matches(&pod.labels)
            && b.disruptions_allowed <= 0
            && (!b.always_allow_unhealthy || facts.ready)
    })
}

/// `consolidateAfter` check (Karpenter's `Consolidatable` condition).
fn consolidatable(
    claim: &ClaimFacts,
    pool: Option<&PoolDisruption>,
    now: k8s_openapi::jiff::Timestamp,
) -> Result<(), KeptReason> {
    let Some(pool) = pool else {
        return Ok(());
    };
    let Some(after) = pool.consolidate_after else {
        return Err(KeptReason::ConsolidationDisabled {
            pool: claim.node_pool.clone(),
        });
    };
    let Some(reference) = claim.last_pod_event.or(claim.initialized_at) else {
        return Err(KeptReason::NotInitialized);
    };
    let elapsed = Duration::try_from(now.duration_since(reference)).unwrap_or(Duration::ZERO);
    if elapsed < after {
        return Err(KeptReason::ConsolidateAfterPending {
            remaining: after - elapsed,
        });
    }
    Ok(())
}

/// Builds the candidate view of every managed node, in `snapshot.nodes` order.
/// `deleting(i)` says whether node `i` is being deleted (its facts, or a command of this plan).
pub fn candidates<'a>(
    input: &'a DisruptionInput,
    deleting: &dyn Fn(usize) -> bool,
) -> Vec<Candidate<'a>> {
    let now = input.now;
    let mut out = Vec::new();
    for (index, node) in input.snapshot.nodes.iter().enumerate() {
        let Some(facts): Option<&NodeFacts> = input.nodes.get(&node.name) else {
            continue;
        };
        let Some(claim) = facts.claim.as_ref() else {
            continue;
        };
        let pool = input.pools.get(&claim.node_pool);
        let mut node_blockers = Vec::new();
        if deleting(index) {
            node_blockers.push(KeptReason::Deleting);
        } else if !facts.initialized || node.in_flight {
            node_blockers.push(KeptReason::NotInitialized);
        } else {
            if let Some(until) = facts.nominated_until.filter(|u| *u > now) {
                node_blockers.push(KeptReason::Nominated { until });
            }
            if facts.do_not_disrupt {
                node_blockers.push(KeptReason::NodeDoNotDisrupt);
            }
            if pool.is_none() {
                node_blockers.push(KeptReason::NodePoolNotFound {
                    pool: claim.node_pool.clone(),
                });
            }
        }
        let mut pod_blockers = Vec::new();
        let mut moving = Vec::new();
        let mut cost = 0.0;
        for pod in &node.pods {
            let f = facts_of(input, &pod.key);
            cost += pod_cost(&f);
            if f.active() && f.do_not_disrupt {
                pod_blockers.push(KeptReason::PodDoNotDisrupt {
                    pod: pod.key.clone(),
                });
            } else if f.evictable()
                && let Some(pdb) = pdb_blocking(&input.pdbs, pod, &f)
            {
                pod_blockers.push(KeptReason::PdbBlocks {
                    pdb: pdb.id(),
                    pod: pod.key.clone(),
                });
            }
            let fully_blocked = input.pdbs.iter().any(|b| {
                b.fully_blocking
                    && b.namespace == pod.key.namespace
                    && b.selector.matches(&pod.labels)
            });
            if f.reschedulable() && !f.do_not_disrupt && !fully_blocked {
                moving.push(pod);
            }
        }
        let empty = !node
            .pods
            .iter()
            .any(|p| facts_of(input, &p.key).reschedulable());
        cost *= lifetime_remaining(claim, now);
        let instance_type = input
            .snapshot
            .node_pools
            .iter()
            .find(|p| p.name == claim.node_pool)
            .and_then(|p| {
                let name = claim.instance_type.as_deref()?;
                p.instance_types.iter().find(|t| t.name == name)
            });
        let price = instance_type.and_then(|t| own_price(t, claim));
        out.push(Candidate {
            index,
            node,
            claim,
            pool,
            node_blockers,
            pod_blockers,
            empty,
            moving,
            consolidatable: consolidatable(claim, pool, now),
            cost,
            instance_type,
            price,
        });
    }
    out
}

/// The cheapest offering of the node's own type in its zone and capacity type, available or
/// not (a reserved node costs nothing when no offering matches).
fn own_price(it: &InstanceType, claim: &ClaimFacts) -> Option<f64> {
    let price = it
        .offerings
        .iter()
        .filter(|o| claim.zone.as_deref().is_none_or(|z| z == o.zone))
        .filter(|o| {
            claim
                .capacity_type
                .as_deref()
                .is_none_or(|c| c == o.capacity_type)
        })
        .map(|o| o.price)
        .min_by(f64::total_cmp);
    match price {
        Some(p) => Some(p),
        None if claim.capacity_type.as_deref() == Some("reserved") => Some(0.0),
        None => None,
    }
}

/// Orders candidates by disruption cost, ties by NodeClaim name (Karpenter's sort is not
/// stable; this one is deterministic).
pub fn by_cost(a: &Candidate<'_>, b: &Candidate<'_>) -> std::cmp::Ordering {
    a.cost
        .total_cmp(&b.cost)
        .then_with(|| a.claim.name.cmp(&b.claim.name))
}

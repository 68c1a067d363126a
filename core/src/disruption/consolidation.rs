//! Consolidation's decision once the scheduler has answered (Karpenter v1 §9.3–9.4): delete,
//! replace by one cheaper node (price filter on the *worst* launch price, on-demand→spot
//! pinning, spot-to-spot rules), or keep with the reason.

use crate::instance_type::InstanceType;
use crate::labels;
use crate::requirements::{Requirement, Requirements};
use crate::scheduling::{InstanceTypeOption, NewNodeClaim};
use crate::snapshot::NodePoolInput;

use super::candidates::Candidate;
use super::input::DisruptionOptions;
use super::reasons::KeptReason;
use super::simulate::Answer;

/// Spot-to-spot single-node consolidation needs this many cheaper types, and offers only
/// this many (the cheapest), so the next pass cannot find 15 cheaper ones again.
pub const SPOT_TO_SPOT_MIN_TYPES: usize = 15;

/// A new node a command launches.
#[derive(Clone, Debug, PartialEq)]
pub struct Replacement {
    /// NodePool it comes from.
    pub node_pool: String,
    /// Its requirements (capacity type pinned where the price check assumed one).
    pub requirements: Requirements,
    /// Instance types it may launch as, cheapest first.
    pub instance_types: Vec<InstanceTypeOption>,
    /// The capacity type when pinned to one.
    pub capacity_type: Option<String>,
    /// The zone when pinned to one.
    pub zone: Option<String>,
    /// Price per hour of the cheapest option.
    pub price: f64,
    /// The scheduler's claim it came from (its pods, requests, labels and taints).
    pub scheduled: NewNodeClaim,
}

impl Replacement {
    /// The claim to launch: the scheduler's, narrowed to this replacement's requirements
    /// and instance types.
    pub fn launch_claim(&self) -> NewNodeClaim {
        NewNodeClaim {
            requirements: self.requirements.clone(),
            instance_types: self.instance_types.clone(),
            ..self.scheduled.clone()
        }
    }

    /// A replacement exactly as the scheduler opened it (drift keeps the scheduler's claims).
    pub fn from_claim(claim: &NewNodeClaim) -> Replacement {
        let pinned = |key: &str| {
            claim
                .requirements
                .get(key)
                .filter(|r| !r.is_complement() && r.len() == 1)
                .and_then(Requirement::any_value)
        };
        Replacement {
            node_pool: claim.node_pool.clone(),
            requirements: claim.requirements.clone(),
            instance_types: claim.instance_types.clone(),
            capacity_type: pinned(labels::CAPACITY_TYPE),
            zone: pinned(labels::ZONE),
            price: claim.cheapest_price(),
            scheduled: claim.clone(),
        }
    }
}

/// What consolidating a set of candidates comes to.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Their pods fit on the other nodes: delete them.
    Delete,
    /// Cheaper new nodes hold their pods: one, as Karpenter, or several when
    /// [`DisruptionOptions::replace_with_several`] allows it.
    Replace(Vec<Replacement>),
    /// Not worth it or not possible; why.
    Keep(KeptReason),
}

impl Outcome {
    /// Σ cheapest price of the replacements (0 for a delete).
    pub fn replacement_price(&self) -> f64 {
        match self {
            Outcome::Replace(rs) => rs.iter().map(|r| r.price).sum(),
            _ => 0.0,
        }
    }
}

/// The replacement's instance types priced for the price filter.
struct Priced<'a> {
    it: &'a InstanceType,
    /// Cheapest available compatible offering.
    cheapest: (String, String, f64),
    /// Most expensive available compatible offering, in the first capacity type (reserved,
    /// spot, on-demand) that has any: what the launch may cost at worst.
    worst: f64,
}

fn price<'a>(it: &'a InstanceType, reqs: &Requirements) -> Option<Priced<'a>> {
    let compatible: Vec<_> = it
        .offerings
        .iter()
        .filter(|o| o.available && o.compatible(reqs))
        .collect();
    let cheapest = compatible
        .iter()
        .min_by(|a, b| {
            a.price
                .total_cmp(&b.price)
                .then_with(|| a.zone.cmp(&b.zone))
                .then_with(|| a.capacity_type.cmp(&b.capacity_type))
        })
        .map(|o| (o.zone.clone(), o.capacity_type.clone(), o.price))?;
    let worst = [
        "reserved",
        labels::CAPACITY_SPOT,
        labels::CAPACITY_ON_DEMAND,
    ]
    .iter()
    .find_map(|ct| {
        compatible
            .iter()
            .filter(|o| o.capacity_type == *ct)
            .map(|o| o.price)
            .max_by(f64::total_cmp)
    })
    .unwrap_or(cheapest.2);
    Some(Priced {
        it,
        cheapest,
        worst,
    })
}

fn options(priced: &[Priced<'_>]) -> Vec<InstanceTypeOption> {
    priced
        .iter()
        .map(|p| InstanceTypeOption {
            name: p.it.name.clone(),
            zone: p.cheapest.0.clone(),
            capacity_type: p.cheapest.1.clone(),
            price: p.cheapest.2,
        })
        .collect()
}

/// Consolidation's decision for `candidates` given the scheduler's answer. `pools` holds the
/// NodePools' instance types; `options` the feature gate and the 1→N option; `multi` selects
/// the multi-node rules (same-type filter, no 15-type minimum, never several replacements).
pub fn decide(
    candidates: &[&Candidate<'_>],
    sim: &Answer,
    pools: &[NodePoolInput],
    options: &DisruptionOptions,
    multi: bool,
) -> Outcome {
    if let Some((pod, why)) = sim.failures.first() {
        if let Some(node) = why.strip_prefix("would schedule against uninitialized node ") {
            return Outcome::Keep(KeptReason::UninitializedDestination {
                pod: pod.clone(),
                node: node.to_owned(),
            });
        }
        return Outcome::Keep(KeptReason::PodWouldNotSchedule {
            pod: pod.clone(),
            why: why.clone(),
        });
    }
    let new = &sim.placement.new_node_claims;
    if new.is_empty() {
        return Outcome::Delete;
    }
    if new.len() > 1 && (multi || !options.replace_with_several) {
        return Outcome::Keep(KeptReason::NeedsSeveralNodes { count: new.len() });
    }
    let mut current = 0.0;
    for c in candidates {
        match c.price {
            Some(p) => current += p,
            None => {
                return Outcome::Keep(KeptReason::InstanceTypeNotFound {
                    instance_type: c.claim.instance_type.clone().unwrap_or_default(),
                });
            }
        }
    }
    let all_spot = candidates
        .iter()
        .all(|c| c.capacity_type() == Some(labels::CAPACITY_SPOT));
    if new.len() > 1 {
        return replace_several(new, pools, current, all_spot, options.spot_to_spot);
    }
    let claim = &new[0];
    let Some(types) = pool_types(pools, claim) else {
        return Outcome::Keep(KeptReason::NoCheaperReplacement {
            current,
            best: None,
        });
    };
    let (reqs, spot_to_spot_path) = match pinned_requirements(claim, all_spot, options.spot_to_spot)
    {
        Ok(pinned) => pinned,
        Err(reason) => return Outcome::Keep(reason),
    };
    let mut priced = priced_types(claim, types, &reqs);
    let best = priced.first().map(|p| p.cheapest.2);
    priced.retain(|p| p.worst < current);
    if multi {
        // [A, A] → one A is better done by deleting one A: drop every type at least as
        // expensive as the cheapest candidate of a type the replacement shares.
        let shared = candidates
            .iter()
            .filter(|c| {
                c.claim
                    .instance_type
                    .as_deref()
                    .is_some_and(|t| priced.iter().any(|p| p.it.name == t))
            })
            .filter_map(|c| c.price)
            .min_by(f64::total_cmp);
        if let Some(limit) = shared {
            priced.retain(|p| p.worst < limit);
        }
    }
    if priced.is_empty() {
        return Outcome::Keep(KeptReason::NoCheaperReplacement { current, best });
    }
    if spot_to_spot_path && !multi {
        if priced.len() < SPOT_TO_SPOT_MIN_TYPES {
            return Outcome::Keep(KeptReason::SpotToSpotTooFewTypes {
                cheaper: priced.len(),
            });
        }
        priced.truncate(SPOT_TO_SPOT_MIN_TYPES);
    }
    Outcome::Replace(vec![replacement(claim, reqs, &priced)])
}

/// The instance types of the claim's NodePool.
fn pool_types<'p>(pools: &'p [NodePoolInput], claim: &NewNodeClaim) -> Option<&'p [InstanceType]> {
    pools
        .iter()
        .find(|p| p.name == claim.node_pool)
        .map(|p| p.instance_types.as_slice())
}

/// The claim's requirements with the capacity type pinned where the price check assumes it,
/// and whether this is the spot-to-spot path; `Err` when spot-to-spot is needed but off.
fn pinned_requirements(
    claim: &NewNodeClaim,
    all_spot: bool,
    spot_to_spot: bool,
) -> Result<(Requirements, bool), KeptReason> {
    let mut reqs = claim.requirements.clone();
    let may_be_spot = reqs
        .get(labels::CAPACITY_TYPE)
        .is_none_or(|r| r.has(labels::CAPACITY_SPOT));
    let spot_to_spot_path = all_spot && may_be_spot;
    if spot_to_spot_path && !spot_to_spot {
        return Err(KeptReason::SpotToSpotDisabled);
    }
    // Pin to spot when the replacement could be spot: the price check assumes spot, and an
    // on-demand fallback could cost more than what it replaces.
    let may_be_on_demand = reqs
        .get(labels::CAPACITY_TYPE)
        .is_none_or(|r| r.has(labels::CAPACITY_ON_DEMAND));
    if spot_to_spot_path || (may_be_spot && may_be_on_demand) {
        reqs.add(
            labels::CAPACITY_TYPE,
            Requirement::single(labels::CAPACITY_SPOT),
        );
    }
    Ok((reqs, spot_to_spot_path))
}

/// The claim's instance types priced under `reqs`, cheapest first (ties by name).
fn priced_types<'t>(
    claim: &NewNodeClaim,
    types: &'t [InstanceType],
    reqs: &Requirements,
) -> Vec<Priced<'t>> {
    let mut priced: Vec<Priced<'_>> = claim
        .instance_types
        .iter()
        .filter_map(|o| types.iter().find(|t| t.name == o.name))
        .filter_map(|it| price(it, reqs))
        .collect();
    priced.sort_by(|a, b| {
        a.cheapest
            .2
            .total_cmp(&b.cheapest.2)
            .then_with(|| a.it.name.cmp(&b.it.name))
    });
    priced
}

fn replacement(claim: &NewNodeClaim, reqs: Requirements, priced: &[Priced<'_>]) -> Replacement {
    let instance_types = options(priced);
    let pinned = |key: &str| {
        reqs.get(key)
            .filter(|r| !r.is_complement() && r.len() == 1)
            .and_then(Requirement::any_value)
    };
    let zone = pinned(labels::ZONE);
    let capacity_type = pinned(labels::CAPACITY_TYPE);
    Replacement {
        node_pool: claim.node_pool.clone(),
        price: instance_types[0].price,
        requirements: reqs,
        instance_types,
        capacity_type,
        zone,
        scheduled: claim.clone(),
    }
}

/// One node replaced by several cheaper ones (beyond Karpenter, core#1442; single-node only).
/// The launches together must cost less than the candidate even at their worst price: each
/// claim keeps the types whose worst price is below its own cheapest worst price plus an equal
/// share of the saving. Spot candidates are not replaced this way (spot-to-spot's rules are
/// about one replacement).
fn replace_several(
    new: &[NewNodeClaim],
    pools: &[NodePoolInput],
    current: f64,
    all_spot: bool,
    spot_to_spot: bool,
) -> Outcome {
    let mut claims = Vec::with_capacity(new.len());
    for claim in new {
        let Some(types) = pool_types(pools, claim) else {
            return Outcome::Keep(KeptReason::NoCheaperReplacement {
                current,
                best: None,
            });
        };
        let (reqs, spot_path) = match pinned_requirements(claim, all_spot, spot_to_spot) {
            Ok(pinned) => pinned,
            Err(reason) => return Outcome::Keep(reason),
        };
        if spot_path {
            return Outcome::Keep(KeptReason::NeedsSeveralNodes { count: new.len() });
        }
        let priced = priced_types(claim, types, &reqs);
        let Some(least_worst) = priced.iter().map(|p| p.worst).min_by(f64::total_cmp) else {
            return Outcome::Keep(KeptReason::NoCheaperReplacement {
                current,
                best: None,
            });
        };
        claims.push((claim, reqs, priced, least_worst));
    }
    let best: f64 = claims.iter().map(|(_, _, p, _)| p[0].cheapest.2).sum();
    let slack = current - claims.iter().map(|(_, _, _, w)| w).sum::<f64>();
    if slack <= 0.0 {
        return Outcome::Keep(KeptReason::NoCheaperReplacement {
            current,
            best: Some(best),
        });
    }
    let share = slack / claims.len() as f64;
    let replacements = claims
        .into_iter()
        .map(|(claim, reqs, mut priced, least_worst)| {
            priced.retain(|p| p.worst < least_worst + share);
            replacement(claim, reqs, &priced)
        })
        .collect();
    Outcome::Replace(replacements)
}

//! Turning the solver's final state into a [`Placement`], and a placement into a [`Decision`].

use super::decision::{
    Decision, ExistingNodePlan, InstanceTypeOption, NewNodeClaim, Placement, Unschedulable,
};
use super::pools::PoolData;
use super::solver::{SolveOptions, Solver};
use crate::labels;
use crate::requirements::Requirements;
use crate::snapshot::SnapshotView;

impl Solver<'_> {
    pub(crate) fn into_placement(self, options: &SolveOptions) -> Placement {
        let mut placement = Placement::default();
        for (ni, node) in self.nodes.into_iter().enumerate() {
            if !node.assigned.is_empty() {
                placement.existing.push((ni, node.assigned));
            }
        }
        for claim in &self.claims {
            let pool = &self.pools[claim.pool];
            // Price every option without allocating, keep the cheapest (all of them when a
            // minValues requirement may need more), and only then build the output rows.
            let zone_req = claim.reqs.get(labels::ZONE);
            let capacity_req = claim.reqs.get(labels::CAPACITY_TYPE);
            let mut priced: Vec<(f64, &str, u32, usize)> = claim
                .types
                .iter()
                .filter_map(|&t| {
                    let it = pool.types[t as usize].it;
                    let (oi, o) = it.cheapest_offering_in(zone_req, capacity_req)?;
                    Some((o.price, it.name.as_str(), t, oi))
                })
                .collect();
            let by_price = |a: &(f64, &str, u32, usize), b: &(f64, &str, u32, usize)| {
                a.0.total_cmp(&b.0).then_with(|| a.1.cmp(b.1))
            };
            let needs_all = claim.reqs.iter().any(|(_, r)| r.min_values.is_some());
            let max = options.max_instance_types;
            if !needs_all && priced.len() > max && max > 0 {
                priced.select_nth_unstable_by(max - 1, by_price);
                priced.truncate(max);
            }
            priced.sort_by(by_price);
            let mut options_list: Vec<InstanceTypeOption> = priced
                .iter()
                .map(|&(_, _, t, oi)| {
                    let it = pool.types[t as usize].it;
                    let o = &it.offerings[oi];
                    InstanceTypeOption {
                        name: it.name.clone(),
                        zone: o.zone.clone(),
                        capacity_type: o.capacity_type.clone(),
                        price: o.price,
                    }
                })
                .collect();
            truncate_keeping_min_values(
                &mut options_list,
                &claim.reqs,
                pool,
                options.max_instance_types,
            );
            let mut requirements = claim.reqs.clone();
            requirements.remove(labels::HOSTNAME);
            let mut labels_out = pool.input.labels.clone();
            labels_out.extend(requirements.single_valued_labels());
            placement.new_node_claims.push(NewNodeClaim {
                node_pool: pool.input.name.clone(),
                hostname: claim.hostname.clone(),
                requirements,
                instance_types: options_list,
                pods: Vec::new(),
                pod_requests: claim.requests - pool.daemon_overhead,
                daemon_overhead: pool.daemon_overhead,
                labels: labels_out,
                taints: pool.input.taints.clone(),
            });
            placement.claim_pods.push(claim.pods.clone());
        }
        for (i, &placed) in self.placed.iter().enumerate() {
            if !placed {
                placement.unschedulable.push((
                    i,
                    self.failures
                        .get(&i)
                        .cloned()
                        .unwrap_or_else(|| "not attempted".to_string()),
                ));
            }
        }
        placement.relaxed = self.relax_notes.into_iter().collect();
        placement
    }
}

impl Placement {
    /// The same decision naming pods and nodes; `snapshot` is the one it was placed from.
    pub fn to_decision(&self, snapshot: &SnapshotView<'_>) -> Decision {
        let pods = &snapshot.pods;
        let mut decision = Decision::default();
        for (ni, assigned) in &self.existing {
            decision.existing.push(ExistingNodePlan {
                node: snapshot.nodes[*ni].name.clone(),
                pods: assigned.iter().map(|&i| pods[i].key.clone()).collect(),
            });
        }
        for (claim, assigned) in self.new_node_claims.iter().zip(&self.claim_pods) {
            decision.new_node_claims.push(NewNodeClaim {
                pods: assigned.iter().map(|&i| pods[i].key.clone()).collect(),
                ..claim.clone()
            });
        }
        for (i, reason) in &self.unschedulable {
            decision.unschedulable.push(Unschedulable {
                pod: pods[*i].key.clone(),
                reason: reason.clone(),
            });
        }
        decision.unschedulable.sort_by(|a, b| a.pod.cmp(&b.pod));
        for (i, notes) in &self.relaxed {
            decision.relaxed.insert(pods[*i].key.clone(), notes.clone());
        }
        decision
    }
}

/// Keeps the cheapest `max` options, or more when a `minValues` requirement needs them.
fn truncate_keeping_min_values(
    options: &mut Vec<InstanceTypeOption>,
    reqs: &Requirements,
    pool: &PoolData,
    max: usize,
) {
    if options.len() <= max {
        return;
    }
    let mut keep = max;
    for (key, req) in reqs.iter() {
        let Some(min) = req.min_values else { continue };
        let mut seen: Vec<String> = Vec::new();
        for (i, o) in options.iter().enumerate() {
            let value = if key == labels::INSTANCE_TYPE {
                Some(o.name.clone())
            } else {
                pool.types
                    .iter()
                    .find(|t| t.it.name == o.name)
                    .and_then(|t| t.it.requirements.get(key))
                    .and_then(|r| r.any_value())
            };
            if let Some(v) = value.filter(|v| !seen.contains(v)) {
                seen.push(v);
            }
            if seen.len() >= min {
                keep = keep.max(i + 1);
                break;
            }
        }
    }
    options.truncate(keep);
}

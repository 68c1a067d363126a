//! Can this pod go there? The checks for existing nodes and for claims, returning cheap
//! rejections (formatted into sentences only when a pod ends up unschedulable).

use super::claims::ClaimUpdate;
use super::preferences::PodState;
use super::solver::{Solver, TopologyContext};
use super::topology::{GroupKind, Topology};
use crate::labels;
use crate::requirements::{Incompatibility, Requirement, Requirements};
use crate::resources::{NUM_RESOURCES, RESOURCE_NAMES, Resources};
use crate::snapshot::{HostPort, Taint, untolerated};

/// Why a pod cannot go to a node or claim.
#[derive(Debug, Clone)]
pub(crate) enum Reject {
    Deleting,
    Taint(Taint),
    Requirements(Incompatibility),
    Resources {
        slot: usize,
        need: i64,
        have: i64,
    },
    OtherResource(String),
    HostPort(HostPort),
    Topology {
        group: usize,
        own: bool,
    },
    NoInstanceType(Box<(Requirements, Resources, usize)>),
    MinValues {
        key: String,
        min: usize,
        have: usize,
    },
    Limits,
}

impl Reject {
    /// A sentence naming the constraint.
    pub fn describe(&self, topo: &Topology, daemon_overhead: Resources) -> String {
        match self {
            Reject::Deleting => "node is being deleted".into(),
            Reject::Taint(t) => format!("did not tolerate taint {t}"),
            Reject::Requirements(e) => format!("incompatible requirements: {e}"),
            Reject::Resources { slot, need, have } => format!(
                "insufficient {}: needs {}{} but at most {} is allocatable",
                RESOURCE_NAMES[*slot],
                Resources::format_amount(*slot, *need),
                if daemon_overhead.is_zero() {
                    String::new()
                } else {
                    format!(" (with daemonset overhead {daemon_overhead})")
                },
                Resources::format_amount(*slot, *have),
            ),
            Reject::OtherResource(name) => {
                format!("requests {name}, which no instance type of the pool provides")
            }
            Reject::HostPort(p) => format!("host port {}/{} is already in use", p.port, p.protocol),
            Reject::Topology { group, own } => {
                let g = &topo.groups[*group];
                let key = &topo.tables[g.table].key;
                match (g.kind, own) {
                    (GroupKind::Spread { max_skew, .. }, _) => format!(
                        "topology spread on {key} (maxSkew {max_skew}) would be violated in every allowed domain"
                    ),
                    (GroupKind::Affinity, _) => {
                        format!("pod affinity on {key}: no allowed domain has a matching pod")
                    }
                    (GroupKind::AntiAffinity, true) => format!(
                        "pod anti-affinity on {key}: every allowed domain already has a matching pod"
                    ),
                    (GroupKind::AntiAffinity, false) => format!(
                        "another pod's anti-affinity on {key} excludes every allowed domain"
                    ),
                }
            }
            Reject::NoInstanceType(boxed) => {
                let (reqs, requests, fit_reqs) = &**boxed;
                if *fit_reqs == 0 {
                    format!("no instance type satisfies requirements {reqs}")
                } else {
                    format!(
                        "none of the {fit_reqs} instance types that satisfy the requirements has room for {requests} (pods and daemonset overhead)"
                    )
                }
            }
            Reject::MinValues { key, min, have } => {
                format!("minValues {min} on {key} cannot be met: only {have} values remain")
            }
            Reject::Limits => "nodepool limits leave no instance type that fits".into(),
        }
    }
}

fn port_conflict(used: &[HostPort], wanted: &[HostPort]) -> Option<HostPort> {
    wanted
        .iter()
        .find(|w| used.iter().any(|u| u.conflicts(w)))
        .cloned()
}

/// Where the pod would go, for the topology checks.
enum Target<'r> {
    Node(usize),
    Claim {
        index: usize,
        reqs: &'r Requirements,
        host: Option<u32>,
    },
}

impl Solver<'_> {
    pub(crate) fn node_accepts(
        &self,
        ni: usize,
        state: &PodState,
        ctx: &TopologyContext,
    ) -> Result<(), Reject> {
        // The pod and the node are read only when the copies in `infos` and `nodes` cannot
        // answer (a large solve's pods and nodes are scattered in memory).
        let data = &self.nodes[ni];
        let info = &self.infos[state.pod];
        if data.marked_for_deletion {
            return Err(Reject::Deleting);
        }
        if let Some(slot) = info.requests.first_exceeding(&data.remaining) {
            return Err(Reject::Resources {
                slot,
                need: info.requests.0[slot],
                have: data.remaining.0[slot],
            });
        }
        let pod = (!info.plain).then(|| self.snap.pods[state.pod]);
        for (name, amount) in pod.iter().flat_map(|p| &p.other_requests) {
            if data.other_remaining.get(name).copied().unwrap_or(0) < *amount {
                return Err(Reject::OtherResource(name.clone()));
            }
        }
        if data.tainted
            && let Some(t) = untolerated(&self.snap.nodes[ni].taints, &state.tolerations)
        {
            return Err(Reject::Taint(t.clone()));
        }
        // Nothing is incompatible with no requirements.
        if !state.requirements.is_empty() {
            data.label_reqs
                .get_or_init(|| Requirements::from_labels(&self.snap.nodes[ni].labels))
                .compatible_with(&state.requirements, false)
                .map_err(Reject::Requirements)?;
        }
        if let Some(pod) = pod
            && let Some(p) = port_conflict(&data.host_ports, &pod.host_ports)
        {
            return Err(Reject::HostPort(p));
        }
        self.topology_plan(Target::Node(ni), state, ctx).map(|_| ())
    }

    pub(crate) fn claim_accepts(
        &mut self,
        ci: usize,
        state: &PodState,
        req_id: u32,
        ctx: &TopologyContext,
    ) -> Result<ClaimUpdate, Reject> {
        let info = &self.infos[state.pod];
        let pod = (!info.plain).then(|| self.snap.pods[state.pod]);
        let claim = &self.claims[ci];
        let pool_index = claim.pool;
        if let Some(name) = pod.and_then(|p| p.other_requests.keys().next()) {
            return Err(Reject::OtherResource(name.clone()));
        }
        let requests = claim.requests + info.requests;
        if let Some(slot) = requests.first_exceeding(&claim.max_alloc) {
            // A fresh claim that lost types to the pool's limits fails because of the limits.
            let pool = &self.pools[pool_index];
            if claim.pods.is_empty()
                && claim.types.len() < pool.types.len()
                && requests.fits_in(&pool.max_alloc)
            {
                return Err(Reject::Limits);
            }
            return Err(Reject::Resources {
                slot,
                need: requests.0[slot],
                have: claim.max_alloc.0[slot],
            });
        }
        if let Some(t) = untolerated(&self.pools[pool_index].input.taints, &state.tolerations) {
            return Err(Reject::Taint(t.clone()));
        }
        if let Some(pod) = pod
            && let Some(p) = port_conflict(&claim.host_ports, &pod.host_ports)
        {
            return Err(Reject::HostPort(p));
        }
        let mut new_reqs: Option<Requirements> = None;
        if !claim.applied.contains(&req_id) {
            claim
                .reqs
                .compatible(&state.requirements)
                .map_err(Reject::Requirements)?;
            // The claim's hostname is generated: a pod that names another one cannot go there.
            if let Some(host) = state.requirements.get(labels::HOSTNAME)
                && !host.has(&claim.hostname)
            {
                return Err(Reject::Requirements(Incompatibility {
                    key: labels::HOSTNAME.to_string(),
                    message: format!(
                        "{} {host} does not admit the new node's generated hostname {}",
                        labels::HOSTNAME,
                        claim.hostname
                    ),
                }));
            }
            let merged = claim.reqs.intersection(&state.requirements);
            if merged != claim.reqs {
                new_reqs = Some(merged);
            }
        }
        let plan = {
            let reqs = new_reqs.as_ref().unwrap_or(&claim.reqs);
            self.topology_plan(
                Target::Claim {
                    index: ci,
                    reqs,
                    host: claim.host_domain,
                },
                state,
                ctx,
            )?
        };
        // Pin each still-open topology key to the first candidate domain that leaves an
        // instance type with capacity there.
        let mut pins: Vec<(usize, u32)> = Vec::new();
        for (table, candidates) in plan {
            let key = self.topo.tables[table].key.clone();
            let mut chosen = None;
            for d in candidates {
                let mut trial = new_reqs
                    .clone()
                    .unwrap_or_else(|| self.claims[ci].reqs.clone());
                trial.add(
                    &key,
                    Requirement::single(&self.topo.tables[table].names[d as usize]),
                );
                if !self.pools[pool_index].type_keys.contains(&key)
                    || self.filter_types(ci, &trial, &requests, true).is_ok()
                {
                    chosen = Some((d, trial));
                    break;
                }
            }
            let Some((d, trial)) = chosen else {
                let group = ctx
                    .groups
                    .iter()
                    .find(|(g, _, _)| self.topo.groups[*g].table == table)
                    .map_or(0, |(g, _, _)| *g);
                return Err(Reject::Topology { group, own: true });
            };
            pins.push((table, d));
            new_reqs = Some(trial);
        }
        let affected = new_reqs
            .as_ref()
            .is_some_and(|r| self.pools[pool_index].types_affected(&self.claims[ci].reqs, r));
        let compatible = match (&new_reqs, affected) {
            (Some(r), true) => Some(self.pools[pool_index].compatible_types(r)),
            _ => None,
        };
        let reqs_for_filter = new_reqs.as_ref().unwrap_or(&self.claims[ci].reqs);
        let (types, max_alloc, max_capacity) = self.fit_types(
            ci,
            reqs_for_filter,
            &requests,
            compatible.as_ref().map(|l| l.as_slice()),
        )?;
        let pool = &self.pools[pool_index];
        for (key, req) in reqs_for_filter.iter() {
            if let Some(min) = req.min_values {
                let have = super::pools::distinct_values(pool, &types, key);
                if have < min {
                    return Err(Reject::MinValues {
                        key: key.clone(),
                        min,
                        have,
                    });
                }
            }
        }
        Ok(ClaimUpdate {
            reqs: new_reqs,
            types,
            max_alloc,
            max_capacity,
            pins,
        })
    }

    /// The claim's types that fit `requests` and, when `check_reqs`, are compatible with
    /// `reqs`.
    fn filter_types(
        &mut self,
        ci: usize,
        reqs: &Requirements,
        requests: &Resources,
        check_reqs: bool,
    ) -> Result<(Vec<u32>, Resources, Resources), Reject> {
        let compatible =
            check_reqs.then(|| self.pools[self.claims[ci].pool].compatible_types(reqs));
        self.fit_types(
            ci,
            reqs,
            requests,
            compatible.as_ref().map(|l| l.as_slice()),
        )
    }

    /// The claim's types that fit `requests` and, when a list of the pool's types compatible
    /// with `reqs` is given, are on it; with their slot-wise maxima of allocatable and
    /// capacity.
    fn fit_types(
        &self,
        ci: usize,
        reqs: &Requirements,
        requests: &Resources,
        compatible: Option<&[u32]>,
    ) -> Result<(Vec<u32>, Resources, Resources), Reject> {
        let pool = &self.pools[self.claims[ci].pool];
        let claim = &self.claims[ci];
        // This runs for every pod a claim takes, over up to hundreds of types: which types fit
        // comes from the pool's per-slot index, for the slots the requests use only (a zero
        // request fits any slot when no type has a negative allocatable), and the maxima are
        // recomputed only when a type that reached one drops out.
        let mut slots = [0usize; NUM_RESOURCES];
        let mut used = 0;
        for (s, &amount) in requests.0.iter().enumerate() {
            if amount != 0 || !pool.allocatable_nonnegative {
                slots[used] = s;
                used += 1;
            }
        }
        let slots = &slots[..used];
        let fitting = pool.fitting(requests, slots);
        let fits = |t: u32| fitting[t as usize / 64] >> (t % 64) & 1 == 1;
        let mut out = Vec::with_capacity(claim.types.len());
        let mut fit_reqs = 0;
        let mut cursor = 0;
        let mut maxima_changed = compatible.is_some();
        for &t in &claim.types {
            if let Some(list) = compatible {
                while cursor < list.len() && list[cursor] < t {
                    cursor += 1;
                }
                if cursor >= list.len() || list[cursor] != t {
                    continue;
                }
            }
            fit_reqs += 1;
            if fits(t) {
                out.push(t);
            } else if !maxima_changed {
                let info = &pool.types[t as usize];
                maxima_changed = (0..NUM_RESOURCES).any(|s| {
                    info.allocatable.0[s] >= claim.max_alloc.0[s]
                        || info.capacity.0[s] >= claim.max_capacity.0[s]
                });
            }
        }
        if out.is_empty() {
            if claim.pods.is_empty() && claim.types.len() < pool.types.len() {
                // Would a type the limits removed have fitted? Then the limits are the reason.
                let fits_without_limits = pool.types.iter().enumerate().any(|(i, t)| {
                    compatible.is_none_or(|list| list.binary_search(&(i as u32)).is_ok())
                        && requests.fits_in(&t.allocatable)
                });
                if fits_without_limits {
                    return Err(Reject::Limits);
                }
            }
            let mut shown = reqs.clone();
            shown.remove(labels::NODE_POOL);
            return Err(Reject::NoInstanceType(Box::new((
                shown, *requests, fit_reqs,
            ))));
        }
        let (max_alloc, max_capacity) = if maxima_changed {
            super::claims::maxima(pool, &out)
        } else {
            // Every type that left was below the maxima in every slot.
            (claim.max_alloc, claim.max_capacity)
        };
        Ok((out, max_alloc, max_capacity))
    }

    /// Checks every topology group of the attempt against the target. Returns, for each
    /// topology key whose domain the claim has not fixed yet, the allowed domains in order of
    /// preference (emptiest first).
    fn topology_plan(
        &self,
        target: Target<'_>,
        state: &PodState,
        ctx: &TopologyContext,
    ) -> Result<Vec<(usize, Vec<u32>)>, Reject> {
        if ctx.groups.is_empty() {
            return Ok(Vec::new());
        }
        let mut tables: Vec<usize> = ctx
            .groups
            .iter()
            .map(|(g, _, _)| self.topo.groups[*g].table)
            .collect();
        tables.sort_unstable();
        tables.dedup();
        let mut plan = Vec::new();
        for t in tables {
            let table = &self.topo.tables[t];
            let entries: Vec<usize> = (0..ctx.groups.len())
                .filter(|&e| self.topo.groups[ctx.groups[e].0].table == t)
                .collect();
            let fixed: Option<Option<u32>> = match &target {
                Target::Node(ni) => Some(self.nodes[*ni].domains[t]),
                Target::Claim { host, reqs, .. } => {
                    if table.key == labels::HOSTNAME {
                        Some(*host)
                    } else {
                        match reqs.get(&table.key) {
                            Some(r) if !r.is_complement() && r.values().len() == 1 => {
                                Some(r.values().iter().next().and_then(|v| table.id(v)))
                            }
                            _ => None,
                        }
                    }
                }
            };
            let claim_index = match &target {
                Target::Claim { index, .. } => Some(*index),
                Target::Node(_) => None,
            };
            match fixed {
                Some(Some(d)) => {
                    for &e in &entries {
                        if !self.accepts(ctx, e, d, claim_index) {
                            let (group, _, own) = ctx.groups[e];
                            return Err(Reject::Topology { group, own });
                        }
                    }
                }
                Some(None) => {
                    // The node has no label for this key (or a value outside the universe):
                    // own spread and affinity need a domain; anti-affinity is satisfied.
                    for &e in &entries {
                        let (group, _, own) = ctx.groups[e];
                        let kind = self.topo.groups[group].kind;
                        if own && kind != GroupKind::AntiAffinity {
                            return Err(Reject::Topology { group, own });
                        }
                    }
                }
                None => {
                    let Target::Claim { reqs, .. } = &target else {
                        unreachable!("nodes always have a fixed domain");
                    };
                    let claim_domains = reqs.get_or_any(&table.key);
                    let pod_domains = state.requirements.get_or_any(&table.key);
                    let spread_entry = entries.iter().copied().find(|&e| {
                        matches!(
                            self.topo.groups[ctx.groups[e].0].kind,
                            GroupKind::Spread { .. }
                        )
                    });
                    let mut candidates: Vec<u32> = (0..table.len() as u32)
                        .filter(|&d| {
                            let name = &table.names[d as usize];
                            claim_domains.has(name)
                                && pod_domains.has(name)
                                && entries
                                    .iter()
                                    .all(|&e| self.accepts(ctx, e, d, claim_index))
                        })
                        .collect();
                    if candidates.is_empty() {
                        let (group, _, own) = ctx.groups[entries[0]];
                        return Err(Reject::Topology { group, own });
                    }
                    if let Some(e) = spread_entry {
                        let g = &self.topo.groups[ctx.groups[e].0];
                        candidates.sort_by_key(|&d| (g.count(d), table.names[d as usize].clone()));
                    } else {
                        candidates.sort_by_key(|&d| table.names[d as usize].clone());
                    }
                    plan.push((t, candidates));
                }
            }
        }
        Ok(plan)
    }

    /// True when entry `e` of the context allows domain `d`.
    fn accepts(&self, ctx: &TopologyContext, e: usize, d: u32, claim: Option<usize>) -> bool {
        let (g, self_selecting, own) = ctx.groups[e];
        let group = &self.topo.groups[g];
        match group.kind {
            GroupKind::Spread { max_skew, .. } => {
                let count = group.count(d) + i32::from(self_selecting);
                count - ctx.spread_min[e] <= max_skew
            }
            GroupKind::Affinity => {
                group.count(d) > 0
                    || claim.is_some_and(|c| group.claim_counts.get(&c).is_some_and(|n| *n > 0))
                    || (!ctx.any_match[e] && self_selecting)
            }
            GroupKind::AntiAffinity if own => group.count(d) == 0,
            GroupKind::AntiAffinity => group.owner_count(d) == 0,
        }
    }
}

//! The solve loop: pods in Karpenter's order, existing nodes first, then NodeClaims already
//! opened in this solve, then a new NodeClaim from the first NodePool (by weight) that can take
//! the pod; preferences relaxed one at a time when nothing fits.

use std::collections::{BTreeMap, VecDeque};

use super::checks::Reject;
use super::claims::{Claim, ClaimUpdate};
use super::decision::{Decision, Placement};
use super::fasthash::FxHashMap;
use super::new_nodes::pool_nodes;
pub use super::packing::{Burstable, Packing};
use super::pools::PoolData;
use super::preferences::PodState;
use super::topology::{GroupKind, GroupRef, Topology};
use crate::labels;
use crate::requirements::Requirements;
use crate::resources::Resources;
use crate::snapshot::{HostPort, Snapshot, SnapshotView, Toleration, untolerated};

/// Knobs of a solve.
#[derive(Clone, Debug)]
pub struct SolveOptions {
    /// Instance type options kept per new NodeClaim (Karpenter: 60).
    pub max_instance_types: usize,
    /// How far a new NodeClaim grows before the solver opens another one.
    pub packing: Packing,
    /// $/h the optimal packer adds to every node's price while comparing fleets (default 0):
    /// the costs of many small nodes a price list hides (DaemonSet pods, IP addresses,
    /// per-node agents and licences, API load, more nodes to drain). Reported costs stay the
    /// instance prices.
    pub node_cost: f64,
    /// How the optimal packer treats burstable (`t` category) types.
    pub burstable: Burstable,
}

impl Default for SolveOptions {
    fn default() -> Self {
        SolveOptions {
            max_instance_types: super::MAX_INSTANCE_TYPES,
            packing: Packing::default(),
            node_cost: 0.0,
            burstable: Burstable::default(),
        }
    }
}

/// Places the snapshot's pods. Deterministic: the same snapshot gives the same decision.
pub fn solve(snapshot: &Snapshot, options: &SolveOptions) -> Decision {
    solve_view(&SnapshotView::of(snapshot), options)
}

/// [`solve`] over a snapshot assembled from borrowed parts: the same decision as solving
/// [`SnapshotView::to_snapshot`], without cloning the cluster.
pub fn solve_view(snapshot: &SnapshotView<'_>, options: &SolveOptions) -> Decision {
    place(snapshot, options).to_decision(snapshot)
}

/// [`solve_view`]'s decision by position in `snapshot` (see [`Placement`]).
pub fn place(snapshot: &SnapshotView<'_>, options: &SolveOptions) -> Placement {
    let run = |packing: Packing| {
        let mut solver = Solver::new(snapshot);
        solver.packing = packing;
        solver.run();
        solver.into_placement(options)
    };
    match options.packing {
        Packing::Cheapest => {
            let karpenter = run(Packing::Karpenter);
            let cost_aware = run(Packing::CostAware);
            let better = cost_aware.placed_pods() > karpenter.placed_pods()
                || (cost_aware.placed_pods() == karpenter.placed_pods()
                    && cost_aware.new_cost_per_hour() < karpenter.new_cost_per_hour());
            if better { cost_aware } else { karpenter }
        }
        Packing::Optimal => {
            let mut solver = Solver::new(snapshot);
            solver.packing = Packing::Karpenter;
            solver.run();
            solver.repack_optimal(options);
            solver.into_placement(options)
        }
        packing => run(packing),
    }
}

/// What the hot loop reads of a pending pod, copied out once in input order: a large solve
/// visits pods in Karpenter's order, scattered in memory, and most of them have nothing but
/// requests.
pub(crate) struct PodInfo {
    pub requests: Resources,
    /// No node selector, volume or node-affinity requirements, pod (anti-)affinity, spread,
    /// tolerations, host ports or extended requests: the checks need nothing else of it.
    pub plain: bool,
}

impl PodInfo {
    fn of(pod: &&crate::snapshot::Pod) -> PodInfo {
        PodInfo {
            requests: pod.requests,
            plain: pod.node_selector.is_empty()
                && pod.volume_requirements.is_empty()
                && pod.required_node_affinity.is_empty()
                && pod.preferred_node_affinity.is_empty()
                && pod.pod_affinity.is_empty()
                && pod.preferred_pod_affinity.is_empty()
                && pod.pod_anti_affinity.is_empty()
                && pod.preferred_pod_anti_affinity.is_empty()
                && pod.topology_spread.is_empty()
                && pod.tolerations.is_empty()
                && pod.host_ports.is_empty()
                && pod.other_requests.is_empty(),
        }
    }
}

/// An existing node with what this solve has added to it.
pub(crate) struct NodeData {
    /// The node is marked for deletion (copied from the node).
    pub marked_for_deletion: bool,
    /// The node has taints (copied from the node).
    pub tainted: bool,
    /// The node's labels as requirements, built on first use: pods without node requirements
    /// (most of them) never need it, and a solve over a large cluster would spend much of its
    /// setup building it for every node.
    pub label_reqs: std::cell::OnceCell<Requirements>,
    pub remaining: Resources,
    pub other_remaining: BTreeMap<String, i64>,
    pub host_ports: Vec<HostPort>,
    /// Domain id per topology table (None where the node lacks the label).
    pub domains: Vec<Option<u32>>,
    pub assigned: Vec<usize>,
}

pub(crate) struct Solver<'a> {
    pub snap: &'a SnapshotView<'a>,
    pub pools: Vec<PoolData<'a>>,
    pub nodes: Vec<NodeData>,
    pub claims: Vec<Claim>,
    pub topo: Topology,
    /// Groups whose selector matches each pending pod (by pod index); empty when there are
    /// no groups (see [`Solver::counted_in`]).
    pub counted_in: Vec<Vec<usize>>,
    /// Per pending pod, what the checks read of it.
    pub infos: Vec<PodInfo>,
    req_ids: FxHashMap<Requirements, u32>,
    /// Per pod shape, its index in `shape_caches`.
    shapes: FxHashMap<Shape, usize>,
    /// Per shape, the nodes and claims still worth trying.
    shape_caches: Vec<ShapeCache>,
    pub hostname_table: Option<usize>,
    pub placed: Vec<bool>,
    pub relax_notes: BTreeMap<usize, Vec<String>>,
    pub failures: BTreeMap<usize, String>,
    pub packing: Packing,
}

/// Everything about a pod attempt that decides whether a node or claim can take it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Shape {
    req_id: u32,
    requests: Resources,
    tolerated_pools: Vec<usize>,
    groups: Vec<(usize, bool, bool)>,
    host_ports: Vec<HostPort>,
    tolerations: Vec<Toleration>,
    other_requests: Vec<(String, i64)>,
}

/// Candidates not yet ruled out for a shape, in first-fit order.
#[derive(Debug, Default)]
pub(crate) struct ShapeCache {
    /// Nodes still worth trying are `nodes[nodes_start..]`.
    nodes: Vec<u32>,
    nodes_start: usize,
    nodes_seeded: bool,
    claims: Vec<u32>,
    claims_seen: usize,
    /// Claims that could take the shape only by growing more than a new claim would cost
    /// (cost-aware packing); tried last, when no new claim can take the pod.
    pub uneconomic: Vec<u32>,
    /// Per pool, the price of the cheapest type a claim holding only this pod could use.
    pub fresh_price: Vec<Option<f64>>,
}

/// The topology groups relevant to one attempt of one pod.
pub(crate) struct TopologyContext {
    /// (group, self selecting, is own constraint (else inverse anti-affinity)).
    pub groups: Vec<(usize, bool, bool)>,
    /// Spread minimum per entry of `groups` (0 for non-spread).
    pub spread_min: Vec<i32>,
    /// Whether any domain has a matching pod, per entry (affinity bootstrap rule).
    pub any_match: Vec<bool>,
}

impl<'a> Solver<'a> {
    fn new(snap: &'a SnapshotView<'a>) -> Solver<'a> {
        let mut pools: Vec<PoolData<'a>> = snap
            .node_pools
            .iter()
            .map(|p| PoolData::new(p, snap.daemon_sets, pool_nodes(snap, &p.name)))
            .collect();
        pools.sort_by(|a, b| {
            b.input
                .weight
                .cmp(&a.input.weight)
                .then_with(|| a.input.name.cmp(&b.input.name))
        });
        let mut topo = Topology::default();
        // Create every group up front so existing pods can be counted into them.
        for pod in &snap.pods {
            for c in &pod.topology_spread {
                topo.spread_group(pod, c);
            }
            for t in pod
                .pod_affinity
                .iter()
                .chain(pod.preferred_pod_affinity.iter().map(|x| &x.1))
            {
                topo.affinity_group(pod, t, false, snap.namespace_labels);
            }
            for t in pod
                .pod_anti_affinity
                .iter()
                .chain(pod.preferred_pod_anti_affinity.iter().map(|x| &x.1))
            {
                topo.affinity_group(pod, t, true, snap.namespace_labels);
            }
        }
        let usage = |ni: usize| snap.usage.as_ref().map(|u| u[ni]);
        let mut existing_owner_refs: Vec<(usize, usize, Vec<GroupRef>)> = Vec::new();
        for (ni, node) in snap.nodes.iter().enumerate() {
            if usage(ni).is_some_and(|u| !u.anti_affinity) {
                continue;
            }
            for (pi, pod) in node.pods.iter().enumerate() {
                let refs = topo.owned_anti_affinity_groups(pod, snap.namespace_labels);
                if !refs.is_empty() {
                    existing_owner_refs.push((ni, pi, refs));
                }
            }
        }
        // Domain universes.
        for t in 0..topo.tables.len() {
            let key = topo.tables[t].key.clone();
            let mut names: Vec<String> = Vec::new();
            for node in &snap.nodes {
                if let Some(v) = node_label(node, &key) {
                    names.push(v.to_string());
                }
            }
            for pool in &pools {
                if key == labels::ZONE || key == labels::CAPACITY_TYPE {
                    for ti in &pool.types {
                        for o in &ti.it.offerings {
                            if o.compatible(&pool.input.requirements) {
                                names.push(if key == labels::ZONE {
                                    o.zone.clone()
                                } else {
                                    o.capacity_type.clone()
                                });
                            }
                        }
                    }
                } else if key != labels::HOSTNAME {
                    if let Some(r) = pool.input.requirements.get(&key) {
                        names.extend(r.values().iter().filter(|v| r.has(v)).cloned());
                    }
                    for ti in &pool.types {
                        if let Some(r) = ti.it.requirements.get(&key) {
                            names.extend(r.values().iter().cloned());
                        }
                    }
                }
            }
            names.sort();
            names.dedup();
            for n in names {
                topo.tables[t].intern(&n);
            }
        }
        let hostname_table = topo.table_index(labels::HOSTNAME);
        let nodes: Vec<NodeData> = snap
            .nodes
            .iter()
            .enumerate()
            .map(|(ni, n)| {
                let mut other_remaining = n.other_allocatable.clone();
                let (used, host_ports) = match usage(ni) {
                    Some(u) => {
                        for (k, v) in &u.other_requests {
                            let left = other_remaining.entry(k.clone()).or_insert(0);
                            *left = left.wrapping_sub(*v);
                        }
                        (u.requests, u.host_ports.clone())
                    }
                    None => {
                        // One pass over the bound pods (a large cluster has many).
                        let mut used = Resources::ZERO;
                        let mut host_ports = Vec::new();
                        for p in &n.pods {
                            used += p.requests;
                            for (k, v) in &p.other_requests {
                                *other_remaining.entry(k.clone()).or_insert(0) -= v;
                            }
                            host_ports.extend(p.host_ports.iter().cloned());
                        }
                        (used, host_ports)
                    }
                };
                NodeData {
                    marked_for_deletion: n.marked_for_deletion,
                    tainted: !n.taints.is_empty(),
                    label_reqs: std::cell::OnceCell::new(),
                    remaining: n.allocatable.saturating_sub(&used),
                    other_remaining,
                    host_ports,
                    domains: topo
                        .tables
                        .iter()
                        .map(|t| node_label(n, &t.key).and_then(|v| t.id(v)))
                        .collect(),
                    assigned: Vec::new(),
                }
            })
            .collect();
        // Count pods already running.
        for (ni, node) in snap.nodes.iter().enumerate() {
            if topo.groups.is_empty() {
                break;
            }
            for pod in &node.pods {
                for g in 0..topo.groups.len() {
                    if !topo.groups[g].selects(pod) {
                        continue;
                    }
                    if let Some(d) = nodes[ni].domains[topo.groups[g].table] {
                        topo.groups[g].record(d);
                    }
                }
            }
        }
        for (ni, _, refs) in &existing_owner_refs {
            for r in refs {
                let g = &mut topo.groups[r.group];
                if let Some(d) = nodes[*ni].domains[g.table] {
                    g.record_owner(d);
                    g.owners += 1;
                }
            }
        }
        // Without groups every list would be empty: none is kept (see `counted_in`).
        let counted_in = if topo.groups.is_empty() {
            Vec::new()
        } else {
            snap.pods
                .iter()
                .map(|p| {
                    (0..topo.groups.len())
                        .filter(|&g| topo.groups[g].selects(p))
                        .collect()
                })
                .collect()
        };
        Solver {
            snap,
            pools,
            nodes,
            claims: Vec::new(),
            topo,
            counted_in,
            infos: snap.pods.iter().map(PodInfo::of).collect(),
            req_ids: FxHashMap::default(),
            shapes: FxHashMap::default(),
            shape_caches: Vec::new(),
            hostname_table,
            placed: vec![false; snap.pods.len()],
            relax_notes: BTreeMap::new(),
            failures: BTreeMap::new(),
            packing: Packing::default(),
        }
    }

    fn run(&mut self) {
        let order = karpenter_order(&self.snap.pods);
        // Each round takes its pods in order (a pod's state is built when its turn comes), then
        // the ones that relaxed a preference, in the order they did.
        let mut round: Vec<usize> = order;
        loop {
            let mut retry: VecDeque<PodState> = VecDeque::new();
            let mut stuck: Vec<usize> = Vec::new();
            let mut progress = false;
            let mut fresh = round.iter();
            loop {
                let mut state = match fresh.next() {
                    Some(&i) if self.infos[i].plain => PodState::plain(i),
                    Some(&i) => PodState::new(i, self.snap.pods[i]),
                    None => match retry.pop_front() {
                        Some(state) => state,
                        None => break,
                    },
                };
                match self.try_place(&state) {
                    Ok(()) => {
                        progress = true;
                        self.failures.remove(&state.pod);
                        if !state.relaxed.is_empty() {
                            self.relax_notes.insert(state.pod, state.relaxed.clone());
                        }
                    }
                    Err(reason) => {
                        self.failures.insert(state.pod, reason);
                        // A pod whose required affinity targets are not placed yet waits for
                        // them instead of relaxing preferences that are not the problem.
                        if state.relaxed.is_empty() && self.waits_for_affinity_target(&state) {
                            stuck.push(state.pod);
                        } else if state.relax() {
                            retry.push_back(state);
                        } else {
                            stuck.push(state.pod);
                        }
                    }
                }
            }
            // A pod whose affinity targets were placed later in the pass may fit now.
            if stuck.is_empty() || !progress {
                break;
            }
            round = stuck;
        }
    }

    /// The groups whose selector matches pending pod `pod`.
    pub(crate) fn counted_in(&self, pod: usize) -> &[usize] {
        self.counted_in.get(pod).map_or(&[], Vec::as_slice)
    }

    /// True when one of the pod's required pod-affinity terms selects no pod anywhere yet
    /// (and the pod cannot bootstrap it by selecting itself).
    fn waits_for_affinity_target(&mut self, state: &PodState) -> bool {
        let pod = &self.snap.pods[state.pod];
        pod.pod_affinity.iter().any(|term| {
            let r = self
                .topo
                .affinity_group(pod, term, false, self.snap.namespace_labels);
            let g = &self.topo.groups[r.group];
            !r.self_selecting && g.counts.iter().all(|c| *c == 0) && g.claim_counts.is_empty()
        })
    }

    fn req_id(&mut self, reqs: &Requirements) -> u32 {
        if let Some(id) = self.req_ids.get(reqs) {
            return *id;
        }
        let id = self.req_ids.len() as u32;
        self.req_ids.insert(reqs.clone(), id);
        id
    }

    fn own_groups(&mut self, state: &PodState) -> Vec<GroupRef> {
        if self.infos[state.pod].plain {
            return Vec::new();
        }
        let pod = &self.snap.pods[state.pod];
        let ns = &self.snap.namespace_labels;
        let mut refs: Vec<GroupRef> = Vec::new();
        for c in &state.spread {
            refs.push(self.topo.spread_group(pod, c));
        }
        for t in pod
            .pod_affinity
            .iter()
            .chain(state.preferred_affinity.iter().map(|x| &x.1))
        {
            refs.push(self.topo.affinity_group(pod, t, false, ns));
        }
        for t in pod
            .pod_anti_affinity
            .iter()
            .chain(state.preferred_anti.iter().map(|x| &x.1))
        {
            refs.push(self.topo.affinity_group(pod, t, true, ns));
        }
        refs
    }

    fn topology_context(&mut self, state: &PodState) -> TopologyContext {
        let own = self.own_groups(state);
        let mut groups: Vec<(usize, bool, bool)> = own
            .iter()
            .map(|r| (r.group, r.self_selecting, true))
            .collect();
        for &g in self.counted_in(state.pod) {
            let group = &self.topo.groups[g];
            if group.kind == GroupKind::AntiAffinity && group.owners > 0 {
                groups.push((g, true, false));
            }
        }
        let mut spread_min = Vec::with_capacity(groups.len());
        let mut any_match = Vec::with_capacity(groups.len());
        for &(g, _, _) in &groups {
            let group = &self.topo.groups[g];
            let table = &self.topo.tables[group.table];
            let pod_domains = state.requirements.get_or_any(&table.key);
            spread_min.push(group.spread_min(table, &pod_domains));
            any_match
                .push(group.kind == GroupKind::Affinity && group.any_match(table, &pod_domains));
        }
        TopologyContext {
            groups,
            spread_min,
            any_match,
        }
    }

    fn try_place(&mut self, state: &PodState) -> Result<(), String> {
        let ctx = self.topology_context(state);
        let req_id = self.req_id(&state.requirements);
        let info = &self.infos[state.pod];
        let (host_ports, other_requests) = if info.plain {
            (Vec::new(), Vec::new())
        } else {
            let pod = &self.snap.pods[state.pod];
            (
                pod.host_ports.clone(),
                pod.other_requests
                    .iter()
                    .map(|(k, v)| (k.clone(), *v))
                    .collect(),
            )
        };
        let shape = Shape {
            req_id,
            requests: info.requests,
            tolerated_pools: (0..self.pools.len())
                .filter(|&p| untolerated(&self.pools[p].input.taints, &state.tolerations).is_none())
                .collect(),
            groups: ctx.groups.clone(),
            host_ports,
            tolerations: state.tolerations.clone(),
            other_requests,
        };
        // One lookup per attempt; the cache is taken out while the checks borrow `self`.
        let next = self.shape_caches.len();
        let si = *self.shapes.entry(shape).or_insert(next);
        if si == next {
            self.shape_caches.push(ShapeCache::default());
        }
        let mut cache = std::mem::take(&mut self.shape_caches[si]);
        let result = self.try_existing(state, req_id, &ctx, &mut cache);
        if result.is_ok() {
            self.shape_caches[si] = cache;
            return Ok(());
        }
        // Then a new claim from the first pool that can take it.
        if let Some(reason) = self.hostname_block(state, &ctx) {
            self.shape_caches[si] = cache;
            return Err(reason);
        }
        if self.pools.is_empty() {
            self.shape_caches[si] = cache;
            return Err("no NodePool is defined, and no existing node fits".to_string());
        }
        let mut reasons: Vec<String> = Vec::new();
        for p in 0..self.pools.len() {
            match self.open_claim(p, state, req_id, &ctx) {
                Ok(()) => {
                    self.shape_caches[si] = cache;
                    return Ok(());
                }
                Err(r) => reasons.push(format!("nodepool {:?}: {r}", self.pools[p].input.name)),
            }
        }
        // No new claim can take it (limits, affinity to pods on a claim): grow a claim after all.
        let placed = self.try_uneconomic(state, req_id, &ctx, &mut cache);
        self.shape_caches[si] = cache;
        if placed {
            return Ok(());
        }
        let existing = if self.nodes.is_empty() {
            String::new()
        } else {
            format!("no existing node fits ({} tried); ", self.nodes.len())
        };
        Err(format!("{existing}{}", reasons.join("; ")))
    }

    /// First fit over existing nodes, then over claims opened in this solve. Candidates that
    /// rejected this shape of pod for a reason that cannot go away (they only fill up and
    /// narrow) are dropped from the shape's list, so a solve stays near-linear in pods.
    fn try_existing(
        &mut self,
        state: &PodState,
        req_id: u32,
        ctx: &TopologyContext,
        cache: &mut ShapeCache,
    ) -> Result<(), ()> {
        if !cache.nodes_seeded {
            cache.nodes = (0..self.nodes.len() as u32).collect();
            cache.nodes_seeded = true;
        }
        // Compact the list while scanning; stop at the first fit (the rest stays as it is, so
        // a placement costs what it tries, not the length of the list). Nodes ruled out at the
        // front are dropped by moving the start, not by shifting the rest.
        let mut keep = cache.nodes_start;
        let mut found = None;
        let mut i = cache.nodes_start;
        while i < cache.nodes.len() {
            let ni = cache.nodes[i] as usize;
            match self.node_accepts(ni, state, ctx) {
                Ok(()) => {
                    found = Some(ni);
                    break;
                }
                Err(r) if self.is_permanent(&r) => {}
                Err(_) => {
                    cache.nodes[keep] = cache.nodes[i];
                    keep += 1;
                }
            }
            i += 1;
        }
        if keep == cache.nodes_start {
            cache.nodes_start = i;
        } else {
            cache.nodes.drain(keep..i);
        }
        if let Some(ni) = found {
            self.commit_node(ni, state);
            return Ok(());
        }
        cache
            .claims
            .extend(cache.claims_seen as u32..self.claims.len() as u32);
        cache.claims_seen = self.claims.len();
        let mut keep = 0;
        let mut found = None;
        let mut i = 0;
        while i < cache.claims.len() {
            let ci = cache.claims[i] as usize;
            match self.claim_accepts(ci, state, req_id, ctx) {
                Ok(update) if self.grows_uneconomically(ci, &update, state, cache) => {
                    // Growing only gets pricier as the claim fills; keep it as a fallback.
                    cache.uneconomic.push(cache.claims[i]);
                }
                Ok(update) => {
                    found = Some((ci, update));
                    break;
                }
                Err(r) if self.is_permanent(&r) => {}
                Err(_) => {
                    cache.claims[keep] = cache.claims[i];
                    keep += 1;
                }
            }
            i += 1;
        }
        cache.claims.drain(keep..i);
        match found {
            Some((ci, update)) => {
                self.commit_claim(ci, state, req_id, update);
                Ok(())
            }
            None => Err(()),
        }
    }

    /// True when a rejection holds for every later pod of the same shape: nodes and claims
    /// only gain pods and lose options, so only spread and affinity on domains whose counts
    /// can still change elsewhere are worth retrying.
    fn is_permanent(&self, reject: &Reject) -> bool {
        match reject {
            Reject::Topology { group, .. } => {
                let g = &self.topo.groups[*group];
                match g.kind {
                    GroupKind::AntiAffinity => true,
                    GroupKind::Spread { .. } => self.topo.tables[g.table].key == labels::HOSTNAME,
                    GroupKind::Affinity => false,
                }
            }
            _ => true,
        }
    }

    fn commit_node(&mut self, ni: usize, state: &PodState) {
        let info = &self.infos[state.pod];
        let node = &mut self.nodes[ni];
        node.remaining -= info.requests;
        if !info.plain {
            let pod = &self.snap.pods[state.pod];
            for (k, v) in &pod.other_requests {
                *node.other_remaining.entry(k.clone()).or_insert(0) -= v;
            }
            node.host_ports.extend(pod.host_ports.iter().cloned());
        }
        node.assigned.push(state.pod);
        let domains = node.domains.clone();
        self.record(state, |t| domains[t]);
        self.placed[state.pod] = true;
    }

    pub(crate) fn commit_claim(
        &mut self,
        ci: usize,
        state: &PodState,
        req_id: u32,
        update: ClaimUpdate,
    ) {
        let pod = &self.snap.pods[state.pod];
        let pins = update.pins.clone();
        let pool = self.claims[ci].pool;
        let before = self.claims[ci].max_capacity;
        self.claims[ci].apply(pod, state.pod, req_id, update);
        let after = self.claims[ci].max_capacity;
        // Keep the pool's reservation equal to the largest capacity the claim may still get.
        self.pools[pool].remaining = self.pools[pool].remaining + before - after;
        for (t, d) in pins {
            self.migrate_claim_counts(ci, t, d);
        }
        self.record_on_claim(ci, state);
        self.placed[state.pod] = true;
    }
}

/// Indices of `pods` in Karpenter's order: CPU then memory, largest first; namespace and name
/// break ties (then input order, as a stable sort). Sorted on keys read once into one array
/// (see [`SortKey`]), so comparing two pods rarely touches them.
fn karpenter_order(pods: &[&crate::snapshot::Pod]) -> Vec<usize> {
    let keys: Vec<SortKey> = pods.iter().enumerate().map(SortKey::new).collect();
    if keys.iter().all(SortKey::complete) {
        // Every name fits its prefix: the keys alone are the order (the index breaks ties
        // between equal keys as a stable sort would), compared as plain tuples.
        let mut whole: Vec<(u128, u128, usize, u128, usize, usize)> = keys
            .iter()
            .map(|k| {
                (
                    k.size,
                    k.namespace.bytes,
                    k.namespace.len,
                    k.name.bytes,
                    k.name.len,
                    k.index,
                )
            })
            .collect();
        whole.sort_unstable();
        whole.iter().map(|k| k.5).collect()
    } else {
        let mut order: Vec<usize> = (0..pods.len()).collect();
        order.sort_by(|&a, &b| keys[a].cmp(&keys[b], pods));
        order
    }
}

/// A pod's place in Karpenter's order (CPU, then memory, largest first; then namespace and
/// name; then input order), with the sizes packed into one number and the first bytes of its
/// namespace and name copied out, so that most comparisons need not follow the pod's pointers.
struct SortKey {
    /// CPU then memory, each mapped so that larger sorts first.
    size: u128,
    namespace: Prefix,
    name: Prefix,
    index: usize,
}

/// The first 16 bytes of a string (zero-padded, big-endian) and its length. Comparing two
/// prefixes decides the order of their strings when they differ; when both strings fit,
/// equal prefixes and lengths mean equal strings.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Prefix {
    bytes: u128,
    len: usize,
}

impl Prefix {
    fn new(s: &str) -> Prefix {
        let mut buf = [0u8; 16];
        let n = s.len().min(16);
        buf[..n].copy_from_slice(&s.as_bytes()[..n]);
        Prefix {
            bytes: u128::from_be_bytes(buf),
            len: s.len(),
        }
    }

    /// The order of the two strings, or `None` when the prefixes cannot tell.
    fn cmp(&self, other: &Prefix) -> Option<std::cmp::Ordering> {
        use std::cmp::Ordering;
        match self.bytes.cmp(&other.bytes) {
            Ordering::Equal if self.len <= 16 && other.len <= 16 => Some(self.len.cmp(&other.len)),
            Ordering::Equal => None,
            order => Some(order),
        }
    }
}

impl SortKey {
    fn new((index, pod): (usize, &&crate::snapshot::Pod)) -> SortKey {
        // Flipping the sign bit maps i64 order onto u64 order; inverting makes it descending.
        let descending = |v: i64| !((v as u64) ^ (1 << 63));
        SortKey {
            size: (u128::from(descending(pod.requests.cpu_millis())) << 64)
                | u128::from(descending(pod.requests.memory_bytes())),
            namespace: Prefix::new(&pod.key.namespace),
            name: Prefix::new(&pod.key.name),
            index,
        }
    }

    /// Both strings fit their prefixes, so the key decides the order without the pod.
    fn complete(&self) -> bool {
        self.namespace.len <= 16 && self.name.len <= 16
    }

    /// The same order as comparing (CPU descending, memory descending, key, index).
    fn cmp(&self, other: &SortKey, pods: &[&crate::snapshot::Pod]) -> std::cmp::Ordering {
        let (a, b) = (self.index, other.index);
        self.size
            .cmp(&other.size)
            .then_with(|| {
                self.namespace
                    .cmp(&other.namespace)
                    .unwrap_or_else(|| pods[a].key.namespace.cmp(&pods[b].key.namespace))
            })
            .then_with(|| {
                self.name
                    .cmp(&other.name)
                    .unwrap_or_else(|| pods[a].key.name.cmp(&pods[b].key.name))
            })
            .then(a.cmp(&b))
    }
}

/// A node's label on `key`; its hostname defaults to its name.
pub(crate) fn node_label<'n>(
    node: &'n crate::snapshot::ExistingNode,
    key: &str,
) -> Option<&'n str> {
    match node.labels.get(key) {
        Some(v) => Some(v.as_str()),
        None if key == labels::HOSTNAME => Some(node.name.as_str()),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::Rng;
    use crate::resources::{CPU, MEMORY, PODS};
    use crate::snapshot::Pod;

    /// The prefix keys give exactly the order of the plain comparison (sizes descending, then
    /// the key, stable), with short and long names, shared prefixes, NUL bytes and repeats.
    #[test]
    fn karpenter_order_is_the_plain_sort() {
        let mut rng = Rng::new(11);
        let stems = [
            "",
            "a",
            "web",
            "pod-",
            "deployment-with-a-long-name-",
            "x\0",
        ];
        for round in 0..200 {
            let long = round % 2 == 0;
            let pods: Vec<Pod> = (0..rng.below(60))
                .map(|_| {
                    let stem = stems[rng.below(stems.len())];
                    let stem = if long {
                        stem
                    } else {
                        &stem[..stem.len().min(8)]
                    };
                    let name = format!("{stem}{}", rng.below(30));
                    let ns = ["default", "kube-system", "a-namespace-longer-than-16"]
                        [rng.below(if long { 3 } else { 2 })];
                    Pod::new(
                        ns,
                        &name,
                        Resources::from_pairs(&[
                            (CPU, [100, 250, 500][rng.below(3)]),
                            (MEMORY, [1i64, 2][rng.below(2)] << 30),
                            (PODS, 1),
                        ]),
                    )
                })
                .collect();
            let refs: Vec<&Pod> = pods.iter().collect();
            let mut expected: Vec<usize> = (0..pods.len()).collect();
            expected.sort_by(|&a, &b| {
                let (pa, pb) = (&pods[a], &pods[b]);
                pb.requests
                    .cpu_millis()
                    .cmp(&pa.requests.cpu_millis())
                    .then_with(|| pb.requests.memory_bytes().cmp(&pa.requests.memory_bytes()))
                    .then_with(|| pa.key.cmp(&pb.key))
            });
            assert_eq!(karpenter_order(&refs), expected, "round {round}");
        }
    }
}

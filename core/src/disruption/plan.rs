//! The disruption pass (Karpenter v1 §6), repeated as the controller repeats it: each pass
//! starts at most one voluntary command (drift, emptiness, multi-node, single-node, in that
//! order) and the next pass sees its candidates deleting and its replacements launching, until
//! a pass finds nothing. Expiration is forceful and comes first.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::api::nodepool::{Budget, DisruptionReason};
use crate::instance_type::InstanceType;
use crate::scheduling::{Packing, SolveOptions};
use crate::snapshot::{ExistingNode, NodeUsage, PodKey};

use super::budgets::{BudgetMap, PoolCounts};
use super::candidates::{Candidate, by_cost, candidates};
use super::command::{Action, Command, Destination, Disrupted, Kept, Method, Plan, PodMove};
use super::consolidation::{self, Outcome, Replacement};
use super::input::DisruptionInput;
use super::reasons::KeptReason;
use super::simulate::{Answer, Moving, Removal, Simulation, answer, distinct_keys, origins, view};

mod validate;

pub use validate::{Invalid, validate};

/// How long a node that a command planned pods onto, or that was just initialized for pending
/// pods, is not a candidate (Karpenter: 20 s).
pub const NOMINATION: Duration = Duration::from_secs(20);

/// Plans one round of disruption: every command the controller would start now, in order,
/// and, for every other managed node, why it stays. Deterministic.
pub fn plan(input: &DisruptionInput) -> Plan {
    Planner::new(input, false).run().0
}

/// [`plan`], plus the scheduler's simulation behind each command (`None` for commands that
/// move no pods through the scheduler: expiration, emptiness, empty drift), so tests can check
/// every decision independently with [`crate::scheduling::verify`].
pub fn plan_traced(input: &DisruptionInput) -> (Plan, Vec<Option<Simulation>>) {
    Planner::new(input, true).run()
}

/// The budgets of every NodePool and reason at `input.now`, counting the nodes already
/// disrupting (being deleted or not Ready): what the `karpenter_nodepools_allowed_disruptions`
/// gauge shows and what the next command may take.
pub fn budgets(input: &DisruptionInput) -> BudgetMap {
    let planner = Planner::new(input, false);
    let deleting = planner.deleting.clone();
    let cands = candidates(input, &|i| deleting.contains(&i));
    planner.budgets(&cands)
}

struct Planner<'a> {
    input: &'a DisruptionInput,
    solve: SolveOptions,
    /// Nodes (by index) being deleted: from the cluster, or by a command of this plan.
    deleting: BTreeSet<usize>,
    /// Nodes a command of this plan moves pods onto.
    nominated: BTreeSet<String>,
    /// Replacements launched by commands of this plan.
    launched: Vec<ExistingNode>,
    /// What every node's bound pods use, the snapshot's nodes then `launched` (added up once
    /// for all simulations).
    usage: Vec<NodeUsage>,
    commands: Vec<Command>,
    /// What the last pass found for each node it evaluated.
    found: BTreeMap<usize, Vec<KeptReason>>,
    /// Keep each command's simulation (tests).
    trace: bool,
    /// No two pods of the input share a key (see [`super::simulate::distinct_keys`]).
    distinct_keys: bool,
    /// The simulation of the command being built, until it is applied (when tracing).
    last_sim: Option<Simulation>,
    /// One entry per command, when tracing.
    traces: Vec<Option<Simulation>>,
}

impl<'a> Planner<'a> {
    fn new(input: &'a DisruptionInput, trace: bool) -> Planner<'a> {
        let deleting = input
            .snapshot
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| {
                n.marked_for_deletion || input.nodes.get(&n.name).is_some_and(|f| f.deleting)
            })
            .map(|(i, _)| i)
            .collect();
        Planner {
            input,
            solve: SolveOptions {
                max_instance_types: input.options.max_instance_types,
                ..SolveOptions::default()
            },
            deleting,
            nominated: BTreeSet::new(),
            launched: Vec::new(),
            usage: input.snapshot.nodes.iter().map(NodeUsage::of).collect(),
            commands: Vec::new(),
            found: BTreeMap::new(),
            trace,
            distinct_keys: distinct_keys(input),
            last_sim: None,
            traces: Vec::new(),
        }
    }

    fn run(mut self) -> (Plan, Vec<Option<Simulation>>) {
        self.expire();
        loop {
            self.found.clear();
            let input = self.input;
            let deleting = self.deleting.clone();
            let mut cands = candidates(input, &|i| deleting.contains(&i));
            for c in &mut cands {
                if c.node_blockers.is_empty() && self.nominated.contains(c.name()) {
                    c.node_blockers.push(KeptReason::Nominated {
                        until: input.now + NOMINATION,
                    });
                }
            }
            let command = self
                .drift(&cands)
                .or_else(|| self.emptiness(&cands))
                .or_else(|| self.multi(&cands))
                .or_else(|| self.single(&cands));
            match command {
                Some(cmd) => self.apply(cmd, &cands),
                None => return self.finish(&cands),
            }
        }
    }

    fn budgets(&self, cands: &[Candidate<'_>]) -> BudgetMap {
        let mut counts = PoolCounts::new();
        for c in cands {
            if c.node.in_flight
                || !self
                    .input
                    .nodes
                    .get(c.name())
                    .is_some_and(|f| f.initialized && !f.instance_terminating)
            {
                continue;
            }
            let entry = counts.entry(c.pool_name().to_owned()).or_default();
            entry.0 += 1;
            let ready = self.input.nodes.get(c.name()).is_some_and(|f| f.ready);
            if !ready || self.deleting.contains(&c.index) {
                entry.1 += 1;
            }
        }
        BudgetMap::new(
            self.input
                .pools
                .iter()
                .map(|(k, v)| (k, v.budgets.as_slice() as &[Budget])),
            &counts,
            self.input.now,
        )
    }

    fn budget_reason(&self, map: &BudgetMap, pool: &str, reason: DisruptionReason) -> KeptReason {
        let d = map.detail(pool, reason);
        KeptReason::BudgetExhausted {
            pool: pool.to_owned(),
            reason,
            allowed: d.and_then(|d| d.allowed).unwrap_or(0),
            disrupting: d.map_or(0, |d| d.disrupting),
            until: d.and_then(|d| d.until),
            error: d.and_then(|d| d.error.clone()),
        }
    }

    fn note(&mut self, c: &Candidate<'_>, reason: KeptReason) {
        let list = self.found.entry(c.index).or_default();
        if !list.contains(&reason) {
            list.push(reason);
        }
    }

    /// Expired NodeClaims are deleted at once: no budget, no do-not-disrupt or PDB check.
    fn expire(&mut self) {
        let input = self.input;
        let deleting = self.deleting.clone();
        for c in candidates(input, &|i| deleting.contains(&i)) {
            if self.deleting.contains(&c.index) {
                continue;
            }
            let Some(after) = c.claim.expire_after else {
                continue;
            };
            let expires = c.claim.created + after;
            if input.now < expires {
                continue;
            }
            let cmd = Command {
                method: Method::Expiration,
                action: Action::Delete,
                candidates: vec![disrupted(&c)],
                replacements: Vec::new(),
                moves: Vec::new(),
                price_before: c.price.unwrap_or(0.0),
                price_after: 0.0,
            };
            self.deleting.insert(c.index);
            self.commands.push(cmd);
            if self.trace {
                self.traces.push(None);
            }
        }
    }

    /// The scheduler's answer with `removed` gone as well as the deleting nodes; when
    /// tracing, also the copy of its input (a [`Simulation`]).
    fn simulate(&self, cands: &[Candidate<'a>], removed: &[&Candidate<'a>]) -> Sim<'a> {
        self.simulate_with(cands, removed, &self.solve)
    }

    /// [`Self::simulate`] with other scheduler options.
    fn simulate_with(
        &self,
        cands: &[Candidate<'a>],
        removed: &[&Candidate<'a>],
        solve: &SolveOptions,
    ) -> Sim<'a> {
        let mut mask = vec![false; self.input.snapshot.nodes.len()];
        for &i in &self.deleting {
            mask[i] = true;
        }
        for c in removed {
            mask[c.index] = true;
        }
        let mut moving = Vec::new();
        for c in cands {
            if self.deleting.contains(&c.index) {
                moving.extend(c.moving.iter().map(|p| Moving {
                    pod: p,
                    from: c.node.name.as_str(),
                    from_deleting: true,
                }));
            }
        }
        for c in removed {
            moving.extend(c.moving.iter().map(|p| Moving {
                pod: p,
                from: c.node.name.as_str(),
                from_deleting: false,
            }));
        }
        let removal = Removal {
            removed: &mask,
            moving: &moving,
            launched: &self.launched,
            usage: Some(&self.usage),
            distinct_keys: self.distinct_keys,
        };
        let answer = answer(self.input, &removal, solve);
        let traced = self.trace.then(|| {
            let view = view(self.input, &removal);
            Simulation {
                decision: answer.placement.to_decision(&view),
                snapshot: view.to_snapshot(),
                failures: answer.failures.clone(),
                origin: origins(&removal),
            }
        });
        Sim {
            answer,
            mask,
            moving,
            traced,
        }
    }

    fn pool_types(&self, name: &str) -> Option<&'a [InstanceType]> {
        self.input
            .snapshot
            .node_pools
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.instance_types.as_slice())
    }

    /// Drift: the oldest drifted first; empty ones together, otherwise one node per command
    /// with whatever the scheduler needs to replace it (Karpenter v1 §8).
    fn drift(&mut self, cands: &[Candidate<'a>]) -> Option<Command> {
        let mut budgets = self.budgets(cands);
        let mut drifted: Vec<&Candidate<'_>> = cands
            .iter()
            .filter(|c| c.claim.drifted.is_some() && c.node_blockers.is_empty())
            .filter(|c| {
                // Eventual: with a terminationGracePeriod, blocking pods do not protect it.
                c.pod_blockers.is_empty() || c.claim.termination_grace_period.is_some()
            })
            .collect();
        drifted.sort_by(|a, b| {
            let since = |c: &Candidate<'_>| c.claim.drifted.as_ref().map(|d| d.since);
            since(a)
                .cmp(&since(b))
                .then_with(|| a.claim.name.cmp(&b.claim.name))
        });
        let reason = DisruptionReason::Drifted;
        let mut empties = Vec::new();
        for c in drifted.iter().filter(|c| c.empty) {
            if budgets.take(c.pool_name(), reason) {
                empties.push(*c);
            } else {
                let r = self.budget_reason(&budgets, c.pool_name(), reason);
                self.note(c, r);
            }
        }
        if !empties.is_empty() {
            return Some(self.command(Method::Drift, &empties, None, Vec::new()));
        }
        for c in drifted.iter().filter(|c| !c.empty) {
            if budgets.remaining(c.pool_name(), reason) == 0 {
                let r = self.budget_reason(&budgets, c.pool_name(), reason);
                self.note(c, r);
                continue;
            }
            let sim = self.simulate(cands, &[*c]);
            if let Some((pod, why)) = sim.answer.failures.first() {
                // Named as consolidation names it (consolidation::decide).
                let reason = match why.strip_prefix("would schedule against uninitialized node ") {
                    Some(node) => KeptReason::UninitializedDestination {
                        pod: pod.clone(),
                        node: node.to_owned(),
                    },
                    None => KeptReason::PodWouldNotSchedule {
                        pod: pod.clone(),
                        why: why.clone(),
                    },
                };
                self.note(c, reason);
                continue;
            }
            let replacements = sim
                .answer
                .placement
                .new_node_claims
                .iter()
                .map(Replacement::from_claim)
                .collect();
            return Some(self.command(Method::Drift, &[*c], Some(&sim), replacements));
        }
        None
    }

    /// Emptiness: every consolidatable empty node the budgets allow, in one command.
    fn emptiness(&mut self, cands: &[Candidate<'a>]) -> Option<Command> {
        let mut budgets = self.budgets(cands);
        let mut empties: Vec<&Candidate<'_>> = cands
            .iter()
            .filter(|c| c.empty && c.node_blockers.is_empty() && c.pod_blockers.is_empty())
            .collect();
        empties.sort_by(|a, b| by_cost(a, b));
        let reason = DisruptionReason::Empty;
        let mut taken = Vec::new();
        for c in empties {
            let pool = c.pool.expect("no node blockers: the pool exists");
            if pool.consolidate_after.is_none() {
                self.note(
                    c,
                    KeptReason::ConsolidationDisabled {
                        pool: c.pool_name().to_owned(),
                    },
                );
                continue;
            }
            if let Err(r) = &c.consolidatable {
                self.note(c, r.clone());
                continue;
            }
            if budgets.take(c.pool_name(), reason) {
                taken.push(c);
            } else {
                let r = self.budget_reason(&budgets, c.pool_name(), reason);
                self.note(c, r);
            }
        }
        if taken.is_empty() {
            return None;
        }
        Some(self.command(Method::Emptiness, &taken, None, Vec::new()))
    }

    /// Non-empty nodes consolidation may touch, cheapest to disrupt first; notes why the
    /// others may not.
    fn consolidation_candidates<'c>(
        &mut self,
        cands: &'c [Candidate<'a>],
    ) -> Vec<&'c Candidate<'a>> {
        let mut out = Vec::new();
        for c in cands {
            if c.empty || !c.node_blockers.is_empty() || !c.pod_blockers.is_empty() {
                continue;
            }
            let blockers = c.consolidation_blockers();
            if blockers.is_empty() {
                out.push(c);
            } else {
                for b in blockers {
                    self.note(c, b);
                }
            }
        }
        out.sort_by(|a, b| by_cost(a, b));
        out
    }

    fn savings_ok(&mut self, batch: &[&Candidate<'_>], outcome: &Outcome) -> bool {
        let minimum = batch
            .iter()
            .filter_map(|c| c.pool.map(|p| p.min_savings_per_hour))
            .fold(0.0, f64::max);
        if minimum <= 0.0 {
            return true;
        }
        let before: f64 = batch.iter().filter_map(|c| c.price).sum();
        let after = outcome.replacement_price();
        if before - after >= minimum {
            return true;
        }
        for c in batch {
            self.note(
                c,
                KeptReason::BelowMinimumSavings {
                    savings: before - after,
                    minimum,
                },
            );
        }
        false
    }

    /// Multi-node: the longest prefix of the cheapest-to-disrupt candidates (within budgets)
    /// that can go with at most one replacement, by binary search (Karpenter v1 §10).
    fn multi(&mut self, cands: &[Candidate<'a>]) -> Option<Command> {
        let all = self.consolidation_candidates(cands);
        let mut budgets = self.budgets(cands);
        let reason = DisruptionReason::Underutilized;
        let mut batch = Vec::new();
        for c in all {
            if budgets.take(c.pool_name(), reason) {
                batch.push(c);
            }
        }
        if let Some(cap) = self.input.options.multi_node_cap {
            batch.truncate(cap);
        }
        if batch.len() < 2 {
            return None;
        }
        let types = &self.input.snapshot.node_pools;
        let (mut lo, mut hi) = (2usize, batch.len());
        let mut best: Option<(usize, Sim<'a>, Outcome)> = None;
        while lo <= hi {
            let mid = (lo + hi) / 2;
            let prefix = &batch[..mid];
            let sim = self.simulate(cands, prefix);
            let outcome =
                consolidation::decide(prefix, &sim.answer, types, &self.input.options, true);
            let valid = matches!(outcome, Outcome::Delete | Outcome::Replace(_));
            if valid && self.savings_ok(prefix, &outcome) {
                best = Some((mid, sim, outcome));
                lo = mid + 1;
            } else {
                hi = mid - 1;
            }
        }
        let (n, sim, outcome) = best?;
        let replacements = match outcome {
            Outcome::Replace(rs) => rs,
            _ => Vec::new(),
        };
        Some(self.command(
            Method::MultiNodeConsolidation,
            &batch[..n],
            Some(&sim),
            replacements,
        ))
    }

    /// Single-node: each candidate in turn (pools interleaved), the first that can go or be
    /// replaced by a cheaper node (Karpenter v1 §11).
    fn single(&mut self, cands: &[Candidate<'a>]) -> Option<Command> {
        let all = self.consolidation_candidates(cands);
        let budgets = self.budgets(cands);
        let reason = DisruptionReason::Underutilized;
        let types = &self.input.snapshot.node_pools;
        for c in interleave_pools(all) {
            if budgets.remaining(c.pool_name(), reason) == 0 {
                let r = self.budget_reason(&budgets, c.pool_name(), reason);
                self.note(c, r);
                continue;
            }
            // One node by several is only worth asking for when the scheduler may open a
            // node per shape where that is cheaper: Karpenter's rule fills one node with
            // everything any type can hold.
            let sim = if self.input.options.replace_with_several {
                let cheapest = SolveOptions {
                    packing: Packing::Cheapest,
                    ..self.solve.clone()
                };
                self.simulate_with(cands, &[c], &cheapest)
            } else {
                self.simulate(cands, &[c])
            };
            let outcome =
                consolidation::decide(&[c], &sim.answer, types, &self.input.options, false);
            match &outcome {
                Outcome::Keep(r) => {
                    self.note(c, r.clone());
                    continue;
                }
                _ if !self.savings_ok(&[c], &outcome) => continue,
                Outcome::Delete => {
                    return Some(self.command(
                        Method::SingleNodeConsolidation,
                        &[c],
                        Some(&sim),
                        Vec::new(),
                    ));
                }
                Outcome::Replace(rs) => {
                    let rs = rs.clone();
                    return Some(self.command(
                        Method::SingleNodeConsolidation,
                        &[c],
                        Some(&sim),
                        rs,
                    ));
                }
            }
        }
        None
    }

    fn command(
        &mut self,
        method: Method,
        batch: &[&Candidate<'_>],
        sim: Option<&Sim<'a>>,
        replacements: Vec<Replacement>,
    ) -> Command {
        let mut moves = Vec::new();
        if self.trace {
            self.last_sim = sim.and_then(|s| s.traced.clone());
        }
        if let Some(sim) = sim {
            moves = self.moves(batch, sim);
        }
        Command {
            method,
            action: if replacements.is_empty() {
                Action::Delete
            } else {
                Action::Replace
            },
            candidates: batch.iter().map(|c| disrupted(c)).collect(),
            price_before: batch.iter().filter_map(|c| c.price).sum(),
            price_after: replacements.iter().map(|r| r.price).sum(),
            replacements,
            moves,
        }
    }

    /// The pods the simulation moves off the batch's nodes, by pod.
    fn moves(&self, batch: &[&Candidate<'_>], sim: &Sim<'a>) -> Vec<PodMove> {
        let removal = Removal {
            removed: &sim.mask,
            moving: &sim.moving,
            launched: &self.launched,
            usage: Some(&self.usage),
            distinct_keys: self.distinct_keys,
        };
        let view = view(self.input, &removal);
        let placement = &sim.answer.placement;
        let mut moves = Vec::new();
        if self.distinct_keys {
            // A pod's position names it: the scheduler was given the pending pods, then the
            // moving ones; those not from a deleting node leave the batch.
            let pending = self.input.snapshot.pods.len();
            let leaving = |i: usize| {
                i.checked_sub(pending)
                    .map(|m| &sim.moving[m])
                    .filter(|m| !m.from_deleting)
            };
            let destinations = placement
                .existing
                .iter()
                .map(|(ni, pods)| (Destination::Node(view.nodes[*ni].name.clone()), pods))
                .chain(
                    placement
                        .claim_pods
                        .iter()
                        .enumerate()
                        .map(|(c, pods)| (Destination::Replacement(c), pods)),
                );
            for (to, pods) in destinations {
                for &i in pods {
                    if let Some(m) = leaving(i) {
                        moves.push(PodMove {
                            pod: m.pod.key.clone(),
                            from: m.from.to_owned(),
                            to: to.clone(),
                        });
                    }
                }
            }
        } else {
            // By key: the pods listed for the batch's nodes, by the node they leave (listed
            // after the deleting nodes' pods, in batch order: the last listing wins).
            let decision = placement.to_decision(&view);
            let mut leaving: BTreeMap<&PodKey, &str> = BTreeMap::new();
            for c in batch {
                for p in &c.moving {
                    leaving.insert(&p.key, c.name());
                }
            }
            let from = |pod: &PodKey| leaving.get(pod).map(|o| o.to_string());
            for plan in &decision.existing {
                for pod in &plan.pods {
                    if let Some(o) = from(pod) {
                        moves.push(PodMove {
                            pod: pod.clone(),
                            from: o,
                            to: Destination::Node(plan.node.clone()),
                        });
                    }
                }
            }
            for (i, claim) in decision.new_node_claims.iter().enumerate() {
                for pod in &claim.pods {
                    if let Some(o) = from(pod) {
                        moves.push(PodMove {
                            pod: pod.clone(),
                            from: o,
                            to: Destination::Replacement(i),
                        });
                    }
                }
            }
        }
        moves.sort_by(|a, b| a.pod.cmp(&b.pod));
        moves
    }

    /// The next pass sees the command's nodes deleting, its replacements launching and its
    /// destinations nominated.
    fn apply(&mut self, cmd: Command, cands: &[Candidate<'_>]) {
        for d in &cmd.candidates {
            if let Some(c) = cands.iter().find(|c| c.name() == d.node) {
                self.deleting.insert(c.index);
            }
        }
        for m in &cmd.moves {
            if let Destination::Node(n) = &m.to {
                self.nominated.insert(n.clone());
            }
        }
        for (i, r) in cmd.replacements.iter().enumerate() {
            if let Some(node) = self.launched_node(r, self.commands.len(), i) {
                self.usage.push(NodeUsage::of(&node));
                self.launched.push(node);
            }
        }
        self.commands.push(cmd);
        if self.trace {
            self.traces.push(self.last_sim.take());
        }
    }

    /// A replacement as an in-flight node of its cheapest type.
    fn launched_node(&self, r: &Replacement, command: usize, index: usize) -> Option<ExistingNode> {
        let cheapest = r.instance_types.first()?;
        let it = self
            .pool_types(&r.node_pool)?
            .iter()
            .find(|t| t.name == cheapest.name)?;
        let mut labels = r.requirements.single_valued_labels();
        labels.extend(it.requirements.single_valued_labels());
        labels.insert(crate::labels::ZONE.into(), cheapest.zone.clone());
        labels.insert(
            crate::labels::CAPACITY_TYPE.into(),
            cheapest.capacity_type.clone(),
        );
        labels.insert(crate::labels::NODE_POOL.into(), r.node_pool.clone());
        let name = format!("replacement-{command}-{index}");
        labels.insert(crate::labels::HOSTNAME.into(), name.clone());
        let taints = self
            .input
            .snapshot
            .node_pools
            .iter()
            .find(|p| p.name == r.node_pool)
            .map(|p| p.taints.clone())
            .unwrap_or_default();
        Some(ExistingNode {
            name,
            labels,
            taints,
            allocatable: it.allocatable(),
            other_allocatable: BTreeMap::new(),
            pods: Vec::new(),
            in_flight: true,
            marked_for_deletion: false,
        })
    }

    /// Every managed node not in a command, with its reasons.
    fn finish(self, cands: &[Candidate<'_>]) -> (Plan, Vec<Option<Simulation>>) {
        let in_command: BTreeSet<&str> = self
            .commands
            .iter()
            .flat_map(|c| c.candidates.iter().map(|d| d.node.as_str()))
            .collect();
        let mut kept = Vec::new();
        for c in cands {
            if in_command.contains(c.name()) {
                continue;
            }
            // Most fundamental first; a nomination made by this plan's own commands comes
            // last, so it does not hide what would keep the node anyway.
            let (nominated, mut reasons): (Vec<KeptReason>, Vec<KeptReason>) = c
                .node_blockers
                .iter()
                .cloned()
                .partition(|r| matches!(r, KeptReason::Nominated { .. }));
            let lifecycle = reasons
                .iter()
                .any(|r| matches!(r, KeptReason::Deleting | KeptReason::NotInitialized));
            if !lifecycle {
                reasons.extend(c.pod_blockers.iter().cloned());
                // A nominated node was skipped by the last pass: say what would keep it anyway.
                let standing = (!nominated.is_empty()).then(|| c.consolidation_blockers());
                for r in self
                    .found
                    .get(&c.index)
                    .into_iter()
                    .flatten()
                    .chain(standing.iter().flatten())
                {
                    if !reasons.contains(r) {
                        reasons.push(r.clone());
                    }
                }
            }
            reasons.extend(nominated);
            if reasons.is_empty() {
                reasons.push(KeptReason::InUse);
            }
            kept.push(Kept {
                node: c.name().to_owned(),
                node_claim: c.claim.name.clone(),
                node_pool: c.pool_name().to_owned(),
                reasons,
            });
        }
        let plan = Plan {
            commands: self.commands,
            kept,
        };
        (plan, self.traces)
    }
}

/// One simulation as the planner keeps it.
struct Sim<'a> {
    answer: Answer,
    /// Nodes removed (by index in the input snapshot).
    mask: Vec<bool>,
    /// The pods it moved, in the order the scheduler was given them after the pending ones.
    moving: Vec<Moving<'a>>,
    /// The full simulation, when tracing.
    traced: Option<Simulation>,
}

fn disrupted(c: &Candidate<'_>) -> Disrupted {
    Disrupted {
        node: c.name().to_owned(),
        node_claim: c.claim.name.clone(),
        node_pool: c.pool_name().to_owned(),
        instance_type: c.claim.instance_type.clone(),
        capacity_type: c.claim.capacity_type.clone(),
        zone: c.claim.zone.clone(),
        price: c.price,
    }
}

/// Round-robin over NodePools (first candidate of each pool, then the second, …), keeping
/// each pool's cost order (Karpenter v1.4's single-node order).
fn interleave_pools<'c, 'a>(sorted: Vec<&'c Candidate<'a>>) -> Vec<&'c Candidate<'a>> {
    let mut by_pool: BTreeMap<&str, std::collections::VecDeque<&'c Candidate<'a>>> =
        BTreeMap::new();
    let mut pool_order: Vec<&str> = Vec::new();
    for c in &sorted {
        let pool = c.claim.node_pool.as_str();
        if !by_pool.contains_key(pool) {
            pool_order.push(pool);
        }
        by_pool.entry(pool).or_default().push_back(c);
    }
    let mut out = Vec::with_capacity(sorted.len());
    while out.len() < sorted.len() {
        for pool in &pool_order {
            if let Some(c) = by_pool.get_mut(pool).and_then(|q| q.pop_front()) {
                out.push(c);
            }
        }
    }
    out
}

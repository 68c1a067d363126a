//! Opening new NodeClaims, and what keeps a pod off them beyond taints, requirements and
//! instance types: a chosen hostname (new nodes get generated ones, whichever pool they come
//! from) and a pool's node limit (`spec.limits.nodes`).

use super::claims::Claim;
use super::preferences::PodState;
use super::solver::{Solver, TopologyContext, node_label};
use crate::labels;
use crate::resources::Resources;
use crate::snapshot::{SnapshotView, untolerated};

/// How many nodes of the snapshot belong to pool `name` (labelled `karpenter.sh/nodepool`),
/// in-flight claims and nodes being deleted included, as the pool's `usage` counts them.
pub(crate) fn pool_nodes(snap: &SnapshotView<'_>, name: &str) -> usize {
    snap.nodes
        .iter()
        .filter(|n| n.labels.get(labels::NODE_POOL).is_some_and(|p| p == name))
        .count()
}

/// The hostname the solver gives the new NodeClaim at `index`, as Karpenter names them.
pub(crate) fn placeholder_hostname(index: usize) -> String {
    format!("hostname-placeholder-{:04}", index + 1)
}

impl Solver<'_> {
    /// Opens a NodeClaim from pool `p` for the pod, unless the pool's taints, requirements
    /// or node limit refuse it or no instance type of the pool can take the pod.
    pub(crate) fn open_claim(
        &mut self,
        p: usize,
        state: &PodState,
        req_id: u32,
        ctx: &TopologyContext,
    ) -> Result<(), String> {
        let pool = &self.pools[p];
        if let Some(t) = untolerated(&pool.input.taints, &state.tolerations) {
            return Err(format!("did not tolerate taint {t}"));
        }
        pool.input
            .requirements
            .compatible(&state.requirements)
            .map_err(|e| format!("incompatible requirements: {e}"))?;
        if pool.node_limit_reached() {
            return Err(self.node_limit_reason(p));
        }
        if pool.types.is_empty() {
            // Said plainly: a claim over no types would report "at most 0 is allocatable".
            return Err(match &pool.input.unavailable {
                Some(why) => format!("no instance types are available: {why}"),
                None => "no instance type of its node class meets its requirements with an \
                         offering"
                    .to_string(),
            });
        }
        let index = self.claims.len();
        let hostname = placeholder_hostname(index);
        let host_domain = self
            .hostname_table
            .map(|t| self.topo.tables[t].intern(&hostname));
        let claim = Claim::new(p, &self.pools[p], hostname, host_domain);
        self.claims.push(claim);
        match self.claim_accepts(index, state, req_id, ctx) {
            Ok(update) => {
                let cap = self.claims[index].max_capacity;
                self.pools[p].remaining -= cap;
                self.pools[p].opened += 1;
                self.commit_claim(index, state, req_id, update);
                Ok(())
            }
            Err(e) => {
                self.claims.pop();
                Err(e.describe(&self.topo, self.pools[p].daemon_overhead))
            }
        }
    }

    /// Why pool `p` may open no further NodeClaim because of `spec.limits.nodes`.
    pub(crate) fn node_limit_reason(&self, p: usize) -> String {
        let pool = &self.pools[p];
        format!(
            "node limit reached: spec.limits.nodes is {}, and the pool has {} existing and {} new \
             nodes",
            pool.input.node_limit.unwrap_or(usize::MAX),
            pool.existing_nodes,
            pool.opened
        )
    }

    /// Why no new NodeClaim can take the pod because of the hostname it requires, or `None`.
    ///
    /// Karpenter gives every new NodeClaim a generated hostname, so a pod whose requirements do
    /// not admit the next generated name (`kubernetes.io/hostname In [ip-…]`, or a hostname
    /// picked through `matchFields metadata.name`) fits only an existing node of that name.
    /// The reason says whether such a node exists and, if so, why it did not take the pod.
    pub(crate) fn hostname_block(&self, state: &PodState, ctx: &TopologyContext) -> Option<String> {
        let wanted = state.requirements.get(labels::HOSTNAME)?;
        if wanted.has(&placeholder_hostname(self.claims.len())) {
            return None;
        }
        let new_node = "a new node cannot take a chosen hostname (it gets a generated one)";
        let named: Vec<String> = self
            .snap
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| node_label(n, labels::HOSTNAME).is_some_and(|h| wanted.has(h)))
            .map(|(ni, n)| {
                let why = match self.node_accepts(ni, state, ctx) {
                    Err(r) => r.describe(&self.topo, Resources::ZERO),
                    Ok(()) => "ruled out earlier in this solve".to_string(),
                };
                format!("node {} cannot take the pod: {why}", n.name)
            })
            .collect();
        Some(if named.is_empty() {
            format!("no node has {} {wanted}, and {new_node}", labels::HOSTNAME)
        } else {
            format!(
                "requires {} {wanted}: {}; {new_node}",
                labels::HOSTNAME,
                named.join("; ")
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::fixtures::{ZONES, benchmark_instance_types, snapshot_with};
    use crate::labels;
    use crate::requirements::{Operator, Requirement, Requirements};
    use crate::resources::{CPU, MEMORY, PODS, Resources};
    use crate::scheduling::{Decision, Packing, SolveOptions, solve, verify};
    use crate::snapshot::{
        ExistingNode, LabelSelector, NodePoolInput, Pod, PodAffinityTerm, Snapshot,
    };

    fn pod(name: &str, cpu: i64) -> Pod {
        Pod::new(
            "default",
            name,
            Resources::from_pairs(&[(CPU, cpu), (MEMORY, 256 << 20), (PODS, 1)]),
        )
    }

    fn on_host(name: &str, cpu: i64, host: &str) -> Pod {
        let mut p = pod(name, cpu);
        p.node_selector
            .add(labels::HOSTNAME, Requirement::single(host));
        p
    }

    fn node(name: &str, cpu: i64) -> ExistingNode {
        ExistingNode {
            name: name.into(),
            labels: BTreeMap::from([
                (labels::HOSTNAME.to_string(), name.to_string()),
                (labels::ZONE.to_string(), ZONES[0].to_string()),
            ]),
            taints: vec![],
            allocatable: Resources::from_pairs(&[(CPU, cpu), (MEMORY, 8 << 30), (PODS, 110)]),
            other_allocatable: BTreeMap::new(),
            pods: vec![],
            in_flight: false,
            marked_for_deletion: false,
        }
    }

    fn solved(snap: &Snapshot) -> Decision {
        let d = solve(snap, &SolveOptions::default());
        assert_eq!(verify(snap, &d), vec![], "{d:#?}");
        d
    }

    #[test]
    fn a_hostname_no_node_has_is_unschedulable_and_launches_nothing() {
        let mut snap = snapshot_with(
            vec![on_host("pinned", 500, "ip-10-0-9-99")],
            benchmark_instance_types(10),
        );
        snap.nodes.push(node("ip-10-0-1-10", 4000));
        let d = solved(&snap);
        assert!(d.new_node_claims.is_empty(), "{d:#?}");
        assert!(d.existing.is_empty());
        let reason = &d.unschedulable[0].reason;
        assert!(
            reason.contains("kubernetes.io/hostname In [ip-10-0-9-99]"),
            "{reason}"
        );
        assert!(reason.contains("no node has"), "{reason}");
    }

    #[test]
    fn a_hostname_pod_goes_to_its_node_while_it_has_room() {
        let mut snap = snapshot_with(
            vec![
                on_host("first", 1500, "ip-10-0-2-20"),
                on_host("second", 1500, "ip-10-0-2-20"),
            ],
            benchmark_instance_types(10),
        );
        snap.nodes.push(node("ip-10-0-2-20", 2000));
        let d = solved(&snap);
        assert!(d.new_node_claims.is_empty(), "{d:#?}");
        assert_eq!(d.existing[0].node, "ip-10-0-2-20");
        assert_eq!(d.existing[0].pods[0].name, "first");
        let reason = &d.unschedulable[0].reason;
        assert!(
            reason.contains("node ip-10-0-2-20 cannot take the pod: insufficient cpu"),
            "{reason}"
        );
    }

    #[test]
    fn a_hostname_pod_never_joins_a_claim_opened_in_the_solve() {
        // "free" opens a claim first (larger); the pinned pod must not join it.
        let snap = snapshot_with(
            vec![pod("free", 2000), on_host("pinned", 100, "ip-10-0-9-99")],
            benchmark_instance_types(10),
        );
        let d = solved(&snap);
        assert_eq!(d.new_node_claims.len(), 1);
        assert_eq!(d.new_node_claims[0].pods.len(), 1);
        assert_eq!(d.unschedulable[0].pod.name, "pinned");
    }

    #[test]
    fn hostnames_a_new_node_can_take_do_not_block_it() {
        // NotIn admits a generated hostname; an OR term without a hostname is tried next.
        let mut not_in = pod("not-in", 500);
        not_in.node_selector.add(
            labels::HOSTNAME,
            Requirement::new(Operator::NotIn, &["ip-10-0-1-10"]).unwrap(),
        );
        let mut or_terms = pod("or-terms", 500);
        let mut host = Requirements::new();
        host.add(labels::HOSTNAME, Requirement::single("ip-10-0-9-99"));
        let mut zone = Requirements::new();
        zone.add(labels::ZONE, Requirement::single(ZONES[1]));
        or_terms.required_node_affinity = vec![host, zone];
        let snap = snapshot_with(vec![not_in, or_terms], benchmark_instance_types(10));
        let d = solved(&snap);
        assert!(d.unschedulable.is_empty(), "{d:#?}");
        assert_eq!(d.placed_pods(), 2);
    }

    /// Pods that each need a node of their own (a pod per node by hostname anti-affinity).
    fn one_per_node(count: usize) -> Vec<Pod> {
        let selector = LabelSelector {
            match_labels: BTreeMap::from([("app".to_string(), "solo".to_string())]),
            match_expressions: vec![],
        };
        (0..count)
            .map(|i| {
                let mut p = pod(&format!("solo-{i}"), 500);
                p.labels.insert("app".into(), "solo".into());
                p.pod_anti_affinity = vec![PodAffinityTerm {
                    topology_key: labels::HOSTNAME.into(),
                    selector: selector.clone(),
                    namespaces: vec![],
                    namespace_selector: None,
                }];
                p
            })
            .collect()
    }

    fn pool_node(name: &str, pool: &str, in_flight: bool) -> ExistingNode {
        let mut n = node(name, 100);
        n.labels.insert(labels::NODE_POOL.into(), pool.into());
        n.in_flight = in_flight;
        n
    }

    #[test]
    fn the_node_limit_counts_existing_and_in_flight_nodes() {
        let mut snap = snapshot_with(one_per_node(4), benchmark_instance_types(10));
        snap.node_pools[0].node_limit = Some(3);
        snap.nodes = vec![
            pool_node("full", "default", false),
            pool_node("launching", "default", true),
            pool_node("elsewhere", "other", false),
        ];
        let d = solved(&snap);
        // 3 - 2 of the pool's nodes (the other pool's node does not count) = 1 new node.
        assert_eq!(d.new_node_claims.len(), 1);
        assert_eq!(d.unschedulable.len(), 3);
        for u in &d.unschedulable {
            assert!(
                u.reason.contains(
                    "node limit reached: spec.limits.nodes is 3, and the pool has 2 existing and 1 new nodes"
                ),
                "{}",
                u.reason
            );
        }
    }

    #[test]
    fn a_full_pool_sends_pods_to_the_next_pool_by_weight() {
        let mut snap = snapshot_with(one_per_node(3), benchmark_instance_types(10));
        snap.node_pools[0].node_limit = Some(1);
        snap.node_pools[0].weight = 50;
        snap.node_pools
            .push(NodePoolInput::new("spare", benchmark_instance_types(10)));
        let d = solved(&snap);
        let pools: Vec<&str> = d
            .new_node_claims
            .iter()
            .map(|c| c.node_pool.as_str())
            .collect();
        assert_eq!(pools, ["default", "spare", "spare"]);
        assert!(d.unschedulable.is_empty());
    }

    #[test]
    fn a_zero_node_limit_launches_nothing_and_growing_still_works() {
        let mut snap = snapshot_with(vec![pod("a", 500)], benchmark_instance_types(10));
        snap.node_pools[0].node_limit = Some(0);
        let d = solved(&snap);
        assert!(d.new_node_claims.is_empty());
        assert!(d.unschedulable[0].reason.contains("node limit reached"));
        // With one node allowed, pods that can share it all go to that one node.
        let pods = (0..5).map(|i| pod(&format!("p{i}"), 300)).collect();
        let mut snap = snapshot_with(pods, benchmark_instance_types(10));
        snap.node_pools[0].node_limit = Some(1);
        for packing in [Packing::Karpenter, Packing::CostAware, Packing::Cheapest] {
            let options = SolveOptions {
                packing,
                ..SolveOptions::default()
            };
            let d = solve(&snap, &options);
            assert_eq!(verify(&snap, &d), vec![]);
            assert_eq!(d.new_node_claims.len(), 1, "{packing:?}");
            assert_eq!(d.placed_pods(), 5, "{packing:?}");
        }
    }
}

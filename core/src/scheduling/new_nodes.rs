//! What keeps a pod off every new NodeClaim, whichever pool it comes from: a chosen hostname
//! (new nodes get generated ones).

use super::preferences::PodState;
use super::solver::{Solver, TopologyContext, node_label};
use crate::labels;
use crate::resources::Resources;

/// The hostname the solver gives the new NodeClaim at `index`, as Karpenter names them.
pub(crate) fn placeholder_hostname(index: usize) -> String {
    format!("hostname-placeholder-{:04}", index + 1)
}

impl Solver<'_> {
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
                    Ok(()) => "no room left after this solve's placements".to_string(),
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
    use crate::scheduling::{Decision, SolveOptions, solve, verify};
    use crate::snapshot::{ExistingNode, Pod, Snapshot};

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
}

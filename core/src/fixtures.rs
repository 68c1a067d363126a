//! Synthetic instance types and workloads shaped like Karpenter's scheduling benchmark
//! (`scheduling_benchmark_test.go`), for tests, property tests and `cargo xtask bench`.
//!
//! Everything is generated from a seed with a small deterministic PRNG, so a run can be
//! repeated exactly.

use std::collections::BTreeMap;

use crate::instance_type::{InstanceType, Offering};
use crate::labels;
use crate::requirements::{Requirement, Requirements};
use crate::resources::{CPU, MEMORY, PODS, Resources};
use crate::snapshot::{
    LabelSelector, NodePoolInput, Pod, PodAffinityTerm, Snapshot, TopologySpreadConstraint,
    WhenUnsatisfiable,
};

/// A tiny xorshift PRNG: deterministic and dependency-free.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeds the generator (zero is replaced by a fixed odd constant).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A uniform index below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// On-demand zones of the synthetic types; spot is offered in the first two.
pub const ZONES: [&str; 3] = ["test-zone-1", "test-zone-2", "test-zone-3"];

/// Karpenter's benchmark instance types: type `i` has `i+1` vCPU, `2(i+1)` GiB and `10(i+1)`
/// pods; on-demand in three zones, spot in two. Prices are linear in size (0.04 $/vCPU/h plus
/// 0.005 $/GiB/h on-demand; spot at 70%), so bigger is never cheaper per unit.
pub fn benchmark_instance_types(count: usize) -> Vec<InstanceType> {
    (0..count)
        .map(|i| {
            let cpu = (i + 1) as i64;
            let mem_gib = 2 * (i + 1) as i64;
            let name = format!("fake-it-{i}");
            let mut requirements = Requirements::new();
            requirements.add(labels::INSTANCE_TYPE, Requirement::single(&name));
            requirements.add(labels::ARCH, Requirement::single("amd64"));
            requirements.add(labels::OS, Requirement::single("linux"));
            let od_price = 0.04 * cpu as f64 + 0.005 * mem_gib as f64;
            let mut offerings: Vec<Offering> = ZONES
                .iter()
                .map(|z| Offering {
                    zone: z.to_string(),
                    capacity_type: labels::CAPACITY_ON_DEMAND.to_string(),
                    price: od_price,
                    available: true,
                })
                .collect();
            for z in &ZONES[..2] {
                offerings.push(Offering {
                    zone: z.to_string(),
                    capacity_type: labels::CAPACITY_SPOT.to_string(),
                    price: od_price * 0.7,
                    available: true,
                });
            }
            InstanceType {
                name,
                requirements,
                capacity: Resources::from_pairs(&[
                    (CPU, cpu * 1000),
                    (MEMORY, mem_gib << 30),
                    (PODS, 10 * (i + 1) as i64),
                ]),
                overhead: Resources::ZERO,
                offerings,
            }
        })
        .collect()
}

const CPU_CHOICES: [i64; 5] = [100, 250, 500, 1000, 1500];
const MEM_CHOICES_MI: [i64; 6] = [100, 256, 512, 1024, 2048, 4096];

fn random_requests(rng: &mut Rng) -> Resources {
    Resources::from_pairs(&[
        (CPU, CPU_CHOICES[rng.below(CPU_CHOICES.len())]),
        (
            MEMORY,
            MEM_CHOICES_MI[rng.below(MEM_CHOICES_MI.len())] << 20,
        ),
        (PODS, 1),
    ])
}

fn selector(app: &str) -> LabelSelector {
    LabelSelector {
        match_labels: BTreeMap::from([("app".to_string(), app.to_string())]),
        match_expressions: Vec::new(),
    }
}

/// Karpenter's "diverse" pods in five equal parts: plain; zone topology spread (maxSkew 1,
/// DoNotSchedule); hostname topology spread; zone pod affinity to itself; hostname pod
/// anti-affinity to itself.
pub fn diverse_pods(count: usize, seed: u64) -> Vec<Pod> {
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|i| {
            let kind = i % 5;
            let app = [
                "plain",
                "zone-spread",
                "host-spread",
                "zone-affinity",
                "host-anti",
            ][kind];
            let mut pod = Pod::new("default", &format!("{app}-{i}"), random_requests(&mut rng));
            pod.labels.insert("app".into(), app.into());
            let spread = |key: &str| TopologySpreadConstraint {
                max_skew: 1,
                topology_key: key.to_string(),
                when_unsatisfiable: WhenUnsatisfiable::DoNotSchedule,
                selector: selector(app),
                min_domains: None,
            };
            let term = |key: &str| PodAffinityTerm {
                topology_key: key.to_string(),
                selector: selector(app),
                namespaces: Vec::new(),
                namespace_selector: None,
            };
            match kind {
                1 => pod.topology_spread.push(spread(labels::ZONE)),
                2 => pod.topology_spread.push(spread(labels::HOSTNAME)),
                3 => pod.pod_affinity.push(term(labels::ZONE)),
                4 => pod.pod_anti_affinity.push(term(labels::HOSTNAME)),
                _ => {}
            }
            pod
        })
        .collect()
}

/// Plain pods with random benchmark-sized requests.
pub fn generic_pods(count: usize, seed: u64) -> Vec<Pod> {
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|i| Pod::new("default", &format!("pod-{i}"), random_requests(&mut rng)))
        .collect()
}

/// A snapshot with one unconstrained NodePool over `instance_types` and the given pods.
pub fn snapshot_with(pods: Vec<Pod>, instance_types: Vec<InstanceType>) -> Snapshot {
    Snapshot {
        pods,
        node_pools: vec![NodePoolInput::new("default", instance_types)],
        ..Snapshot::default()
    }
}

/// A cluster of `nodes` initialized, managed on-demand nodes (zones in turn), each drawn with
/// `pods_per_node` plain pods with random requests, in one NodePool whose budget lets every
/// node be disrupted and whose `consolidateAfter` has elapsed (no do-not-disrupt anywhere):
/// every node is a consolidation candidate. The disruption benchmark's input.
///
/// A node is an 8, 16 or 32 vCPU type of [`benchmark_instance_types`] at random, or the
/// smallest type that holds its pods when that one does not, so with `fill` 1 the cluster has
/// exactly `nodes × pods_per_node` pods. With `fill` below 1 only that share of the drawn pods
/// is kept (a fragmented cluster).
pub fn disruption_cluster(
    nodes: usize,
    pods_per_node: usize,
    fill: f64,
    seed: u64,
) -> crate::disruption::DisruptionInput {
    use crate::disruption::{ClaimFacts, DisruptionInput, NodeFacts, PoolDisruption};
    use crate::snapshot::ExistingNode;
    let types = benchmark_instance_types(400);
    let mut rng = Rng::new(seed);
    let now: k8s_openapi::jiff::Timestamp = "2026-12-07T12:00:00Z".parse().expect("timestamp");
    let day_ago = now - k8s_openapi::jiff::SignedDuration::from_hours(24);
    let mut snapshot = snapshot_with(Vec::new(), types.clone());
    let mut facts = BTreeMap::new();
    let mut pod_no = 0;
    for i in 0..nodes {
        let drawn: Vec<(Resources, bool)> = (0..pods_per_node)
            .map(|_| {
                let requests = random_requests(&mut rng);
                (requests, (rng.below(1000) as f64) < fill * 1000.0)
            })
            .collect();
        let needed = drawn.iter().fold(Resources::ZERO, |a, (r, _)| a + *r);
        let pick = [7, 15, 31][rng.below(3)];
        let Some(it) = types[pick..]
            .iter()
            .find(|t| needed.fits_in(&t.allocatable()))
        else {
            panic!("no benchmark type holds {pods_per_node} pods");
        };
        let zone = ZONES[i % ZONES.len()];
        let name = format!("node-{i:05}");
        let mut node_labels = it.requirements.single_valued_labels();
        node_labels.insert(labels::ZONE.into(), zone.into());
        node_labels.insert(
            labels::CAPACITY_TYPE.into(),
            labels::CAPACITY_ON_DEMAND.into(),
        );
        node_labels.insert(labels::NODE_POOL.into(), "default".into());
        node_labels.insert(labels::HOSTNAME.into(), name.clone());
        let mut pods = Vec::new();
        for (requests, keep) in drawn {
            pod_no += 1;
            if keep {
                pods.push(Pod::new("default", &format!("pod-{pod_no}"), requests));
            }
        }
        snapshot.nodes.push(ExistingNode {
            name: name.clone(),
            labels: node_labels,
            taints: Vec::new(),
            allocatable: it.allocatable(),
            other_allocatable: BTreeMap::new(),
            pods,
            in_flight: false,
            marked_for_deletion: false,
        });
        facts.insert(
            name.clone(),
            NodeFacts {
                claim: Some(ClaimFacts {
                    name,
                    node_pool: "default".into(),
                    created: day_ago,
                    initialized_at: Some(day_ago),
                    last_pod_event: None,
                    drifted: None,
                    expire_after: None,
                    termination_grace_period: None,
                    instance_type: Some(it.name.clone()),
                    zone: Some(zone.into()),
                    capacity_type: Some(labels::CAPACITY_ON_DEMAND.into()),
                }),
                initialized: true,
                ready: true,
                ..NodeFacts::default()
            },
        );
    }
    let pool = PoolDisruption {
        budgets: vec![crate::api::nodepool::Budget {
            nodes: "100%".into(),
            ..crate::api::nodepool::Budget::default()
        }],
        ..PoolDisruption::default()
    };
    DisruptionInput {
        snapshot,
        nodes: facts,
        pods: BTreeMap::new(),
        pdbs: Vec::new(),
        pools: BTreeMap::from([("default".to_string(), pool)]),
        now,
        options: Default::default(),
    }
}

/// The cluster after `plan` ran to completion, for benchmarks that apply plans repeatedly (the
/// consolidation-quality report). `simulations` is what [`crate::disruption::plan_traced`]
/// returned with the plan. Every disrupted node is gone; every replacement is an initialized,
/// ready node of its cheapest option (zone and capacity type of that option), named
/// `replacement-<round>-<command>-<index>`; every pod of a disrupted node is bound where the
/// plan's last simulation puts it. Pods of a disrupted node that no simulation moves are
/// dropped.
///
/// Why the last simulation and not each command's moves: a command's moves are decided before
/// later commands take their nodes, and each later simulation places the pods of every earlier
/// command again (they are on deleting nodes) together with its own, possibly elsewhere; bound
/// literally, the moves of different commands can overfill a node. The last simulation places
/// the pods of every disrupted node at once, on the nodes that stay and the replacements: the
/// plan's end state as the scheduler sees it.
///
/// Not the controller's logic (which launches, waits and drains): a benchmark's shortcut.
pub fn apply_plan(
    input: &crate::disruption::DisruptionInput,
    plan: &crate::disruption::Plan,
    simulations: &[Option<crate::disruption::simulate::Simulation>],
    round: usize,
) -> crate::disruption::DisruptionInput {
    use crate::disruption::{ClaimFacts, NodeFacts};
    use crate::snapshot::ExistingNode;
    let mut out = input.clone();
    let gone: std::collections::BTreeSet<&str> = plan
        .commands
        .iter()
        .flat_map(|c| c.candidates.iter().map(|d| d.node.as_str()))
        .collect();
    // Every pod of a disrupted node, by key, to be bound again where the simulation says.
    let mut leaving: BTreeMap<crate::snapshot::PodKey, Pod> = BTreeMap::new();
    for n in &input.snapshot.nodes {
        if gone.contains(n.name.as_str()) {
            leaving.extend(n.pods.iter().map(|p| (p.key.clone(), p.clone())));
        }
    }
    out.snapshot
        .nodes
        .retain(|n| !gone.contains(n.name.as_str()));
    for name in &gone {
        out.nodes.remove(*name);
    }
    // Replacements, by the name the planner gave the launched node (`replacement-<command>-
    // <index>`).
    let mut renamed: BTreeMap<String, String> = BTreeMap::new();
    for (ci, cmd) in plan.commands.iter().enumerate() {
        for (ri, r) in cmd.replacements.iter().enumerate() {
            let option = r
                .instance_types
                .first()
                .expect("a replacement has an option");
            let pool = input
                .snapshot
                .node_pools
                .iter()
                .find(|p| p.name == r.node_pool)
                .expect("the replacement's pool");
            let it = pool
                .instance_types
                .iter()
                .find(|t| t.name == option.name)
                .expect("the replacement's type");
            let name = format!("replacement-{round}-{ci}-{ri}");
            let mut node_labels = r.requirements.single_valued_labels();
            node_labels.extend(it.requirements.single_valued_labels());
            node_labels.insert(labels::ZONE.into(), option.zone.clone());
            node_labels.insert(labels::CAPACITY_TYPE.into(), option.capacity_type.clone());
            node_labels.insert(labels::NODE_POOL.into(), r.node_pool.clone());
            node_labels.insert(labels::HOSTNAME.into(), name.clone());
            out.snapshot.nodes.push(ExistingNode {
                name: name.clone(),
                labels: node_labels,
                taints: pool.taints.clone(),
                allocatable: it.allocatable(),
                other_allocatable: BTreeMap::new(),
                pods: Vec::new(),
                in_flight: false,
                marked_for_deletion: false,
            });
            out.nodes.insert(
                name.clone(),
                NodeFacts {
                    claim: Some(ClaimFacts {
                        name: name.clone(),
                        node_pool: r.node_pool.clone(),
                        created: input.now,
                        initialized_at: Some(input.now),
                        last_pod_event: None,
                        drifted: None,
                        expire_after: None,
                        termination_grace_period: None,
                        instance_type: Some(it.name.clone()),
                        zone: Some(option.zone.clone()),
                        capacity_type: Some(option.capacity_type.clone()),
                    }),
                    initialized: true,
                    ready: true,
                    ..NodeFacts::default()
                },
            );
            renamed.insert(format!("replacement-{ci}-{ri}"), name);
        }
    }
    let last = simulations
        .iter()
        .enumerate()
        .rev()
        .find_map(|(ci, s)| s.as_ref().map(|s| (ci, s)));
    if let Some((ci, sim)) = last {
        let mut bind = |pod: &crate::snapshot::PodKey, node: &str| {
            let Some(p) = leaving.remove(pod) else {
                return;
            };
            out.snapshot
                .nodes
                .iter_mut()
                .find(|n| n.name == node)
                .unwrap_or_else(|| panic!("{pod} placed on {node}: no such node"))
                .pods
                .push(p);
        };
        for e in &sim.decision.existing {
            let node = renamed.get(&e.node).unwrap_or(&e.node).clone();
            for pod in &e.pods {
                bind(pod, &node);
            }
        }
        for (ri, claim) in sim.decision.new_node_claims.iter().enumerate() {
            let node = renamed
                .get(&format!("replacement-{ci}-{ri}"))
                .expect("the command's replacement")
                .clone();
            for pod in &claim.pods {
                bind(pod, &node);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disruption::candidates::candidates;

    /// The disruption benchmark's sizes are exact, and every node is a consolidation candidate.
    #[test]
    fn disruption_cluster_has_exact_sizes_and_only_candidates() {
        let input = disruption_cluster(60, 20, 1.0, 7);
        assert_eq!(input.snapshot.nodes.len(), 60);
        let pods: usize = input.snapshot.nodes.iter().map(|n| n.pods.len()).sum();
        assert_eq!(pods, 60 * 20);
        let cands = candidates(&input, &|_| false);
        assert_eq!(cands.len(), 60);
        for c in &cands {
            assert!(
                c.node_blockers.is_empty(),
                "{}: {:?}",
                c.name(),
                c.node_blockers
            );
            assert!(
                c.pod_blockers.is_empty(),
                "{}: {:?}",
                c.name(),
                c.pod_blockers
            );
            assert!(c.consolidation_blockers().is_empty(), "{}", c.name());
            assert!(!c.empty && c.price.is_some());
        }
        let fragmented = disruption_cluster(60, 20, 0.4, 7);
        let kept: usize = fragmented.snapshot.nodes.iter().map(|n| n.pods.len()).sum();
        assert!(kept < pods, "{kept} of {pods} pods kept");
    }
}

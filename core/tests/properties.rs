//! Property tests of the solver against the independent checker
//! ([`karpenter_core::scheduling::verify`]): random clusters (pods with random requests, arch
//! and zone selectors, hostname/zone anti-affinity, zone/hostname spread, host ports,
//! tolerations; pools with taints, limits and weights; existing nodes with bound pods; amd64 and
//! arm64 instance types) must solve without violations, deterministically, whatever the order
//! of the pending pods.
//!
//! `PROPTEST_CASES` overrides the case count (default 64, kept small for debug builds).

use std::collections::BTreeMap;

use karpenter_core::fixtures::{Rng, ZONES, benchmark_instance_types};
use karpenter_core::instance_type::InstanceType;
use karpenter_core::labels;
use karpenter_core::requirements::{Requirement, Requirements};
use karpenter_core::resources::{CPU, MEMORY, PODS, Resources};
use karpenter_core::scheduling::{Decision, SolveOptions, solve, verify};
use karpenter_core::snapshot::{
    ExistingNode, HostPort, LabelSelector, NodePoolInput, Pod, PodAffinityTerm, Snapshot, Taint,
    TaintEffect, Toleration, TopologySpreadConstraint, WhenUnsatisfiable,
};
use proptest::prelude::*;

const CPU_CHOICES: [i64; 6] = [100, 250, 500, 1000, 1500, 3000];
const MEM_CHOICES_MI: [i64; 6] = [100, 256, 512, 1024, 2048, 4096];

/// One "deployment": replicas sharing labels and constraints.
#[derive(Clone, Debug)]
struct AppSpec {
    /// 0 plain, 1 zone spread, 2 hostname spread, 3 hostname anti-affinity, 4 zone
    /// anti-affinity, 5 host port.
    kind: u8,
    /// 0 none, 1 amd64, 2 arm64.
    arch: u8,
    /// 0 none, 1 one zone, 2 two zones.
    zones: u8,
    tolerates: bool,
    max_skew: i32,
    replicas: Vec<(usize, usize)>,
}

#[derive(Clone, Debug)]
struct PoolSpec {
    weight: i32,
    tainted: bool,
    /// 0 none, 1 amd64, 2 arm64.
    arch: u8,
    /// CPU limit in vCPU, 0 for none.
    cpu_limit: i64,
}

#[derive(Clone, Debug)]
struct NodeSpec {
    type_index: usize,
    zone: usize,
    arm: bool,
    bound: Vec<(usize, usize)>,
    /// Bound pods get the label of this app index (if it exists).
    bound_app: usize,
}

#[derive(Clone, Debug)]
struct ClusterSpec {
    types: usize,
    with_arm: bool,
    pools: Vec<PoolSpec>,
    apps: Vec<AppSpec>,
    nodes: Vec<NodeSpec>,
}

fn app_strategy() -> impl Strategy<Value = AppSpec> {
    (
        0u8..6,
        0u8..3,
        0u8..3,
        any::<bool>(),
        1i32..3,
        prop::collection::vec((0..CPU_CHOICES.len(), 0..MEM_CHOICES_MI.len()), 1..7),
    )
        .prop_map(
            |(kind, arch, zones, tolerates, max_skew, replicas)| AppSpec {
                kind,
                arch,
                zones,
                tolerates,
                max_skew,
                replicas,
            },
        )
}

fn pool_strategy() -> impl Strategy<Value = PoolSpec> {
    (
        0i32..3,
        prop::bool::weighted(0.3),
        0u8..3,
        prop_oneof![Just(0i64), 4i64..40],
    )
        .prop_map(|(weight, tainted, arch, cpu_limit)| PoolSpec {
            weight,
            tainted,
            arch,
            cpu_limit,
        })
}

fn node_strategy() -> impl Strategy<Value = NodeSpec> {
    (
        0usize..8,
        0usize..3,
        any::<bool>(),
        prop::collection::vec((0..3usize, 0..4usize), 0..3),
        0usize..6,
    )
        .prop_map(|(type_index, zone, arm, bound, bound_app)| NodeSpec {
            type_index,
            zone,
            arm,
            bound,
            bound_app,
        })
}

fn cluster_strategy() -> impl Strategy<Value = ClusterSpec> {
    (
        2usize..10,
        any::<bool>(),
        prop::collection::vec(pool_strategy(), 1..4),
        prop::collection::vec(app_strategy(), 1..7),
        prop::collection::vec(node_strategy(), 0..3),
    )
        .prop_map(|(types, with_arm, pools, apps, nodes)| ClusterSpec {
            types,
            with_arm,
            pools,
            apps,
            nodes,
        })
}

fn requests(cpu: usize, mem: usize) -> Resources {
    Resources::from_pairs(&[
        (CPU, CPU_CHOICES[cpu]),
        (MEMORY, MEM_CHOICES_MI[mem] << 20),
        (PODS, 1),
    ])
}

fn selector(app: &str) -> LabelSelector {
    LabelSelector {
        match_labels: BTreeMap::from([("app".to_string(), app.to_string())]),
        match_expressions: Vec::new(),
    }
}

/// The benchmark types, plus (optionally) arm64 twins 20% cheaper.
fn instance_types(count: usize, with_arm: bool) -> Vec<InstanceType> {
    let mut types = benchmark_instance_types(count);
    if with_arm {
        let arm: Vec<InstanceType> = types
            .iter()
            .map(|t| {
                let mut a = t.clone();
                a.name = t.name.replace("fake-it", "fake-arm");
                a.requirements = Requirements::new();
                a.requirements
                    .add(labels::INSTANCE_TYPE, Requirement::single(&a.name));
                a.requirements
                    .add(labels::ARCH, Requirement::single("arm64"));
                a.requirements.add(labels::OS, Requirement::single("linux"));
                for o in &mut a.offerings {
                    o.price *= 0.8;
                }
                a
            })
            .collect();
        types.extend(arm);
    }
    types
}

fn arch_name(a: u8) -> Option<&'static str> {
    match a {
        1 => Some("amd64"),
        2 => Some("arm64"),
        _ => None,
    }
}

fn build(spec: &ClusterSpec) -> Snapshot {
    let types = instance_types(spec.types, spec.with_arm);
    let node_pools = spec
        .pools
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let name = format!("pool-{i}");
            let mut pool = NodePoolInput::new(&name, types.clone());
            pool.weight = p.weight;
            if p.tainted {
                pool.taints.push(Taint {
                    key: "dedicated".into(),
                    value: name.clone(),
                    effect: TaintEffect::NoSchedule,
                });
            }
            if let Some(a) = arch_name(p.arch) {
                pool.requirements.add(labels::ARCH, Requirement::single(a));
            }
            if p.cpu_limit > 0 {
                pool.limits.0[CPU] = p.cpu_limit * 1000;
            }
            pool
        })
        .collect();
    let mut pods = Vec::new();
    for (ai, app) in spec.apps.iter().enumerate() {
        let name = format!("app{ai}");
        for (j, &(c, m)) in app.replicas.iter().enumerate() {
            let mut pod = Pod::new("default", &format!("{name}-{j}"), requests(c, m));
            pod.labels.insert("app".into(), name.clone());
            if let Some(a) = arch_name(app.arch) {
                pod.node_selector.add(labels::ARCH, Requirement::single(a));
            }
            match app.zones {
                1 => pod
                    .node_selector
                    .add(labels::ZONE, Requirement::single(ZONES[ai % 3])),
                2 => pod.node_selector.add(
                    labels::ZONE,
                    Requirement::is_in(&[ZONES[ai % 3], ZONES[(ai + 1) % 3]]),
                ),
                _ => {}
            }
            if app.tolerates {
                pod.tolerations.push(Toleration {
                    key: "dedicated".into(),
                    exists: true,
                    value: String::new(),
                    effect: Some(TaintEffect::NoSchedule),
                });
            }
            let spread = |key: &str| TopologySpreadConstraint {
                max_skew: app.max_skew,
                topology_key: key.to_string(),
                when_unsatisfiable: WhenUnsatisfiable::DoNotSchedule,
                selector: selector(&name),
                min_domains: None,
            };
            let term = |key: &str| PodAffinityTerm {
                topology_key: key.to_string(),
                selector: selector(&name),
                namespaces: Vec::new(),
                namespace_selector: None,
            };
            match app.kind {
                1 => pod.topology_spread.push(spread(labels::ZONE)),
                2 => pod.topology_spread.push(spread(labels::HOSTNAME)),
                3 => pod.pod_anti_affinity.push(term(labels::HOSTNAME)),
                4 => pod.pod_anti_affinity.push(term(labels::ZONE)),
                5 => pod.host_ports.push(HostPort {
                    ip: String::new(),
                    port: 8080,
                    protocol: "TCP".into(),
                }),
                _ => {}
            }
            pods.push(pod);
        }
    }
    let nodes = spec
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let it = &types[n.type_index.min(spec.types - 1)];
            let name = format!("node-{i}");
            let arch = if n.arm { "arm64" } else { "amd64" };
            let bound = n
                .bound
                .iter()
                .enumerate()
                .map(|(j, &(c, m))| {
                    let mut p = Pod::new("default", &format!("bound-{i}-{j}"), requests(c, m));
                    if n.bound_app < spec.apps.len() {
                        p.labels.insert("app".into(), format!("app{}", n.bound_app));
                    }
                    p
                })
                .collect();
            ExistingNode {
                name: name.clone(),
                labels: BTreeMap::from([
                    (labels::HOSTNAME.to_string(), name.clone()),
                    (labels::ZONE.to_string(), ZONES[n.zone].to_string()),
                    (labels::ARCH.to_string(), arch.to_string()),
                    (labels::OS.to_string(), "linux".to_string()),
                    (labels::INSTANCE_TYPE.to_string(), it.name.clone()),
                    (labels::CAPACITY_TYPE.to_string(), "on-demand".to_string()),
                    (labels::NODE_POOL.to_string(), "pool-0".to_string()),
                ]),
                taints: Vec::new(),
                allocatable: it.allocatable(),
                other_allocatable: BTreeMap::new(),
                pods: bound,
                in_flight: false,
                marked_for_deletion: false,
            }
        })
        .collect();
    Snapshot {
        pods,
        nodes,
        node_pools,
        ..Snapshot::default()
    }
}

fn shuffled(snap: &Snapshot, seed: u64) -> Snapshot {
    let mut out = snap.clone();
    let mut rng = Rng::new(seed);
    for i in (1..out.pods.len()).rev() {
        let j = rng.below(i + 1);
        out.pods.swap(i, j);
    }
    out
}

fn describe(v: &[karpenter_core::scheduling::Violation]) -> String {
    v.iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

fn solve_default(snap: &Snapshot) -> Decision {
    solve(snap, &SolveOptions::default())
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn solver_decisions_pass_the_verifier(spec in cluster_strategy()) {
        let snap = build(&spec);
        let d = solve_default(&snap);
        let v = verify(&snap, &d);
        prop_assert!(v.is_empty(), "{}", describe(&v));
    }

    #[test]
    fn solving_is_deterministic(spec in cluster_strategy()) {
        let snap = build(&spec);
        prop_assert_eq!(solve_default(&snap), solve_default(&snap));
    }

    #[test]
    fn pod_order_does_not_matter(spec in cluster_strategy(), seed in 1u64..u64::MAX) {
        let snap = build(&spec);
        prop_assert_eq!(solve_default(&snap), solve_default(&shuffled(&snap, seed)));
    }

    #[test]
    fn no_node_over_capacity_and_every_failure_has_a_reason(spec in cluster_strategy()) {
        let snap = build(&spec);
        let d = solve_default(&snap);
        let by_key: BTreeMap<_, _> = snap.pods.iter().map(|p| (p.key.clone(), p)).collect();
        for c in &d.new_node_claims {
            let pool = snap.node_pools.iter().find(|p| p.name == c.node_pool).unwrap();
            let used = c
                .pods
                .iter()
                .fold(c.daemon_overhead, |a, k| a + by_key[k].requests);
            for o in &c.instance_types {
                let it = pool.instance_types.iter().find(|t| t.name == o.name).unwrap();
                prop_assert!(used.fits_in(&it.allocatable()), "{} over {}", used, o.name);
            }
        }
        for plan in &d.existing {
            let node = snap.nodes.iter().find(|n| n.name == plan.node).unwrap();
            let used = node
                .pods
                .iter()
                .map(|p| p.requests)
                .chain(plan.pods.iter().map(|k| by_key[k].requests))
                .fold(Resources::ZERO, |a, r| a + r);
            prop_assert!(used.fits_in(&node.allocatable), "{} over node {}", used, node.name);
        }
        for u in &d.unschedulable {
            prop_assert!(!u.reason.trim().is_empty(), "{} has no reason", u.pod);
        }
        prop_assert_eq!(d.placed_pods() + d.unschedulable.len(), snap.pods.len());
    }
}

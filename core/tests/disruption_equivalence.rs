//! The disruption simulation hands the scheduler a borrowed view of the cluster (with each
//! node's bound pods added up once) and reads its answer by index. This checks it against the
//! way it used to be done — clone the snapshot minus the removed nodes, add the moving pods,
//! `scheduling::solve` it, and derive failures and origins by pod key — on random clusters with
//! topology constraints, host ports, extended resources, pending pods, launched and
//! uninitialized nodes, and (in some cases) pod keys listed twice.

use std::collections::{BTreeMap, BTreeSet};

use karpenter_core::disruption::simulate::{Moving, Removal, Simulation, simulate};
use karpenter_core::disruption::{ClaimFacts, DisruptionInput, NodeFacts};
use karpenter_core::fixtures::{Rng, ZONES, benchmark_instance_types, diverse_pods};
use karpenter_core::labels;
use karpenter_core::scheduling::{SolveOptions, solve};
use karpenter_core::snapshot::{
    ExistingNode, HostPort, NodePoolInput, NodeUsage, Pod, PodKey, Snapshot,
};

/// The simulation as it was before the view: clone, solve, match by key.
fn reference(
    input: &DisruptionInput,
    removed: &BTreeSet<usize>,
    moving: &[(&Pod, &str)],
    from_deleting: &BTreeSet<PodKey>,
    launched: &[ExistingNode],
    options: &SolveOptions,
) -> Simulation {
    let base = &input.snapshot;
    let mut snapshot = Snapshot {
        pods: base.pods.clone(),
        nodes: Vec::new(),
        node_pools: base.node_pools.clone(),
        daemon_sets: base.daemon_sets.clone(),
        namespace_labels: base.namespace_labels.clone(),
    };
    for (i, node) in base.nodes.iter().enumerate() {
        if !removed.contains(&i) {
            snapshot.nodes.push(node.clone());
        }
    }
    snapshot.nodes.extend(launched.iter().cloned());
    let pending: BTreeSet<&PodKey> = base.pods.iter().map(|p| &p.key).collect();
    let mut origin = BTreeMap::new();
    for (pod, from) in moving {
        origin.insert(pod.key.clone(), (*from).to_owned());
        snapshot.pods.push((*pod).clone());
    }
    let decision = solve(&snapshot, options);
    let mut failures: Vec<(PodKey, String)> = decision
        .unschedulable
        .iter()
        .filter(|u| !pending.contains(&u.pod))
        .map(|u| (u.pod.clone(), u.reason.clone()))
        .collect();
    for plan in &decision.existing {
        let uninitialized = input
            .nodes
            .get(&plan.node)
            .is_some_and(|f| f.claim.is_some() && !f.initialized)
            || launched.iter().any(|n| n.name == plan.node)
            || base
                .nodes
                .iter()
                .any(|n| n.name == plan.node && n.in_flight);
        if !uninitialized {
            continue;
        }
        for pod in &plan.pods {
            if origin.contains_key(pod) && !from_deleting.contains(pod) {
                failures.push((
                    pod.clone(),
                    format!("would schedule against uninitialized node {}", plan.node),
                ));
            }
        }
    }
    failures.sort();
    Simulation {
        snapshot,
        decision,
        failures,
        origin,
    }
}

fn node(
    name: &str,
    cpu_type: usize,
    zone: &str,
    types: &[karpenter_core::instance_type::InstanceType],
) -> ExistingNode {
    let it = &types[cpu_type];
    let mut node_labels = it.requirements.single_valued_labels();
    for (k, v) in [
        (labels::ZONE, zone),
        (labels::CAPACITY_TYPE, labels::CAPACITY_ON_DEMAND),
        (labels::NODE_POOL, "default"),
        (labels::HOSTNAME, name),
    ] {
        node_labels.insert(k.into(), v.into());
    }
    ExistingNode {
        name: name.into(),
        labels: node_labels,
        taints: Vec::new(),
        allocatable: it.allocatable(),
        other_allocatable: BTreeMap::from([("example.com/dongle".to_string(), 4)]),
        pods: Vec::new(),
        in_flight: false,
        marked_for_deletion: false,
    }
}

/// A random cluster; with `repeat_keys`, a few bound pods reuse another pod's key.
fn cluster(seed: u64, repeat_keys: bool) -> DisruptionInput {
    let mut rng = Rng::new(seed);
    let types = benchmark_instance_types(40);
    let now: k8s_openapi::jiff::Timestamp = "2026-12-07T12:00:00Z".parse().unwrap();
    let mut snapshot = Snapshot {
        node_pools: vec![NodePoolInput::new("default", types.clone())],
        ..Snapshot::default()
    };
    let mut facts = BTreeMap::new();
    let mut pool = diverse_pods(400, seed).into_iter();
    let n_nodes = 3 + rng.below(10);
    for i in 0..n_nodes {
        let name = format!("node-{i}");
        let mut n = node(&name, [3, 7, 15][rng.below(3)], ZONES[i % 3], &types);
        n.in_flight = rng.below(100) < 5;
        let mut free = n.allocatable;
        for _ in 0..rng.below(12) {
            let Some(mut pod) = pool.next() else { break };
            if !pod.requests.fits_in(&free) {
                continue;
            }
            free = free.saturating_sub(&pod.requests);
            if rng.below(100) < 10 {
                pod.host_ports.push(HostPort {
                    ip: String::new(),
                    port: 8080,
                    protocol: "TCP".into(),
                });
            }
            if rng.below(100) < 10 {
                pod.other_requests.insert("example.com/dongle".into(), 1);
            }
            n.pods.push(pod);
        }
        facts.insert(
            name.clone(),
            NodeFacts {
                claim: Some(ClaimFacts {
                    name: name.clone(),
                    node_pool: "default".into(),
                    created: now,
                    initialized_at: Some(now),
                    last_pod_event: None,
                    drifted: None,
                    expire_after: None,
                    termination_grace_period: None,
                    instance_type: Some(types[7].name.clone()),
                    zone: Some(ZONES[i % 3].into()),
                    capacity_type: Some(labels::CAPACITY_ON_DEMAND.into()),
                }),
                initialized: rng.below(100) < 85,
                ready: true,
                ..NodeFacts::default()
            },
        );
        snapshot.nodes.push(n);
    }
    snapshot.pods = (0..rng.below(4)).filter_map(|_| pool.next()).collect();
    if repeat_keys {
        let keys: Vec<PodKey> = snapshot
            .pods
            .iter()
            .chain(snapshot.nodes.iter().flat_map(|n| n.pods.iter()))
            .map(|p| p.key.clone())
            .collect();
        for n in &mut snapshot.nodes {
            for p in &mut n.pods {
                if !keys.is_empty() && rng.below(100) < 15 {
                    p.key = keys[rng.below(keys.len())].clone();
                }
            }
        }
    }
    DisruptionInput {
        snapshot,
        nodes: facts,
        pods: BTreeMap::new(),
        pdbs: Vec::new(),
        pools: BTreeMap::new(),
        now,
        options: Default::default(),
    }
}

fn check(seed: u64, repeat_keys: bool) {
    let input = cluster(seed, repeat_keys);
    let mut rng = Rng::new(seed ^ 0x5eed);
    let types = benchmark_instance_types(40);
    let launched: Vec<ExistingNode> = (0..rng.below(3))
        .map(|i| {
            let mut n = node(&format!("replacement-0-{i}"), 7, ZONES[i % 3], &types);
            n.in_flight = true;
            n
        })
        .collect();
    let nodes = &input.snapshot.nodes;
    let mask: Vec<bool> = nodes.iter().map(|_| rng.below(100) < 35).collect();
    let deleting: Vec<bool> = nodes.iter().map(|_| rng.below(100) < 40).collect();
    let deleting = &deleting;
    let moving: Vec<Moving<'_>> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| mask[*i])
        .flat_map(|(i, n)| {
            n.pods.iter().map(move |p| Moving {
                pod: p,
                from: n.name.as_str(),
                from_deleting: deleting[i],
            })
        })
        .collect();
    let usage: Vec<NodeUsage> = nodes
        .iter()
        .chain(launched.iter())
        .map(NodeUsage::of)
        .collect();
    let options = SolveOptions::default();
    for with_usage in [false, true] {
        let new = simulate(
            &input,
            &Removal {
                removed: &mask,
                moving: &moving,
                launched: &launched,
                usage: with_usage.then_some(usage.as_slice()),
                distinct_keys: karpenter_core::disruption::simulate::distinct_keys(&input),
            },
            &options,
        );
        let removed: BTreeSet<usize> = (0..nodes.len()).filter(|i| mask[*i]).collect();
        let listed: Vec<(&Pod, &str)> = moving.iter().map(|m| (m.pod, m.from)).collect();
        let from_deleting: BTreeSet<PodKey> = moving
            .iter()
            .filter(|m| m.from_deleting)
            .map(|m| m.pod.key.clone())
            .collect();
        let old = reference(
            &input,
            &removed,
            &listed,
            &from_deleting,
            &launched,
            &options,
        );
        let what = format!("seed {seed}, repeated keys {repeat_keys}, usage {with_usage}");
        assert_eq!(new.snapshot, old.snapshot, "{what}: snapshot");
        assert_eq!(new.decision, old.decision, "{what}: decision");
        assert_eq!(new.failures, old.failures, "{what}: failures");
        assert_eq!(new.origin, old.origin, "{what}: origin");
    }
}

#[test]
fn simulations_match_the_clone_and_solve_reference() {
    for seed in 1..150 {
        check(seed, false);
    }
}

#[test]
fn simulations_match_the_reference_when_pod_keys_repeat() {
    for seed in 1..150 {
        check(seed, true);
    }
}

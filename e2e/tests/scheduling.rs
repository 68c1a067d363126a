//! Scheduling scenarios of the `karpenter` controller end to end: insufficient capacity
//! fallback, NodePool limits, zone spread and arm64/GPU requirements. Needs the e2e bed
//! (`cargo xtask e2e`).
//!
//! Each test starts its own controller and node simulator and takes `scenario::serial`. Pools
//! are torn down by `with_teardown` also when an assertion fails, so no instance or NodeClaim
//! outlives its test.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use karpenter_e2e::controller::{ControllerProcess, install_crds};
use karpenter_e2e::fault_proxy::Outcome;
use karpenter_e2e::harness::*;
use karpenter_e2e::scenario::*;
use kube_client::ResourceExt;
use serde_json::json;

// ---------------------------------------------------------------------------------------------
// 1. ICE fallback
// ---------------------------------------------------------------------------------------------

/// m5.large ($0.096/h) is clearly cheaper than m5.xlarge ($0.192/h); both fit a 500m pod.
const CHEAP: &str = "m5.large";
const DEAR: &str = "m5.xlarge";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ice_on_the_cheapest_type_falls_back_to_the_next() {
    karpenter_e2e::install_crypto_provider();
    let _serial = serial().await;
    run("sched-ice", |ctx| async move {
        install_crds(&ctx.kube).await;
        let pool = pool_name(&ctx, "ice");
        let controller = ControllerProcess::start(&ctx.env, "sched-ice", &[]);
        let _sim = ctx.start_sim(ctx.sim_config_for_tag(NODEPOOL, &pool));
        let zones: BTreeSet<String> = ctx.env.aws.subnets.iter().map(|s| s.zone.clone()).collect();
        assert_eq!(
            zones.len(),
            3,
            "the bed has subnets in three zones: {zones:?}"
        );
        for z in &zones {
            controller.proxy.ice(CHEAP, z);
        }
        apply_staging(
            &ctx,
            &pool,
            json!([{"key": INSTANCE_TYPE, "operator": "In", "values": [CHEAP, DEAR]}]),
        )
        .await;
        with_teardown(&ctx, &[pool.as_str()], async {
            let started = Instant::now();
            deploy(&ctx, "ice", Some(&pool),
                1,
                json!({"cpu": "500m", "memory": "512Mi"}),
                |_| {},
            )
            .await;
            let result = tokio::time::timeout(
                Duration::from_secs(180),
                eventually("the pod Running", Duration::from_secs(180), || async {
                    pods_of(&ctx, "ice")
                        .await
                        .into_iter()
                        .find(pod_running_ready)
                }),
            )
            .await;
            let Ok(pod) = result else {
                panic!(
                    "the pod did not run; claims not Initialized:\n{}\nproxy calls: {:?}\ncontroller log tail:\n{}",
                    stuck_claims(&ctx, &pool).await,
                    controller
                        .proxy
                        .calls()
                        .iter()
                        .filter(|c| c.action == "CreateFleet")
                        .collect::<Vec<_>>(),
                    controller.log_tail(60)
                );
            };
            eprintln!("ICE fallback: pod Running after {:?}", started.elapsed());

            let node = node_named(&ctx, node_name(&pod).expect("pod bound")).await;
            assert_eq!(
                label(&node, INSTANCE_TYPE),
                Some(DEAR),
                "pod runs on {:?}, not the fallback type",
                node.name_any()
            );
            assert_eq!(label(&node, NODEPOOL), Some(pool.as_str()));
            for c in claims_of(&ctx, &pool).await {
                if c.status.as_ref().is_some_and(|s| s.is_true("Launched")) {
                    assert_eq!(
                        label(&c, INSTANCE_TYPE),
                        Some(DEAR),
                        "claim {} launched another type",
                        c.name_any()
                    );
                }
            }

            // The proxy saw CreateFleet asking for the ICE'd type: either the request carried
            // m5.large overrides that were dropped (and reported in errorSet) or it asked only
            // for m5.large and got no instance at all. m5.large is the only ICE'd type, so any
            // ICE outcome is m5.large's.
            let fleets: Vec<_> = controller
                .proxy
                .calls()
                .into_iter()
                .filter(|c| c.action == "CreateFleet")
                .collect();
            let iced: Vec<_> = fleets
                .iter()
                .filter(|c| {
                    matches!(
                        c.outcome,
                        Outcome::InsufficientCapacity | Outcome::Forwarded { iced: 1.., .. }
                    )
                })
                .collect();
            eprintln!("CreateFleet calls: {fleets:?}");
            assert!(
                !iced.is_empty(),
                "no CreateFleet hit the ICE'd {CHEAP}: {fleets:?}"
            );
            assert!(
                fleets
                    .iter()
                    .any(|c| matches!(c.outcome, Outcome::Forwarded { status: 200, .. })),
                "no CreateFleet reached moto: {fleets:?}"
            );

            // EC2 itself holds only the fallback type for this pool.
            let out = ctx
                .ec2
                .describe_instances()
                .filters(
                    aws_sdk_ec2::types::Filter::builder()
                        .name(format!("tag:{NODEPOOL}"))
                        .values(&pool)
                        .build(),
                )
                .send()
                .await
                .expect("DescribeInstances");
            let types: Vec<String> = out
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .filter(|i| i.state().and_then(|s| s.name()).map(|s| s.as_str()) == Some("running"))
                .filter_map(|i| i.instance_type().map(|t| t.as_str().to_owned()))
                .collect();
            assert_eq!(
                types,
                vec![DEAR.to_owned()],
                "running instances of the pool"
            );
            controller.assert_no_panic();
        })
        .await;
        drop(controller);
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 2. NodePool limits
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodepool_limits_stop_launches() {
    karpenter_e2e::install_crypto_provider();
    let _serial = serial().await;
    run("sched-limits", |ctx| async move {
        install_crds(&ctx.kube).await;
        let pool = pool_name(&ctx, "limits");
        let controller = ControllerProcess::start(&ctx.env, "sched-limits", &[]);
        let _sim = ctx.start_sim(ctx.sim_config_for_tag(NODEPOOL, &pool));
        let spec = PoolSpec::staging(json!([])).with_limits(json!({"cpu": "8"}));
        apply_pool(&ctx, &pool, &spec).await;
        const LIMIT_MILLIS: i64 = 8000;
        with_teardown(&ctx, &[pool.as_str()], async {
            let started = Instant::now();
            // 10 × 1500m = 15 CPU requested against a limit of 8 CPU of capacity.
            deploy(&ctx, "big", Some(&pool), 10, json!({"cpu": "1500m", "memory": "256Mi"}), |_| {}).await;

            // Samples the pool's launched capacity; panics the moment it exceeds the limit.
            let check_capacity = || async {
                let claims = claims_of(&ctx, &pool).await;
                let nodes = nodes_of(&ctx, &pool).await;
                let claimed: i64 = claims.iter().map(claim_cpu_millis).sum();
                let noded: i64 = nodes.iter().map(node_cpu_millis).sum();
                let types: Vec<_> = claims
                    .iter()
                    .map(|c| label(c, INSTANCE_TYPE).unwrap_or("?").to_owned())
                    .collect();
                assert!(
                    claimed <= LIMIT_MILLIS && noded <= LIMIT_MILLIS,
                    "pool capacity exceeds its cpu limit of 8: claims {claimed}m, nodes {noded}m ({types:?})\ncontroller log tail:\n{}",
                    controller.log_tail(40)
                );
                (claims, nodes)
            };

            // Steady state: every claim launched and Ready, every pod Running or Pending, and
            // the controller said why the rest stay pending.
            let steady = tokio::time::timeout(
                Duration::from_secs(240),
                eventually("the limited pool to settle", Duration::from_secs(240), || async {
                    let (claims, nodes) = check_capacity().await;
                    if claims.is_empty() || !claims.iter().all(claim_ready) || nodes.len() != claims.len() {
                        return None;
                    }
                    let pods = pods_of(&ctx, "big").await;
                    let running = pods.iter().filter(|p| pod_running_ready(p)).count();
                    let pending = pods
                        .iter()
                        .filter(|p| node_name(p).is_none())
                        .count();
                    // Settled: the launched capacity is in use (pods run there) and every
                    // pod is either Running or unbound.
                    if pods.len() != 10 || running == 0 || running + pending != 10 || pending == 0
                    {
                        return None;
                    }
                    let (notes, total) = failed_scheduling(&ctx).await;
                    notes
                        .iter()
                        .any(|n| n.contains("nodepool limits"))
                        .then_some((running, pending, total, notes))
                }),
            )
            .await;
            let Ok((running, pending, events_seen, notes)) = steady else {
                panic!(
                    "the pool did not settle; claims not Initialized:\n{}\nevents: {:?}\ncontroller log tail:\n{}",
                    stuck_claims(&ctx, &pool).await,
                    failed_scheduling(&ctx).await.0,
                    controller.log_tail(60)
                );
            };
            eprintln!(
                "limits: settled after {:?}: {running} Running, {pending} Pending; FailedScheduling notes: {:?}",
                started.elapsed(),
                notes.iter().collect::<BTreeSet<_>>()
            );

            // Two more provisioning passes (one FailedScheduling per pending pod each) must not
            // launch past the limit either.
            let wanted = events_seen + 2 * pending as i32;
            eventually(
                "two more provisioning passes",
                Duration::from_secs(60),
                || async {
                    check_capacity().await;
                    (failed_scheduling(&ctx).await.1 >= wanted).then_some(())
                },
            )
            .await;
            let (claims, nodes) = check_capacity().await;
            let capacity: i64 = nodes.iter().map(node_cpu_millis).sum();
            let types: Vec<_> = claims
                .iter()
                .map(|c| label(c, INSTANCE_TYPE).unwrap_or("?").to_owned())
                .collect();
            eprintln!(
                "limits: {} claims ({types:?}), {capacity}m cpu capacity (limit {LIMIT_MILLIS}m)",
                claims.len()
            );
            let pods = pods_of(&ctx, "big").await;
            let still_pending = pods.iter().filter(|p| node_name(p).is_none()).count();
            assert!(still_pending > 0, "every pod was placed despite the limit");
            // 1500m pods on the 8-vCPU capacity the limit allows: some run, at most 5.
            let running_now = pods.iter().filter(|p| pod_running_ready(p)).count();
            assert!(
                (1..=5).contains(&running_now),
                "{running_now} pods run on 8 vCPU of 1500m pods"
            );
            assert!(
                pods.iter().filter(|p| pod_running_ready(p)).count() >= running,
                "running pods went away"
            );
            controller.assert_no_panic();
        })
        .await;
        drop(controller);
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 3. Zone spread, arm64 and GPU requirements
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn zone_spread_and_arm64_requirements_pick_matching_nodes() {
    karpenter_e2e::install_crypto_provider();
    let _serial = serial().await;
    run("sched-spread", |ctx| async move {
        install_crds(&ctx.kube).await;
        let spread_pool = pool_name(&ctx, "spread");
        let arm_pool = pool_name(&ctx, "arm");
        let gpu_pool = pool_name(&ctx, "gpu");
        let controller = ControllerProcess::start(&ctx.env, "sched-spread", &[]);
        let mut sim = ctx.sim_config_for_tag(NODEPOOL, &spread_pool);
        sim.instance_filters = vec![(
            format!("tag:{NODEPOOL}"),
            vec![spread_pool.clone(), arm_pool.clone(), gpu_pool.clone()],
        )];
        let _sim = ctx.start_sim(sim);

        // (a) One m5.large (2 vCPU) per 1200m pod: three pods need three nodes, and the
        // spread puts them in three zones.
        apply_staging(
            &ctx,
            &spread_pool,
            json!([{"key": INSTANCE_TYPE, "operator": "In", "values": ["m5.large"]}]),
        )
        .await;
        // (b) arm64 only (the staging pool pins amd64, so this pool is built here), AL2 whose
        // arm64 image the bed seeds.
        apply_pool(
            &ctx,
            &arm_pool,
            &PoolSpec {
                max_pods: Some(110),
                ..PoolSpec::bare(json!([
                {"key": "karpenter.k8s.aws/instance-category", "operator": "In", "values": ["t", "m", "r", "c"]},
                {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]},
                {"key": "kubernetes.io/arch", "operator": "In", "values": ["arm64"]},
            ]))
            },
        )
        .await;
        // (c) GPU instance types, AL2 whose GPU (x86_64) image the bed seeds.
        apply_pool(
            &ctx,
            &gpu_pool,
            &PoolSpec {
                max_pods: Some(110),
                ..PoolSpec::bare(json!([
                {"key": "karpenter.k8s.aws/instance-gpu-count", "operator": "Gt", "values": ["0"]},
                {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]},
                {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
            ]))
            },
        )
        .await;

        with_teardown(&ctx, &[spread_pool.as_str(), arm_pool.as_str(), gpu_pool.as_str()], async {
            let started = Instant::now();
            deploy(&ctx, "spread", Some(&spread_pool),
                3,
                json!({"cpu": "1200m", "memory": "256Mi"}),
                |spec| {
                    spec["topologySpreadConstraints"] = json!([{
                        "maxSkew": 1,
                        "topologyKey": "topology.kubernetes.io/zone",
                        "whenUnsatisfiable": "DoNotSchedule",
                        "labelSelector": {"matchLabels": {"app": "spread"}},
                    }]);
                },
            )
            .await;
            deploy(&ctx, "arm", Some(&arm_pool), 2, json!({"cpu": "500m", "memory": "512Mi"}), |_| {}).await;
            deploy(&ctx, "gpu", Some(&gpu_pool),
                1,
                json!({"cpu": "500m", "memory": "512Mi", "nvidia.com/gpu": "1"}),
                |spec| {
                    spec["containers"][0]["resources"]["limits"] = json!({"nvidia.com/gpu": "1"});
                },
            )
            .await;

            let result = tokio::time::timeout(
                Duration::from_secs(240),
                eventually("spread, arm and gpu pods Running", Duration::from_secs(240), || async {
                    let mut all = Vec::new();
                    for (app, n) in [("spread", 3), ("arm", 2), ("gpu", 1)] {
                        let running: Vec<Pod> = pods_of(&ctx, app)
                            .await
                            .into_iter()
                            .filter(pod_running_ready)
                            .collect();
                        if running.len() != n {
                            return None;
                        }
                        all.push(running);
                    }
                    Some(all)
                }),
            )
            .await;
            let Ok(running) = result else {
                let mut states = Vec::new();
                for app in ["spread", "arm", "gpu"] {
                    let pods = pods_of(&ctx, app).await;
                    states.push(format!(
                        "{app}: {} pods, {} running",
                        pods.len(),
                        pods.iter().filter(|p| pod_running_ready(p)).count()
                    ));
                }
                let mut stuck = String::new();
                for pool in [&spread_pool, &arm_pool, &gpu_pool] {
                    stuck += &stuck_claims(&ctx, pool).await;
                }
                panic!(
                    "pods did not all run: {states:?}; claims not Initialized:\n{stuck}\nevents: {:?}\ncontroller log tail:\n{}",
                    failed_scheduling(&ctx).await.0,
                    controller.log_tail(80)
                );
            };
            eprintln!("spread/arm64/gpu: all pods Running after {:?}", started.elapsed());
            let [spread, arm, gpu] = <[Vec<Pod>; 3]>::try_from(running).unwrap();

            // (a) three nodes in three zones, one spread pod each.
            let mut zones = BTreeSet::new();
            let mut hosts = BTreeSet::new();
            for p in &spread {
                let node = node_named(&ctx, node_name(p).expect("bound")).await;
                assert_eq!(label(&node, NODEPOOL), Some(spread_pool.as_str()));
                assert_eq!(label(&node, INSTANCE_TYPE), Some("m5.large"));
                zones.insert(
                    label(&node, "topology.kubernetes.io/zone")
                        .expect("zone label")
                        .to_owned(),
                );
                hosts.insert(node.name_any());
            }
            eprintln!("spread: pods on {hosts:?} in {zones:?}");
            assert_eq!(hosts.len(), 3, "one spread pod per node: {hosts:?}");
            assert_eq!(zones.len(), 3, "spread pods in three zones: {zones:?}");
            let spread_claims = claims_of(&ctx, &spread_pool).await;
            assert_eq!(spread_claims.len(), 3, "three claims for three pods");

            // (b) arm64 nodes from an arm64 image.
            let mut arm_types = BTreeSet::new();
            for p in &arm {
                let node = node_named(&ctx, node_name(p).expect("bound")).await;
                assert_eq!(label(&node, NODEPOOL), Some(arm_pool.as_str()));
                assert_eq!(
                    label(&node, "kubernetes.io/arch"),
                    Some("arm64"),
                    "arm pod on {}",
                    node.name_any()
                );
                arm_types.insert(label(&node, INSTANCE_TYPE).unwrap_or("?").to_owned());
            }
            eprintln!("arm64: instance types {arm_types:?}");
            for c in claims_of(&ctx, &arm_pool).await {
                let image = c
                    .status
                    .as_ref()
                    .and_then(|s| s.image_id.clone())
                    .expect("launched claim has an image");
                let out = ctx
                    .ec2
                    .describe_images()
                    .image_ids(&image)
                    .send()
                    .await
                    .expect("DescribeImages");
                let arch = out.images().first().and_then(|i| i.architecture()).map(|a| a.as_str().to_owned());
                assert_eq!(arch.as_deref(), Some("arm64"), "claim {} image {image}", c.name_any());
            }

            // (c) a GPU node with the GPU image.
            let node = node_named(&ctx, node_name(&gpu[0]).expect("bound")).await;
            assert_eq!(label(&node, NODEPOOL), Some(gpu_pool.as_str()));
            let gpus = node
                .status
                .as_ref()
                .and_then(|s| s.capacity.as_ref())
                .and_then(|c| c.get("nvidia.com/gpu"))
                .map(|q| q.0.clone());
            eprintln!(
                "gpu: pod on {} ({:?}) with nvidia.com/gpu {gpus:?}",
                node.name_any(),
                label(&node, INSTANCE_TYPE)
            );
            assert!(
                gpus.as_deref().is_some_and(|g| g != "0"),
                "GPU node advertises no GPU: {gpus:?}"
            );
            for c in claims_of(&ctx, &gpu_pool).await {
                let image = c
                    .status
                    .as_ref()
                    .and_then(|s| s.image_id.clone())
                    .expect("launched claim has an image");
                let out = ctx
                    .ec2
                    .describe_images()
                    .image_ids(&image)
                    .send()
                    .await
                    .expect("DescribeImages");
                let name = out.images().first().and_then(|i| i.name()).unwrap_or_default().to_owned();
                assert!(name.contains("gpu"), "claim {} runs image {name:?}, not the GPU AMI", c.name_any());
            }
            controller.assert_no_panic();
        })
        .await;
        drop(controller);
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 4. Subnet choice
// ---------------------------------------------------------------------------------------------

/// Zone a has two tagged subnets, the small one listed first; every launch there must use the
/// one with the most free IPs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn launches_use_the_zone_subnet_with_the_most_free_ips() {
    karpenter_e2e::install_crypto_provider();
    let _serial = serial().await;
    run("sched-subnet", |ctx| async move {
        install_crds(&ctx.kube).await;
        let subnets = &ctx.env.aws.subnets;
        let zone = subnets
            .iter()
            .map(|s| &s.zone)
            .find(|z| subnets.iter().filter(|s| &s.zone == *z).count() > 1)
            .expect("the bed has a zone with two tagged subnets")
            .clone();
        let free = |id: String| {
            let ec2 = ctx.ec2.clone();
            async move {
                let out = ec2
                    .describe_subnets()
                    .subnet_ids(&id)
                    .send()
                    .await
                    .expect("DescribeSubnets");
                let count = out
                    .subnets()
                    .first()
                    .and_then(|s| s.available_ip_address_count());
                count.expect("free IP count")
            }
        };
        let mut in_zone = Vec::new();
        for s in subnets.iter().filter(|s| s.zone == zone) {
            in_zone.push((free(s.id.clone()).await, s.id.clone()));
        }
        in_zone.sort();
        let (most_free, roomiest) = in_zone.last().cloned().expect("two subnets");
        eprintln!("subnets of {zone} (free IPs, id): {in_zone:?}");

        let pool = pool_name(&ctx, "subnet");
        let controller = ControllerProcess::start(&ctx.env, "sched-subnet", &[]);
        let _sim = ctx.start_sim(ctx.sim_config_for_tag(NODEPOOL, &pool));
        apply_staging(
            &ctx,
            &pool,
            json!([
                {"key": "topology.kubernetes.io/zone", "operator": "In", "values": [zone]},
                {"key": INSTANCE_TYPE, "operator": "In", "values": ["m5.large"]},
            ]),
        )
        .await;
        with_teardown(&ctx, &[pool.as_str()], async {
            // 1200m on a 2-vCPU m5.large: one pod per node, three launches.
            let requests = json!({"cpu": "1200m", "memory": "256Mi"});
            deploy(&ctx, "subnet", Some(&pool), 3, requests, |_| {}).await;
            let result = tokio::time::timeout(
                Duration::from_secs(180),
                eventually("3 pods Running", Duration::from_secs(180), || async {
                    let pods = pods_of(&ctx, "subnet").await;
                    (pods.iter().filter(|p| pod_running_ready(p)).count() == 3).then_some(())
                }),
            )
            .await;
            assert!(
                result.is_ok(),
                "pods did not run; claims not Initialized:\n{}\ncontroller log tail:\n{}",
                stuck_claims(&ctx, &pool).await,
                controller.log_tail(60)
            );
            let out = ctx
                .ec2
                .describe_instances()
                .filters(
                    aws_sdk_ec2::types::Filter::builder()
                        .name(format!("tag:{NODEPOOL}"))
                        .values(&pool)
                        .build(),
                )
                .send()
                .await
                .expect("DescribeInstances");
            let placed: Vec<(String, String)> = out
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .map(|i| {
                    let zone = i.placement().and_then(|p| p.availability_zone());
                    (
                        zone.unwrap_or_default().to_owned(),
                        i.subnet_id().unwrap_or_default().to_owned(),
                    )
                })
                .collect();
            eprintln!("instances (zone, subnet): {placed:?}");
            assert_eq!(placed.len(), 3, "three instances: {placed:?}");
            for (z, subnet) in &placed {
                assert_eq!(z, &zone);
                assert_eq!(
                    subnet, &roomiest,
                    "launched into {subnet}, not {roomiest} ({most_free} free IPs)"
                );
            }
            controller.assert_no_panic();
        })
        .await;
        drop(controller);
    })
    .await;
}

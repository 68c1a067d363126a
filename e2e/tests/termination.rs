//! Termination through the real controller: a deleted NodeClaim, Node or NodePool is tainted,
//! drained through the Eviction API within its PodDisruptionBudgets, in Karpenter's wave
//! order, its instance terminated and its Node removed; a do-not-disrupt pod holds the node
//! until the termination grace period. Needs the e2e bed.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Node;
use karpenter_core::api::NodeClaim;
use karpenter_e2e::controller::{ControllerProcess, install_crds};
use karpenter_e2e::harness::*;
use karpenter_e2e::scenario::*;
use kube_client::ResourceExt;
use kube_client::api::{Api, DeleteParams, DynamicObject, PostParams};
use serde_json::json;

/// Deletes `claim`, waits until its Node is gone and its instance terminated; returns how long
/// that took.
async fn delete_and_wait(ctx: &Ctx, claim: &NodeClaim, timeout: Duration) -> Duration {
    let id = instance_id(claim).expect("launched claim has a provider id");
    let node = claim
        .status
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .expect("registered claim names its node");
    let claims: Api<NodeClaim> = Api::all(ctx.kube.clone());
    claims
        .delete(&claim.name_any(), &DeleteParams::default())
        .await
        .expect("delete nodeclaim");
    node_and_instance_gone(ctx, &node, &id, timeout).await
}

async fn node_and_instance_gone(ctx: &Ctx, node: &str, id: &str, timeout: Duration) -> Duration {
    let nodes: Api<Node> = Api::all(ctx.kube.clone());
    time_until("node gone and instance terminated", timeout, || async {
        let node_left = nodes.get_opt(node).await.ok().flatten().is_some();
        (!node_left && instance_gone(instance_state(ctx, id).await)).then_some(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_nodeclaim_is_drained_without_exceeding_its_pdb() {
    karpenter_e2e::install_crypto_provider();
    let _serial = serial().await;
    run("trpdb", |ctx| async move {
        install_crds(&ctx.kube).await;
        let pool = pool_name(&ctx, "trpdb");
        let controller = ControllerProcess::start(&ctx.env, "tr-pdb", &[]);
        let _sim = ctx.start_sim(ctx.sim_config_for_tag("karpenter.sh/nodepool", &pool));
        with_teardown(&ctx, &[&pool], async {
            apply_staging(&ctx, &pool, json!([])).await;
            let watch = PodWatch::start(&ctx);
            deploy(&ctx, "web", Some(&pool), 6, json!({"cpu": "500m", "memory": "256Mi"}), |_| {}).await;
            let claim = claim_holding(&ctx, &pool, "web", 6).await;
            let pdb = create_pdb(&ctx, "web", "web", json!({"maxUnavailable": 1})).await;
            eventually("the PDB allows one disruption", DEADLINE, || async {
                (pdb_disruptions_allowed(&ctx, &pdb, "web").await == Some(1)).then_some(())
            })
            .await;
            watch.arm();
            let deleted_at = Instant::now();
            let took = delete_and_wait(&ctx, &claim, Duration::from_secs(240)).await;
            eventually("6 web pods running again", Duration::from_secs(120), || async {
                (pods_of(&ctx, "web").await.iter().filter(|p| pod_running_ready(p)).count() == 6)
                    .then_some(())
            })
            .await;
            let (min_ready, evicted) = watch.read(|log| {
                (log.min_ready.get("web").copied(), log.terminations.len())
            });
            let timeline: Vec<String> = watch.read(|log| {
                log.terminations
                    .iter()
                    .map(|(n, at)| format!("{n}@{:.1}s", at.saturating_duration_since(deleted_at).as_secs_f64()))
                    .collect()
            });
            eprintln!("PDB drain timeline (pod started terminating, after the claim was deleted): {timeline:?}");
            let metrics = controller.scrape_metrics().await.unwrap_or_default();
            let refused = metrics
                .lines()
                .find(|l| l.starts_with("karpenter_nodes_eviction_requests_total{code=\"429\"}"))
                .map(str::to_owned);
            let notes = event_notes(&ctx, None, "FailedDraining", claim.status.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("")).await;
            eprintln!(
                "PDB drain: node gone {:.1}s after the claim was deleted; {evicted} pods evicted; fewest ready web pods {min_ready:?} (6 replicas, maxUnavailable 1); {refused:?}; FailedDraining notes: {notes:?}",
                took.as_secs_f64()
            );
            assert_eq!(evicted, 6, "every web pod was evicted once");
            assert!(
                min_ready.is_some_and(|m| m >= 5),
                "the PDB (maxUnavailable 1) was exceeded: as few as {min_ready:?} of 6 were ready"
            );
            // Whether the API server answers 429 depends on its version: v1.20 (the local bed)
            // rarely does. Concurrent evictions read the PDB from its cache, pass the check,
            // then conflict on the PDB status write, and the server retries that for up to
            // 10 s (20 × 500 ms) before answering — so evictions wait inside the API server
            // (the controller logs each answer's latency) and are granted as replacements
            // become ready. When a 429 does come, the refusal must name the PDB.
            if refused.is_some() {
                assert!(
                    notes.iter().any(|n| n.contains(&format!("PodDisruptionBudget {}/web", ctx.id))),
                    "a FailedDraining event names the PDB: {notes:?}"
                );
            }
            controller.assert_no_panic();
        })
        .await;
    })
    .await;
}

/// A DaemonSet of pause pods on the test pool's nodes, optionally critical.
async fn daemon_set(ctx: &Ctx, name: &str, pool: &str, priority_class: Option<&str>) {
    let mut spec = json!({
        "nodeSelector": {TEST_LABEL: ctx.id, NODEPOOL: pool},
        "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.2",
                        "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}}}],
    });
    if let Some(pc) = priority_class {
        spec["priorityClassName"] = json!(pc);
    }
    let ds: DaemonSet = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": spec},
        },
    }))
    .expect("DaemonSet object");
    Api::<DaemonSet>::namespaced(ctx.kube.clone(), &ctx.id)
        .create(&PostParams::default(), &ds)
        .await
        .expect("create DaemonSet");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_twenty_pod_node_drains_ordinary_then_daemonset_then_critical_pods() {
    karpenter_e2e::install_crypto_provider();
    let _serial = serial().await;
    run("trorder", |ctx| async move {
        install_crds(&ctx.kube).await;
        let pool = pool_name(&ctx, "trorder");
        let controller = ControllerProcess::start(&ctx.env, "tr-order", &[]);
        let _sim = ctx.start_sim(ctx.sim_config_for_tag("karpenter.sh/nodepool", &pool));
        with_teardown(&ctx, &[&pool], async {
            apply_staging(&ctx, &pool, json!([])).await;
            let watch = PodWatch::start(&ctx);
            let small = json!({"cpu": "100m", "memory": "64Mi"});
            deploy(&ctx, "web", Some(&pool), 16, small.clone(), |_| {}).await;
            deploy(&ctx, "crit", Some(&pool), 2, small, |spec| {
                spec["priorityClassName"] = json!("system-cluster-critical");
            })
            .await;
            // Karpenter's provisioner counts them on new nodes; they land once the node exists.
            daemon_set(&ctx, "agent", &pool, None).await;
            daemon_set(&ctx, "crit-agent", &pool, Some("system-node-critical")).await;
            let claim = claim_holding(&ctx, &pool, "web", 16).await;
            let node = claim.status.as_ref().and_then(|s| s.node_name.clone()).unwrap();
            eventually("20 pods running on the node", Duration::from_secs(120), || async {
                let on_node = running_pods(&ctx)
                    .await
                    .into_iter()
                    .filter(|p| node_name(p) == Some(node.as_str()))
                    .count();
                (on_node == 20).then_some(())
            })
            .await;
            let started = Instant::now();
            let took = delete_and_wait(&ctx, &claim, Duration::from_secs(180)).await;
            let order = watch.read(|log| log.termination_order());
            let last_pod = watch.read(|log| {
                log.terminations.iter().map(|(_, at)| *at).max().map(|at| at - started)
            });
            let wave = |name: &str| -> usize {
                match name.split('-').next().unwrap_or("") {
                    "web" => 0,
                    "agent" => 1,
                    "crit" if name.starts_with("crit-agent") => 3,
                    "crit" => 2,
                    _ => 9,
                }
            };
            let waves: Vec<usize> = order.iter().map(|n| wave(n)).collect();
            eprintln!(
                "20-pod drain: last pod terminating after {:.1}s, node gone and instance terminated {:.1}s after the claim was deleted; eviction order by wave: {waves:?}",
                last_pod.unwrap_or_default().as_secs_f64(),
                took.as_secs_f64()
            );
            assert_eq!(order.len(), 20, "every pod on the node was drained once: {order:?}");
            assert!(
                waves.windows(2).all(|w| w[0] <= w[1]),
                "pods left in wave order (web, agent, crit, crit-agent): {order:?}"
            );
            assert_eq!(waves.first(), Some(&0));
            assert_eq!(waves.last(), Some(&3));
            controller.assert_no_panic();
        })
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_do_not_disrupt_pod_holds_termination_until_the_grace_period() {
    karpenter_e2e::install_crypto_provider();
    let _serial = serial().await;
    run("trdnd", |ctx| async move {
        install_crds(&ctx.kube).await;
        let pool = pool_name(&ctx, "trdnd");
        let controller = ControllerProcess::start(&ctx.env, "tr-dnd", &[]);
        let _sim = ctx.start_sim(ctx.sim_config_for_tag("karpenter.sh/nodepool", &pool));
        with_teardown(&ctx, &[&pool], async {
            let spec = PoolSpec::staging(json!([])).with_termination_grace_period("40s");
            apply_pool(&ctx, &pool, &spec).await;
            let watch = PodWatch::start(&ctx);
            let requests = json!({"cpu": "500m", "memory": "256Mi"});
            deploy(&ctx, "keep", Some(&pool), 1, requests.clone(), |spec| {
                spec["terminationGracePeriodSeconds"] = json!(10);
            })
            .await;
            // The annotation goes on the pod template.
            let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
                Api::namespaced(ctx.kube.clone(), &ctx.id);
            deployments
                .patch(
                    "keep",
                    &kube_client::api::PatchParams::default(),
                    &kube_client::api::Patch::Merge(json!({"spec": {"template": {"metadata": {
                        "annotations": {"karpenter.sh/do-not-disrupt": "true"}}}}})),
                )
                .await
                .expect("annotate");
            let claim = claim_holding(&ctx, &pool, "keep", 1).await;
            let keep_pod = eventually("the annotated pod runs", DEADLINE, || async {
                pods_of(&ctx, "keep").await.into_iter().find(|p| {
                    pod_running_ready(p)
                        && p.annotations().get("karpenter.sh/do-not-disrupt").map(String::as_str) == Some("true")
                })
            })
            .await;
            assert_eq!(
                claim.spec.termination_grace_period.as_ref().map(|d| d.as_str()),
                Some("40s"),
                "the pool's terminationGracePeriod is on the claim"
            );
            let deleted_at = Instant::now();
            let took = delete_and_wait(&ctx, &claim, Duration::from_secs(120)).await;
            let held = watch
                .read(|log| log.terminated_at(&keep_pod.name_any()))
                .map(|at| at - deleted_at);
            eprintln!(
                "do-not-disrupt: pod deleted {:.1}s after the claim (grace period 40s, pod's own 10s); node gone after {:.1}s",
                held.unwrap_or_default().as_secs_f64(),
                took.as_secs_f64()
            );
            let held = held.expect("the do-not-disrupt pod was deleted in the end");
            // Deleted at deadline - 10 s = 30 s (deletion timestamps have whole seconds).
            assert!(
                held >= Duration::from_secs(28),
                "the do-not-disrupt pod was deleted after only {held:?}"
            );
            assert!(
                took >= Duration::from_secs(28) && took < Duration::from_secs(90),
                "the node went after {took:?}"
            );
            controller.assert_no_panic();
        })
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_a_node_or_a_nodepool_drains_and_terminates() {
    karpenter_e2e::install_crypto_provider();
    let _serial = serial().await;
    run("trnode", |ctx| async move {
        install_crds(&ctx.kube).await;
        let pool = pool_name(&ctx, "trnode");
        let controller = ControllerProcess::start(&ctx.env, "tr-node", &[]);
        let _sim = ctx.start_sim(ctx.sim_config_for_tag("karpenter.sh/nodepool", &pool));
        with_teardown(&ctx, &[&pool], async {
            apply_staging(&ctx, &pool, json!([])).await;
            let watch = PodWatch::start(&ctx);
            deploy(
                &ctx,
                "web",
                Some(&pool),
                2,
                json!({"cpu": "500m", "memory": "256Mi"}),
                |_| {},
            )
            .await;
            let first = claim_holding(&ctx, &pool, "web", 2).await;
            let node = first
                .status
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap();
            let id = instance_id(&first).unwrap();

            // `kubectl delete node`: the node is drained, its claim deleted, its instance
            // terminated.
            let nodes: Api<Node> = Api::all(ctx.kube.clone());
            nodes
                .delete(&node, &DeleteParams::default())
                .await
                .expect("delete node");
            let took = node_and_instance_gone(&ctx, &node, &id, Duration::from_secs(120)).await;
            let claims: Api<NodeClaim> = Api::all(ctx.kube.clone());
            eventually("its claim is gone", DEADLINE, || async {
                claims
                    .get_opt(&first.name_any())
                    .await
                    .ok()
                    .flatten()
                    .is_none()
                    .then_some(())
            })
            .await;
            let drained_first = watch.read(|log| log.terminations.len());
            eprintln!(
                "kubectl delete node: node gone after {:.1}s, {drained_first} pods drained",
                took.as_secs_f64()
            );
            assert_eq!(
                drained_first, 2,
                "both pods were drained off the deleted node"
            );

            // The pods come back on a new node; deleting the NodePool drains that one too.
            let second = claim_holding(&ctx, &pool, "web", 2).await;
            assert_ne!(second.name_any(), first.name_any());
            let node2 = second
                .status
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap();
            let id2 = instance_id(&second).unwrap();
            let pools: Api<DynamicObject> = Api::all_with(
                ctx.kube.clone(),
                &resource("karpenter.sh", "v1", "NodePool"),
            );
            pools
                .delete(&pool, &DeleteParams::default())
                .await
                .expect("delete nodepool");
            let took = node_and_instance_gone(&ctx, &node2, &id2, Duration::from_secs(120)).await;
            let drained = watch.read(|log| log.terminations.len());
            eprintln!(
                "NodePool deleted: its node gone after {:.1}s",
                took.as_secs_f64()
            );
            assert_eq!(drained, 4, "the pool's node was drained before it went");
            let evictions = pod_evicted_events(&ctx).await;
            assert!(
                evictions >= 4,
                "Evicted events for the drained pods: {evictions}"
            );
            controller.assert_no_panic();
        })
        .await;
    })
    .await;
}

/// How many `Evicted` Events the controller wrote about the test's pods.
async fn pod_evicted_events(ctx: &Ctx) -> usize {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(ctx.kube.clone(), &ctx.id);
    api.list(&Default::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .iter()
        .filter(|e| e.reason.as_deref() == Some("Evicted"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_controller_loop_that_panics_takes_the_process_down() {
    karpenter_e2e::install_crypto_provider();
    let _serial = serial().await;
    run("trpanic", |ctx| async move {
        install_crds(&ctx.kube).await;
        let mut controller = ControllerProcess::start(
            &ctx.env,
            "tr-panic",
            &[("KARPENTER_RS_TEST_FAULT", "panic:termination")],
        );
        let status = controller
            .wait_exit(Duration::from_secs(60))
            .await
            .expect("the process exits when a controller loop panics");
        let log = controller.log_tail(40);
        eprintln!("panicking loop: exit status {status}");
        assert!(!status.success(), "exit status {status} must be non-zero");
        assert!(
            log.contains("termination panicked"),
            "the log names the loop and the panic:\n{log}"
        );
    })
    .await;
}

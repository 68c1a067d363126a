//! Karpenter's perf "basic" scale-out through the `karpenter` controller: 500 pods at
//! 900m/3100Mi plus 500 at 3500m/28Gi must all run; then a scale-down to a tenth must shrink
//! the fleet to at most half. Times and the controller's peak RSS are printed. Needs the e2e bed
//! (`cargo xtask e2e`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use karpenter_e2e::controller::{ControllerProcess, install_crds};
use karpenter_e2e::harness::*;
use karpenter_e2e::scenario::*;
use kube_client::api::{Api, ListParams};
use serde_json::json;

/// Karpenter's perf "basic" scale-out: 500 pods × 900m/3100Mi and 500 × 3500m/28Gi on a pool
/// shaped like Karpenter's e2e default (c/m/r, generation > 2, amd64, on-demand, no maxPods).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn perf_basic_scale_out_500_plus_500() {
    karpenter_e2e::install_crypto_provider();
    let _serial = serial().await;
    run("sched-perf", |ctx| async move {
        install_crds(&ctx.kube).await;
        let pool = pool_name(&ctx, "perf");
        // Disruption polls faster than its 10 s default so the consolidation half is quicker.
        let controller = ControllerProcess::start(
            &ctx.env,
            "sched-perf",
            &[("DISRUPTION_POLL_INTERVAL", "2s"), ("CONSOLIDATION_VALIDATION_WAIT", "5s")],
        );
        let mut sim = ctx.sim_config_for_tag(NODEPOOL, &pool);
        sim.concurrency = 64;
        let _sim = ctx.start_sim(sim);
        apply_pool(
            &ctx,
            &pool,
            &PoolSpec::bare(json!([
                {"key": "karpenter.k8s.aws/instance-category", "operator": "In", "values": ["c", "m", "r"]},
                {"key": "karpenter.k8s.aws/instance-generation", "operator": "Gt", "values": ["2"]},
                {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]},
                {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
                {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
            ])),
        )
        .await;
        const DEADLINE: Duration = Duration::from_secs(15 * 60);
        with_teardown(&ctx, &[pool.as_str()], async {
            let started = Instant::now();
            deploy(&ctx, "small", Some(&pool), 500, json!({"cpu": "900m", "memory": "3100Mi"}), |_| {}).await;
            deploy(&ctx, "large", Some(&pool), 500, json!({"cpu": "3500m", "memory": "28Gi"}), |_| {}).await;
            let pods: Api<Pod> = Api::namespaced(ctx.kube.clone(), &ctx.id);
            let mut last_report = Instant::now();
            let mut first_node: Option<Duration> = None;
            loop {
                let list = pods.list(&ListParams::default()).await.expect("list pods");
                let running = list.items.iter().filter(|p| pod_running_ready(p)).count();
                let bound = list.items.iter().filter(|p| node_name(p).is_some()).count();
                if first_node.is_none() && bound > 0 {
                    first_node = Some(started.elapsed());
                }
                if running == 1000 {
                    break;
                }
                if last_report.elapsed() >= Duration::from_secs(30) {
                    let claims = claims_of(&ctx, &pool).await;
                    let ready = claims.iter().filter(|c| claim_ready(c)).count();
                    eprintln!(
                        "perf: {:>4.0} s: {} pods, {bound} bound, {running} Running; {} claims, {ready} Ready",
                        started.elapsed().as_secs_f64(),
                        list.items.len(),
                        claims.len()
                    );
                    last_report = Instant::now();
                }
                if started.elapsed() > DEADLINE {
                    let (notes, _) = failed_scheduling(&ctx).await;
                    panic!(
                        "perf: only {running}/1000 pods Running after {DEADLINE:?}; FailedScheduling: {:?}\nclaims not Initialized:\n{}\ncontroller log tail:\n{}",
                        notes.iter().collect::<BTreeSet<_>>(),
                        stuck_claims(&ctx, &pool).await,
                        controller.log_tail(30)
                    );
                }
                // Poll interval: listing 1000 pods every 200 ms would load the API server.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            let took = started.elapsed();
            let claims = claims_of(&ctx, &pool).await;
            let nodes = nodes_of(&ctx, &pool).await;
            let mut types: BTreeMap<String, usize> = BTreeMap::new();
            for n in &nodes {
                *types
                    .entry(label(n, INSTANCE_TYPE).unwrap_or("?").to_owned())
                    .or_default() += 1;
            }
            let cpu: i64 = nodes.iter().map(node_cpu_millis).sum();
            eprintln!(
                "perf: 1000 pods Running after {took:?} (first pod bound after {first_node:?}); {} NodeClaims, {} nodes, {} vCPU; CreateFleet calls: {}; instance types: {types:?}",
                claims.len(),
                nodes.len(),
                cpu / 1000,
                controller.proxy.count("CreateFleet"),
            );
            assert_eq!(claims.len(), nodes.len(), "one node per claim");
            assert!(took < DEADLINE);
            let after_scale_out = controller.memory();

            // Scale down to a tenth: consolidation shrinks the fleet (budgets: 10% of the
            // nodes per command, Karpenter's default).
            let peak_nodes = nodes.len();
            let scaled = Instant::now();
            scale(&ctx, "small", 50).await;
            scale(&ctx, "large", 50).await;
            let shrunk = eventually("the fleet at most half its peak", Duration::from_secs(900), || async {
                let nodes = nodes_of(&ctx, &pool).await;
                let list = pods.list(&ListParams::default()).await.ok()?;
                let running = list.items.iter().filter(|p| pod_running_ready(p)).count();
                (nodes.len() * 2 <= peak_nodes && running == 100 && list.items.len() == 100)
                    .then_some(nodes.len())
            })
            .await;
            eprintln!(
                "perf: after 1000→100 pods, {peak_nodes} → {shrunk} nodes in {:.0} s; controller memory after the scale-out: {after_scale_out}; after consolidation: {}",
                scaled.elapsed().as_secs_f64(),
                controller.memory(),
            );
            controller.assert_no_panic();
        })
        .await;
        drop(controller);
    })
    .await;
}

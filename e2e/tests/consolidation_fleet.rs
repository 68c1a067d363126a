//! Consolidation of a fleet through the real controller. A Deployment spread over several
//! nodes is scaled from 60 pods to 12, and the controller shrinks the fleet to a cheaper one
//! without ever taking more pods than the PodDisruptionBudget allows, every pod Running at the
//! end (it prints $/h before and after, the time to the cheaper fleet, the commands by kind and
//! evictions per command; Kubernetes 1.20's ReplicaSet removes the newest pods first, so the
//! scale-down empties whole nodes and emptiness does most of the work). And several nodes left
//! with one small pod each go in one multi-node command. Needs the e2e bed.

use std::time::{Duration, Instant};

use karpenter_e2e::controller::{ControllerProcess, install_crds};
use karpenter_e2e::harness::*;
use karpenter_e2e::scenario::*;
use serde_json::json;

/// Timers shortened through the controller's settings.
const FAST: &[(&str, &str)] = &[
    ("DISRUPTION_POLL_INTERVAL", "2s"),
    ("CONSOLIDATION_VALIDATION_WAIT", "2s"),
];

/// The PDB's `maxUnavailable`: the fewest Ready pods allowed is 12 minus this.
const MAX_UNAVAILABLE: usize = 2;

/// Sum of `karpenter_voluntary_disruption_decisions_total` samples whose labels contain all
/// of `labels`.
fn decisions(metrics: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("karpenter_voluntary_disruption_decisions_total{"))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |a, b| a + b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deployment_scaled_from_60_to_12_ends_on_a_cheaper_fleet_within_its_pdb() {
    karpenter_e2e::install_crypto_provider();
    let _serial = serial().await;
    run("dsfleet", |ctx| async move {
        install_crds(&ctx.kube).await;
        let pool = pool_name(&ctx, "dsfleet");
        let controller = ControllerProcess::start(&ctx.env, "ds-fleet", FAST);
        let _sim = ctx.start_sim(ctx.sim_config_for_tag("karpenter.sh/nodepool", &pool));
        with_teardown(&ctx, &[&pool], async {
            // Types of at most 8 vCPUs, so 60 pods of 900m need several nodes; half the
            // nodes may be disrupted at once (the default 10% of 8 nodes is one at a time,
            // which leaves multi-node consolidation nothing to combine).
            let spec = PoolSpec::staging(json!([
                {"key": "karpenter.k8s.aws/instance-cpu", "operator": "Lt", "values": ["9"]}
            ]))
            .with_disruption(json!({
                "consolidationPolicy": "WhenUnderutilized",
                "expireAfter": "720h",
                "budgets": [{"nodes": "50%"}],
            }));
            apply_pool(&ctx, &pool, &spec).await;
            deploy(&ctx, "web", Some(&pool), 60, json!({"cpu": "900m", "memory": "512Mi"}), |_| {}).await;
            eventually("60 pods Running", Duration::from_secs(300), || async {
                let pods = pods_of(&ctx, "web").await;
                (pods.iter().filter(|p| pod_running_ready(p)).count() == 60).then_some(())
            })
            .await;
            let (before, before_types) = fleet_price(&ctx, &pool).await;
            let nodes_before = before_types.len();
            assert!(nodes_before >= 7, "60 × 900m over ≤ 8-vCPU types needs several nodes: {before_types:?}");
            create_pdb(&ctx, "web", "web", json!({"maxUnavailable": MAX_UNAVAILABLE})).await;
            let watch = PodWatch::start(&ctx);
            let scaled = Instant::now();
            scale(&ctx, "web", 12).await;
            eventually("12 pods left, all Ready", DEADLINE, || async {
                watch.read(|l| (l.ready.get("web") == Some(&12)).then_some(()))
            })
            .await;
            // From here every pod that stops is the controller's doing.
            watch.arm();
            let terminated_before = watch.read(|l| l.terminations.len());
            // Settled: the nodes are the claims (no launch or drain in flight) and the fleet
            // has not changed for 20 s (a pass every 2 s would have acted).
            let fleet = settled_fleet(
                &ctx,
                &pool,
                ("web", 12),
                ("a cheaper fleet, settled, with every pod Running", Duration::from_secs(600), Duration::from_secs(20)),
                |types| {
                    if types.len() < nodes_before {
                        Ok(())
                    } else {
                        Err(format!("{} nodes, {nodes_before} before", types.len()))
                    }
                },
            )
            .await;
            // To the last change of the fleet, not to the end of the quiet time that proved it.
            let took = fleet.since.saturating_duration_since(scaled);
            let (after, after_types) = (fleet.price_per_hour, fleet.types);
            let min_ready = watch.read(|l| l.min_ready.get("web").copied().unwrap_or(0));
            let evicted = watch.read(|l| l.terminations.len()) - terminated_before;
            let metrics = controller.scrape_metrics().await.expect("metrics");
            // One controller per test: every decision it counted is this fleet's.
            let commands = decisions(&metrics, &[]);
            let by_type = |t: &str| decisions(&metrics, &[&format!("consolidation_type=\"{t}\"")]);
            let (empty, multi, single) = (by_type("empty"), by_type("multi"), by_type("single"));
            eprintln!(
                "fleet: {nodes_before} nodes ${before:.4}/h → {} nodes ${after:.4}/h ({after_types:?}) in {:.1}s after 60→12; \
                 {commands} commands ({empty} emptiness, {multi} multi-node, {single} single-node), {evicted} evictions ({:.1} per command); fewest Ready {min_ready} (PDB floor {}); \
                 controller memory: {}",
                after_types.len(),
                // Without the 20 s of watching the fleet stay as it is.
                took.saturating_sub(Duration::from_secs(20)).as_secs_f64(),
                evicted as f64 / commands.max(1.0),
                12 - MAX_UNAVAILABLE,
                controller.memory(),
            );
            assert!(after < before, "the fleet is cheaper: ${before}/h → ${after}/h");
            // 12 × 900m is 10.8 CPU: two nodes of ≤ 8 vCPUs hold it, three at most.
            assert!(after_types.len() <= 3, "consolidated to a few nodes: {after_types:?}");
            assert!(min_ready >= 12 - MAX_UNAVAILABLE, "the PDB was exceeded: {min_ready} Ready at the lowest");
            controller.assert_no_panic();
        })
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn several_underused_nodes_go_in_one_multi_node_command() {
    karpenter_e2e::install_crypto_provider();
    let _serial = serial().await;
    run("dsmulti", |ctx| async move {
        install_crds(&ctx.kube).await;
        let pool = pool_name(&ctx, "dsmulti");
        let controller = ControllerProcess::start(&ctx.env, "ds-multi", FAST);
        let _sim = ctx.start_sim(ctx.sim_config_for_tag("karpenter.sh/nodepool", &pool));
        with_teardown(&ctx, &[&pool], async {
            let spec = PoolSpec::staging(json!([
                {"key": "karpenter.k8s.aws/instance-cpu", "operator": "In", "values": ["8"]}
            ]))
            .with_disruption(json!({
                "consolidationPolicy": "WhenUnderutilized",
                "expireAfter": "720h",
                "budgets": [{"nodes": "100%"}],
            }));
            apply_pool(&ctx, &pool, &spec).await;
            // Four 8-vCPU nodes, each held by a 6-CPU filler pod; then one 1.5-CPU web pod fits
            // beside each filler and nowhere else.
            let apart = |spec: &mut serde_json::Value| {
                spec["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
                    "labelSelector": {"matchLabels": {"app": "filler"}},
                    "topologyKey": "kubernetes.io/hostname",
                }]}});
            };
            deploy(&ctx, "filler", Some(&pool), 4, json!({"cpu": "6", "memory": "1Gi"}), apart).await;
            eventually("4 fillers Running", Duration::from_secs(180), || async {
                let pods = pods_of(&ctx, "filler").await;
                (pods.iter().filter(|p| pod_running_ready(p)).count() == 4).then_some(())
            })
            .await;
            deploy(&ctx, "web", Some(&pool), 4, json!({"cpu": "1500m", "memory": "512Mi"}), |_| {}).await;
            let web_nodes = eventually("one web pod beside each filler", Duration::from_secs(120), || async {
                let pods = pods_of(&ctx, "web").await;
                let nodes: std::collections::BTreeSet<String> =
                    pods.iter().filter(|p| pod_running_ready(p)).filter_map(|p| node_name(p).map(str::to_owned)).collect();
                (nodes.len() == 4).then_some(nodes)
            })
            .await;
            let (before, before_types) = fleet_price(&ctx, &pool).await;
            scale(&ctx, "filler", 0).await;
            let started = Instant::now();
            let (after, types) = eventually("the web pods on fewer, cheaper nodes", Duration::from_secs(240), || async {
                let pods = pods_of(&ctx, "web").await;
                if pods.len() != 4 || !pods.iter().all(pod_running_ready) {
                    return None;
                }
                let claims = claims_of(&ctx, &pool).await;
                let (price, types) = fleet_price(&ctx, &pool).await;
                (claims.iter().all(|c| c.metadata.deletion_timestamp.is_none())
                    && types.len() == claims.len()
                    && types.len() < web_nodes.len()
                    && types.len() < before_types.len())
                .then_some((price, types))
            })
            .await;
            let metrics = controller.scrape_metrics().await.expect("metrics");
            let multi = decisions(&metrics, &["consolidation_type=\"multi\""]);
            eprintln!(
                "multi-node: {before_types:?} ${before:.4}/h → {types:?} ${after:.4}/h in {:.1}s; {multi} multi-node command(s); controller memory: {}",
                started.elapsed().as_secs_f64(),
                controller.memory(),
            );
            assert!(after < before, "cheaper: ${before}/h → ${after}/h");
            assert!(
                multi >= 1.0,
                "a multi-node command ran:\n{}",
                metrics.lines().filter(|l| l.contains("decisions_total")).collect::<Vec<_>>().join("\n")
            );
            controller.assert_no_panic();
        })
        .await;
    })
    .await;
}

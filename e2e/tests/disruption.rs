//! Disruption through the real controller: an empty node goes after `consolidateAfter`, an
//! underused node is replaced by a cheaper one launched first, and a replacement that cannot
//! launch rolls the command back with the candidate untouched. Timers are shortened with the
//! controller's settings, never with sleeps. Needs the e2e bed.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use karpenter_core::api::NodeClaim;
use karpenter_e2e::controller::{ControllerProcess, install_crds};
use karpenter_e2e::harness::*;
use karpenter_e2e::scenario::*;
use karpenter_providers::aws::catalog::Catalog;
use kube_client::ResourceExt;
use kube_client::api::Api;
use serde_json::json;

/// Settings that make disruption quick enough for a test.
const FAST: &[(&str, &str)] = &[
    ("DISRUPTION_POLL_INTERVAL", "2s"),
    ("CONSOLIDATION_VALIDATION_WAIT", "2s"),
];

fn is_initialized(c: &NodeClaim) -> bool {
    c.status.as_ref().is_some_and(|s| s.is_true("Initialized"))
}

fn has_disrupted_taint(n: &Node) -> bool {
    has_taint(n, "karpenter.sh/disrupted", "NoSchedule")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_empty_node_is_removed_after_consolidate_after() {
    karpenter_e2e::install_crypto_provider();
    let _serial = serial().await;
    run("dsempty", |ctx| async move {
        install_crds(&ctx.kube).await;
        let pool = pool_name(&ctx, "dsempty");
        let controller = ControllerProcess::start(&ctx.env, "ds-empty", FAST);
        let _sim = ctx.start_sim(ctx.sim_config_for_tag("karpenter.sh/nodepool", &pool));
        with_teardown(&ctx, &[&pool], async {
            let spec = PoolSpec::staging(json!([])).with_disruption(json!({
                "consolidationPolicy": "WhenEmpty",
                "consolidateAfter": "20s",
                "expireAfter": "720h",
            }));
            apply_pool(&ctx, &pool, &spec).await;
            deploy(
                &ctx,
                "one",
                Some(&pool),
                1,
                json!({"cpu": "500m", "memory": "256Mi"}),
                |_| {},
            )
            .await;
            let claim = claim_holding(&ctx, &pool, "one", 1).await;
            scale(&ctx, "one", 0).await;
            eventually("the pod gone", DEADLINE, || async {
                pods_of(&ctx, "one").await.is_empty().then_some(())
            })
            .await;
            let emptied = Instant::now();
            let claims: Api<NodeClaim> = Api::all(ctx.kube.clone());
            let took = time_until(
                "the empty node's claim deleted",
                Duration::from_secs(120),
                || async {
                    match claims.get_opt(&claim.name_any()).await.ok()? {
                        None => Some(()),
                        Some(c) => c.metadata.deletion_timestamp.is_some().then_some(()),
                    }
                },
            )
            .await;
            eprintln!(
                "emptiness: claim deleted {:.1}s after its last pod left (consolidateAfter 20s)",
                took.as_secs_f64()
            );
            assert!(
                emptied.elapsed() >= Duration::from_secs(20),
                "consolidateAfter counts from the last pod event: deleted after {took:?}"
            );
            let id = instance_id(&claim).expect("provider id");
            eventually(
                "its instance terminated",
                Duration::from_secs(120),
                || async { instance_gone(instance_state(&ctx, &id).await).then_some(()) },
            )
            .await;
            let notes = event_notes(&ctx, None, "DisruptionTerminating", &claim.name_any()).await;
            assert!(
                notes.iter().any(|n| n.contains("Empty/delete")),
                "DisruptionTerminating names the reason: {notes:?}"
            );
            controller.assert_no_panic();
        })
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_underused_node_is_replaced_by_a_cheaper_one_launched_first() {
    karpenter_e2e::install_crypto_provider();
    let _serial = serial().await;
    run("dsreplace", |ctx| async move {
        install_crds(&ctx.kube).await;
        let pool = pool_name(&ctx, "dsreplace");
        let controller = ControllerProcess::start(&ctx.env, "ds-replace", FAST);
        let _sim = ctx.start_sim(ctx.sim_config_for_tag("karpenter.sh/nodepool", &pool));
        with_teardown(&ctx, &[&pool], async {
            apply_staging(&ctx, &pool, json!([])).await;
            deploy(&ctx, "big", Some(&pool), 6, json!({"cpu": "1", "memory": "1Gi"}), |_| {}).await;
            let old = claim_holding(&ctx, &pool, "big", 6).await;
            let (before, before_types) = fleet_price(&ctx, &pool).await;
            let scaled = Instant::now();
            scale(&ctx, "big", 1).await;
            let claims: Api<NodeClaim> = Api::all(ctx.kube.clone());
            // The moment the old claim is seen deleting, its replacement must be initialized.
            let replacement = eventually("the old claim deleted after its replacement initialized", Duration::from_secs(180), || async {
                let current = claims.get_opt(&old.name_any()).await.ok()?;
                let deleting = current.as_ref().is_none_or(|c| c.metadata.deletion_timestamp.is_some());
                if !deleting {
                    return None;
                }
                let others: Vec<NodeClaim> = claims_of(&ctx, &pool)
                    .await
                    .into_iter()
                    .filter(|c| c.name_any() != old.name_any())
                    .collect();
                assert_eq!(others.len(), 1, "one replacement: {:?}", others.iter().map(|c| c.name_any()).collect::<Vec<_>>());
                assert!(is_initialized(&others[0]), "the candidate was deleted before its replacement was initialized");
                Some(others[0].clone())
            })
            .await;
            eventually("the pod Running on the replacement", Duration::from_secs(120), || async {
                let pods = pods_of(&ctx, "big").await;
                let node = replacement.status.as_ref()?.node_name.clone()?;
                (pods.len() == 1 && pod_running_ready(&pods[0]) && node_name(&pods[0]) == Some(node.as_str()))
                    .then_some(())
            })
            .await;
            eventually("the old node gone", Duration::from_secs(120), || async {
                let nodes = nodes_of(&ctx, &pool).await;
                (nodes.len() == 1).then_some(())
            })
            .await;
            let took = scaled.elapsed();
            let (after, after_types) = fleet_price(&ctx, &pool).await;
            eprintln!(
                "single-node replace: {before_types:?} ${before:.4}/h → {after_types:?} ${after:.4}/h in {:.1}s after the scale-down",
                took.as_secs_f64()
            );
            assert!(after < before, "the fleet is cheaper: ${before}/h → ${after}/h");
            let launching = event_notes(&ctx, None, "DisruptionLaunching", &replacement.name_any()).await;
            let terminating = event_notes(&ctx, None, "DisruptionTerminating", &old.name_any()).await;
            assert!(
                terminating.iter().any(|n| n.contains("Underutilized/replace")),
                "DisruptionTerminating: {terminating:?} (launching: {launching:?})"
            );
            controller.assert_no_panic();
        })
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replacement_that_cannot_launch_rolls_the_command_back() {
    karpenter_e2e::install_crypto_provider();
    let _serial = serial().await;
    run("dsrollback", |ctx| async move {
        install_crds(&ctx.kube).await;
        let pool = pool_name(&ctx, "dsrollback");
        let mut env = FAST.to_vec();
        env.push(("DISRUPTION_QUEUE_TIMEOUT", "60s"));
        let controller = ControllerProcess::start(&ctx.env, "ds-rollback", &env);
        let _sim = ctx.start_sim(ctx.sim_config_for_tag("karpenter.sh/nodepool", &pool));
        with_teardown(&ctx, &[&pool], async {
            apply_staging(&ctx, &pool, json!([])).await;
            deploy(
                &ctx,
                "big",
                Some(&pool),
                6,
                json!({"cpu": "1", "memory": "1Gi"}),
                |_| {},
            )
            .await;
            let old = claim_holding(&ctx, &pool, "big", 6).await;
            let node_name_of_old = old
                .status
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .expect("registered");
            // No capacity anywhere from now on.
            for e in &Catalog::embedded().instance_types {
                for s in &ctx.env.aws.subnets {
                    controller.proxy.ice(&e.name, &s.zone);
                }
            }
            scale(&ctx, "big", 1).await;
            let survivor = eventually("one pod left", DEADLINE, || async {
                let pods = pods_of(&ctx, "big").await;
                (pods.len() == 1 && pod_running_ready(&pods[0])).then(|| pods[0].clone())
            })
            .await;
            let took = time_until(
                "the command rolled back",
                Duration::from_secs(180),
                || async {
                    let notes =
                        event_notes(&ctx, None, "DisruptionRolledBack", &old.name_any()).await;
                    (!notes.is_empty()).then_some(())
                },
            )
            .await;
            eprintln!("rollback: {:.1}s after the scale-down", took.as_secs_f64());
            eventually("the candidate untainted", DEADLINE, || async {
                let n = node_named(&ctx, &node_name_of_old).await;
                (!has_disrupted_taint(&n)).then_some(())
            })
            .await;
            let claims: Api<NodeClaim> = Api::all(ctx.kube.clone());
            let current = claims
                .get(&old.name_any())
                .await
                .expect("the candidate's claim stays");
            assert!(
                current.metadata.deletion_timestamp.is_none(),
                "never deleted"
            );
            assert!(
                current
                    .status
                    .as_ref()
                    .is_none_or(|s| s.condition("DisruptionReason").is_none()),
                "DisruptionReason cleared"
            );
            let pods = pods_of(&ctx, "big").await;
            assert_eq!(pods.len(), 1);
            assert_eq!(pods[0].uid(), survivor.uid(), "the pod was never evicted");
            assert_eq!(node_name(&pods[0]), Some(node_name_of_old.as_str()));
            controller.assert_no_panic();
            for e in &Catalog::embedded().instance_types {
                for s in &ctx.env.aws.subnets {
                    controller.proxy.restore(&e.name, &s.zone);
                }
            }
        })
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn spot_to_spot_consolidation_waits_for_its_feature_gate() {
    karpenter_e2e::install_crypto_provider();
    let _serial = serial().await;
    run("dsspot", |ctx| async move {
        install_crds(&ctx.kube).await;
        let pool = pool_name(&ctx, "dsspot");
        // Restarted with the gate on half-way; it must outlive the body for the teardown.
        let mut controller = ControllerProcess::start(&ctx.env, "ds-spot-off", FAST);
        let _sim = ctx.start_sim(ctx.sim_config_for_tag("karpenter.sh/nodepool", &pool));
        with_teardown(&ctx, &[&pool], async {
            let spot_only = PoolSpec::bare(json!([
                {"key": "karpenter.k8s.aws/instance-category", "operator": "In", "values": ["t", "m", "r", "c"]},
                {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]},
                {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
            ]));
            apply_pool(&ctx, &pool, &spot_only).await;
            deploy(&ctx, "big", Some(&pool), 6, json!({"cpu": "1", "memory": "1Gi"}), |_| {}).await;
            let old = claim_holding(&ctx, &pool, "big", 6).await;
            assert_eq!(label(&old, "karpenter.sh/capacity-type"), Some("spot"));
            scale(&ctx, "big", 1).await;
            // Gate off (the default): the only way to save is a spot replacement, refused.
            let note = eventually("an Unconsolidatable event naming the gate", Duration::from_secs(120), || async {
                event_notes(&ctx, None, "Unconsolidatable", &old.name_any())
                    .await
                    .into_iter()
                    .find(|n| n.contains("SpotToSpotConsolidation"))
            })
            .await;
            eprintln!("spot-to-spot off: {note}");
            let claims: Api<NodeClaim> = Api::all(ctx.kube.clone());
            assert_eq!(claims_of(&ctx, &pool).await.len(), 1, "no replacement was launched");
            let (before, before_types) = fleet_price(&ctx, &pool).await;
            controller.kill();

            // Gate on: the node is replaced by a cheaper spot node.
            let mut env = FAST.to_vec();
            env.push(("FEATURE_GATES", "SpotToSpotConsolidation=true"));
            controller = ControllerProcess::start(&ctx.env, "ds-spot-on", &env);
            let replacement = eventually("a spot replacement, the old claim deleting", Duration::from_secs(180), || async {
                let current = claims.get_opt(&old.name_any()).await.ok()?;
                if current.as_ref().is_some_and(|c| c.metadata.deletion_timestamp.is_none()) {
                    return None;
                }
                claims_of(&ctx, &pool).await.into_iter().find(|c| c.name_any() != old.name_any())
            })
            .await;
            assert_eq!(label(&replacement, "karpenter.sh/capacity-type"), Some("spot"));
            eventually("the old node gone", Duration::from_secs(120), || async {
                (nodes_of(&ctx, &pool).await.len() == 1).then_some(())
            })
            .await;
            let (after, after_types) = fleet_price(&ctx, &pool).await;
            eprintln!("spot-to-spot on: {before_types:?} → {after_types:?} (on-demand list prices ${before:.4}/h → ${after:.4}/h)");
            controller.assert_no_panic();
        })
        .await;
    })
    .await;
}

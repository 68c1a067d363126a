//! What keeps a node, through the real controller: a PodDisruptionBudget that allows nothing
//! and a budget of `nodes: "0"` each block a consolidation, with an Event naming them; and
//! `expireAfter` replaces a node whatever consolidation thinks. Needs the e2e bed.

use std::time::{Duration, Instant};

use karpenter_core::api::NodeClaim;
use karpenter_e2e::controller::{ControllerProcess, install_crds};
use karpenter_e2e::harness::*;
use karpenter_e2e::scenario::*;
use kube_client::ResourceExt;
use kube_client::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use serde_json::json;

const FAST: &[(&str, &str)] = &[
    ("DISRUPTION_POLL_INTERVAL", "2s"),
    ("CONSOLIDATION_VALIDATION_WAIT", "2s"),
];

/// Waits for an Event `reason` about the claim whose note contains `needle`.
async fn event_naming(ctx: &Ctx, reason: &str, claim: &str, needle: &str) -> String {
    eventually(
        &format!("a {reason} event on {claim} naming {needle}"),
        Duration::from_secs(90),
        || async {
            event_notes(ctx, None, reason, claim)
                .await
                .into_iter()
                .find(|n| n.contains(needle))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pdb_allowing_nothing_and_a_zero_budget_block_consolidation_and_say_so() {
    karpenter_e2e::install_crypto_provider();
    let _serial = serial().await;
    run("dsblock", |ctx| async move {
        install_crds(&ctx.kube).await;
        let pool = pool_name(&ctx, "dsblock");
        let controller = ControllerProcess::start(&ctx.env, "ds-block", FAST);
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
            let pdb = create_pdb(&ctx, "big", "big", json!({"maxUnavailable": 0})).await;
            scale(&ctx, "big", 1).await;
            let note = event_naming(&ctx, "DisruptionBlocked", &old.name_any(), "big").await;
            eprintln!("blocked by the PDB: {note}");
            let claims: Api<NodeClaim> = Api::all(ctx.kube.clone());
            assert_eq!(
                claims_of(&ctx, &pool).await.len(),
                1,
                "no replacement was launched"
            );

            // The PDB goes, a zero budget comes: still blocked, now by the budget.
            let pools: Api<DynamicObject> = Api::all_with(
                ctx.kube.clone(),
                &resource("karpenter.sh", "v1beta1", "NodePool"),
            );
            pools
                .patch(
                    &pool,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"disruption": {"budgets": [{"nodes": "0"}]}}})),
                )
                .await
                .expect("zero budget");
            let pdbs: Api<DynamicObject> = Api::namespaced_with(ctx.kube.clone(), &ctx.id, &pdb);
            pdbs.delete("big", &DeleteParams::default())
                .await
                .expect("delete the PDB");
            let note = event_naming(&ctx, "DisruptionBlocked", &old.name_any(), "budget").await;
            eprintln!("blocked by the budget: {note}");
            let current = claims.get(&old.name_any()).await.expect("the claim stays");
            assert!(current.metadata.deletion_timestamp.is_none());

            // Opening the budget lets the consolidation through.
            pools
                .patch(
                    &pool,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"disruption": {"budgets": [{"nodes": "1"}]}}})),
                )
                .await
                .expect("open the budget");
            eventually(
                "the underused node consolidated",
                Duration::from_secs(180),
                || async {
                    match claims.get_opt(&old.name_any()).await.ok()? {
                        None => Some(()),
                        Some(c) => c.metadata.deletion_timestamp.is_some().then_some(()),
                    }
                },
            )
            .await;
            controller.assert_no_panic();
        })
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_node_is_replaced_and_counted_once() {
    karpenter_e2e::install_crypto_provider();
    let _serial = serial().await;
    run("dsexpire", |ctx| async move {
        install_crds(&ctx.kube).await;
        let pool = pool_name(&ctx, "dsexpire");
        let controller = ControllerProcess::start(&ctx.env, "ds-expire", FAST);
        let _sim = ctx.start_sim(ctx.sim_config_for_tag("karpenter.sh/nodepool", &pool));
        with_teardown(&ctx, &[&pool], async {
            // Long enough that the first node runs its pod before it expires, even on a
            // loaded machine (the pod must be seen on it first).
            let spec = PoolSpec::staging(json!([])).with_disruption(json!({
                "consolidationPolicy": "WhenUnderutilized",
                "expireAfter": "90s",
            }));
            apply_pool(&ctx, &pool, &spec).await;
            deploy(&ctx, "one", Some(&pool), 1, json!({"cpu": "500m", "memory": "256Mi"}), |_| {}).await;
            let first = claim_holding(&ctx, &pool, "one", 1).await;
            let created = first
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0)
                .expect("created");
            let claims: Api<NodeClaim> = Api::all(ctx.kube.clone());
            let started = Instant::now();
            eventually("the expired claim deleted", Duration::from_secs(180), || async {
                match claims.get_opt(&first.name_any()).await.ok()? {
                    None => Some(()),
                    Some(c) => c.metadata.deletion_timestamp.is_some().then_some(()),
                }
            })
            .await;
            let age = k8s_openapi::jiff::Timestamp::now().duration_since(created);
            eprintln!(
                "expiry: claim deleted at age {:.1}s (expireAfter 90s), {:.1}s after the test saw it",
                age.as_secs_f64(),
                started.elapsed().as_secs_f64()
            );
            assert!(age.as_secs_f64() >= 90.0, "not before expireAfter: {age:?}");
            eventually("the pod Running on another node", Duration::from_secs(120), || async {
                let pods = pods_of(&ctx, "one").await;
                let old_node = first.status.as_ref()?.node_name.clone()?;
                (pods.len() == 1
                    && pod_running_ready(&pods[0])
                    && node_name(&pods[0]) != Some(old_node.as_str()))
                .then_some(())
            })
            .await;
            let metrics = controller.scrape_metrics().await.expect("metrics");
            let counted: Vec<&str> = metrics
                .lines()
                .filter(|l| {
                    l.starts_with("karpenter_nodeclaims_disrupted_total")
                        && l.contains("reason=\"expired\"")
                        && l.contains(&pool)
                })
                .collect();
            assert!(!counted.is_empty(), "expiry is counted:\n{metrics}");
            controller.assert_no_panic();
        })
        .await;
    })
    .await;
}

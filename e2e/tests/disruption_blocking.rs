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
            // The NodePool says it too, as Karpenter's does.
            let on_pool =
                event_naming(&ctx, "DisruptionBlocked", &pool, "due to blocking budget").await;
            eprintln!("on the NodePool: {on_pool}");
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

/// Deletes the claim `name` or sees it deleting.
async fn deleting(claims: &Api<NodeClaim>, name: &str) -> Option<()> {
    match claims.get_opt(name).await.ok()? {
        None => Some(()),
        Some(c) => c.metadata.deletion_timestamp.is_some().then_some(()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_do_not_disrupt_pod_blocks_consolidation_until_its_annotation_goes() {
    karpenter_e2e::install_crypto_provider();
    let _serial = serial().await;
    run("dsdnd", |ctx| async move {
        install_crds(&ctx.kube).await;
        let pool = pool_name(&ctx, "dsdnd");
        let controller = ControllerProcess::start(&ctx.env, "ds-dnd", FAST);
        let _sim = ctx.start_sim(ctx.sim_config_for_tag("karpenter.sh/nodepool", &pool));
        with_teardown(&ctx, &[&pool], async {
            apply_staging(&ctx, &pool, json!([])).await;
            deploy(&ctx, "big", Some(&pool), 6, json!({"cpu": "1", "memory": "1Gi"}), |_| {}).await;
            let old = claim_holding(&ctx, &pool, "big", 6).await;
            scale(&ctx, "big", 1).await;
            let pod = eventually("one pod left", DEADLINE, || async {
                let pods = pods_of(&ctx, "big").await;
                (pods.len() == 1).then(|| pods[0].clone())
            })
            .await;
            // The annotation on the running pod itself, as `kubectl annotate` would put it.
            let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(ctx.kube.clone(), &ctx.id);
            let annotate = |value: serde_json::Value| {
                let pods = pods.clone();
                let name = pod.name_any();
                async move {
                    pods.patch(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"metadata": {"annotations": {"karpenter.sh/do-not-disrupt": value}}})),
                    )
                    .await
                    .expect("annotate the pod");
                }
            };
            annotate(json!("true")).await;
            let note = event_naming(&ctx, "DisruptionBlocked", &old.name_any(), &pod.name_any()).await;
            eprintln!("blocked by do-not-disrupt: {note}");
            assert!(note.contains("do-not-disrupt"), "the event names the annotation: {note}");
            let claims: Api<NodeClaim> = Api::all(ctx.kube.clone());
            assert!(deleting(&claims, &old.name_any()).await.is_none(), "the node stays");
            assert_eq!(claims_of(&ctx, &pool).await.len(), 1, "no replacement was launched");

            annotate(serde_json::Value::Null).await;
            let old_name = old.name_any();
            let took = time_until("the node consolidated once the annotation is gone", Duration::from_secs(180), || {
                deleting(&claims, &old_name)
            })
            .await;
            eprintln!("do-not-disrupt removed: consolidated {:.1}s later", took.as_secs_f64());
            controller.assert_no_panic();
        })
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scheduled_zero_budget_holds_consolidation_until_its_window_ends() {
    karpenter_e2e::install_crypto_provider();
    let _serial = serial().await;
    run("dscron", |ctx| async move {
        install_crds(&ctx.kube).await;
        let pool = pool_name(&ctx, "dscron");
        let controller = ControllerProcess::start(&ctx.env, "ds-cron", FAST);
        let _sim = ctx.start_sim(ctx.sim_config_for_tag("karpenter.sh/nodepool", &pool));
        with_teardown(&ctx, &[&pool], async {
            apply_staging(&ctx, &pool, json!([])).await;
            deploy(&ctx, "big", Some(&pool), 6, json!({"cpu": "1", "memory": "1Gi"}), |_| {}).await;
            let old = claim_holding(&ctx, &pool, "big", 6).await;
            // A freeze that started at the top of this minute (UTC) and lasts whole minutes,
            // ending at least 40 s from now: `{minute} * * * *` for `{n}m`.
            let now = k8s_openapi::jiff::Timestamp::now();
            let civil = now.to_zoned(k8s_openapi::jiff::tz::TimeZone::UTC);
            let minutes = if civil.second() < 20 { 1 } else { 2 };
            let window_start = now.as_second() - i64::from(civil.second());
            let window_end = window_start + 60 * minutes;
            let budget = json!([
                {"nodes": "0", "schedule": format!("{} * * * *", civil.minute()), "duration": format!("{minutes}m")},
                {"nodes": "1"},
            ]);
            let pools: Api<DynamicObject> = Api::all_with(ctx.kube.clone(), &resource("karpenter.sh", "v1beta1", "NodePool"));
            pools
                .patch(&pool, &PatchParams::default(), &Patch::Merge(json!({"spec": {"disruption": {"budgets": budget}}})))
                .await
                .expect("scheduled budget");
            scale(&ctx, "big", 1).await;
            let note = event_naming(&ctx, "DisruptionBlocked", &old.name_any(), "budget").await;
            eprintln!("inside the window: {note}");
            let on_pool = event_naming(&ctx, "DisruptionBlocked", &pool, "spec.disruption.budgets[0]").await;
            eprintln!("on the NodePool: {on_pool}");
            let claims: Api<NodeClaim> = Api::all(ctx.kube.clone());
            eventually("the node consolidated after the window", Duration::from_secs(300), || async {
                let deleted = deleting(&claims, &old.name_any()).await;
                if deleted.is_some() {
                    let at = k8s_openapi::jiff::Timestamp::now().as_second();
                    assert!(at >= window_end, "consolidated at {at}, inside the window that ends at {window_end}");
                }
                deleted
            })
            .await;
            let late = k8s_openapi::jiff::Timestamp::now().as_second() - window_end;
            eprintln!("scheduled budget: window of {minutes}m ended; consolidation started within {late}s");
            controller.assert_no_panic();
        })
        .await;
    })
    .await;
}

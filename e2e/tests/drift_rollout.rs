//! Drift through the real controller, end to end: a new EKS AMI release behind the SSM
//! parameter rolls a pool's nodes one at a time under `budgets: [{nodes: "1"}]`; a NodePool
//! requirement change drifts only the nodes that no longer meet it; a template taint drifts
//! through the NodePool hash. Needs the e2e bed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use karpenter_core::api::NodeClaim;
use karpenter_e2e::controller::{ControllerProcess, install_crds};
use karpenter_e2e::harness::*;
use karpenter_e2e::scenario::*;
use kube_client::ResourceExt;
use kube_client::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

/// Timers shortened through the controller's settings.
const FAST: &[(&str, &str)] = &[
    ("DISRUPTION_POLL_INTERVAL", "2s"),
    ("CONSOLIDATION_VALIDATION_WAIT", "2s"),
    ("DRIFT_RECHECK_INTERVAL", "5s"),
];

/// The parameter AL2 nodes of the bed's Kubernetes 1.20 resolve their image through.
const AL2_PARAMETER: &str =
    "/aws/service/eks/optimized-ami/1.20/amazon-linux-2/recommended/image_id";

/// Consolidation kept out of the way: only drift may move these nodes.
fn drift_only(budget: &str) -> Value {
    json!({
        "consolidationPolicy": "WhenEmpty",
        "consolidateAfter": "1h",
        "expireAfter": "720h",
        "budgets": [{"nodes": budget}],
    })
}

/// Pods of `apps` never share a node.
fn apart(apps: &[&str]) -> impl FnOnce(&mut Value) {
    let apps: Vec<String> = apps.iter().map(|a| a.to_string()).collect();
    move |spec| {
        spec["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
            "labelSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": apps}]},
            "topologyKey": "kubernetes.io/hostname",
        }]}});
    }
}

fn drift_reason(c: &NodeClaim) -> Option<String> {
    c.status
        .as_ref()
        .and_then(|s| s.condition("Drifted"))
        .filter(|d| d.status == "True")
        .map(|d| d.reason.clone())
}

fn image_of(c: &NodeClaim) -> Option<String> {
    c.status.as_ref().and_then(|s| s.image_id.clone())
}

fn node_of(c: &NodeClaim) -> Option<String> {
    c.status.as_ref().and_then(|s| s.node_name.clone())
}

fn pools_api(ctx: &Ctx) -> Api<DynamicObject> {
    Api::all_with(
        ctx.kube.clone(),
        &resource("karpenter.sh", "v1beta1", "NodePool"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_ami_release_replaces_the_nodes_one_at_a_time() {
    karpenter_e2e::install_crypto_provider();
    let _serial = serial().await;
    run("dsami", |ctx| async move {
        install_crds(&ctx.kube).await;
        let pool = pool_name(&ctx, "dsami");
        let controller = ControllerProcess::start(&ctx.env, "ds-ami", FAST);
        let _sim = ctx.start_sim(ctx.sim_config_for_tag("karpenter.sh/nodepool", &pool));
        with_teardown(&ctx, &[&pool], async {
            apply_pool(&ctx, &pool, &PoolSpec::staging(json!([])).with_disruption(drift_only("1"))).await;
            deploy(&ctx, "spread", Some(&pool), 3, json!({"cpu": "500m", "memory": "256Mi"}), apart(&["spread"])).await;
            eventually("3 pods Running on 3 nodes", Duration::from_secs(180), || async {
                let pods = pods_of(&ctx, "spread").await;
                (pods.iter().filter(|p| pod_running_ready(p)).count() == 3).then_some(())
            })
            .await;
            let old: Vec<NodeClaim> = claims_of(&ctx, &pool).await;
            assert_eq!(old.len(), 3);
            let old_image = image_of(&old[0]).expect("launched claims carry their image");
            let old_names: BTreeSet<String> = old.iter().map(|c| c.name_any()).collect();

            let released = Instant::now();
            let new_image = ctx.release_ami(AL2_PARAMETER).await;
            assert_ne!(new_image, old_image);
            let claims: Api<NodeClaim> = Api::all(ctx.kube.clone());
            let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(ctx.kube.clone());
            // Sampled throughout: how many old nodes were being disrupted at once, and the
            // drift reasons the old claims showed.
            let mut most_at_once = 0;
            let mut reasons: BTreeMap<String, String> = BTreeMap::new();
            let mut gone_at: Vec<(String, f64)> = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(480);
            loop {
                // Nodes before claims: a taint seen here was written after the controller saw
                // the claims below in the state they are read in (or an earlier one).
                let tainted_nodes: BTreeSet<String> = nodes
                    .list(&Default::default())
                    .await
                    .expect("list nodes")
                    .items
                    .iter()
                    .filter(|n| has_taint(n, "karpenter.sh/disrupted", "NoSchedule"))
                    .map(|n| n.name_any())
                    .collect();
                let all = claims.list(&Default::default()).await.expect("list claims").items;
                let ours: Vec<&NodeClaim> =
                    all.iter().filter(|c| label(*c, NODEPOOL) == Some(pool.as_str())).collect();
                let mut disrupting = 0;
                for name in &old_names {
                    match ours.iter().find(|c| c.name_any() == *name) {
                        None => {
                            if !gone_at.iter().any(|(n, _)| n == name) {
                                gone_at.push((name.clone(), released.elapsed().as_secs_f64()));
                            }
                        }
                        Some(c) => {
                            if let Some(r) = drift_reason(c) {
                                reasons.insert(name.clone(), r);
                            }
                            let tainted = node_of(c).is_some_and(|n| tainted_nodes.contains(&n));
                            // Karpenter's budget stops counting a node once its instance is
                            // terminating (its pods are gone by then): so does this count.
                            let terminating = c
                                .status
                                .as_ref()
                                .is_some_and(|s| s.is_true("InstanceTerminating"));
                            if (c.metadata.deletion_timestamp.is_some() || tainted) && !terminating {
                                disrupting += 1;
                            }
                        }
                    }
                }
                most_at_once = most_at_once.max(disrupting);
                let pods = pods_of(&ctx, "spread").await;
                let done = gone_at.len() == old_names.len()
                    && ours.len() == 3
                    && ours.iter().all(|c| image_of(c).as_deref() == Some(new_image.as_str()))
                    && pods.len() == 3
                    && pods.iter().all(pod_running_ready);
                if done {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the pool did not roll to {new_image} in time: gone {gone_at:?}, reasons {reasons:?}\n{}\ncontroller log tail:\n{}",
                    stuck_claims(&ctx, &pool).await,
                    controller.log_tail(40)
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            eprintln!(
                "AMI release {old_image} → {new_image}: old nodes gone at {gone_at:?} s; at most {most_at_once} disrupted at once; reasons {reasons:?}"
            );
            assert_eq!(
                most_at_once, 1,
                "budget nodes: \"1\" allows one node at a time (until its instance terminates)"
            );
            assert!(
                reasons.values().all(|r| r == "AMIDrift") && !reasons.is_empty(),
                "the old claims drifted for their image: {reasons:?}"
            );
            controller.assert_no_panic();
        })
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_requirement_change_drifts_only_the_nodes_that_no_longer_meet_it() {
    karpenter_e2e::install_crypto_provider();
    let _serial = serial().await;
    run("dsreq", |ctx| async move {
        install_crds(&ctx.kube).await;
        let pool = pool_name(&ctx, "dsreq");
        let controller = ControllerProcess::start(&ctx.env, "ds-req", FAST);
        let _sim = ctx.start_sim(ctx.sim_config_for_tag("karpenter.sh/nodepool", &pool));
        with_teardown(&ctx, &[&pool], async {
            apply_pool(&ctx, &pool, &PoolSpec::staging(json!([])).with_disruption(drift_only("10%"))).await;
            // Two sizes of pod on two nodes, so the nodes have different instance types. One
            // after the other: created together, kube-scheduler (which knows nothing of the
            // plan) may bind the small pod to the large pod's new node first, and the large pod
            // then gets a second large node.
            deploy(&ctx, "small", Some(&pool), 1, json!({"cpu": "250m", "memory": "256Mi"}), apart(&["small", "large"])).await;
            let small = claim_holding(&ctx, &pool, "small", 1).await;
            deploy(&ctx, "large", Some(&pool), 1, json!({"cpu": "3", "memory": "2Gi"}), apart(&["small", "large"])).await;
            let large = claim_holding(&ctx, &pool, "large", 1).await;
            let large_type = label(&large, INSTANCE_TYPE).expect("type label").to_owned();
            let small_type = label(&small, INSTANCE_TYPE).expect("type label").to_owned();
            assert_ne!(large_type, small_type, "two sizes of node");

            // Exclude the large node's type: only it stops meeting the requirements.
            let pools = pools_api(&ctx);
            let current = pools.get(&pool).await.expect("the pool");
            let mut reqs = current.data["spec"]["template"]["spec"]["requirements"].clone();
            reqs.as_array_mut().expect("requirements list").push(json!({
                "key": "node.kubernetes.io/instance-type", "operator": "NotIn", "values": [large_type],
            }));
            pools
                .patch(
                    &pool,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"template": {"spec": {"requirements": reqs}}}})),
                )
                .await
                .expect("patch the requirements");
            let changed = Instant::now();
            let claims: Api<NodeClaim> = Api::all(ctx.kube.clone());
            eventually("the large node's claim Drifted", Duration::from_secs(120), || async {
                let c = claims.get_opt(&large.name_any()).await.ok()??;
                let r = drift_reason(&c);
                r.or_else(|| c.metadata.deletion_timestamp.as_ref().map(|_| "deleting".into()))
            })
            .await;
            let moved = eventually("the large pod Running on another type", Duration::from_secs(240), || async {
                let pods = pods_of(&ctx, "large").await;
                let pod = pods.first().filter(|p| pod_running_ready(p))?;
                let node = node_named(&ctx, node_name(pod)?).await;
                let t = label(&node, INSTANCE_TYPE)?.to_owned();
                (t != large_type && claims.get_opt(&large.name_any()).await.ok()?.is_none()).then_some(t)
            })
            .await;
            eprintln!(
                "requirement change: {large_type} node replaced by {moved} in {:.1}s; {small_type} node kept",
                changed.elapsed().as_secs_f64()
            );
            let kept = claims.get(&small.name_any()).await.expect("the small node's claim stays");
            assert!(kept.metadata.deletion_timestamp.is_none(), "the node that meets the requirements is kept");
            assert_eq!(drift_reason(&kept), None, "and is not drifted");
            controller.assert_no_panic();
        })
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_template_taint_drifts_the_node_through_the_pool_hash() {
    karpenter_e2e::install_crypto_provider();
    let _serial = serial().await;
    run("dstaint", |ctx| async move {
        install_crds(&ctx.kube).await;
        let pool = pool_name(&ctx, "dstaint");
        let controller = ControllerProcess::start(&ctx.env, "ds-taint", FAST);
        let _sim = ctx.start_sim(ctx.sim_config_for_tag("karpenter.sh/nodepool", &pool));
        with_teardown(&ctx, &[&pool], async {
            apply_pool(&ctx, &pool, &PoolSpec::staging(json!([])).with_disruption(drift_only("10%"))).await;
            deploy(&ctx, "web", Some(&pool), 1, json!({"cpu": "500m", "memory": "256Mi"}), |spec| {
                spec["tolerations"] = json!([{"key": "dedicated", "operator": "Equal", "value": "web", "effect": "NoSchedule"}]);
            })
            .await;
            let old = claim_holding(&ctx, &pool, "web", 1).await;
            pools_api(&ctx)
                .patch(
                    &pool,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"template": {"spec": {"taints": [
                        {"key": "dedicated", "value": "web", "effect": "NoSchedule"}
                    ]}}}})),
                )
                .await
                .expect("add a template taint");
            let changed = Instant::now();
            let claims: Api<NodeClaim> = Api::all(ctx.kube.clone());
            let reason = eventually("the claim Drifted", Duration::from_secs(120), || async {
                claims.get_opt(&old.name_any()).await.ok()?.as_ref().and_then(drift_reason)
            })
            .await;
            assert_eq!(reason, "NodePoolDrifted");
            let node = eventually("the pod Running on a tainted replacement", Duration::from_secs(240), || async {
                let pods = pods_of(&ctx, "web").await;
                let pod = pods.first().filter(|p| pod_running_ready(p))?;
                let node = node_named(&ctx, node_name(pod)?).await;
                (claims.get_opt(&old.name_any()).await.ok()?.is_none()).then_some(node)
            })
            .await;
            eprintln!("template taint: node replaced in {:.1}s", changed.elapsed().as_secs_f64());
            assert!(has_taint(&node, "dedicated", "NoSchedule"), "the replacement carries the new taint");
            controller.assert_no_panic();
        })
        .await;
    })
    .await;
}

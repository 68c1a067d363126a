//! NodeClaim lifecycle through the real controller: deleting a claim terminates its instance,
//! a node that never joins is deleted after the registration TTL, and an instance a crashed
//! controller left without a NodeClaim is garbage-collected, and an unregistered taint written
//! back onto a registered node (kube-controller-manager's stale taint writes) is removed again.
//! Needs the e2e bed.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use karpenter_core::api::NodeClaim;
use karpenter_e2e::controller::{ControllerProcess, install_crds};
use karpenter_e2e::harness::*;
use karpenter_e2e::scenario::*;
use kube_client::ResourceExt;
use kube_client::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_a_nodeclaim_terminates_its_instance_and_node() {
    karpenter_e2e::install_crypto_provider();
    let _serial = serial().await;
    run("lcdel", |ctx| async move {
        install_crds(&ctx.kube).await;
        let pool = pool_name(&ctx, "lcdel");
        let controller = ControllerProcess::start(&ctx.env, "lc-delete", &[]);
        let _sim = ctx.start_sim(ctx.sim_config_for_tag("karpenter.sh/nodepool", &pool));
        apply_staging(&ctx, &pool, json!([])).await;
        create_deployment(&ctx, "one", 1, "500m", "256Mi").await;
        let claim = eventually(
            "a registered nodeclaim",
            Duration::from_secs(120),
            || async {
                claims_of(&ctx, &pool)
                    .await
                    .into_iter()
                    .find(|c| c.status.as_ref().is_some_and(|s| s.is_true("Registered")))
            },
        )
        .await;
        let id = instance_id(&claim).expect("registered claim has a provider id");
        let node_name = claim
            .status
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .expect("registered claim names its node");
        assert_eq!(instance_state(&ctx, &id).await.as_deref(), Some("running"));

        let claims: Api<NodeClaim> = Api::all(ctx.kube.clone());
        claims
            .delete(&claim.name_any(), &DeleteParams::default())
            .await
            .expect("delete nodeclaim");
        eventually("instance terminated", Duration::from_secs(60), || async {
            instance_gone(instance_state(&ctx, &id).await).then_some(())
        })
        .await;
        eventually("node and claim gone", Duration::from_secs(60), || async {
            let node_left = ctx.nodes().await.iter().any(|n| n.name_any() == node_name);
            let claim_left = claims.get_opt(&claim.name_any()).await.ok().flatten();
            (!node_left && claim_left.is_none()).then_some(())
        })
        .await;
        controller.assert_no_panic();
        teardown(&ctx, &pool).await;
    })
    .await;
}

fn has_unregistered_taint(node: &Node) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|ts| ts.iter().any(|t| t.key == "karpenter.sh/unregistered"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unregistered_taint_written_back_onto_a_registered_node_is_removed_again() {
    karpenter_e2e::install_crypto_provider();
    let _serial = serial().await;
    run("lctaint", |ctx| async move {
        install_crds(&ctx.kube).await;
        let pool = pool_name(&ctx, "lctaint");
        let controller = ControllerProcess::start(&ctx.env, "lc-taint", &[]);
        let _sim = ctx.start_sim(ctx.sim_config_for_tag("karpenter.sh/nodepool", &pool));
        apply_staging(&ctx, &pool, json!([])).await;
        create_deployment(&ctx, "one", 1, "500m", "256Mi").await;
        let claim = eventually(
            "an initialized nodeclaim",
            Duration::from_secs(120),
            || async {
                claims_of(&ctx, &pool)
                    .await
                    .into_iter()
                    .find(|c| c.status.as_ref().is_some_and(|s| s.is_true("Initialized")))
            },
        )
        .await;
        let node_name = claim
            .status
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .expect("registered claim names its node");
        let nodes: Api<Node> = Api::all(ctx.kube.clone());
        let node = nodes.get(&node_name).await.expect("get node");
        assert!(!has_unregistered_taint(&node), "registration removed it");

        // What kube-controller-manager's unguarded taint patch does with a stale Node copy:
        // the whole list written back, the unregistered taint included.
        let mut taints = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        taints.push(k8s_openapi::api::core::v1::Taint {
            key: "karpenter.sh/unregistered".into(),
            effect: "NoExecute".into(),
            ..Default::default()
        });
        nodes
            .patch(
                &node_name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"taints": taints}})),
            )
            .await
            .expect("write the stale taint list");
        eventually(
            "the unregistered taint removed again",
            Duration::from_secs(30),
            || async {
                let n = nodes.get(&node_name).await.ok()?;
                (!has_unregistered_taint(&n)).then_some(())
            },
        )
        .await;
        // The log line is written after the patch returns, so the taint can be gone a
        // moment before the line is: poll for it too.
        eventually(
            "the controller logs why it touched the node",
            Duration::from_secs(10),
            || async {
                controller
                    .log_tail(2000)
                    .contains("removed the unregistered taint")
                    .then_some(())
            },
        )
        .await;
        teardown(&ctx, &pool).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_never_joins_is_deleted_after_the_registration_ttl() {
    karpenter_e2e::install_crypto_provider();
    let _serial = serial().await;
    run("lcttl", |ctx| async move {
        install_crds(&ctx.kube).await;
        let pool = pool_name(&ctx, "lcttl");
        // No simulator for this pool: its instances never become nodes.
        let _controller =
            ControllerProcess::start(&ctx.env, "lc-ttl", &[("REGISTRATION_TTL", "8s")]);
        apply_staging(&ctx, &pool, json!([])).await;
        create_deployment(&ctx, "one", 1, "500m", "256Mi").await;
        let claim = eventually("a launched nodeclaim", Duration::from_secs(120), || async {
            claims_of(&ctx, &pool)
                .await
                .into_iter()
                .find(|c| c.status.as_ref().is_some_and(|s| s.is_true("Launched")))
        })
        .await;
        let launched_at = Instant::now();
        let id = instance_id(&claim).expect("launched claim has a provider id");
        let uid = claim.uid().expect("claim uid");
        eventually(
            "the claim deleted and its instance terminated",
            Duration::from_secs(60),
            || async {
                let still = claims_of(&ctx, &pool)
                    .await
                    .iter()
                    .any(|c| c.uid().as_deref() == Some(uid.as_str()));
                (!still && instance_gone(instance_state(&ctx, &id).await)).then_some(())
            },
        )
        .await;
        let waited = launched_at.elapsed();
        eprintln!("never-joined claim removed {waited:?} after it was seen launched");
        // Not before the TTL (minus the time it took us to see the launch).
        assert!(
            waited >= Duration::from_secs(5),
            "deleted too early: {waited:?}"
        );
        teardown(&ctx, &pool).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_instance_without_a_nodeclaim_is_garbage_collected() {
    karpenter_e2e::install_crypto_provider();
    let _serial = serial().await;
    run("lcgc", |ctx| async move {
        install_crds(&ctx.kube).await;
        let cluster = ctx.env.aws.cluster_name.clone();
        // What a controller that crashed between CreateFleet and writing the claim leaves.
        let cluster_tag = format!("kubernetes.io/cluster/{cluster}");
        let crashed = [
            ("karpenter.sh/nodepool", "crashed"),
            ("karpenter.sh/nodeclaim", "crashed-abcde"),
            ("eks:eks-cluster-name", cluster.as_str()),
            (cluster_tag.as_str(), "owned"),
        ];
        let id = ctx
            .run_instances(1, "m5.large", &crashed, None)
            .await
            .remove(0);
        // An instance of another cluster must survive.
        let foreign = [
            ("karpenter.sh/nodepool", "crashed"),
            ("eks:eks-cluster-name", "another-cluster"),
        ];
        let foreign_id = ctx
            .run_instances(1, "m5.large", &foreign, None)
            .await
            .remove(0);

        let started = Instant::now();
        let controller = ControllerProcess::start(&ctx.env, "lc-gc", &[]);
        eventually(
            "leaked instance terminated",
            Duration::from_secs(60),
            || async { instance_gone(instance_state(&ctx, &id).await).then_some(()) },
        )
        .await;
        eprintln!("leaked instance collected after {:?}", started.elapsed());
        assert_eq!(
            instance_state(&ctx, &foreign_id).await.as_deref(),
            Some("running"),
            "another cluster's instance was touched"
        );
        let calls = controller.proxy.calls();
        assert!(
            calls.iter().any(|c| c.action == "TerminateInstances"),
            "the controller terminated it"
        );
    })
    .await;
}

/// A NodeClaim no controller will act on (its class does not exist), labelled for this test.
fn bare_claim(ctx: &Ctx, name: &str) -> NodeClaim {
    serde_json::from_value(json!({
        "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
        "metadata": { "name": name, "labels": { TEST_LABEL: ctx.id } },
        "spec": {
            "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "none" },
            "requirements": [],
        },
    }))
    .expect("nodeclaim")
}

/// Two controllers write different conditions of one NodeClaim's status (each condition type
/// has its own writer). `conditions` is a list a merge patch replaces whole, so the writes are
/// guarded by the resourceVersion they were computed from: a write from a stale read is
/// refused with 409 Conflict (and retried from the newer object) instead of dropping the other
/// writer's condition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_write_from_a_stale_read_is_refused_not_clobbering() {
    use karpenter::controllers::conditions::{guarded_status_patch, is_conflict, upsert_condition};
    use kube_client::api::PostParams;

    karpenter_e2e::install_crypto_provider();
    let _serial = serial().await;
    run("lcrv", |ctx| async move {
        install_crds(&ctx.kube).await;
        // No controller runs: the two writers are this test.
        let claims: Api<NodeClaim> = Api::all(ctx.kube.clone());
        let name = format!("{}-rv", ctx.id);
        let body = bare_claim(&ctx, &name);
        claims
            .create(&PostParams::default(), &body)
            .await
            .expect("create nodeclaim");
        let read = claims.get(&name).await.expect("read nodeclaim");

        let write = |claim: &NodeClaim, type_: &str| {
            let mut status = claim.status.clone().unwrap_or_default();
            assert!(upsert_condition(
                &mut status,
                type_,
                "True",
                type_,
                "",
                claim
            ));
            let patch = guarded_status_patch(&claim.metadata, &status);
            let claims = claims.clone();
            let name = name.clone();
            async move {
                claims
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
            }
        };
        // Writer A, from the read.
        write(&read, "Drifted").await.expect("first write");
        // Writer B, from the same (now stale) read: refused.
        let stale = write(&read, "Launched")
            .await
            .expect_err("a write from a stale read must be refused");
        assert!(is_conflict(&stale), "refused as a conflict: {stale}");
        // Writer B again, from the newer object: both conditions survive.
        let fresh = claims.get(&name).await.expect("re-read nodeclaim");
        write(&fresh, "Launched")
            .await
            .expect("write from a fresh read");
        let after = claims.get(&name).await.expect("read after both writes");
        let types: Vec<String> = after
            .status
            .iter()
            .flat_map(|s| s.conditions.iter().map(|c| c.type_.clone()))
            .collect();
        assert_eq!(
            types,
            ["Drifted", "Launched"],
            "neither writer's condition is lost"
        );
        claims
            .delete(&name, &DeleteParams::default())
            .await
            .expect("delete nodeclaim");
    })
    .await;
}

/// Every controller deletes claims through `delete_node_claim`: with the UID of the object it
/// decided on, a claim re-created under the same name is never touched, and "gone" is no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_delete_with_a_uid_never_removes_a_newer_claim_of_the_same_name() {
    use karpenter::controllers::claim_delete::{ClaimDeleted, delete_node_claim};
    use kube_client::api::PostParams;

    karpenter_e2e::install_crypto_provider();
    let _serial = serial().await;
    run("lcuid", |ctx| async move {
        install_crds(&ctx.kube).await;
        // No controller runs: no finalizer is added, so deletes take effect at once.
        let claims: Api<NodeClaim> = Api::all(ctx.kube.clone());
        let name = format!("{}-uid", ctx.id);
        let body = bare_claim(&ctx, &name);
        let old = claims
            .create(&PostParams::default(), &body)
            .await
            .expect("create");
        let old_uid = old.uid().expect("uid");
        claims
            .delete(&name, &DeleteParams::default())
            .await
            .expect("delete");
        eventually("the first claim gone", Duration::from_secs(10), || async {
            claims.get_opt(&name).await.ok()?.is_none().then_some(())
        })
        .await;
        let new = claims
            .create(&PostParams::default(), &body)
            .await
            .expect("re-create");
        let outcome = delete_node_claim(&ctx.kube, &name, Some(&old_uid)).await;
        assert_eq!(outcome.expect("no error"), ClaimDeleted::AlreadyGone);
        let still = claims
            .get(&name)
            .await
            .expect("the newer claim is still there");
        assert_eq!(still.uid(), new.uid());
        // Its own UID deletes it; a second call finds it gone.
        let uid = new.uid().expect("uid");
        assert_eq!(
            delete_node_claim(&ctx.kube, &name, Some(&uid))
                .await
                .expect("delete"),
            ClaimDeleted::Now
        );
        eventually("the newer claim gone", Duration::from_secs(10), || async {
            claims.get_opt(&name).await.ok()?.is_none().then_some(())
        })
        .await;
        assert_eq!(
            delete_node_claim(&ctx.kube, &name, None)
                .await
                .expect("gone is fine"),
            ClaimDeleted::AlreadyGone
        );
    })
    .await;
}

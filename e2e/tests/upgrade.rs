//! `helm upgrade` from Karpenter 0.36, in place, as docs/helm.md tells an operator to do it.
//!
//! The bed is made to look like a cluster Karpenter 0.36 runs: its chart's objects (a stand-in
//! with 0.36's names and labels, `e2e/tests/fixtures/karpenter-0.36/`) and its v1beta1-only CRDs
//! installed by Helm, the seed's v1beta1 NodePool and EC2NodeClass, and a node 0.36 launched: an
//! instance with 0.36's tags (no `eks:eks-cluster-name`), its Node, and its NodeClaim with a
//! v1beta1 body and knative conditions. Then the operator's steps: our CRDs with a server-side
//! apply, `helm upgrade` with the seed's command line, and karpenter-rs running as the chart's
//! ServiceAccount. The node must survive (same instance, same claim uid, not drifted), its
//! claim must become v1 with the pool's `expireAfter`, and it must stay the controller's to
//! disrupt: consolidated once the pool's budget allows it. Needs the e2e bed and `HELM`.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::FutureExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::rbac::v1::Role;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use karpenter_core::api::{NODE_POOL_HASH_VERSION, NodeClaim};
use karpenter_e2e::chart::*;
use karpenter_e2e::controller::{ControllerProcess, install_crds, repo_root};
use karpenter_e2e::harness::*;
use karpenter_e2e::scenario::*;
use kube_client::ResourceExt;
use kube_client::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use serde_json::{Value, json};

/// The three CRDs by (group, kind, plural).
const KINDS: [(&str, &str, &str); 3] = [
    ("karpenter.sh", "NodeClaim", "nodeclaims"),
    ("karpenter.sh", "NodePool", "nodepools"),
    ("karpenter.k8s.aws", "EC2NodeClass", "ec2nodeclasses"),
];

/// The SSM parameter the class's AL2 image is resolved through on the bed's Kubernetes 1.20.
const AL2_PARAMETER: &str =
    "/aws/service/eks/optimized-ami/1.20/amazon-linux-2/recommended/image_id";

/// The kubelet-compatibility annotation a converted claim keeps 0.36's `spec.kubelet` in.
const KUBELET_ANNOTATION: &str = "compatibility.karpenter.sh/v1beta1-kubelet-conversion";

fn api(ctx: &Ctx, group: &str, version: &str, kind: &str) -> Api<DynamicObject> {
    Api::all_with(ctx.kube.clone(), &resource(group, version, kind))
}

/// 0.36's CRDs: ours reduced to their v1beta1 version, served and stored, as 0.36 shipped them.
fn crds_036() -> Vec<CustomResourceDefinition> {
    let mut out = Vec::new();
    let dir = repo_root().join("crds");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("crds/")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    paths.sort();
    for path in paths {
        let mut crd: CustomResourceDefinition =
            serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        crd.spec.versions.retain(|v| v.name == "v1beta1");
        assert_eq!(
            crd.spec.versions.len(),
            1,
            "{} serves v1beta1",
            path.display()
        );
        let v = &mut crd.spec.versions[0];
        v.served = true;
        v.storage = true;
        v.deprecated = None;
        v.deprecation_warning = None;
        crd.metadata.annotations = None;
        out.push(crd);
    }
    out
}

/// Writes the fixture chart with 0.36's CRDs in its `crds/` under the state directory.
fn chart_036(ctx: &Ctx) -> std::path::PathBuf {
    let src = repo_root().join("e2e/tests/fixtures/karpenter-0.36");
    let dst = ctx.env.state_dir.join(format!("karpenter-0.36-{}", ctx.id));
    copy_dir(&src, &dst);
    let crds = dst.join("crds");
    std::fs::create_dir_all(&crds).unwrap();
    for crd in crds_036() {
        let name = crd.metadata.name.clone().unwrap();
        std::fs::write(
            crds.join(format!("{name}.yaml")),
            serde_yaml::to_string(&crd).unwrap(),
        )
        .unwrap();
    }
    dst
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap().filter_map(Result::ok) {
        let to = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), to).unwrap();
        }
    }
}

/// Removes Karpenter's CRDs, and with them every object the earlier tests left (finalizers
/// stripped first: no controller runs to honour them), so 0.36's can be installed fresh.
async fn remove_crds(ctx: &Ctx) {
    let crds: Api<CustomResourceDefinition> = Api::all(ctx.kube.clone());
    for (group, kind, plural) in KINDS {
        let name = format!("{plural}.{group}");
        let Some(crd) = crds.get_opt(&name).await.expect("get CRD") else {
            continue;
        };
        let version = crd
            .spec
            .versions
            .iter()
            .find(|v| v.storage)
            .map(|v| v.name.clone())
            .expect("a stored version");
        let objects = api(ctx, group, &version, kind);
        for o in objects
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
        {
            let _ = objects
                .patch(
                    &o.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"finalizers": null}})),
                )
                .await;
        }
        crds.delete(&name, &DeleteParams::default())
            .await
            .expect("delete CRD");
        eventually(
            &format!("CRD {name} gone"),
            Duration::from_secs(60),
            || async { crds.get_opt(&name).await.ok()?.is_none().then_some(()) },
        )
        .await;
    }
}

/// A claim's NodeClaim as Karpenter 0.36 created it for `pool`'s node on `instance`.
fn claim_036(ctx: &Ctx, name: &str, pool: &str, pool_uid: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "karpenter.sh/v1beta1",
        "kind": "NodeClaim",
        "metadata": {
            "name": name,
            "labels": {
                NODEPOOL: pool,
                TEST_LABEL: ctx.id,
                INSTANCE_TYPE: "m5.large",
                "karpenter.sh/capacity-type": "on-demand",
                "kubernetes.io/arch": "amd64",
                "karpenter.k8s.aws/instance-category": "m",
            },
            "annotations": {
                "karpenter.sh/nodepool-hash": "6821555240594823858",
                "karpenter.sh/nodepool-hash-version": "v2",
                "karpenter.k8s.aws/ec2nodeclass-hash": "15616957348189460630",
                "karpenter.k8s.aws/ec2nodeclass-hash-version": "v2",
            },
            "finalizers": ["karpenter.sh/termination"],
            "ownerReferences": [{
                "apiVersion": "karpenter.sh/v1beta1", "kind": "NodePool", "name": pool,
                "uid": pool_uid, "blockOwnerDeletion": true,
            }],
        },
        "spec": {
            "requirements": [
                {"key": "karpenter.k8s.aws/instance-category", "operator": "In", "values": ["t", "m", "r", "c"]},
                {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]},
                {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
                {"key": NODEPOOL, "operator": "In", "values": [pool]},
                {"key": INSTANCE_TYPE, "operator": "In", "values": ["m5.large"]},
            ],
            "resources": {"requests": {"cpu": "150m", "pods": "3"}},
            "kubelet": {"maxPods": 110},
            "nodeClassRef": {"apiVersion": "karpenter.k8s.aws/v1beta1", "kind": "EC2NodeClass", "name": pool},
        },
    }))
    .unwrap()
}

/// Its status as 0.36 wrote it: knative conditions with only type, status and time.
fn status_036(node: &Node, image: &str) -> Value {
    let at = "2026-11-30T08:00:00Z";
    let conditions: Vec<Value> = ["Launched", "Registered", "Initialized", "Ready"]
        .iter()
        .map(|t| json!({"type": t, "status": "True", "lastTransitionTime": at}))
        .collect();
    json!({
        "nodeName": node.name_any(),
        "providerID": node.spec.as_ref().and_then(|s| s.provider_id.clone()),
        "imageID": image,
        "capacity": {"cpu": "2", "memory": "7910Mi", "pods": "110", "ephemeral-storage": "20Gi"},
        "allocatable": {"cpu": "1930m", "memory": "7220Mi", "pods": "110", "ephemeral-storage": "17Gi"},
        "conditions": conditions,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_karpenter_036_install_upgrades_in_place_and_its_node_survives() {
    karpenter_e2e::install_crypto_provider();
    let _serial = serial().await;
    run("upgrade", |ctx| async move {
        let result = AssertUnwindSafe(upgrade(&ctx)).catch_unwind().await;
        // Whatever happened, the tests after this one get our CRDs back and no claim of this
        // test is left holding a finalizer.
        let claims = api(&ctx, "karpenter.sh", "v1beta1", "NodeClaim");
        let mine = ListParams::default().labels(&format!("{TEST_LABEL}={}", ctx.id));
        for c in claims
            .list(&mine)
            .await
            .map(|l| l.items)
            .unwrap_or_default()
        {
            let _ = claims
                .patch(
                    &c.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"finalizers": null}})),
                )
                .await;
            let _ = claims.delete(&c.name_any(), &DeleteParams::default()).await;
        }
        let nodes: Api<Node> = Api::all(ctx.kube.clone());
        for n in ctx.nodes().await {
            let _ = nodes
                .patch(
                    &n.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"finalizers": null}})),
                )
                .await;
        }
        install_crds(&ctx.kube).await;
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    })
    .await;
}

async fn upgrade(ctx: &Ctx) {
    let kubeconfig = ctx.env.cluster.kubeconfig.display().to_string();
    let cluster = ctx.env.aws.cluster_name.clone();
    let flags = seed_flags(&cluster, &ctx.env.cluster.server);

    // 1. Karpenter 0.36, as the seed installed it: its chart (which brings its CRDs).
    remove_crds(ctx).await;
    let _ = sh_helm_status(&format!(
        "uninstall karpenter --namespace karpenter --kubeconfig {kubeconfig}"
    ));
    let _release = Release {
        kubeconfig: kubeconfig.clone(),
    };
    sh_helm(&format!(
        "install karpenter {} --namespace karpenter --create-namespace --kubeconfig {kubeconfig} {flags} --set replicas=0",
        chart_036(ctx).display()
    ));
    let crds: Api<CustomResourceDefinition> = Api::all(ctx.kube.clone());
    let claim_crd = eventually(
        "0.36's NodeClaim CRD established",
        Duration::from_secs(60),
        || async {
            let crd = crds.get_opt("nodeclaims.karpenter.sh").await.ok()??;
            let established = crd
                .status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            established.then_some(crd)
        },
    )
    .await;
    assert_eq!(
        claim_crd
            .spec
            .versions
            .iter()
            .map(|v| v.name.as_str())
            .collect::<Vec<_>>(),
        ["v1beta1"]
    );
    for (group, _, plural) in KINDS {
        // Established one by one: wait for the other two as well.
        let name = format!("{plural}.{group}");
        eventually(
            &format!("{name} established"),
            Duration::from_secs(60),
            || async {
                let crd = crds.get_opt(&name).await.ok()??;
                crd.status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
                    .then_some(())
            },
        )
        .await;
    }

    // The seed's pool and class (v1beta1), a budget that blocks disruption for now, and 0.36's
    // pool-level expiry (converted claims take it over).
    let pool = pool_name(ctx, "k036");
    let spec = PoolSpec::staging(json!([])).with_disruption(json!({
        "consolidationPolicy": "WhenUnderutilized",
        "expireAfter": "336h",
        "budgets": [{"nodes": "0"}],
    }));
    apply_pool(ctx, &pool, &spec).await;
    let pools_v1beta1 = api(ctx, "karpenter.sh", "v1beta1", "NodePool");
    let pool_uid = pools_v1beta1
        .get(&pool)
        .await
        .expect("the pool")
        .uid()
        .unwrap();

    // A node 0.36 launched: its instance (0.36's tags and AL2 userData), its Node, its claim.
    let claim_name = format!("{pool}-x7k2p");
    let cluster_tag = format!("kubernetes.io/cluster/{cluster}");
    let tags = [
        ("Name", claim_name.as_str()),
        ("karpenter.sh/nodepool", pool.as_str()),
        ("karpenter.sh/nodeclaim", claim_name.as_str()),
        ("karpenter.k8s.aws/ec2nodeclass", pool.as_str()),
        ("karpenter.sh/managed-by", cluster.as_str()),
        (cluster_tag.as_str(), "owned"),
    ];
    let user_data = format!(
        "#!/bin/bash -xe\nexec > >(tee /var/log/user-data.log|logger -t user-data -s 2>/dev/console) 2>&1\n\
         /etc/eks/bootstrap.sh '{cluster}' --apiserver-endpoint '{}' --dns-cluster-ip '10.100.0.10' \
         --use-max-pods false --kubelet-extra-args '--node-labels=\"karpenter.sh/capacity-type=on-demand,\
         {NODEPOOL}={pool},{TEST_LABEL}={}\" --max-pods=110'\n",
        ctx.env.cluster.server, ctx.id
    );
    let _sim = ctx.start_sim(ctx.sim_config_for_tag("karpenter.sh/nodepool", &pool));
    // 0.36 launched the image the class resolved then: the current AL2 release.
    let image = ctx.release_ami(AL2_PARAMETER).await;
    let id = ctx
        .run_instances_of(&image, 1, "m5.large", &tags, Some(&user_data))
        .await
        .remove(0);
    let node = ctx.wait_ready(&id).await;
    let claims_v1beta1 = api(ctx, "karpenter.sh", "v1beta1", "NodeClaim");
    let created = claims_v1beta1
        .create(
            &PostParams::default(),
            &claim_036(ctx, &claim_name, &pool, &pool_uid),
        )
        .await
        .expect("create 0.36's NodeClaim");
    let claim_uid = created.uid().unwrap();
    claims_v1beta1
        .patch_status(
            &claim_name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status_036(&node, &image)})),
        )
        .await
        .expect("write 0.36's status");
    // What 0.36 did to the node once it registered.
    let nodes: Api<Node> = Api::all(ctx.kube.clone());
    nodes
        .patch(
            &node.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {
                "labels": {"karpenter.sh/registered": "true", "karpenter.sh/initialized": "true"},
                "finalizers": ["karpenter.sh/termination"],
                "ownerReferences": [{"apiVersion": "karpenter.sh/v1beta1", "kind": "NodeClaim", "name": claim_name, "uid": claim_uid, "blockOwnerDeletion": true}],
            }})),
        )
        .await
        .expect("label the node as 0.36 did");

    // 2. The operator's upgrade: CRDs first (server-side), then the chart, same command line.
    install_crds(&ctx.kube).await;
    let claim_crd = crds.get("nodeclaims.karpenter.sh").await.unwrap();
    let stored = claim_crd
        .status
        .and_then(|s| s.stored_versions)
        .unwrap_or_default();
    assert!(
        stored.contains(&"v1beta1".to_owned()),
        "storedVersions keeps v1beta1: {stored:?}"
    );
    sh_helm(&format!(
        "upgrade karpenter {} --namespace karpenter --kubeconfig {kubeconfig} {flags} --set replicas=0",
        chart().display()
    ));
    let deployments: Api<Deployment> = Api::namespaced(ctx.kube.clone(), "karpenter");
    let deploy = deployments.get("karpenter").await.expect("the Deployment");
    let labels = deploy.labels();
    assert_ne!(
        labels.get("helm.sh/chart").map(String::as_str),
        Some("karpenter-0.36.0"),
        "the Deployment is ours now"
    );
    let selector = deploy
        .spec
        .as_ref()
        .unwrap()
        .selector
        .match_labels
        .clone()
        .unwrap_or_default();
    assert_eq!(
        selector.len(),
        2,
        "0.36's selector, unchanged: {selector:?}"
    );
    let container = &deploy
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    assert_eq!(container.args.as_deref(), Some(&["run".to_owned()][..]));
    // 0.36's objects ours does not have are gone with the upgrade.
    for (ns, name) in [
        ("kube-system", "karpenter-dns"),
        ("kube-node-lease", "karpenter-lease"),
    ] {
        let roles: Api<Role> = Api::namespaced(ctx.kube.clone(), ns);
        assert!(
            roles.get_opt(name).await.unwrap().is_none(),
            "Role {ns}/{name} left behind"
        );
    }
    // Every object reads at both versions (no conversion webhook: the same body).
    for version in ["v1", "v1beta1"] {
        api(ctx, "karpenter.sh", version, "NodePool")
            .get(&pool)
            .await
            .unwrap_or_else(|e| panic!("pool at {version}: {e}"));
        api(ctx, "karpenter.k8s.aws", version, "EC2NodeClass")
            .get(&pool)
            .await
            .unwrap_or_else(|e| panic!("class at {version}: {e}"));
        api(ctx, "karpenter.sh", version, "NodeClaim")
            .get(&claim_name)
            .await
            .unwrap_or_else(|e| panic!("claim at {version}: {e}"));
    }

    // 3. karpenter-rs as the chart's ServiceAccount.
    let sa_kubeconfig = service_account_kubeconfig(ctx).await.display().to_string();
    let started = Instant::now();
    let controller = ControllerProcess::start(
        &ctx.env,
        "upgrade-036",
        &[
            ("KUBECONFIG", sa_kubeconfig.as_str()),
            ("SYSTEM_NAMESPACE", "karpenter"),
            ("DISABLE_LEADER_ELECTION", "false"),
            ("DISRUPTION_POLL_INTERVAL", "2s"),
            ("CONSOLIDATION_VALIDATION_WAIT", "2s"),
        ],
    );
    with_teardown(ctx, &[&pool], async {
        let claims_v1 = api(ctx, "karpenter.sh", "v1", "NodeClaim");
        let migrated = eventually_why("the claim rewritten as v1", Duration::from_secs(90), || async {
            let raw = claims_v1.get(&claim_name).await.map_err(|e| e.to_string())?;
            if raw.data["spec"]["nodeClassRef"]["group"].is_string() {
                Ok(raw)
            } else {
                Err(format!("spec still {}", raw.data["spec"]))
            }
        })
        .await;
        let migrated_after = started.elapsed();
        let typed: Api<NodeClaim> = Api::all(ctx.kube.clone());
        let claim = typed.get(&claim_name).await.expect("the migrated claim reads as v1");
        assert_eq!(claim.uid().as_deref(), Some(claim_uid.as_str()), "the same object");
        assert_eq!(claim.spec.node_class_ref.group, "karpenter.k8s.aws");
        assert_eq!(claim.spec.node_class_ref.kind, "EC2NodeClass");
        assert_eq!(claim.spec.expire_after.as_str(), "336h", "the pool's expiry");
        assert!(migrated.data["spec"].get("kubelet").is_none());
        assert!(claim.annotations().get(KUBELET_ANNOTATION).is_some_and(|k| k.contains("110")), "{:?}", claim.annotations());
        assert!(claim.finalizers().iter().any(|f| f == "karpenter.sh/termination"));
        assert_eq!(instance_id(&claim).as_deref(), Some(id.as_str()));

        // The controller owns it now: it writes to it (hash restamped, not drifted; the
        // Consolidatable condition) and keeps the node.
        let claim = eventually_why("hash restamped and Consolidatable", Duration::from_secs(90), || async {
            let c = typed.get(&claim_name).await.map_err(|e| e.to_string())?;
            let version = c.annotations().get("karpenter.sh/nodepool-hash-version").cloned();
            let consolidatable = c.status.as_ref().is_some_and(|s| s.is_true("Consolidatable"));
            if version.as_deref() == Some(NODE_POOL_HASH_VERSION) && consolidatable {
                Ok(c)
            } else {
                Err(format!("hash version {version:?}, consolidatable {consolidatable}"))
            }
        })
        .await;
        let status = claim.status.as_ref().unwrap();
        assert!(!status.is_true("Drifted"), "an upgrade must not drift every node");
        assert_eq!(instance_state(ctx, &id).await.as_deref(), Some("running"));
        assert!(nodes.get_opt(&node.name_any()).await.unwrap().is_some(), "the node survives");

        // Disruption as usual once the budget allows it: the empty node goes.
        pools_v1beta1
            .patch(&pool, &PatchParams::default(), &Patch::Merge(json!({"spec": {"disruption": {"budgets": [{"nodes": "100%"}]}}})))
            .await
            .expect("open the budget");
        let opened = Instant::now();
        eventually_why("the empty node consolidated", Duration::from_secs(120), || async {
            let claim_left = typed.get_opt(&claim_name).await.map_err(|e| e.to_string())?.is_some();
            let node_left = nodes.get_opt(&node.name_any()).await.map_err(|e| e.to_string())?.is_some();
            let state = instance_state(ctx, &id).await;
            if !claim_left && !node_left && instance_gone(state.clone()) {
                Ok(())
            } else {
                Err(format!("claim left {claim_left}, node left {node_left}, instance {state:?}"))
            }
        })
        .await;
        let log = controller.log_tail(100_000);
        let forbidden: Vec<&str> = log.lines().filter(|l| l.contains("forbidden") || l.contains(" 403")).take(5).collect();
        assert!(forbidden.is_empty(), "calls the chart's RBAC refused:\n{}", forbidden.join("\n"));
        controller.assert_no_panic();
        eprintln!(
            "upgrade from 0.36: claim migrated {:.1} s after start; node consolidated {:.1} s after the budget opened",
            migrated_after.as_secs_f64(),
            opened.elapsed().as_secs_f64()
        );
    })
    .await;
}

/// `helm <args>` through `sh -c`, for a step allowed to fail; whether it succeeded.
fn sh_helm_status(args: &str) -> bool {
    let line = format!("{} {args}", helm().display());
    std::process::Command::new("sh")
        .args(["-c", &line])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

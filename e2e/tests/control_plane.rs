//! The control plane's own controllers on simulated nodes, as the autoscaler will rely on them:
//! the disruption controller computes PodDisruptionBudget status from pods the simulated
//! kubelets run. Needs the e2e bed (`cargo xtask e2e`); fails loudly without it.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use karpenter_e2e::harness::*;
use kube_client::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use kube_client::{Api, discovery};
use serde_json::json;

/// PodDisruptionBudget in the newest version the server serves: `policy/v1` from Kubernetes
/// 1.21, `policy/v1beta1` before (the local bed runs 1.20).
async fn pdb_resource(kube: &kube_client::Client) -> ApiResource {
    for version in ["v1", "v1beta1"] {
        let gvk = GroupVersionKind::gvk("policy", version, "PodDisruptionBudget");
        if let Ok((resource, _)) = discovery::pinned_kind(kube, &gvk).await {
            return resource;
        }
    }
    panic!("the API server serves no PodDisruptionBudget version");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pdb_status_counts_pods_running_on_simulated_nodes() {
    run("pdb", |ctx| async move {
        let sim = ctx.start_sim(ctx.sim_config());
        let ids = ctx.launch(1, "m5.large").await;
        ctx.wait_ready(&ids[0]).await;

        let ns: Namespace =
            serde_json::from_value(json!({ "metadata": { "name": ctx.id } })).expect("namespace");
        Api::<Namespace>::all(ctx.kube.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        let deploy: Deployment = serde_json::from_value(json!({
            "metadata": { "name": "web", "namespace": ctx.id },
            "spec": {
                "replicas": 3,
                "selector": { "matchLabels": { "app": "web" } },
                "template": {
                    "metadata": { "labels": { "app": "web" } },
                    "spec": {
                        "nodeSelector": { TEST_LABEL: ctx.id },
                        "containers": [{
                            "name": "app", "image": "registry.k8s.io/pause:3.2",
                            "resources": { "requests": { "cpu": "100m", "memory": "64Mi" } },
                        }],
                    },
                },
            },
        }))
        .expect("deployment");
        Api::<Deployment>::namespaced(ctx.kube.clone(), &ctx.id)
            .create(&PostParams::default(), &deploy)
            .await
            .expect("create deployment");

        let resource = pdb_resource(&ctx.kube).await;
        let mut pdb = DynamicObject::new("web", &resource).within(&ctx.id);
        pdb.data = json!({ "spec": {
            "minAvailable": 2,
            "selector": { "matchLabels": { "app": "web" } },
        }});
        let pdbs: Api<DynamicObject> = Api::namespaced_with(ctx.kube.clone(), &ctx.id, &resource);
        pdbs.create(&PostParams::default(), &pdb)
            .await
            .expect("create PodDisruptionBudget");

        // The pods run on the simulated node, and the disruption controller sees them.
        let pods: Api<Pod> = Api::namespaced(ctx.kube.clone(), &ctx.id);
        eventually("3 web pods running and ready", DEADLINE, || async {
            let list = pods
                .list(&ListParams::default().labels("app=web"))
                .await
                .ok()?;
            (list.items.iter().filter(|p| pod_running_ready(p)).count() == 3).then_some(())
        })
        .await;
        let status = eventually("PDB status with 3 healthy pods", DEADLINE, || async {
            let got = pdbs.get("web").await.ok()?;
            let status = got.data.get("status")?.clone();
            (status["currentHealthy"] == 3).then_some(status)
        })
        .await;
        assert_eq!(status["expectedPods"], 3, "{status}");
        assert_eq!(status["desiredHealthy"], 2, "{status}");
        assert_eq!(status["disruptionsAllowed"], 1, "{status}");

        // The node going away takes its pods with it (the pod GC deletes pods of a missing node,
        // after its 40 s quarantine): the budget then allows no disruption.
        ctx.terminate(&ids).await;
        ctx.wait_node_gone(&ids[0]).await;
        let status = eventually(
            "PDB status with no healthy pods",
            std::time::Duration::from_secs(150),
            || async {
                let got = pdbs.get("web").await.ok()?;
                let status = got.data.get("status")?.clone();
                (status["currentHealthy"] == 0).then_some(status)
            },
        )
        .await;
        assert_eq!(status["disruptionsAllowed"], 0, "{status}");
        sim.shutdown().await.expect("simulator shuts down");
    })
    .await;
}

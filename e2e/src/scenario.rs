//! Building blocks of the controller scenarios (`e2e/tests/provisioning.rs` and friends): the
//! seed's staging NodePool/EC2NodeClass, Deployments, NodeClaim queries and teardown.

use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use karpenter_core::api::NodeClaim;
use kube_client::ResourceExt;
use kube_client::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube_client::core::{ApiResource, GroupVersionKind};
use serde_json::json;
use tokio::sync::{Mutex, MutexGuard};

use crate::harness::{Ctx, TEST_LABEL, eventually, pod_running_ready};

/// One controller at a time.
pub async fn serial() -> MutexGuard<'static, ()> {
    static LOCK: OnceLock<Mutex<()>> = OnceLock::new();
    LOCK.get_or_init(|| Mutex::new(())).lock().await
}

/// An API resource by group, version and kind.
pub fn resource(group: &str, version: &str, kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
}

/// The seed deployment's staging NodePool and EC2NodeClass, as v1beta1 (Karpenter 0.36)
/// manifests: t/m/r/c, maxPods 110 on the pool, AL2 with prefix delegation in userData,
/// subnets and security groups discovered by tag.
pub async fn apply_staging(ctx: &Ctx, name: &str, extra_requirements: serde_json::Value) {
    apply_staging_with(ctx, name, extra_requirements, serde_json::Value::Null).await
}

/// [`apply_staging`] with `spec.limits` on the pool (`Null` for none).
pub async fn apply_staging_with(
    ctx: &Ctx,
    name: &str,
    extra_requirements: serde_json::Value,
    limits: serde_json::Value,
) {
    let classes: Api<DynamicObject> = Api::all_with(
        ctx.kube.clone(),
        &resource("karpenter.k8s.aws", "v1beta1", "EC2NodeClass"),
    );
    let class: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "karpenter.k8s.aws/v1beta1",
        "kind": "EC2NodeClass",
        "metadata": {"name": name},
        "spec": {
            "amiFamily": "AL2",
            "role": format!("KarpenterNodeRole-{}", ctx.env.aws.cluster_name),
            "subnetSelectorTerms": [{"tags": {"karpenter.sh/discovery": ctx.env.aws.cluster_name}}],
            "securityGroupSelectorTerms": [{"tags": {"karpenter.sh/discovery": ctx.env.aws.cluster_name}}],
            "userData": "#!/bin/bash\nexport ENABLE_PREFIX_DELEGATION=true\nexport WARM_PREFIX_TARGET=1\n",
        },
    }))
    .unwrap();
    classes
        .create(&PostParams::default(), &class)
        .await
        .expect("create EC2NodeClass");
    let pools: Api<DynamicObject> = Api::all_with(
        ctx.kube.clone(),
        &resource("karpenter.sh", "v1beta1", "NodePool"),
    );
    let mut requirements = vec![
        json!({"key": "karpenter.k8s.aws/instance-category", "operator": "In", "values": ["t", "m", "r", "c"]}),
        json!({"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]}),
        json!({"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}),
    ];
    if let Some(extra) = extra_requirements.as_array() {
        requirements.extend(extra.iter().cloned());
    }
    let pool: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "karpenter.sh/v1beta1",
        "kind": "NodePool",
        "metadata": {"name": name},
        "spec": {
            "template": {
                "metadata": {"labels": {TEST_LABEL: ctx.id}},
                "spec": {
                    "nodeClassRef": {"apiVersion": "karpenter.k8s.aws/v1beta1", "kind": "EC2NodeClass", "name": name},
                    "requirements": requirements,
                    "kubelet": {"maxPods": 110},
                },
            },
            "disruption": {"consolidationPolicy": "WhenUnderutilized", "expireAfter": "720h"},
        },
    }))
    .unwrap();
    let mut pool = pool;
    if !limits.is_null() {
        pool.data["spec"]["limits"] = limits;
    }
    pools
        .create(&PostParams::default(), &pool)
        .await
        .expect("create NodePool");
}

/// A pool name unique to this test run (`<prefix>-<last 5 of the test id>`).
pub fn pool_name(ctx: &Ctx, prefix: &str) -> String {
    format!("{prefix}-{}", &ctx.id[ctx.id.len() - 5..])
}

/// A Deployment of pause pods in the test's namespace (created if needed), selecting the
/// test's nodes through [`TEST_LABEL`].
pub async fn create_deployment(ctx: &Ctx, name: &str, replicas: i32, cpu: &str, memory: &str) {
    let namespaces: Api<Namespace> = Api::all(ctx.kube.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": ctx.id}})).unwrap();
    let _ = namespaces.create(&PostParams::default(), &ns).await;
    let deployments: Api<Deployment> = Api::namespaced(ctx.kube.clone(), &ctx.id);
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "nodeSelector": {TEST_LABEL: ctx.id},
                    "containers": [{
                        "name": "app", "image": "registry.k8s.io/pause:3.2",
                        "resources": {"requests": {"cpu": cpu, "memory": memory}},
                    }],
                },
            },
        },
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &d)
        .await
        .expect("create Deployment");
}

/// The test namespace's pods that are Running and Ready.
pub async fn running_pods(ctx: &Ctx) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(ctx.kube.clone(), &ctx.id);
    pods.list(&ListParams::default())
        .await
        .map(|l| l.items.into_iter().filter(pod_running_ready).collect())
        .unwrap_or_default()
}

/// The NodeClaims of `pool`.
pub async fn claims_of(ctx: &Ctx, pool: &str) -> Vec<NodeClaim> {
    let api: Api<NodeClaim> = Api::all(ctx.kube.clone());
    api.list(&ListParams::default().labels(&format!("karpenter.sh/nodepool={pool}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

/// Deletes the pool (its claims go with it through owner references and the controller's
/// finalizer terminates their instances) and the class, and waits for the instances to go.
pub async fn teardown(ctx: &Ctx, pool: &str) {
    let pools: Api<DynamicObject> = Api::all_with(
        ctx.kube.clone(),
        &resource("karpenter.sh", "v1", "NodePool"),
    );
    let _ = pools.delete(pool, &DeleteParams::default()).await;
    let claims: Api<NodeClaim> = Api::all(ctx.kube.clone());
    for c in claims_of(ctx, pool).await {
        let _ = claims.delete(&c.name_any(), &DeleteParams::default()).await;
    }
    eventually("nodeclaims gone", Duration::from_secs(120), || async {
        claims_of(ctx, pool).await.is_empty().then_some(())
    })
    .await;
    let classes: Api<DynamicObject> = Api::all_with(
        ctx.kube.clone(),
        &resource("karpenter.k8s.aws", "v1", "EC2NodeClass"),
    );
    let _ = classes.delete(pool, &DeleteParams::default()).await;
}

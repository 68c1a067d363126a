//! Building blocks of the controller scenarios (`e2e/tests/provisioning.rs`, `scheduling.rs`,
//! …): NodePools and EC2NodeClasses (the seed's staging pool or a bare one), Deployments,
//! teardown that also runs when an assertion fails, and read-only queries in [`inspect`].

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::OnceLock;
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use karpenter_core::api::NodeClaim;
use kube_client::ResourceExt;
use kube_client::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube_client::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use tokio::sync::{Mutex, MutexGuard};

use crate::harness::{Ctx, TEST_LABEL, eventually};

pub mod drain;
pub mod inspect;
pub mod queue;
pub use drain::*;
pub use inspect::*;

/// `node.kubernetes.io/instance-type`.
pub const INSTANCE_TYPE: &str = "node.kubernetes.io/instance-type";
/// `karpenter.sh/nodepool`.
pub const NODEPOOL: &str = "karpenter.sh/nodepool";

/// One controller at a time: a controller acts on every pending pod in the cluster.
pub async fn serial() -> MutexGuard<'static, ()> {
    static LOCK: OnceLock<Mutex<()>> = OnceLock::new();
    LOCK.get_or_init(|| Mutex::new(())).lock().await
}

/// An API resource by group, version and kind.
pub fn resource(group: &str, version: &str, kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
}

/// What [`apply_pool`] creates: a v1beta1 NodePool and its EC2NodeClass (the versions the
/// seed deployment writes), both named like the pool.
#[derive(Clone, Debug)]
pub struct PoolSpec {
    /// `spec.amiFamily` of the class.
    pub ami_family: &'static str,
    /// The pool's requirements, exactly.
    pub requirements: Value,
    /// `spec.template.spec.kubelet.maxPods` (v1beta1 keeps kubelet on the pool).
    pub max_pods: Option<u32>,
    /// `spec.limits` (`Null` for none).
    pub limits: Value,
    /// The class's `userData`.
    pub user_data: Option<&'static str>,
    /// `spec.template.spec.terminationGracePeriod` (v1beta1 has it since Karpenter 0.37).
    pub termination_grace_period: Option<&'static str>,
    /// `spec.disruption` (default: the seed's `WhenUnderutilized`, `expireAfter: 720h`).
    pub disruption: Option<Value>,
}

impl PoolSpec {
    /// The seed deployment's staging pool: t/m/r/c, on-demand, amd64, maxPods 110, AL2 with
    /// prefix delegation in userData; `extra_requirements` (a JSON array) appended.
    pub fn staging(extra_requirements: Value) -> PoolSpec {
        let mut requirements = vec![
            json!({"key": "karpenter.k8s.aws/instance-category", "operator": "In", "values": ["t", "m", "r", "c"]}),
            json!({"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]}),
            json!({"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}),
        ];
        if let Some(extra) = extra_requirements.as_array() {
            requirements.extend(extra.iter().cloned());
        }
        PoolSpec {
            ami_family: "AL2",
            requirements: Value::Array(requirements),
            max_pods: Some(110),
            limits: Value::Null,
            user_data: Some(
                "#!/bin/bash\nexport ENABLE_PREFIX_DELEGATION=true\nexport WARM_PREFIX_TARGET=1\n",
            ),
            termination_grace_period: None,
            disruption: None,
        }
    }

    /// An AL2 pool with exactly `requirements`, no maxPods, no userData.
    pub fn bare(requirements: Value) -> PoolSpec {
        PoolSpec {
            ami_family: "AL2",
            requirements,
            max_pods: None,
            limits: Value::Null,
            user_data: None,
            termination_grace_period: None,
            disruption: None,
        }
    }

    /// The same pool with `spec.disruption` (v1beta1 fields: `consolidationPolicy`,
    /// `consolidateAfter`, `expireAfter`, `budgets`).
    pub fn with_disruption(mut self, disruption: Value) -> PoolSpec {
        self.disruption = Some(disruption);
        self
    }

    /// The same pool with a `terminationGracePeriod` on its template.
    pub fn with_termination_grace_period(mut self, period: &'static str) -> PoolSpec {
        self.termination_grace_period = Some(period);
        self
    }

    /// The same pool with `spec.limits`.
    pub fn with_limits(mut self, limits: Value) -> PoolSpec {
        self.limits = limits;
        self
    }
}

/// Creates the EC2NodeClass and NodePool of `spec` under `name`. The class discovers the bed's
/// subnets and security groups by `karpenter.sh/discovery` tag; the pool labels its nodes with
/// the test's [`TEST_LABEL`].
pub async fn apply_pool(ctx: &Ctx, name: &str, spec: &PoolSpec) {
    let classes: Api<DynamicObject> = Api::all_with(
        ctx.kube.clone(),
        &resource("karpenter.k8s.aws", "v1beta1", "EC2NodeClass"),
    );
    let cluster = &ctx.env.aws.cluster_name;
    let mut class: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "karpenter.k8s.aws/v1beta1",
        "kind": "EC2NodeClass",
        "metadata": {"name": name},
        "spec": {
            "amiFamily": spec.ami_family,
            "role": format!("KarpenterNodeRole-{cluster}"),
            "subnetSelectorTerms": [{"tags": {"karpenter.sh/discovery": cluster}}],
            "securityGroupSelectorTerms": [{"tags": {"karpenter.sh/discovery": cluster}}],
        },
    }))
    .expect("EC2NodeClass object");
    if let Some(user_data) = spec.user_data {
        class.data["spec"]["userData"] = json!(user_data);
    }
    classes
        .create(&PostParams::default(), &class)
        .await
        .expect("create EC2NodeClass");
    let pools: Api<DynamicObject> = Api::all_with(
        ctx.kube.clone(),
        &resource("karpenter.sh", "v1beta1", "NodePool"),
    );
    let mut pool: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "karpenter.sh/v1beta1",
        "kind": "NodePool",
        "metadata": {"name": name},
        "spec": {
            "template": {
                "metadata": {"labels": {TEST_LABEL: ctx.id}},
                "spec": {
                    "nodeClassRef": {"apiVersion": "karpenter.k8s.aws/v1beta1", "kind": "EC2NodeClass", "name": name},
                    "requirements": spec.requirements,
                },
            },
            "disruption": {"consolidationPolicy": "WhenUnderutilized", "expireAfter": "720h"},
        },
    }))
    .expect("NodePool object");
    if let Some(max_pods) = spec.max_pods {
        pool.data["spec"]["template"]["spec"]["kubelet"] = json!({"maxPods": max_pods});
    }
    if let Some(period) = spec.termination_grace_period {
        pool.data["spec"]["template"]["spec"]["terminationGracePeriod"] = json!(period);
    }
    if !spec.limits.is_null() {
        pool.data["spec"]["limits"] = spec.limits.clone();
    }
    if let Some(d) = &spec.disruption {
        pool.data["spec"]["disruption"] = d.clone();
    }
    pools
        .create(&PostParams::default(), &pool)
        .await
        .expect("create NodePool");
}

/// The seed deployment's staging NodePool and EC2NodeClass ([`PoolSpec::staging`]).
pub async fn apply_staging(ctx: &Ctx, name: &str, extra_requirements: Value) {
    apply_pool(ctx, name, &PoolSpec::staging(extra_requirements)).await
}

/// A pool name unique to this test run (`<prefix>-<last 5 of the test id>`).
pub fn pool_name(ctx: &Ctx, prefix: &str) -> String {
    format!("{prefix}-{}", &ctx.id[ctx.id.len() - 5..])
}

/// A Deployment `name` of pause pods (label `app=<name>`) in the test's namespace (created if
/// needed), selecting the test's nodes through [`TEST_LABEL`] and, given `pool`, that pool's
/// nodes; `customize` edits the pod spec (JSON) before it is sent.
pub async fn deploy(
    ctx: &Ctx,
    name: &str,
    pool: Option<&str>,
    replicas: i32,
    requests: Value,
    customize: impl FnOnce(&mut Value),
) {
    let namespaces: Api<Namespace> = Api::all(ctx.kube.clone());
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": ctx.id}})).expect("namespace");
    // Already exists for the second Deployment of a test.
    let _ = namespaces.create(&PostParams::default(), &ns).await;
    let mut spec = json!({
        "nodeSelector": {TEST_LABEL: ctx.id},
        "containers": [{
            "name": "app", "image": "registry.k8s.io/pause:3.2",
            "resources": {"requests": requests},
        }],
    });
    if let Some(pool) = pool {
        spec["nodeSelector"][NODEPOOL] = json!(pool);
    }
    customize(&mut spec);
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": spec},
        },
    }))
    .expect("Deployment object");
    let api: Api<Deployment> = Api::namespaced(ctx.kube.clone(), &ctx.id);
    api.create(&PostParams::default(), &d)
        .await
        .expect("create Deployment");
}

/// Sets the replicas of the test's Deployment `name`.
pub async fn scale(ctx: &Ctx, name: &str, replicas: i32) {
    let api: Api<Deployment> = Api::namespaced(ctx.kube.clone(), &ctx.id);
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": replicas}})),
    )
    .await
    .expect("scale the Deployment");
}

/// [`deploy`] with cpu/memory requests, on any of the test's nodes.
pub async fn create_deployment(ctx: &Ctx, name: &str, replicas: i32, cpu: &str, memory: &str) {
    let requests = json!({"cpu": cpu, "memory": memory});
    deploy(ctx, name, None, replicas, requests, |_| {}).await
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

/// Runs `body`, then deletes the test's Deployments and tears every pool down whether `body`
/// passed or panicked, then re-raises: no instance or NodeClaim outlives its test.
pub async fn with_teardown<F: Future<Output = ()>>(ctx: &Ctx, pools: &[&str], body: F) {
    let result = AssertUnwindSafe(body).catch_unwind().await;
    // Deployments first: draining nodes whose pods come straight back only slows teardown.
    let deployments: Api<Deployment> = Api::namespaced(ctx.kube.clone(), &ctx.id);
    if let Ok(list) = deployments.list(&ListParams::default()).await {
        for d in list.items {
            let _ = deployments
                .delete(&d.name_any(), &DeleteParams::default())
                .await;
        }
    }
    for pool in pools {
        teardown(ctx, pool).await;
    }
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

//! `karpenter simulate --from-cluster`: reads a live cluster, read-only, into the same
//! manifests the file mode reads, so both modes print the same plan for the same objects (and
//! `kubectl get -o yaml` of those objects reproduces a run offline).
//!
//! Read: Nodes, Pods (finished ones left out), DaemonSets, PodDisruptionBudgets (`policy/v1`,
//! or `policy/v1beta1` on servers older than 1.21), NodePools, EC2NodeClasses and NodeClaims
//! (`v1`, or `v1beta1` where only Karpenter 0.3x's CRDs are installed). Workload controllers
//! (Deployments, Jobs, …) are not read: their pods already exist. Only `list` is called.

use std::path::Path;

use kube_client::api::{Api, ApiResource, DynamicObject, ListParams};
use kube_client::config::{KubeConfigOptions, Kubeconfig};
use kube_client::core::GroupVersionKind;
use kube_client::{Client, Config};
use serde_json::Value;

use super::{SimulateError, Source};
use crate::model::{disruption_budget_resource, objects};

/// Objects per list call; larger clusters are read page by page.
const PAGE_SIZE: u32 = 500;

/// Where to find the cluster.
#[derive(Clone, Debug, Default)]
pub struct ClusterAccess<'a> {
    /// A kubeconfig file; default `$KUBECONFIG` or `~/.kube/config` (in a pod: its service
    /// account).
    pub kubeconfig: Option<&'a Path>,
    /// A kubeconfig context; default the current one.
    pub context: Option<&'a str>,
}

/// The cluster's objects as sources (one per kind), and where they came from.
#[derive(Clone, Debug)]
pub struct ClusterRead {
    /// One source per kind read, origin `cluster <server>: <Kind>s`.
    pub sources: Vec<Source>,
    /// The API server's URL.
    pub server: String,
}

fn cluster_error(what: &str, e: impl std::fmt::Display) -> SimulateError {
    SimulateError::Cluster(format!("{what}: {e}"))
}

/// Connects with the kubeconfig (or in-cluster config when neither option is given).
pub async fn connect(access: &ClusterAccess<'_>) -> Result<(Client, String), SimulateError> {
    // kube links rustls with ring, the AWS SDK with aws-lc-rs: one must be chosen explicitly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let options = KubeConfigOptions {
        context: access.context.map(str::to_owned),
        ..KubeConfigOptions::default()
    };
    let config = match (access.kubeconfig, access.context) {
        (Some(path), _) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .map_err(|e| cluster_error(&format!("--kubeconfig {}", path.display()), e))?;
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| cluster_error(&format!("--kubeconfig {}", path.display()), e))?
        }
        (None, Some(context)) => Config::from_kubeconfig(&options)
            .await
            .map_err(|e| cluster_error(&format!("--context {context}"), e))?,
        (None, None) => Config::infer()
            .await
            .map_err(|e| cluster_error("no kubeconfig or in-cluster config", e))?,
    };
    let server = config.cluster_url.to_string();
    let client = Client::try_from(config).map_err(|e| cluster_error("kube client", e))?;
    Ok((client, server))
}

/// Every object of `resource`, page by page.
async fn list_all(
    client: &Client,
    resource: &ApiResource,
) -> Result<Vec<DynamicObject>, kube_client::Error> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), resource);
    let mut params = ListParams::default().limit(PAGE_SIZE);
    let mut out = Vec::new();
    loop {
        let page = api.list(&params).await?;
        out.extend(page.items);
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(out),
        }
    }
}

fn is_not_found(e: &kube_client::Error) -> bool {
    matches!(e, kube_client::Error::Api(s) if s.code == 404)
}

/// A Karpenter kind from the first of `versions` the server serves; `None` when it serves
/// none (the CRD is not installed).
async fn list_karpenter_kind(
    client: &Client,
    group: &str,
    versions: &[&str],
    kind: &str,
) -> Result<Option<(ApiResource, Vec<DynamicObject>)>, SimulateError> {
    for version in versions {
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
        match list_all(client, &resource).await {
            Ok(items) => return Ok(Some((resource, items))),
            Err(e) if is_not_found(&e) => continue,
            Err(e) => return Err(cluster_error(&format!("listing {kind}s ({group})"), e)),
        }
    }
    Ok(None)
}

/// One object as a manifest document: `apiVersion` and `kind` set (list items lack them; a
/// Karpenter body is labelled with the version it is written in, see [`body_version`]),
/// `managedFields` dropped (noise for the reader of an error).
fn document(obj: &DynamicObject, served: &str, kind: &str) -> Result<String, SimulateError> {
    let mut value =
        serde_json::to_value(obj).map_err(|e| cluster_error(&format!("encoding a {kind}"), e))?;
    value["apiVersion"] = Value::from(body_version(kind, served, &value));
    value["kind"] = Value::from(kind);
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    Ok(value.to_string())
}

/// All objects of one kind as one source.
fn source(
    server: &str,
    kind: &str,
    served: &str,
    objects: &[DynamicObject],
) -> Result<Source, SimulateError> {
    let docs = objects
        .iter()
        .map(|o| document(o, served, kind))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Source {
        origin: format!("cluster {server}: {kind}s"),
        text: docs.join("\n---\n"),
    })
}

/// The version a Karpenter object's body is written in. Without a conversion webhook the API
/// server serves a v1beta1 body (applied by a Karpenter 0.3x user) under v1 unchanged; the
/// controller reads such bodies as v1beta1, and so does this.
fn body_version(kind: &str, served: &str, body: &Value) -> String {
    let v1beta1 = match kind {
        "NodePool" => objects::is_v1beta1_node_pool(body),
        "EC2NodeClass" => objects::is_v1beta1_node_class(body),
        _ => false,
    };
    match served.split_once('/') {
        Some((group, "v1")) if v1beta1 => format!("{group}/v1beta1"),
        _ => served.to_owned(),
    }
}

fn is_finished_pod(obj: &DynamicObject) -> bool {
    matches!(
        obj.data.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    )
}

/// Reads the cluster. A Karpenter CRD that is not installed reads as no objects; any other
/// API error stops the run.
pub async fn read(client: &Client, server: &str) -> Result<ClusterRead, SimulateError> {
    let mut sources = Vec::new();
    let builtin = [
        ("", "v1", "Node"),
        ("", "v1", "Pod"),
        ("apps", "v1", "DaemonSet"),
    ];
    for (group, version, kind) in builtin {
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
        let mut items = list_all(client, &resource)
            .await
            .map_err(|e| cluster_error(&format!("listing {kind}s"), e))?;
        if kind == "Pod" {
            items.retain(|p| !is_finished_pod(p));
        }
        sources.push(source(server, kind, &resource.api_version, &items)?);
    }

    // Both PDB versions have the fields read here in the same shape; the parser reads v1.
    let pdbs = disruption_budget_resource(client).await;
    let items = list_all(client, &pdbs)
        .await
        .map_err(|e| cluster_error("listing PodDisruptionBudgets", e))?;
    sources.push(source(server, "PodDisruptionBudget", "policy/v1", &items)?);

    // NodePools and EC2NodeClasses parse in either version (v1beta1 is converted as Karpenter
    // does). A v1beta1 NodeClaim has the fields disruption reads (labels, annotations, status
    // nodeName/providerID/conditions) in the v1 shape, so it is read as v1.
    for (group, kind) in [
        ("karpenter.sh", "NodePool"),
        ("karpenter.k8s.aws", "EC2NodeClass"),
        ("karpenter.sh", "NodeClaim"),
    ] {
        if let Some((resource, items)) =
            list_karpenter_kind(client, group, &["v1", "v1beta1"], kind).await?
        {
            let served = if kind == "NodeClaim" {
                "karpenter.sh/v1"
            } else {
                resource.api_version.as_str()
            };
            sources.push(source(server, kind, served, &items)?);
        }
    }
    sources.retain(|s| !s.text.is_empty());
    Ok(ClusterRead {
        sources,
        server: server.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_carry_their_type_and_drop_managed_fields() {
        let obj: DynamicObject = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n1", "managedFields": [{"manager": "kubelet"}]},
            "spec": {"providerID": "aws:///us-east-1a/i-1"}
        }))
        .unwrap();
        let doc: Value = serde_json::from_str(&document(&obj, "v1", "Node").unwrap()).unwrap();
        assert_eq!(doc["apiVersion"], "v1");
        assert_eq!(doc["kind"], "Node");
        assert_eq!(doc["metadata"]["name"], "n1");
        assert!(doc["metadata"].get("managedFields").is_none());
        assert_eq!(doc["spec"]["providerID"], "aws:///us-east-1a/i-1");
    }

    #[test]
    fn v1beta1_bodies_served_as_v1_are_labelled_v1beta1() {
        let seed_pool = serde_json::json!({"spec": {
            "disruption": {"consolidationPolicy": "WhenUnderutilized", "expireAfter": "720h"},
            "template": {"spec": {"nodeClassRef": {"name": "default"}}}
        }});
        assert_eq!(
            body_version("NodePool", "karpenter.sh/v1", &seed_pool),
            "karpenter.sh/v1beta1"
        );
        let v1_pool = serde_json::json!({"spec": {
            "disruption": {"consolidationPolicy": "WhenEmptyOrUnderutilized"},
            "template": {"spec": {"nodeClassRef":
                {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"}}}
        }});
        assert_eq!(
            body_version("NodePool", "karpenter.sh/v1", &v1_pool),
            "karpenter.sh/v1"
        );
        let old_class = serde_json::json!({"spec": {"amiFamily": "AL2"}});
        assert_eq!(
            body_version("EC2NodeClass", "karpenter.k8s.aws/v1", &old_class),
            "karpenter.k8s.aws/v1beta1"
        );
        assert_eq!(
            body_version("NodePool", "karpenter.sh/v1beta1", &v1_pool),
            "karpenter.sh/v1beta1",
            "a server serving only v1beta1 is believed"
        );
    }

    #[test]
    fn finished_pods_are_recognised() {
        let pod = |phase: &str| -> DynamicObject {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "p"}, "status": {"phase": phase}
            }))
            .unwrap()
        };
        assert!(is_finished_pod(&pod("Succeeded")));
        assert!(is_finished_pod(&pod("Failed")));
        assert!(!is_finished_pod(&pod("Running")));
        assert!(!is_finished_pod(&pod("Pending")));
    }
}

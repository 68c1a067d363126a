//! Multi-document YAML manifests → typed objects ([`parse_manifests`]) → a scheduler snapshot
//! ([`build_snapshot`](super::build_snapshot)).

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde::Deserialize;

use super::IngestError;
use crate::api;

/// One object read from a manifest file. Big objects are boxed so the list stays compact.
#[derive(Clone, Debug, PartialEq)]
pub enum Manifest {
    /// `karpenter.sh/v1` NodePool.
    NodePoolV1(Box<api::NodePool>),
    /// `karpenter.sh/v1beta1` NodePool (converted by `build_snapshot`).
    NodePoolV1beta1(Box<api::v1beta1::NodePool>),
    /// `karpenter.sh/v1` NodeClaim (read by disruption planning).
    NodeClaim(Box<api::NodeClaim>),
    /// `karpenter.k8s.aws/*` EC2NodeClass, left untyped for the providers crate.
    EC2NodeClass(serde_json::Value),
    /// `v1` Pod.
    Pod(Box<Pod>),
    /// `apps/v1` Deployment.
    Deployment(Box<Deployment>),
    /// `apps/v1` StatefulSet.
    StatefulSet(Box<StatefulSet>),
    /// `apps/v1` ReplicaSet.
    ReplicaSet(Box<ReplicaSet>),
    /// `batch/v1` Job.
    Job(Box<Job>),
    /// `apps/v1` DaemonSet.
    DaemonSet(Box<DaemonSet>),
    /// `v1` Node.
    Node(Box<Node>),
    /// `v1` Namespace.
    Namespace(Box<Namespace>),
    /// `policy/v1` PodDisruptionBudget.
    PodDisruptionBudget(Box<PodDisruptionBudget>),
    /// Anything else (Services, ConfigMaps, …): kept by name so callers can say
    /// what they skipped.
    Other {
        /// `apiVersion` as written.
        api_version: String,
        /// `kind` as written.
        kind: String,
        /// `metadata.name`, empty if absent.
        name: String,
    },
}

impl Manifest {
    /// `Kind/name` (`Deployment/web`), for reports.
    pub fn kind_name(&self) -> String {
        let (kind, name) = match self {
            Manifest::NodePoolV1(o) => ("NodePool", o.metadata.name.as_deref()),
            Manifest::NodePoolV1beta1(o) => ("NodePool", o.metadata.name.as_deref()),
            Manifest::NodeClaim(o) => ("NodeClaim", o.metadata.name.as_deref()),
            Manifest::EC2NodeClass(v) => ("EC2NodeClass", v["metadata"]["name"].as_str()),
            Manifest::Pod(o) => ("Pod", o.metadata.name.as_deref()),
            Manifest::Deployment(o) => ("Deployment", o.metadata.name.as_deref()),
            Manifest::StatefulSet(o) => ("StatefulSet", o.metadata.name.as_deref()),
            Manifest::ReplicaSet(o) => ("ReplicaSet", o.metadata.name.as_deref()),
            Manifest::Job(o) => ("Job", o.metadata.name.as_deref()),
            Manifest::DaemonSet(o) => ("DaemonSet", o.metadata.name.as_deref()),
            Manifest::Node(o) => ("Node", o.metadata.name.as_deref()),
            Manifest::Namespace(o) => ("Namespace", o.metadata.name.as_deref()),
            Manifest::PodDisruptionBudget(o) => ("PodDisruptionBudget", o.metadata.name.as_deref()),
            Manifest::Other { kind, name, .. } => return format!("{kind}/{name}"),
        };
        format!("{kind}/{}", name.unwrap_or(""))
    }
}

/// `apiVersion`, `kind` and `metadata.name` of a document, read before typing it.
#[derive(Default)]
struct Header {
    api_version: String,
    kind: String,
    name: String,
}

impl Header {
    fn of(value: &serde_yaml::Value) -> Header {
        let s = |v: Option<&serde_yaml::Value>| {
            v.and_then(|v| v.as_str()).unwrap_or_default().to_string()
        };
        Header {
            api_version: s(value.get("apiVersion")),
            kind: s(value.get("kind")),
            name: s(value.get("metadata").and_then(|m| m.get("name"))),
        }
    }

    fn describe(&self) -> String {
        match (self.kind.is_empty(), self.name.is_empty()) {
            (true, _) => String::new(),
            (false, true) => format!(" ({})", self.kind),
            (false, false) => format!(" ({}/{})", self.kind, self.name),
        }
    }
}

/// Reads every object from a multi-document YAML text.
///
/// Empty documents are skipped, `kind: List` documents are flattened into their `items`, and
/// each object is typed by `apiVersion`/`kind` (unknown ones become [`Manifest::Other`]).
/// The first problem stops the parse; its [`IngestError::object`] names `origin` (the file
/// path), the 1-based document number and, when known, the item's `Kind/name`, and the
/// message is serde's, with the path inside the document and the line and column in the file.
pub fn parse_manifests(text: &str, origin: &str) -> Result<Vec<Manifest>, IngestError> {
    // Pass 1 reads each document untyped to learn its kind; pass 2 deserializes it straight
    // from the text into its type, so errors keep their line and column.
    let mut headers = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = serde_yaml::Value::deserialize(doc).map_err(|e| {
            IngestError::new(format!("{origin}: document {}", i + 1), "", e.to_string())
        })?;
        headers.push(value);
    }
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let Some(value) = headers.get(i) else {
            break;
        };
        let at = format!("{origin}: document {}", i + 1);
        if value.is_null() {
            continue;
        }
        if !value.is_mapping() {
            return Err(IngestError::new(
                at,
                "",
                "expected a Kubernetes object (a mapping)",
            ));
        }
        let header = Header::of(value);
        // `kubectl get -o yaml` writes `kind: List`; typed lists (`PodList`) read the same way.
        if header.kind == "List" || (header.kind.ends_with("List") && value.get("items").is_some())
        {
            let items = value.get("items").and_then(|v| v.as_sequence());
            for (j, item) in items.into_iter().flatten().enumerate() {
                let h = Header::of(item);
                let at = format!("{at}, items[{j}]{}", h.describe());
                if item.is_null() {
                    continue;
                }
                out.push(
                    decode(&h, item.clone())
                        .map_err(|e| IngestError::new(at, "", e.to_string()))?,
                );
            }
            continue;
        }
        let at = format!("{at}{}", header.describe());
        if header.kind.is_empty() || header.api_version.is_empty() {
            return Err(IngestError::new(at, "", "apiVersion and kind are required"));
        }
        out.push(decode(&header, doc).map_err(|e| IngestError::new(at, "", e.to_string()))?);
    }
    Ok(out)
}

/// Types one object by its header.
fn decode<'de, D>(h: &Header, de: D) -> Result<Manifest, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let group = h.api_version.split_once('/').map_or("", |(g, _)| g);
    Ok(match (h.api_version.as_str(), h.kind.as_str()) {
        ("karpenter.sh/v1", "NodePool") => {
            Manifest::NodePoolV1(Box::new(Deserialize::deserialize(de)?))
        }
        ("karpenter.sh/v1beta1", "NodePool") => {
            Manifest::NodePoolV1beta1(Box::new(Deserialize::deserialize(de)?))
        }
        ("karpenter.sh/v1", "NodeClaim") => {
            Manifest::NodeClaim(Box::new(Deserialize::deserialize(de)?))
        }
        (_, "EC2NodeClass") if group == "karpenter.k8s.aws" => {
            Manifest::EC2NodeClass(Deserialize::deserialize(de)?)
        }
        ("v1", "Pod") => Manifest::Pod(Box::new(Deserialize::deserialize(de)?)),
        ("v1", "Node") => Manifest::Node(Box::new(Deserialize::deserialize(de)?)),
        ("v1", "Namespace") => Manifest::Namespace(Box::new(Deserialize::deserialize(de)?)),
        ("apps/v1", "Deployment") => Manifest::Deployment(Box::new(Deserialize::deserialize(de)?)),
        ("apps/v1", "StatefulSet") => {
            Manifest::StatefulSet(Box::new(Deserialize::deserialize(de)?))
        }
        ("apps/v1", "ReplicaSet") => Manifest::ReplicaSet(Box::new(Deserialize::deserialize(de)?)),
        ("apps/v1", "DaemonSet") => Manifest::DaemonSet(Box::new(Deserialize::deserialize(de)?)),
        ("batch/v1", "Job") => Manifest::Job(Box::new(Deserialize::deserialize(de)?)),
        ("policy/v1", "PodDisruptionBudget") => {
            Manifest::PodDisruptionBudget(Box::new(Deserialize::deserialize(de)?))
        }
        // v1beta1 (Kubernetes < 1.21) has the fields read here in the v1 shape: it reads as v1.
        ("policy/v1beta1", "PodDisruptionBudget") => {
            let mut value = serde_yaml::Value::deserialize(de)?;
            value["apiVersion"] = "policy/v1".into();
            let pdb = PodDisruptionBudget::deserialize(value).map_err(serde::de::Error::custom)?;
            Manifest::PodDisruptionBudget(Box::new(pdb))
        }
        _ => Manifest::Other {
            api_version: h.api_version.clone(),
            kind: h.kind.clone(),
            name: h.name.clone(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    const MIXED: &str = r#"
---
# An empty document, then a comment-only one.
---
apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: Namespace
    metadata: {name: shop, labels: {env: prod}}
  - apiVersion: v1
    kind: Service
    metadata: {name: web}
---
apiVersion: karpenter.k8s.aws/v1
kind: EC2NodeClass
metadata: {name: default}
spec: {amiSelectorTerms: [{alias: al2023@latest}], role: KarpenterNodeRole}
---
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {name: general}
spec:
  template:
    spec:
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}
      requirements: []
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web}
spec: {maxUnavailable: 1, selector: {matchLabels: {app: web}}}
---
apiVersion: batch/v1
kind: Job
metadata: {name: etl}
spec:
  template:
    spec: {containers: [{name: a}], restartPolicy: Never}
"#;

    #[test]
    fn a_v1beta1_disruption_budget_reads_as_v1() {
        let text = "apiVersion: policy/v1beta1\nkind: PodDisruptionBudget\n\
                    metadata: {name: db, namespace: shop}\n\
                    spec: {minAvailable: 2, selector: {matchLabels: {app: db}}}\n";
        let ms = parse_manifests(text, "pdb.yaml").unwrap();
        let [Manifest::PodDisruptionBudget(pdb)] = ms.as_slice() else {
            panic!("{ms:?}");
        };
        assert_eq!(pdb.metadata.name.as_deref(), Some("db"));
        let spec = pdb.spec.as_ref().unwrap();
        assert_eq!(spec.min_available, Some(IntOrString::Int(2)));
    }

    #[test]
    fn reads_kinds_lists_and_skips_empty_documents() {
        let ms = parse_manifests(MIXED, "mixed.yaml").unwrap();
        let kinds: Vec<_> = ms.iter().map(Manifest::kind_name).collect();
        assert_eq!(
            kinds,
            vec![
                "Namespace/shop",
                "Service/web",
                "EC2NodeClass/default",
                "NodePool/general",
                "PodDisruptionBudget/web",
                "Job/etl",
            ]
        );
        assert!(matches!(&ms[1], Manifest::Other { api_version, .. } if api_version == "v1"));
        let Manifest::EC2NodeClass(class) = &ms[2] else {
            panic!("{:?}", ms[2]);
        };
        assert_eq!(class["spec"]["role"], "KarpenterNodeRole");
        let Manifest::Namespace(ns) = &ms[0] else {
            panic!()
        };
        assert_eq!(ns.metadata.labels.as_ref().unwrap()["env"], "prod");
    }

    #[test]
    fn reads_v1beta1_node_pools() {
        let text = r#"
apiVersion: karpenter.sh/v1beta1
kind: NodePool
metadata: {name: old}
spec:
  template:
    spec:
      nodeClassRef: {apiVersion: karpenter.k8s.aws/v1beta1, kind: EC2NodeClass, name: default}
      kubelet: {maxPods: 20}
"#;
        let ms = parse_manifests(text, "old.yaml").unwrap();
        let Manifest::NodePoolV1beta1(np) = &ms[0] else {
            panic!("{ms:?}")
        };
        let kubelet = np.spec.template.spec.kubelet.as_ref().unwrap();
        assert_eq!(kubelet.max_pods, Some(20));
    }

    #[test]
    fn type_errors_name_file_document_object_and_line() {
        let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n\
                    apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  \
                    replicas: three\n";
        let err = parse_manifests(text, "apps/web.yaml").unwrap_err();
        assert_eq!(err.object, "apps/web.yaml: document 2 (Deployment/web)");
        assert!(err.message.contains("spec.replicas"), "{err}");
        assert!(err.message.contains("line 10 column"), "{err}");
    }

    #[test]
    fn syntax_errors_and_non_objects() {
        let err = parse_manifests("a: [1, 2\n", "bad.yaml").unwrap_err();
        assert_eq!(err.object, "bad.yaml: document 1");
        assert!(err.message.contains("line"), "{err}");

        let err = parse_manifests("- just\n- a list\n", "seq.yaml").unwrap_err();
        assert!(err.message.contains("mapping"), "{err}");

        let err = parse_manifests("metadata: {name: x}\n", "nokind.yaml").unwrap_err();
        assert!(err.message.contains("apiVersion and kind"), "{err}");

        let text = "apiVersion: v1\nkind: List\nitems:\n  - {apiVersion: v1, kind: Pod, \
                    metadata: {name: p}, spec: {containers: 3}}\n";
        let err = parse_manifests(text, "list.yaml").unwrap_err();
        assert_eq!(err.object, "list.yaml: document 1, items[0] (Pod/p)");
    }
}

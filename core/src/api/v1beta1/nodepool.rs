//! The `karpenter.sh/v1beta1` NodePool as Karpenter 0.33–0.37 users write it, and its conversion to
//! v1 (what Karpenter v1.0's conversion webhook does, minus the cluster lookups).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Taint;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::NODE_CLASS_REFERENCE_ANNOTATION_KEY;
use crate::api::duration::{GoDuration, NillableDuration};
use crate::api::kubelet::KubeletConfiguration;
use crate::api::nodeclaim::{self as v1claim, NodeSelectorRequirementWithMinValues};
use crate::api::nodepool::{self as v1, TemplateMetadata};

/// Desired state of a v1beta1 NodePool.
// kube's printcolumn(...) lists repeat `type_ = ...`, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "karpenter.sh",
    version = "v1beta1",
    kind = "NodePool",
    status = "NodePoolStatus",
    derive = "PartialEq",
    category = "karpenter",
    doc = "The pre-v1 NodePool (Karpenter 0.33-0.37); convert with `convert_to_v1`.",
    printcolumn(
        name = "NodeClass",
        type_ = "string",
        json_path = ".spec.template.spec.nodeClassRef.name"
    ),
    printcolumn(
        name = "Weight",
        type_ = "string",
        json_path = ".spec.weight",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
pub struct NodePoolSpec {
    /// Template for the NodeClaims this pool launches.
    pub template: NodeClaimTemplate,
    /// Disruption settings, including node expiry (which moved to the template in v1).
    #[serde(default)]
    pub disruption: Disruption,
    /// Caps on the total resources of this pool's nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<BTreeMap<String, Quantity>>,
    /// Priority among pools (1..=100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub weight: Option<i32>,
}

/// v1beta1 NodeClaim template.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NodeClaimTemplate {
    /// Labels and annotations applied to every node.
    #[serde(default, skip_serializing_if = "TemplateMetadata::is_empty")]
    pub metadata: TemplateMetadata,
    /// The NodeClaim spec.
    pub spec: NodeClaimTemplateSpec,
}

/// v1beta1 NodeClaim template spec: kubelet settings still live here.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeClaimTemplateSpec {
    /// Taints applied to every node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<Taint>,
    /// Temporary taints removed after startup.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub startup_taints: Vec<Taint>,
    /// Constraints on node labels (`minValues` allowed since 0.34).
    #[serde(default)]
    pub requirements: Vec<NodeSelectorRequirementWithMinValues>,
    /// The provider node class, identified by apiVersion rather than group.
    pub node_class_ref: NodeClassReference,
    /// Kubelet overrides (moved to the node class in v1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubelet: Option<KubeletConfiguration>,
    /// Maximum time to drain a node before its pods are deleted regardless of PDBs (added to
    /// v1beta1 in Karpenter 0.37, kept as is by v1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^([0-9]+(s|m|h))+$"))]
    pub termination_grace_period: Option<GoDuration>,
}

/// v1beta1 node class reference. Field order matches Karpenter's Go struct so the JSON written
/// into the compatibility annotation is byte-identical to Karpenter's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeClassReference {
    /// Kind of the node class (`EC2NodeClass`); optional in v1beta1.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Name of the node class object.
    pub name: String,
    /// Group/version of the node class (`karpenter.k8s.aws/v1beta1`); optional in v1beta1.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
}

/// v1beta1 consolidation policies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ConsolidationPolicy {
    /// Only nodes without workload pods (requires `consolidateAfter`).
    WhenEmpty,
    /// Empty and underutilized nodes, immediately (the default).
    #[default]
    WhenUnderutilized,
}

/// v1beta1 disruption settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Disruption {
    /// Wait before consolidating empty nodes; only `WhenEmpty` (or `"Never"`) may set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consolidate_after: Option<NillableDuration>,
    /// Which nodes consolidation considers.
    #[serde(default)]
    pub consolidation_policy: ConsolidationPolicy,
    /// Node lifetime; defaults to 720h.
    #[serde(default = "crate::api::nodeclaim::default_expire_after")]
    pub expire_after: NillableDuration,
    /// Rate limits on voluntary disruption.
    #[serde(default = "default_budgets")]
    #[schemars(length(max = 50))]
    pub budgets: Vec<Budget>,
}

impl Default for Disruption {
    fn default() -> Self {
        Disruption {
            consolidate_after: None,
            consolidation_policy: ConsolidationPolicy::default(),
            expire_after: crate::api::nodeclaim::default_expire_after(),
            budgets: default_budgets(),
        }
    }
}

fn default_budgets() -> Vec<Budget> {
    vec![Budget {
        nodes: "10%".to_string(),
        schedule: None,
        duration: None,
    }]
}

fn default_budget_nodes() -> String {
    "10%".to_string()
}

/// v1beta1 disruption budget (no `reasons` yet).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Budget {
    /// Node count or percentage.
    #[serde(default = "default_budget_nodes")]
    pub nodes: String,
    /// Cron schedule at which the budget becomes active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// How long the budget stays active after each schedule hit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<GoDuration>,
}

/// Observed state of a v1beta1 NodePool.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NodePoolStatus {
    /// Resources provisioned by this pool.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resources: BTreeMap<String, Quantity>,
    /// Conditions (present in later v1beta1 releases).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Result of converting a v1beta1 NodePool.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvertedNodePool {
    /// The equivalent v1 NodePool.
    pub node_pool: v1::NodePool,
    /// The template's kubelet settings, which v1 moved to the node class (`EC2NodeClass`);
    /// the caller must put them there or they are lost.
    pub kubelet: Option<KubeletConfiguration>,
}

/// Why a v1beta1 NodePool could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConversionError {
    /// `nodeClassRef.apiVersion` or `.kind` is empty and no provider default was supplied.
    #[error(
        "spec.template.spec.nodeClassRef.{0} is empty; set it or convert with \
         convert_to_v1_with_default_node_class"
    )]
    MissingNodeClassField(&'static str),
    /// `nodeClassRef.apiVersion` is not of the form `group/version`.
    #[error("spec.template.spec.nodeClassRef.apiVersion {0:?} is not of the form group/version")]
    InvalidApiVersion(String),
    /// A NodeClaim's `nodeClassRef.apiVersion` is not of the form `group/version`.
    #[error("spec.nodeClassRef.apiVersion {0:?} is not of the form group/version")]
    InvalidNodeClaimApiVersion(String),
    /// `WhenEmpty` without `consolidateAfter` is rejected by the v1beta1 CRD.
    #[error("spec.disruption.consolidateAfter must be set with consolidationPolicy WhenEmpty")]
    MissingConsolidateAfter,
    /// The compatibility annotation could not be encoded.
    #[error("encoding nodeClassRef annotation: {0}")]
    Annotation(String),
}

/// Converts a v1beta1 NodePool to v1, as Karpenter v1.0's conversion webhook does:
///
/// - `WhenUnderutilized` → `WhenEmptyOrUnderutilized` with `consolidateAfter: 0s` (but an
///   explicit `"Never"` is kept: Karpenter would turn it into `0s`, which would start
///   consolidating nodes the user had opted out of);
/// - `WhenEmpty` keeps its `consolidateAfter`;
/// - `disruption.expireAfter` → `template.spec.expireAfter`; budgets, limits, weight, taints,
///   requirements, template metadata and status carry over;
/// - `nodeClassRef.apiVersion` `karpenter.k8s.aws/v1beta1` → `group: karpenter.k8s.aws`, and the
///   original reference is recorded in the `compatibility.karpenter.sh/v1beta1-nodeclass-reference`
///   annotation exactly as Karpenter writes it;
/// - kubelet settings are returned in [`ConvertedNodePool::kubelet`].
///
/// Object metadata keeps only name, labels and annotations (no uid/resourceVersion), since the
/// result is a manifest to apply, not a stored object.
pub fn convert_to_v1(old: &NodePool) -> Result<ConvertedNodePool, ConversionError> {
    convert(old, None)
}

/// Like [`convert_to_v1`], but fills an empty `nodeClassRef.apiVersion` / `.kind` with the
/// provider's default node class (Karpenter does this with the provider's registered class,
/// e.g. group `karpenter.k8s.aws`, kind `EC2NodeClass` on AWS).
pub fn convert_to_v1_with_default_node_class(
    old: &NodePool,
    default_group: &str,
    default_kind: &str,
) -> Result<ConvertedNodePool, ConversionError> {
    convert(old, Some((default_group, default_kind)))
}

fn convert(
    old: &NodePool,
    default_class: Option<(&str, &str)>,
) -> Result<ConvertedNodePool, ConversionError> {
    let old_ref = &old.spec.template.spec.node_class_ref;
    let group = match old_ref.api_version.as_str() {
        "" => default_class.map(|(g, _)| g.to_string()),
        api_version => match api_version.split_once('/') {
            Some((group, version)) if !version.is_empty() && !version.contains('/') => {
                Some(group.to_string())
            }
            _ => return Err(ConversionError::InvalidApiVersion(api_version.to_string())),
        },
    }
    .ok_or(ConversionError::MissingNodeClassField("apiVersion"))?;
    let kind = match old_ref.kind.as_str() {
        "" => default_class.map(|(_, k)| k.to_string()),
        kind => Some(kind.to_string()),
    }
    .ok_or(ConversionError::MissingNodeClassField("kind"))?;

    let old_disruption = &old.spec.disruption;
    let (consolidation_policy, consolidate_after) = match old_disruption.consolidation_policy {
        ConsolidationPolicy::WhenEmpty => (
            v1::ConsolidationPolicy::WhenEmpty,
            old_disruption
                .consolidate_after
                .clone()
                .ok_or(ConversionError::MissingConsolidateAfter)?,
        ),
        ConsolidationPolicy::WhenUnderutilized => (
            v1::ConsolidationPolicy::WhenEmptyOrUnderutilized,
            match &old_disruption.consolidate_after {
                Some(d) if d.is_never() => d.clone(),
                _ => NillableDuration::new("0s"),
            },
        ),
    };
    let budgets = old_disruption
        .budgets
        .iter()
        .map(|b| v1::Budget {
            reasons: None,
            nodes: b.nodes.clone(),
            schedule: b.schedule.clone(),
            duration: b.duration.clone(),
        })
        .collect();

    let mut annotations = old.metadata.annotations.clone().unwrap_or_default();
    let ref_json =
        serde_json::to_string(old_ref).map_err(|e| ConversionError::Annotation(e.to_string()))?;
    annotations.insert(NODE_CLASS_REFERENCE_ANNOTATION_KEY.to_string(), ref_json);

    let old_spec = &old.spec.template.spec;
    let spec = v1::NodePoolSpec {
        template: v1::NodeClaimTemplate {
            metadata: old.spec.template.metadata.clone(),
            spec: v1::NodeClaimTemplateSpec {
                taints: old_spec.taints.clone(),
                startup_taints: old_spec.startup_taints.clone(),
                requirements: old_spec.requirements.clone(),
                node_class_ref: v1claim::NodeClassReference {
                    group,
                    kind,
                    name: old_ref.name.clone(),
                },
                termination_grace_period: old_spec.termination_grace_period.clone(),
                expire_after: old_disruption.expire_after.clone(),
            },
        },
        disruption: v1::Disruption {
            consolidate_after,
            consolidation_policy,
            budgets,
        },
        limits: old.spec.limits.clone(),
        weight: old.spec.weight,
    };
    let metadata = ObjectMeta {
        name: old.metadata.name.clone(),
        labels: old.metadata.labels.clone(),
        annotations: Some(annotations),
        ..ObjectMeta::default()
    };
    let status = old.status.as_ref().map(|s| v1::NodePoolStatus {
        resources: s.resources.clone(),
        node_class_observed_generation: None,
        conditions: s.conditions.clone(),
    });
    Ok(ConvertedNodePool {
        node_pool: v1::NodePool {
            metadata,
            spec,
            status,
        },
        kubelet: old_spec.kubelet.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::nodeclaim::NodeSelectorOperator;
    use kube::CustomResourceExt;

    const SEED: &str = r#"
apiVersion: karpenter.sh/v1beta1
kind: NodePool
metadata: {name: default}
spec:
  template:
    spec:
      requirements:
        - {key: karpenter.k8s.aws/instance-category, operator: In, values: ["t","m","r","c"]}
        - {key: kubernetes.io/arch, operator: In, values: ["amd64"]}
        - {key: karpenter.sh/capacity-type, operator: In, values: ["on-demand"]}
      nodeClassRef: {apiVersion: karpenter.k8s.aws/v1beta1, kind: EC2NodeClass, name: default}
      kubelet: {maxPods: 110}
  limits: {cpu: 1000}
  disruption: {consolidationPolicy: WhenUnderutilized, expireAfter: 720h}
"#;

    fn seed() -> NodePool {
        serde_yaml::from_str(SEED).unwrap()
    }

    #[test]
    fn seed_converts() {
        let old = seed();
        assert_eq!(old.spec.disruption.budgets.len(), 1);
        let ConvertedNodePool {
            node_pool: np,
            kubelet,
        } = convert_to_v1(&old).unwrap();
        assert_eq!(np.metadata.name.as_deref(), Some("default"));
        let t = &np.spec.template.spec;
        assert_eq!(
            t.node_class_ref,
            v1claim::NodeClassReference {
                group: "karpenter.k8s.aws".into(),
                kind: "EC2NodeClass".into(),
                name: "default".into()
            }
        );
        assert_eq!(t.requirements.len(), 3);
        assert_eq!(t.requirements[0].values, vec!["t", "m", "r", "c"]);
        assert_eq!(t.requirements[2].key, "karpenter.sh/capacity-type");
        assert_eq!(t.requirements[2].operator, NodeSelectorOperator::In);
        assert_eq!(t.expire_after.as_str(), "720h");
        assert_eq!(t.termination_grace_period, None);
        let d = &np.spec.disruption;
        assert_eq!(
            d.consolidation_policy,
            v1::ConsolidationPolicy::WhenEmptyOrUnderutilized
        );
        assert_eq!(d.consolidate_after.as_str(), "0s");
        assert_eq!(d.budgets, v1::default_budgets());
        assert_eq!(
            np.spec.limits.as_ref().unwrap()["cpu"],
            Quantity("1000".into())
        );
        assert_eq!(
            kubelet,
            Some(KubeletConfiguration {
                max_pods: Some(110),
                ..Default::default()
            })
        );
        let annotations = np.metadata.annotations.as_ref().unwrap();
        assert_eq!(
            annotations[NODE_CLASS_REFERENCE_ANNOTATION_KEY],
            r#"{"kind":"EC2NodeClass","name":"default","apiVersion":"karpenter.k8s.aws/v1beta1"}"#
        );
        assert!(!annotations.contains_key(crate::api::KUBELET_COMPATIBILITY_ANNOTATION_KEY));
        // The result is a valid v1 NodePool and serializes as one.
        assert_eq!(crate::api::validate_node_pool(&np), Ok(()));
        let json = serde_json::to_value(&np).unwrap();
        assert_eq!(json["apiVersion"], "karpenter.sh/v1");
        assert!(json["spec"]["template"]["spec"].get("kubelet").is_none());
    }

    #[test]
    fn when_empty_keeps_consolidate_after_and_other_fields_carry() {
        let yaml = r#"
apiVersion: karpenter.sh/v1beta1
kind: NodePool
metadata:
  name: batch
  labels: {team: data}
  annotations: {example.com/owner: data}
spec:
  weight: 50
  template:
    metadata:
      labels: {workload: batch}
    spec:
      nodeClassRef: {apiVersion: karpenter.k8s.aws/v1beta1, kind: EC2NodeClass, name: batch}
      requirements:
        - {key: karpenter.k8s.aws/instance-family, operator: In, values: [m5, c5, r5], minValues: 2}
      taints: [{key: example.com/batch, effect: NoSchedule}]
      startupTaints: [{key: example.com/init, effect: NoExecute}]
  disruption:
    consolidationPolicy: WhenEmpty
    consolidateAfter: 30s
    expireAfter: Never
    budgets:
      - {nodes: "20%"}
      - {nodes: "0", schedule: "@daily", duration: 10m}
status:
  resources: {cpu: "4"}
"#;
        let old: NodePool = serde_yaml::from_str(yaml).unwrap();
        let out = convert_to_v1(&old).unwrap();
        assert_eq!(out.kubelet, None);
        let np = out.node_pool;
        assert_eq!(np.metadata.labels.as_ref().unwrap()["team"], "data");
        let annotations = np.metadata.annotations.as_ref().unwrap();
        assert_eq!(annotations["example.com/owner"], "data");
        assert_eq!(annotations.len(), 2);
        assert_eq!(np.spec.weight, Some(50));
        assert_eq!(np.spec.template.metadata.labels["workload"], "batch");
        let t = &np.spec.template.spec;
        assert!(t.expire_after.is_never());
        assert_eq!(t.requirements[0].min_values, Some(2));
        assert_eq!(t.taints[0].key, "example.com/batch");
        assert_eq!(t.startup_taints[0].effect, "NoExecute");
        let d = &np.spec.disruption;
        assert_eq!(d.consolidation_policy, v1::ConsolidationPolicy::WhenEmpty);
        assert_eq!(d.consolidate_after.as_str(), "30s");
        assert_eq!(d.budgets.len(), 2);
        assert_eq!(d.budgets[1].schedule.as_deref(), Some("@daily"));
        assert_eq!(d.budgets[1].duration, Some(GoDuration::new("10m")));
        assert_eq!(d.budgets[1].reasons, None);
        assert_eq!(np.status.unwrap().resources["cpu"], Quantity("4".into()));
    }

    #[test]
    fn never_consolidate_after_survives_when_underutilized() {
        let mut old = seed();
        old.spec.disruption.consolidate_after = Some(NillableDuration::never());
        let np = convert_to_v1(&old).unwrap().node_pool;
        assert!(np.spec.disruption.consolidate_after.is_never());
    }

    #[test]
    fn conversion_errors() {
        let mut old = seed();
        old.spec.disruption.consolidation_policy = ConsolidationPolicy::WhenEmpty;
        assert_eq!(
            convert_to_v1(&old),
            Err(ConversionError::MissingConsolidateAfter)
        );

        let mut old = seed();
        old.spec.template.spec.node_class_ref.api_version = "karpenter.k8s.aws".into();
        assert!(matches!(
            convert_to_v1(&old),
            Err(ConversionError::InvalidApiVersion(_))
        ));

        let mut old = seed();
        old.spec.template.spec.node_class_ref = NodeClassReference {
            name: "default".into(),
            ..Default::default()
        };
        assert_eq!(
            convert_to_v1(&old),
            Err(ConversionError::MissingNodeClassField("apiVersion"))
        );
        let out = convert_to_v1_with_default_node_class(&old, "karpenter.k8s.aws", "EC2NodeClass")
            .unwrap();
        let r = &out.node_pool.spec.template.spec.node_class_ref;
        assert_eq!(
            (r.group.as_str(), r.kind.as_str()),
            ("karpenter.k8s.aws", "EC2NodeClass")
        );
        let annotations = out.node_pool.metadata.annotations.unwrap();
        assert_eq!(
            annotations[NODE_CLASS_REFERENCE_ANNOTATION_KEY],
            r#"{"name":"default"}"#
        );

        old.spec.template.spec.node_class_ref.api_version = "karpenter.k8s.aws/v1beta1".into();
        assert_eq!(
            convert_to_v1(&old),
            Err(ConversionError::MissingNodeClassField("kind"))
        );
    }

    #[test]
    fn v1beta1_defaults_round_trip_and_crd() {
        let old = seed();
        assert_eq!(old.spec.disruption.consolidate_after, None);
        let yaml = serde_yaml::to_string(&old).unwrap();
        assert!(yaml.contains("apiVersion: karpenter.sh/v1beta1"));
        let back: NodePool = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(back, old);
        let minimal: Disruption = serde_json::from_str("{}").unwrap();
        assert_eq!(minimal, Disruption::default());
        assert_eq!(minimal.expire_after.as_str(), "720h");
        assert_eq!(
            minimal.consolidation_policy,
            ConsolidationPolicy::WhenUnderutilized
        );
        let crd = serde_yaml::to_string(&NodePool::crd()).unwrap();
        assert!(crd.contains("name: v1beta1"));
        assert!(crd.contains("jsonPath: .spec.template.spec.nodeClassRef.name"));
        assert!(crd.contains("WhenUnderutilized"));
    }
}

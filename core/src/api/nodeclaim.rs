//! `karpenter.sh/v1` NodeClaim, plus the requirement and node-class-reference types that
//! NodePool templates share with it.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::Taint;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::duration::{GoDuration, NillableDuration};

/// NodeClaim condition: the cloud provider launched the instance.
pub const CONDITION_LAUNCHED: &str = "Launched";
/// NodeClaim condition: the instance registered as a Node.
pub const CONDITION_REGISTERED: &str = "Registered";
/// NodeClaim condition: the Node is ready, startup taints are gone and resources registered.
pub const CONDITION_INITIALIZED: &str = "Initialized";
/// NodeClaim condition: consolidateAfter has elapsed since the last pod event.
pub const CONDITION_CONSOLIDATABLE: &str = "Consolidatable";
/// NodeClaim condition: the NodeClaim no longer matches its NodePool / NodeClass.
pub const CONDITION_DRIFTED: &str = "Drifted";
/// NodeClaim condition: the NodeClaim is being terminated.
pub const CONDITION_TERMINATING: &str = "Terminating";
/// NodeClaim condition: the Node's observed shape matched the NodeClaim.
pub const CONDITION_CONSISTENT_STATE_FOUND: &str = "ConsistentStateFound";
/// Condition every Karpenter object rolls up to (NodeClaim: Launched+Registered+Initialized).
pub const CONDITION_READY: &str = "Ready";

/// Requirement operators. Karpenter accepts the Kubernetes node-selector operators plus
/// `Gte` / `Lte` (added in recent Karpenter releases).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum NodeSelectorOperator {
    /// Label value is one of `values`.
    In,
    /// Label is absent or its value is not one of `values`.
    NotIn,
    /// Label is present.
    Exists,
    /// Label is absent.
    DoesNotExist,
    /// Label value, as an integer, is greater than the single value.
    Gt,
    /// Label value, as an integer, is less than the single value.
    Lt,
    /// Label value, as an integer, is greater than or equal to the single value.
    Gte,
    /// Label value, as an integer, is less than or equal to the single value.
    Lte,
}

impl NodeSelectorOperator {
    /// The operator as written in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeSelectorOperator::In => "In",
            NodeSelectorOperator::NotIn => "NotIn",
            NodeSelectorOperator::Exists => "Exists",
            NodeSelectorOperator::DoesNotExist => "DoesNotExist",
            NodeSelectorOperator::Gt => "Gt",
            NodeSelectorOperator::Lt => "Lt",
            NodeSelectorOperator::Gte => "Gte",
            NodeSelectorOperator::Lte => "Lte",
        }
    }

    /// True for the integer comparisons (`Gt`, `Lt`, `Gte`, `Lte`), which take one value.
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            NodeSelectorOperator::Gt
                | NodeSelectorOperator::Lt
                | NodeSelectorOperator::Gte
                | NodeSelectorOperator::Lte
        )
    }
}

impl fmt::Display for NodeSelectorOperator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A node selector requirement plus `minValues`: the scheduler must keep at least that many
/// distinct values of `key` open when it picks instance types (flexibility floor, e.g. for spot).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeSelectorRequirementWithMinValues {
    /// The label key the requirement applies to.
    #[schemars(length(max = 316), transform = requirement_key_rules)]
    pub key: String,
    /// How `key` relates to `values`.
    pub operator: NodeSelectorOperator,
    /// Values; empty for `Exists` / `DoesNotExist`, exactly one integer for comparisons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// Minimum number of distinct values the scheduler must keep available (1..=50, alpha).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 50))]
    pub min_values: Option<i32>,
}

impl NodeSelectorRequirementWithMinValues {
    /// A requirement without `minValues`.
    pub fn new<S: Into<String>>(
        key: impl Into<String>,
        operator: NodeSelectorOperator,
        values: impl IntoIterator<Item = S>,
    ) -> Self {
        NodeSelectorRequirementWithMinValues {
            key: key.into(),
            operator,
            values: values.into_iter().map(Into::into).collect(),
            min_values: None,
        }
    }
}

/// Reference to the provider's node class object (e.g. `karpenter.k8s.aws` / `EC2NodeClass`).
/// v1 identifies it by API group, not group/version.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct NodeClassReference {
    /// API group of the node class, without a version (`karpenter.k8s.aws`).
    #[schemars(pattern(r"^[^/]*$"))]
    pub group: String,
    /// Kind of the node class (`EC2NodeClass`).
    pub kind: String,
    /// Name of the node class object.
    pub name: String,
}

/// Resource requests a NodeClaim was launched for (limits are not supported by Karpenter).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ResourceRequirements {
    /// Minimum resources the launched node must provide.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, Quantity>,
}

/// CEL rules Karpenter's CRDs put on every requirement key (label-domain restrictions).
pub(crate) fn requirement_key_rules(schema: &mut Schema) {
    let mut rules = kubernetes_domain_key_rules();
    rules.extend(karpenter_key_rules());
    schema.insert("x-kubernetes-validations".into(), Value::Array(rules));
}

/// The CEL rules restricting the `kubernetes.io` and `k8s.io` domains. Since Karpenter v1.10
/// they apply to requirement keys only: template labels may use these domains.
fn kubernetes_domain_key_rules() -> Vec<Value> {
    let domain = r#"self.find("^([^/]+)")"#;
    vec![
        json!({"message": "label domain \"kubernetes.io\" is restricted",
               "rule": format!(
                   "self in [\"beta.kubernetes.io/instance-type\", \
                    \"failure-domain.beta.kubernetes.io/region\", \"beta.kubernetes.io/os\", \
                    \"beta.kubernetes.io/arch\", \"failure-domain.beta.kubernetes.io/zone\", \
                    \"topology.kubernetes.io/zone\", \"topology.kubernetes.io/region\", \
                    \"node.kubernetes.io/instance-type\", \"kubernetes.io/arch\", \
                    \"kubernetes.io/os\", \"node.kubernetes.io/windows-build\"] || \
                    {domain}.endsWith(\"node.kubernetes.io\") || \
                    {domain}.endsWith(\"node-restriction.kubernetes.io\") || \
                    !{domain}.endsWith(\"kubernetes.io\")")}),
        json!({"message": "label domain \"k8s.io\" is restricted",
               "rule": format!(
                   "{domain}.endsWith(\"kops.k8s.io\") || !{domain}.endsWith(\"k8s.io\")")}),
    ]
}

/// The CEL key rules that also bind template labels: the `karpenter.sh` domain (except the
/// capacity type and pool labels) and `kubernetes.io/hostname`.
pub(crate) fn karpenter_key_rules() -> Vec<Value> {
    let domain = r#"self.find("^([^/]+)")"#;
    vec![
        json!({"message": "label domain \"karpenter.sh\" is restricted",
               "rule": format!(
                   "self in [\"karpenter.sh/capacity-type\", \"karpenter.sh/nodepool\"] || \
                    !{domain}.endsWith(\"karpenter.sh\")")}),
        json!({"message": "label \"kubernetes.io/hostname\" is restricted",
               "rule": "self != \"kubernetes.io/hostname\""}),
    ]
}

/// CEL rules Karpenter's CRDs put on requirement lists (operator/value consistency).
pub(crate) fn requirements_rules(schema: &mut Schema) {
    schema.insert(
        "x-kubernetes-validations".into(),
        json!([
            {"message": "requirements with operator 'In' must have a value defined",
             "rule": "self.all(x, x.operator == 'In' ? x.values.size() != 0 : true)"},
            {"message": "requirements operator 'Gt', 'Lt', 'Gte', or 'Lte' must have a single \
                         positive integer value",
             "rule": "self.all(x, (x.operator == 'Gt' || x.operator == 'Lt' || \
                      x.operator == 'Gte' || x.operator == 'Lte') ? \
                      (x.values.size() == 1 && int(x.values[0]) >= 0) : true)"},
            {"message": "requirements with 'minValues' must have at least that many values \
                         specified in the 'values' field",
             "rule": "self.all(x, (x.operator == 'In' && has(x.minValues)) ? \
                      x.values.size() >= x.minValues : true)"},
        ]),
    );
}

/// Default `expireAfter` for NodeClaims and NodePool templates: 30 days.
pub fn default_expire_after() -> NillableDuration {
    NillableDuration::new("720h")
}

/// Desired state of a NodeClaim (immutable once created).
// kube's printcolumn(...) lists repeat `type_ = ...`, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "karpenter.sh",
    version = "v1",
    kind = "NodeClaim",
    status = "NodeClaimStatus",
    derive = "PartialEq",
    category = "karpenter",
    doc = "A request for one node, created by Karpenter from a NodePool template.",
    printcolumn(
        name = "Type",
        type_ = "string",
        json_path = ".metadata.labels.node\\.kubernetes\\.io/instance-type"
    ),
    printcolumn(
        name = "Capacity",
        type_ = "string",
        json_path = ".metadata.labels.karpenter\\.sh/capacity-type"
    ),
    printcolumn(
        name = "Zone",
        type_ = "string",
        json_path = ".metadata.labels.topology\\.kubernetes\\.io/zone"
    ),
    printcolumn(name = "Node", type_ = "string", json_path = ".status.nodeName"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "ImageID",
        type_ = "string",
        json_path = ".status.imageID",
        priority = 1
    ),
    printcolumn(
        name = "ID",
        type_ = "string",
        json_path = ".status.providerID",
        priority = 1
    ),
    printcolumn(
        name = "NodePool",
        type_ = "string",
        json_path = ".metadata.labels.karpenter\\.sh/nodepool",
        priority = 1
    ),
    printcolumn(
        name = "NodeClass",
        type_ = "string",
        json_path = ".spec.nodeClassRef.name",
        priority = 1
    ),
    printcolumn(
        name = "Drifted",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Drifted\")].status",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
pub struct NodeClaimSpec {
    /// Taints applied to the node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<Taint>,
    /// Taints expected to be removed by some other agent shortly after startup; pods need not
    /// tolerate them to be scheduled onto the node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub startup_taints: Vec<Taint>,
    /// Constraints on the node's labels (instance type, zone, capacity type, ...).
    #[schemars(length(max = 100), transform = requirements_rules)]
    pub requirements: Vec<NodeSelectorRequirementWithMinValues>,
    /// Resources the node was requested for.
    #[serde(default, skip_serializing_if = "is_default_resources")]
    pub resources: ResourceRequirements,
    /// The provider node class used to launch the node.
    pub node_class_ref: NodeClassReference,
    /// Maximum time to drain the node before pods are forcibly deleted; unset waits forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^([0-9]+(s|m|h))+$"))]
    pub termination_grace_period: Option<GoDuration>,
    /// Lifetime after which the node is disrupted (`"Never"` disables expiry).
    #[serde(default = "default_expire_after")]
    pub expire_after: NillableDuration,
}

fn is_default_resources(r: &ResourceRequirements) -> bool {
    r.requests.is_empty()
}

/// Observed state of a NodeClaim, written by the controller.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeClaimStatus {
    /// Name of the Node object that registered for this claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// Cloud provider ID of the instance (`aws:///us-west-2a/i-0123...`).
    #[serde(
        rename = "providerID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub provider_id: Option<String>,
    /// Image (AMI) the instance runs.
    #[serde(rename = "imageID", default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// Estimated full capacity of the node.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub capacity: BTreeMap<String, Quantity>,
    /// Estimated allocatable capacity of the node.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub allocatable: BTreeMap<String, Quantity>,
    /// Lifecycle conditions (Launched, Registered, Initialized, Drifted, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Last time a pod was bound to or removed from the node; drives `consolidateAfter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_pod_event_time: Option<Time>,
}

impl NodeClaimStatus {
    /// The condition of type `type_`, if present.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// True when the condition of type `type_` has status `"True"`.
    pub fn is_true(&self, type_: &str) -> bool {
        self.condition(type_).is_some_and(|c| c.status == "True")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    const NODE_CLAIM: &str = r#"
apiVersion: karpenter.sh/v1
kind: NodeClaim
metadata:
  name: default-sfpsl
  labels:
    karpenter.sh/nodepool: default
    node.kubernetes.io/instance-type: m5.large
spec:
  expireAfter: Never
  terminationGracePeriod: 48h
  nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}
  requirements:
    - {key: karpenter.sh/nodepool, operator: In, values: [default]}
    - {key: node.kubernetes.io/instance-type, operator: In, values: [m5.large, m5.xlarge], minValues: 2}
    - {key: karpenter.k8s.aws/instance-generation, operator: Gte, values: ["5"]}
  resources:
    requests: {cpu: 1500m, pods: "3"}
  startupTaints:
    - {key: node.cilium.io/agent-not-ready, value: "true", effect: NoExecute}
status:
  nodeName: ip-10-0-1-2.us-west-2.compute.internal
  providerID: aws:///us-west-2a/i-0123456789abcdef0
  imageID: ami-0123456789abcdef0
  capacity: {cpu: "2", memory: 7910Mi, pods: "29"}
  allocatable: {cpu: 1930m, memory: 7225Mi, pods: "29"}
  lastPodEventTime: "2024-02-02T19:54:34Z"
  conditions:
    - {type: Launched, status: "True", reason: Launched, message: "", lastTransitionTime: "2024-02-02T19:54:34Z"}
"#;

    #[test]
    fn deserializes_node_claim() {
        let nc: NodeClaim = serde_yaml::from_str(NODE_CLAIM).unwrap();
        assert_eq!(nc.metadata.name.as_deref(), Some("default-sfpsl"));
        assert!(nc.spec.expire_after.is_never());
        assert_eq!(
            nc.spec.termination_grace_period,
            Some(GoDuration::new("48h"))
        );
        assert_eq!(nc.spec.node_class_ref.group, "karpenter.k8s.aws");
        assert_eq!(nc.spec.requirements.len(), 3);
        assert_eq!(nc.spec.requirements[1].min_values, Some(2));
        assert_eq!(nc.spec.requirements[2].operator, NodeSelectorOperator::Gte);
        assert_eq!(nc.spec.resources.requests["cpu"], Quantity("1500m".into()));
        assert_eq!(nc.spec.startup_taints[0].effect, "NoExecute");
        let status = nc.status.as_ref().unwrap();
        assert_eq!(
            status.provider_id.as_deref(),
            Some("aws:///us-west-2a/i-0123456789abcdef0")
        );
        assert_eq!(status.image_id.as_deref(), Some("ami-0123456789abcdef0"));
        assert_eq!(status.allocatable["cpu"], Quantity("1930m".into()));
        assert!(status.last_pod_event_time.is_some());
        assert!(status.is_true(CONDITION_LAUNCHED));
        assert!(!status.is_true(CONDITION_REGISTERED));
    }

    #[test]
    fn node_claim_round_trips_and_defaults_expiry() {
        let nc: NodeClaim = serde_yaml::from_str(NODE_CLAIM).unwrap();
        let json = serde_json::to_value(&nc).unwrap();
        assert_eq!(
            json["status"]["providerID"],
            "aws:///us-west-2a/i-0123456789abcdef0"
        );
        assert_eq!(json["spec"]["nodeClassRef"]["kind"], "EC2NodeClass");
        let back: NodeClaim = serde_json::from_value(json).unwrap();
        assert_eq!(back, nc);

        let minimal = r#"{"apiVersion":"karpenter.sh/v1","kind":"NodeClaim","metadata":{"name":"x"},
            "spec":{"requirements":[],"nodeClassRef":{"group":"g","kind":"K","name":"n"}}}"#;
        let nc: NodeClaim = serde_json::from_str(minimal).unwrap();
        assert_eq!(nc.spec.expire_after.as_str(), "720h");
        assert!(nc.spec.taints.is_empty() && nc.spec.resources.requests.is_empty());
    }

    #[test]
    fn operators_serialize_verbatim() {
        let all = [
            "In",
            "NotIn",
            "Exists",
            "DoesNotExist",
            "Gt",
            "Lt",
            "Gte",
            "Lte",
        ];
        for name in all {
            let op: NodeSelectorOperator = serde_json::from_str(&format!("\"{name}\"")).unwrap();
            assert_eq!(op.as_str(), name);
            assert_eq!(serde_json::to_string(&op).unwrap(), format!("\"{name}\""));
        }
        assert!(serde_json::from_str::<NodeSelectorOperator>("\"in\"").is_err());
    }

    #[test]
    fn crd_has_karpenter_printer_columns() {
        let crd = serde_yaml::to_string(&NodeClaim::crd()).unwrap();
        for col in [
            "Type", "Capacity", "Zone", "Node", "Ready", "Age", "ImageID", "ID", "Drifted",
        ] {
            assert!(
                crd.contains(&format!("name: {col}\n")),
                "missing column {col}"
            );
        }
        assert!(crd.contains("scope: Cluster"));
        assert!(crd.contains("- karpenter"));
        assert!(crd.contains(".metadata.labels.karpenter\\.sh/nodepool"));
    }
}

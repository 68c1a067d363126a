//! `karpenter.sh/v1` NodePool: the template for NodeClaims plus disruption, limits and weight.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::Taint;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::duration::{GoDuration, NillableDuration};
use super::nodeclaim::{
    NodeClaimSpec, NodeClassReference, NodeSelectorRequirementWithMinValues, ResourceRequirements,
    default_expire_after, requirements_rules,
};

/// NodePool condition: the runtime validation (labels, taints, requirements) passed.
pub const CONDITION_VALIDATION_SUCCEEDED: &str = "ValidationSucceeded";
/// NodePool condition: the referenced node class exists and is Ready.
pub const CONDITION_NODE_CLASS_READY: &str = "NodeClassReady";
/// NodePool condition: recent launches registered (false means misconfiguration to look at).
pub const CONDITION_NODE_REGISTRATION_HEALTHY: &str = "NodeRegistrationHealthy";

/// Desired state of a NodePool.
// kube's printcolumn(...) lists repeat `type_ = ...`, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "karpenter.sh",
    version = "v1",
    kind = "NodePool",
    status = "NodePoolStatus",
    derive = "PartialEq",
    category = "karpenter",
    doc = "Constraints and policies for the nodes Karpenter may launch and disrupt.",
    printcolumn(
        name = "NodeClass",
        type_ = "string",
        json_path = ".spec.template.spec.nodeClassRef.name"
    ),
    printcolumn(
        name = "Nodes",
        type_ = "string",
        json_path = ".status.resources.nodes"
    ),
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
        name = "Weight",
        type_ = "integer",
        json_path = ".spec.weight",
        priority = 1
    ),
    printcolumn(
        name = "CPU",
        type_ = "string",
        json_path = ".status.resources.cpu",
        priority = 1
    ),
    printcolumn(
        name = "Memory",
        type_ = "string",
        json_path = ".status.resources.memory",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
pub struct NodePoolSpec {
    /// Template for the NodeClaims this pool launches; pods narrow it further.
    pub template: NodeClaimTemplate,
    /// How and how fast Karpenter may disrupt this pool's nodes.
    #[serde(default)]
    pub disruption: Disruption,
    /// Caps on the total resources of this pool's nodes (`cpu`, `memory`, `nodes`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<BTreeMap<String, Quantity>>,
    /// Priority among pools (1..=100); higher is tried first, unset counts as 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub weight: Option<i32>,
}

/// NodeClaim template: metadata stamped on every node plus the NodeClaim spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NodeClaimTemplate {
    /// Labels and annotations applied to every node.
    #[serde(default, skip_serializing_if = "TemplateMetadata::is_empty")]
    pub metadata: TemplateMetadata,
    /// The NodeClaim spec, minus resource requests.
    pub spec: NodeClaimTemplateSpec,
}

/// The only metadata a NodeClaim template may carry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TemplateMetadata {
    /// Labels applied to every node (restricted domains are rejected by validation).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(length(max = 100), transform = template_label_rules)]
    pub labels: BTreeMap<String, String>,
    /// Annotations applied to every node.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl TemplateMetadata {
    /// True when there are neither labels nor annotations.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.annotations.is_empty()
    }
}

/// Karpenter's CEL rules on template labels: the `karpenter.sh` domain and
/// `kubernetes.io/hostname` rules of requirement keys applied to every key, plus the ban on
/// `karpenter.sh/nodepool`. Since Karpenter v1.10 template labels may use the `kubernetes.io`
/// and `k8s.io` domains (requirement keys may not).
fn template_label_rules(schema: &mut Schema) {
    let mut rules = Vec::new();
    for rule in super::nodeclaim::karpenter_key_rules() {
        let cel = rule["rule"]
            .as_str()
            .unwrap_or_default()
            .replace("self", "x");
        rules.push(json!({"message": rule["message"], "rule": format!("self.all(x, {cel})")}));
    }
    rules.push(json!({
        "message": "label \"karpenter.sh/nodepool\" is restricted",
        "rule": "self.all(x, x != \"karpenter.sh/nodepool\")",
    }));
    schema.insert("x-kubernetes-validations".into(), Value::Array(rules));
}

/// NodeClaim spec as written in a NodePool template (users cannot set resource requests).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeClaimTemplateSpec {
    /// Taints applied to every node; pods must tolerate them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<Taint>,
    /// Temporary taints removed by another agent after startup; pods need not tolerate them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub startup_taints: Vec<Taint>,
    /// Constraints on node labels; `requirements: []` means any instance type.
    #[schemars(length(max = 100), transform = template_requirements_rules)]
    pub requirements: Vec<NodeSelectorRequirementWithMinValues>,
    /// The provider node class used to launch nodes.
    pub node_class_ref: NodeClassReference,
    /// Maximum drain time before pods are forcibly deleted; unset waits forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^([0-9]+(s|m|h))+$"))]
    pub termination_grace_period: Option<GoDuration>,
    /// Node lifetime before it is disrupted; `"Never"` disables expiry. Defaults to 720h.
    #[serde(default = "default_expire_after")]
    pub expire_after: NillableDuration,
}

/// The NodeClaim requirement rules plus the NodePool-only ban on `karpenter.sh/nodepool`.
fn template_requirements_rules(schema: &mut Schema) {
    requirements_rules(schema);
    if let Some(Value::Array(rules)) = schema.get_mut("x-kubernetes-validations") {
        rules.push(json!({
            "message": "label \"karpenter.sh/nodepool\" is restricted",
            "rule": "self.all(x, x.key != \"karpenter.sh/nodepool\")",
        }));
    }
}

impl NodeClaimTemplateSpec {
    /// The NodeClaim spec this template produces before pod requirements are layered on.
    pub fn to_node_claim_spec(&self) -> NodeClaimSpec {
        NodeClaimSpec {
            taints: self.taints.clone(),
            startup_taints: self.startup_taints.clone(),
            requirements: self.requirements.clone(),
            resources: ResourceRequirements::default(),
            node_class_ref: self.node_class_ref.clone(),
            termination_grace_period: self.termination_grace_period.clone(),
            expire_after: self.expire_after.clone(),
        }
    }
}

/// Which nodes consolidation may remove or replace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ConsolidationPolicy {
    /// Only nodes without workload pods.
    WhenEmpty,
    /// Empty nodes and nodes whose pods fit elsewhere more cheaply (the default).
    #[default]
    WhenEmptyOrUnderutilized,
}

impl fmt::Display for ConsolidationPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConsolidationPolicy::WhenEmpty => "WhenEmpty",
            ConsolidationPolicy::WhenEmptyOrUnderutilized => "WhenEmptyOrUnderutilized",
        })
    }
}

/// Disruption methods a budget can be scoped to.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum DisruptionReason {
    /// Consolidation of underutilized nodes.
    Underutilized,
    /// Consolidation of empty nodes.
    Empty,
    /// Replacement of drifted nodes.
    Drifted,
}

/// Disruption settings of a NodePool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Disruption {
    /// Wait after the last pod event before a node may be consolidated; `"Never"` disables
    /// consolidation. Defaults to `"0s"`.
    #[serde(default = "default_consolidate_after")]
    pub consolidate_after: NillableDuration,
    /// Which nodes consolidation considers.
    #[serde(default)]
    pub consolidation_policy: ConsolidationPolicy,
    /// Rate limits on voluntary disruption; the most restrictive active budget wins.
    #[serde(default = "default_budgets")]
    #[schemars(length(max = 50))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"message": "'schedule' must be set with 'duration'",
         "rule": "self.all(x, has(x.schedule) == has(x.duration))"}
    ]))]
    pub budgets: Vec<Budget>,
}

impl Default for Disruption {
    fn default() -> Self {
        Disruption {
            consolidate_after: default_consolidate_after(),
            consolidation_policy: ConsolidationPolicy::default(),
            budgets: default_budgets(),
        }
    }
}

/// Default `consolidateAfter`: consolidate as soon as possible.
pub fn default_consolidate_after() -> NillableDuration {
    NillableDuration::new("0s")
}

/// Default budgets: one always-active budget of 10% of nodes.
pub fn default_budgets() -> Vec<Budget> {
    vec![Budget::default()]
}

fn default_budget_nodes() -> String {
    "10%".to_string()
}

/// Caps how many of the pool's nodes may be disrupted at once, optionally only during a
/// cron window and only for some reasons.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Budget {
    /// Disruption methods this budget limits; unset means all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 50))]
    pub reasons: Option<Vec<DisruptionReason>>,
    /// Node count (`"5"`) or percentage of the pool (`"10%"`, rounded up).
    #[serde(default = "default_budget_nodes")]
    #[schemars(pattern(r"^((100|[0-9]{1,2})%|[0-9]+)$"))]
    pub nodes: String,
    /// Cron schedule (UTC) at which the budget becomes active; requires `duration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// How long the budget stays active after each schedule hit (minutes/hours only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^((([0-9]+(h|m))|([0-9]+h[0-9]+m))(0s)?)$"))]
    pub duration: Option<GoDuration>,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            reasons: None,
            nodes: default_budget_nodes(),
            schedule: None,
            duration: None,
        }
    }
}

impl Budget {
    /// True when the budget applies to `reason` (budgets without reasons apply to all).
    pub fn applies_to(&self, reason: DisruptionReason) -> bool {
        self.reasons.as_ref().is_none_or(|r| r.contains(&reason))
    }
}

/// Observed state of a NodePool.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodePoolStatus {
    /// Resources provisioned by this pool (including `nodes`), checked against `limits`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resources: BTreeMap<String, Quantity>,
    /// Generation of the node class last seen; a change resets NodeRegistrationHealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_class_observed_generation: Option<i64>,
    /// Health and readiness conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::nodeclaim::NodeSelectorOperator;
    use kube::CustomResourceExt;

    /// The example from karpenter.sh's v1 NodePool docs (alternatives like `720h | Never`
    /// resolved to their first choice).
    const DOCUMENTED: &str = r#"
apiVersion: karpenter.sh/v1
kind: NodePool
metadata:
  name: default
spec:
  template:
    metadata:
      labels:
        billing-team: my-team
      annotations:
        example.com/owner: "my-team"
    spec:
      nodeClassRef:
        group: karpenter.k8s.aws
        kind: EC2NodeClass
        name: default
      taints:
        - key: example.com/special-taint
          effect: NoSchedule
      startupTaints:
        - key: example.com/another-taint
          effect: NoSchedule
      expireAfter: 720h
      terminationGracePeriod: 48h
      requirements:
        - key: "karpenter.k8s.aws/instance-category"
          operator: In
          values: ["c", "m", "r"]
          minValues: 2
        - key: "karpenter.k8s.aws/instance-family"
          operator: In
          values: ["m5","m5d","c5","c5d","c4","r4"]
          minValues: 5
        - key: "karpenter.k8s.aws/instance-cpu"
          operator: In
          values: ["4", "8", "16", "32"]
        - key: "karpenter.k8s.aws/instance-hypervisor"
          operator: In
          values: ["nitro"]
        - key: "karpenter.k8s.aws/instance-generation"
          operator: Gt
          values: ["2"]
        - key: "topology.kubernetes.io/zone"
          operator: In
          values: ["us-west-2a", "us-west-2b"]
        - key: "kubernetes.io/arch"
          operator: In
          values: ["arm64", "amd64"]
        - key: "karpenter.sh/capacity-type"
          operator: In
          values: ["spot", "on-demand"]
  disruption:
    consolidationPolicy: WhenEmptyOrUnderutilized
    consolidateAfter: 1m
    budgets:
    - nodes: 10%
    - schedule: "0 9 * * mon-fri"
      duration: 8h
      nodes: "0"
  limits:
    cpu: "1000"
    memory: 1000Gi
  weight: 10
status:
  conditions:
    - type: Initialized
      status: "False"
      observedGeneration: 1
      lastTransitionTime: "2024-02-02T19:54:34Z"
      reason: NodeClaimNotLaunched
      message: "NodeClaim hasn't succeeded launch"
  resources:
    cpu: "20"
    memory: "8192Mi"
    ephemeral-storage: "100Gi"
"#;

    pub(crate) fn documented() -> NodePool {
        serde_yaml::from_str(DOCUMENTED).unwrap()
    }

    #[test]
    fn deserializes_documented_example() {
        let np = documented();
        assert_eq!(np.metadata.name.as_deref(), Some("default"));
        let t = &np.spec.template;
        assert_eq!(t.metadata.labels["billing-team"], "my-team");
        assert_eq!(t.metadata.annotations["example.com/owner"], "my-team");
        assert_eq!(
            t.spec.node_class_ref,
            NodeClassReference {
                group: "karpenter.k8s.aws".into(),
                kind: "EC2NodeClass".into(),
                name: "default".into()
            }
        );
        assert_eq!(t.spec.taints[0].key, "example.com/special-taint");
        assert_eq!(t.spec.startup_taints[0].effect, "NoSchedule");
        assert_eq!(t.spec.expire_after.as_str(), "720h");
        assert_eq!(
            t.spec.termination_grace_period.as_ref().unwrap().as_str(),
            "48h"
        );
        assert_eq!(t.spec.requirements.len(), 8);
        assert_eq!(t.spec.requirements[0].min_values, Some(2));
        assert_eq!(t.spec.requirements[4].operator, NodeSelectorOperator::Gt);
        assert_eq!(t.spec.requirements[4].values, vec!["2"]);
        let d = &np.spec.disruption;
        assert_eq!(
            d.consolidation_policy,
            ConsolidationPolicy::WhenEmptyOrUnderutilized
        );
        assert_eq!(d.consolidate_after.as_str(), "1m");
        assert_eq!(d.budgets.len(), 2);
        assert_eq!(d.budgets[1].schedule.as_deref(), Some("0 9 * * mon-fri"));
        assert_eq!(d.budgets[1].duration, Some(GoDuration::new("8h")));
        assert_eq!(d.budgets[1].nodes, "0");
        let limits = np.spec.limits.as_ref().unwrap();
        assert_eq!(limits["memory"], Quantity("1000Gi".into()));
        assert_eq!(np.spec.weight, Some(10));
        let status = np.status.as_ref().unwrap();
        assert_eq!(
            status.resources["ephemeral-storage"],
            Quantity("100Gi".into())
        );
        assert_eq!(status.conditions[0].type_, "Initialized");
        assert_eq!(status.conditions[0].observed_generation, Some(1));
    }

    #[test]
    fn applies_crd_defaults() {
        let yaml = r#"
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {name: minimal}
spec:
  template:
    spec:
      requirements: []
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}
"#;
        let np: NodePool = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(np.spec.template.spec.expire_after.as_str(), "720h");
        assert!(np.spec.template.metadata.is_empty());
        assert_eq!(np.spec.disruption, Disruption::default());
        assert_eq!(np.spec.disruption.consolidate_after.as_str(), "0s");
        assert_eq!(
            np.spec.disruption.consolidation_policy,
            ConsolidationPolicy::WhenEmptyOrUnderutilized
        );
        assert_eq!(np.spec.disruption.budgets, vec![Budget::default()]);
        assert_eq!(np.spec.disruption.budgets[0].nodes, "10%");
        assert_eq!(np.spec.limits, None);
        assert_eq!(np.spec.weight, None);
        assert!(np.status.is_none());

        // A partially written disruption block keeps the other defaults.
        let partial: Disruption = serde_json::from_str(r#"{"consolidateAfter":"Never"}"#).unwrap();
        assert!(partial.consolidate_after.is_never());
        assert_eq!(partial.budgets, default_budgets());
        let budget: Budget = serde_json::from_str(r#"{"reasons":["Drifted"]}"#).unwrap();
        assert_eq!(budget.nodes, "10%");
        assert!(budget.applies_to(DisruptionReason::Drifted));
        assert!(!budget.applies_to(DisruptionReason::Empty));
        assert!(Budget::default().applies_to(DisruptionReason::Empty));
    }

    #[test]
    fn round_trips_through_yaml_and_json() {
        let np = documented();
        let yaml = serde_yaml::to_string(&np).unwrap();
        let back: NodePool = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(back, np);
        let json = serde_json::to_value(&np).unwrap();
        assert_eq!(json["apiVersion"], "karpenter.sh/v1");
        assert_eq!(json["kind"], "NodePool");
        assert_eq!(
            json["spec"]["template"]["spec"]["nodeClassRef"]["group"],
            "karpenter.k8s.aws"
        );
        assert_eq!(
            json["spec"]["template"]["spec"]["requirements"][0]["minValues"],
            2
        );
        assert_eq!(
            json["spec"]["disruption"]["consolidationPolicy"],
            "WhenEmptyOrUnderutilized"
        );
        assert_eq!(json["status"]["resources"]["memory"], "8192Mi");
        let back: NodePool = serde_json::from_value(json).unwrap();
        assert_eq!(back, np);
    }

    #[test]
    fn template_produces_node_claim_spec() {
        let np = documented();
        let spec = np.spec.template.spec.to_node_claim_spec();
        assert_eq!(spec.requirements, np.spec.template.spec.requirements);
        assert_eq!(spec.node_class_ref.name, "default");
        assert!(spec.resources.requests.is_empty());
        assert_eq!(spec.expire_after.as_str(), "720h");
    }

    #[test]
    fn crd_generates_with_printer_columns_and_rules() {
        let crd = NodePool::crd();
        assert_eq!(crd.metadata.name.as_deref(), Some("nodepools.karpenter.sh"));
        let yaml = serde_yaml::to_string(&crd).unwrap();
        for col in [
            "NodeClass",
            "Nodes",
            "Ready",
            "Age",
            "Weight",
            "CPU",
            "Memory",
        ] {
            assert!(
                yaml.contains(&format!("name: {col}\n")),
                "missing column {col}"
            );
        }
        assert!(yaml.contains("jsonPath: .status.resources.nodes"));
        assert!(yaml.contains("jsonPath: .status.conditions[?(@.type==\"Ready\")].status"));
        assert!(yaml.contains("scope: Cluster"));
        let json = serde_json::to_string(&crd).unwrap();
        assert!(json.contains("'schedule' must be set with 'duration'"));
        assert!(json.contains("label \\\"karpenter.sh/nodepool\\\" is restricted"));
        assert!(json.contains("requirements with operator 'In' must have a value defined"));
        assert!(yaml.contains("default: 720h"));
        assert!(yaml.contains("WhenEmptyOrUnderutilized"));
        let weight_col = crd.spec.versions[0]
            .additional_printer_columns
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.name == "Weight")
            .unwrap();
        assert_eq!(
            (weight_col.type_.as_str(), weight_col.priority),
            ("integer", Some(1))
        );
    }

    #[test]
    fn template_labels_keep_only_the_hostname_and_karpenter_sh_rules() {
        let crd = serde_json::to_value(NodePool::crd()).unwrap();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            ["template"]["properties"];
        let messages = |rules: &serde_json::Value| -> Vec<String> {
            rules
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["message"].as_str().unwrap().to_string())
                .collect()
        };
        let labels = &spec["metadata"]["properties"]["labels"]["x-kubernetes-validations"];
        assert_eq!(
            messages(labels),
            [
                "label domain \"karpenter.sh\" is restricted",
                "label \"kubernetes.io/hostname\" is restricted",
                "label \"karpenter.sh/nodepool\" is restricted",
            ]
        );
        let key = &spec["spec"]["properties"]["requirements"]["items"]["properties"]["key"]["x-kubernetes-validations"];
        assert_eq!(
            messages(key),
            [
                "label domain \"kubernetes.io\" is restricted",
                "label domain \"k8s.io\" is restricted",
                "label domain \"karpenter.sh\" is restricted",
                "label \"kubernetes.io/hostname\" is restricted",
            ]
        );
    }
}

//! The `karpenter.sh/v1beta1` NodeClaim as Karpenter 0.33–0.37 wrote it, and its conversion to
//! v1.
//!
//! A cluster upgraded from Karpenter 0.36 has a NodeClaim of this shape for every node 0.36
//! launched. The differences from v1: `nodeClassRef` names an `apiVersion` (both it and `kind`
//! optional) instead of a `group`; the kubelet settings live in the spec; there is no
//! `expireAfter` or `terminationGracePeriod` (0.36 took them from the NodePool); the status
//! conditions are knative's (only `type` and `status` required, plus `severity`), not
//! `metav1.Condition`'s (Karpenter moved to those in 0.37).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Taint;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::nodepool::{ConversionError, NodeClassReference};
use crate::api::duration::NillableDuration;
use crate::api::kubelet::KubeletConfiguration;
use crate::api::nodeclaim::{
    self as v1, NodeSelectorRequirementWithMinValues, ResourceRequirements,
};
use crate::api::nodepool::NodePool as V1NodePool;
use crate::api::{KUBELET_COMPATIBILITY_ANNOTATION_KEY, NODE_CLASS_REFERENCE_ANNOTATION_KEY};

/// Desired state of a v1beta1 NodeClaim.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "karpenter.sh",
    version = "v1beta1",
    kind = "NodeClaim",
    status = "NodeClaimStatus",
    derive = "PartialEq",
    category = "karpenter",
    doc = "The pre-v1 NodeClaim (Karpenter 0.33-0.37); convert with `convert_node_claim`."
)]
#[serde(rename_all = "camelCase")]
pub struct NodeClaimSpec {
    /// Taints applied to the node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<Taint>,
    /// Temporary taints removed after startup.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub startup_taints: Vec<Taint>,
    /// Constraints on the node's labels.
    #[serde(default)]
    pub requirements: Vec<NodeSelectorRequirementWithMinValues>,
    /// Resources the node was requested for.
    #[serde(default, skip_serializing_if = "is_default_resources")]
    pub resources: ResourceRequirements,
    /// Kubelet overrides the node was launched with (moved to the node class in v1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubelet: Option<KubeletConfiguration>,
    /// The provider node class, identified by apiVersion rather than group.
    pub node_class_ref: NodeClassReference,
}

fn is_default_resources(r: &ResourceRequirements) -> bool {
    r.requests.is_empty()
}

/// Observed state of a v1beta1 NodeClaim.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeClaimStatus {
    /// Name of the Node object that registered for this claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// Cloud provider ID of the instance.
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
    /// Lifecycle conditions, knative-style.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<KnativeCondition>,
}

/// A knative `apis.Condition`, as Karpenter 0.33–0.36 wrote them: everything but `type` and
/// `status` may be absent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KnativeCondition {
    /// Condition type (`Launched`, `Registered`, `Initialized`, `Ready`, …).
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// `Error`, `Warning` or `Info`; empty means `Error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// When the status last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// Why, in one CamelCase word.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Why, for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Converts a v1beta1 NodeClaim to v1, keeping all of its metadata (uid, resourceVersion,
/// finalizers, owner references), so the result can replace the stored object:
///
/// - `nodeClassRef.apiVersion` → `group` (an empty `apiVersion` or `kind` takes `default_class`,
///   the provider's node class), the original reference recorded in the
///   `compatibility.karpenter.sh/v1beta1-nodeclass-reference` annotation as for NodePools;
/// - `kubelet` → the `compatibility.karpenter.sh/v1beta1-kubelet-conversion` annotation (the node
///   already runs with it; in v1 kubelet settings belong to the node class);
/// - knative conditions → `metav1.Condition`s: an absent `reason` becomes the type (v1 requires
///   one), an absent or empty `message` [`CONVERTED_MESSAGE`], an absent `lastTransitionTime`
///   the claim's creation;
/// - `expireAfter` and `terminationGracePeriod` from `pool`, the claim's NodePool in v1 form (0.36
///   read both from the pool, so the node keeps the lifetime it was launched under); without a
///   pool, `expireAfter: Never`: expiring a node on a guessed lifetime would drain it for nothing.
pub fn convert_node_claim(
    old: &NodeClaim,
    pool: Option<&V1NodePool>,
    default_class: (&str, &str),
) -> Result<v1::NodeClaim, ConversionError> {
    let old_ref = &old.spec.node_class_ref;
    let group = match old_ref.api_version.as_str() {
        "" => default_class.0.to_owned(),
        api_version => match api_version.split_once('/') {
            Some((group, version)) if !version.is_empty() && !version.contains('/') => {
                group.to_owned()
            }
            _ => {
                return Err(ConversionError::InvalidNodeClaimApiVersion(
                    api_version.to_owned(),
                ));
            }
        },
    };
    let kind = match old_ref.kind.as_str() {
        "" => default_class.1.to_owned(),
        kind => kind.to_owned(),
    };
    let mut metadata = old.metadata.clone();
    let annotations = metadata.annotations.get_or_insert_with(Default::default);
    let encode = |e: serde_json::Error| ConversionError::Annotation(e.to_string());
    annotations.insert(
        NODE_CLASS_REFERENCE_ANNOTATION_KEY.to_owned(),
        serde_json::to_string(old_ref).map_err(encode)?,
    );
    if let Some(kubelet) = &old.spec.kubelet {
        annotations.insert(
            KUBELET_COMPATIBILITY_ANNOTATION_KEY.to_owned(),
            serde_json::to_string(kubelet).map_err(encode)?,
        );
    }
    let template = pool.map(|p| &p.spec.template.spec);
    Ok(v1::NodeClaim {
        metadata,
        spec: v1::NodeClaimSpec {
            taints: old.spec.taints.clone(),
            startup_taints: old.spec.startup_taints.clone(),
            requirements: old.spec.requirements.clone(),
            resources: old.spec.resources.clone(),
            node_class_ref: v1::NodeClassReference {
                group,
                kind,
                name: old_ref.name.clone(),
            },
            termination_grace_period: template.and_then(|t| t.termination_grace_period.clone()),
            expire_after: template.map_or_else(
                || NillableDuration::new("Never"),
                |t| t.expire_after.clone(),
            ),
        },
        status: old
            .status
            .as_ref()
            .map(|s| convert_status(s, &old.metadata)),
    })
}

/// The message of a converted condition that had none. Not empty: Kubernetes 1.20 turns a
/// stored empty `message` into null when it validates a later update through v1, which the v1
/// schema refuses (seen on the e2e API server), so an empty message would block the rewrite.
pub const CONVERTED_MESSAGE: &str = "converted from karpenter.sh/v1beta1";

impl KnativeCondition {
    /// This condition with what `metav1.Condition` requires filled in: an absent `reason`
    /// becomes the type, an absent or empty `message` [`CONVERTED_MESSAGE`], an absent
    /// `lastTransitionTime` `created`.
    pub fn completed(&self, created: &Time) -> KnativeCondition {
        KnativeCondition {
            reason: Some(
                self.reason
                    .clone()
                    .filter(|r| !r.is_empty())
                    .unwrap_or_else(|| self.type_.clone()),
            ),
            message: Some(
                self.message
                    .clone()
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| CONVERTED_MESSAGE.to_owned()),
            ),
            last_transition_time: Some(
                self.last_transition_time
                    .clone()
                    .unwrap_or_else(|| created.clone()),
            ),
            ..self.clone()
        }
    }

    /// True when [`Self::completed`] would change nothing.
    pub fn is_complete(&self) -> bool {
        self.reason.as_ref().is_some_and(|r| !r.is_empty())
            && self.message.as_ref().is_some_and(|m| !m.is_empty())
            && self.last_transition_time.is_some()
    }
}

/// When the claim was created (the stand-in for a condition's missing transition time).
pub fn created_at(metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Time {
    metadata
        .creation_timestamp
        .clone()
        .unwrap_or(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH))
}

fn convert_status(
    old: &NodeClaimStatus,
    metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> v1::NodeClaimStatus {
    let created = created_at(metadata);
    v1::NodeClaimStatus {
        node_name: old.node_name.clone(),
        provider_id: old.provider_id.clone(),
        image_id: old.image_id.clone(),
        capacity: old.capacity.clone(),
        allocatable: old.allocatable.clone(),
        conditions: old
            .conditions
            .iter()
            .map(|c| {
                let c = c.completed(&created);
                Condition {
                    type_: c.type_,
                    status: c.status,
                    reason: c.reason.unwrap_or_default(),
                    message: c.message.unwrap_or_default(),
                    last_transition_time: c.last_transition_time.unwrap_or_else(|| created.clone()),
                    observed_generation: None,
                }
            })
            .collect(),
        last_pod_event_time: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::v1beta1::{ConvertedNodePool, convert_to_v1};

    /// A NodeClaim as Karpenter 0.36 stores it for a node of the seed's staging pool.
    const CLAIM_036: &str = r#"
apiVersion: karpenter.sh/v1beta1
kind: NodeClaim
metadata:
  name: staging-x7k2p
  uid: 4b9f0c8e-0000-4000-8000-000000000001
  resourceVersion: "1234"
  creationTimestamp: "2025-12-31T23:59:00Z"
  labels: {karpenter.sh/nodepool: staging, node.kubernetes.io/instance-type: m5.large}
  annotations: {karpenter.sh/nodepool-hash: "6821555240594823858", karpenter.sh/nodepool-hash-version: v2}
  finalizers: [karpenter.sh/termination]
  ownerReferences:
  - {apiVersion: karpenter.sh/v1beta1, kind: NodePool, name: staging, uid: 4b9f0c8e-0000-4000-8000-000000000002, blockOwnerDeletion: true}
spec:
  requirements:
  - {key: karpenter.k8s.aws/instance-category, operator: In, values: [t, m, r, c]}
  - {key: node.kubernetes.io/instance-type, operator: In, values: [m5.large]}
  resources: {requests: {cpu: 1100m, memory: 2Gi, pods: "4"}}
  kubelet: {maxPods: 110}
  nodeClassRef: {name: default}
status:
  nodeName: ip-10-0-1-23.us-west-2.compute.internal
  providerID: aws:///us-west-2a/i-0123456789abcdef0
  imageID: ami-0abcdef1234567890
  capacity: {cpu: "2", memory: 7910Mi, pods: "110"}
  allocatable: {cpu: 1930m, memory: 7220Mi, pods: "110"}
  conditions:
  - {type: Launched, status: "True", severity: Info, lastTransitionTime: "2026-01-01T00:00:00Z"}
  - {type: Initialized, status: "True", lastTransitionTime: "2026-01-01T00:01:00Z", reason: Ready}
  - {type: Drifted, status: "False", severity: Info, reason: NotDrifted, message: "not drifted"}
"#;

    const POOL_036: &str = r#"
apiVersion: karpenter.sh/v1beta1
kind: NodePool
metadata: {name: staging}
spec:
  template:
    spec:
      nodeClassRef: {apiVersion: karpenter.k8s.aws/v1beta1, kind: EC2NodeClass, name: default}
      terminationGracePeriod: 1h
  disruption: {consolidationPolicy: WhenUnderutilized, expireAfter: Never}
"#;

    const AWS: (&str, &str) = ("karpenter.k8s.aws", "EC2NodeClass");

    fn claim() -> NodeClaim {
        serde_yaml::from_str(CLAIM_036).unwrap()
    }

    fn pool() -> V1NodePool {
        let old: crate::api::v1beta1::NodePool = serde_yaml::from_str(POOL_036).unwrap();
        let ConvertedNodePool { node_pool, .. } = convert_to_v1(&old).unwrap();
        node_pool
    }

    #[test]
    fn a_036_claim_becomes_v1_keeping_what_identifies_it() {
        let old = claim();
        let new = convert_node_claim(&old, Some(&pool()), AWS).unwrap();
        // What ties the claim to its node and instance, and what protects it, is untouched.
        assert_eq!(new.metadata.uid, old.metadata.uid);
        assert_eq!(new.metadata.resource_version.as_deref(), Some("1234"));
        assert_eq!(new.metadata.finalizers, old.metadata.finalizers);
        assert_eq!(new.metadata.owner_references, old.metadata.owner_references);
        assert_eq!(new.metadata.labels, old.metadata.labels);
        let (old_status, new_status) = (old.status.as_ref().unwrap(), new.status.as_ref().unwrap());
        assert_eq!(new_status.provider_id, old_status.provider_id);
        assert_eq!(new_status.node_name, old_status.node_name);
        assert_eq!(new_status.allocatable, old_status.allocatable);
        // Knative conditions become metav1 ones, filling what v1 requires.
        let conditions: Vec<(&str, &str, &str, &str)> = new_status
            .conditions
            .iter()
            .map(|c| {
                (
                    c.type_.as_str(),
                    c.status.as_str(),
                    c.reason.as_str(),
                    c.message.as_str(),
                )
            })
            .collect();
        assert_eq!(
            conditions,
            [
                ("Launched", "True", "Launched", CONVERTED_MESSAGE),
                ("Initialized", "True", "Ready", CONVERTED_MESSAGE),
                ("Drifted", "False", "NotDrifted", "not drifted"),
            ]
        );
        assert_eq!(
            new_status.conditions[1].last_transition_time.0.to_string(),
            "2026-01-01T00:01:00Z"
        );
        assert_eq!(
            new_status.conditions[2].last_transition_time,
            old.metadata.creation_timestamp.clone().unwrap()
        );
        assert_eq!(new.spec.requirements, old.spec.requirements);
        assert_eq!(new.spec.resources, old.spec.resources);
        assert_eq!(
            new.spec.node_class_ref,
            v1::NodeClassReference {
                group: "karpenter.k8s.aws".into(),
                kind: "EC2NodeClass".into(),
                name: "default".into(),
            }
        );
        // The pool's lifetime and grace period, as 0.36 applied them.
        assert!(new.spec.expire_after.is_never());
        assert_eq!(
            new.spec
                .termination_grace_period
                .as_ref()
                .map(|d| d.as_str()),
            Some("1h")
        );
        let annotations = new.metadata.annotations.as_ref().unwrap();
        assert_eq!(
            annotations[NODE_CLASS_REFERENCE_ANNOTATION_KEY],
            r#"{"name":"default"}"#
        );
        assert_eq!(
            annotations[KUBELET_COMPATIBILITY_ANNOTATION_KEY],
            r#"{"maxPods":110}"#
        );
        // The 0.36 hash stays; its version (v2) differs from ours, so it never counts as drift.
        assert_eq!(annotations["karpenter.sh/nodepool-hash-version"], "v2");
        // And the result is a valid v1 body.
        let json = serde_json::to_value(&new).unwrap();
        assert_eq!(json["apiVersion"], "karpenter.sh/v1");
        assert_eq!(json["spec"]["nodeClassRef"]["group"], "karpenter.k8s.aws");
    }

    #[test]
    fn without_its_pool_a_claim_does_not_expire_and_an_explicit_class_is_kept() {
        let mut old = claim();
        old.spec.node_class_ref = NodeClassReference {
            kind: "MyNodeClass".into(),
            name: "gpu".into(),
            api_version: "example.com/v1alpha1".into(),
        };
        let new = convert_node_claim(&old, None, AWS).unwrap();
        assert!(new.spec.expire_after.is_never());
        assert_eq!(new.spec.termination_grace_period, None);
        assert_eq!(new.spec.node_class_ref.group, "example.com");
        assert_eq!(new.spec.node_class_ref.kind, "MyNodeClass");
    }

    #[test]
    fn a_malformed_api_version_is_an_error_naming_it() {
        let mut old = claim();
        old.spec.node_class_ref.api_version = "a/b/c".into();
        let err = convert_node_claim(&old, None, AWS).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"spec.nodeClassRef.apiVersion "a/b/c" is not of the form group/version"#
        );
    }
}

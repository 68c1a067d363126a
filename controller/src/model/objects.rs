//! Karpenter's custom resources as the API server hands them out, read into the v1 types.
//!
//! The CRDs serve v1 (stored) and v1beta1 without a conversion webhook, so the API server only
//! relabels `apiVersion`: a NodePool written as v1beta1 (as the seed deployment writes it) comes
//! back from the v1 endpoint with its v1beta1 body. The controller therefore watches NodePools
//! and EC2NodeClasses untyped and decides the shape from the body, converting v1beta1 in
//! process. A malformed object is an error for that object only; it never stops the watch.

use karpenter_core::api::{self, KubeletConfiguration, NodeClaim};
use karpenter_providers::aws::nodeclass::{self, EC2NodeClass};
use kube_client::api::{ApiResource, DynamicObject};
use kube_client::core::GroupVersionKind;
use serde_json::Value;

/// The NodePool resource at its storage version.
pub fn node_pool_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(api::GROUP, "v1", "NodePool"))
}

/// The NodePool resource to write `obj` through: v1beta1 for a v1beta1-shaped body (there is
/// no conversion webhook, so the API server would validate it against the v1 schema and
/// refuse even a metadata patch: `nodeClassRef.group` is required there), else v1.
pub fn node_pool_resource_for(obj: &DynamicObject) -> ApiResource {
    let version = if is_v1beta1_node_pool(&body(obj)) {
        "v1beta1"
    } else {
        "v1"
    };
    ApiResource::from_gvk(&GroupVersionKind::gvk(api::GROUP, version, "NodePool"))
}

/// The EC2NodeClass resource to write `obj` through (see [`node_pool_resource_for`]).
pub fn node_class_resource_for(obj: &DynamicObject) -> ApiResource {
    let version = if is_v1beta1_node_class(&body(obj)) {
        "v1beta1"
    } else {
        "v1"
    };
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        nodeclass::GROUP,
        version,
        "EC2NodeClass",
    ))
}

/// The EC2NodeClass resource at its storage version.
pub fn node_class_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        nodeclass::GROUP,
        "v1",
        "EC2NodeClass",
    ))
}

/// The NodeClaim resource at its storage version.
pub fn node_claim_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(api::GROUP, "v1", "NodeClaim"))
}

/// The NodeClaim resource at v1beta1 (served, for the claims Karpenter 0.3x wrote).
pub fn node_claim_resource_v1beta1() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(api::GROUP, "v1beta1", "NodeClaim"))
}

/// True when a NodeClaim body has Karpenter 0.3x's v1beta1 shape: its `nodeClassRef` has no
/// `group` (v1 requires one).
pub fn is_v1beta1_node_claim(body: &Value) -> bool {
    body["spec"]["nodeClassRef"].get("group").is_none()
}

/// Reads a NodeClaim body as v1. A v1beta1 body (Karpenter 0.3x) is converted as
/// [`api::convert_node_claim`] does without its pool, so it does not expire until the claim
/// migration rewrites it with its pool's `expireAfter` (moments after the leader starts);
/// anything that does not decode is an error naming the object.
pub fn read_node_claim(obj: &DynamicObject) -> Result<NodeClaim, String> {
    v1_node_claim(obj, None)
}

/// `obj` as a v1 NodeClaim; a v1beta1 body is converted with `pool` (its NodePool) supplying
/// `expireAfter` and `terminationGracePeriod`. The error names the object and the field.
pub fn v1_node_claim(
    obj: &DynamicObject,
    pool: Option<&api::NodePool>,
) -> Result<NodeClaim, String> {
    let name = obj.metadata.name.clone().unwrap_or_default();
    let mut value = body(obj);
    if is_v1beta1_node_claim(&value) {
        value["apiVersion"] = format!("{}/v1beta1", api::GROUP).into();
        value["kind"] = "NodeClaim".into();
        let old: api::v1beta1::NodeClaim = serde_json::from_value(value)
            .map_err(|e| format!("NodeClaim/{name} (v1beta1): {e}"))?;
        return api::convert_node_claim(&old, pool, (nodeclass::GROUP, "EC2NodeClass"))
            .map_err(|e| format!("NodeClaim/{name} (v1beta1): {e}"));
    }
    value["apiVersion"] = format!("{}/v1", api::GROUP).into();
    value["kind"] = "NodeClaim".into();
    serde_json::from_value(value).map_err(|e| format!("NodeClaim/{name}: {e}"))
}

/// A NodeClaim with only `obj`'s metadata: the stand-in that removes a claim that never
/// decoded from the store when it is deleted.
pub fn node_claim_placeholder(obj: &DynamicObject) -> NodeClaim {
    NodeClaim {
        metadata: obj.metadata.clone(),
        spec: api::NodeClaimSpec {
            taints: Vec::new(),
            startup_taints: Vec::new(),
            requirements: Vec::new(),
            resources: Default::default(),
            node_class_ref: api::NodeClassReference {
                group: String::new(),
                kind: String::new(),
                name: String::new(),
            },
            termination_grace_period: None,
            expire_after: api::nodeclaim::default_expire_after(),
        },
        status: None,
    }
}

/// A NodePool in v1 form, with the kubelet settings a v1beta1 body carried.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolView {
    /// The v1 NodePool.
    pub node_pool: api::NodePool,
    /// `spec.template.spec.kubelet` of a v1beta1 body (v1 moved kubelet to the node class).
    pub kubelet: Option<KubeletConfiguration>,
    /// True when the body was v1beta1.
    pub converted: bool,
}

impl PoolView {
    /// The pool's name.
    pub fn name(&self) -> &str {
        self.node_pool.metadata.name.as_deref().unwrap_or_default()
    }

    /// Name of the EC2NodeClass the pool's template references.
    pub fn node_class(&self) -> &str {
        &self.node_pool.spec.template.spec.node_class_ref.name
    }
}

/// Why a custom resource could not be read. Names the object and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{object}: {message}")]
pub struct ObjectError {
    /// `NodePool/default`.
    pub object: String,
    /// What is wrong, naming the field where serde does.
    pub message: String,
}

fn body(obj: &DynamicObject) -> Value {
    let mut v = obj.data.clone();
    if let Value::Object(map) = &mut v {
        map.insert(
            "metadata".into(),
            serde_json::to_value(&obj.metadata).unwrap_or(Value::Null),
        );
    }
    v
}

/// True when a NodePool body has the v1beta1 shape: its `nodeClassRef` names an `apiVersion`
/// instead of a `group`, or it has fields only v1beta1 has (template kubelet,
/// `disruption.expireAfter`, `WhenUnderutilized`).
pub fn is_v1beta1_node_pool(body: &Value) -> bool {
    let spec = &body["spec"];
    let class_ref = &spec["template"]["spec"]["nodeClassRef"];
    (class_ref.get("apiVersion").is_some() && class_ref.get("group").is_none())
        || spec["template"]["spec"].get("kubelet").is_some()
        || spec["disruption"].get("expireAfter").is_some()
        || spec["disruption"]["consolidationPolicy"] == "WhenUnderutilized"
}

/// Reads a NodePool body of either version into a [`PoolView`].
pub fn read_node_pool(obj: &DynamicObject) -> Result<PoolView, ObjectError> {
    let name = obj.metadata.name.clone().unwrap_or_default();
    let err = |message: String| ObjectError {
        object: format!("NodePool/{name}"),
        message,
    };
    let value = body(obj);
    if is_v1beta1_node_pool(&value) {
        let old: api::v1beta1::NodePool =
            serde_json::from_value(value).map_err(|e| err(format!("as v1beta1: {e}")))?;
        let converted = api::v1beta1::convert_to_v1_with_default_node_class(
            &old,
            nodeclass::GROUP,
            "EC2NodeClass",
        )
        .map_err(|e| err(format!("cannot convert v1beta1 to v1: {e}")))?;
        Ok(PoolView {
            node_pool: converted.node_pool,
            kubelet: converted.kubelet.filter(|k| !k.is_empty()),
            converted: true,
        })
    } else {
        let node_pool: api::NodePool =
            serde_json::from_value(value).map_err(|e| err(e.to_string()))?;
        Ok(PoolView {
            node_pool,
            kubelet: None,
            converted: false,
        })
    }
}

/// True when an EC2NodeClass body has the v1beta1 shape: no `amiSelectorTerms` (v1 requires
/// them; v1beta1 derived the AMIs from `amiFamily`) or the `Ubuntu` family v1 dropped.
pub fn is_v1beta1_node_class(body: &Value) -> bool {
    let spec = &body["spec"];
    let no_terms = spec["amiSelectorTerms"]
        .as_array()
        .is_none_or(|terms| terms.is_empty());
    no_terms || spec["amiFamily"] == "Ubuntu"
}

/// Reads an EC2NodeClass body of either version as v1. `pool_kubelet` (a v1beta1 NodePool's
/// kubelet settings) is put on the class, as Karpenter v1's conversion does, and wins over the
/// class's own kubelet.
pub fn read_node_class(
    obj: &DynamicObject,
    pool_kubelet: Option<&KubeletConfiguration>,
) -> Result<EC2NodeClass, ObjectError> {
    let name = obj.metadata.name.clone().unwrap_or_default();
    let err = |message: String| ObjectError {
        object: format!("EC2NodeClass/{name}"),
        message,
    };
    let value = body(obj);
    let mut class = if is_v1beta1_node_class(&value) {
        let old: nodeclass::v1beta1::EC2NodeClass =
            serde_json::from_value(value).map_err(|e| err(format!("as v1beta1: {e}")))?;
        nodeclass::v1beta1::convert_to_v1(&old, pool_kubelet.cloned())
    } else {
        serde_json::from_value::<EC2NodeClass>(value).map_err(|e| err(e.to_string()))?
    };
    if let Some(k) = pool_kubelet.filter(|k| !k.is_empty()) {
        class.spec.kubelet = Some(k.clone());
    }
    Ok(class)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dynamic(yaml: &str) -> DynamicObject {
        serde_yaml::from_str(yaml).expect("test YAML parses")
    }

    #[test]
    fn a_v1beta1_shaped_pool_is_written_through_v1beta1_and_a_v1_one_through_v1() {
        let old = dynamic(
            r#"
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {name: staging}
spec:
  template:
    spec:
      nodeClassRef: {apiVersion: karpenter.k8s.aws/v1beta1, kind: EC2NodeClass, name: staging}
      requirements: []
  disruption: {consolidationPolicy: WhenUnderutilized, expireAfter: 720h}
"#,
        );
        assert_eq!(node_pool_resource_for(&old).version, "v1beta1");
        let new = dynamic(
            r#"
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {name: default}
spec:
  template:
    spec:
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}
      requirements: []
"#,
        );
        assert_eq!(node_pool_resource_for(&new).version, "v1");
    }

    #[test]
    fn a_v1beta1_node_claim_is_converted_and_a_broken_one_is_an_error_naming_it() {
        let old = dynamic(
            r#"
apiVersion: karpenter.sh/v1
kind: NodeClaim
metadata: {name: default-abc}
spec:
  nodeClassRef: {apiVersion: karpenter.k8s.aws/v1beta1, kind: EC2NodeClass, name: default}
  requirements: [{key: node.kubernetes.io/instance-type, operator: In, values: [m5.large]}]
  kubelet: {maxPods: 110}
status: {providerID: 'aws:///us-east-1a/i-1'}
"#,
        );
        let claim = read_node_claim(&old).expect("v1beta1 converts");
        assert_eq!(claim.spec.node_class_ref.group, "karpenter.k8s.aws");
        // Read before its migration, it never expires.
        assert!(claim.spec.expire_after.is_never());
        assert_eq!(claim.spec.node_class_ref.name, "default");
        assert_eq!(
            claim.status.and_then(|s| s.provider_id).as_deref(),
            Some("aws:///us-east-1a/i-1")
        );

        let broken = dynamic(
            r#"
apiVersion: karpenter.sh/v1
kind: NodeClaim
metadata: {name: broken}
spec: {requirements: 7}
"#,
        );
        let err = read_node_claim(&broken).expect_err("does not decode");
        // No nodeClassRef.group: read as v1beta1, and the error says so.
        assert!(
            err.starts_with("NodeClaim/broken (v1beta1): ") && err.contains("expected a sequence"),
            "{err}"
        );
        let stand_in = node_claim_placeholder(&broken);
        assert_eq!(stand_in.metadata.name.as_deref(), Some("broken"));
    }

    const SEED_POOL: &str = r#"
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {name: staging}
spec:
  template:
    spec:
      nodeClassRef: {apiVersion: karpenter.k8s.aws/v1beta1, kind: EC2NodeClass, name: staging}
      requirements:
        - {key: karpenter.k8s.aws/instance-category, operator: In, values: [t, m, r, c]}
      kubelet: {maxPods: 110}
  disruption:
    consolidationPolicy: WhenUnderutilized
    expireAfter: 720h
"#;

    #[test]
    fn a_v1beta1_body_served_as_v1_is_converted_and_keeps_its_kubelet() {
        let view = read_node_pool(&dynamic(SEED_POOL)).expect("reads");
        assert!(view.converted);
        assert_eq!(view.name(), "staging");
        assert_eq!(view.node_class(), "staging");
        assert_eq!(
            view.node_pool.spec.template.spec.node_class_ref.group,
            "karpenter.k8s.aws"
        );
        assert_eq!(view.kubelet.and_then(|k| k.max_pods), Some(110));
    }

    #[test]
    fn a_v1_body_is_read_as_is() {
        let view = read_node_pool(&dynamic(
            r#"
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {name: default}
spec:
  template:
    spec:
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}
      requirements: []
"#,
        ))
        .expect("reads");
        assert!(!view.converted);
        assert_eq!(view.kubelet, None);
    }

    #[test]
    fn a_broken_pool_names_the_object() {
        let e = read_node_pool(&dynamic(
            "apiVersion: karpenter.sh/v1\nkind: NodePool\nmetadata: {name: bad}\nspec: {template: {spec: {nodeClassRef: {group: g, kind: k, name: n}, requirements: 5}}}\n",
        ))
        .unwrap_err();
        assert_eq!(e.object, "NodePool/bad");
        assert!(e.message.contains("sequence"), "{e}");
    }

    #[test]
    fn v1beta1_node_class_gets_an_alias_and_the_pool_kubelet() {
        let class = dynamic(
            r#"
apiVersion: karpenter.k8s.aws/v1
kind: EC2NodeClass
metadata: {name: staging}
spec:
  amiFamily: AL2
  role: KarpenterNodeRole
  subnetSelectorTerms: [{tags: {karpenter.sh/discovery: c}}]
  securityGroupSelectorTerms: [{tags: {karpenter.sh/discovery: c}}]
  userData: |
    #!/bin/bash
    export ENABLE_PREFIX_DELEGATION=true
"#,
        );
        let kubelet = KubeletConfiguration {
            max_pods: Some(110),
            ..Default::default()
        };
        let v1 = read_node_class(&class, Some(&kubelet)).expect("reads");
        assert_eq!(
            v1.spec.ami_selector_terms[0].alias.as_deref(),
            Some("al2@latest")
        );
        assert_eq!(v1.spec.kubelet.and_then(|k| k.max_pods), Some(110));
    }
}

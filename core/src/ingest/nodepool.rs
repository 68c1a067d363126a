//! `karpenter.sh/v1` NodePool → scheduler [`NodePoolInput`].

use crate::api;
use crate::instance_type::InstanceType;
use crate::labels;
use crate::requirements::{Requirement, Requirements};
use crate::resources::{self, Resources};
use crate::snapshot::NodePoolInput;

use super::IngestError;
use super::convert::{quantity, requirement, taints_from_k8s};

/// Compiles a NodePool for the scheduler.
///
/// The pool is validated first ([`api::validate_node_pool`]); if it is invalid, every
/// validation problem is returned and nothing else is looked at. Then:
///
/// * requirements = template requirements (including Karpenter's `Gte`/`Lte` and `minValues`)
///   ∩ template labels as `In [value]` ∩ `karpenter.sh/nodepool In [name]`;
/// * weight defaults to 0; taints and startup taints are converted;
/// * limits are parsed into resource slots, unlimited (`i64::MAX`) where not given;
///   `limits.nodes` (Karpenter v1.10+) caps the pool's node count instead (`node_limit`, a
///   fractional value rounded up as `Quantity.Value()` does); a limit on any other resource
///   without a slot is an error naming `spec.limits[<resource>]`, because silently ignoring it
///   would launch past the user's cap;
/// * `usage` (capacity of the pool's current nodes) and `instance_types` are stored as given.
pub fn compile_node_pool(
    np: &api::NodePool,
    instance_types: Vec<InstanceType>,
    usage: Resources,
) -> Result<NodePoolInput, Vec<IngestError>> {
    let name = np.metadata.name.clone().unwrap_or_default();
    let object = format!("NodePool/{name}");
    if let Err(errs) = api::validate_node_pool(np) {
        return Err(errs
            .into_iter()
            .map(|e| IngestError::new(e.object, e.field, e.message))
            .collect());
    }
    let mut errors = Vec::new();
    let template = &np.spec.template;

    let mut reqs = Requirements::new();
    for (i, r) in template.spec.requirements.iter().enumerate() {
        let field = format!("spec.template.spec.requirements[{i}]");
        match requirement(&object, &field, r.operator.as_str(), &r.values, true) {
            Ok(mut req) => {
                req.min_values = r.min_values.map(|m| m.max(0) as usize);
                reqs.add(&r.key, req);
            }
            Err(e) => errors.push(e),
        }
    }
    for (k, v) in &template.metadata.labels {
        reqs.add(k, Requirement::single(v));
    }
    reqs.add(labels::NODE_POOL, Requirement::single(&name));

    let taints = taints_from_k8s(&object, "spec.template.spec.taints", &template.spec.taints)
        .unwrap_or_else(|e| {
            errors.push(e);
            Vec::new()
        });
    let startup_taints = taints_from_k8s(
        &object,
        "spec.template.spec.startupTaints",
        &template.spec.startup_taints,
    )
    .unwrap_or_else(|e| {
        errors.push(e);
        Vec::new()
    });

    let mut limits = Resources::UNLIMITED;
    let mut node_limit = None;
    for (resource, q) in np.spec.limits.iter().flatten() {
        // Same path style as `api::validation` uses for map keys.
        let field = format!("spec.limits[{resource}]");
        if resource == resources::NODES {
            match quantity(&object, &field, resource, q) {
                // Validation has refused negative quantities.
                Ok(n) => node_limit = Some(usize::try_from(n).unwrap_or(0)),
                Err(e) => errors.push(e),
            }
            continue;
        }
        let Some(slot) = resources::slot(resource) else {
            errors.push(IngestError::new(
                &object,
                field,
                format!(
                    "limits on {resource:?} are not supported (supported: {}, {})",
                    resources::NODES,
                    resources::RESOURCE_NAMES.join(", ")
                ),
            ));
            continue;
        };
        match quantity(&object, &field, resource, q) {
            Ok(amount) => limits.0[slot] = amount,
            Err(e) => errors.push(e),
        }
    }

    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(NodePoolInput {
        name,
        weight: np.spec.weight.unwrap_or(0),
        requirements: reqs,
        labels: template.metadata.labels.clone(),
        taints,
        startup_taints,
        limits,
        usage,
        node_limit,
        instance_types,
        unavailable: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::requirements::Operator;
    use crate::resources::{CPU, MEMORY, NVIDIA_GPU};
    use crate::snapshot::TaintEffect;

    const POOL: &str = r#"
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {name: general}
spec:
  weight: 10
  limits: {cpu: "100", memory: 400Gi}
  template:
    metadata:
      labels: {team: web}
    spec:
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}
      taints: [{key: dedicated, value: web, effect: NoSchedule}]
      startupTaints: [{key: example.com/agent-not-ready, effect: NoExecute}]
      requirements:
        - {key: node.kubernetes.io/instance-type, operator: In, values: [m5.large, m5.xlarge, c5.large], minValues: 2}
        - {key: karpenter.k8s.aws/instance-generation, operator: Gte, values: ["5"]}
        - {key: karpenter.k8s.aws/instance-cpu, operator: Lte, values: ["16"]}
        - {key: karpenter.sh/capacity-type, operator: NotIn, values: [spot]}
"#;

    fn pool(yaml: &str) -> api::NodePool {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn compiles_requirements_taints_limits() {
        let usage = Resources::from_pairs(&[(CPU, 4000)]);
        let np = compile_node_pool(&pool(POOL), Vec::new(), usage).unwrap();
        assert_eq!(np.name, "general");
        assert_eq!(np.weight, 10);
        let r = &np.requirements;
        let it = r.get(labels::INSTANCE_TYPE).unwrap();
        assert_eq!(it.min_values, Some(2));
        assert_eq!(it.values().len(), 3);
        let generation = r.get(labels::aws::INSTANCE_GENERATION).unwrap();
        assert!(generation.has("5") && generation.has("7") && !generation.has("4"));
        let cpu = r.get(labels::aws::INSTANCE_CPU).unwrap();
        assert!(cpu.has("16") && !cpu.has("32"));
        assert_eq!(
            r.get(labels::CAPACITY_TYPE).unwrap().operator(),
            Operator::NotIn
        );
        assert_eq!(r.get("team").unwrap().to_string(), "In [web]");
        assert_eq!(
            r.get(labels::NODE_POOL).unwrap().to_string(),
            "In [general]"
        );
        assert_eq!(np.labels["team"], "web");
        assert_eq!(np.taints[0].to_string(), "dedicated=web:NoSchedule");
        assert_eq!(np.startup_taints[0].effect, TaintEffect::NoExecute);
        assert_eq!(np.limits.0[CPU], 100_000);
        assert_eq!(np.limits.0[MEMORY], 400 << 30);
        assert_eq!(
            np.limits.0[NVIDIA_GPU],
            i64::MAX,
            "unlimited where not given"
        );
        assert_eq!(np.usage, usage);
    }

    #[test]
    fn weight_defaults_to_zero() {
        let mut p = pool(POOL);
        p.spec.weight = None;
        p.spec.limits = None;
        let np = compile_node_pool(&p, Vec::new(), Resources::ZERO).unwrap();
        assert_eq!(np.weight, 0);
        assert_eq!(np.limits, Resources::UNLIMITED);
    }

    #[test]
    fn node_limit_caps_the_count_not_a_resource() {
        let mut p = pool(POOL);
        let q = |s: &str| k8s_openapi::apimachinery::pkg::api::resource::Quantity(s.into());
        p.spec
            .limits
            .as_mut()
            .unwrap()
            .insert("nodes".into(), q("3"));
        let np = compile_node_pool(&p, Vec::new(), Resources::ZERO).unwrap();
        assert_eq!(np.node_limit, Some(3));
        assert_eq!(np.limits.0[CPU], 100_000, "resource limits unchanged");
        assert_eq!(np.limits.0[resources::PODS], i64::MAX);
        // Rounded up, like Quantity.Value().
        p.spec.limits = Some([("nodes".to_string(), q("2.5"))].into());
        let np = compile_node_pool(&p, Vec::new(), Resources::ZERO).unwrap();
        assert_eq!(np.node_limit, Some(3));
        assert_eq!(np.limits, Resources::UNLIMITED);
        p.spec.limits = None;
        let np = compile_node_pool(&p, Vec::new(), Resources::ZERO).unwrap();
        assert_eq!(np.node_limit, None);
    }

    #[test]
    fn deprecated_keys_in_requirements_and_labels_are_read_as_stable() {
        let mut p = pool(POOL);
        p.spec.template.spec.requirements[0].key = "beta.kubernetes.io/instance-type".into();
        p.spec
            .template
            .metadata
            .labels
            .insert("beta.kubernetes.io/arch".into(), "arm64".into());
        let np = compile_node_pool(&p, Vec::new(), Resources::ZERO).unwrap();
        let r = &np.requirements;
        assert_eq!(r.get(labels::INSTANCE_TYPE).unwrap().values().len(), 3);
        assert_eq!(r.get(labels::INSTANCE_TYPE).unwrap().min_values, Some(2));
        assert_eq!(r.get(labels::ARCH).unwrap().to_string(), "In [arm64]");
        assert!(r.get("beta.kubernetes.io/instance-type").is_none());
        // The node keeps the label as written.
        assert_eq!(np.labels["beta.kubernetes.io/arch"], "arm64");
    }

    #[test]
    fn unknown_limit_is_an_error_naming_the_field() {
        let mut p = pool(POOL);
        let limits = p.spec.limits.as_mut().unwrap();
        limits.insert(
            "example.com/widgets".into(),
            k8s_openapi::apimachinery::pkg::api::resource::Quantity("5".into()),
        );
        let errs = compile_node_pool(&p, Vec::new(), Resources::ZERO).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].object, "NodePool/general");
        assert_eq!(errs[0].field, "spec.limits[example.com/widgets]");
    }

    #[test]
    fn validation_errors_are_mapped() {
        let mut p = pool(POOL);
        p.spec.weight = Some(1000);
        p.spec
            .template
            .metadata
            .labels
            .insert("kubernetes.io/hostname".into(), "x".into());
        let errs = compile_node_pool(&p, Vec::new(), Resources::ZERO).unwrap_err();
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert!(fields.contains(&"spec.weight"), "{errs:?}");
        assert!(
            errs.iter().all(|e| e.object == "NodePool/general"),
            "{errs:?}"
        );
        assert!(errs.len() >= 2, "{errs:?}");
    }
}

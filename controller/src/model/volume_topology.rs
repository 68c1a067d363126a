//! Volume topology, as Karpenter does it: a pending pod's persistent volumes restrict where its
//! new node may go, so their zone (or other topology) requirements are added to the pod's
//! required node affinity before it is scheduled.
//!
//! - a claim bound to a PersistentVolume: the PV's `spec.nodeAffinity.required`, first term
//!   (terms are ORed; Karpenter takes the first), without `kubernetes.io/hostname` (no new node
//!   can have the name of an existing one);
//! - an unbound claim: its StorageClass's `allowedTopologies`, first term, each expression as
//!   `In` (a `WaitForFirstConsumer` class is provisioned where the pod lands, so the allowed
//!   topologies are all that binds it);
//! - a generic ephemeral volume whose claim does not exist yet: its template's StorageClass.
//!
//! A claim, volume or named StorageClass that does not exist makes the pod unschedulable for
//! now: it is left out with an error naming the pod and the field, as Karpenter ignores pods
//! whose claims do not validate.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    PersistentVolume, PersistentVolumeClaim, Pod,
};
use k8s_openapi::api::storage::v1::StorageClass;
use karpenter_core::ingest::IngestError;

/// `kubernetes.io/hostname`.
const HOSTNAME: &str = "kubernetes.io/hostname";
/// The annotation that marks the cluster's default StorageClass.
const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";

/// The storage objects of the cluster, indexed for lookups.
#[derive(Debug, Default)]
pub struct VolumeObjects {
    claims: BTreeMap<(String, String), Arc<PersistentVolumeClaim>>,
    volumes: BTreeMap<String, Arc<PersistentVolume>>,
    classes: BTreeMap<String, Arc<StorageClass>>,
}

impl VolumeObjects {
    /// Indexes claims by (namespace, name), volumes and classes by name.
    pub fn new(
        claims: &[Arc<PersistentVolumeClaim>],
        volumes: &[Arc<PersistentVolume>],
        classes: &[Arc<StorageClass>],
    ) -> VolumeObjects {
        VolumeObjects {
            claims: claims
                .iter()
                .filter_map(|c| {
                    let ns = c.metadata.namespace.clone()?;
                    Some(((ns, c.metadata.name.clone()?), c.clone()))
                })
                .collect(),
            volumes: volumes
                .iter()
                .filter_map(|v| Some((v.metadata.name.clone()?, v.clone())))
                .collect(),
            classes: classes
                .iter()
                .filter_map(|c| Some((c.metadata.name.clone()?, c.clone())))
                .collect(),
        }
    }

    /// The default StorageClass (annotated `is-default-class: "true"`); with several, the last
    /// by name, so the choice is deterministic.
    fn default_class(&self) -> Option<&StorageClass> {
        self.classes
            .values()
            .rfind(|c| {
                c.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                    .is_some_and(|v| v == "true")
            })
            .map(Arc::as_ref)
    }
}

/// The pod with its volumes' topology requirements added to every required node affinity
/// term (borrowed unchanged when its volumes add none).
pub fn inject_volume_topology<'p>(
    pod: &'p Pod,
    objects: &VolumeObjects,
) -> Result<Cow<'p, Pod>, IngestError> {
    let requirements = volume_requirements(pod, objects)?;
    if requirements.is_empty() {
        return Ok(Cow::Borrowed(pod));
    }
    let mut pod = pod.clone();
    let spec = pod.spec.get_or_insert_with(Default::default);
    let required = spec
        .affinity
        .get_or_insert_with(Affinity::default)
        .node_affinity
        .get_or_insert_with(NodeAffinity::default)
        .required_during_scheduling_ignored_during_execution
        .get_or_insert_with(NodeSelector::default);
    if required.node_selector_terms.is_empty() {
        required
            .node_selector_terms
            .push(NodeSelectorTerm::default());
    }
    // Terms are ORed: the volume must be reachable whichever term the node satisfies.
    for term in &mut required.node_selector_terms {
        term.match_expressions
            .get_or_insert_with(Vec::new)
            .extend(requirements.iter().cloned());
    }
    Ok(Cow::Owned(pod))
}

fn pod_ref(pod: &Pod) -> String {
    format!(
        "Pod/{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

/// Every requirement `pod`'s volumes impose.
pub fn volume_requirements(
    pod: &Pod,
    objects: &VolumeObjects,
) -> Result<Vec<NodeSelectorRequirement>, IngestError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let pod_name = pod.metadata.name.as_deref().unwrap_or("");
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default();
    let mut out = Vec::new();
    for (i, volume) in volumes.iter().enumerate() {
        let (claim_name, field, template_class) = if let Some(pvc) = &volume.persistent_volume_claim
        {
            let field = format!("spec.volumes[{i}].persistentVolumeClaim.claimName");
            (pvc.claim_name.clone(), field, None)
        } else if let Some(ephemeral) = &volume.ephemeral {
            // The ephemeral volume controller names the claim `<pod>-<volume>`.
            let template_class = ephemeral
                .volume_claim_template
                .as_ref()
                .map(|t| t.spec.storage_class_name.clone());
            let field = format!("spec.volumes[{i}].ephemeral");
            (format!("{pod_name}-{}", volume.name), field, template_class)
        } else {
            continue;
        };
        let claim = objects
            .claims
            .get(&(namespace.to_owned(), claim_name.clone()));
        let reqs = match (claim, template_class) {
            (Some(claim), _) => claim_requirements(claim, objects)
                .map_err(|m| IngestError::new(pod_ref(pod), &field, m))?,
            // Not created yet: the template's class decides where it can be provisioned.
            (None, Some(class)) => class_requirements(class.as_deref(), objects)
                .map_err(|m| IngestError::new(pod_ref(pod), &field, m))?,
            (None, None) => {
                return Err(IngestError::new(
                    pod_ref(pod),
                    field,
                    format!("PersistentVolumeClaim {namespace}/{claim_name} not found"),
                ));
            }
        };
        out.extend(reqs);
    }
    Ok(out)
}

fn claim_requirements(
    claim: &PersistentVolumeClaim,
    objects: &VolumeObjects,
) -> Result<Vec<NodeSelectorRequirement>, String> {
    let spec = claim.spec.as_ref();
    let claim_name = claim.metadata.name.as_deref().unwrap_or("");
    match spec.and_then(|s| s.volume_name.as_deref()) {
        Some(volume) if !volume.is_empty() => {
            let pv = objects.volumes.get(volume).ok_or_else(|| {
                format!("PersistentVolume {volume} bound to claim {claim_name} not found")
            })?;
            Ok(pv_requirements(pv))
        }
        _ => class_requirements(spec.and_then(|s| s.storage_class_name.as_deref()), objects),
    }
}

fn pv_requirements(pv: &PersistentVolume) -> Vec<NodeSelectorRequirement> {
    let first_term = pv
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
        .and_then(|r| r.node_selector_terms.first());
    first_term
        .and_then(|t| t.match_expressions.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.key != HOSTNAME)
        .collect()
}

fn class_requirements(
    class_name: Option<&str>,
    objects: &VolumeObjects,
) -> Result<Vec<NodeSelectorRequirement>, String> {
    let class = match class_name {
        // `""` asks explicitly for no class (static binding): no topology to add.
        Some("") => return Ok(Vec::new()),
        Some(name) => objects
            .classes
            .get(name)
            .map(Arc::as_ref)
            .ok_or_else(|| format!("StorageClass {name} not found"))?,
        None => match objects.default_class() {
            Some(c) => c,
            None => return Ok(Vec::new()),
        },
    };
    let first_term = class
        .allowed_topologies
        .as_ref()
        .and_then(|t| t.first())
        .and_then(|t| t.match_label_expressions.clone())
        .unwrap_or_default();
    Ok(first_term
        .into_iter()
        .map(|e| NodeSelectorRequirement {
            key: e.key,
            operator: "In".into(),
            values: Some(e.values),
        })
        .collect())
}

#[cfg(test)]
#[path = "volume_topology_tests.rs"]
mod tests;

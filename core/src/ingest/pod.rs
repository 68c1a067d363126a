//! Kubernetes `Pod` → scheduler [`Pod`](crate::snapshot::Pod).
//!
//! The conversion works on a pod spec plus the identity of whatever carries it, so that
//! workload templates ([`super::workloads`]) share it and report errors at their own paths
//! (`spec.template.spec.containers[0]…`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1 as k8s;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;

use super::IngestError;
use super::convert::{
    Amounts, amounts, label_selector_from_k8s, namespace_of, node_selector_term, object_name,
    toleration_from_k8s,
};
use crate::requirements::{Operator, Requirement};
use crate::resources;
use crate::snapshot::{
    self, HostPort, PodAffinityTerm, TopologySpreadConstraint, WhenUnsatisfiable,
};

/// Converts a Kubernetes pod into the scheduler's pod.
///
/// Requests are Kubernetes' effective requests (the larger of the summed containers and the
/// largest init-container step, sidecars included, plus overhead) plus one `pods` slot;
/// everything the scheduler filters or scores on is carried over. Volume topology
/// (`volume_requirements`) is left empty: it needs PVs and StorageClasses, which the caller
/// resolves.
pub fn pod_from_k8s(pod: &k8s::Pod) -> Result<snapshot::Pod, IngestError> {
    let object = object_name("Pod", &pod.metadata, true);
    let spec = pod
        .spec
        .as_ref()
        .ok_or_else(|| IngestError::new(&object, "spec", "missing"))?;
    let name = pod
        .metadata
        .name
        .as_deref()
        .ok_or_else(|| IngestError::new(&object, "metadata.name", "missing"))?;
    let mut out = pod_from_spec(
        &object,
        "spec",
        &namespace_of(&pod.metadata),
        name,
        pod.metadata.labels.clone().unwrap_or_default(),
        spec,
    )?;
    out.owner = owner_of(&pod.metadata);
    Ok(out)
}

/// The controlling owner reference (or the first one when none controls), as Karpenter picks
/// a pod's owner.
pub fn controlling_owner(meta: &meta::ObjectMeta) -> Option<&meta::OwnerReference> {
    let refs = meta.owner_references.as_deref().unwrap_or_default();
    refs.iter()
        .find(|r| r.controller == Some(true))
        .or_else(|| refs.first())
}

/// `Kind/name` of the [`controlling_owner`].
pub fn owner_of(meta: &meta::ObjectMeta) -> Option<String> {
    controlling_owner(meta).map(|r| format!("{}/{}", r.kind, r.name))
}

/// Converts a pod spec; `object` and `prefix` (`spec`, `spec.template.spec`) locate errors.
pub(crate) fn pod_from_spec(
    object: &str,
    prefix: &str,
    namespace: &str,
    name: &str,
    labels: BTreeMap<String, String>,
    spec: &k8s::PodSpec,
) -> Result<snapshot::Pod, IngestError> {
    let requests = effective_requests(object, prefix, spec)?;
    let mut pod = snapshot::Pod::new(namespace, name, requests.native);
    pod.other_requests = requests.other;
    pod.requests.0[resources::PODS] = pod.requests.0[resources::PODS].saturating_add(1);

    // Deprecated keys (`beta.kubernetes.io/arch`, …) become stable ones in `add`.
    for (k, v) in spec.node_selector.iter().flatten() {
        pod.node_selector.add(k, Requirement::single(v));
    }
    if let Some(aff) = &spec.affinity {
        convert_affinity(
            object,
            &format!("{prefix}.affinity"),
            aff,
            &labels,
            &mut pod,
        )?;
    }
    for (i, c) in spec
        .topology_spread_constraints
        .iter()
        .flatten()
        .enumerate()
    {
        let at = format!("{prefix}.topologySpreadConstraints[{i}]");
        pod.topology_spread
            .push(spread_constraint(object, &at, c, &labels)?);
    }
    for (i, t) in spec.tolerations.iter().flatten().enumerate() {
        let at = format!("{prefix}.tolerations[{i}]");
        pod.tolerations.push(toleration_from_k8s(object, &at, t)?);
    }
    pod.host_ports = host_ports(spec);
    pod.labels = labels;
    Ok(pod)
}

/// Kubernetes' effective pod requests (`resourcehelper.PodRequests`), without the `pods` slot:
///
/// * regular containers are summed;
/// * restartable init containers (sidecars, KEP-753) run alongside them, so they add to the
///   sum, and every later init container runs next to the sidecars started before it;
/// * the pod needs the larger of that sum and the largest init-container step;
/// * pod-level `spec.resources` requests, when set, replace the container aggregate for the
///   resources they name; then `spec.overhead` is added.
///
/// A container with only limits for a resource requests its limit (API-server defaulting).
pub(crate) fn effective_requests(
    object: &str,
    prefix: &str,
    spec: &k8s::PodSpec,
) -> Result<Amounts, IngestError> {
    let mut sum = Amounts::default();
    for (i, c) in spec.containers.iter().enumerate() {
        let at = format!("{prefix}.containers[{i}].resources");
        sum.add(&requests_with_defaults(object, &at, c.resources.as_ref())?);
    }
    let mut sidecars = Amounts::default();
    let mut init_max = Amounts::default();
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        let at = format!("{prefix}.initContainers[{i}].resources");
        let own = requests_with_defaults(object, &at, c.resources.as_ref())?;
        let step = if is_sidecar(c) {
            sum.add(&own);
            sidecars.add(&own);
            sidecars.clone()
        } else {
            let mut step = own;
            step.add(&sidecars);
            step
        };
        init_max.max_with(&step);
    }
    sum.max_with(&init_max);

    if let Some(pod_level) = &spec.resources {
        let at = format!("{prefix}.resources");
        let pod_reqs = requests_with_defaults(object, &at, Some(pod_level))?;
        let named = |name: &str| {
            [&pod_level.requests, &pod_level.limits]
                .iter()
                .any(|m| m.as_ref().is_some_and(|m| m.contains_key(name)))
        };
        // Pod-level resources only cover cpu, memory and hugepages; others stay per container.
        for slot in [resources::CPU, resources::MEMORY] {
            if named(resources::RESOURCE_NAMES[slot]) {
                sum.native.0[slot] = pod_reqs.native.0[slot];
            }
        }
        for (k, v) in &pod_reqs.other {
            if k.starts_with("hugepages-") {
                sum.other.insert(k.clone(), *v);
            }
        }
    }
    if let Some(overhead) = &spec.overhead {
        sum.add(&amounts(object, &format!("{prefix}.overhead"), overhead)?);
    }
    Ok(sum)
}

/// A container's requests, defaulted from its limits per resource (API-server defaulting).
/// `field` is the container's `….resources` path.
fn requests_with_defaults(
    object: &str,
    field: &str,
    res: Option<&k8s::ResourceRequirements>,
) -> Result<Amounts, IngestError> {
    let Some(res) = res else {
        return Ok(Amounts::default());
    };
    let mut out = Amounts::default();
    if let Some(limits) = &res.limits {
        let requested = |name: &str| res.requests.as_ref().is_some_and(|r| r.contains_key(name));
        let defaults = limits
            .iter()
            .filter(|(name, _)| !requested(name))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let from_limits = amounts(object, &format!("{field}.limits"), &defaults)?;
        out.add(&from_limits);
    }
    if let Some(requests) = &res.requests {
        out.add(&amounts(object, &format!("{field}.requests"), requests)?);
    }
    Ok(out)
}

/// A restartable init container (`restartPolicy: Always`) runs for the pod's whole life.
fn is_sidecar(c: &k8s::Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// Host ports of the long-running containers (regular ones and sidecars). With `hostNetwork`
/// every container port is a host port (Kubernetes defaults `hostPort` to `containerPort`).
fn host_ports(spec: &k8s::PodSpec) -> Vec<HostPort> {
    let host_network = spec.host_network == Some(true);
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| is_sidecar(c));
    let mut out: Vec<HostPort> = Vec::new();
    for c in spec.containers.iter().chain(sidecars) {
        for p in c.ports.iter().flatten() {
            let port = match p.host_port {
                Some(hp) if hp > 0 => hp,
                _ if host_network => p.container_port,
                _ => continue,
            };
            let hp = HostPort {
                ip: p.host_ip.clone().unwrap_or_default(),
                port,
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".to_string()),
            };
            if !out.contains(&hp) {
                out.push(hp);
            }
        }
    }
    out
}

fn convert_affinity(
    object: &str,
    field: &str,
    aff: &k8s::Affinity,
    labels: &BTreeMap<String, String>,
    pod: &mut snapshot::Pod,
) -> Result<(), IngestError> {
    if let Some(na) = &aff.node_affinity {
        let at = format!("{field}.nodeAffinity");
        if let Some(required) = &na.required_during_scheduling_ignored_during_execution {
            for (i, term) in required.node_selector_terms.iter().enumerate() {
                let t = format!(
                    "{at}.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[{i}]"
                );
                pod.required_node_affinity
                    .push(node_selector_term(object, &t, term)?);
            }
        }
        for (i, p) in na
            .preferred_during_scheduling_ignored_during_execution
            .iter()
            .flatten()
            .enumerate()
        {
            let t = format!("{at}.preferredDuringSchedulingIgnoredDuringExecution[{i}].preference");
            let reqs = node_selector_term(object, &t, &p.preference)?;
            pod.preferred_node_affinity.push((p.weight, reqs));
        }
    }
    if let Some(pa) = &aff.pod_affinity {
        let at = format!("{field}.podAffinity");
        let (req, pref) = affinity_terms(
            object,
            &at,
            pa.required_during_scheduling_ignored_during_execution
                .as_deref(),
            pa.preferred_during_scheduling_ignored_during_execution
                .as_deref(),
            labels,
        )?;
        pod.pod_affinity = req;
        pod.preferred_pod_affinity = pref;
    }
    if let Some(pa) = &aff.pod_anti_affinity {
        let at = format!("{field}.podAntiAffinity");
        let (req, pref) = affinity_terms(
            object,
            &at,
            pa.required_during_scheduling_ignored_during_execution
                .as_deref(),
            pa.preferred_during_scheduling_ignored_during_execution
                .as_deref(),
            labels,
        )?;
        pod.pod_anti_affinity = req;
        pod.preferred_pod_anti_affinity = pref;
    }
    Ok(())
}

type Terms = (Vec<PodAffinityTerm>, Vec<(i32, PodAffinityTerm)>);

fn affinity_terms(
    object: &str,
    field: &str,
    required: Option<&[k8s::PodAffinityTerm]>,
    preferred: Option<&[k8s::WeightedPodAffinityTerm]>,
    labels: &BTreeMap<String, String>,
) -> Result<Terms, IngestError> {
    let mut req = Vec::new();
    for (i, t) in required.unwrap_or_default().iter().enumerate() {
        let at = format!("{field}.requiredDuringSchedulingIgnoredDuringExecution[{i}]");
        req.push(affinity_term(object, &at, t, labels)?);
    }
    let mut pref = Vec::new();
    for (i, w) in preferred.unwrap_or_default().iter().enumerate() {
        let at =
            format!("{field}.preferredDuringSchedulingIgnoredDuringExecution[{i}].podAffinityTerm");
        pref.push((
            w.weight,
            affinity_term(object, &at, &w.pod_affinity_term, labels)?,
        ));
    }
    Ok((req, pref))
}

/// One pod (anti-)affinity term. `matchLabelKeys` / `mismatchLabelKeys` are merged into the
/// selector as `key In [own value]` / `key NotIn [own value]`, as the API server does on pod
/// creation; for pods that already went through it the merge is a no-op.
fn affinity_term(
    object: &str,
    field: &str,
    t: &k8s::PodAffinityTerm,
    labels: &BTreeMap<String, String>,
) -> Result<PodAffinityTerm, IngestError> {
    let mut selector = label_selector_from_k8s(
        object,
        &format!("{field}.labelSelector"),
        t.label_selector.as_ref(),
    )?;
    merge_label_keys(
        &mut selector,
        t.match_label_keys.as_deref(),
        Operator::In,
        labels,
    );
    merge_label_keys(
        &mut selector,
        t.mismatch_label_keys.as_deref(),
        Operator::NotIn,
        labels,
    );
    let namespace_selector = t
        .namespace_selector
        .as_ref()
        .map(|s| label_selector_from_k8s(object, &format!("{field}.namespaceSelector"), Some(s)))
        .transpose()?;
    Ok(PodAffinityTerm {
        // Kept as written, like spread keys (see `labels::normalize`).
        topology_key: t.topology_key.clone(),
        selector,
        namespaces: t.namespaces.clone().unwrap_or_default(),
        namespace_selector,
    })
}

fn merge_label_keys(
    selector: &mut snapshot::LabelSelector,
    keys: Option<&[String]>,
    op: Operator,
    labels: &BTreeMap<String, String>,
) {
    for key in keys.unwrap_or_default() {
        let Some(value) = labels.get(key) else {
            continue;
        };
        let expr = (key.clone(), op, vec![value.clone()]);
        if !selector.match_expressions.contains(&expr) {
            selector.match_expressions.push(expr);
        }
    }
}

/// One topology spread constraint; `matchLabelKeys` are merged into the selector with the
/// pod's own values, as kube-scheduler does (keys the pod lacks are ignored).
/// `nodeAffinityPolicy` / `nodeTaintsPolicy` are not carried: the snapshot has no field for
/// them and Karpenter uses the defaults (Honor / Ignore).
fn spread_constraint(
    object: &str,
    field: &str,
    c: &k8s::TopologySpreadConstraint,
    labels: &BTreeMap<String, String>,
) -> Result<TopologySpreadConstraint, IngestError> {
    let when_unsatisfiable = match c.when_unsatisfiable.as_str() {
        "DoNotSchedule" => WhenUnsatisfiable::DoNotSchedule,
        "ScheduleAnyway" => WhenUnsatisfiable::ScheduleAnyway,
        other => {
            return Err(IngestError::new(
                object,
                format!("{field}.whenUnsatisfiable"),
                format!("unknown value {other:?} (expected DoNotSchedule or ScheduleAnyway)"),
            ));
        }
    };
    if c.max_skew < 1 {
        return Err(IngestError::new(
            object,
            format!("{field}.maxSkew"),
            format!("must be greater than zero, got {}", c.max_skew),
        ));
    }
    let mut selector = label_selector_from_k8s(
        object,
        &format!("{field}.labelSelector"),
        c.label_selector.as_ref(),
    )?;
    merge_label_keys(
        &mut selector,
        c.match_label_keys.as_deref(),
        Operator::In,
        labels,
    );
    Ok(TopologySpreadConstraint {
        max_skew: c.max_skew,
        // Kept as written, deprecated keys included: Karpenter normalises node selector
        // requirements only, not topology keys (see `labels::normalize`).
        topology_key: c.topology_key.clone(),
        when_unsatisfiable,
        selector,
        min_domains: c.min_domains,
    })
}

/// True when the pod waits for a node: no `spec.nodeName`, phase `Pending` (or unset, as in a
/// manifest), and not being deleted. `karpenter simulate` uses this, since manifests carry no
/// scheduler conditions.
pub fn is_pending(pod: &k8s::Pod) -> bool {
    let bound = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("");
    !bound && matches!(phase, "" | "Pending") && pod.metadata.deletion_timestamp.is_none()
}

/// [`is_pending`] plus kube-scheduler has given up on it: condition `PodScheduled=False` with
/// reason `Unschedulable`, and no `status.nominatedNodeName` (a pod that is preempting others
/// will fit once they leave). This is Karpenter's `IsProvisionable` minus the owner checks;
/// the controller uses [`is_provisionable`], which adds them.
pub fn is_pending_unschedulable(pod: &k8s::Pod) -> bool {
    let Some(status) = &pod.status else {
        return false;
    };
    let unschedulable = status.conditions.iter().flatten().any(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    });
    let preempting = status
        .nominated_node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty());
    is_pending(pod) && unschedulable && !preempting
}

/// What the controller provisions for: [`is_pending_unschedulable`], not a DaemonSet pod (the
/// DaemonSet controller places those on every node, new ones included) and not a static
/// (mirror) pod owned by a Node.
pub fn is_provisionable(pod: &k8s::Pod) -> bool {
    is_pending_unschedulable(pod) && !is_daemonset_pod(pod) && !is_owned_by_kind(pod, "Node")
}

/// True when a DaemonSet owns the pod.
pub fn is_daemonset_pod(pod: &k8s::Pod) -> bool {
    is_owned_by_kind(pod, "DaemonSet")
}

/// True for pods that finished (`Succeeded` / `Failed`): they no longer use their node.
pub fn is_terminal(pod: &k8s::Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn is_owned_by_kind(pod: &k8s::Pod, kind: &str) -> bool {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.kind == kind)
}

#[cfg(test)]
#[path = "pod_tests.rs"]
mod tests;

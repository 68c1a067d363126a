//! Workload controllers → the pods they would create, for `karpenter simulate` and for
//! sizing before the pods exist.
//!
//! Pod names are deterministic so that reports and snapshots are stable: `<name>-<i>` for
//! `i` in `0..replicas`. That is exactly what a StatefulSet does (from `spec.ordinals.start`);
//! Deployments, ReplicaSets and Jobs really get random suffixes (`web-7d9f8-x2x4q`), which would
//! only add noise here. Pods take the template's labels, the workload's namespace (`default`
//! when unset) and `Kind/name` as owner.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::IngestError;
use super::convert::{namespace_of, object_name};
use super::pod::pod_from_spec;
use crate::snapshot::Pod;

/// Label the StatefulSet controller puts on each pod with its name.
pub const STATEFULSET_POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// Label the StatefulSet controller puts on each pod with its ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// Label the Job controller puts on its pods.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";

/// The pods of a Deployment: `spec.replicas` (default 1) copies of the template, named
/// `<name>-0`, `<name>-1`, ….
pub fn pods_from_deployment(d: &Deployment) -> Result<Vec<Pod>, IngestError> {
    let spec = d.spec.as_ref();
    let replicas = spec.and_then(|s| s.replicas);
    expand(
        "Deployment",
        &d.metadata,
        spec.map(|s| &s.template),
        replicas,
        0,
        |_, _| {},
    )
}

/// The pods of a ReplicaSet, like [`pods_from_deployment`].
pub fn pods_from_replica_set(rs: &ReplicaSet) -> Result<Vec<Pod>, IngestError> {
    let spec = rs.spec.as_ref();
    let replicas = spec.and_then(|s| s.replicas);
    let template = spec.and_then(|s| s.template.as_ref());
    expand("ReplicaSet", &rs.metadata, template, replicas, 0, |_, _| {})
}

/// The pods of a StatefulSet: `<name>-<ordinal>` from `spec.ordinals.start` (default 0), with
/// the controller's pod-name and pod-index labels.
///
/// `volumeClaimTemplates` are ignored: their PVCs do not exist yet, so they add no zone
/// constraint until bound (the caller fills `volume_requirements` when it knows more).
pub fn pods_from_stateful_set(s: &StatefulSet) -> Result<Vec<Pod>, IngestError> {
    let spec = s.spec.as_ref();
    let replicas = spec.and_then(|s| s.replicas);
    let start = spec
        .and_then(|s| s.ordinals.as_ref())
        .and_then(|o| o.start)
        .unwrap_or(0);
    expand(
        "StatefulSet",
        &s.metadata,
        spec.map(|s| &s.template),
        replicas,
        start,
        |pod, i| {
            pod.labels
                .insert(STATEFULSET_POD_NAME_LABEL.to_string(), pod.key.name.clone());
            pod.labels
                .insert(POD_INDEX_LABEL.to_string(), i.to_string());
        },
    )
}

/// The pods a Job runs at once: `spec.parallelism` (default 1), capped by `spec.completions`
/// when set; none while `spec.suspend` is true. Progress in `status` is not subtracted.
/// Pods carry the `batch.kubernetes.io/job-name` and `job-name` labels.
pub fn pods_from_job(j: &Job) -> Result<Vec<Pod>, IngestError> {
    let spec = j.spec.as_ref();
    let object = object_name("Job", &j.metadata, true);
    let parallelism = spec.and_then(|s| s.parallelism).unwrap_or(1);
    let completions = spec.and_then(|s| s.completions);
    let mut count = match completions {
        Some(c) => parallelism.min(c),
        None => parallelism,
    };
    if count < 0 {
        let field = if parallelism < 0 {
            "spec.parallelism"
        } else {
            "spec.completions"
        };
        return Err(IngestError::new(
            object,
            field,
            format!("must not be negative, got {count}"),
        ));
    }
    if spec.and_then(|s| s.suspend) == Some(true) {
        count = 0;
    }
    let name = j.metadata.name.clone().unwrap_or_default();
    expand(
        "Job",
        &j.metadata,
        spec.map(|s| &s.template),
        Some(count),
        0,
        |pod, _| {
            pod.labels.insert(JOB_NAME_LABEL.to_string(), name.clone());
            pod.labels.insert("job-name".to_string(), name.clone());
        },
    )
}

/// The pod template of a DaemonSet, as the scheduler needs it for
/// [`Snapshot::daemon_sets`](crate::snapshot::Snapshot::daemon_sets): named after the
/// DaemonSet, owner `DaemonSet/<name>`.
pub fn daemon_set_pod(ds: &DaemonSet) -> Result<Pod, IngestError> {
    let object = object_name("DaemonSet", &ds.metadata, true);
    let name = ds
        .metadata
        .name
        .as_deref()
        .ok_or_else(|| IngestError::new(&object, "metadata.name", "missing"))?;
    let template = ds.spec.as_ref().map(|s| &s.template);
    let mut pod = template_pod(&object, &ds.metadata, template, name)?;
    pod.owner = Some(format!("DaemonSet/{name}"));
    Ok(pod)
}

/// Converts `template` once and stamps out `replicas` copies named `<name>-<start + i>`;
/// `decorate` adds per-pod labels.
fn expand(
    kind: &str,
    meta: &ObjectMeta,
    template: Option<&PodTemplateSpec>,
    replicas: Option<i32>,
    start: i32,
    decorate: impl Fn(&mut Pod, i32),
) -> Result<Vec<Pod>, IngestError> {
    let object = object_name(kind, meta, true);
    let name = meta
        .name
        .as_deref()
        .ok_or_else(|| IngestError::new(&object, "metadata.name", "missing"))?;
    let replicas = replicas.unwrap_or(1);
    if replicas < 0 {
        return Err(IngestError::new(
            &object,
            "spec.replicas",
            format!("must not be negative, got {replicas}"),
        ));
    }
    let mut base = template_pod(&object, meta, template, name)?;
    base.owner = Some(format!("{kind}/{name}"));
    let mut pods = Vec::with_capacity(replicas as usize);
    for i in start..start.saturating_add(replicas) {
        let mut pod = base.clone();
        pod.key.name = format!("{name}-{i}");
        decorate(&mut pod, i);
        pods.push(pod);
    }
    Ok(pods)
}

fn template_pod(
    object: &str,
    meta: &ObjectMeta,
    template: Option<&PodTemplateSpec>,
    name: &str,
) -> Result<Pod, IngestError> {
    let spec = template
        .and_then(|t| t.spec.as_ref())
        .ok_or_else(|| IngestError::new(object, "spec.template.spec", "missing"))?;
    let labels: BTreeMap<String, String> = template
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    pod_from_spec(
        object,
        "spec.template.spec",
        &namespace_of(meta),
        name,
        labels,
        spec,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{CPU, PODS};

    fn yaml<T: serde::de::DeserializeOwned>(s: &str) -> T {
        serde_yaml::from_str(s).unwrap()
    }

    const TEMPLATE: &str = r#"
    metadata:
      labels: {app: web}
    spec:
      tolerations: [{key: spot, operator: Exists}]
      containers: [{name: a, resources: {requests: {cpu: 500m}}}]
"#;

    #[test]
    fn deployment_expands_to_named_replicas() {
        let d: Deployment = yaml(&format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  \
             replicas: 3\n  selector: {{matchLabels: {{app: web}}}}\n  template:{TEMPLATE}"
        ));
        let pods = pods_from_deployment(&d).unwrap();
        let names: Vec<_> = pods.iter().map(|p| p.key.to_string()).collect();
        assert_eq!(
            names,
            vec!["default/web-0", "default/web-1", "default/web-2"]
        );
        for p in &pods {
            assert_eq!(p.labels["app"], "web");
            assert_eq!(p.owner.as_deref(), Some("Deployment/web"));
            assert_eq!(p.requests.0[CPU], 500);
            assert_eq!(p.requests.0[PODS], 1);
            assert_eq!(p.tolerations.len(), 1);
        }
    }

    #[test]
    fn replica_set_defaults_to_one_replica() {
        let rs: ReplicaSet = yaml(&format!(
            "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {{name: rs, namespace: shop}}\n\
             spec:\n  selector: {{}}\n  template:{TEMPLATE}"
        ));
        let pods = pods_from_replica_set(&rs).unwrap();
        assert_eq!(pods.len(), 1);
        assert_eq!(pods[0].key.to_string(), "shop/rs-0");
        assert_eq!(pods[0].owner.as_deref(), Some("ReplicaSet/rs"));
    }

    #[test]
    fn stateful_set_uses_ordinals_and_controller_labels() {
        let s: StatefulSet = yaml(&format!(
            "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {{name: db}}\nspec:\n  \
             replicas: 2\n  ordinals: {{start: 5}}\n  serviceName: db\n  selector: {{}}\n  \
             volumeClaimTemplates: [{{metadata: {{name: data}}}}]\n  template:{TEMPLATE}"
        ));
        let pods = pods_from_stateful_set(&s).unwrap();
        assert_eq!(pods[0].key.name, "db-5");
        assert_eq!(pods[1].key.name, "db-6");
        assert_eq!(pods[1].labels[STATEFULSET_POD_NAME_LABEL], "db-6");
        assert_eq!(pods[1].labels[POD_INDEX_LABEL], "6");
        assert_eq!(pods[1].labels["app"], "web");
        assert!(pods[0].volume_requirements.is_empty());
    }

    #[test]
    fn job_runs_parallelism_capped_by_completions() {
        let job = |spec: &str| -> Job {
            yaml(&format!(
                "apiVersion: batch/v1\nkind: Job\nmetadata: {{name: etl}}\nspec:\n  \
                 {spec}\n  template:{TEMPLATE}"
            ))
        };
        assert_eq!(pods_from_job(&job("backoffLimit: 1")).unwrap().len(), 1);
        assert_eq!(pods_from_job(&job("parallelism: 4")).unwrap().len(), 4);
        let pods = pods_from_job(&job("parallelism: 4\n  completions: 2")).unwrap();
        assert_eq!(pods.len(), 2);
        assert_eq!(pods[0].labels[JOB_NAME_LABEL], "etl");
        assert_eq!(pods[0].owner.as_deref(), Some("Job/etl"));
        assert!(
            pods_from_job(&job("parallelism: 4\n  suspend: true"))
                .unwrap()
                .is_empty()
        );
        let err = pods_from_job(&job("parallelism: -1")).unwrap_err();
        assert_eq!(err.field, "spec.parallelism");
    }

    #[test]
    fn daemon_set_gives_one_template() {
        let ds: DaemonSet = yaml(&format!(
            "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {{name: agent, namespace: \
             kube-system}}\nspec:\n  selector: {{}}\n  template:{TEMPLATE}"
        ));
        let pod = daemon_set_pod(&ds).unwrap();
        assert_eq!(pod.key.to_string(), "kube-system/agent");
        assert_eq!(pod.owner.as_deref(), Some("DaemonSet/agent"));
        assert_eq!(pod.requests.0[CPU], 500);
    }

    #[test]
    fn errors_point_into_the_template() {
        let d: Deployment = yaml(
            r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {}
  template:
    spec:
      containers: [{name: a, resources: {requests: {memory: 12x}}}]
"#,
        );
        let err = pods_from_deployment(&d).unwrap_err();
        assert_eq!(err.object, "Deployment/shop/web");
        assert_eq!(
            err.field,
            "spec.template.spec.containers[0].resources.requests.memory"
        );

        let mut d = d;
        d.spec.as_mut().unwrap().replicas = Some(-2);
        assert_eq!(pods_from_deployment(&d).unwrap_err().field, "spec.replicas");
        d.spec.as_mut().unwrap().template.spec = None;
        d.spec.as_mut().unwrap().replicas = None;
        assert_eq!(
            pods_from_deployment(&d).unwrap_err().field,
            "spec.template.spec"
        );
    }
}

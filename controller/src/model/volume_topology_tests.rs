use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use serde::de::DeserializeOwned;

use super::*;

fn yaml<T: DeserializeOwned>(text: &str) -> Arc<T> {
    Arc::new(serde_yaml::from_str(text).expect("fixture parses"))
}

fn pod(volumes: &str, affinity: &str) -> Pod {
    serde_yaml::from_str(&format!(
        r#"
metadata: {{name: db-0, namespace: shop}}
spec:
  containers: [{{name: db, image: postgres}}]
  volumes: {volumes}
  {affinity}
"#
    ))
    .expect("pod parses")
}

fn claim(name: &str, volume: Option<&str>, class: Option<&str>) -> Arc<PersistentVolumeClaim> {
    let mut c: PersistentVolumeClaim = serde_yaml::from_str(&format!(
        "metadata: {{name: {name}, namespace: shop}}\nspec: {{accessModes: [ReadWriteOnce]}}"
    ))
    .expect("claim parses");
    let spec = c.spec.get_or_insert_with(Default::default);
    spec.volume_name = volume.map(str::to_owned);
    spec.storage_class_name = class.map(str::to_owned);
    Arc::new(c)
}

fn zone_pv() -> Arc<PersistentVolume> {
    yaml(
        r#"
metadata: {name: pv-1}
spec:
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions:
        - {key: topology.ebs.csi.aws.com/zone, operator: In, values: [us-east-1b]}
        - {key: kubernetes.io/hostname, operator: In, values: [ip-10-0-1-1]}
      - matchExpressions:
        - {key: topology.ebs.csi.aws.com/zone, operator: In, values: [us-east-1c]}
"#,
    )
}

fn gp3(default: bool) -> Arc<StorageClass> {
    yaml(&format!(
        r#"
metadata:
  name: gp3
  annotations: {{storageclass.kubernetes.io/is-default-class: "{default}"}}
provisioner: ebs.csi.aws.com
volumeBindingMode: WaitForFirstConsumer
allowedTopologies:
- matchLabelExpressions:
  - {{key: topology.kubernetes.io/zone, values: [us-east-1a, us-east-1c]}}
"#
    ))
}

/// (key, operator, values) of every expression of every required term.
fn terms(p: &Pod) -> Vec<Vec<(String, String, Vec<String>)>> {
    p.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|r| {
            r.node_selector_terms
                .iter()
                .map(|t| {
                    t.match_expressions
                        .clone()
                        .unwrap_or_default()
                        .into_iter()
                        .map(|e| (e.key, e.operator, e.values.unwrap_or_default()))
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default()
}

fn req(key: &str, values: &[&str]) -> (String, String, Vec<String>) {
    (
        key.to_owned(),
        "In".to_owned(),
        values.iter().map(|v| (*v).to_owned()).collect(),
    )
}

const DATA_VOLUME: &str = "[{name: data, persistentVolumeClaim: {claimName: data-db-0}}]";

#[test]
fn a_bound_volume_adds_its_first_pv_term_without_the_hostname() {
    let objects = VolumeObjects::new(
        &[claim("data-db-0", Some("pv-1"), Some("gp3"))],
        &[zone_pv()],
        &[gp3(true)],
    );
    let p = pod(DATA_VOLUME, "");
    let out = inject_volume_topology(&p, &objects).expect("injects");
    // The PV decides, not the class: the volume already exists in us-east-1b.
    assert_eq!(
        terms(&out),
        vec![vec![req("topology.ebs.csi.aws.com/zone", &["us-east-1b"])]]
    );
}

#[test]
fn an_unbound_claim_adds_its_storage_class_topology_to_every_term() {
    let objects = VolumeObjects::new(&[claim("data-db-0", None, Some("gp3"))], &[], &[gp3(false)]);
    let affinity = r#"affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
        - matchExpressions: [{key: kubernetes.io/arch, operator: In, values: [arm64]}]
        - matchExpressions: [{key: karpenter.sh/capacity-type, operator: In, values: [spot]}]"#;
    let p = pod(DATA_VOLUME, affinity);
    let out = inject_volume_topology(&p, &objects).expect("injects");
    let zone = req("topology.kubernetes.io/zone", &["us-east-1a", "us-east-1c"]);
    assert_eq!(
        terms(&out),
        vec![
            vec![req("kubernetes.io/arch", &["arm64"]), zone.clone()],
            vec![req("karpenter.sh/capacity-type", &["spot"]), zone],
        ]
    );
}

#[test]
fn a_claim_without_a_class_uses_the_default_class_and_an_empty_class_adds_nothing() {
    let p = pod(DATA_VOLUME, "");
    let defaulted = VolumeObjects::new(&[claim("data-db-0", None, None)], &[], &[gp3(true)]);
    let out = inject_volume_topology(&p, &defaulted).expect("injects");
    assert_eq!(
        terms(&out),
        vec![vec![req(
            "topology.kubernetes.io/zone",
            &["us-east-1a", "us-east-1c"]
        )]]
    );
    // No default class: nothing to add.
    let no_default = VolumeObjects::new(&[claim("data-db-0", None, None)], &[], &[gp3(false)]);
    assert!(matches!(
        inject_volume_topology(&p, &no_default),
        Ok(Cow::Borrowed(_))
    ));
    // `storageClassName: ""` means static binding, never the default class.
    let explicit_none =
        VolumeObjects::new(&[claim("data-db-0", None, Some(""))], &[], &[gp3(true)]);
    assert!(matches!(
        inject_volume_topology(&p, &explicit_none),
        Ok(Cow::Borrowed(_))
    ));
}

#[test]
fn an_ephemeral_volume_not_created_yet_uses_its_template_class() {
    let volumes = r#"[{name: scratch, ephemeral: {volumeClaimTemplate: {spec: {storageClassName: gp3, accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}}}}]"#;
    let p = pod(volumes, "");
    let objects = VolumeObjects::new(&[], &[], &[gp3(false)]);
    let out = inject_volume_topology(&p, &objects).expect("injects");
    assert_eq!(
        terms(&out),
        vec![vec![req(
            "topology.kubernetes.io/zone",
            &["us-east-1a", "us-east-1c"]
        )]]
    );
    // Once created (`<pod>-<volume>`) and bound, its PV decides.
    let objects = VolumeObjects::new(
        &[claim("db-0-scratch", Some("pv-1"), Some("gp3"))],
        &[zone_pv()],
        &[gp3(false)],
    );
    let out = inject_volume_topology(&p, &objects).expect("injects");
    assert_eq!(
        terms(&out),
        vec![vec![req("topology.ebs.csi.aws.com/zone", &["us-east-1b"])]]
    );
}

#[test]
fn missing_claims_volumes_and_classes_are_errors_naming_the_pod_and_field() {
    let p = pod(DATA_VOLUME, "");
    let err = inject_volume_topology(&p, &VolumeObjects::default()).expect_err("no claim");
    assert_eq!(err.object, "Pod/shop/db-0");
    assert_eq!(err.field, "spec.volumes[0].persistentVolumeClaim.claimName");
    assert!(err.message.contains("shop/data-db-0 not found"), "{err}");

    let unbound_pv = VolumeObjects::new(&[claim("data-db-0", Some("pv-9"), None)], &[], &[]);
    let err = inject_volume_topology(&p, &unbound_pv).expect_err("no pv");
    assert!(err.message.contains("PersistentVolume pv-9"), "{err}");

    let no_class = VolumeObjects::new(&[claim("data-db-0", None, Some("io2"))], &[], &[]);
    let err = inject_volume_topology(&p, &no_class).expect_err("no class");
    assert!(err.message.contains("StorageClass io2 not found"), "{err}");
}

#[test]
fn pods_without_claims_are_borrowed_unchanged() {
    let p = pod("[{name: tmp, emptyDir: {}}]", "");
    assert!(matches!(
        inject_volume_topology(&p, &VolumeObjects::default()),
        Ok(Cow::Borrowed(_))
    ));
}

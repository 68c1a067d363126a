//! Tests of the v1 EC2NodeClass types and helpers.

use super::*;
use kube::{CustomResourceExt, Resource};

const V1: &str = r#"
apiVersion: karpenter.k8s.aws/v1
kind: EC2NodeClass
metadata:
  name: default
spec:
  role: KarpenterNodeRole-avlos-stg
  amiSelectorTerms:
    - alias: al2023@v20240807
  subnetSelectorTerms:
    - tags: {karpenter.sh/discovery: avlos-stg}
    - id: subnet-0123abcd
  securityGroupSelectorTerms:
    - tags: {karpenter.sh/discovery: avlos-stg}
  associatePublicIPAddress: false
  kubelet: {maxPods: 110}
  blockDeviceMappings:
    - deviceName: /dev/xvda
      rootVolume: true
      ebs: {volumeSize: 100Gi, volumeType: gp3, encrypted: true, kmsKeyID: alias/ebs, snapshotID: snap-1}
  metadataOptions: {httpEndpoint: enabled, httpProtocolIPv6: disabled, httpPutResponseHopLimit: 1, httpTokens: required}
  instanceStorePolicy: RAID0
status:
  subnets:
    - {id: subnet-1, zone: us-east-1b, zoneID: use1-az2}
    - {id: subnet-2, zone: us-east-1a}
  amis:
    - id: ami-1
      requirements: [{key: kubernetes.io/arch, operator: In, values: [amd64]}]
"#;

#[test]
fn v1_manifest_round_trips() {
    let nc: EC2NodeClass = serde_yaml::from_str(V1).unwrap();
    assert_eq!(nc.ami_family(), AmiFamily::Al2023);
    assert_eq!(
        nc.alias(),
        Some(Alias {
            family: AmiFamily::Al2023,
            version: "v20240807".into()
        })
    );
    assert_eq!(nc.kubelet().and_then(|k| k.max_pods), Some(110));
    let bdm = &nc.spec.block_device_mappings[0];
    assert!(bdm.root_volume);
    assert_eq!(
        bdm.ebs.as_ref().unwrap().volume_size,
        Some(Quantity("100Gi".into()))
    );
    assert_eq!(
        nc.spec.instance_store_policy,
        Some(InstanceStorePolicy::Raid0)
    );
    assert_eq!(nc.subnet_zones(), vec!["us-east-1a", "us-east-1b"]);
    let json = serde_json::to_value(&nc).unwrap();
    for key in [
        "associatePublicIPAddress",
        "amiSelectorTerms",
        "metadataOptions",
    ] {
        assert!(json["spec"].get(key).is_some(), "{key} missing");
    }
    assert_eq!(
        json["spec"]["blockDeviceMappings"][0]["ebs"]["kmsKeyID"],
        "alias/ebs"
    );
    assert_eq!(
        json["spec"]["metadataOptions"]["httpProtocolIPv6"],
        "disabled"
    );
    assert_eq!(json["status"]["subnets"][0]["zoneID"], "use1-az2");
    let back: EC2NodeClass = serde_json::from_value(json).unwrap();
    assert_eq!(back, nc);
}

#[test]
fn crd_is_cluster_scoped_with_status_and_columns() {
    let crd = EC2NodeClass::crd();
    assert_eq!(crd.spec.group, GROUP);
    assert_eq!(crd.spec.scope, "Cluster");
    assert_eq!(crd.spec.names.plural, "ec2nodeclasses");
    assert_eq!(EC2NodeClass::api_version(&()), "karpenter.k8s.aws/v1");
    let version = &crd.spec.versions[0];
    assert!(version.subresources.as_ref().unwrap().status.is_some());
    let columns: Vec<_> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(columns, vec!["Ready", "Age", "Role"]);
}

#[test]
fn aliases_parse_like_karpenter() {
    assert_eq!(Alias::parse("al2@latest").unwrap().family, AmiFamily::Al2);
    assert_eq!(
        Alias::parse("bottlerocket@v1.20.3").unwrap().version,
        "v1.20.3"
    );
    assert_eq!(
        Alias::parse("al2023@latest").unwrap().to_string(),
        "al2023@latest"
    );
    assert!(
        Alias::parse("al2023")
            .unwrap_err()
            .contains("family@version")
    );
    assert!(
        Alias::parse("ubuntu@latest")
            .unwrap_err()
            .contains("not supported")
    );
    assert!(
        Alias::parse("windows2022@v1")
            .unwrap_err()
            .contains("'latest'")
    );
    assert!(Alias::parse("al2023@").is_err());
    assert_eq!(
        AmiFamily::parse("Bottlerocket"),
        Some(AmiFamily::Bottlerocket)
    );
    let explicit = EC2NodeClass::new(
        "x",
        EC2NodeClassSpec {
            ami_family: Some(AmiFamily::Custom),
            ..Default::default()
        },
    );
    assert_eq!(explicit.ami_family(), AmiFamily::Custom);
}

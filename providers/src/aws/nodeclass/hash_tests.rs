use super::*;

const CLASS: &str = r#"
apiVersion: karpenter.k8s.aws/v1
kind: EC2NodeClass
metadata: {name: default}
spec:
  role: NodeRole
  amiSelectorTerms: [{alias: al2023@latest}]
  subnetSelectorTerms: [{tags: {karpenter.sh/discovery: c}}, {id: subnet-1}]
  securityGroupSelectorTerms: [{tags: {karpenter.sh/discovery: c}}]
  userData: "echo hi"
  tags: {team: a}
  detailedMonitoring: true
  associatePublicIPAddress: true
  kubelet: {maxPods: 110}
  blockDeviceMappings:
    - {deviceName: /dev/xvda, rootVolume: true, ebs: {volumeSize: 100Gi, volumeType: gp3}}
    - {deviceName: /dev/xvdb, ebs: {volumeSize: 50Gi, volumeType: gp3}}
  metadataOptions: {httpEndpoint: enabled, httpPutResponseHopLimit: 1, httpTokens: required}
"#;

fn class() -> EC2NodeClass {
    serde_yaml::from_str(CLASS).expect("test class parses")
}

fn edited(edit: impl FnOnce(&mut serde_json::Value)) -> EC2NodeClass {
    let mut v = serde_json::to_value(class()).expect("serializes");
    edit(&mut v["spec"]);
    serde_json::from_value(v).expect("edited class parses")
}

#[test]
fn every_static_field_changes_the_hash() {
    let base = ec2nodeclass_hash(&class());
    assert_eq!(base, ec2nodeclass_hash(&class()));
    let edits: Vec<(&str, serde_json::Value)> = vec![
        ("/userData", "echo bye".into()),
        ("/tags/team", "b".into()),
        ("/detailedMonitoring", false.into()),
        ("/associatePublicIPAddress", false.into()),
        ("/kubelet/maxPods", 50.into()),
        ("/blockDeviceMappings/1/ebs/volumeSize", "60Gi".into()),
        ("/metadataOptions/httpTokens", "optional".into()),
        ("/role", "OtherRole".into()),
    ];
    for (path, value) in edits {
        let changed = edited(|s| {
            *s.pointer_mut(path).expect("path exists") = value.clone();
        });
        assert_ne!(ec2nodeclass_hash(&changed), base, "{path}");
    }
    let family = edited(|s| s["amiFamily"] = "Bottlerocket".into());
    assert_ne!(ec2nodeclass_hash(&family), base);
}

#[test]
fn selector_terms_and_the_implied_family_do_not_change_the_hash() {
    let base = ec2nodeclass_hash(&class());
    let changed = edited(|s| {
        s["subnetSelectorTerms"] = serde_json::json!([{"id": "subnet-9"}]);
        s["securityGroupSelectorTerms"] = serde_json::json!([{"id": "sg-9"}]);
        s["amiSelectorTerms"] = serde_json::json!([{"alias": "al2023@v20240807"}]);
        // The family the alias implies, written out.
        s["amiFamily"] = "AL2023".into();
    });
    assert_eq!(ec2nodeclass_hash(&changed), base);
}

#[test]
fn list_order_does_not_matter_and_empty_equals_absent() {
    let base = ec2nodeclass_hash(&class());
    let reordered = edited(|s| {
        s["blockDeviceMappings"]
            .as_array_mut()
            .expect("mappings")
            .reverse();
    });
    assert_eq!(ec2nodeclass_hash(&reordered), base);
    let empty = edited(|s| s["tags"] = serde_json::json!({}));
    let absent = edited(|s| {
        s.as_object_mut().expect("spec").remove("tags");
    });
    assert_eq!(ec2nodeclass_hash(&empty), ec2nodeclass_hash(&absent));
    assert_ne!(ec2nodeclass_hash(&empty), base);
}

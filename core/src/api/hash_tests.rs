use super::*;

const POOL: &str = r#"
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {name: default}
spec:
  weight: 10
  limits: {cpu: "100"}
  disruption:
    consolidationPolicy: WhenEmptyOrUnderutilized
    consolidateAfter: 30s
    budgets: [{nodes: "10%"}]
  template:
    metadata:
      labels: {team: a, tier: web}
      annotations: {note: x}
    spec:
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}
      taints:
        - {key: a, value: "1", effect: NoSchedule}
        - {key: b, effect: NoExecute}
      startupTaints:
        - {key: s, effect: NoSchedule}
      expireAfter: 720h
      terminationGracePeriod: 1h
      requirements:
        - {key: karpenter.sh/capacity-type, operator: In, values: [spot, on-demand]}
"#;

fn pool() -> NodePool {
    serde_yaml::from_str(POOL).expect("test pool parses")
}

fn edited(edit: impl FnOnce(&mut serde_json::Value)) -> NodePool {
    let mut v = serde_json::to_value(pool()).expect("serializes");
    edit(&mut v);
    serde_json::from_value(v).expect("edited pool parses")
}

#[test]
fn the_hash_is_stable_and_pinned() {
    let h = nodepool_hash(&pool());
    assert_eq!(h, nodepool_hash(&pool()));
    // Pinned: a change here drifts every node of every cluster; bump the version instead.
    assert_eq!(
        canonical_hash(&serde_json::json!({"a": [2, 1], "b": ""})),
        canonical_hash(&serde_json::json!({"a": [1, 2]}))
    );
    assert_eq!(
        canonical_hash(&serde_json::json!({})),
        "14695981039346656037"
    );
}

#[test]
fn every_template_field_changes_the_hash() {
    let base = nodepool_hash(&pool());
    let t = "/spec/template";
    let edits: Vec<(&str, serde_json::Value)> = vec![
        ("/metadata/labels/team", "b".into()),
        ("/metadata/annotations/note", "y".into()),
        ("/spec/taints/0/value", "2".into()),
        ("/spec/startupTaints/0/key", "s2".into()),
        ("/spec/nodeClassRef/name", "other".into()),
        ("/spec/expireAfter", "24h".into()),
        ("/spec/terminationGracePeriod", "2h".into()),
    ];
    for (path, value) in edits {
        let changed = edited(|v| {
            *v.pointer_mut(&format!("{t}{path}")).expect("path exists") = value.clone();
        });
        assert_ne!(nodepool_hash(&changed), base, "{path}");
    }
}

#[test]
fn requirements_and_fields_outside_the_template_do_not_change_the_hash() {
    let base = nodepool_hash(&pool());
    let changed = edited(|v| {
        v["spec"]["weight"] = 50.into();
        v["spec"]["limits"] = serde_json::json!({"cpu": "5"});
        v["spec"]["disruption"]["consolidateAfter"] = "Never".into();
        v["spec"]["disruption"]["budgets"] = serde_json::json!([{"nodes": "0"}]);
        v["spec"]["template"]["spec"]["requirements"] = serde_json::json!([]);
        v["metadata"]["labels"] = serde_json::json!({"x": "y"});
    });
    assert_eq!(nodepool_hash(&changed), base);
}

#[test]
fn list_order_does_not_matter_and_empty_equals_absent() {
    let base = nodepool_hash(&pool());
    let reordered = edited(|v| {
        let taints = &mut v["spec"]["template"]["spec"]["taints"];
        let arr = taints.as_array_mut().expect("taints");
        arr.reverse();
    });
    assert_eq!(nodepool_hash(&reordered), base);

    let without = edited(|v| {
        v["spec"]["template"]["spec"]["startupTaints"] = serde_json::json!([]);
        v["spec"]["template"]["metadata"]["annotations"] = serde_json::json!({});
    });
    let absent = edited(|v| {
        let spec = v["spec"]["template"]["spec"].as_object_mut().expect("spec");
        spec.remove("startupTaints");
        let meta = v["spec"]["template"]["metadata"]
            .as_object_mut()
            .expect("meta");
        meta.remove("annotations");
    });
    assert_eq!(nodepool_hash(&without), nodepool_hash(&absent));
    assert_ne!(nodepool_hash(&without), base);
}

//! Tests for [`super`]: one failing case per rule, each asserting the reported field path.

use super::*;

const BASE: &str = r#"
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {name: default}
spec:
  template:
    metadata:
      labels: {billing-team: my-team, node-restriction.kubernetes.io/pool: general}
    spec:
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}
      expireAfter: 720h
      terminationGracePeriod: 1h30m
      taints: [{key: example.com/special, value: "true", effect: NoSchedule}]
      startupTaints: [{key: example.com/init, effect: NoExecute}]
      requirements:
        - {key: karpenter.k8s.aws/instance-category, operator: In, values: [c, m, r], minValues: 2}
        - {key: node.kubernetes.io/instance-type, operator: Exists, minValues: 10}
        - {key: karpenter.k8s.aws/instance-generation, operator: Gt, values: ["2"]}
        - {key: topology.kubernetes.io/zone, operator: NotIn, values: [us-west-2d]}
        - {key: kubernetes.io/arch, operator: In, values: [amd64, arm64]}
        - {key: karpenter.sh/capacity-type, operator: In, values: [spot, on-demand]}
        - {key: beta.kubernetes.io/os, operator: In, values: [linux]}
        - {key: kops.k8s.io/instancegroup, operator: DoesNotExist}
  disruption:
    consolidateAfter: Never
    budgets:
      - {nodes: 10%}
      - {nodes: "0", schedule: "0 9 * * mon-fri", duration: 8h}
      - {nodes: "100%", schedule: "@daily", duration: 1h30m0s, reasons: [Drifted]}
  limits: {cpu: "1000", memory: 1000Gi, nvidia.com/gpu: 1.5}
  weight: 100
"#;

fn base() -> NodePool {
    serde_yaml::from_str(BASE).unwrap()
}

fn fields(np: &NodePool) -> Vec<String> {
    validate_node_pool(np)
        .unwrap_err()
        .into_iter()
        .map(|e| e.field)
        .collect()
}

/// Asserts that `np` fails validation exactly at `field` (one error).
fn assert_only(np: &NodePool, field: &str) {
    assert_eq!(
        fields(np),
        vec![field.to_string()],
        "{:?}",
        validate_node_pool(np)
    );
}

fn req(
    key: &str,
    op: NodeSelectorOperator,
    values: &[&str],
) -> NodeSelectorRequirementWithMinValues {
    NodeSelectorRequirementWithMinValues::new(key, op, values.iter().copied())
}

#[test]
fn valid_node_pool_passes() {
    assert_eq!(validate_node_pool(&base()), Ok(()));
}

#[test]
fn requirement_keys_must_be_qualified_and_unrestricted() {
    use NodeSelectorOperator::Exists;
    for bad in [
        "foo bar",
        "-foo",
        "Example.com/x",
        "a/b/c",
        "",
        "example.com/",
    ] {
        let mut np = base();
        np.spec.template.spec.requirements[2] = req(bad, Exists, &[]);
        assert_only(&np, "spec.template.spec.requirements[2].key");
    }
    let restricted = [
        "kubernetes.io/hostname",
        "karpenter.sh/nodepool",
        "karpenter.sh/custom",
        "kubernetes.io/custom",
        "foo.kubernetes.io/bar",
        "k8s.io/foo",
        "sub.k8s.io/foo",
    ];
    for key in restricted {
        let mut np = base();
        np.spec.template.spec.requirements[2] = req(key, Exists, &[]);
        assert_only(&np, "spec.template.spec.requirements[2].key");
    }
    let allowed = [
        "node-restriction.kubernetes.io/team",
        "node.kubernetes.io/windows-build",
        "topology.kubernetes.io/region",
        "kubernetes.io/os",
        "failure-domain.beta.kubernetes.io/zone",
        "kops.k8s.io/instancegroup",
        "example.com/team",
        "team",
    ];
    for key in allowed {
        let mut np = base();
        np.spec.template.spec.requirements[2] = req(key, Exists, &[]);
        assert_eq!(validate_node_pool(&np), Ok(()), "{key}");
    }
}

#[test]
fn operator_value_rules() {
    use NodeSelectorOperator::*;
    let cases: &[(NodeSelectorOperator, &[&str])] = &[
        (In, &[]),
        (Exists, &["x"]),
        (DoesNotExist, &["x"]),
        (Gt, &[]),
        (Gt, &["1", "2"]),
        (Lt, &["abc"]),
        (Gte, &["99999999999999999999"]),
        (Lte, &["1.5"]),
    ];
    for (op, values) in cases {
        let mut np = base();
        np.spec.template.spec.requirements[2] = req("example.com/n", *op, values);
        assert_only(&np, "spec.template.spec.requirements[2].values");
    }
    let mut np = base();
    np.spec.template.spec.requirements[2] = req("example.com/n", Lte, &["0"]);
    assert_eq!(validate_node_pool(&np), Ok(()));
    np.spec.template.spec.requirements[2] = req("example.com/n", In, &["ok", "not ok"]);
    assert_only(&np, "spec.template.spec.requirements[2].values[1]");
}

#[test]
fn min_values_rules() {
    for (m, want_err) in [(0, true), (51, true), (4, true), (3, false), (1, false)] {
        let mut np = base();
        np.spec.template.spec.requirements[0].min_values = Some(m);
        if want_err {
            assert_only(&np, "spec.template.spec.requirements[0].minValues");
        } else {
            assert_eq!(validate_node_pool(&np), Ok(()));
        }
    }
    let mut np = base();
    np.spec.template.spec.requirements[1].min_values = Some(50); // Exists: no value count.
    assert_eq!(validate_node_pool(&np), Ok(()));
    np.spec.template.spec.requirements = vec![np.spec.template.spec.requirements[0].clone(); 101];
    assert_only(&np, "spec.template.spec.requirements");
}

#[test]
fn template_label_rules() {
    let cases = [
        ("karpenter.sh/nodepool", "x"),
        ("kubernetes.io/hostname", "x"),
        ("karpenter.sh/other", "x"),
        ("sub.karpenter.sh/other", "x"),
        ("bad key!", "x"),
        ("example.com/ok", "bad value!"),
    ];
    for (k, v) in cases {
        let mut np = base();
        np.spec.template.metadata.labels.insert(k.into(), v.into());
        assert_only(&np, &format!("spec.template.metadata.labels[{k}]"));
    }
    let mut np = base();
    np.spec
        .template
        .metadata
        .labels
        .insert("kubernetes.io/hostname".into(), "x".into());
    let errs = validate_node_pool(&np).unwrap_err();
    assert_eq!(
        errs[0].to_string(),
        "NodePool/default: spec.template.metadata.labels[kubernetes.io/hostname]: label \
         \"kubernetes.io/hostname\" is restricted"
    );
}

#[test]
fn template_labels_may_use_the_kubernetes_io_and_k8s_io_domains() {
    // Karpenter v1.10+: only requirement keys keep these domain rules.
    let allowed = [
        "kubernetes.io/role",
        "node-role.kubernetes.io/worker",
        "foo.kubernetes.io/bar",
        "k8s.io/foo",
        "sub.k8s.io/foo",
        "karpenter.sh/capacity-type",
    ];
    for key in allowed {
        let mut np = base();
        np.spec
            .template
            .metadata
            .labels
            .insert(key.into(), "x".into());
        assert_eq!(validate_node_pool(&np), Ok(()), "{key}");
        // The same key as a requirement is still refused (unless well known).
        if key != "karpenter.sh/capacity-type" {
            let mut np = base();
            np.spec.template.spec.requirements[2] = req(key, NodeSelectorOperator::Exists, &[]);
            assert_only(&np, "spec.template.spec.requirements[2].key");
        }
    }
}

#[test]
fn taint_rules() {
    let taint = |key: &str, value: Option<&str>, effect: &str| Taint {
        key: key.into(),
        value: value.map(Into::into),
        effect: effect.into(),
        time_added: None,
    };
    let mut np = base();
    np.spec
        .template
        .spec
        .taints
        .push(taint("example.com/t", None, "Sometimes"));
    assert_only(&np, "spec.template.spec.taints[1].effect");
    let mut np = base();
    np.spec
        .template
        .spec
        .taints
        .push(taint("", None, "NoSchedule"));
    assert_only(&np, "spec.template.spec.taints[1].key");
    let mut np = base();
    np.spec
        .template
        .spec
        .taints
        .push(taint("example.com/t", Some("a b"), "NoSchedule"));
    assert_only(&np, "spec.template.spec.taints[1].value");
    let mut np = base();
    np.spec
        .template
        .spec
        .startup_taints
        .push(taint("example.com/special", None, "NoSchedule"));
    assert_only(&np, "spec.template.spec.startupTaints[1]");
}

#[test]
fn node_class_ref_rules() {
    let mut np = base();
    np.spec.template.spec.node_class_ref.name.clear();
    assert_only(&np, "spec.template.spec.nodeClassRef.name");
    let mut np = base();
    np.spec.template.spec.node_class_ref.group = "karpenter.k8s.aws/v1".into();
    assert_only(&np, "spec.template.spec.nodeClassRef.group");
    let mut np = base();
    np.spec.template.spec.node_class_ref.kind.clear();
    assert_only(&np, "spec.template.spec.nodeClassRef.kind");
}

#[test]
fn duration_rules() {
    for bad in ["1d", "1.5h", "300ms", "", "never", "9999999999h"] {
        let mut np = base();
        np.spec.template.spec.expire_after = NillableDuration::new(bad);
        assert_only(&np, "spec.template.spec.expireAfter");
        let mut np = base();
        np.spec.disruption.consolidate_after = NillableDuration::new(bad);
        assert_only(&np, "spec.disruption.consolidateAfter");
    }
    let mut np = base();
    np.spec.template.spec.termination_grace_period = Some(GoDuration::new("Never"));
    assert_only(&np, "spec.template.spec.terminationGracePeriod");
    np.spec.template.spec.termination_grace_period = Some(GoDuration::new("30s"));
    np.spec.disruption.consolidate_after = NillableDuration::new("1h30m15s");
    assert_eq!(validate_node_pool(&np), Ok(()));
}

#[test]
fn budget_rules() {
    let set = |nodes: &str, schedule: Option<&str>, duration: Option<&str>| {
        let mut np = base();
        np.spec.disruption.budgets[1] = Budget {
            reasons: None,
            nodes: nodes.into(),
            schedule: schedule.map(Into::into),
            duration: duration.map(GoDuration::new),
        };
        np
    };
    let p = "spec.disruption.budgets[1]";
    for nodes in ["110%", "abc", "", "-1", "5.5%", "001%"] {
        assert_only(&set(nodes, None, None), &format!("{p}.nodes"));
    }
    assert_only(&set("1", Some("@daily"), None), p);
    assert_only(&set("1", None, Some("1h")), p);
    for schedule in [
        "every day",
        "@fortnightly",
        "0 9 * *",
        "0 9 * * mon-fri 2024",
        "0 9 * * %",
    ] {
        assert_only(
            &set("1", Some(schedule), Some("1h")),
            &format!("{p}.schedule"),
        );
    }
    for duration in ["30s", "1h30m15s", "1d", "h", "90"] {
        assert_only(
            &set("1", Some("@hourly"), Some(duration)),
            &format!("{p}.duration"),
        );
    }
    for (schedule, duration) in [
        ("*/5 0-6 1,15 ? SUN", "10m0s"),
        ("@yearly", "24h"),
        ("@midnight", "2h30m"),
    ] {
        assert_eq!(
            validate_node_pool(&set("0", Some(schedule), Some(duration))),
            Ok(())
        );
    }
    for nodes in ["0", "0%", "100%", "99%", "250"] {
        assert_eq!(validate_node_pool(&set(nodes, None, None)), Ok(()));
    }
    let mut np = base();
    np.spec.disruption.budgets = vec![Budget::default(); 51];
    assert_only(&np, "spec.disruption.budgets");
}

#[test]
fn limits_and_weight_rules() {
    for bad in ["lots", "-1", "1.5.5", "10Ki5", "1e", ""] {
        let mut np = base();
        np.spec
            .limits
            .as_mut()
            .unwrap()
            .insert("cpu".into(), Quantity(bad.into()));
        assert_only(&np, "spec.limits[cpu]");
    }
    for good in ["+1", "1e3", "1E-3", ".5", "5.", "100m", "2Ei", "0"] {
        assert_eq!(quantity_error(good), None, "{good}");
    }
    for (w, ok) in [
        (0, false),
        (101, false),
        (-5, false),
        (1, true),
        (100, true),
    ] {
        let mut np = base();
        np.spec.weight = Some(w);
        if ok {
            assert_eq!(validate_node_pool(&np), Ok(()));
        } else {
            assert_only(&np, "spec.weight");
        }
    }
}

#[test]
fn node_count_limit_is_accepted_and_compiled() {
    let mut np = base();
    let limits = np.spec.limits.as_mut().unwrap();
    limits.insert("nodes".into(), Quantity("10".into()));
    assert_eq!(validate_node_pool(&np), Ok(()));
    // Accepted end to end: ingest turns it into the pool's node limit.
    let compiled =
        crate::ingest::compile_node_pool(&np, Vec::new(), crate::resources::Resources::ZERO)
            .unwrap();
    assert_eq!(compiled.node_limit, Some(10));
    for bad in ["-1", "ten"] {
        let mut np = base();
        np.spec
            .limits
            .as_mut()
            .unwrap()
            .insert("nodes".into(), Quantity(bad.into()));
        assert_only(&np, "spec.limits[nodes]");
    }
}

#[test]
fn collects_every_error_and_displays_them() {
    let mut np = base();
    np.spec.weight = Some(0);
    np.spec.template.spec.requirements[2].values.clear();
    np.spec.template.spec.requirements[0].values.clear(); // In without values + minValues.
    np.spec.disruption.budgets[1].duration = None;
    let errs = validate_node_pool(&np).unwrap_err();
    let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        vec![
            "spec.template.spec.requirements[0].values",
            "spec.template.spec.requirements[0].minValues",
            "spec.template.spec.requirements[2].values",
            "spec.disruption.budgets[1]",
            "spec.weight",
        ]
    );
    assert_eq!(
        errs[2].to_string(),
        "NodePool/default: spec.template.spec.requirements[2].values: requirements operator \
         'Gt', 'Lt', 'Gte', or 'Lte' must have a single positive integer value"
    );
}

#[test]
fn node_claims_use_the_same_rules_but_may_name_their_pool() {
    let yaml = r#"
apiVersion: karpenter.sh/v1
kind: NodeClaim
metadata: {name: default-abcde}
spec:
  nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}
  requirements:
    - {key: karpenter.sh/nodepool, operator: In, values: [default]}
    - {key: node.kubernetes.io/instance-type, operator: In, values: [m5.large]}
  resources: {requests: {cpu: 1500m, pods: "3"}}
"#;
    let nc: NodeClaim = serde_yaml::from_str(yaml).unwrap();
    assert_eq!(validate_node_claim(&nc), Ok(()));
    let mut bad = nc.clone();
    bad.spec.requirements[1].values.clear();
    bad.spec.requirements.push(req(
        "kubernetes.io/hostname",
        NodeSelectorOperator::Exists,
        &[],
    ));
    bad.spec
        .resources
        .requests
        .insert("memory".into(), Quantity("-1Gi".into()));
    bad.spec.expire_after = NillableDuration::new("30d");
    let errs = validate_node_claim(&bad).unwrap_err();
    let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        vec![
            "spec.requirements[1].values",
            "spec.requirements[2].key",
            "spec.expireAfter",
            "spec.resources.requests[memory]",
        ]
    );
    assert!(
        errs[0]
            .to_string()
            .starts_with("NodeClaim/default-abcde: spec.requirements[1]")
    );
}

use std::path::PathBuf;

use karpenter_core::labels;
use karpenter_core::resources::{NVIDIA_GPU, PODS};
use karpenter_providers::aws::catalog::Catalog;

use super::*;

fn src(origin: &str, text: &str) -> Source {
    Source {
        origin: origin.into(),
        text: text.into(),
    }
}

const CLASS_V1BETA1: &str = r#"
apiVersion: karpenter.k8s.aws/v1beta1
kind: EC2NodeClass
metadata: {name: default}
spec:
  amiFamily: AL2
  role: KarpenterNodeRole
  subnetSelectorTerms: [{tags: {karpenter.sh/discovery: test}}]
  securityGroupSelectorTerms: [{tags: {karpenter.sh/discovery: test}}]
"#;

const POOL_V1BETA1: &str = r#"
apiVersion: karpenter.sh/v1beta1
kind: NodePool
metadata: {name: default}
spec:
  template:
    spec:
      nodeClassRef: {apiVersion: karpenter.k8s.aws/v1beta1, kind: EC2NodeClass, name: default}
      requirements:
        - {key: karpenter.k8s.aws/instance-category, operator: In, values: [m]}
        - {key: kubernetes.io/arch, operator: In, values: [amd64]}
        - {key: karpenter.sh/capacity-type, operator: In, values: [on-demand]}
      kubelet: {maxPods: 110}
"#;

const PODS_TEXT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, resources: {requests: {cpu: "1", memory: 1Gi}}}]
"#;

fn embedded() -> &'static Catalog {
    Catalog::embedded()
}

fn plan_of(texts: &[(&str, &str)]) -> Result<Plan, SimulateError> {
    let sources: Vec<Source> = texts.iter().map(|(o, t)| src(o, t)).collect();
    plan(
        &sources,
        embedded(),
        EMBEDDED_CATALOG,
        &karpenter_core::scheduling::SolveOptions::default(),
        &settings_at(NOW),
    )
}

/// The fixed clock of these tests.
const NOW: &str = "2026-12-07T12:00:00Z";

fn settings_at(now: &str) -> DisruptionSettings {
    DisruptionSettings {
        now: now.parse().unwrap(),
        spot_to_spot: false,
        min_savings_per_hour: 0.0,
        replace_with_several: false,
        multi_node_cap: Some(100),
    }
}

#[test]
fn v1beta1_pool_kubelet_max_pods_reaches_the_instance_types() {
    let plan = plan_of(&[
        ("class.yaml", CLASS_V1BETA1),
        ("pool.yaml", POOL_V1BETA1),
        ("pods.yaml", PODS_TEXT),
    ])
    .unwrap();
    assert_eq!(plan.pools.len(), 1);
    let info = &plan.pools[0];
    assert_eq!(
        (info.name.as_str(), info.node_class.as_str()),
        ("default", "default")
    );
    assert_eq!(info.ami_family, "AL2");
    assert_eq!(info.max_pods, Some(110));
    assert!(info.matching_types > 0 && info.matching_types < plan.catalog_types);

    let pool = &plan.snapshot.node_pools[0];
    assert!(
        pool.instance_types
            .iter()
            .all(|it| it.capacity.0[PODS] == 110),
        "maxPods 110 applies to every type"
    );
    assert_eq!(plan.decision.placed_pods(), 3);
    assert!(plan.decision.unschedulable.is_empty());
    for claim in &plan.decision.new_node_claims {
        for o in &claim.instance_types {
            assert!(o.name.starts_with('m'), "{}", o.name);
        }
    }
}

#[test]
fn v1_node_class_and_pool_work_too() {
    let text = r#"
apiVersion: karpenter.k8s.aws/v1
kind: EC2NodeClass
metadata: {name: al2023}
spec:
  amiSelectorTerms: [{alias: al2023@latest}]
  role: KarpenterNodeRole
  subnetSelectorTerms: [{tags: {karpenter.sh/discovery: test}}]
  securityGroupSelectorTerms: [{tags: {karpenter.sh/discovery: test}}]
---
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {name: general}
spec:
  template:
    spec:
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: al2023}
      requirements:
        - {key: karpenter.k8s.aws/instance-category, operator: In, values: [c]}
"#;
    let plan = plan_of(&[("all.yaml", text), ("pods.yaml", PODS_TEXT)]).unwrap();
    assert_eq!(plan.pools[0].ami_family, "AL2023");
    assert_eq!(plan.pools[0].max_pods, None);
    assert_eq!(plan.decision.placed_pods(), 3);
    let claim = &plan.decision.new_node_claims[0];
    assert_eq!(
        claim.labels.get(labels::NODE_POOL).map(String::as_str),
        Some("general")
    );
}

#[test]
fn gpu_pod_is_unschedulable_on_a_pool_without_gpus() {
    let gpu = r#"
apiVersion: v1
kind: Pod
metadata: {name: trainer, namespace: ml}
spec:
  containers: [{name: t, resources: {limits: {nvidia.com/gpu: 1}}}]
"#;
    let plan = plan_of(&[
        ("class.yaml", CLASS_V1BETA1),
        ("pool.yaml", POOL_V1BETA1),
        ("gpu.yaml", gpu),
    ])
    .unwrap();
    assert_eq!(plan.snapshot.pods[0].requests.0[NVIDIA_GPU], 1);
    let u = &plan.decision.unschedulable;
    assert_eq!(u.len(), 1, "{u:?}");
    assert_eq!(u[0].pod.to_string(), "ml/trainer");
    assert!(u[0].reason.contains("nvidia.com/gpu"), "{}", u[0].reason);
}

#[test]
fn missing_node_class_names_pool_and_class() {
    let err = plan_of(&[("pool.yaml", POOL_V1BETA1), ("pods.yaml", PODS_TEXT)]).unwrap_err();
    let lines = err.lines();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_eq!(
        lines[0],
        "NodePool/default: spec.template.spec.nodeClassRef.name: EC2NodeClass \"default\" is \
         not in the manifests (there are no EC2NodeClasses)"
    );
}

#[test]
fn invalid_node_class_is_reported_with_its_field() {
    let class = CLASS_V1BETA1.replace(
        "  subnetSelectorTerms: [{tags: {karpenter.sh/discovery: test}}]\n",
        "",
    );
    let err = plan_of(&[("class.yaml", &class), ("pool.yaml", POOL_V1BETA1)]).unwrap_err();
    let lines = err.lines();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("EC2NodeClass/default: spec.subnetSelectorTerms: ")),
        "{lines:#?}"
    );

    let bad_family = CLASS_V1BETA1.replace("amiFamily: AL2", "amiFamily: AL3");
    let err = plan_of(&[("class.yaml", &bad_family), ("pool.yaml", POOL_V1BETA1)]).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("EC2NodeClass/default"), "{text}");
    assert!(text.contains("AL3"), "{text}");
}

#[test]
fn parse_errors_name_file_and_field() {
    let bad = PODS_TEXT.replace("replicas: 3", "replicas: three");
    let err = plan_of(&[("apps/web.yaml", &bad)]).unwrap_err();
    let lines = err.lines();
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with("apps/web.yaml: document 1 (Deployment/web)"),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("spec.replicas"), "{}", lines[0]);
}

#[test]
fn snapshot_problems_are_all_reported() {
    let bad = PODS_TEXT.replace("cpu: \"1\"", "cpu: lots");
    let err = plan_of(&[
        ("class.yaml", CLASS_V1BETA1),
        ("pool.yaml", POOL_V1BETA1),
        ("pods.yaml", &bad),
    ])
    .unwrap_err();
    let lines = err.lines();
    assert!(
        lines.iter().any(|l| l.starts_with("Deployment/shop/web: ")
            && l.contains("resources.requests.cpu")),
        "{lines:#?}"
    );
}

#[test]
fn json_totals_agree_with_the_decision() {
    let plan = plan_of(&[
        ("class.yaml", CLASS_V1BETA1),
        ("pool.yaml", POOL_V1BETA1),
        ("pods.yaml", PODS_TEXT),
    ])
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&render_json(&plan)).unwrap();
    assert_eq!(v["totals"]["pods_placed"], 3);
    assert_eq!(
        v["totals"]["new_nodes"],
        plan.decision.new_node_claims.len()
    );
    assert_eq!(v["input"]["node_pools"][0]["max_pods"], 110);
    let node = &v["new_nodes"][0];
    assert_eq!(node["node_pool"], "default");
    assert_eq!(node["allocatable"]["pods"], "110");
    assert!(
        node["requirements"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "karpenter.k8s.aws/instance-category In [m]"),
        "{node}"
    );
    let text = render_text(&plan, 5);
    assert!(
        text.starts_with("Simulating 3 pending pods, 0 DaemonSets"),
        "{text}"
    );
    assert!(text.contains("NodePool default: EC2NodeClass default (AL2), maxPods 110"));
}

#[test]
fn directories_are_read_in_name_order() {
    let dir = std::env::temp_dir().join(format!("karpenter-simulate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("b.yaml"), "b").unwrap();
    std::fs::write(dir.join("a.yml"), "a").unwrap();
    std::fs::write(dir.join("notes.txt"), "x").unwrap();
    let sources = read_sources(std::slice::from_ref(&dir)).unwrap();
    let texts: Vec<&str> = sources.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(texts, ["a", "b"]);

    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert!(matches!(
        read_sources(std::slice::from_ref(&empty)),
        Err(SimulateError::EmptyDirectory(_))
    ));
    let missing = PathBuf::from("/nonexistent/karpenter.yaml");
    let err = read_sources(&[missing]).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot read /nonexistent/karpenter.yaml")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `SimulateArgs` parsed as the command line would.
fn args_of(argv: &[&str]) -> Result<SimulateArgs, clap::Error> {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: SimulateArgs,
    }
    use clap::Parser;
    Cli::try_parse_from(std::iter::once("simulate").chain(argv.iter().copied())).map(|c| c.args)
}

#[test]
fn manifests_without_managed_nodes_have_no_disruption_plan() {
    let plan = plan_of(&[
        ("class.yaml", CLASS_V1BETA1),
        ("pool.yaml", POOL_V1BETA1),
        ("pods.yaml", PODS_TEXT),
    ])
    .unwrap();
    assert!(plan.disruption.is_none());
    assert!(!render_text(&plan, 8).contains("Disruption at"));
    let json: serde_json::Value = serde_json::from_str(&render_json(&plan)).unwrap();
    assert!(json.get("disruption").is_none(), "{json}");
}

#[test]
fn now_and_feature_gates_and_min_savings_reach_the_disruption_settings() {
    let args = args_of(&[
        "-f",
        "x.yaml",
        "--now",
        "2026-12-07T09:30:00+01:00",
        "--feature-gates",
        "SpotToSpotConsolidation=true",
        "--min-consolidation-savings",
        "0.05",
        "--replace-with-several",
        "--multi-node-candidates",
        "all",
    ])
    .unwrap();
    let settings = disruption_settings(&args).unwrap();
    assert_eq!(
        settings.now,
        "2026-12-07T08:30:00Z"
            .parse::<k8s_openapi::jiff::Timestamp>()
            .unwrap()
    );
    assert!(settings.spot_to_spot);
    assert_eq!(settings.min_savings_per_hour, 0.05);
    assert!(settings.replace_with_several);
    assert_eq!(settings.multi_node_cap, None, "`all` lifts the cap");

    let defaults = disruption_settings(&args_of(&["-f", "x.yaml"]).unwrap()).unwrap();
    assert!(
        !defaults.spot_to_spot,
        "SpotToSpotConsolidation is off by default"
    );
    assert_eq!(defaults.min_savings_per_hour, 0.0);
    assert!(
        !defaults.replace_with_several,
        "Karpenter replaces a node by one at most"
    );
    assert_eq!(defaults.multi_node_cap, Some(100), "Karpenter's cap");
    let capped = args_of(&["-f", "x.yaml", "--multi-node-candidates", "7"]).unwrap();
    assert_eq!(
        disruption_settings(&capped).unwrap().multi_node_cap,
        Some(7)
    );
}

#[test]
fn a_multi_node_cap_below_two_or_not_a_number_is_refused_naming_the_flag() {
    for bad in ["1", "0", "many", "2.5"] {
        let err = args_of(&["-f", "x.yaml", "--multi-node-candidates", bad])
            .expect_err(bad)
            .to_string();
        assert!(
            err.contains("--multi-node-candidates"),
            "{bad}: the error names the flag: {err}"
        );
    }
}

#[test]
fn a_bad_now_or_negative_min_savings_is_invalid_input_naming_the_flag() {
    let err =
        disruption_settings(&args_of(&["-f", "x.yaml", "--now", "tomorrow"]).unwrap()).unwrap_err();
    let lines = err.lines();
    assert!(
        lines[0].starts_with("--now \"tomorrow\": not an RFC 3339 time"),
        "{lines:?}"
    );

    let err =
        disruption_settings(&args_of(&["-f", "x.yaml", "--min-consolidation-savings=-1"]).unwrap())
            .unwrap_err();
    assert!(
        err.lines()[0].starts_with("--min-consolidation-savings -1"),
        "{err}"
    );
}

#[test]
fn files_are_optional_only_when_reading_the_cluster() {
    assert!(args_of(&[]).is_err(), "no input at all");
    let args = args_of(&["--from-cluster", "--context", "prod"]).unwrap();
    assert!(args.from_cluster && args.files.is_empty());
    assert_eq!(args.context.as_deref(), Some("prod"));
    assert!(
        args_of(&["-f", "x.yaml", "--context", "prod"]).is_err(),
        "--context needs --from-cluster"
    );
    let both = args_of(&["--from-cluster", "-f", "new-deployment.yaml"]).unwrap();
    assert_eq!(both.files.len(), 1);
}

#[test]
fn the_plan_reports_the_configuration_lp_bound_and_its_gap() {
    let plan = plan_of(&[
        ("class.yaml", CLASS_V1BETA1),
        ("pool.yaml", POOL_V1BETA1),
        ("pods.yaml", PODS_TEXT),
    ])
    .unwrap();
    let bound = plan.bound.clone().expect("pods go to new nodes");
    assert_eq!(bound.pods, 3);
    assert!(
        bound.bound > 0.0 && bound.bound <= bound.plan + 1e-9,
        "{bound:?}"
    );
    let text = render_text(&plan, 5);
    let line = text
        .lines()
        .find(|l| l.starts_with("Lower bound: no fleet for these 3 pods costs less than $"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("this plan is within"), "{line}");
    let v: serde_json::Value = serde_json::from_str(&render_json(&plan)).unwrap();
    let lower = v["totals"]["lower_bound_per_hour"].as_f64().unwrap();
    assert!((lower - bound.bound).abs() < 1e-4);
    let above = v["totals"]["above_bound_percent"].as_f64().unwrap();
    assert!(
        (above - 100.0 * bound.gap().unwrap()).abs() < 0.06,
        "{above}"
    );
}

#[test]
fn optimal_packing_and_its_knobs_are_flags_and_bad_values_are_refused() {
    let args = args_of(&[
        "-f",
        "x.yaml",
        "--packing",
        "optimal",
        "--node-cost",
        "0.01",
        "--burstable",
        "derate=0.4",
    ])
    .unwrap();
    assert_eq!(
        karpenter_core::scheduling::Packing::from(args.packing),
        karpenter_core::scheduling::Packing::Optimal
    );
    assert_eq!(args.node_cost, 0.01);
    assert_eq!(args.burstable, Burstable::Derate(0.4));
    assert_eq!(
        args_of(&["-f", "x.yaml", "--burstable", "exclude"])
            .unwrap()
            .burstable,
        Burstable::Exclude
    );
    let err = args_of(&["-f", "x.yaml", "--burstable", "derate=2"]).unwrap_err();
    assert!(
        err.to_string().contains("derate=F with F between 0 and 1"),
        "{err}"
    );
    // Optimal on the same manifests: every pod placed, never dearer than Karpenter's rule.
    let sources = [
        src("class.yaml", CLASS_V1BETA1),
        src("pool.yaml", POOL_V1BETA1),
        src("pods.yaml", PODS_TEXT),
    ];
    let optimal = karpenter_core::scheduling::SolveOptions {
        packing: karpenter_core::scheduling::Packing::Optimal,
        ..karpenter_core::scheduling::SolveOptions::default()
    };
    let plan = plan(
        &sources,
        embedded(),
        EMBEDDED_CATALOG,
        &optimal,
        &settings_at(NOW),
    )
    .unwrap();
    let karpenter = plan_of(&[
        ("class.yaml", CLASS_V1BETA1),
        ("pool.yaml", POOL_V1BETA1),
        ("pods.yaml", PODS_TEXT),
    ])
    .unwrap();
    assert_eq!(plan.decision.placed_pods(), 3);
    assert!(plan.decision.new_cost_per_hour() <= karpenter.decision.new_cost_per_hour() + 1e-9);
}

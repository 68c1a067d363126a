//! The Helm chart (`charts/karpenter`). Rendered with the seed deployment's exact command line
//! (through a shell, so the escaped annotation key reaches Helm as it does for the user) and a
//! values file like theirs, and checked object by object; then installed into the bed's API
//! server, where the controller, run out of cluster with the chart's ServiceAccount token (not
//! admin), provisions and consolidates, and SubjectAccessReviews show what that account may and
//! may not do. Needs `HELM` (set by `cargo xtask e2e`) and, for the install, the e2e bed.

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::rbac::v1::ClusterRole;
use karpenter_e2e::chart::*;
use karpenter_e2e::controller::{ControllerProcess, install_crds, repo_root};
use karpenter_e2e::harness::*;
use karpenter_e2e::scenario::*;
use kube_client::api::{Api, ListParams, PostParams};
use serde::Deserialize;
use serde_json::json;
use serde_yaml::Value;

/// `helm template karpenter <chart> -n karpenter <args>`, as (kind/name → object).
fn render(args: &str) -> Vec<Value> {
    let text = sh_helm(&format!(
        "template karpenter {} -n karpenter {args}",
        chart().display()
    ));
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn env_of(container: &Value) -> Vec<(String, Value)> {
    container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_owned(), e.clone()))
        .collect()
}

#[test]
fn helm_lint_passes_with_the_seeds_values() {
    sh_helm(&format!(
        "lint --strict {} {}",
        chart().display(),
        seed_flags("prod", "https://EXAMPLE.gr7.us-east-1.eks.amazonaws.com")
    ));
}

#[test]
fn the_seed_command_line_renders_what_karpenter_036_users_rely_on() {
    let objects = render(&seed_flags(
        "prod",
        "https://EXAMPLE.gr7.us-east-1.eks.amazonaws.com",
    ));
    let mut kinds: Vec<String> = objects
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ClusterRole/karpenter",
            "ClusterRole/karpenter-admin",
            "ClusterRole/karpenter-core",
            "ClusterRoleBinding/karpenter",
            "ClusterRoleBinding/karpenter-core",
            "Deployment/karpenter",
            "PodDisruptionBudget/karpenter",
            "Role/karpenter",
            "Role/karpenter-service-cidr",
            "RoleBinding/karpenter",
            "RoleBinding/karpenter-service-cidr",
            "Service/karpenter",
            "ServiceAccount/karpenter",
        ]
    );
    // IRSA: the escaped dots make one annotation key.
    let sa = find(&objects, "ServiceAccount", "karpenter");
    assert_eq!(
        sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].as_str(),
        Some(ROLE_ARN)
    );
    // Prometheus' scrape job keeps Service karpenter, port http-metrics.
    let svc = find(&objects, "Service", "karpenter");
    let port = &svc["spec"]["ports"][0];
    assert_eq!(port["name"].as_str(), Some("http-metrics"));
    assert_eq!(port["targetPort"].as_str(), Some("http-metrics"));
    let deploy = find(&objects, "Deployment", "karpenter");
    let selector = &deploy["spec"]["selector"]["matchLabels"];
    // The same selector as Karpenter's chart: an upgrade from 0.36 does not hit the immutable field.
    assert_eq!(
        selector["app.kubernetes.io/name"].as_str(),
        Some("karpenter")
    );
    assert_eq!(
        selector["app.kubernetes.io/instance"].as_str(),
        Some("karpenter")
    );
    assert_eq!(selector.as_mapping().unwrap().len(), 2);
    assert_eq!(&svc["spec"]["selector"], selector);
    let pod = &deploy["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(c["args"][0].as_str(), Some("run"));
    assert_eq!(c["ports"][0]["name"].as_str(), Some("http-metrics"));
    assert_eq!(c["ports"][0]["containerPort"].as_u64(), Some(8000));
    assert_eq!(c["ports"][1]["name"].as_str(), Some("http"));
    let env = env_of(c);
    let value = |name: &str| {
        env.iter()
            .find(|(n, _)| n == name)
            .map(|(_, e)| e["value"].as_str().unwrap_or_default().to_owned())
    };
    assert_eq!(value("CLUSTER_NAME").as_deref(), Some("prod"));
    assert_eq!(
        value("CLUSTER_ENDPOINT").as_deref(),
        Some("https://EXAMPLE.gr7.us-east-1.eks.amazonaws.com")
    );
    assert_eq!(
        value("INTERRUPTION_QUEUE").as_deref(),
        Some("prod-interruptions")
    );
    assert_eq!(value("METRICS_PORT").as_deref(), Some("8000"));
    assert_eq!(value("HEALTH_PROBE_PORT").as_deref(), Some("8081"));
    assert_eq!(
        value("FEATURE_GATES").as_deref(),
        Some("Drift=true,SpotToSpotConsolidation=false")
    );
    let ns = env
        .iter()
        .find(|(n, _)| n == "SYSTEM_NAMESPACE")
        .expect("SYSTEM_NAMESPACE")
        .1
        .clone();
    assert_eq!(
        ns["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        Some("metadata.namespace")
    );
    // Every variable the chart sets is one the binary reads.
    let read = karpenter::runtime::settings::Settings::env_vars();
    for (name, _) in &env {
        assert!(
            read.contains(name),
            "the chart sets {name}, which karpenter does not read"
        );
    }
    // Hardening.
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(sc["capabilities"]["drop"][0].as_str(), Some("ALL"));
    assert_eq!(
        sc["seccompProfile"]["type"].as_str(),
        Some("RuntimeDefault")
    );
    // The values file: its nodeSelector and tolerations replace the defaults (lists and maps of
    // scalars), its nodeAffinity merges with the default podAntiAffinity, which gets the
    // selector labels; so does the default zone spread.
    assert_eq!(
        pod["nodeSelector"]["karpenter.example.com/nodegroup"].as_str(),
        Some("karpenter")
    );
    assert_eq!(pod["tolerations"].as_sequence().unwrap().len(), 1);
    assert_eq!(pod["tolerations"][0]["key"].as_str(), Some("dedicated"));
    let affinity = &pod["affinity"];
    assert_eq!(
        affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]["matchExpressions"][0]["key"].as_str(),
        Some("eks.amazonaws.com/nodegroup")
    );
    let anti = &affinity["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0];
    assert_eq!(&anti["labelSelector"]["matchLabels"], selector);
    assert_eq!(
        &pod["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"],
        selector
    );
    assert_eq!(c["resources"]["limits"]["memory"].as_str(), Some("1Gi"));
    // No Secrets or ConfigMaps in any rule, and no wildcard.
    for o in objects
        .iter()
        .filter(|o| o["kind"] == "ClusterRole" || o["kind"] == "Role")
    {
        for rule in o["rules"].as_sequence().unwrap() {
            let resources: Vec<&str> = rule["resources"]
                .as_sequence()
                .unwrap()
                .iter()
                .filter_map(|r| r.as_str())
                .collect();
            let verbs: Vec<&str> = rule["verbs"]
                .as_sequence()
                .unwrap()
                .iter()
                .filter_map(|r| r.as_str())
                .collect();
            assert!(
                !resources
                    .iter()
                    .any(|r| ["secrets", "configmaps", "*"].contains(r)),
                "{}: {resources:?}",
                o["metadata"]["name"].as_str().unwrap()
            );
            assert!(
                !verbs.contains(&"*"),
                "{}: {verbs:?}",
                o["metadata"]["name"].as_str().unwrap()
            );
        }
    }
}

#[test]
fn the_pdb_api_follows_the_cluster_and_the_service_monitor_is_optional() {
    let pdb = |args: &str| {
        let objects = render(&format!("--set settings.clusterName=c {args}"));
        find(&objects, "PodDisruptionBudget", "karpenter")["apiVersion"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(pdb("--kube-version 1.20.2"), "policy/v1beta1");
    assert_eq!(pdb("--kube-version 1.29.0"), "policy/v1");
    let objects = render(
        "--set settings.clusterName=c --set serviceMonitor.enabled=true --api-versions monitoring.coreos.com/v1",
    );
    let sm = find(&objects, "ServiceMonitor", "karpenter");
    assert_eq!(
        sm["spec"]["endpoints"][0]["port"].as_str(),
        Some("http-metrics")
    );
    assert_eq!(
        sm["spec"]["endpoints"][0]["path"].as_str(),
        Some("/metrics")
    );
    // Without a cluster name the render fails, naming the value.
    let out = Command::new(helm())
        .args(["template", "karpenter"])
        .arg(chart())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("settings.clusterName is required"));
}

/// A SubjectAccessReview for the chart's ServiceAccount.
async fn can(
    ctx: &Ctx,
    verb: &str,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
    name: Option<&str>,
) -> bool {
    let api: Api<SubjectAccessReview> = Api::all(ctx.kube.clone());
    let review: SubjectAccessReview = serde_json::from_value(json!({
        "spec": {
            "user": "system:serviceaccount:karpenter:karpenter",
            "groups": ["system:serviceaccounts", "system:serviceaccounts:karpenter", "system:authenticated"],
            "resourceAttributes": {"verb": verb, "group": group, "resource": resource, "namespace": namespace, "name": name},
        },
    }))
    .unwrap();
    let out = api
        .create(&PostParams::default(), &review)
        .await
        .expect("SubjectAccessReview");
    out.status.map(|s| s.allowed).unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_controller_provisions_and_consolidates_with_the_charts_rbac_alone() {
    karpenter_e2e::install_crypto_provider();
    let _serial = serial().await;
    run("chart", |ctx| async move {
        install_crds(&ctx.kube).await;
        let kubeconfig = ctx.env.cluster.kubeconfig.display().to_string();
        let install = format!(
            "upgrade --install karpenter {} --namespace karpenter --create-namespace --kubeconfig {kubeconfig} {} --set replicas=0",
            chart().display(),
            seed_flags(&ctx.env.aws.cluster_name, &ctx.env.cluster.server),
        );
        sh_helm(&install);
        let _uninstall = Release { kubeconfig: kubeconfig.clone() };

        // What the account may do, and what it may not.
        let allowed = [
            ("create", "karpenter.sh", "nodeclaims", None, None),
            ("delete", "karpenter.sh", "nodeclaims", None, None),
            ("patch", "karpenter.sh", "nodeclaims/status", None, None),
            ("watch", "karpenter.k8s.aws", "ec2nodeclasses", None, None),
            ("patch", "karpenter.k8s.aws", "ec2nodeclasses/status", None, None),
            ("create", "", "pods/eviction", Some("default"), None),
            ("delete", "", "nodes", None, None),
            ("create", "events.k8s.io", "events", Some("default"), None),
            ("update", "coordination.k8s.io", "leases", Some("karpenter"), Some("karpenter-leader-election")),
            ("get", "", "services", Some("default"), Some("kubernetes")),
        ];
        for (verb, group, resource, ns, name) in allowed {
            assert!(can(&ctx, verb, group, resource, ns, name).await, "may not {verb} {group}/{resource} {ns:?} {name:?}");
        }
        let denied = [
            ("get", "", "secrets", Some("karpenter"), None),
            ("list", "", "secrets", None, None),
            ("get", "", "configmaps", Some("kube-system"), None),
            ("create", "apps", "deployments", Some("karpenter"), None),
            ("update", "coordination.k8s.io", "leases", Some("kube-system"), Some("kube-controller-manager")),
            ("update", "coordination.k8s.io", "leases", Some("karpenter"), Some("someone-else")),
            ("create", "", "pods", Some("default"), None),
            ("delete", "karpenter.sh", "nodepools", None, None),
            ("get", "", "services", Some("default"), Some("other")),
            ("create", "rbac.authorization.k8s.io", "clusterroles", None, None),
        ];
        for (verb, group, resource, ns, name) in denied {
            assert!(!can(&ctx, verb, group, resource, ns, name).await, "may {verb} {group}/{resource} {ns:?} {name:?}");
        }

        // The controller as the chart's ServiceAccount, with leader election on.
        let sa_kubeconfig = service_account_kubeconfig(&ctx).await;
        let sa_kubeconfig = sa_kubeconfig.display().to_string();
        let controller = ControllerProcess::start(
            &ctx.env,
            "chart-rbac",
            &[
                ("KUBECONFIG", sa_kubeconfig.as_str()),
                ("SYSTEM_NAMESPACE", "karpenter"),
                ("DISABLE_LEADER_ELECTION", "false"),
                ("DISRUPTION_POLL_INTERVAL", "2s"),
                ("CONSOLIDATION_VALIDATION_WAIT", "2s"),
            ],
        );
        let pool = pool_name(&ctx, "chart");
        let _sim = ctx.start_sim(ctx.sim_config_for_tag("karpenter.sh/nodepool", &pool));
        with_teardown(&ctx, &[&pool], async {
            let spec = PoolSpec::staging(json!([
                {"key": "karpenter.k8s.aws/instance-cpu", "operator": "Lt", "values": ["5"]}
            ]))
            .with_disruption(json!({
                "consolidationPolicy": "WhenUnderutilized",
                "expireAfter": "720h",
                "budgets": [{"nodes": "100%"}],
            }));
            apply_pool(&ctx, &pool, &spec).await;
            deploy(&ctx, "web", Some(&pool), 8, json!({"cpu": "900m", "memory": "512Mi"}), |_| {}).await;
            eventually("8 pods Running", Duration::from_secs(240), || async {
                let pods = pods_of(&ctx, "web").await;
                (pods.iter().filter(|p| pod_running_ready(p)).count() == 8).then_some(())
            })
            .await;
            let before = nodes_of(&ctx, &pool).await.len();
            assert!(before >= 2, "8 × 900m on ≤ 4-vCPU types needs several nodes");
            scale(&ctx, "web", 1).await;
            eventually_why("the fleet consolidated", Duration::from_secs(240), || async {
                let nodes = nodes_of(&ctx, &pool).await.len();
                let claims = claims_of(&ctx, &pool).await.len();
                if nodes < before && claims == nodes {
                    Ok(())
                } else {
                    Err(format!("{nodes} nodes, {claims} claims (was {before})"))
                }
            })
            .await;
            let leases: Api<Lease> = Api::namespaced(ctx.kube.clone(), "karpenter");
            let lease = leases.get("karpenter-leader-election").await.expect("the leader Lease in karpenter");
            assert!(lease.spec.and_then(|s| s.holder_identity).is_some());
            let log = controller.log_tail(100_000);
            let forbidden: Vec<&str> = log.lines().filter(|l| l.contains("forbidden") || l.contains(" 403")).take(5).collect();
            assert!(forbidden.is_empty(), "calls the chart's RBAC refused:\n{}", forbidden.join("\n"));
            controller.assert_no_panic();
            eprintln!("chart: provisioned {before} nodes and consolidated as system:serviceaccount:karpenter:karpenter");
        })
        .await;
    })
    .await;
    // Uninstalling leaves no cluster-scoped object of the release behind.
    let ctx = Ctx::new("chart-after").await;
    let roles: Api<ClusterRole> = Api::all(ctx.kube.clone());
    eventually(
        "the release's ClusterRoles gone",
        Duration::from_secs(60),
        || async {
            let left = roles
                .list(&ListParams::default().labels("app.kubernetes.io/instance=karpenter"))
                .await
                .ok()?;
            left.items.is_empty().then_some(())
        },
    )
    .await;
}

/// Every AWS action the controller calls (the narrow API traits in `providers/src/aws/`:
/// `Ec2Api`, `SsmApi`, `IamApi`, `PricingApi`, `SqsApi`, `EksApi`), plus what CreateFleet
/// needs on top (`ec2:RunInstances`, `iam:PassRole` for the node role, `iam:TagInstanceProfile`
/// for a tagged CreateInstanceProfile).
const AWS_ACTIONS: &[&str] = &[
    "ec2:CreateFleet",
    "ec2:RunInstances",
    "ec2:CreateLaunchTemplate",
    "ec2:DescribeLaunchTemplates",
    "ec2:DeleteLaunchTemplate",
    "ec2:CreateTags",
    "ec2:TerminateInstances",
    "ec2:DescribeInstances",
    "ec2:DescribeInstanceTypes",
    "ec2:DescribeInstanceTypeOfferings",
    "ec2:DescribeSpotPriceHistory",
    "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeImages",
    "ssm:GetParameters",
    "iam:GetInstanceProfile",
    "iam:CreateInstanceProfile",
    "iam:TagInstanceProfile",
    "iam:AddRoleToInstanceProfile",
    "iam:RemoveRoleFromInstanceProfile",
    "iam:PassRole",
    "pricing:GetProducts",
    "sqs:GetQueueUrl",
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "eks:DescribeCluster",
];

#[test]
fn the_iam_policy_allows_every_call_and_nothing_broad() {
    let text = std::fs::read_to_string(repo_root().join("docs/iam-policy.json")).unwrap();
    let policy: serde_json::Value =
        serde_json::from_str(&text).expect("docs/iam-policy.json is JSON");
    let mut granted = Vec::new();
    for statement in policy["Statement"].as_array().unwrap() {
        assert_eq!(statement["Effect"], "Allow");
        let actions = match &statement["Action"] {
            serde_json::Value::String(a) => vec![a.clone()],
            serde_json::Value::Array(a) => {
                a.iter().map(|a| a.as_str().unwrap().to_owned()).collect()
            }
            other => panic!("Action {other}"),
        };
        for action in actions {
            assert!(!action.contains('*'), "{action}: no wildcard actions");
            granted.push(action);
        }
    }
    let missing: Vec<&&str> = AWS_ACTIONS
        .iter()
        .filter(|a| !granted.iter().any(|g| g == *a))
        .collect();
    assert!(missing.is_empty(), "docs/iam-policy.json lacks {missing:?}");
    let extra: Vec<&String> = granted
        .iter()
        .filter(|g| !AWS_ACTIONS.contains(&g.as_str()))
        .collect();
    assert!(
        extra.is_empty(),
        "docs/iam-policy.json grants what the controller does not call: {extra:?}"
    );
}

//! `karpenter simulate` as a user runs it: the built binary on `examples/staging` and on broken
//! inputs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn staging() -> PathBuf {
    root().join("examples").join("staging")
}

fn simulate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_karpenter"))
        .arg("simulate")
        .args(args)
        .output()
        .expect("runs the karpenter binary")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A fresh scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "karpenter-simulate-cli-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn staging_json() -> serde_json::Value {
    let out = simulate(&["-f", staging().to_str().unwrap(), "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).expect("--output json is JSON")
}

#[test]
fn staging_example_plans_every_pod_but_the_gpu_one() {
    let out = simulate(&["-f", staging().to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        text.starts_with("Simulating 18 pending pods, 1 DaemonSets, 0 existing nodes, 1 NodePools"),
        "{text}"
    );
    assert!(text.contains("Catalog: embedded"), "{text}");
    assert!(
        text.contains("NodePool default: EC2NodeClass default (AL2), maxPods 110"),
        "{text}"
    );
    assert!(
        text.contains("Unschedulable pods: 1\n  shop/recommender-0: "),
        "{text}"
    );

    // Every new node has 110 pod slots (maxPods from the v1beta1 NodePool's kubelet).
    let slots: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split("pod-slots=").nth(1))
        .collect();
    assert!(!slots.is_empty(), "{text}");
    for s in slots {
        assert!(s.ends_with("/110"), "{s}");
    }

    let v = staging_json();
    let unschedulable = v["unschedulable"].as_array().unwrap();
    assert_eq!(unschedulable.len(), 1, "{unschedulable:?}");
    assert_eq!(unschedulable[0]["pod"], "shop/recommender-0");
    assert!(!unschedulable[0]["reason"].as_str().unwrap().is_empty());
    let pending = v["input"]["pending_pods"].as_u64().unwrap();
    assert_eq!(v["totals"]["pods_placed"].as_u64().unwrap(), pending - 1);

    // Only the staging categories, amd64, on-demand.
    for node in v["new_nodes"].as_array().unwrap() {
        assert_eq!(node["node_pool"], "default");
        assert_eq!(node["allocatable"]["pods"], "110", "{node}");
        for o in node["options"].as_array().unwrap() {
            let name = o["instance_type"].as_str().unwrap();
            assert!(
                matches!(name.chars().next(), Some('t' | 'm' | 'r' | 'c')),
                "{name} is not in categories t/m/r/c"
            );
            assert_eq!(o["capacity_type"], "on-demand");
        }
        let reqs: Vec<&str> = node["requirements"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        assert!(reqs.contains(&"kubernetes.io/arch In [amd64]"), "{reqs:?}");
    }
}

/// The reason names the GPU the pod asks for, not the pool's limits: no type of the pool has
/// an `nvidia.com/gpu`, whatever the limits leave.
#[test]
fn staging_gpu_pod_reason_names_the_gpu() {
    let v = staging_json();
    let reason = v["unschedulable"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("nvidia.com/gpu"), "{reason}");
}

#[test]
fn json_totals_match_the_text_report() {
    let text = stdout(&simulate(&["-f", staging().to_str().unwrap()]));
    let total = text
        .lines()
        .find(|l| l.starts_with("Total: "))
        .expect("a Total line");
    let v = staging_json();
    let t = &v["totals"];
    let expected = format!(
        "Total: {} new nodes, ${:.4}/h; {} pods placed, {} unschedulable;",
        t["new_nodes"],
        t["cost_per_hour"].as_f64().unwrap(),
        t["pods_placed"],
        t["unschedulable"],
    );
    assert!(total.starts_with(&expected), "{total}\nvs\n{expected}");
    assert_eq!(
        v["new_nodes"].as_array().unwrap().len() as u64,
        t["new_nodes"].as_u64().unwrap()
    );
    let node_lines = text.lines().filter(|l| l.contains(" nodepool=")).count() as u64;
    assert_eq!(node_lines, t["new_nodes"].as_u64().unwrap());
}

#[test]
fn files_can_be_given_one_by_one() {
    let dir = staging();
    let file = |n: &str| dir.join(n).to_str().unwrap().to_string();
    let (a, b, c) = (
        file("ec2nodeclass.yaml"),
        file("nodepool.yaml"),
        file("workload.yaml"),
    );
    let out = simulate(&["-f", &a, "-f", &b, "-f", &c, "--max-pods-listed", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("(+"), "pod lists are capped");
}

#[test]
fn bad_yaml_names_the_file_and_field_and_exits_2() {
    let dir = scratch("bad-yaml");
    let bad = dir.join("web.yaml");
    std::fs::write(
        &bad,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: many\n",
    )
    .unwrap();
    let out = simulate(&["-f", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(bad.to_str().unwrap()), "{err}");
    assert!(err.contains("document 1 (Deployment/web)"), "{err}");
    assert!(err.contains("spec.replicas"), "{err}");
    assert!(stdout(&out).is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_ec2_node_class_exits_2_naming_pool_and_class() {
    let dir = scratch("missing-class");
    for f in ["nodepool.yaml", "workload.yaml"] {
        std::fs::copy(staging().join(f), dir.join(f)).unwrap();
    }
    let out = simulate(&["-f", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains(
            "error: NodePool/default: spec.template.spec.nodeClassRef.name: EC2NodeClass \
             \"default\" is not in the manifests"
        ),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unreadable_inputs_exit_2() {
    let out = simulate(&["-f", "/nonexistent/cluster.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("/nonexistent/cluster.yaml"));

    let dir = scratch("bad-catalog");
    let catalog = dir.join("catalog.json");
    std::fs::write(&catalog, "{\"source\": 1}").unwrap();
    let out = simulate(&[
        "-f",
        staging().to_str().unwrap(),
        "--catalog",
        catalog.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("catalog.json"), "{}", stderr(&out));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_catalog_file_replaces_the_embedded_one() {
    let dir = scratch("catalog");
    let catalog = dir.join("small.json");
    std::fs::write(
        &catalog,
        r#"{"source": "test", "region": "us-east-1", "instance_types": [
  {"name": "m5.xlarge", "vcpu": 4, "memory_mib": 16384, "architectures": ["amd64"],
   "hypervisor": "nitro", "current_generation": true, "max_network_interfaces": 4,
   "ipv4_per_interface": 15, "network_performance": "Up to 10 Gigabit",
   "spot_supported": true, "zones": ["us-east-1a", "us-east-1b", "us-east-1c"],
   "on_demand_price": 0.192}]}"#,
    )
    .unwrap();
    let out = simulate(&[
        "-f",
        staging().to_str().unwrap(),
        "--catalog",
        catalog.to_str().unwrap(),
    ]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        text.contains(&format!(
            "Catalog: {} (1 instance types)",
            catalog.display()
        )),
        "{text}"
    );
    for l in text.lines().filter(|l| l.contains(" type=")) {
        assert!(l.contains("type=m5.xlarge"), "{l}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn packing_rules_are_a_flag_and_cheapest_keeps_the_cheaper_plan() {
    let run = |packing: &str| -> serde_json::Value {
        let out = simulate(&[
            "-f",
            staging().to_str().unwrap(),
            "-o",
            "json",
            "--packing",
            packing,
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_str(&stdout(&out)).expect("json output")
    };
    let cost = |v: &serde_json::Value| v["totals"]["cost_per_hour"].as_f64().unwrap();
    let placed = |v: &serde_json::Value| v["totals"]["pods_placed"].as_u64().unwrap();
    let karpenter = run("karpenter");
    let cost_aware = run("cost-aware");
    let cheapest = run("cheapest");
    assert_eq!(placed(&karpenter), placed(&cost_aware));
    assert_eq!(placed(&cheapest), placed(&karpenter));
    // The greedy rule is not always cheaper; `cheapest` is never dearer than either.
    assert!(cost(&cheapest) <= cost(&karpenter).min(cost(&cost_aware)) + 1e-9);
    assert_eq!(karpenter, run("karpenter"), "deterministic");
    let bad = simulate(&["-f", staging().to_str().unwrap(), "--packing", "densest"]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("--packing"), "{}", stderr(&bad));
}

fn running() -> PathBuf {
    root().join("examples").join("running")
}

/// A Monday noon, inside the pool's weekday 09:00–17:00 no-drift window.
const RUNNING_NOW: &str = "2026-12-07T12:00:00Z";

fn running_json(now: &str) -> serde_json::Value {
    let dir = running();
    let out = simulate(&["-f", dir.to_str().unwrap(), "--now", now, "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).expect("--output json is JSON")
}

fn node_names(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn running_example_plans_disruption_and_says_why_each_other_node_stays() {
    let json = running_json(RUNNING_NOW);
    let d = &json["disruption"];
    assert_eq!(d["now"], RUNNING_NOW);
    let commands = d["commands"].as_array().unwrap();
    let kept = d["kept"].as_array().unwrap();

    // Every managed node appears exactly once, in a command or kept.
    let mut seen: Vec<String> = commands
        .iter()
        .flat_map(|c| node_names(&c["candidates"]))
        .chain(kept.iter().map(|k| k["node"].as_str().unwrap().to_owned()))
        .collect();
    seen.sort();
    let mut expected: Vec<String> = (0..7)
        .map(|i| {
            let n = ["1-10", "1-11", "2-12", "2-13", "3-14", "3-15", "1-16"][i];
            format!("ip-10-0-{n}.ec2.internal")
        })
        .collect();
    expected.sort();
    assert_eq!(seen, expected);

    // The 32-day-old node expires first, whatever the budgets say.
    assert_eq!(commands[0]["method"], "expiration");
    assert_eq!(
        node_names(&commands[0]["candidates"]),
        ["ip-10-0-3-15.ec2.internal"]
    );
    assert!(commands[0]["reason"].is_null());
    // The node running only a DaemonSet pod is empty.
    let empty = commands
        .iter()
        .find(|c| c["method"] == "emptiness")
        .expect("an emptiness command");
    assert_eq!(
        node_names(&empty["candidates"]),
        ["ip-10-0-1-10.ec2.internal"]
    );
    assert_eq!(empty["decision"], "delete");
    assert!(empty["savings_per_hour"].as_f64().unwrap() > 0.0);

    let reasons_of = |node: &str| -> Vec<String> {
        let k = kept
            .iter()
            .find(|k| k["node"] == node)
            .unwrap_or_else(|| panic!("{node} kept: {json}"));
        k["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["kind"].as_str().unwrap().to_owned())
            .collect()
    };
    // The batch job's do-not-disrupt pod and redis's PDB each hold their node.
    assert_eq!(
        reasons_of("ip-10-0-2-13.ec2.internal")[0],
        "pod_do_not_disrupt"
    );
    assert_eq!(reasons_of("ip-10-0-3-14.ec2.internal")[0], "pdb_blocks");
    // No drift replacement inside the weekday window (the drifted node may still be
    // consolidated: that is the Underutilized budget's call), and 30% of 7 nodes, rounded up,
    // is 3 disrupting at once.
    assert!(commands.iter().all(|c| c["method"] != "drift"), "{json}");
    assert_eq!(commands.len(), 3, "{json}");
    assert_eq!(
        reasons_of("ip-10-0-2-12.ec2.internal"),
        ["budget_exhausted"],
        "{json}"
    );
}

#[test]
fn running_example_after_hours_replaces_the_drifted_node() {
    // 18:00 UTC: the Drifted budget's 09:00 + 8h window has closed.
    let json = running_json("2026-12-07T18:00:00Z");
    let drift = json["disruption"]["commands"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["method"] == "drift")
        .unwrap_or_else(|| panic!("a drift command: {json}"));
    assert_eq!(
        node_names(&drift["candidates"]),
        ["ip-10-0-1-16.ec2.internal"]
    );
    assert_eq!(drift["reason"], "Drifted");
}

#[test]
fn running_example_text_ends_with_the_disruption_section() {
    let dir = running();
    let out = simulate(&["-f", dir.to_str().unwrap(), "--now", RUNNING_NOW]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let at = text
        .find("Disruption at 2026-12-07T12:00:00Z")
        .unwrap_or_else(|| panic!("{text}"));
    let section = &text[at..];
    assert!(section.contains("1. expiration"), "{section}");
    assert!(section.contains("kept:"), "{section}");
    assert!(
        section.contains("PodDisruptionBudget shop/redis"),
        "{section}"
    );
}

#[test]
fn a_bad_now_exits_2_naming_the_flag() {
    let dir = running();
    let out = simulate(&["-f", dir.to_str().unwrap(), "--now", "noon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("error: --now \"noon\": not an RFC 3339 time"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_unreachable_cluster_exits_3() {
    let dir = scratch("unreachable");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\ncurrent-context: gone\n\
         clusters: [{name: gone, cluster: {server: \"https://127.0.0.1:1\"}}]\n\
         users: [{name: u, user: {token: t}}]\n\
         contexts: [{name: gone, context: {cluster: gone, user: u}}]\n",
    )
    .unwrap();
    let out = simulate(&[
        "--from-cluster",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with("error: cannot read the cluster: listing Nodes"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

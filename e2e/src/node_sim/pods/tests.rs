use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;
use crate::node_sim::ReadyStatus;

fn pod(json: Value) -> Pod {
    serde_json::from_value(json).unwrap()
}

fn bound_pod() -> Pod {
    pod(json!({
        "metadata": { "name": "web-1", "namespace": "default", "uid": "1234-abcd" },
        "spec": {
            "nodeName": "ip-10-0-1-23.ec2.internal",
            "initContainers": [{ "name": "init", "image": "busybox" }],
            "containers": [{ "name": "app", "image": "nginx" }, { "name": "side", "image": "envoy" }],
        },
        "status": { "phase": "Pending", "conditions": [{ "type": "PodScheduled", "status": "True" }] },
    }))
}

fn entry() -> NodeEntry {
    NodeEntry {
        name: "ip-10-0-1-23.ec2.internal".into(),
        uid: "node-uid".into(),
        provider_id: "aws:///us-east-1a/i-1".into(),
        host_ip: Some("10.0.1.23".into()),
        cidr_index: Some(2),
        ready_after: Instant::now(),
        not_ready: None,
        stopped: false,
        gone: false,
        reported: ReadyStatus::True,
        reported_since: Timestamp::now(),
        last_status: Instant::now(),
        last_lease: None,
        pod_ips: BTreeMap::new(),
        ip_cursor: 0,
    }
}

#[test]
fn actions() {
    let mut p = bound_pod();
    assert_eq!(pod_action(&p), PodAction::Start);
    let started = running_status(&p, Some("10.0.1.23"), "100.64.8.1", Timestamp::now());
    p.status = serde_json::from_value(started["status"].clone()).unwrap();
    assert_eq!(pod_action(&p), PodAction::Nothing);
    p.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    assert_eq!(pod_action(&p), PodAction::Delete);
    let done = pod(json!({ "metadata": { "name": "job" }, "status": { "phase": "Succeeded" } }));
    assert_eq!(pod_action(&done), PodAction::Nothing);
    let running_unready = pod(json!({
        "metadata": { "name": "x" },
        "status": { "phase": "Running", "podIP": "1.2.3.4",
                    "conditions": [{ "type": "Ready", "status": "False" }] },
    }));
    assert_eq!(pod_action(&running_unready), PodAction::Start);
}

#[test]
fn running_status_shape() {
    let v = running_status(
        &bound_pod(),
        Some("10.0.1.23"),
        "100.64.8.7",
        Timestamp::now(),
    );
    let s = &v["status"];
    assert_eq!(s["phase"], "Running");
    assert_eq!(s["hostIP"], "10.0.1.23");
    assert_eq!(s["podIP"], "100.64.8.7");
    assert_eq!(s["podIPs"][0]["ip"], "100.64.8.7");
    let types: Vec<&str> = s["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["status"], "True");
            c["type"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        types,
        ["Initialized", "Ready", "ContainersReady", "PodScheduled"]
    );
    let cs = s["containerStatuses"].as_array().unwrap();
    assert_eq!(cs.len(), 2);
    assert_eq!(cs[1]["name"], "side");
    assert_eq!(cs[1]["ready"], true);
    assert!(cs[0]["state"]["running"]["startedAt"].is_string());
    let init = s["initContainerStatuses"].as_array().unwrap();
    assert_eq!(init[0]["state"]["terminated"]["reason"], "Completed");
    // The whole thing is a valid PodStatus.
    let parsed: k8s_openapi::api::core::v1::PodStatus = serde_json::from_value(s.clone()).unwrap();
    assert_eq!(parsed.container_statuses.unwrap().len(), 2);
}

#[test]
fn pod_ips_come_from_the_node_block() {
    let config = SimConfig::new("e2e");
    let mut node = entry();
    // Block 2 of /22s from 100.64.0.0 is 100.64.8.0/22.
    let ip = assign_ip(&config, &mut node, &bound_pod()).unwrap();
    assert_eq!(ip, "100.64.8.1");
    // Same pod, same IP; another pod, the next one.
    assert_eq!(assign_ip(&config, &mut node, &bound_pod()).unwrap(), ip);
    let mut other = bound_pod();
    other.metadata.uid = Some("other".into());
    assert_eq!(assign_ip(&config, &mut node, &other).unwrap(), "100.64.8.2");
    // A pod that already has an IP keeps it.
    let mut has_ip = bound_pod();
    has_ip.metadata.uid = Some("third".into());
    has_ip.status.as_mut().unwrap().pod_ip = Some("100.64.8.9".into());
    assert_eq!(
        assign_ip(&config, &mut node, &has_ip).unwrap(),
        "100.64.8.9"
    );
    assert_eq!(node.pod_ips.len(), 3);
    // hostNetwork pods use the node's address.
    let mut host = bound_pod();
    host.spec.as_mut().unwrap().host_network = Some(true);
    assert_eq!(assign_ip(&config, &mut node, &host).unwrap(), "10.0.1.23");
}

#[test]
fn pod_ips_run_out_gracefully() {
    let config = SimConfig {
        pod_cidr_prefix_len: 30,
        ..SimConfig::new("e2e")
    };
    let mut node = entry();
    let mut got = Vec::new();
    for i in 0..3 {
        let mut p = bound_pod();
        p.metadata.uid = Some(format!("pod-{i}"));
        got.push(assign_ip(&config, &mut node, &p));
    }
    // A /30 has two usable addresses.
    assert!(got[0].is_some() && got[1].is_some());
    assert_eq!(got[2], None);
}

#[test]
fn not_ready_nodes_do_not_run_pods() {
    let mut node = entry();
    assert!(node.runs_pods(Instant::now()));
    node.not_ready = Some(crate::node_sim::NotReady::False);
    assert!(!node.runs_pods(Instant::now()));
    node.not_ready = None;
    node.ready_after = Instant::now() + std::time::Duration::from_secs(60);
    assert!(!node.runs_pods(Instant::now()));
    assert_eq!(node.target(Instant::now()), ReadyStatus::False);
    node.ready_after = Instant::now();
    node.stopped = true;
    assert_eq!(node.target(Instant::now()), ReadyStatus::Unknown);
}

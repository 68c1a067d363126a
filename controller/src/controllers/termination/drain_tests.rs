use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use super::*;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).expect("timestamp")
}

/// A running pod from YAML with `extra` merged into its spec / metadata.
fn pod(name: &str, extra: &str) -> Pod {
    let base = format!(
        r#"
metadata: {{name: {name}, namespace: shop, uid: uid-{name}}}
spec:
  nodeName: n1
  terminationGracePeriodSeconds: 30
  containers: [{{name: c, image: i}}]
status: {{phase: Running}}
"#
    );
    let mut value: serde_json::Value = serde_yaml::from_str(&base).expect("base pod");
    if !extra.is_empty() {
        let patch: serde_json::Value = serde_yaml::from_str(extra).expect("extra");
        merge(&mut value, patch);
    }
    serde_json::from_value(value).expect("pod")
}

fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
    match (into, from) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

const DAEMONSET: &str =
    "metadata: {ownerReferences: [{apiVersion: apps/v1, kind: DaemonSet, name: ds, uid: u}]}";
const CRITICAL: &str = "spec: {priorityClassName: system-node-critical}";
const CRITICAL_DAEMONSET: &str = "metadata: {ownerReferences: [{apiVersion: apps/v1, kind: DaemonSet, name: ds, uid: u}]}\nspec: {priorityClassName: system-cluster-critical}";

fn names(refs: &[PodRef]) -> Vec<&str> {
    refs.iter().map(|r| r.name.as_str()).collect()
}

#[test]
fn waves_go_ordinary_then_daemonset_then_critical_then_critical_daemonset() {
    let mut pods = vec![
        pod("cds", CRITICAL_DAEMONSET),
        pod("crit", CRITICAL),
        pod("ds", DAEMONSET),
        pod("web-1", ""),
        pod("web-0", ""),
    ];
    let mut order = Vec::new();
    for _ in 0..4 {
        let plan = plan_drain(&pods, None, t(0));
        assert_eq!(plan.waiting, pods.len());
        order.push((plan.wave.expect("a wave"), names(&plan.evict).join(",")));
        // The wave's pods finish; the next wave starts only now.
        let done: Vec<String> = plan.evict.iter().map(|r| r.name.clone()).collect();
        pods.retain(|p| !done.contains(p.metadata.name.as_ref().unwrap()));
    }
    assert_eq!(
        order,
        vec![
            (Wave::NonCritical, "web-0,web-1".to_owned()),
            (Wave::NonCriticalDaemonSet, "ds".to_owned()),
            (Wave::Critical, "crit".to_owned()),
            (Wave::CriticalDaemonSet, "cds".to_owned()),
        ]
    );
    let plan = plan_drain(&pods, None, t(0));
    assert!(plan.is_drained());
    assert_eq!(plan.wave, None);
}

#[test]
fn a_wave_with_a_terminating_pod_holds_the_next_wave_back() {
    let terminating = pod(
        "web-0",
        "metadata: {deletionTimestamp: '2023-11-14T22:13:20Z'}",
    );
    let pods = [terminating, pod("ds", DAEMONSET)];
    // 2023-11-14T22:13:20Z is t(0): terminating for 30 s, not stuck.
    let plan = plan_drain(&pods, None, t(30));
    assert_eq!(plan.wave, Some(Wave::NonCritical));
    assert!(
        plan.evict.is_empty(),
        "already terminating: not evicted again"
    );
    assert_eq!(plan.waiting, 2);
}

#[test]
fn skipped_pods_are_not_waited_for() {
    let pods = [
        pod("done", "status: {phase: Succeeded}"),
        pod("failed", "status: {phase: Failed}"),
        pod(
            "tolerates",
            "spec: {tolerations: [{key: karpenter.sh/disrupted, operator: Exists, effect: NoSchedule}]}",
        ),
        pod(
            "tolerates-equal",
            "spec: {tolerations: [{key: karpenter.sh/disrupted, operator: Equal}]}",
        ),
        pod("tolerates-all", "spec: {tolerations: [{operator: Exists}]}"),
        pod(
            "mirror",
            "metadata: {annotations: {kubernetes.io/config.mirror: abc}}",
        ),
        pod(
            "static",
            "metadata: {ownerReferences: [{apiVersion: v1, kind: Node, name: n1, uid: n}]}",
        ),
        pod(
            "stuck",
            "metadata: {deletionTimestamp: '2023-11-14T22:13:20Z'}",
        ),
    ];
    let plan = plan_drain(&pods, None, t(61));
    assert!(plan.is_drained(), "{plan:?}");
}

#[test]
fn a_toleration_of_another_taint_or_effect_does_not_skip_the_pod() {
    let pods = [
        pod(
            "other-key",
            "spec: {tolerations: [{key: example.com/x, operator: Exists}]}",
        ),
        pod(
            "noexecute",
            "spec: {tolerations: [{key: karpenter.sh/disrupted, operator: Exists, effect: NoExecute}]}",
        ),
        pod(
            "valued",
            "spec: {tolerations: [{key: karpenter.sh/disrupted, operator: Equal, value: x}]}",
        ),
    ];
    let plan = plan_drain(&pods, None, t(0));
    assert_eq!(names(&plan.evict), ["noexecute", "other-key", "valued"]);
}

#[test]
fn do_not_disrupt_pods_are_waited_for_but_never_evicted() {
    let pods = [
        pod(
            "keep",
            "metadata: {annotations: {karpenter.sh/do-not-disrupt: 'true'}}",
        ),
        pod(
            "false-value",
            "metadata: {annotations: {karpenter.sh/do-not-disrupt: 'false'}}",
        ),
    ];
    let plan = plan_drain(&pods, None, t(0));
    assert_eq!(plan.waiting, 2);
    assert_eq!(names(&plan.evict), ["false-value"]);
    assert_eq!(names(&plan.do_not_disrupt), ["keep"]);
    // Alone, it holds the drain indefinitely without a deadline.
    let plan = plan_drain(&pods[..1], None, t(100_000));
    assert!(!plan.is_drained());
    assert!(plan.evict.is_empty() && plan.force.is_empty());
}

#[test]
fn the_deadline_forces_pods_out_at_deadline_minus_their_grace_period() {
    let keep = pod(
        "keep",
        "metadata: {annotations: {karpenter.sh/do-not-disrupt: 'true'}}",
    );
    let long = pod("long", "spec: {terminationGracePeriodSeconds: 600}");
    let deadline = t(300);
    // 300 s before the deadline: `long` (600 s) already, `keep` (30 s) not yet.
    let plan = plan_drain([&keep, &long], Some(deadline), t(0));
    assert_eq!(
        plan.force,
        vec![ForcedDeletion {
            pod: PodRef::of(&long),
            grace_seconds: 300
        }]
    );
    assert!(plan.evict.is_empty(), "a forced pod is not evicted as well");
    assert_eq!(names(&plan.do_not_disrupt), ["keep"]);
    // 29 s before: still not; 30 s before: `keep` goes with 30 s of grace, do-not-disrupt
    // notwithstanding.
    let plan = plan_drain([&keep], Some(deadline), t(269));
    assert!(plan.force.is_empty());
    let plan = plan_drain([&keep], Some(deadline), t(270));
    assert_eq!(plan.force.len(), 1);
    assert_eq!(plan.force[0].grace_seconds, 30);
    // Past the deadline the grace is zero, never negative.
    let plan = plan_drain([&keep], Some(deadline), t(400));
    assert_eq!(plan.force[0].grace_seconds, 0);
}

#[test]
fn forced_deletions_span_every_wave() {
    let pods = [pod("web", ""), pod("crit-ds", CRITICAL_DAEMONSET)];
    let plan = plan_drain(&pods, Some(t(10)), t(0));
    assert_eq!(plan.force.len(), 2, "{plan:?}");
    assert_eq!(plan.wave, Some(Wave::NonCritical));
}

#[test]
fn terminating_pods_are_not_forced_again() {
    let pods = [pod(
        "web",
        "metadata: {deletionTimestamp: '2023-11-14T22:13:20Z'}",
    )];
    let plan = plan_drain(&pods, Some(t(10)), t(0));
    assert!(plan.force.is_empty());
    assert_eq!(plan.waiting, 1);
}

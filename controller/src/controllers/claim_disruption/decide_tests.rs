use super::*;
use karpenter_core::fixtures::benchmark_instance_types;
use karpenter_core::instance_type::Offering;

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(second).expect("valid time")
}

/// A claim with `labels`, `annotations` and status `conditions` (YAML flow lists/maps).
fn claim(labels: &str, annotations: &str, status: &str) -> NodeClaim {
    serde_yaml::from_str(&format!(
        r#"
apiVersion: karpenter.sh/v1
kind: NodeClaim
metadata: {{name: c, labels: {{{labels}}}, annotations: {{{annotations}}}}}
spec:
  nodeClassRef: {{group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}}
  requirements: []
status: {{{status}}}
"#
    ))
    .expect("test claim parses")
}

fn initialized_at(second: i64) -> String {
    let t = at(second);
    format!(
        "conditions: [{{type: Initialized, status: 'True', reason: Initialized, message: m, lastTransitionTime: '{t}'}}, {{type: Launched, status: 'True', reason: Launched, message: m, lastTransitionTime: '{t}'}}]"
    )
}

fn pool(requirements: &str) -> NodePool {
    serde_yaml::from_str(&format!(
        r#"
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {{name: default}}
spec:
  template:
    spec:
      nodeClassRef: {{group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}}
      requirements: [{requirements}]
"#
    ))
    .expect("test pool parses")
}

const SECS_60: Option<Duration> = Some(Duration::from_secs(60));

#[test]
fn consolidatable_waits_consolidate_after_from_initialization() {
    let c = claim("", "", &initialized_at(1_000));
    assert_eq!(
        consolidatable(&c, SECS_60, at(1_030)),
        Consolidatable {
            set: false,
            requeue_at: Some(at(1_060))
        }
    );
    assert!(consolidatable(&c, SECS_60, at(1_060)).set);
    assert!(consolidatable(&c, Some(Duration::ZERO), at(1_000)).set);
}

#[test]
fn consolidatable_is_removed_for_never_and_uninitialized_claims() {
    let c = claim("", "", &initialized_at(1_000));
    let removed = Consolidatable {
        set: false,
        requeue_at: None,
    };
    assert_eq!(consolidatable(&c, None, at(5_000)), removed);
    let launching = claim("", "", "");
    assert_eq!(consolidatable(&launching, SECS_60, at(5_000)), removed);
}

#[test]
fn a_pod_event_restarts_the_clock() {
    let status = format!(
        "{}, lastPodEventTime: '{}'",
        initialized_at(1_000),
        at(2_000)
    );
    let c = claim("", "", &status);
    let d = consolidatable(&c, SECS_60, at(2_030));
    assert_eq!(d.requeue_at, Some(at(2_060)));
    assert!(!d.set);
}

fn stamped(hash: &str, version: &str) -> String {
    format!("karpenter.sh/nodepool-hash: '{hash}', karpenter.sh/nodepool-hash-version: {version}")
}

#[test]
fn hash_drift_needs_equal_versions_and_different_hashes() {
    let current = Stamp::node_pool("1".into());
    let v = current.version;
    assert!(hash_drifted(
        &claim("", &stamped("2", v), ""),
        NODE_POOL_KEYS,
        &current
    ));
    assert!(!hash_drifted(
        &claim("", &stamped("1", v), ""),
        NODE_POOL_KEYS,
        &current
    ));
    assert!(
        !hash_drifted(
            &claim("", &stamped("2", "v3"), ""),
            NODE_POOL_KEYS,
            &current
        ),
        "another version is not comparable"
    );
    assert!(!hash_drifted(&claim("", "", ""), NODE_POOL_KEYS, &current));
}

fn types() -> Vec<InstanceType> {
    let mut t = benchmark_instance_types(2);
    t[1].offerings = vec![Offering {
        zone: "test-zone-a".into(),
        capacity_type: "on-demand".into(),
        price: 1.0,
        available: false,
    }];
    t
}

#[test]
fn instance_type_drift_checks_name_zone_and_capacity_type() {
    let types = types();
    let missing = claim("", "", "");
    assert!(instance_type_gone(&missing, &types).is_some());
    let gone = claim("node.kubernetes.io/instance-type: m5.large", "", "");
    assert!(instance_type_gone(&gone, &types).is_some());
    let unavailable_still_counts = claim(
        "node.kubernetes.io/instance-type: fake-it-1, topology.kubernetes.io/zone: test-zone-a, karpenter.sh/capacity-type: on-demand",
        "",
        "",
    );
    assert_eq!(instance_type_gone(&unavailable_still_counts, &types), None);
    let reserved = claim(
        "node.kubernetes.io/instance-type: fake-it-1, topology.kubernetes.io/zone: test-zone-a, karpenter.sh/capacity-type: reserved",
        "",
        "",
    );
    assert_eq!(instance_type_gone(&reserved, &types), None);
    let spot = claim(
        "node.kubernetes.io/instance-type: fake-it-1, topology.kubernetes.io/zone: test-zone-a, karpenter.sh/capacity-type: spot",
        "",
        "",
    );
    assert!(instance_type_gone(&spot, &types).is_some());
}

#[test]
fn static_drift_takes_the_first_hit_in_karpenters_order() {
    let pool_stamp = Stamp::node_pool("1".into());
    let class_stamp = Stamp::node_class("7".into());
    let v = pool_stamp.version;
    let class_v = class_stamp.version;
    let annotations = format!(
        "{}, karpenter.k8s.aws/ec2nodeclass-hash: '8', karpenter.k8s.aws/ec2nodeclass-hash-version: {class_v}",
        stamped("2", v)
    );
    let c = claim("team: a", &annotations, "");
    let spot_only = pool("{key: team, operator: In, values: [b]}");
    fn inputs<'a>(
        c: &'a NodeClaim,
        pool: &'a NodePool,
        ps: &'a Stamp,
        cs: &'a Stamp,
    ) -> StaticDriftInputs<'a> {
        StaticDriftInputs {
            claim: c,
            pool,
            pool_stamp: ps,
            instance_types: None,
            class_stamp: Some(cs),
        }
    }
    let p = pool("");
    assert_eq!(
        static_drift(&inputs(&c, &p, &pool_stamp, &class_stamp)).map(|d| d.reason),
        Some(NODE_POOL_DRIFTED.into())
    );

    let same_pool_hash = format!(
        "{}, karpenter.k8s.aws/ec2nodeclass-hash: '8', karpenter.k8s.aws/ec2nodeclass-hash-version: {class_v}",
        stamped("1", v)
    );
    let c2 = claim("team: a", &same_pool_hash, "");
    let mut inp = inputs(&c, &spot_only, &pool_stamp, &class_stamp);
    inp.claim = &c2;
    assert_eq!(
        static_drift(&inp).map(|d| d.reason),
        Some(REQUIREMENTS_DRIFTED.into())
    );
    let types = types();
    let mut inp = inputs(&c, &p, &pool_stamp, &class_stamp);
    inp.claim = &c2;
    inp.instance_types = Some(&types);
    assert_eq!(
        static_drift(&inp).map(|d| d.reason),
        Some(INSTANCE_TYPE_NOT_FOUND.into())
    );
    inp.instance_types = Some(&[]);
    assert_eq!(
        static_drift(&inp).map(|d| d.reason),
        Some(NODE_CLASS_DRIFT.into()),
        "no instance types at all is a provider not ready, not drift"
    );
    inp.instance_types = None;
    assert_eq!(
        static_drift(&inp).map(|d| d.reason),
        Some(NODE_CLASS_DRIFT.into())
    );
    inp.class_stamp = None;
    assert_eq!(static_drift(&inp), None);
}

#[test]
fn status_update_sets_and_removes_only_what_changes() {
    let c = claim("", "", &initialized_at(1_000));
    let drift = DriftVerdict::new(NODE_POOL_DRIFTED, "changed");
    let s = status_update(&c, true, Some(&drift), false).expect("changes");
    assert!(s.is_true(CONSOLIDATABLE));
    let d = s.condition(DRIFTED).expect("drifted");
    assert_eq!(
        (d.status.as_str(), d.reason.as_str()),
        ("True", NODE_POOL_DRIFTED)
    );
    assert!(s.is_true(INITIALIZED), "other conditions kept");

    let mut again = c.clone();
    again.status = Some(s.clone());
    assert_eq!(status_update(&again, true, Some(&drift), false), None);
    assert_eq!(
        status_update(&again, true, None, true),
        None,
        "drift kept when unknown"
    );
    let cleared = status_update(&again, false, None, false).expect("changes");
    assert!(cleared.condition(CONSOLIDATABLE).is_none());
    assert!(cleared.condition(DRIFTED).is_none());
}

#[test]
fn drift_applies_only_to_launched_claims_with_the_gate_on() {
    let launched = claim("", "", &initialized_at(1));
    assert!(drift_applies(&launched, true));
    assert!(!drift_applies(&launched, false));
    assert!(!drift_applies(&claim("", "", ""), true));
}

#[test]
fn pod_event_stamps_are_deduplicated_for_ten_seconds() {
    let fresh = claim("", "", "");
    assert!(should_stamp_pod_event(&fresh, at(100)));
    let stamped = claim("", "", &format!("lastPodEventTime: '{}'", at(100)));
    assert!(!should_stamp_pod_event(&stamped, at(109)));
    assert!(should_stamp_pod_event(&stamped, at(110)));
}

#[test]
fn pod_events_are_bind_terminal_and_terminating_transitions() {
    let pending = PodPhase::default();
    let bound = PodPhase {
        bound: true,
        ..pending
    };
    assert!(bound.is_event_after(Some(pending)));
    assert!(!bound.is_event_after(Some(bound)), "no change, no event");
    assert!(!bound.is_event_after(None), "first sight is not an event");
    let done = PodPhase {
        terminal: true,
        ..bound
    };
    assert!(done.is_event_after(Some(bound)));
    let leaving = PodPhase {
        terminating: true,
        ..bound
    };
    assert!(leaving.is_event_after(Some(bound)));
}

use std::sync::Arc;
use std::time::Duration;

use karpenter_providers::{CloudProvider, FakeCloudProvider, NodeClaimRequest, ProviderError};

use super::*;

/// The sample lines (no comments) of an exposition.
fn samples(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.starts_with('#')).collect()
}

/// The value of the one sample line that starts with `series` (name and labels as encoded).
fn value(text: &str, series: &str) -> Option<f64> {
    let mut found = samples(text)
        .into_iter()
        .filter_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse::<f64>().expect("numeric sample"));
    let v = found.next();
    assert!(found.next().is_none(), "{series} appears twice");
    v
}

#[test]
fn counters_are_exported_under_karpenters_names() {
    let m = Metrics::new();
    m.nodeclaim_created("default", reason::PROVISIONED);
    m.nodeclaim_created("default", reason::PROVISIONED);
    m.nodeclaim_created("gpu", reason::PROVISIONED);
    m.nodeclaim_terminated("default");
    m.nodeclaim_disrupted("default", reason::UNDERUTILIZED, "spot");
    m.node_created("default");
    m.node_terminated("default");
    m.interruption.received("spot_interrupted");
    m.interruption.deleted(1);
    m.interruption.observe_queue_duration(1.5);
    m.interruption.set_queue_available(true);
    m.interruption.queue_error("GetQueueUrl", "queue_missing");
    let text = m.encode();

    let v = |s: &str| value(&text, s);
    assert_eq!(
        v("karpenter_nodeclaims_created_total{reason=\"provisioned\",nodepool=\"default\"}"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        v("karpenter_nodeclaims_created_total{reason=\"provisioned\",nodepool=\"gpu\"}"),
        Some(1.0)
    );
    assert_eq!(
        v("karpenter_nodeclaims_terminated_total{nodepool=\"default\"}"),
        Some(1.0)
    );
    assert_eq!(
        v(
            "karpenter_nodeclaims_disrupted_total{reason=\"underutilized\",nodepool=\"default\",capacity_type=\"spot\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        v("karpenter_nodes_created_total{nodepool=\"default\"}"),
        Some(1.0)
    );
    assert_eq!(
        v("karpenter_nodes_terminated_total{nodepool=\"default\"}"),
        Some(1.0)
    );
    assert_eq!(
        v("karpenter_interruption_received_messages_total{message_type=\"spot_interrupted\"}"),
        Some(1.0)
    );
    assert_eq!(
        v("karpenter_interruption_deleted_messages_total"),
        Some(1.0)
    );
    assert_eq!(
        v("karpenter_interruption_message_queue_duration_seconds_count"),
        Some(1.0)
    );
    assert_eq!(
        v("karpenter_interruption_message_queue_duration_seconds_bucket{le=\"2.0\"}"),
        Some(1.0)
    );
    assert_eq!(v("karpenter_interruption_queue_available"), Some(1.0));
    assert_eq!(
        v(
            "karpenter_interruption_queue_errors_total{operation=\"GetQueueUrl\",error=\"queue_missing\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        v("karpenter_build_info{version=\"0.1.0\"}"),
        Some(1.0),
        "{text}"
    );
    // Karpenter 0.36's names, without `_total`, beside them.
    assert_eq!(
        v("karpenter_nodes_created{nodepool=\"default\"}"),
        Some(1.0)
    );
    assert_eq!(
        v("karpenter_nodes_terminated{nodepool=\"default\"}"),
        Some(1.0)
    );
    assert_eq!(
        v("karpenter_nodeclaims_created{reason=\"provisioned\",nodepool=\"default\"}"),
        Some(2.0)
    );
    assert_eq!(
        v("karpenter_interruption_received_messages{message_type=\"spot_interrupted\"}"),
        Some(1.0)
    );
    assert_eq!(v("karpenter_interruption_deleted_messages"), Some(1.0));
    // No doubled suffix; the text format names a counter family as its samples.
    assert!(!text.contains("_total_total"), "{text}");
    assert!(text.contains("# TYPE karpenter_nodes_created_total counter\n"));
    assert!(text.contains("# TYPE karpenter_nodes_created counter\n"));
    assert!(!text.contains("# EOF"), "{text}");
}

#[test]
fn gauges_set_and_remove() {
    let m = Metrics::new();
    m.set_nodepool_limit("default", "cpu", 1000.0);
    m.set_nodepool_usage("default", "cpu", 12.5);
    m.set_cluster_state_node_count(3);
    m.set_cluster_state_synced(true);
    m.set_offering_price_estimate("m5.large", "spot", "us-east-1a", 0.0375);
    m.set_offering_available("m5.large", "spot", "us-east-1a", false);
    m.set_scheduler_queue_depth("provisioner", "abc", 7);
    let node = NodeLabels {
        node_name: "ip-10-0-0-1".into(),
        nodepool: "default".into(),
        zone: "us-east-1a".into(),
        ..NodeLabels::default()
    };
    m.set_node_gauge(NodeGauge::Allocatable, &node, "cpu", 1.93);
    let pod = PodState {
        name: "web-1".into(),
        namespace: "prod".into(),
        phase: "Pending".into(),
        ..PodState::default()
    };
    m.set_pod_state(&pod);
    let text = m.encode();
    let v = |s: &str| value(&text, s);
    assert_eq!(
        v("karpenter_nodepools_limit{nodepool=\"default\",resource_type=\"cpu\"}"),
        Some(1000.0),
        "{text}"
    );
    assert_eq!(
        v("karpenter_nodepools_usage{nodepool=\"default\",resource_type=\"cpu\"}"),
        Some(12.5)
    );
    assert_eq!(v("karpenter_cluster_state_node_count"), Some(3.0));
    assert_eq!(v("karpenter_cluster_state_synced"), Some(1.0));
    assert_eq!(
        v(
            "karpenter_cloudprovider_instance_type_offering_price_estimate{instance_type=\"m5.large\",capacity_type=\"spot\",zone=\"us-east-1a\"}"
        ),
        Some(0.0375)
    );
    assert_eq!(
        v(
            "karpenter_cloudprovider_instance_type_offering_available{instance_type=\"m5.large\",capacity_type=\"spot\",zone=\"us-east-1a\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        v("karpenter_scheduler_queue_depth{controller=\"provisioner\",scheduling_id=\"abc\"}"),
        Some(7.0)
    );
    assert_eq!(
        v(
            "karpenter_nodes_allocatable{node_name=\"ip-10-0-0-1\",phase=\"\",nodepool=\"default\",zone=\"us-east-1a\",arch=\"\",capacity_type=\"\",instance_type=\"\",resource_type=\"cpu\"}"
        ),
        Some(1.93),
        "{text}"
    );
    assert!(
        text.contains("karpenter_pods_state{name=\"web-1\",namespace=\"prod\",owner=\"\",node=\"\",nodepool=\"\",zone=\"\",arch=\"\",capacity_type=\"\",instance_type=\"\",phase=\"Pending\"} 1"),
        "{text}"
    );

    // Removed series disappear instead of reporting stale values.
    m.remove_pod_state(&pod);
    m.remove_scheduler_queue_depth("provisioner", "abc");
    m.remove_node_gauge(NodeGauge::Allocatable, &node, "cpu");
    m.set_cluster_state_synced(false);
    let text = m.encode();
    assert!(!text.contains("karpenter_pods_state{"), "{text}");
    assert!(!text.contains("karpenter_scheduler_queue_depth{"), "{text}");
    assert!(!text.contains("karpenter_nodes_allocatable{"), "{text}");
    assert_eq!(value(&text, "karpenter_cluster_state_synced"), Some(0.0));
}

#[test]
fn histograms_count_observations_in_buckets() {
    let m = Metrics::new();
    m.observe_scheduling_duration("provisioner", Duration::from_millis(30));
    m.observe_scheduling_duration("provisioner", Duration::from_secs(2));
    m.observe_pod_startup(Duration::from_secs(45));
    let text = m.encode();
    let v = |s: &str| value(&text, s);
    assert_eq!(
        v("karpenter_scheduler_scheduling_duration_seconds_count{controller=\"provisioner\"}"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        v("karpenter_scheduler_scheduling_duration_seconds_sum{controller=\"provisioner\"}"),
        Some(2.03)
    );
    // 30 ms falls in the 0.05 s bucket, 2 s does not.
    assert_eq!(
        v(
            "karpenter_scheduler_scheduling_duration_seconds_bucket{le=\"0.05\",controller=\"provisioner\"}"
        ),
        Some(1.0),
        "{text}"
    );
    // Pod startup is a summary, under its v1 and 0.36 names.
    for name in [
        "karpenter_pods_startup_duration_seconds",
        "karpenter_pods_startup_time_seconds",
    ] {
        assert_eq!(v(&format!("{name}_count")), Some(1.0), "{text}");
        assert_eq!(v(&format!("{name}{{quantile=\"0.5\"}}")), Some(45.0));
        assert!(text.contains(&format!("# TYPE {name} summary\n")));
    }
}

fn claim() -> NodeClaimRequest {
    NodeClaimRequest {
        name: "default-abcde".into(),
        node_pool: "default".into(),
        node_class: "default".into(),
        requirements: Default::default(),
        instance_type_options: vec![],
        requests: Default::default(),
        labels: Default::default(),
        taints: vec![],
        startup_taints: vec![],
    }
}

#[tokio::test]
async fn metered_provider_records_durations_and_errors() {
    let metrics = Arc::new(Metrics::new());
    let fake = FakeCloudProvider::new();
    fake.fail_next_create(ProviderError::Create {
        reason: "launch template is invalid".into(),
    });
    let provider = MeteredCloudProvider::new(fake, metrics.clone(), "nodeclaim.lifecycle");
    assert_eq!(provider.name(), "fake");

    let err = provider.create(&claim()).await.unwrap_err();
    assert_eq!(error_label(&err), "Create");
    let launched = provider
        .create(&claim())
        .await
        .expect("second create works");
    provider.get(&launched.provider_id).await.expect("get");
    let missing = provider.delete("aws:///us-east-1a/i-missing").await;
    assert!(missing.is_err_and(|e| e.is_not_found()));
    provider.list().await.expect("list");
    assert_eq!(provider.inner().instances().len(), 1);

    let text = metrics.encode();
    let v = |s: &str| value(&text, s);
    let base = "controller=\"nodeclaim.lifecycle\"";
    assert_eq!(
        v(&format!(
            "karpenter_cloudprovider_errors_total{{{base},method=\"Create\",provider=\"fake\",error=\"Create\"}}"
        )),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        v(&format!(
            "karpenter_cloudprovider_errors_total{{{base},method=\"Delete\",provider=\"fake\",error=\"NotFound\"}}"
        )),
        Some(1.0)
    );
    // Successful calls count towards the durations but not the errors.
    assert_eq!(
        v(&format!(
            "karpenter_cloudprovider_duration_seconds_count{{{base},method=\"Create\",provider=\"fake\"}}"
        )),
        Some(2.0)
    );
    for method in ["Get", "List", "Delete"] {
        assert_eq!(
            v(&format!(
                "karpenter_cloudprovider_duration_seconds_count{{{base},method=\"{method}\",provider=\"fake\"}}"
            )),
            Some(1.0),
            "{method}"
        );
    }
    assert!(
        !text.contains("method=\"Get\",provider=\"fake\",error"),
        "{text}"
    );
}

#[test]
fn error_labels_name_the_variant() {
    let cases = [
        (
            ProviderError::NotFound {
                provider_id: "x".into(),
            },
            "NotFound",
        ),
        (
            ProviderError::InsufficientCapacity {
                offerings: vec![],
                message: "none".into(),
            },
            "InsufficientCapacity",
        ),
        (
            ProviderError::NodeClassNotReady {
                node_class: "default".into(),
                reason: "no subnets".into(),
            },
            "NodeClassNotReady",
        ),
        (
            ProviderError::Throttled {
                operation: "CreateFleet".into(),
            },
            "Throttled",
        ),
        (ProviderError::Other("boom".into()), "Other"),
    ];
    for (err, want) in cases {
        assert_eq!(error_label(&err), want);
    }
}

#[test]
fn disruption_metrics_are_exported_under_karpenter_v1_names() {
    let m = Metrics::new();
    let d = &m.disruption;
    d.set_eligible_nodes("underutilized", 3);
    d.decision("replace", "underutilized", "single");
    d.decision("replace", "underutilized", "single");
    d.observe_evaluation(
        "underutilized",
        "multi",
        std::time::Duration::from_millis(40),
    );
    d.queue_failures("replace", "drifted", "", 2);
    d.failed_validation("multi");
    d.set_allowed_disruptions("default", "Underutilized", 1);
    let text = m.encode();
    let v = |s: &str| value(&text, s);
    assert_eq!(
        v("karpenter_voluntary_disruption_eligible_nodes{reason=\"underutilized\"}"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        v(
            "karpenter_voluntary_disruption_decisions_total{decision=\"replace\",reason=\"underutilized\",consolidation_type=\"single\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        v(
            "karpenter_voluntary_disruption_decision_evaluation_duration_seconds_count{reason=\"underutilized\",consolidation_type=\"multi\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        v(
            "karpenter_voluntary_disruption_queue_failures_total{decision=\"replace\",reason=\"drifted\",consolidation_type=\"\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        v("karpenter_voluntary_disruption_failed_validations_total{consolidation_type=\"multi\"}"),
        Some(1.0)
    );
    assert_eq!(
        v(
            "karpenter_voluntary_disruption_consolidation_timeouts_total{consolidation_type=\"single\"}"
        ),
        Some(0.0),
        "pre-created at 0 as Karpenter does"
    );
    assert_eq!(
        v("karpenter_nodepools_allowed_disruptions{nodepool=\"default\",reason=\"Underutilized\"}"),
        Some(1.0)
    );
}

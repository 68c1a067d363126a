//! The exposition as a whole: well-formed text format, the summaries, the reconcile metrics
//! and the 0.36 twins of the disruption and NodePool families.

use std::collections::BTreeSet;
use std::time::Duration;

use kube_client::runtime::controller::Action;

use super::*;

/// The value of the one sample line `series` (name and labels as encoded).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse::<f64>().expect("numeric sample"))
}

/// A metrics object with at least one sample in every family.
fn everything_written() -> Metrics {
    let m = Metrics::new();
    m.nodeclaim_created("default", reason::PROVISIONED);
    m.nodeclaim_terminated("default");
    m.nodeclaim_disrupted("default", reason::UNDERUTILIZED, "spot");
    m.node_created("default");
    m.node_terminated("default");
    m.set_nodepool_limit("default", "cpu", 1000.0);
    m.set_nodepool_usage("default", "cpu", 8.0);
    m.observe_pod_startup(Duration::from_secs(20));
    m.termination.node_termination_finished(
        "default",
        Duration::from_secs(30),
        Duration::from_secs(3600),
    );
    m.disruption.set_eligible_nodes("empty", 2);
    m.disruption.decision("delete", "empty", "empty");
    m.disruption
        .node_disrupted("default", "delete", "empty", "empty");
    m.interruption.received("spot_interrupted");
    m.reconcile.reconciled(
        "provisioner",
        ReconcileResult::Success,
        Duration::from_millis(3),
    );
    m
}

#[test]
fn the_exposition_is_well_formed_text_format() {
    let text = everything_written().encode();
    let mut families = BTreeSet::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(
                families.insert(name.to_owned()),
                "family {name} declared twice"
            );
            current = Some((name.to_owned(), kind.to_owned()));
        } else if line.starts_with("# HELP ") {
        } else {
            assert!(!line.starts_with('#'), "unexpected comment: {line}");
            let sample = line.split(['{', ' ']).next().unwrap();
            let (family, kind) = current.as_ref().expect("a sample before any TYPE");
            let suffix = sample.strip_prefix(family.as_str());
            let ok = match (kind.as_str(), suffix) {
                (_, Some("")) => kind != "histogram",
                ("histogram", Some("_bucket" | "_sum" | "_count")) => true,
                ("summary", Some("_sum" | "_count")) => true,
                _ => false,
            };
            assert!(
                ok,
                "sample {sample} does not belong to {kind} family {family}"
            );
        }
    }
    assert!(families.len() > 30, "{families:?}");
}

#[test]
fn termination_is_a_summary_per_nodepool_under_both_names() {
    let text = everything_written().encode();
    for name in [
        "karpenter_nodes_termination_duration_seconds",
        "karpenter_nodes_termination_time_seconds",
    ] {
        for q in ["0", "0.5", "0.9", "0.99", "1"] {
            assert_eq!(
                value(
                    &text,
                    &format!("{name}{{nodepool=\"default\",quantile=\"{q}\"}}")
                ),
                Some(30.0),
                "{name} q{q}:\n{text}"
            );
        }
        assert_eq!(
            value(&text, &format!("{name}_count{{nodepool=\"default\"}}")),
            Some(1.0)
        );
    }
}

#[test]
fn reconciles_are_counted_by_result_and_timed_per_controller() {
    let m = Metrics::new();
    let r = &m.reconcile;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let ok: Result<Action, ()> = r
            .measure("nodeclaim.lifecycle", async { Ok(Action::await_change()) })
            .await;
        assert!(ok.is_ok());
        let later: Result<Action, ()> = r
            .measure("nodeclaim.lifecycle", async {
                Ok(Action::requeue(Duration::from_secs(5)))
            })
            .await;
        assert!(later.is_ok());
        let failed: Result<Action, &str> = r
            .measure("nodeclaim.lifecycle", async { Err("boom") })
            .await;
        assert!(failed.is_err());
        let passed = r.measure_pass("disruption", async { 7 }, |n| *n == 7).await;
        assert_eq!(passed, 7);
    });
    r.error("nodeclaim.lifecycle");
    let text = m.encode();
    let total = |controller: &str, result: &str| {
        value(
            &text,
            &format!(
                "controller_runtime_reconcile_total{{controller=\"{controller}\",result=\"{result}\"}}"
            ),
        )
    };
    assert_eq!(total("nodeclaim.lifecycle", "success"), Some(1.0), "{text}");
    assert_eq!(total("nodeclaim.lifecycle", "requeue_after"), Some(1.0));
    assert_eq!(total("nodeclaim.lifecycle", "error"), Some(1.0));
    assert_eq!(total("disruption", "success"), Some(1.0));
    assert_eq!(
        value(
            &text,
            "controller_runtime_reconcile_time_seconds_count{controller=\"nodeclaim.lifecycle\"}"
        ),
        Some(3.0)
    );
    assert_eq!(
        value(
            &text,
            "controller_runtime_reconcile_errors_total{controller=\"nodeclaim.lifecycle\"}"
        ),
        Some(1.0)
    );
}

#[test]
fn disruption_and_nodepool_families_have_their_036_twins() {
    let text = everything_written().encode();
    let v = |s: &str| value(&text, s);
    assert_eq!(
        v(
            "karpenter_disruption_eligible_nodes{method=\"consolidation\",consolidation_type=\"empty\"}"
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        v(
            "karpenter_disruption_actions_performed_total{action=\"delete\",method=\"consolidation\",consolidation_type=\"empty\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        v(
            "karpenter_disruption_nodes_disrupted_total{nodepool=\"default\",action=\"delete\",method=\"consolidation\",consolidation_type=\"empty\"}"
        ),
        Some(1.0)
    );
    for prefix in ["karpenter_nodepools", "karpenter_nodepool"] {
        assert_eq!(
            v(&format!(
                "{prefix}_usage{{nodepool=\"default\",resource_type=\"cpu\"}}"
            )),
            Some(8.0)
        );
        assert_eq!(
            v(&format!(
                "{prefix}_limit{{nodepool=\"default\",resource_type=\"cpu\"}}"
            )),
            Some(1000.0)
        );
    }
}

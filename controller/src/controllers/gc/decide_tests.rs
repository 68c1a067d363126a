use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use karpenter_core::api::{NodeClaim, NodeClaimStatus};
use karpenter_core::resources::Resources;
use karpenter_providers::LaunchedInstance;

use super::*;

const GRACE: Duration = Duration::from_secs(30);

fn instance(id: &str, claim: Option<&str>, launched: i64) -> LaunchedInstance {
    LaunchedInstance {
        provider_id: format!("aws:///us-east-1a/{id}"),
        instance_type: "m5.large".into(),
        zone: "us-east-1a".into(),
        capacity_type: "on-demand".into(),
        image_id: "ami-1".into(),
        capacity: Resources::ZERO,
        labels: Default::default(),
        launch_time_unix: launched,
        node_claim: claim.map(str::to_owned),
        node_pool: Some("default".into()),
    }
}

fn claim(name: &str, provider_id: Option<&str>, launched_at: i64) -> Arc<NodeClaim> {
    let mut c: NodeClaim = serde_yaml::from_str(&format!(
        "apiVersion: karpenter.sh/v1\nkind: NodeClaim\nmetadata: {{name: {name}}}\nspec: {{nodeClassRef: {{group: g, kind: k, name: n}}, requirements: []}}\n"
    ))
    .expect("test claim");
    c.status = provider_id.map(|id| NodeClaimStatus {
        provider_id: Some(id.to_owned()),
        conditions: vec![Condition {
            type_: "Launched".into(),
            status: "True".into(),
            reason: "Launched".into(),
            message: String::new(),
            last_transition_time: Time(Timestamp::from_second(launched_at).expect("time")),
            observed_generation: None,
        }],
        ..NodeClaimStatus::default()
    });
    Arc::new(c)
}

#[test]
fn instances_no_claim_accounts_for_are_leaked_once_old_enough() {
    let instances = vec![
        instance("i-owned", Some("a"), 0),
        instance("i-leaked", Some("gone"), 0),
        instance("i-young", None, 990),
        instance("i-status-pending", Some("b"), 0),
        // A duplicate launch for claim `a`, which recorded i-owned.
        instance("i-duplicate", Some("a"), 0),
    ];
    let claims = vec![
        claim("a", Some("aws:///us-east-1a/i-owned"), 0),
        // Launched but its status is not written yet: the tag still ties it to the claim.
        claim("b", None, 0),
    ];
    let got = collect(&instances, &claims, 1_000, GRACE);
    assert_eq!(
        got.leaked_instances,
        vec![
            "aws:///us-east-1a/i-leaked".to_string(),
            "aws:///us-east-1a/i-duplicate".to_string()
        ]
    );
    assert!(got.orphaned_claims.is_empty());
}

#[test]
fn launched_claims_whose_instance_is_gone_are_orphaned_but_not_fresh_launches() {
    let instances = vec![instance("i-1", Some("a"), 0)];
    let claims = vec![
        claim("a", Some("aws:///us-east-1a/i-1"), 0),
        claim("old", Some("aws:///us-east-1a/i-terminated"), 100),
        // Launched after the listing could have seen it.
        claim("fresh", Some("aws:///us-east-1a/i-new"), 990),
    ];
    let got = collect(&instances, &claims, 1_000, GRACE);
    assert_eq!(got.orphaned_claims, vec!["old".to_string()]);
    assert!(got.leaked_instances.is_empty());
}

#[test]
fn untagged_instances_are_kept_while_an_unlaunched_claim_of_their_pool_could_adopt_them() {
    // Launched, but the tag for its claim was never written (a crash right after CreateFleet).
    let instances = vec![instance("i-untagged", None, 0)];
    let mut waiting = (*claim("w", None, 0)).clone();
    waiting.metadata.labels = Some(
        [("karpenter.sh/nodepool".to_owned(), "default".to_owned())]
            .into_iter()
            .collect(),
    );
    let waiting = Arc::new(waiting);
    let got = collect(&instances, std::slice::from_ref(&waiting), 1_000, GRACE);
    assert!(got.leaked_instances.is_empty(), "{got:?}");

    // A waiting claim of another pool cannot adopt it.
    let mut other = (*waiting).clone();
    other
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("karpenter.sh/nodepool".into(), "batch".into());
    let got = collect(&instances, &[Arc::new(other)], 1_000, GRACE);
    assert_eq!(got.leaked_instances, vec!["aws:///us-east-1a/i-untagged"]);

    // Once every claim has recorded an instance, it is leaked.
    let got = collect(
        &instances,
        &[claim("w", Some("aws:///us-east-1a/i-other"), 0)],
        1_000,
        GRACE,
    );
    assert_eq!(got.leaked_instances, vec!["aws:///us-east-1a/i-untagged"]);
}

#[test]
fn claims_of_a_nodepool_that_is_gone_are_deleted() {
    let instances = vec![instance("i-1", Some("a"), 0)];
    let mut a = (*claim("a", Some("aws:///us-east-1a/i-1"), 0)).clone();
    a.metadata.labels = Some(
        [("karpenter.sh/nodepool".to_owned(), "removed".to_owned())]
            .into_iter()
            .collect(),
    );
    let claims = vec![Arc::new(a)];
    let pools: BTreeSet<String> = ["default".to_owned()].into_iter().collect();
    let got = collect_with_pools(&instances, &claims, Some(&pools), 1_000, GRACE);
    assert_eq!(got.orphaned_claims, vec!["a".to_string()]);
    let with_pool: BTreeSet<String> = ["removed".to_owned()].into_iter().collect();
    let got = collect_with_pools(&instances, &claims, Some(&with_pool), 1_000, GRACE);
    assert!(got.orphaned_claims.is_empty());
}

#[test]
fn no_instance_is_leaked_while_a_claim_does_not_read() {
    // i-036 belongs to a claim the model could not read, so no claim here records it.
    let instances = vec![instance("i-036", Some("staging-x036k"), 0)];
    let claims = vec![claim("a", Some("aws:///us-east-1a/i-owned"), 0)];
    let mut got = collect(&instances, &claims, 1_000, GRACE);
    assert_eq!(got.leaked_instances, ["aws:///us-east-1a/i-036"]);
    let unread = BTreeSet::from(["staging-x036k".to_owned()]);
    let held = hold_back_for_unread_claims(&mut got, &unread);
    assert_eq!(held, ["aws:///us-east-1a/i-036"]);
    assert!(got.leaked_instances.is_empty());
    // Once every claim reads, leaks are collected again.
    let mut again = collect(&instances, &claims, 1_000, GRACE);
    assert!(hold_back_for_unread_claims(&mut again, &BTreeSet::new()).is_empty());
    assert_eq!(again.leaked_instances.len(), 1);
}

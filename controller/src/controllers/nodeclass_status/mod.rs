//! The EC2NodeClass status controller: validates each node class (the local API server has no
//! CEL, so the controller enforces Karpenter's CRD rules) and writes what the AWS provider
//! resolved — subnets, security groups, AMIs, instance profile — with readiness conditions.
//! A class is resolved when it changes and on a timer ([`Schedule`]), not on every cluster
//! event: resolution calls the AWS APIs.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use karpenter_providers::aws::cloud::AwsCloudProvider;
use karpenter_providers::aws::nodeclass::{EC2NodeClassStatus, validate_ec2_node_class};
use kube_client::api::{Api, DynamicObject, Patch, PatchParams};
use kube_client::{Client, ResourceExt};
use tokio::time::Instant;

use crate::controllers::backoff::Backoff;
use crate::controllers::conditions::guarded_status_patch;
use crate::model::ClusterState;
use crate::model::objects;

mod decide;

pub use decide::{ClassVersion, Schedule, next_resolution};

/// How often node classes are resolved again (subnet IPs and `@latest` AMIs change).
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(60);

/// The status for a node class that failed validation: every other condition unknown,
/// `ValidationSucceeded` and `Ready` false with the problems listed.
pub fn invalid_status(problems: &[String], generation: Option<i64>) -> EC2NodeClassStatus {
    let message = problems.join("; ");
    EC2NodeClassStatus {
        conditions: vec![
            condition(
                "ValidationSucceeded",
                "False",
                "ValidationFailed",
                &message,
                generation,
            ),
            condition("Ready", "False", "ValidationFailed", &message, generation),
        ],
        ..EC2NodeClassStatus::default()
    }
}

/// A condition stamped now.
pub fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        last_transition_time: Time(Timestamp::now()),
        observed_generation: generation,
    }
}

/// Keeps the transition time of conditions whose status did not change, so a resync does not
/// look like a flap.
pub fn carry_transition_times(new: &mut EC2NodeClassStatus, old: Option<&EC2NodeClassStatus>) {
    let Some(old) = old else { return };
    for c in &mut new.conditions {
        if let Some(prev) = old
            .conditions
            .iter()
            .find(|p| p.type_ == c.type_ && p.status == c.status)
        {
            c.last_transition_time = prev.last_transition_time.clone();
        }
    }
}

/// Runs until the process ends: resolves each node class when it is new or its spec changed
/// (woken by `node_class_changed`) and every [`RESYNC_INTERVAL`] after its last resolution.
/// Other cluster changes (Nodes, NodeClaims, NodePools) do not call AWS again.
pub async fn run(client: Client, state: ClusterState, provider: Arc<AwsCloudProvider>) {
    let res = objects::node_class_resource();
    let api: Api<DynamicObject> = Api::all_with(client, &res);
    let mut schedule = Schedule::default();
    let backoff = Backoff::default();
    loop {
        let objs = state.node_classes.state();
        let classes: Vec<(String, ClassVersion)> = objs
            .iter()
            .map(|o| (o.name_any(), ClassVersion::of(o)))
            .collect();
        schedule.retain(&classes);
        for name in schedule.due(&classes, Instant::now()) {
            let Some(obj) = objs.iter().find(|o| o.name_any() == name) else {
                continue;
            };
            let retry = match reconcile_one(&api, &provider, obj).await {
                Ok(()) => {
                    backoff.succeeded(&name);
                    None
                }
                Err(e) => {
                    tracing::warn!(error = %e, "ec2nodeclass status");
                    Some(backoff.failed(&name))
                }
            };
            let next = next_resolution(Instant::now(), retry, RESYNC_INTERVAL);
            schedule.resolved(&name, ClassVersion::of(obj), next);
        }
        let wake = schedule
            .next_due()
            .unwrap_or_else(|| Instant::now() + RESYNC_INTERVAL);
        tokio::select! {
            _ = state.node_class_changed.notified() => {}
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
}

async fn reconcile_one(
    api: &Api<DynamicObject>,
    provider: &AwsCloudProvider,
    obj: &DynamicObject,
) -> Result<(), String> {
    let name = obj.metadata.name.clone().unwrap_or_default();
    let generation = obj.metadata.generation;
    let old: Option<EC2NodeClassStatus> = obj
        .data
        .get("status")
        .and_then(|s| serde_json::from_value(s.clone()).ok());
    let mut status = match objects::read_node_class(obj, None) {
        Err(e) => invalid_status(&[e.to_string()], generation),
        Ok(class) => match validate_ec2_node_class(&class) {
            Err(errs) => {
                let problems: Vec<String> = errs.iter().map(ToString::to_string).collect();
                invalid_status(&problems, generation)
            }
            Ok(()) => match provider.resolve_node_class(&class).await {
                Ok(mut s) => {
                    s.conditions.push(condition(
                        "ValidationSucceeded",
                        "True",
                        "ValidationSucceeded",
                        "",
                        generation,
                    ));
                    s
                }
                Err(e) => EC2NodeClassStatus {
                    conditions: vec![condition(
                        "Ready",
                        "False",
                        "ResolutionFailed",
                        &e.to_string(),
                        generation,
                    )],
                    ..EC2NodeClassStatus::default()
                },
            },
        },
    };
    crate::controllers::conditions::fill_empty_messages(&mut status.conditions);
    carry_transition_times(&mut status, old.as_ref());
    if old.as_ref() == Some(&status) {
        return Ok(());
    }
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(guarded_status_patch(&obj.metadata, &status)),
    )
    .await
    .map_err(|e| format!("EC2NodeClass/{name}: writing status: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_status_lists_every_problem_and_is_not_ready() {
        let s = invalid_status(
            &[
                "spec.role: required".into(),
                "spec.subnetSelectorTerms: empty".into(),
            ],
            Some(3),
        );
        let ready = s.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "False");
        assert!(
            ready.message.contains("spec.role") && ready.message.contains("subnetSelectorTerms")
        );
        assert_eq!(ready.observed_generation, Some(3));
    }

    #[test]
    fn unchanged_conditions_keep_their_transition_time() {
        let mut old = invalid_status(&["x".into()], None);
        let early = Time(Timestamp::from_second(1_000).unwrap());
        old.conditions[0].last_transition_time = early.clone();
        let mut new = invalid_status(&["x".into()], None);
        carry_transition_times(&mut new, Some(&old));
        assert_eq!(new.conditions[0].last_transition_time, early);
        // A changed status gets a fresh time.
        new.conditions[1].status = "True".into();
        let fresh = new.conditions[1].last_transition_time.clone();
        carry_transition_times(&mut new, Some(&old));
        assert_eq!(new.conditions[1].last_transition_time, fresh);
    }
}

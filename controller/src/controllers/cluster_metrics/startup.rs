//! Pod startup durations for `karpenter_pods_startup_duration_seconds`: from a pod's creation
//! to its `Ready` condition turning true (what Karpenter's pod metrics controller observes),
//! once per pod, for pods that became Ready while this process watched. Pure: the pods, what
//! was observed already and when watching began are inputs.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

/// The pods that became Ready at or after `since` and are not in `observed`, with their
/// startup durations, by UID; and the UIDs to keep as observed (those still present), so a
/// pod is observed once however often it flips Ready.
pub fn new_startups(
    pods: &[Arc<Pod>],
    observed: &BTreeSet<String>,
    since: Timestamp,
) -> (Vec<(String, Duration)>, BTreeSet<String>) {
    let mut fresh = Vec::new();
    let mut keep = BTreeSet::new();
    for pod in pods {
        let Some(uid) = pod.metadata.uid.as_deref() else {
            continue;
        };
        if observed.contains(uid) {
            keep.insert(uid.to_owned());
            continue;
        }
        let Some(ready_at) = ready_since(pod) else {
            continue;
        };
        if ready_at < since {
            // Ready before this process watched: the previous leader observed it.
            continue;
        }
        let Some(created) = pod.metadata.creation_timestamp.as_ref() else {
            continue;
        };
        let took = Duration::try_from(created.0.duration_until(ready_at)).unwrap_or_default();
        fresh.push((uid.to_owned(), took));
        keep.insert(uid.to_owned());
    }
    (fresh, keep)
}

/// When the pod's `Ready` condition last turned true, if it is true.
fn ready_since(pod: &Pod) -> Option<Timestamp> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?
        .last_transition_time
        .as_ref()
        .map(|t| t.0)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn pod(uid: &str, created: &str, ready: Option<(&str, &str)>) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                uid: Some(uid.into()),
                creation_timestamp: Some(Time(at(created))),
                ..ObjectMeta::default()
            },
            status: Some(PodStatus {
                conditions: ready.map(|(status, when)| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: status.into(),
                        last_transition_time: Some(Time(at(when))),
                        ..PodCondition::default()
                    }]
                }),
                ..PodStatus::default()
            }),
            ..Pod::default()
        })
    }

    #[test]
    fn a_pod_that_became_ready_while_watched_is_observed_once() {
        let since = at("2026-12-07T10:00:00Z");
        let pods = vec![
            pod(
                "a",
                "2026-12-07T10:00:05Z",
                Some(("True", "2026-12-07T10:00:47Z")),
            ),
            // Ready before this process started watching.
            pod(
                "old",
                "2026-12-07T09:00:00Z",
                Some(("True", "2026-12-07T09:01:00Z")),
            ),
            // Not ready yet.
            pod(
                "b",
                "2026-12-07T10:00:05Z",
                Some(("False", "2026-12-07T10:00:06Z")),
            ),
            pod("c", "2026-12-07T10:00:05Z", None),
        ];
        let (fresh, observed) = new_startups(&pods, &BTreeSet::new(), since);
        assert_eq!(fresh, vec![("a".to_owned(), Duration::from_secs(42))]);
        assert_eq!(observed, BTreeSet::from(["a".to_owned()]));

        // Next pass: `a` flipped Ready again later; it is not observed twice. `b` is ready now.
        let pods = vec![
            pod(
                "a",
                "2026-12-07T10:00:05Z",
                Some(("True", "2026-12-07T10:05:00Z")),
            ),
            pod(
                "b",
                "2026-12-07T10:00:05Z",
                Some(("True", "2026-12-07T10:01:05Z")),
            ),
        ];
        let (fresh, observed) = new_startups(&pods, &observed, since);
        assert_eq!(fresh, vec![("b".to_owned(), Duration::from_secs(60))]);
        assert_eq!(observed.len(), 2);

        // Pods that are gone are forgotten.
        let (fresh, observed) = new_startups(&[], &observed, since);
        assert!(fresh.is_empty());
        assert!(observed.is_empty());
    }
}

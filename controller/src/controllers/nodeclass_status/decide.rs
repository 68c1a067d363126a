//! When a node class is resolved again: resolution calls the AWS APIs (subnets, security
//! groups, AMIs, instance profile), so it runs when the class itself changes and on a timer,
//! never because something else in the cluster moved.

use std::collections::BTreeMap;
use std::time::Duration;

use kube_client::api::DynamicObject;
use tokio::time::Instant;

/// What a resolution depends on: the class's spec (`metadata.generation`) of this very object
/// (`metadata.uid`, so a class deleted and created again under its name counts as changed).
/// The status this controller writes changes neither, so writing a resolution does not ask
/// for another one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassVersion {
    /// `metadata.uid`.
    pub uid: Option<String>,
    /// `metadata.generation`.
    pub generation: Option<i64>,
}

impl ClassVersion {
    /// The version of `obj`.
    pub fn of(obj: &DynamicObject) -> ClassVersion {
        ClassVersion {
            uid: obj.metadata.uid.clone(),
            generation: obj.metadata.generation,
        }
    }
}

#[derive(Clone, Debug)]
struct Resolved {
    version: ClassVersion,
    next: Instant,
}

/// The resolution schedule: for each class, the version last resolved and when it is due
/// again by time alone.
#[derive(Debug, Default)]
pub struct Schedule {
    resolved: BTreeMap<String, Resolved>,
}

impl Schedule {
    /// Names of the classes to resolve now, of `classes` (name and current version): those
    /// never resolved, those whose version changed since, and those whose time has come.
    pub fn due(&self, classes: &[(String, ClassVersion)], now: Instant) -> Vec<String> {
        classes
            .iter()
            .filter(|(name, version)| {
                self.resolved
                    .get(name)
                    .is_none_or(|r| r.version != *version || r.next <= now)
            })
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Records that `name` was resolved at `version`; it is due again at `next` unless it
    /// changes first.
    pub fn resolved(&mut self, name: &str, version: ClassVersion, next: Instant) {
        self.resolved
            .insert(name.to_owned(), Resolved { version, next });
    }

    /// Forgets the classes that are not in `classes` any more.
    pub fn retain(&mut self, classes: &[(String, ClassVersion)]) {
        self.resolved
            .retain(|name, _| classes.iter().any(|(n, _)| n == name));
    }

    /// When the next class falls due by time alone; `None` without classes.
    pub fn next_due(&self) -> Option<Instant> {
        self.resolved.values().map(|r| r.next).min()
    }
}

/// When a class is due again after a reconcile: a full `interval` after a success (`retry`
/// is `None`), after the backoff `retry` (at most `interval`) after a failed status write.
pub fn next_resolution(now: Instant, retry: Option<Duration>, interval: Duration) -> Instant {
    now + retry.map_or(interval, |r| r.min(interval))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(name: &str, uid: &str, generation: i64) -> (String, ClassVersion) {
        (
            name.to_owned(),
            ClassVersion {
                uid: Some(uid.to_owned()),
                generation: Some(generation),
            },
        )
    }

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn classes_are_resolved_when_new_changed_or_due_and_not_otherwise() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        let classes = vec![class("a", "uid-a", 1), class("b", "uid-b", 1)];
        assert_eq!(s.due(&classes, t0), ["a", "b"], "never resolved");
        for (name, version) in &classes {
            s.resolved(name, version.clone(), t0 + MINUTE);
        }

        // A Node or NodeClaim change, or our own status write (a new resourceVersion), leaves
        // every class at the version resolved: nothing to do before the timer.
        assert!(s.due(&classes, t0 + Duration::from_secs(5)).is_empty());

        // A spec change of one class: that class only.
        let edited = vec![class("a", "uid-a", 2), class("b", "uid-b", 1)];
        assert_eq!(s.due(&edited, t0 + Duration::from_secs(5)), ["a"]);

        // Deleted and created again under the same name: a new object.
        let recreated = vec![class("a", "uid-a2", 1), class("b", "uid-b", 1)];
        assert_eq!(s.due(&recreated, t0 + Duration::from_secs(5)), ["a"]);

        // The timer: every class whose minute is up.
        s.resolved("a", class("a", "uid-a", 1).1, t0 + 2 * MINUTE);
        assert_eq!(s.due(&classes, t0 + MINUTE), ["b"]);
        assert_eq!(s.next_due(), Some(t0 + MINUTE));
    }

    #[test]
    fn deleted_classes_are_forgotten_and_failures_retry_sooner() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.resolved("gone", class("gone", "u", 1).1, t0);
        s.retain(&[class("kept", "k", 1)]);
        assert_eq!(s.next_due(), None);

        let ok = next_resolution(t0, None, MINUTE);
        let failed = next_resolution(t0, Some(Duration::from_secs(2)), MINUTE);
        assert_eq!((ok - t0, failed - t0), (MINUTE, Duration::from_secs(2)));
        let capped = next_resolution(t0, Some(Duration::from_secs(300)), MINUTE);
        assert_eq!(capped - t0, MINUTE);
    }

    #[test]
    fn the_version_ignores_status_writes() {
        let mut obj: DynamicObject = serde_yaml::from_str(
            "apiVersion: karpenter.k8s.aws/v1\nkind: EC2NodeClass\nmetadata: {name: a, uid: u, generation: 3, resourceVersion: '10'}\nspec: {}\n",
        )
        .expect("parses");
        let before = ClassVersion::of(&obj);
        obj.metadata.resource_version = Some("11".into());
        obj.data["status"] = serde_json::json!({"conditions": []});
        assert_eq!(ClassVersion::of(&obj), before);
        obj.metadata.generation = Some(4);
        assert_ne!(ClassVersion::of(&obj), before);
    }
}

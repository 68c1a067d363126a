//! Kubernetes Events for the controllers, with a per-object, per-reason floor between repeats
//! so a loop that requeues every second does not write an Event every second.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use kube_client::runtime::events::{Event, EventType, Recorder};

/// Publishes Events; clones of the recorder share its series cache.
pub struct Events {
    recorder: Recorder,
    last: Mutex<HashMap<(String, String), Instant>>,
}

/// One Event to publish.
pub struct Note<'a> {
    /// `Normal` or `Warning`.
    pub type_: EventType,
    /// Machine-readable reason (`Evicted`, `FailedDraining`, …).
    pub reason: &'a str,
    /// What the controller was doing (`Termination`, `Provisioning`, …); published with a
    /// digest of the message (see [`series_action`]).
    pub action: &'a str,
    /// The sentence shown by `kubectl describe`.
    pub message: String,
}

/// The action to publish `message` under so that a new sentence starts a new Event.
///
/// kube-runtime's [`Recorder`] folds Events with the same reason and action about the same
/// object into one series and keeps the *first* note, so a pod whose reason changes (its node
/// class became ready, then the pool hit its limits) would show the stale sentence forever.
/// client-go keys series on the note as well; a digest of the message in the action gives the
/// same result through kube-runtime. `kubectl describe` does not show the action.
pub fn series_action(base: &str, message: &str) -> String {
    // FNV-1a: stable across processes and releases, unlike `DefaultHasher`.
    let digest = message.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{base}/{:08x}", digest as u32)
}

impl Events {
    /// Events through `recorder`.
    pub fn new(recorder: Recorder) -> Events {
        Events {
            recorder,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// Publishes `note` about `object`, unless the same reason was published for it less than
    /// `floor` ago. Failures are logged, never returned: an Event is not worth a retry.
    pub async fn publish(&self, object: &ObjectReference, note: Note<'_>, floor: Duration) {
        let reason = note.reason.to_owned();
        self.publish_keyed(object, note, floor, reason).await
    }

    /// [`Events::publish`], with the floor applying per message: a different sentence for
    /// the same reason (a node blocked by a PDB, then by a budget) is published at once.
    pub async fn publish_distinct(
        &self,
        object: &ObjectReference,
        note: Note<'_>,
        floor: Duration,
    ) {
        let key = format!("{}\n{}", note.reason, note.message);
        self.publish_keyed(object, note, floor, key).await
    }

    async fn publish_keyed(
        &self,
        object: &ObjectReference,
        note: Note<'_>,
        floor: Duration,
        dedupe: String,
    ) {
        let key = (
            object.uid.clone().unwrap_or_else(|| {
                format!(
                    "{}/{}",
                    object.namespace.as_deref().unwrap_or(""),
                    object.name.as_deref().unwrap_or("")
                )
            }),
            dedupe,
        );
        {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            if last
                .get(&key)
                .is_some_and(|at| now.duration_since(*at) < floor)
            {
                return;
            }
            // Forget entries older than any floor in use, so the map does not grow forever.
            if last.len() > 10_000 {
                last.retain(|_, at| now.duration_since(*at) < Duration::from_secs(3600));
            }
            last.insert(key, now);
        }
        let event = Event {
            type_: note.type_,
            reason: note.reason.to_owned(),
            action: series_action(note.action, &note.message),
            note: Some(note.message),
            secondary: None,
        };
        match self.recorder.publish(&event, object).await {
            Ok(()) => {}
            // API servers before 1.22 require `regarding.namespace` to equal the Event's
            // namespace even for cluster-scoped objects (Nodes, NodeClaims): say `default`,
            // where the Event is written anyway.
            Err(kube_client::Error::Api(s))
                if s.code == 422 && object.namespace.as_deref().unwrap_or("").is_empty() =>
            {
                let mut in_default = object.clone();
                in_default.namespace = Some("default".to_owned());
                if let Err(e) = self.recorder.publish(&event, &in_default).await {
                    tracing::debug!(error = %e, "event not recorded");
                }
            }
            Err(e) => tracing::debug!(error = %e, "event not recorded"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::series_action;

    #[test]
    fn a_new_sentence_gets_its_own_series() {
        let limits = series_action(
            "Provisioning",
            "nodepool \"a\": nodepool limits leave no type",
        );
        let not_ready = series_action("Provisioning", "nodepool \"a\": node class is not ready");
        assert_ne!(limits, not_ready);
        assert_eq!(
            limits,
            series_action(
                "Provisioning",
                "nodepool \"a\": nodepool limits leave no type"
            ),
            "the same sentence must fold into one series"
        );
        assert!(limits.starts_with("Provisioning/"));
        // The API server caps `action` at 128 characters.
        assert!(series_action(&"x".repeat(100), &"y".repeat(10_000)).len() <= 128);
    }
}

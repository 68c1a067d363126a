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
    /// What the controller was doing (`Termination`, `Provisioning`, …).
    pub action: &'a str,
    /// The sentence shown by `kubectl describe`.
    pub message: String,
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
            note: Some(note.message),
            action: note.action.to_owned(),
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

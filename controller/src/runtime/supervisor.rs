//! Supervision of the process's long-running tasks: watches, HTTP servers and controller loops
//! are meant to run until shutdown, so any of them ending — returning or panicking — is a
//! failure the process must not survive silently. [`Supervisor::first_end`] reports which task
//! ended and how; `karpenter run` then turns `/healthz` unhealthy and exits non-zero, so the
//! kubelet restarts the pod instead of keeping a replica with a dead loop and a healthy probe.

use std::collections::HashMap;
use std::future::Future;

use tokio::task::{Id, JoinSet};

/// Environment variable of the test-only fault switch: `panic:<task name>` makes that task
/// panic as soon as it starts (the e2e suite uses it to prove supervision).
pub const FAULT_ENV: &str = "KARPENTER_RS_TEST_FAULT";

/// A set of named tasks that must not end.
#[derive(Default)]
pub struct Supervisor {
    tasks: JoinSet<()>,
    names: HashMap<Id, String>,
    fault: Option<String>,
}

/// Which task ended, and how.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{name} {how}")]
pub struct TaskEnded {
    /// The task's name.
    pub name: String,
    /// `returned` or `panicked: <message>`.
    pub how: String,
}

impl Supervisor {
    /// An empty set; honours the test fault switch ([`FAULT_ENV`]).
    pub fn new() -> Supervisor {
        Supervisor {
            fault: std::env::var(FAULT_ENV)
                .ok()
                .and_then(|v| v.strip_prefix("panic:").map(str::to_owned)),
            ..Supervisor::default()
        }
    }

    /// Spawns `task` under `name`.
    pub fn spawn<F>(&mut self, name: impl Into<String>, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let name = name.into();
        let inject = self.fault.as_deref() == Some(name.as_str());
        let handle = self.tasks.spawn(async move {
            if inject {
                panic!("test fault switch ({FAULT_ENV}) made this task panic");
            }
            task.await
        });
        self.names.insert(handle.id(), name);
    }

    /// Waits for the first task to end and says which and how; `None` when there are none.
    pub async fn first_end(&mut self) -> Option<TaskEnded> {
        let ended = self.tasks.join_next_with_id().await?;
        let (id, how) = match ended {
            Ok((id, ())) => (id, "returned".to_owned()),
            Err(e) => {
                let id = e.id();
                let how = if e.is_panic() {
                    let payload = e.into_panic();
                    let message = payload
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| payload.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "non-string panic payload".to_owned());
                    format!("panicked: {message}")
                } else {
                    "was cancelled".to_owned()
                };
                (id, how)
            }
        };
        let name = self
            .names
            .remove(&id)
            .unwrap_or_else(|| format!("task {id}"));
        Some(TaskEnded { name, how })
    }

    /// Aborts every task and waits until they are gone.
    pub async fn shutdown(&mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        self.names.clear();
    }

    /// How many tasks run.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// True when no task runs.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_task_is_reported_with_its_name_and_message() {
        let mut s = Supervisor::default();
        s.spawn("forever", std::future::pending());
        s.spawn("provisioner", async { panic!("boom") });
        let ended = s.first_end().await.expect("one ended");
        assert_eq!(ended.name, "provisioner");
        assert_eq!(ended.how, "panicked: boom");
        assert_eq!(s.len(), 1);
        s.shutdown().await;
        assert!(s.is_empty());
    }

    #[tokio::test]
    async fn a_task_that_returns_is_a_failure_too() {
        let mut s = Supervisor::default();
        s.spawn("forever", std::future::pending());
        s.spawn("gc", async {});
        let ended = s.first_end().await.expect("one ended");
        assert_eq!(
            ended,
            TaskEnded {
                name: "gc".into(),
                how: "returned".into()
            }
        );
    }

    #[tokio::test]
    async fn the_fault_switch_panics_only_the_named_task() {
        let mut s = Supervisor {
            fault: Some("termination".into()),
            ..Supervisor::default()
        };
        s.spawn("lifecycle", std::future::pending());
        s.spawn("termination", std::future::pending());
        let ended = s.first_end().await.expect("one ended");
        assert_eq!(ended.name, "termination");
        assert!(ended.how.contains("test fault switch"), "{}", ended.how);
        s.shutdown().await;
    }
}

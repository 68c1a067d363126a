//! The pure drain plan of a node being terminated, as Karpenter v1's terminator: which pods are
//! still waited for, which wave is being evicted, and which pods the termination grace period
//! forces out.
//!
//! - *Waiting* pods: not finished, not tolerating `karpenter.sh/disrupted:NoSchedule`, not
//!   static/mirror pods, and not stuck terminating (deletion timestamp more than
//!   [`STUCK_TERMINATING`] in the past; the timestamp already includes the pod's grace period).
//! - Waves: non-critical pods, non-critical DaemonSet pods, critical pods, critical DaemonSet
//!   pods (critical = `system-cluster-critical` / `system-node-critical`). Only the first wave
//!   with waiting pods is evicted; the next starts when it has none left.
//! - `karpenter.sh/do-not-disrupt: "true"` pods are waited for and never evicted.
//! - With a termination deadline, a pod not yet terminating is deleted (PDBs and do-not-disrupt
//!   notwithstanding) once `now >= deadline - its terminationGracePeriodSeconds`, with the time
//!   left to the deadline as grace period.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Toleration};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use karpenter_core::ingest::is_daemonset_pod;
use karpenter_core::ingest::pod::is_terminal;
use karpenter_core::labels;

/// A terminating pod whose deletion timestamp is older than this is not waited for (its
/// kubelet is gone or stuck; Karpenter's rule).
pub const STUCK_TERMINATING: Duration = Duration::from_secs(60);

/// Annotation a kubelet puts on the API mirror of a static pod.
pub const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// The four drain waves, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Wave {
    /// Ordinary pods.
    NonCritical,
    /// DaemonSet pods that are not critical.
    NonCriticalDaemonSet,
    /// `system-cluster-critical` / `system-node-critical` pods.
    Critical,
    /// Critical DaemonSet pods.
    CriticalDaemonSet,
}

impl Wave {
    /// The wave `pod` belongs to.
    pub fn of(pod: &Pod) -> Wave {
        match (is_critical(pod), is_daemonset_pod(pod)) {
            (false, false) => Wave::NonCritical,
            (false, true) => Wave::NonCriticalDaemonSet,
            (true, false) => Wave::Critical,
            (true, true) => Wave::CriticalDaemonSet,
        }
    }

    /// Lower-case name for logs and events.
    pub fn name(self) -> &'static str {
        match self {
            Wave::NonCritical => "non-critical",
            Wave::NonCriticalDaemonSet => "non-critical daemonset",
            Wave::Critical => "critical",
            Wave::CriticalDaemonSet => "critical daemonset",
        }
    }
}

/// A pod as the eviction API addresses it: the UID makes sure a new pod that reuses the name is
/// never evicted in the old one's place.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
}

impl PodRef {
    /// The reference of `pod`.
    pub fn of(pod: &Pod) -> PodRef {
        PodRef {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
        }
    }
}

impl std::fmt::Display for PodRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A pod the termination grace period forces out, bypassing PDBs and do-not-disrupt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForcedDeletion {
    /// The pod.
    pub pod: PodRef,
    /// Grace period to delete it with: the time left to the node's deadline.
    pub grace_seconds: i64,
}

/// What the drain does next.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DrainPlan {
    /// Pods still waited for, across every wave.
    pub waiting: usize,
    /// The wave being drained; `None` once nothing is waited for.
    pub wave: Option<Wave>,
    /// Pods of that wave to evict now through the Eviction API (PDBs honoured).
    pub evict: Vec<PodRef>,
    /// Pods to delete now because the termination deadline is near.
    pub force: Vec<ForcedDeletion>,
    /// `do-not-disrupt` pods that hold the drain (waited for, never evicted).
    pub do_not_disrupt: Vec<PodRef>,
}

impl DrainPlan {
    /// True when no pod is waited for: the node is drained.
    pub fn is_drained(&self) -> bool {
        self.waiting == 0
    }
}

/// True for pods of the two system-critical priority classes.
pub fn is_critical(pod: &Pod) -> bool {
    matches!(
        pod.spec
            .as_ref()
            .and_then(|s| s.priority_class_name.as_deref()),
        Some("system-cluster-critical" | "system-node-critical")
    )
}

/// True for a static pod's API mirror (annotated by its kubelet, or owned by the Node).
pub fn is_mirror(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(MIRROR_POD_ANNOTATION))
        || pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.kind == "Node")
}

/// True when `pod` tolerates `karpenter.sh/disrupted:NoSchedule` (an `Exists` toleration of the
/// key, an empty-key `Exists` toleration, or an `Equal` one with an empty value; any effect
/// or `NoSchedule`). Such pods would land on the node again, so they are not drained.
pub fn tolerates_disrupted_taint(pod: &Pod) -> bool {
    let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.as_ref());
    tolerations.into_iter().flatten().any(tolerates_disrupted)
}

fn tolerates_disrupted(t: &Toleration) -> bool {
    let effect_ok = matches!(t.effect.as_deref(), None | Some("") | Some("NoSchedule"));
    let key = t.key.as_deref().unwrap_or("");
    let exists = t.operator.as_deref() == Some("Exists");
    if key.is_empty() {
        return exists && effect_ok;
    }
    effect_ok
        && key == labels::DISRUPTED_TAINT
        && (exists || t.value.as_deref().unwrap_or("").is_empty())
}

/// True for `karpenter.sh/do-not-disrupt: "true"` (v1: any other value means absent).
pub fn has_do_not_disrupt(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(labels::DO_NOT_DISRUPT))
        .is_some_and(|v| v == "true")
}

/// True when the pod is terminating and its deletion deadline passed more than
/// [`STUCK_TERMINATING`] ago.
pub fn is_stuck_terminating(pod: &Pod, now: Timestamp) -> bool {
    pod.metadata.deletion_timestamp.as_ref().is_some_and(|t| {
        now.duration_since(t.0) > SignedDuration::from_secs(STUCK_TERMINATING.as_secs() as i64)
    })
}

/// True for a pod the drain waits for.
pub fn is_waiting(pod: &Pod, now: Timestamp) -> bool {
    !is_terminal(pod)
        && !tolerates_disrupted_taint(pod)
        && !is_mirror(pod)
        && !is_stuck_terminating(pod, now)
}

/// The drain plan for the pods bound to a node, given its termination deadline (if the
/// NodeClaim has a `terminationGracePeriod`).
pub fn plan_drain<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
    deadline: Option<Timestamp>,
    now: Timestamp,
) -> DrainPlan {
    let waiting: Vec<&Pod> = pods.into_iter().filter(|p| is_waiting(p, now)).collect();
    let mut plan = DrainPlan {
        waiting: waiting.len(),
        ..DrainPlan::default()
    };
    if let Some(deadline) = deadline {
        for pod in waiting
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
        {
            if let Some(forced) = forced_deletion(pod, deadline, now) {
                plan.force.push(forced);
            }
        }
    }
    plan.wave = waiting.iter().map(|p| Wave::of(p)).min();
    let Some(wave) = plan.wave else {
        return plan;
    };
    for pod in waiting.iter().filter(|p| Wave::of(p) == wave) {
        let r = PodRef::of(pod);
        if pod.metadata.deletion_timestamp.is_some() || plan.force.iter().any(|f| f.pod == r) {
            continue;
        }
        if has_do_not_disrupt(pod) {
            plan.do_not_disrupt.push(r);
        } else {
            plan.evict.push(r);
        }
    }
    plan.evict.sort();
    plan.do_not_disrupt.sort();
    plan
}

/// The forced deletion of `pod` if the deadline is within its own grace period. A pod without
/// `terminationGracePeriodSeconds` (the API server defaults it to 30 s, so only hand-made
/// objects lack it) is left to the deadline.
fn forced_deletion(pod: &Pod, deadline: Timestamp, now: Timestamp) -> Option<ForcedDeletion> {
    let grace = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)?;
    let delete_at = deadline
        .checked_sub(SignedDuration::from_secs(grace))
        .ok()?;
    if now < delete_at {
        return None;
    }
    let left = deadline.duration_since(now).as_secs().max(0);
    Some(ForcedDeletion {
        pod: PodRef::of(pod),
        grace_seconds: left,
    })
}

#[cfg(test)]
#[path = "drain_tests.rs"]
mod tests;

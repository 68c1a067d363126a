//! Idempotent launch: what this process knows of each claim's launch, and the pure rule that
//! decides whether a claim without a recorded instance may be launched, must first look for an
//! instance an earlier attempt left behind, or must wait.
//!
//! CreateFleet requests carry no per-claim tag (identical claims' requests merge in the
//! batcher); the provider tags each instance for its claim right after the launch. A crash,
//! timeout or cancellation between CreateFleet and the claim's status write leaves an instance
//! the claim does not know of — tagged for it, or untagged if the tag was never written. Before
//! launching such a claim again the lifecycle asks the provider for it
//! ([`karpenter_providers::CloudProvider::find_launched`]), which adopts an untagged instance
//! of the claim's pool and shape; garbage collection leaves untagged instances alone while a
//! claim of their pool could still adopt them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use karpenter_core::api::NodeClaim;
use karpenter_providers::{LaunchedInstance, ProviderError};

/// How long an attempt whose outcome was never seen may still be finishing (a fleet call the
/// batcher sent on after its caller gave up) before the claim looks for its instance.
pub const SETTLE: Duration = Duration::from_secs(30);

/// Claims created this soon after the controllers started may have been launched by the
/// previous leader (whose last calls can still land after it lost the Lease).
pub const PREVIOUS_LEADER_MARGIN: Duration = Duration::from_secs(30);

/// Clock skew allowed between EC2's launch times and the API server's timestamps.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// What this process knows of one claim's launch.
#[derive(Clone, Debug, PartialEq)]
pub enum Attempt {
    /// A launch was started at this time and no answer was seen (still running, timed out,
    /// cancelled, or failed in a way that does not say whether EC2 launched).
    InFlight(Timestamp),
    /// The launch returned this instance (the claim's status write may still be pending).
    Launched(Box<LaunchedInstance>),
}

/// What to do for a claim without a recorded instance.
#[derive(Clone, Debug, PartialEq)]
pub enum LaunchPlan {
    /// This process launched it already: record the instance on the claim.
    Record(Box<LaunchedInstance>),
    /// An unanswered attempt may still land: look again later.
    Wait(Duration),
    /// Look for an instance an earlier attempt left (launched at or after this time), and
    /// launch only if there is none.
    FindThenLaunch {
        /// Instances launched before this (seconds since the epoch) are not the claim's.
        launched_after_unix: i64,
    },
    /// Nobody can have launched it yet: launch.
    Launch,
}

/// The launch plan of `claim`, given this process's attempt (if any) and when its controllers
/// started.
pub fn launch_plan(
    claim: &NodeClaim,
    attempt: Option<&Attempt>,
    controllers_started: Timestamp,
    now: Timestamp,
) -> LaunchPlan {
    let skew = SignedDuration::try_from(CLOCK_SKEW).unwrap_or_default();
    match attempt {
        Some(Attempt::Launched(instance)) => LaunchPlan::Record(instance.clone()),
        Some(Attempt::InFlight(since)) => {
            let settled_at = since
                .checked_add(SignedDuration::try_from(SETTLE).unwrap_or_default())
                .unwrap_or(*since);
            match Duration::try_from(now.duration_until(settled_at)) {
                Ok(left) if !left.is_zero() => LaunchPlan::Wait(left),
                _ => LaunchPlan::FindThenLaunch {
                    launched_after_unix: since.as_second() - skew.as_secs(),
                },
            }
        }
        None => {
            let created = claim
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or(now, |t| t.0);
            let margin = SignedDuration::try_from(PREVIOUS_LEADER_MARGIN).unwrap_or_default();
            let fresh = controllers_started
                .checked_add(margin)
                .is_ok_and(|after| created > after);
            if fresh {
                LaunchPlan::Launch
            } else {
                LaunchPlan::FindThenLaunch {
                    launched_after_unix: created.as_second() - skew.as_secs(),
                }
            }
        }
    }
}

/// True when a failed create says for sure that no instance was launched (the claim may be
/// launched again without looking); any other failure leaves the attempt in flight.
pub fn launched_nothing(error: &ProviderError) -> bool {
    matches!(
        error,
        ProviderError::InsufficientCapacity { .. }
            | ProviderError::Create { .. }
            | ProviderError::NodeClassNotReady { .. }
            | ProviderError::Throttled { .. }
    )
}

/// Attempts per NodeClaim UID. The store can hand a reconcile a claim older than our own
/// status write; without this a stale read would launch a second instance.
#[derive(Debug, Default)]
pub struct Launches(Mutex<HashMap<String, Attempt>>);

impl Launches {
    /// This process's attempt for `uid`.
    pub fn get(&self, uid: &str) -> Option<Attempt> {
        self.lock().get(uid).cloned()
    }

    /// Records an attempt starting now.
    pub fn started(&self, uid: &str, now: Timestamp) {
        self.lock().insert(uid.to_owned(), Attempt::InFlight(now));
    }

    /// Records the instance an attempt returned.
    pub fn launched(&self, uid: &str, instance: &LaunchedInstance) {
        self.lock().insert(
            uid.to_owned(),
            Attempt::Launched(Box::new(instance.clone())),
        );
    }

    /// Forgets `uid` (its attempt launched nothing, or the claim is gone).
    pub fn forget(&self, uid: &str) {
        self.lock().remove(uid);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Attempt>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    fn claim_created(secs: i64) -> NodeClaim {
        let mut c: NodeClaim = serde_yaml::from_str(
            r#"
apiVersion: karpenter.sh/v1
kind: NodeClaim
metadata: {name: c}
spec:
  nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}
  requirements: []
"#,
        )
        .unwrap();
        c.metadata.creation_timestamp = Some(Time(t(secs)));
        c
    }

    fn instance() -> LaunchedInstance {
        LaunchedInstance {
            provider_id: "aws:///us-east-1a/i-1".into(),
            instance_type: "m5.large".into(),
            zone: "us-east-1a".into(),
            capacity_type: "on-demand".into(),
            image_id: "ami-1".into(),
            capacity: Default::default(),
            labels: Default::default(),
            launch_time_unix: 0,
            node_claim: Some("c".into()),
            node_pool: Some("default".into()),
        }
    }

    #[test]
    fn a_claim_created_after_the_controllers_started_is_launched_straight_away() {
        let started = t(0);
        assert_eq!(
            launch_plan(&claim_created(31), None, started, t(32)),
            LaunchPlan::Launch
        );
    }

    #[test]
    fn an_older_claim_is_looked_for_first_since_a_previous_process_may_have_launched_it() {
        let started = t(1_000);
        assert_eq!(
            launch_plan(&claim_created(900), None, started, t(1_001)),
            LaunchPlan::FindThenLaunch {
                launched_after_unix: t(900).as_second() - 60
            }
        );
        // Within the previous leader's margin too.
        assert!(matches!(
            launch_plan(&claim_created(1_020), None, started, t(1_021)),
            LaunchPlan::FindThenLaunch { .. }
        ));
    }

    #[test]
    fn an_unanswered_attempt_settles_then_is_looked_for_and_a_launched_one_is_recorded() {
        let c = claim_created(0);
        let attempt = Attempt::InFlight(t(100));
        assert_eq!(
            launch_plan(&c, Some(&attempt), t(0), t(110)),
            LaunchPlan::Wait(Duration::from_secs(20))
        );
        assert_eq!(
            launch_plan(&c, Some(&attempt), t(0), t(130)),
            LaunchPlan::FindThenLaunch {
                launched_after_unix: t(100).as_second() - 60
            }
        );
        let done = Attempt::Launched(Box::new(instance()));
        assert_eq!(
            launch_plan(&c, Some(&done), t(0), t(130)),
            LaunchPlan::Record(Box::new(instance()))
        );
    }

    #[test]
    fn only_failures_that_prove_nothing_launched_clear_the_attempt() {
        assert!(launched_nothing(&ProviderError::InsufficientCapacity {
            offerings: vec![],
            message: String::new()
        }));
        assert!(launched_nothing(&ProviderError::Throttled {
            operation: "CreateFleet".into()
        }));
        assert!(!launched_nothing(&ProviderError::Other(
            "operation timed out".into()
        )));
    }

    #[test]
    fn launches_remember_per_uid() {
        let l = Launches::default();
        l.started("u1", t(5));
        assert_eq!(l.get("u1"), Some(Attempt::InFlight(t(5))));
        l.launched("u1", &instance());
        assert_eq!(l.get("u1"), Some(Attempt::Launched(Box::new(instance()))));
        assert_eq!(l.get("u2"), None);
        l.forget("u1");
        assert_eq!(l.get("u1"), None);
    }
}

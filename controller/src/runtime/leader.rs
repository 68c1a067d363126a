//! Lease leader election, as controller-runtime does it for Karpenter: one
//! `coordination.k8s.io/v1` Lease (`karpenter-leader-election` in Karpenter's namespace), the
//! holder renews it every retry period, the others take it over once it is free, released or
//! expired. Only the leader runs the controllers; the others stand by.
//!
//! The decision is pure ([`decide`], [`next_spec`]) and unit-tested; [`LeaderElector`] adds the
//! API I/O: get, then create or replace with the read `resourceVersion`, so of two candidates
//! writing the same Lease the API server accepts one and answers 409 Conflict to the other.
//!
//! Expiry is judged from the Lease's `renewTime` plus its `leaseDurationSeconds`, so candidates
//! need roughly synchronised clocks (client-go instead times from when it last saw the record
//! change; NTP-synced nodes make the difference moot at a 15 s lease).

use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube_client::Client;
use kube_client::api::{Api, PostParams};
use tokio::sync::watch;

/// Name of Karpenter's Lease.
pub const LEASE_NAME: &str = "karpenter-leader-election";

/// Lease duration assumed when a Lease does not say (controller-runtime's default).
const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);

/// The election's clock: how long a lease lasts, how long the leader keeps trying to renew
/// before giving up, how often everyone tries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timings {
    /// How long a lease holds without renewal (`leaseDurationSeconds`; whole seconds).
    pub lease_duration: Duration,
    /// How long the leader retries failed renewals before it considers leadership lost.
    pub renew_deadline: Duration,
    /// Pause between attempts to acquire or renew.
    pub retry_period: Duration,
}

impl Default for Timings {
    /// controller-runtime's defaults, which Karpenter uses: 15 s, 10 s, 2 s.
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What a candidate should do about the Lease it just read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// There is no Lease: create it, held by us.
    Create,
    /// The Lease is free, released or expired: take it over, with this `leaseTransitions`.
    Acquire {
        /// The Lease's new `leaseTransitions`.
        transitions: i32,
    },
    /// We hold the Lease: renew it.
    Renew,
    /// Someone else holds a valid Lease: stand by.
    Wait {
        /// The holder.
        holder: String,
        /// When its lease runs out unless renewed.
        expires: Timestamp,
    },
}

/// When a held Lease runs out: `renewTime` (else `acquireTime`) plus `leaseDurationSeconds`
/// (else the default). `None` when it has neither time, i.e. nothing proves a live holder.
fn expiry(spec: &LeaseSpec) -> Option<Timestamp> {
    let last = spec.renew_time.as_ref().or(spec.acquire_time.as_ref())?.0;
    let secs = match spec.lease_duration_seconds {
        Some(s) if s > 0 => i64::from(s),
        _ => DEFAULT_LEASE_DURATION.as_secs() as i64,
    };
    // Saturate instead of failing on absurd times: a far-future expiry just means "held".
    Some(
        last.checked_add(SignedDuration::from_secs(secs))
            .unwrap_or(Timestamp::MAX),
    )
}

/// Decides what candidate `me` does about `lease` (its spec, `None` when there is no Lease) at
/// `now`. A lease is valid while `now` is before its expiry; a holder identity that is empty
/// means released.
pub fn decide(lease: Option<&LeaseSpec>, me: &str, now: Timestamp) -> Action {
    let Some(spec) = lease else {
        return Action::Create;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder == me {
        return Action::Renew;
    }
    let taking_over = |spec: &LeaseSpec| Action::Acquire {
        transitions: spec.lease_transitions.unwrap_or(0).saturating_add(1),
    };
    if holder.is_empty() {
        return taking_over(spec);
    }
    match expiry(spec) {
        Some(expires) if now < expires => Action::Wait {
            holder: holder.to_string(),
            expires,
        },
        _ => taking_over(spec),
    }
}

/// The spec `me` writes for `action` (`None` for [`Action::Wait`]).
pub fn next_spec(
    current: Option<&LeaseSpec>,
    action: &Action,
    me: &str,
    now: Timestamp,
    lease_duration: Duration,
) -> Option<LeaseSpec> {
    let (acquired, transitions) = match action {
        Action::Wait { .. } => return None,
        Action::Create => (now, 0),
        Action::Acquire { transitions } => (now, *transitions),
        Action::Renew => {
            let c = current.cloned().unwrap_or_default();
            (
                c.acquire_time.map_or(now, |t| t.0),
                c.lease_transitions.unwrap_or(0),
            )
        }
    };
    Some(LeaseSpec {
        holder_identity: Some(me.to_string()),
        lease_duration_seconds: Some(secs_i32(lease_duration)),
        acquire_time: Some(MicroTime(acquired)),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    })
}

/// Whole seconds, at least 1 (the API server rejects 0).
fn secs_i32(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX).max(1)
}

/// The spec a leader writes when it steps down: no holder and a 1 s lease, as client-go's
/// `ReleaseOnCancel`, so a standby takes over at its next retry instead of after the lease.
pub fn released_spec(current: &LeaseSpec, now: Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(String::new()),
        lease_duration_seconds: Some(1),
        acquire_time: Some(MicroTime(now)),
        renew_time: Some(MicroTime(now)),
        lease_transitions: current.lease_transitions,
        ..LeaseSpec::default()
    }
}

/// A process-unique identity: the pod name (`POD_NAME`, else `HOSTNAME`) and a suffix from
/// the pid and the start time, so a restarted pod does not pass for its predecessor.
pub fn default_identity() -> String {
    let host = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "karpenter".to_string());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{host}_{:x}{:x}",
        std::process::id(),
        nanos & 0xffff_ffff_ffff
    )
}

/// How an attempt to hold the Lease went.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    /// We hold it (created, acquired or renewed).
    Held,
    /// Someone else holds a valid lease.
    HeldBy(String),
    /// Another writer got there first (409): try again next period.
    Conflict,
}

/// Why [`LeaderElector::run`] returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    /// Shutdown was requested; the Lease was released if we held it.
    Shutdown,
    /// We were leader and could not renew within the renew deadline, or saw another holder.
    /// The controllers must stop (controller-runtime exits the process).
    Lost,
}

/// One candidate in the election.
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timings: Timings,
}

impl LeaderElector {
    /// A candidate for Lease `namespace/name` under `identity` (see [`default_identity`]).
    pub fn new(
        client: Client,
        namespace: &str,
        name: impl Into<String>,
        identity: impl Into<String>,
        timings: Timings,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            timings,
        }
    }

    /// This candidate's identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Campaigns until `shutdown` completes or leadership is lost, publishing on `leading`
    /// whether we lead (true from acquisition until loss or release). On shutdown while
    /// leading, releases the Lease so a standby takes over at once.
    pub async fn run(
        self,
        leading: watch::Sender<bool>,
        shutdown: impl Future<Output = ()>,
    ) -> Ended {
        let mut shutdown = std::pin::pin!(shutdown);
        // When the Lease was last written by us; `Some` while leading.
        let mut renewed: Option<Instant> = None;
        loop {
            let attempt =
                tokio::time::timeout(self.timings.renew_deadline, self.try_acquire_or_renew())
                    .await;
            let attempt = match attempt {
                Ok(Ok(a)) => a,
                Ok(Err(e)) => {
                    tracing::warn!(lease = %self.name, error = %e, "leader election: API call failed");
                    Attempt::Conflict
                }
                Err(_) => {
                    tracing::warn!(lease = %self.name, "leader election: API call timed out");
                    Attempt::Conflict
                }
            };
            match (attempt, renewed) {
                (Attempt::Held, None) => {
                    tracing::info!(lease = %self.name, identity = %self.identity, "acquired leader lease");
                    renewed = Some(Instant::now());
                    leading.send_replace(true);
                }
                (Attempt::Held, Some(_)) => renewed = Some(Instant::now()),
                (Attempt::HeldBy(holder), Some(_)) => {
                    tracing::error!(lease = %self.name, %holder, "leader lease taken over");
                    leading.send_replace(false);
                    return Ended::Lost;
                }
                (Attempt::Conflict, Some(at)) if at.elapsed() >= self.timings.renew_deadline => {
                    tracing::error!(lease = %self.name, "could not renew leader lease within the renew deadline");
                    leading.send_replace(false);
                    return Ended::Lost;
                }
                (Attempt::HeldBy(_) | Attempt::Conflict, _) => {}
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(self.timings.retry_period) => {}
            }
        }
        if renewed.is_some() {
            match tokio::time::timeout(self.timings.renew_deadline, self.release()).await {
                Ok(Ok(())) => tracing::info!(lease = %self.name, "released leader lease"),
                Ok(Err(e)) => {
                    tracing::warn!(lease = %self.name, error = %e, "releasing leader lease")
                }
                Err(_) => tracing::warn!(lease = %self.name, "releasing leader lease timed out"),
            }
        }
        leading.send_replace(false);
        Ended::Shutdown
    }

    /// One round: read the Lease, decide, write.
    async fn try_acquire_or_renew(&self) -> Result<Attempt, kube_client::Error> {
        let current = self.api.get_opt(&self.name).await?;
        let spec = current.as_ref().and_then(|l| l.spec.as_ref());
        let now = Timestamp::now();
        let action = decide(spec, &self.identity, now);
        let Some(next) = next_spec(
            spec,
            &action,
            &self.identity,
            now,
            self.timings.lease_duration,
        ) else {
            let Action::Wait { holder, .. } = action else {
                return Ok(Attempt::Conflict);
            };
            return Ok(Attempt::HeldBy(holder));
        };
        let written = match current {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(next),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            Some(mut lease) => {
                // The read resourceVersion stays in the metadata: the write only succeeds if
                // nobody wrote in between.
                lease.spec = Some(next);
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match written {
            Ok(_) => Ok(Attempt::Held),
            Err(kube_client::Error::Api(status)) if status.code == 409 => Ok(Attempt::Conflict),
            Err(e) => Err(e),
        }
    }

    /// Steps down if we still hold the Lease.
    async fn release(&self) -> Result<(), kube_client::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_ref() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        lease.spec = Some(released_spec(spec, Timestamp::now()));
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            // Someone wrote first, so it is no longer ours to release.
            Err(kube_client::Error::Api(status)) if status.code == 409 => Ok(()),
            other => other.map(|_| ()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    fn held(holder: &str, renewed: i64, duration: i32, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(duration),
            acquire_time: Some(MicroTime(at(0))),
            renew_time: Some(MicroTime(at(renewed))),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn no_lease_means_create_with_zero_transitions() {
        assert_eq!(decide(None, "me", at(0)), Action::Create);
        let spec = next_spec(None, &Action::Create, "me", at(5), Duration::from_secs(15)).unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("me"));
        assert_eq!(spec.lease_duration_seconds, Some(15));
        assert_eq!(spec.lease_transitions, Some(0));
        assert_eq!(spec.acquire_time, Some(MicroTime(at(5))));
        assert_eq!(spec.renew_time, Some(MicroTime(at(5))));
    }

    #[test]
    fn valid_lease_of_another_holder_means_wait() {
        let lease = held("other", 10, 15, 3);
        assert_eq!(
            decide(Some(&lease), "me", at(20)),
            Action::Wait {
                holder: "other".into(),
                expires: at(25)
            }
        );
        let wait = decide(Some(&lease), "me", at(20));
        assert_eq!(
            next_spec(Some(&lease), &wait, "me", at(20), Duration::from_secs(15)),
            None
        );
    }

    #[test]
    fn expiry_edges() {
        let lease = held("other", 10, 15, 3);
        // One microsecond before expiry it is still held; at expiry it is free (client-go:
        // valid while renew + duration is after now).
        let just_before = at(25).checked_sub(SignedDuration::from_micros(1)).unwrap();
        assert!(matches!(
            decide(Some(&lease), "me", just_before),
            Action::Wait { .. }
        ));
        assert_eq!(
            decide(Some(&lease), "me", at(25)),
            Action::Acquire { transitions: 4 }
        );
        // A renew time in the future (the holder's clock runs ahead) still counts as held.
        let ahead = held("other", 100, 15, 0);
        assert!(matches!(
            decide(Some(&ahead), "me", at(20)),
            Action::Wait { .. }
        ));
        // No duration on the Lease: the default 15 s applies.
        let mut no_duration = held("other", 10, 15, 0);
        no_duration.lease_duration_seconds = None;
        assert!(matches!(
            decide(Some(&no_duration), "me", at(24)),
            Action::Wait { .. }
        ));
        assert!(matches!(
            decide(Some(&no_duration), "me", at(25)),
            Action::Acquire { .. }
        ));
        // Only an acquire time: expiry counts from it.
        let mut no_renew = held("other", 0, 15, 0);
        no_renew.renew_time = None;
        assert!(matches!(
            decide(Some(&no_renew), "me", at(14)),
            Action::Wait { .. }
        ));
        // No time at all proves no live holder.
        no_renew.acquire_time = None;
        assert_eq!(
            decide(Some(&no_renew), "me", at(0)),
            Action::Acquire { transitions: 1 }
        );
        // An absurd duration does not overflow.
        let forever = held("other", 10, i32::MAX, 0);
        assert!(matches!(
            decide(Some(&forever), "me", at(1_000_000)),
            Action::Wait { .. }
        ));
    }

    #[test]
    fn released_or_empty_lease_is_free_at_once() {
        let lease = held("leader", 10, 15, 2);
        let released = released_spec(&lease, at(11));
        assert_eq!(released.holder_identity.as_deref(), Some(""));
        assert_eq!(released.lease_duration_seconds, Some(1));
        assert_eq!(released.lease_transitions, Some(2));
        // Free although its renew time is just now.
        assert_eq!(
            decide(Some(&released), "me", at(11)),
            Action::Acquire { transitions: 3 }
        );
        let no_holder = LeaseSpec::default();
        assert_eq!(
            decide(Some(&no_holder), "me", at(0)),
            Action::Acquire { transitions: 1 }
        );
    }

    #[test]
    fn our_lease_is_renewed_keeping_acquire_time_and_transitions() {
        let lease = held("me", 10, 15, 4);
        // Even past expiry (a slow renewal) the lease is ours to renew.
        for now in [at(11), at(40)] {
            assert_eq!(decide(Some(&lease), "me", now), Action::Renew);
        }
        let spec = next_spec(
            Some(&lease),
            &Action::Renew,
            "me",
            at(12),
            Duration::from_secs(15),
        )
        .unwrap();
        assert_eq!(spec.acquire_time, Some(MicroTime(at(0))));
        assert_eq!(spec.renew_time, Some(MicroTime(at(12))));
        assert_eq!(spec.lease_transitions, Some(4));
    }

    #[test]
    fn takeover_counts_a_transition_and_resets_acquire_time() {
        let lease = held("old", 0, 15, i32::MAX);
        // Saturates instead of overflowing.
        let action = decide(Some(&lease), "me", at(100));
        assert_eq!(
            action,
            Action::Acquire {
                transitions: i32::MAX
            }
        );
        let lease = held("old", 0, 15, 1);
        let action = decide(Some(&lease), "me", at(100));
        let spec = next_spec(
            Some(&lease),
            &action,
            "me",
            at(100),
            Duration::from_millis(500),
        )
        .unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("me"));
        assert_eq!(spec.lease_transitions, Some(2));
        assert_eq!(spec.acquire_time, Some(MicroTime(at(100))));
        // Sub-second durations round up to the API's minimum of 1 s.
        assert_eq!(spec.lease_duration_seconds, Some(1));
    }

    #[test]
    fn identity_is_the_pod_name_and_a_suffix() {
        let a = default_identity();
        let (host, suffix) = a.rsplit_once('_').expect("host_suffix");
        assert!(!host.is_empty(), "{a}");
        assert!(
            suffix.len() > 4 && suffix.chars().all(|c| c.is_ascii_hexdigit()),
            "{a}"
        );
    }
}

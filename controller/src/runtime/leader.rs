//! Lease leader election, as controller-runtime does it for Karpenter: one
//! `coordination.k8s.io/v1` Lease (`karpenter-leader-election` in Karpenter's namespace), the
//! holder renews it every retry period, the others take it over once it is free, released or
//! expired. Only the leader runs the controllers; the others stand by.
//!
//! The decision is pure ([`decide`], [`next_spec`]) and unit-tested; [`LeaderElector`] adds the
//! API I/O: get, then create or replace with the read `resourceVersion`, so of two candidates
//! writing the same Lease the API server accepts one and answers 409 Conflict to the other.
//!
//! Expiry is judged as client-go's leaderelection judges it: by this replica's monotonic clock
//! from when it first saw the current Lease record ([`Observation`]), never by comparing the
//! holder's `renewTime` with the local wall clock. A holder whose clock is off by minutes keeps
//! its lease as long as it keeps changing the record; one that stops is taken over
//! `leaseDurationSeconds` after its last change was seen.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
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
        /// When, by this replica's clock, the lease runs out unless its record changes first.
        expires: Instant,
    },
}

/// The Lease record this replica last saw and when it first saw it, by the local monotonic
/// clock. Only a change of the record (any field of the spec: a renewal, a new holder, a
/// release) restarts the clock; `resourceVersion` alone does not, so metadata-only writes
/// (labels, annotations) cannot keep a dead holder's lease alive.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observation {
    /// The record and the instant it was first seen; `None` before anything was seen.
    seen: Option<(Option<LeaseSpec>, Instant)>,
}

impl Observation {
    /// Records that the Lease read at `now` has `spec` (`None`: no Lease). The observation
    /// instant moves to `now` only if the record differs from the one last seen.
    pub fn observe(&mut self, spec: Option<&LeaseSpec>, now: Instant) {
        if !self.is_current(spec) {
            self.seen = Some((spec.cloned(), now));
        }
    }

    /// When the record `spec` was first seen, if it is the record last observed.
    pub fn since(&self, spec: Option<&LeaseSpec>) -> Option<Instant> {
        self.seen
            .as_ref()
            .filter(|(seen, _)| seen.as_ref() == spec)
            .map(|(_, at)| *at)
    }

    fn is_current(&self, spec: Option<&LeaseSpec>) -> bool {
        self.since(spec).is_some()
    }
}

/// `leaseDurationSeconds` of a record, else the default.
fn lease_duration(spec: &LeaseSpec) -> Duration {
    match spec.lease_duration_seconds {
        Some(s) if s > 0 => Duration::from_secs(u64::try_from(s).unwrap_or(u64::MAX)),
        _ => DEFAULT_LEASE_DURATION,
    }
}

/// Decides what candidate `me` does about `lease` (its spec, `None` when there is no Lease) at
/// local instant `now`, given what this replica has `observed` of it. Someone else's lease is
/// valid until its record has stayed unchanged for `leaseDurationSeconds` of local time (a
/// record not yet in `observed` counts as first seen `now`); the times written in the Lease
/// are not compared with the local clock. An empty holder identity means released.
pub fn decide(lease: Option<&LeaseSpec>, me: &str, observed: &Observation, now: Instant) -> Action {
    let Some(spec) = lease else {
        return Action::Create;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder == me {
        return Action::Renew;
    }
    let taking_over = Action::Acquire {
        transitions: spec.lease_transitions.unwrap_or(0).saturating_add(1),
    };
    if holder.is_empty() {
        return taking_over;
    }
    let seen = observed.since(lease).unwrap_or(now);
    // Saturate instead of failing on absurd durations: a far-off expiry just means "held".
    let expires = seen
        .checked_add(lease_duration(spec))
        .unwrap_or_else(|| now + Duration::from_secs(u64::from(u32::MAX)));
    if now < expires {
        Action::Wait {
            holder: holder.to_string(),
            expires,
        }
    } else {
        taking_over
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
    /// The Lease record as last read or written, and when this replica first saw it.
    observed: Observation,
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
            observed: Observation::default(),
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
        mut self,
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

    /// One round: read the Lease, note whether its record changed, decide, write.
    async fn try_acquire_or_renew(&mut self) -> Result<Attempt, kube_client::Error> {
        let current = self.api.get_opt(&self.name).await?;
        let spec = current.as_ref().and_then(|l| l.spec.as_ref());
        let seen_at = Instant::now();
        self.observed.observe(spec, seen_at);
        let now = Timestamp::now();
        let action = decide(spec, &self.identity, &self.observed, seen_at);
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
            Ok(lease) => {
                // What we wrote is the record now, as the API server stored it (times cut to
                // microseconds); client-go observes its own writes the same way.
                self.observed.observe(lease.spec.as_ref(), Instant::now());
                Ok(Attempt::Held)
            }
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
#[path = "leader_tests.rs"]
mod tests;

//! The pure election decision: create, acquire, renew, wait, and expiry judged by the local
//! clock from when the record was last seen to change.

use k8s_openapi::jiff::SignedDuration;

use super::*;

/// A wall-clock time written into Lease records.
fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).unwrap()
}

/// A Lease record held by `holder`, renewed at wall-clock second `renewed`.
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

/// An observation of `spec` made at `t0`.
fn seen(spec: &LeaseSpec, t0: Instant) -> Observation {
    let mut o = Observation::default();
    o.observe(Some(spec), t0);
    o
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn no_lease_means_create_with_zero_transitions() {
    let t0 = Instant::now();
    assert_eq!(
        decide(None, "me", &Observation::default(), t0),
        Action::Create
    );
    let spec = next_spec(None, &Action::Create, "me", at(5), secs(15)).unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("me"));
    assert_eq!(spec.lease_duration_seconds, Some(15));
    assert_eq!(spec.lease_transitions, Some(0));
    assert_eq!(spec.acquire_time, Some(MicroTime(at(5))));
    assert_eq!(spec.renew_time, Some(MicroTime(at(5))));
}

#[test]
fn valid_lease_of_another_holder_means_wait() {
    let t0 = Instant::now();
    let lease = held("other", 10, 15, 3);
    let observed = seen(&lease, t0);
    let wait = decide(Some(&lease), "me", &observed, t0 + secs(5));
    assert_eq!(
        wait,
        Action::Wait {
            holder: "other".into(),
            expires: t0 + secs(15)
        }
    );
    assert_eq!(next_spec(Some(&lease), &wait, "me", at(20), secs(15)), None);
}

#[test]
fn expiry_counts_from_when_the_record_was_first_seen() {
    let t0 = Instant::now();
    let lease = held("other", 10, 15, 3);
    let observed = seen(&lease, t0);
    // Valid while first-seen + duration is after now (client-go's isLeaseValid).
    let just_before = t0 + secs(15) - Duration::from_micros(1);
    assert!(matches!(
        decide(Some(&lease), "me", &observed, just_before),
        Action::Wait { .. }
    ));
    assert_eq!(
        decide(Some(&lease), "me", &observed, t0 + secs(15)),
        Action::Acquire { transitions: 4 }
    );
    // A record this replica has not observed yet counts as first seen now: a fresh candidate
    // waits a full lease duration, however old the record's times look.
    let stale = held("other", -86_400, 15, 0);
    assert_eq!(
        decide(Some(&stale), "me", &observed, t0 + secs(100)),
        Action::Wait {
            holder: "other".into(),
            expires: t0 + secs(115)
        }
    );
    // No duration on the Lease: the default 15 s applies.
    let mut no_duration = held("other", 10, 15, 0);
    no_duration.lease_duration_seconds = None;
    let observed = seen(&no_duration, t0);
    assert!(matches!(
        decide(Some(&no_duration), "me", &observed, t0 + secs(14)),
        Action::Wait { .. }
    ));
    assert!(matches!(
        decide(Some(&no_duration), "me", &observed, t0 + secs(15)),
        Action::Acquire { .. }
    ));
    // Neither renew nor acquire time: the record still names a holder, who gets its lease.
    let mut no_times = held("other", 0, 15, 0);
    no_times.renew_time = None;
    no_times.acquire_time = None;
    let observed = seen(&no_times, t0);
    assert!(matches!(
        decide(Some(&no_times), "me", &observed, t0 + secs(14)),
        Action::Wait { .. }
    ));
    // An absurd duration does not overflow.
    let forever = held("other", 10, i32::MAX, 0);
    let observed = seen(&forever, t0);
    assert!(matches!(
        decide(Some(&forever), "me", &observed, t0 + secs(1_000_000)),
        Action::Wait { .. }
    ));
}

#[test]
fn a_holder_with_a_skewed_clock_keeps_its_lease_while_it_renews() {
    // The holder's clock runs an hour behind ours: by our wall clock its renewTime is always
    // an hour old, far past its 15 s lease. It renews every 2 s, so the record keeps changing
    // and the lease must stay with it.
    let skew = SignedDuration::from_hours(1);
    let wall_start = Timestamp::now();
    let t0 = Instant::now();
    let mut observed = Observation::default();
    for round in 0..60u64 {
        let local = t0 + secs(2 * round);
        let renewed = wall_start + SignedDuration::from_secs(2 * round as i64) - skew;
        let lease = LeaseSpec {
            renew_time: Some(MicroTime(renewed)),
            ..held("other", 0, 15, 7)
        };
        observed.observe(Some(&lease), local);
        assert_eq!(
            decide(Some(&lease), "me", &observed, local),
            Action::Wait {
                holder: "other".into(),
                expires: local + secs(15)
            },
            "round {round}: a renewing holder's lease was taken over"
        );
    }
}

#[test]
fn a_holder_that_stops_renewing_is_taken_over_after_the_lease_duration() {
    // The holder's clock runs an hour ahead: its last renewTime looks an hour in our future.
    // Once the record stops changing, the lease is ours lease-duration later all the same.
    let t0 = Instant::now();
    let renewed = Timestamp::now() + SignedDuration::from_hours(1);
    let lease = LeaseSpec {
        renew_time: Some(MicroTime(renewed)),
        ..held("other", 0, 15, 2)
    };
    let mut observed = Observation::default();
    // Re-reading the same record every 2 s does not restart the clock.
    for round in 0..8u64 {
        let local = t0 + secs(2 * round);
        observed.observe(Some(&lease), local);
        assert_eq!(
            decide(Some(&lease), "me", &observed, local),
            Action::Wait {
                holder: "other".into(),
                expires: t0 + secs(15)
            },
            "round {round}"
        );
    }
    observed.observe(Some(&lease), t0 + secs(15));
    let action = decide(Some(&lease), "me", &observed, t0 + secs(15));
    assert_eq!(action, Action::Acquire { transitions: 3 });
    let spec = next_spec(Some(&lease), &action, "me", at(100), secs(15)).unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("me"));
    assert_eq!(spec.renew_time, Some(MicroTime(at(100))));
}

#[test]
fn observation_moves_only_when_the_record_changes() {
    let t0 = Instant::now();
    let mut o = Observation::default();
    assert_eq!(o.since(None), None);
    o.observe(None, t0);
    assert_eq!(o.since(None), Some(t0));
    let a = held("other", 10, 15, 0);
    o.observe(Some(&a), t0 + secs(1));
    o.observe(Some(&a), t0 + secs(5));
    assert_eq!(o.since(Some(&a)), Some(t0 + secs(1)));
    // A renewal, a new holder or a new transition count is a change.
    let renewed = held("other", 12, 15, 0);
    o.observe(Some(&renewed), t0 + secs(6));
    assert_eq!(o.since(Some(&renewed)), Some(t0 + secs(6)));
    assert_eq!(o.since(Some(&a)), None);
    let taken = held("third", 12, 15, 1);
    o.observe(Some(&taken), t0 + secs(7));
    assert_eq!(o.since(Some(&taken)), Some(t0 + secs(7)));
    // A new holder's lease runs from when we saw it change hands, not from its times.
    assert_eq!(
        decide(Some(&taken), "me", &o, t0 + secs(20)),
        Action::Wait {
            holder: "third".into(),
            expires: t0 + secs(22)
        }
    );
}

#[test]
fn released_or_empty_lease_is_free_at_once() {
    let t0 = Instant::now();
    let lease = held("leader", 10, 15, 2);
    let released = released_spec(&lease, at(11));
    assert_eq!(released.holder_identity.as_deref(), Some(""));
    assert_eq!(released.lease_duration_seconds, Some(1));
    assert_eq!(released.lease_transitions, Some(2));
    // Free although it was just written.
    let observed = seen(&released, t0);
    assert_eq!(
        decide(Some(&released), "me", &observed, t0),
        Action::Acquire { transitions: 3 }
    );
    let no_holder = LeaseSpec::default();
    assert_eq!(
        decide(Some(&no_holder), "me", &Observation::default(), t0),
        Action::Acquire { transitions: 1 }
    );
}

#[test]
fn our_lease_is_renewed_keeping_acquire_time_and_transitions() {
    let t0 = Instant::now();
    let lease = held("me", 10, 15, 4);
    let observed = seen(&lease, t0);
    // Even long after we last saw it change (a slow renewal) the lease is ours to renew.
    for now in [t0 + secs(1), t0 + secs(40)] {
        assert_eq!(decide(Some(&lease), "me", &observed, now), Action::Renew);
    }
    let spec = next_spec(Some(&lease), &Action::Renew, "me", at(12), secs(15)).unwrap();
    assert_eq!(spec.acquire_time, Some(MicroTime(at(0))));
    assert_eq!(spec.renew_time, Some(MicroTime(at(12))));
    assert_eq!(spec.lease_transitions, Some(4));
}

#[test]
fn takeover_counts_a_transition_and_resets_acquire_time() {
    let t0 = Instant::now();
    let lease = held("old", 0, 15, i32::MAX);
    // Saturates instead of overflowing.
    let action = decide(Some(&lease), "me", &seen(&lease, t0), t0 + secs(100));
    assert_eq!(
        action,
        Action::Acquire {
            transitions: i32::MAX
        }
    );
    let lease = held("old", 0, 15, 1);
    let action = decide(Some(&lease), "me", &seen(&lease, t0), t0 + secs(100));
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

//! Disruption budgets: how many of a NodePool's nodes may be disrupting at once for a reason,
//! at a given time (Karpenter v1 §5). Budgets are concurrency limits, not rates.

use std::collections::BTreeMap;
use std::time::Duration;

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use k8s_openapi::jiff::{SignedDuration, Timestamp, tz::TimeZone};

use crate::api::nodepool::{Budget, DisruptionReason};

/// A budget that cannot be evaluated. Karpenter fails closed: any invalid budget of a pool
/// allows nothing, for every reason.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum BudgetError {
    /// `nodes` is neither a count nor a percentage.
    #[error("budgets[{index}].nodes: {value:?} is not a node count or a percentage 0%–100%")]
    Nodes {
        /// Position in `spec.disruption.budgets`.
        index: usize,
        /// The value written.
        value: String,
    },
    /// `schedule` does not parse.
    #[error("budgets[{index}].schedule: {value:?}: {message}")]
    Schedule {
        /// Position in `spec.disruption.budgets`.
        index: usize,
        /// The value written.
        value: String,
        /// What the cron parser said.
        message: String,
    },
    /// `schedule` without `duration` or the reverse, or a duration that does not parse.
    #[error("budgets[{index}].duration: {message}")]
    Duration {
        /// Position in `spec.disruption.budgets`.
        index: usize,
        /// What is wrong.
        message: String,
    },
}

/// What a pool's budgets allow for one reason at one time.
#[derive(Clone, Debug, PartialEq)]
pub struct Allowed {
    /// Nodes that may be disrupting at once; `None` = unlimited (no budget applies or none
    /// is active).
    pub nodes: Option<u32>,
    /// The budget that sets `nodes` (its index in `spec.disruption.budgets`).
    pub budget: Option<usize>,
    /// When that budget stops being active (`None`: it has no schedule, or unlimited).
    pub until: Option<Timestamp>,
}

/// Parses a budget schedule as Karpenter does: five fields or an `@` descriptor, UTC.
pub fn parse_schedule(schedule: &str) -> Result<Cron, String> {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(schedule)
        .map_err(|e| e.to_string())
}

/// Whether `budget` is active at `now`, and until when. Active iff a schedule hit lies in
/// `(now − duration, now]`; a budget without a schedule is always active (`until` = `None`).
pub fn active(
    budget: &Budget,
    index: usize,
    now: Timestamp,
) -> Result<(bool, Option<Timestamp>), BudgetError> {
    let (schedule, duration) = match (&budget.schedule, &budget.duration) {
        (None, None) => return Ok((true, None)),
        (Some(s), Some(d)) => (s, d),
        _ => {
            return Err(BudgetError::Duration {
                index,
                message: "'schedule' must be set with 'duration'".into(),
            });
        }
    };
    let cron = parse_schedule(schedule).map_err(|message| BudgetError::Schedule {
        index,
        value: schedule.clone(),
        message,
    })?;
    let duration: Duration = duration.parse().map_err(|e| BudgetError::Duration {
        index,
        message: e.to_string(),
    })?;
    let duration = SignedDuration::try_from(duration).map_err(|e| BudgetError::Duration {
        index,
        message: e.to_string(),
    })?;
    let zoned = now.to_zoned(TimeZone::UTC);
    let Ok(previous) = cron.find_previous_occurrence(&zoned, true) else {
        return Ok((false, None));
    };
    let previous = previous.timestamp();
    let ends = previous.checked_add(duration).unwrap_or(Timestamp::MAX);
    Ok((ends > now, Some(ends)))
}

/// Parses `nodes` against a pool of `total` nodes; percentages round up (5% of 10 → 1).
pub fn nodes_value(budget: &Budget, index: usize, total: u32) -> Result<u32, BudgetError> {
    let bad = || BudgetError::Nodes {
        index,
        value: budget.nodes.clone(),
    };
    let v = budget.nodes.trim();
    if let Some(pct) = v.strip_suffix('%') {
        let pct: u64 = pct.parse().map_err(|_| bad())?;
        if pct > 100 {
            return Err(bad());
        }
        Ok((u64::from(total) * pct).div_ceil(100) as u32)
    } else {
        v.parse().map_err(|_| bad())
    }
}

/// What `budgets` allow for `reason` in a pool of `total` counted nodes at `now`: the minimum
/// over the active budgets that apply. Any invalid budget makes the whole pool allow nothing.
pub fn allowed(
    budgets: &[Budget],
    reason: DisruptionReason,
    total: u32,
    now: Timestamp,
) -> Result<Allowed, BudgetError> {
    let mut best = Allowed {
        nodes: None,
        budget: None,
        until: None,
    };
    // Validate every budget, applicable or not: one bad budget closes the pool.
    let mut evaluated = Vec::with_capacity(budgets.len());
    for (i, b) in budgets.iter().enumerate() {
        let (is_active, until) = active(b, i, now)?;
        let value = nodes_value(b, i, total)?;
        evaluated.push((i, b, is_active, until, value));
    }
    for (i, b, is_active, until, value) in evaluated {
        if !b.applies_to(reason) || !is_active {
            continue;
        }
        if best.nodes.is_none_or(|n| value < n) {
            best = Allowed {
                nodes: Some(value),
                budget: Some(i),
                until,
            };
        }
    }
    Ok(best)
}

/// Every reason a budget can name, in Karpenter's order of methods.
pub const REASONS: [DisruptionReason; 3] = [
    DisruptionReason::Drifted,
    DisruptionReason::Empty,
    DisruptionReason::Underutilized,
];

/// How many more nodes each (pool, reason) may start disrupting now: allowed minus the nodes
/// already disrupting, floored at 0. Methods consume it as they pick candidates.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BudgetMap {
    remaining: BTreeMap<(String, DisruptionReason), u32>,
    /// Why a (pool, reason) has none left: for the kept-node reasons.
    pub detail: BTreeMap<(String, DisruptionReason), BudgetDetail>,
}

/// The numbers behind one (pool, reason) entry.
#[derive(Clone, Debug, PartialEq)]
pub struct BudgetDetail {
    /// What the budgets allow (before subtracting the disrupting nodes); `None` = unlimited.
    pub allowed: Option<u32>,
    /// Counted nodes of the pool.
    pub total: u32,
    /// Of those, not Ready or being deleted.
    pub disrupting: u32,
    /// The limiting budget and until when it is active.
    pub budget: Option<usize>,
    /// When the limiting budget stops being active.
    pub until: Option<Timestamp>,
    /// Set when a budget of the pool is invalid (everything is blocked).
    pub error: Option<String>,
}

/// Per-pool node counts for budgets: (total counted, disrupting).
pub type PoolCounts = BTreeMap<String, (u32, u32)>;

impl BudgetMap {
    /// Computes the map for every pool in `pools` (name → budgets) and every reason.
    pub fn new<'a>(
        pools: impl IntoIterator<Item = (&'a String, &'a [Budget])>,
        counts: &PoolCounts,
        now: Timestamp,
    ) -> BudgetMap {
        let mut map = BudgetMap::default();
        for (pool, budgets) in pools {
            let (total, disrupting) = counts.get(pool).copied().unwrap_or((0, 0));
            for reason in REASONS {
                let key = (pool.clone(), reason);
                match allowed(budgets, reason, total, now) {
                    Ok(a) => {
                        let remaining = a.nodes.map_or(u32::MAX, |n| n.saturating_sub(disrupting));
                        map.remaining.insert(key.clone(), remaining);
                        map.detail.insert(
                            key,
                            BudgetDetail {
                                allowed: a.nodes,
                                total,
                                disrupting,
                                budget: a.budget,
                                until: a.until,
                                error: None,
                            },
                        );
                    }
                    Err(e) => {
                        map.remaining.insert(key.clone(), 0);
                        map.detail.insert(
                            key,
                            BudgetDetail {
                                allowed: Some(0),
                                total,
                                disrupting,
                                budget: None,
                                until: None,
                                error: Some(e.to_string()),
                            },
                        );
                    }
                }
            }
        }
        map
    }

    /// Nodes of `pool` that may still start disrupting for `reason` (0 for an unknown pool).
    pub fn remaining(&self, pool: &str, reason: DisruptionReason) -> u32 {
        self.remaining
            .get(&(pool.to_owned(), reason))
            .copied()
            .unwrap_or(0)
    }

    /// Takes one node of `pool` for `reason`; false when none is left.
    pub fn take(&mut self, pool: &str, reason: DisruptionReason) -> bool {
        match self.remaining.get_mut(&(pool.to_owned(), reason)) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }

    /// The numbers behind an entry.
    pub fn detail(&self, pool: &str, reason: DisruptionReason) -> Option<&BudgetDetail> {
        self.detail.get(&(pool.to_owned(), reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::duration::GoDuration;

    fn budget(nodes: &str, schedule: Option<&str>, duration: Option<&str>) -> Budget {
        Budget {
            reasons: None,
            nodes: nodes.into(),
            schedule: schedule.map(Into::into),
            duration: duration.map(GoDuration::new),
        }
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn percentages_round_up_and_counts_are_literal() {
        assert_eq!(nodes_value(&budget("5%", None, None), 0, 10).unwrap(), 1);
        assert_eq!(nodes_value(&budget("50%", None, None), 0, 3).unwrap(), 2);
        assert_eq!(nodes_value(&budget("0%", None, None), 0, 30).unwrap(), 0);
        assert_eq!(nodes_value(&budget("100%", None, None), 0, 7).unwrap(), 7);
        assert_eq!(nodes_value(&budget("3", None, None), 0, 100).unwrap(), 3);
        assert!(nodes_value(&budget("101%", None, None), 0, 7).is_err());
        assert!(nodes_value(&budget("x", None, None), 0, 7).is_err());
    }

    #[test]
    fn a_scheduled_budget_is_active_for_its_duration_after_each_hit() {
        // Every day at 09:00 UTC for 8 hours.
        let b = budget("0", Some("0 9 * * *"), Some("8h"));
        let (on, until) = active(&b, 0, at("2026-12-07T09:00:00Z")).unwrap();
        assert!(on, "the hit instant itself is active");
        assert_eq!(until, Some(at("2026-12-07T17:00:00Z")));
        assert!(active(&b, 0, at("2026-12-07T16:59:59Z")).unwrap().0);
        assert!(!active(&b, 0, at("2026-12-07T17:00:00Z")).unwrap().0);
        assert!(!active(&b, 0, at("2026-12-07T08:59:59Z")).unwrap().0);
    }

    #[test]
    fn descriptors_parse_and_six_fields_do_not() {
        assert!(
            active(
                &budget("0", Some("@daily"), Some("1h")),
                0,
                at("2026-12-07T00:30:00Z")
            )
            .unwrap()
            .0
        );
        assert!(matches!(
            active(
                &budget("0", Some("0 0 9 * * *"), Some("1h")),
                0,
                at("2026-12-07T00:30:00Z")
            ),
            Err(BudgetError::Schedule { index: 0, .. })
        ));
        assert!(matches!(
            active(
                &budget("0", Some("@daily"), None),
                2,
                at("2026-12-07T00:30:00Z")
            ),
            Err(BudgetError::Duration { index: 2, .. })
        ));
    }

    #[test]
    fn the_smallest_active_applicable_budget_wins() {
        let mut drift_only = budget("0", None, None);
        drift_only.reasons = Some(vec![DisruptionReason::Drifted]);
        let budgets = vec![
            budget("20%", None, None),
            drift_only,
            // Inactive at the time below: unlimited, not 0.
            budget("0", Some("0 9 * * *"), Some("1h")),
        ];
        let now = at("2026-12-07T12:00:00Z");
        let a = allowed(&budgets, DisruptionReason::Underutilized, 10, now).unwrap();
        assert_eq!((a.nodes, a.budget), (Some(2), Some(0)));
        let d = allowed(&budgets, DisruptionReason::Drifted, 10, now).unwrap();
        assert_eq!((d.nodes, d.budget), (Some(0), Some(1)));
        let none = allowed(&[], DisruptionReason::Empty, 10, now).unwrap();
        assert_eq!(none.nodes, None);
    }

    #[test]
    fn one_invalid_budget_blocks_every_reason_and_disrupting_nodes_are_subtracted() {
        let pools = BTreeMap::from([
            (
                "bad".to_string(),
                vec![budget("10", None, None), budget("oops", None, None)],
            ),
            ("good".to_string(), vec![budget("3", None, None)]),
        ]);
        let counts = PoolCounts::from([("bad".into(), (10, 0)), ("good".into(), (10, 1))]);
        let mut map = BudgetMap::new(
            pools.iter().map(|(k, v)| (k, v.as_slice())),
            &counts,
            at("2026-12-07T12:00:00Z"),
        );
        for r in REASONS {
            assert_eq!(map.remaining("bad", r), 0);
            assert!(map.detail("bad", r).unwrap().error.is_some());
            assert_eq!(map.remaining("good", r), 2);
        }
        assert!(map.take("good", DisruptionReason::Empty));
        assert!(map.take("good", DisruptionReason::Empty));
        assert!(!map.take("good", DisruptionReason::Empty));
        assert_eq!(
            map.remaining("good", DisruptionReason::Drifted),
            2,
            "per reason"
        );
    }
}

//! Summaries as Karpenter exports them (client_golang's Summary): the quantiles 0, 0.5, 0.9,
//! 0.99 and 1 over the observations of the last ten minutes, and `_sum` and `_count` over all
//! of them. prometheus-client has no summary type, so this keeps the observations and writes
//! the text itself (see [`super::exposition`]).
//!
//! Quantiles here are exact over the window (client_golang estimates them within an error of
//! 0.05 at the median and 0.001 at p99); the window holds at most [`MAX_SAMPLES`] observations
//! per series, the newest.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::exposition::{format_value, label_set};

/// The quantiles Karpenter's summaries export (and the dashboards query).
pub const QUANTILES: [f64; 5] = [0.0, 0.5, 0.9, 0.99, 1.0];

/// How long an observation counts towards the quantiles (client_golang's default `MaxAge`).
pub const MAX_AGE: Duration = Duration::from_secs(600);

/// Observations kept per series for the quantiles; older ones drop out first.
pub const MAX_SAMPLES: usize = 10_000;

/// A summary family with label names fixed by `N`.
pub struct SummaryVec<const N: usize> {
    label_names: [&'static str; N],
    series: Mutex<BTreeMap<[String; N], Window>>,
}

/// One series: the recent observations and the running totals.
#[derive(Default)]
struct Window {
    recent: VecDeque<(Instant, f64)>,
    sum: f64,
    count: u64,
}

impl Window {
    fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.recent.front() {
            if now.saturating_duration_since(*at) > MAX_AGE {
                self.recent.pop_front();
            } else {
                break;
            }
        }
    }

    /// The quantiles of the recent observations; NaN when there are none (as client_golang).
    fn quantiles(&self) -> [f64; QUANTILES.len()] {
        let mut values: Vec<f64> = self.recent.iter().map(|(_, v)| *v).collect();
        values.sort_by(f64::total_cmp);
        QUANTILES.map(|q| quantile(&values, q))
    }
}

/// The `q` quantile of sorted `values`: the smallest value with at least `q` of them at or
/// below it (0 is the minimum, 1 the maximum).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.saturating_sub(1).min(sorted.len() - 1)]
}

impl<const N: usize> SummaryVec<N> {
    /// An empty family. An unlabelled summary (`N == 0`) exports its one series from the
    /// start, as client_golang does.
    pub fn new(label_names: [&'static str; N]) -> Self {
        let mut series = BTreeMap::new();
        if N == 0 {
            series.insert(std::array::from_fn(|_| String::new()), Window::default());
        }
        SummaryVec {
            label_names,
            series: Mutex::new(series),
        }
    }

    /// Records one observation of the series `values`, made at `now`.
    pub fn observe(&self, values: [&str; N], value: f64, now: Instant) {
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let w = series.entry(values.map(str::to_owned)).or_default();
        w.recent.push_back((now, value));
        if w.recent.len() > MAX_SAMPLES {
            w.recent.pop_front();
        }
        w.sum += value;
        w.count += 1;
    }

    /// Writes the family under `name` in the text format, quantiles as of `now`; nothing when
    /// it has no series.
    pub fn encode(&self, name: &str, help: &str, now: Instant, out: &mut String) {
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        if series.is_empty() {
            return;
        }
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} summary\n"));
        for (values, w) in series.iter_mut() {
            w.expire(now);
            let pairs = || {
                self.label_names
                    .iter()
                    .copied()
                    .zip(values.iter().map(String::as_str))
            };
            for (q, v) in QUANTILES.iter().zip(w.quantiles()) {
                let q = format_value(*q);
                let labels = label_set(pairs().chain([("quantile", q.as_str())]));
                out.push_str(&format!("{name}{labels} {}\n", format_value(v)));
            }
            let labels = label_set(pairs());
            out.push_str(&format!("{name}_sum{labels} {}\n", format_value(w.sum)));
            out.push_str(&format!("{name}_count{labels} {}\n", w.count));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, series: &str) -> Option<String> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map(str::to_owned)
    }

    #[test]
    fn quantiles_are_exact_over_the_window_and_totals_cover_everything() {
        let s = SummaryVec::new(["nodepool"]);
        let t0 = Instant::now();
        // 1..=100 s for pool a; one old observation of 1000 s that leaves the window.
        s.observe(["a"], 1000.0, t0);
        let later = t0 + MAX_AGE + Duration::from_secs(1);
        for v in 1..=100 {
            s.observe(["a"], f64::from(v), later);
        }
        let mut out = String::new();
        s.encode("x_seconds", "Help.", later, &mut out);
        let q = |q: &str| {
            sample(
                &out,
                &format!("x_seconds{{nodepool=\"a\",quantile=\"{q}\"}}"),
            )
        };
        assert_eq!(q("0").as_deref(), Some("1"), "{out}");
        assert_eq!(q("0.5").as_deref(), Some("50"));
        assert_eq!(q("0.9").as_deref(), Some("90"));
        assert_eq!(q("0.99").as_deref(), Some("99"));
        assert_eq!(
            q("1").as_deref(),
            Some("100"),
            "the old 1000 s left the window"
        );
        assert_eq!(
            sample(&out, "x_seconds_sum{nodepool=\"a\"}").as_deref(),
            Some("6050"),
            "the sum keeps every observation"
        );
        assert_eq!(
            sample(&out, "x_seconds_count{nodepool=\"a\"}").as_deref(),
            Some("101")
        );
        assert!(out.starts_with("# HELP x_seconds Help.\n# TYPE x_seconds summary\n"));
    }

    #[test]
    fn an_unlabelled_summary_is_exported_before_any_observation_with_nan_quantiles() {
        let s = SummaryVec::new([]);
        let mut out = String::new();
        s.encode("y", "Help.", Instant::now(), &mut out);
        assert_eq!(sample(&out, "y{quantile=\"0.5\"}").as_deref(), Some("NaN"));
        assert_eq!(sample(&out, "y_count").as_deref(), Some("0"));
        let labelled = SummaryVec::new(["nodepool"]);
        let mut out = String::new();
        labelled.encode("z", "Help.", Instant::now(), &mut out);
        assert_eq!(out, "", "a labelled family nobody observed is not exported");
    }

    #[test]
    fn the_window_keeps_the_newest_observations_when_full() {
        let s = SummaryVec::new([]);
        let now = Instant::now();
        for v in 0..(MAX_SAMPLES + 10) {
            s.observe([], v as f64, now);
        }
        let mut out = String::new();
        s.encode("w", "Help.", now, &mut out);
        assert_eq!(sample(&out, "w{quantile=\"0\"}").as_deref(), Some("10"));
        assert_eq!(
            sample(&out, "w_count").as_deref(),
            Some((MAX_SAMPLES + 10).to_string().as_str())
        );
    }
}

//! Per-object exponential backoff for failed reconciles, shared by the controllers: a failing
//! object is retried after 1 s, 2 s, 4 s, … up to 5 minutes, and starts over once a reconcile
//! succeeds, so one broken object neither spins nor holds the others back.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// First retry delay.
pub const BASE: Duration = Duration::from_secs(1);
/// Longest retry delay.
pub const MAX: Duration = Duration::from_secs(300);

/// The delay after `failures` consecutive failures (1 → [`BASE`]).
pub fn delay(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    BASE.saturating_mul(1 << exp).min(MAX)
}

/// Consecutive failures per object key.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// Records a failure of `key` and returns how long to wait before retrying it.
    pub fn failed(&self, key: &str) -> Duration {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(key.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        delay(*n)
    }

    /// Forgets the failures of `key`.
    pub fn succeeded(&self, key: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_reset_on_success() {
        let b = Backoff::default();
        let first: Vec<u64> = (0..4).map(|_| b.failed("a").as_secs()).collect();
        assert_eq!(first, [1, 2, 4, 8]);
        assert_eq!(b.failed("other"), BASE, "per object");
        for _ in 0..20 {
            b.failed("a");
        }
        assert_eq!(b.failed("a"), MAX);
        b.succeeded("a");
        assert_eq!(b.failed("a"), BASE);
    }
}

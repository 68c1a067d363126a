//! Evictions through the Eviction API (`policy/v1`, or `policy/v1beta1` on API servers before
//! 1.22), keyed by pod UID, with per-pod exponential backoff (100 ms → 10 s) while a
//! PodDisruptionBudget refuses (HTTP 429), as Karpenter's eviction queue.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube_client::Client;
use kube_client::api::PostParams;
use kube_client::core::Request;
use serde_json::json;

use super::drain::PodRef;

/// What the API server said to one eviction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Evicted {
    /// 2xx: the pod is being deleted.
    Yes,
    /// 404 (gone) or 409 (the UID precondition failed: a new pod reuses the name): nothing
    /// to do for this pod.
    Gone,
    /// 429: a PodDisruptionBudget does not allow it now; retry later.
    Blocked(String),
    /// Anything else; retry later.
    Failed(String),
}

impl Evicted {
    /// Classifies an HTTP status code (and message) of the Eviction API.
    pub fn from_code(code: u16, message: &str) -> Evicted {
        match code {
            200..=299 => Evicted::Yes,
            404 | 409 => Evicted::Gone,
            429 => Evicted::Blocked(message.to_owned()),
            _ => Evicted::Failed(format!("HTTP {code}: {message}")),
        }
    }
}

/// Posts an eviction for `pod` with a UID precondition, at `api_version` (`policy/v1` or
/// `policy/v1beta1`). Returns the outcome and the code for
/// `karpenter_nodes_eviction_requests_total`.
pub async fn evict(client: &Client, api_version: &str, pod: &PodRef) -> (Evicted, String) {
    let body = json!({
        "apiVersion": api_version,
        "kind": "Eviction",
        "metadata": {"name": pod.name, "namespace": pod.namespace},
        "deleteOptions": {"preconditions": {"uid": pod.uid}},
    });
    let path = format!(
        "/api/v1/namespaces/{}/pods/{}/eviction",
        pod.namespace, pod.name
    );
    let request = match serde_json::to_vec(&body)
        .map_err(|e| e.to_string())
        .and_then(|data| {
            Request::new(path)
                .create(&PostParams::default(), data)
                .map_err(|e| e.to_string())
        }) {
        Ok(r) => r,
        Err(e) => return (Evicted::Failed(e), "error".to_owned()),
    };
    match client.request::<serde_json::Value>(request).await {
        Ok(_) => (Evicted::Yes, "200".to_owned()),
        Err(kube_client::Error::Api(status)) => (
            Evicted::from_code(status.code, &status.message),
            status.code.to_string(),
        ),
        Err(e) => (Evicted::Failed(e.to_string()), "error".to_owned()),
    }
}

/// Per-pod retry times for evictions that were refused or failed, and the evictions in
/// flight (at most one per pod).
#[derive(Debug, Default)]
pub struct EvictionBackoff {
    pods: Mutex<HashMap<String, (u32, Instant)>>,
    in_flight: Mutex<HashSet<String>>,
}

/// First retry after a refusal.
pub const EVICTION_BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Longest wait between retries.
pub const EVICTION_BACKOFF_MAX: Duration = Duration::from_secs(10);

impl EvictionBackoff {
    /// Whether the pod with `uid` may be tried now.
    pub fn due(&self, uid: &str, now: Instant) -> bool {
        self.lock().get(uid).is_none_or(|(_, at)| now >= *at)
    }

    /// Records a refusal: the next try waits twice as long as the last (capped).
    pub fn refused(&self, uid: &str, now: Instant) -> Duration {
        let mut pods = self.lock();
        let entry = pods.entry(uid.to_owned()).or_insert((0, now));
        entry.0 = entry.0.saturating_add(1);
        let wait = EVICTION_BACKOFF_BASE
            .saturating_mul(1 << entry.0.saturating_sub(1).min(10))
            .min(EVICTION_BACKOFF_MAX);
        entry.1 = now + wait;
        wait
    }

    /// Marks an eviction of the pod with `uid` in flight; false if one already is.
    pub fn start(&self, uid: &str) -> bool {
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(uid.to_owned())
    }

    /// The eviction of the pod with `uid` has been answered.
    pub fn finish(&self, uid: &str) {
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(uid);
    }

    /// Forgets the pod (evicted or gone).
    pub fn forget(&self, uid: &str) {
        self.lock().remove(uid);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u32, Instant)>> {
        self.pods.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `namespace/name` of every PodDisruptionBudget that selects `pod` (the ones that can refuse
/// its eviction).
pub fn budgets_selecting(pod: &Pod, budgets: &[PodDisruptionBudget]) -> Vec<String> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
    let empty = BTreeMap::new();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    let mut names: Vec<String> = budgets
        .iter()
        .filter(|b| b.metadata.namespace.as_deref().unwrap_or("") == namespace)
        .filter(|b| {
            b.spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .is_some_and(|sel| selector_matches(sel, labels))
        })
        .map(|b| format!("{namespace}/{}", b.metadata.name.as_deref().unwrap_or("")))
        .collect();
    names.sort();
    names
}

/// Whether a label selector matches `labels` (an empty selector matches everything).
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_label = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_expression = selector.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or(&[]);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    by_label && by_expression
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_map_to_outcomes() {
        assert_eq!(Evicted::from_code(201, ""), Evicted::Yes);
        assert_eq!(Evicted::from_code(404, "not found"), Evicted::Gone);
        assert_eq!(Evicted::from_code(409, "uid mismatch"), Evicted::Gone);
        assert_eq!(
            Evicted::from_code(429, "Cannot evict pod"),
            Evicted::Blocked("Cannot evict pod".into())
        );
        assert!(matches!(Evicted::from_code(500, "x"), Evicted::Failed(_)));
    }

    #[test]
    fn refused_pods_back_off_exponentially_up_to_ten_seconds() {
        let b = EvictionBackoff::default();
        let t0 = Instant::now();
        assert!(b.due("u", t0));
        let waits: Vec<u128> = (0..3).map(|_| b.refused("u", t0).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400]);
        assert!(!b.due("u", t0 + Duration::from_millis(399)));
        assert!(b.due("u", t0 + Duration::from_millis(400)));
        for _ in 0..20 {
            b.refused("u", t0);
        }
        assert_eq!(b.refused("u", t0), EVICTION_BACKOFF_MAX);
        assert!(b.due("other", t0), "per pod");
        b.forget("u");
        assert!(b.due("u", t0));
    }

    #[test]
    fn one_eviction_in_flight_per_pod() {
        let b = EvictionBackoff::default();
        assert!(b.start("u"));
        assert!(
            !b.start("u"),
            "a second eviction waits for the first answer"
        );
        assert!(b.start("v"), "per pod");
        b.finish("u");
        assert!(b.start("u"));
    }

    #[test]
    fn budgets_are_matched_by_namespace_and_selector() {
        let pod: Pod = serde_yaml::from_str(
            "metadata: {name: web-1, namespace: shop, labels: {app: web, tier: front}}",
        )
        .unwrap();
        let budgets: Vec<PodDisruptionBudget> = serde_yaml::from_str(
            r#"
- metadata: {name: web, namespace: shop}
  spec: {selector: {matchLabels: {app: web}}}
- metadata: {name: other-ns, namespace: blog}
  spec: {selector: {matchLabels: {app: web}}}
- metadata: {name: fronts, namespace: shop}
  spec: {selector: {matchExpressions: [{key: tier, operator: In, values: [front]}]}}
- metadata: {name: backs, namespace: shop}
  spec: {selector: {matchExpressions: [{key: tier, operator: NotIn, values: [front]}]}}
- metadata: {name: no-selector, namespace: shop}
  spec: {}
"#,
        )
        .unwrap();
        assert_eq!(
            budgets_selecting(&pod, &budgets),
            ["shop/fronts", "shop/web"]
        );
    }
}

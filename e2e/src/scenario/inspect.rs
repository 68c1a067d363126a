//! Read-only queries the scenarios assert on, and failure summaries.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::events::v1::Event;
use karpenter_core::api::NodeClaim;
use karpenter_core::disruption::NOMINATION;
use karpenter_core::resources::parse_for_resource;
use karpenter_providers::aws::catalog::Catalog;
use kube_client::ResourceExt;
use kube_client::api::{Api, ListParams};

use super::{INSTANCE_TYPE, NODEPOOL};
use crate::harness::{Ctx, eventually, eventually_why, pod_running_ready};

/// The test namespace's pods that are Running and Ready.
pub async fn running_pods(ctx: &Ctx) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(ctx.kube.clone(), &ctx.id);
    pods.list(&ListParams::default())
        .await
        .map(|l| l.items.into_iter().filter(pod_running_ready).collect())
        .unwrap_or_default()
}

/// The test namespace's pods with label `app=<app>` (the pods of [`super::deploy`]'s `app`).
pub async fn pods_of(ctx: &Ctx, app: &str) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(ctx.kube.clone(), &ctx.id);
    api.list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

/// The NodeClaims of `pool`.
pub async fn claims_of(ctx: &Ctx, pool: &str) -> Vec<NodeClaim> {
    let api: Api<NodeClaim> = Api::all(ctx.kube.clone());
    api.list(&ListParams::default().labels(&format!("{NODEPOOL}={pool}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

/// The Nodes of `pool`.
pub async fn nodes_of(ctx: &Ctx, pool: &str) -> Vec<Node> {
    let api: Api<Node> = Api::all(ctx.kube.clone());
    api.list(&ListParams::default().labels(&format!("{NODEPOOL}={pool}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

/// The Node called `name`.
pub async fn node_named(ctx: &Ctx, name: &str) -> Node {
    let api: Api<Node> = Api::all(ctx.kube.clone());
    api.get(name).await.expect("get node")
}

/// The node a pod is bound to.
pub fn node_name(p: &Pod) -> Option<&str> {
    p.spec.as_ref().and_then(|s| s.node_name.as_deref())
}

/// A label's value.
pub fn label<'a>(o: &'a impl ResourceExt, key: &str) -> Option<&'a str> {
    o.labels().get(key).map(String::as_str)
}

/// A Node's cpu capacity in millicores.
pub fn node_cpu_millis(n: &Node) -> i64 {
    n.status
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("cpu"))
        .map(|q| parse_for_resource("cpu", &q.0).expect("node cpu parses"))
        .unwrap_or(0)
}

/// A NodeClaim's cpu capacity in millicores (0 before launch).
pub fn claim_cpu_millis(c: &NodeClaim) -> i64 {
    c.status
        .as_ref()
        .and_then(|s| s.capacity.get("cpu"))
        .map(|q| parse_for_resource("cpu", &q.0).expect("claim cpu parses"))
        .unwrap_or(0)
}

/// Initialized and Ready.
pub fn claim_ready(c: &NodeClaim) -> bool {
    c.status
        .as_ref()
        .is_some_and(|s| s.is_true("Initialized") && s.is_true("Ready"))
}

/// The claims of `pool` that are not Initialized, with their conditions and their node's
/// taints, for failure messages.
pub async fn stuck_claims(ctx: &Ctx, pool: &str) -> String {
    let nodes = nodes_of(ctx, pool).await;
    let mut out = Vec::new();
    for c in claims_of(ctx, pool).await {
        let status = c.status.clone().unwrap_or_default();
        if status.is_true("Initialized") {
            continue;
        }
        let conditions: Vec<String> = status
            .conditions
            .iter()
            .map(|c| format!("{}={}", c.type_, c.status))
            .collect();
        let taints: Option<Vec<String>> = status.node_name.as_deref().map(|name| {
            nodes
                .iter()
                .find(|n| n.name_any() == name)
                .and_then(|n| n.spec.as_ref()?.taints.clone())
                .unwrap_or_default()
                .iter()
                .map(|t| format!("{}:{}", t.key, t.effect))
                .collect()
        });
        out.push(format!(
            "{} ({:?}) node {:?} conditions {conditions:?} node taints {taints:?}",
            c.name_any(),
            label(&c, INSTANCE_TYPE),
            status.node_name
        ));
    }
    out.join("\n")
}

/// `FailedScheduling` events (events.k8s.io/v1, what kube-runtime's `Recorder` writes) in the
/// test namespace: (their notes, the total number of occurrences counting series).
pub async fn failed_scheduling(ctx: &Ctx) -> (Vec<String>, i32) {
    let api: Api<Event> = Api::namespaced(ctx.kube.clone(), &ctx.id);
    let events = api
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let mut notes = Vec::new();
    let mut total = 0;
    for e in events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("FailedScheduling"))
    {
        notes.push(e.note.clone().unwrap_or_default());
        total += e.series.as_ref().map_or(1, |s| s.count);
    }
    (notes, total)
}

/// A claim of `pool` holding all `want` pods of `app`, Running and Ready.
pub async fn claim_holding(ctx: &Ctx, pool: &str, app: &str, want: usize) -> NodeClaim {
    eventually(
        &format!("{want} {app} pods running on one nodeclaim of {pool}"),
        Duration::from_secs(120),
        || async {
            let pods = pods_of(ctx, app).await;
            let running: Vec<_> = pods.iter().filter(|p| pod_running_ready(p)).collect();
            if running.len() != want {
                return None;
            }
            let node = node_name(running[0])?.to_owned();
            if running.iter().any(|p| node_name(p) != Some(node.as_str())) {
                return None;
            }
            claims_of(ctx, pool).await.into_iter().find(|c| {
                c.status.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node.as_str())
            })
        },
    )
    .await
}

/// On-demand $/h of the nodes of `pool`, from the catalog the bed prices with.
pub async fn fleet_price(ctx: &Ctx, pool: &str) -> (f64, Vec<String>) {
    let catalog = Catalog::embedded();
    let prices: BTreeMap<&str, f64> = catalog
        .instance_types
        .iter()
        .map(|e| (e.name.as_str(), e.on_demand_price))
        .collect();
    let mut total = 0.0;
    let mut types = Vec::new();
    for n in nodes_of(ctx, pool).await {
        let t = label(&n, INSTANCE_TYPE).unwrap_or("").to_owned();
        total += prices.get(t.as_str()).copied().unwrap_or(0.0);
        types.push(t);
    }
    types.sort();
    (total, types)
}

/// A fleet that has settled: its $/h, its sorted instance types and when it last changed.
#[derive(Clone, Debug)]
pub struct SettledFleet {
    /// The fleet's on-demand $/h.
    pub price_per_hour: f64,
    /// The instance types of its nodes, sorted.
    pub types: Vec<String>,
    /// When the fleet was first seen as it ended (the end of the last launch or consolidation).
    pub since: Instant,
}

/// Waits (up to `timeout`, naming `what`) until the `replicas` pods of `app` are Running and
/// Ready, the pool's nodes are its claims with none being deleted (no launch or drain in
/// flight), `accept` takes the fleet's instance types, and the fleet has stayed the same for
/// `settled_for` after every node could be disrupted (several disruption passes that could have
/// acted did not). A node initialized less than [`NOMINATION`] ago is nominated, which keeps the
/// controller off it, so the quiet time only counts once the youngest node is past that.
pub async fn settled_fleet(
    ctx: &Ctx,
    pool: &str,
    (app, replicas): (&str, usize),
    (what, timeout, settled_for): (&str, Duration, Duration),
    accept: impl Fn(&[String]) -> Result<(), String>,
) -> SettledFleet {
    let claims: Api<NodeClaim> = Api::all(ctx.kube.clone());
    let stable: std::sync::Mutex<Option<(Instant, Vec<String>)>> = Default::default();
    eventually_why(what, timeout, || async {
        let all = claims
            .list(&Default::default())
            .await
            .map_err(|e| format!("listing claims: {e}"))?
            .items;
        let ours: Vec<&NodeClaim> = all
            .iter()
            .filter(|c| label(*c, NODEPOOL) == Some(pool))
            .collect();
        let deleting: Vec<&str> = ours
            .iter()
            .filter(|c| c.metadata.deletion_timestamp.is_some())
            .filter_map(|c| c.metadata.name.as_deref())
            .collect();
        if !deleting.is_empty() {
            return Err(format!("claims being deleted: {deleting:?}"));
        }
        let pods = pods_of(ctx, app).await;
        let running = pods.iter().filter(|p| pod_running_ready(p)).count();
        if pods.len() != replicas || running != replicas {
            return Err(format!(
                "{} {app} pods, {running} Running and Ready",
                pods.len()
            ));
        }
        let (price, types) = fleet_price(ctx, pool).await;
        let fits = if types.len() == ours.len() {
            accept(&types)
        } else {
            Err(format!("{} nodes for {} claims", types.len(), ours.len()))
        };
        if let Err(why) = fits {
            *stable.lock().unwrap() = None;
            return Err(format!("{why}: nodes {types:?} (${price:.4}/h)"));
        }
        let mut last = stable.lock().unwrap();
        let since = match &*last {
            Some((since, seen)) if *seen == types => *since,
            _ => {
                *last = Some((Instant::now(), types.clone()));
                return Err(format!("fleet changed to {types:?}"));
            }
        };
        // Quiet time counts from the fleet's last change or the end of the youngest node's
        // nomination, whichever is later.
        let mut quiet = since.elapsed();
        for claim in &ours {
            match nomination_ended(claim) {
                Some(Ok(ago)) => quiet = quiet.min(ago),
                Some(Err(left)) => {
                    return Err(format!(
                        "fleet {types:?} unchanged, a node nominated for another {left:.0?}"
                    ));
                }
                None => return Err(format!("{} not initialized", claim.name_any())),
            }
        }
        if quiet < settled_for {
            return Err(format!("fleet {types:?} unchanged for {quiet:.0?}"));
        }
        Ok(SettledFleet {
            price_per_hour: price,
            types,
            since,
        })
    })
    .await
}

/// How long ago the claim's node stopped being nominated ([`NOMINATION`] after its
/// `Initialized` condition), or (`Err`) how long it still is; `None` before it is initialized.
fn nomination_ended(claim: &NodeClaim) -> Option<Result<Duration, Duration>> {
    let initialized = claim
        .status
        .as_ref()?
        .condition("Initialized")
        .filter(|c| c.status == "True")?;
    let until = initialized.last_transition_time.0 + NOMINATION;
    let ago = k8s_openapi::jiff::Timestamp::now().duration_since(until);
    Some(match Duration::try_from(ago) {
        Ok(ago) => Ok(ago),
        Err(_) => Err(Duration::try_from(-ago).unwrap_or_default()),
    })
}

/// The sum of the samples of metric `name` whose labels contain every one of `labels`
/// (`key="value"` strings), in a text exposition.
pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = match series.split_once('{') {
                Some((m, rest)) => (m, rest),
                None => (series, ""),
            };
            (metric == name && labels.iter().all(|want| rest.contains(want)))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::metric_sum;

    #[test]
    fn metric_sum_adds_matching_series_only() {
        let text = "# TYPE x counter\nx_total{a=\"1\",b=\"2\"} 3\nx_total{a=\"1\",b=\"3\"} 4\nx_total{a=\"2\"} 100\ny 7\n# EOF\n";
        assert_eq!(metric_sum(text, "x_total", &["a=\"1\""]), 7.0);
        assert_eq!(metric_sum(text, "x_total", &[]), 107.0);
        assert_eq!(metric_sum(text, "y", &[]), 7.0);
        assert_eq!(metric_sum(text, "z", &[]), 0.0);
    }
}

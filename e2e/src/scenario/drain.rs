//! Building blocks of the termination scenarios: PodDisruptionBudgets, a recorder of what the
//! API server did to the test's pods (ready counts throughout, the order pods started
//! terminating), instance states, and Events by reason.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use karpenter_core::api::NodeClaim;
use kube_client::api::{Api, DynamicObject, ListParams, PostParams};
use kube_client::core::{ApiResource, GroupVersionKind};
use kube_client::discovery;
use kube_client::runtime::watcher;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::harness::{Ctx, pod_running_ready};

/// Creates PodDisruptionBudget `name` for the pods labelled `app=<app>` in the test
/// namespace, with `spec` (e.g. `{"maxUnavailable": 1}`) plus the selector, at the newest
/// version the server serves (`policy/v1beta1` on the local 1.20 bed).
pub async fn create_pdb(ctx: &Ctx, name: &str, app: &str, mut spec: Value) -> ApiResource {
    let mut resource = None;
    for version in ["v1", "v1beta1"] {
        let gvk = GroupVersionKind::gvk("policy", version, "PodDisruptionBudget");
        if let Ok((r, _)) = discovery::pinned_kind(&ctx.kube, &gvk).await {
            resource = Some(r);
            break;
        }
    }
    let resource = resource.expect("the API server serves PodDisruptionBudgets");
    spec["selector"] = json!({"matchLabels": {"app": app}});
    let mut pdb = DynamicObject::new(name, &resource).within(&ctx.id);
    pdb.data = json!({ "spec": spec });
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.kube.clone(), &ctx.id, &resource);
    api.create(&PostParams::default(), &pdb)
        .await
        .expect("create PodDisruptionBudget");
    resource
}

/// `status.disruptionsAllowed` of PodDisruptionBudget `name`, once the disruption controller
/// has computed it.
pub async fn pdb_disruptions_allowed(ctx: &Ctx, resource: &ApiResource, name: &str) -> Option<i64> {
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.kube.clone(), &ctx.id, resource);
    let pdb = api.get(name).await.ok()?;
    pdb.data.get("status")?.get("disruptionsAllowed")?.as_i64()
}

/// What the recorder saw.
#[derive(Debug, Default)]
pub struct PodLog {
    /// Pods in the order the API server marked them terminating (watch order is the
    /// server's write order), with when the recorder saw it.
    pub terminations: Vec<(String, Instant)>,
    /// Per `app` label: pods Ready and not terminating, now.
    pub ready: BTreeMap<String, usize>,
    /// Per `app` label: the fewest ready pods seen since [`PodWatch::arm`].
    pub min_ready: BTreeMap<String, usize>,
    armed: bool,
    pods: BTreeMap<String, (String, bool)>,
    terminating: BTreeSet<String>,
}

impl PodLog {
    fn update(&mut self, pod: &Pod, deleted: bool) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let app = pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("app"))
            .cloned()
            .unwrap_or_default();
        let terminating = deleted || pod.metadata.deletion_timestamp.is_some();
        if terminating && self.terminating.insert(name.clone()) {
            self.terminations.push((name.clone(), Instant::now()));
        }
        if deleted {
            self.pods.remove(&name);
        } else {
            let ready = !terminating && pod_running_ready(pod);
            self.pods.insert(name, (app, ready));
        }
        self.recount();
    }

    fn recount(&mut self) {
        let mut ready: BTreeMap<String, usize> = BTreeMap::new();
        for (app, is_ready) in self.pods.values() {
            let n = ready.entry(app.clone()).or_insert(0);
            if *is_ready {
                *n += 1;
            }
        }
        if self.armed {
            for (app, n) in &ready {
                let min = self.min_ready.entry(app.clone()).or_insert(*n);
                *min = (*min).min(*n);
            }
        }
        self.ready = ready;
    }

    /// Names of the pods that started terminating, in order.
    pub fn termination_order(&self) -> Vec<String> {
        self.terminations.iter().map(|(n, _)| n.clone()).collect()
    }

    /// When `pod` was first seen terminating.
    pub fn terminated_at(&self, pod: &str) -> Option<Instant> {
        self.terminations
            .iter()
            .find(|(n, _)| n == pod)
            .map(|(_, at)| *at)
    }
}

/// Watches the test namespace's pods in the background and keeps a [`PodLog`].
pub struct PodWatch {
    log: Arc<Mutex<PodLog>>,
    task: JoinHandle<()>,
}

impl PodWatch {
    /// Starts watching the test namespace.
    pub fn start(ctx: &Ctx) -> PodWatch {
        let log = Arc::new(Mutex::new(PodLog::default()));
        let api: Api<Pod> = Api::namespaced(ctx.kube.clone(), &ctx.id);
        let shared = log.clone();
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(watcher::watcher(api, watcher::Config::default()));
            while let Some(event) = stream.next().await {
                let Ok(event) = event else { continue };
                let mut log = shared.lock().unwrap();
                match event {
                    watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                        log.update(&p, false)
                    }
                    watcher::Event::Delete(p) => log.update(&p, true),
                    watcher::Event::Init | watcher::Event::InitDone => {}
                }
            }
        });
        PodWatch { log, task }
    }

    /// From now on, track the fewest ready pods per app (starting from the current counts).
    pub fn arm(&self) {
        let mut log = self.log.lock().unwrap();
        log.armed = true;
        log.min_ready = log.ready.clone();
    }

    /// Reads the log.
    pub fn read<T>(&self, f: impl FnOnce(&PodLog) -> T) -> T {
        f(&self.log.lock().unwrap())
    }
}

impl Drop for PodWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `State.Name` of an instance (`running`, `shutting-down`, `terminated`, …).
pub async fn instance_state(ctx: &Ctx, id: &str) -> Option<String> {
    let out = ctx
        .ec2
        .describe_instances()
        .instance_ids(id)
        .send()
        .await
        .ok()?;
    out.reservations()
        .iter()
        .flat_map(|r| r.instances())
        .find_map(|i| i.state()?.name().map(|n| n.as_str().to_owned()))
}

/// True for an instance that is gone or going.
pub fn instance_gone(state: Option<String>) -> bool {
    matches!(
        state.as_deref(),
        None | Some("shutting-down" | "terminated")
    )
}

/// The EC2 instance id of a launched claim.
pub fn instance_id(claim: &NodeClaim) -> Option<String> {
    let id = claim.status.as_ref()?.provider_id.as_deref()?;
    Some(id.rsplit('/').next()?.to_owned())
}

/// The notes of every Event with `reason` about objects named `regarding` (any kind).
pub async fn event_notes(
    ctx: &Ctx,
    namespace: Option<&str>,
    reason: &str,
    regarding: &str,
) -> Vec<String> {
    let api: Api<Event> = match namespace {
        Some(ns) => Api::namespaced(ctx.kube.clone(), ns),
        None => Api::all(ctx.kube.clone()),
    };
    api.list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(regarding))
        .filter_map(|e| e.note)
        .collect()
}

/// Polls until `check` holds, returning how long it took (for reported figures).
pub async fn time_until<F, Fut>(what: &str, timeout: Duration, check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<()>>,
{
    let started = Instant::now();
    crate::harness::eventually(what, timeout, check).await;
    started.elapsed()
}

//! The kubelet's pod side: pods bound to a simulated, Ready node are reported Running/Ready;
//! terminating ones are deleted with grace period 0 (their containers "stopped"). DaemonSet
//! pods are no different. A NotReady node's pods are left as they are, as a dead kubelet would.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube_client::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube_client::runtime::WatchStreamExt;
use kube_client::runtime::reflector::{self, Store};
use kube_client::runtime::watcher::{self, Event};
use kube_client::{Api, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use super::runtime::{NodeEntry, pod_cidr};
use super::{Shared, SimConfig};

/// What the kubelet does with a pod bound to its node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodAction {
    /// Nothing to do (already Running/Ready, or finished).
    Nothing,
    /// Start it: post Running/Ready status.
    Start,
    /// It is terminating: delete it for good (grace period 0).
    Delete,
}

/// Decides what a kubelet does with `pod` (which is bound to one of its Ready nodes).
pub fn pod_action(pod: &Pod) -> PodAction {
    if pod.metadata.deletion_timestamp.is_some() {
        return PodAction::Delete;
    }
    let status = pod.status.as_ref();
    match status.and_then(|s| s.phase.as_deref()) {
        Some("Succeeded" | "Failed") => return PodAction::Nothing,
        Some("Running") => {}
        _ => return PodAction::Start,
    }
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let has_ip = status
        .and_then(|s| s.pod_ip.as_deref())
        .is_some_and(|ip| !ip.is_empty());
    if ready && has_ip {
        PodAction::Nothing
    } else {
        PodAction::Start
    }
}

/// The `status` a kubelet posts for a started pod: Running, all conditions True, every
/// container running (init containers completed).
pub fn running_status(pod: &Pod, host_ip: Option<&str>, pod_ip: &str, now: Timestamp) -> Value {
    let now_s = now.to_string();
    let uid = pod.metadata.uid.as_deref().unwrap_or("0").replace('-', "");
    let spec = pod.spec.as_ref();
    let start_time = pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(|t| t.0.to_string())
        .unwrap_or_else(|| now_s.clone());
    let container = |i: usize, name: &str, image: &str, state: Value| {
        json!({
            "name": name,
            "image": image,
            "imageID": format!("{image}@sha256:{uid:0<64.64}"),
            "containerID": format!("containerd://{uid}{i:04}"),
            "ready": true,
            "started": true,
            "restartCount": 0,
            "state": state,
        })
    };
    let containers: Vec<Value> = spec
        .map(|s| s.containers.as_slice())
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let image = c.image.as_deref().unwrap_or_default();
            container(
                i,
                &c.name,
                image,
                json!({ "running": { "startedAt": now_s } }),
            )
        })
        .collect();
    let init: Vec<Value> = spec
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let image = c.image.as_deref().unwrap_or_default();
            let done = json!({ "terminated": {
                "exitCode": 0, "reason": "Completed", "startedAt": now_s, "finishedAt": now_s,
            }});
            container(1000 + i, &c.name, image, done)
        })
        .collect();
    let condition = |t: &str| json!({ "type": t, "status": "True", "lastTransitionTime": now_s, "lastProbeTime": null });
    let conditions = ["Initialized", "Ready", "ContainersReady", "PodScheduled"].map(condition);
    let mut status = json!({
        "phase": "Running",
        "conditions": conditions,
        "podIP": pod_ip,
        "podIPs": [{ "ip": pod_ip }],
        "startTime": start_time,
        "containerStatuses": containers,
    });
    if let Some(ip) = host_ip {
        status["hostIP"] = json!(ip);
    }
    if !init.is_empty() {
        status["initContainerStatuses"] = json!(init);
    }
    json!({ "status": status })
}

/// The pod's IP: the host's for hostNetwork pods, else the one it has, else a free address of
/// the node's block (remembered until the pod is deleted).
pub(crate) fn assign_ip(config: &SimConfig, node: &mut NodeEntry, pod: &Pod) -> Option<String> {
    if pod.spec.as_ref().and_then(|s| s.host_network) == Some(true) {
        return node.host_ip.clone();
    }
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let (base, prefix) = pod_cidr(config, node.cidr_index?);
    let size = 1u32 << (32 - prefix);
    let base = u32::from(base);
    if let Some(ip) = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .filter(|ip| !ip.is_empty())
    {
        if let Ok(addr) = ip.parse::<Ipv4Addr>()
            && let Some(offset) = u32::from(addr).checked_sub(base).filter(|o| *o < size)
        {
            node.pod_ips.insert(offset, uid);
        }
        return Some(ip.to_string());
    }
    if let Some((offset, _)) = node.pod_ips.iter().find(|(_, u)| **u == uid) {
        return Some(Ipv4Addr::from(base + offset).to_string());
    }
    // Round-robin over .1 … .(size-2), skipping addresses in use.
    let usable = size - 2;
    for step in 1..=usable {
        let offset = (node.ip_cursor + step - 1) % usable + 1;
        if !node.pod_ips.contains_key(&offset) {
            node.ip_cursor = offset;
            node.pod_ips.insert(offset, uid);
            return Some(Ipv4Addr::from(base + offset).to_string());
        }
    }
    None
}

fn release_ip(shared: &Shared, pod: &Pod) {
    let (Some(node), Some(uid)) = (
        pod.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        pod.metadata.uid.as_deref(),
    ) else {
        return;
    };
    let mut state = shared.lock();
    if let Some(n) = state.node_by_name_mut(node) {
        n.pod_ips.retain(|_, u| u != uid);
    }
}

/// Watches bound pods and acts on those of the simulator's Ready nodes, until shutdown.
pub(crate) async fn run(
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    mut resync_rx: mpsc::UnboundedReceiver<String>,
) {
    let api: Api<Pod> = Api::all(shared.kube.clone());
    let (reader, writer) = reflector::store();
    let config = watcher::Config::default().fields("spec.nodeName!=");
    let mut events = watcher::watcher(api, config)
        .default_backoff()
        .reflect(writer)
        .boxed();
    let mut resync = tokio::time::interval(shared.config.pod_resync_interval);
    let mut inflight: FuturesUnordered<BoxFuture<'static, String>> = FuturesUnordered::new();
    let mut busy: HashSet<String> = HashSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            event = events.next() => match event {
                Some(Ok(Event::Apply(pod) | Event::InitApply(pod))) => {
                    consider(&shared, &pod, &mut inflight, &mut busy);
                }
                Some(Ok(Event::Delete(pod))) => release_ip(&shared, &pod),
                Some(Ok(Event::Init | Event::InitDone)) => {}
                Some(Err(e)) => tracing::warn!(error = %e, "node-sim: pod watch error"),
                None => return,
            },
            Some(node) = resync_rx.recv() => {
                for pod in pods_on(&reader, Some(&node)) {
                    consider(&shared, &pod, &mut inflight, &mut busy);
                }
            }
            _ = resync.tick() => {
                for pod in pods_on(&reader, None) {
                    consider(&shared, &pod, &mut inflight, &mut busy);
                }
            }
            Some(uid) = inflight.next(), if !inflight.is_empty() => {
                busy.remove(&uid);
            }
        }
    }
}

fn pods_on(reader: &Store<Pod>, node: Option<&str>) -> Vec<Arc<Pod>> {
    reader.state_filter(|p| {
        let bound = p.spec.as_ref().and_then(|s| s.node_name.as_deref());
        bound.is_some() && (node.is_none() || bound == node)
    })
}

/// Queues the kubelet's action for `pod`, unless one is already in flight for it.
fn consider(
    shared: &Arc<Shared>,
    pod: &Pod,
    inflight: &mut FuturesUnordered<BoxFuture<'static, String>>,
    busy: &mut HashSet<String>,
) {
    let Some(node_name) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
        return;
    };
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    if busy.contains(&uid) {
        return;
    }
    let action = pod_action(pod);
    if action == PodAction::Nothing {
        return;
    }
    let (host_ip, pod_ip) = {
        let mut state = shared.lock();
        let Some(node) = state.node_by_name_mut(node_name) else {
            return;
        };
        if !node.runs_pods(Instant::now()) {
            return;
        }
        let pod_ip = match action {
            PodAction::Start => match assign_ip(&shared.config, node, pod) {
                Some(ip) => Some(ip),
                None => {
                    tracing::warn!(node = %node_name, pod = %pod.name_any(), "node-sim: no pod IP left");
                    return;
                }
            },
            _ => None,
        };
        (node.host_ip.clone(), pod_ip)
    };
    let ns = pod.namespace().unwrap_or_else(|| "default".into());
    let api: Api<Pod> = Api::namespaced(shared.kube.clone(), &ns);
    let name = pod.name_any();
    busy.insert(uid.clone());
    let fut = match (action, pod_ip) {
        (PodAction::Start, Some(ip)) => {
            let patch = running_status(pod, host_ip.as_deref(), &ip, Timestamp::now());
            async move {
                let r = api
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await;
                match r {
                    Ok(_) => {}
                    Err(kube_client::Error::Api(s)) if s.is_not_found() => {}
                    Err(e) => tracing::warn!(pod = %name, error = %e, "node-sim: pod status update failed (will retry)"),
                }
                uid
            }
            .boxed()
        }
        _ => {
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(uid.clone()),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            async move {
                match api.delete(&name, &dp).await {
                    Ok(_) => {}
                    Err(kube_client::Error::Api(s)) if s.is_not_found() || s.is_conflict() => {}
                    Err(e) => tracing::warn!(pod = %name, error = %e, "node-sim: pod delete failed (will retry)"),
                }
                uid
            }
            .boxed()
        }
    };
    inflight.push(fut);
}

#[cfg(test)]
mod tests;

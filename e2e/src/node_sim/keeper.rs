//! The node keeper: each node's Ready condition, status heartbeat and Lease, as its knobs say.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use kube_client::Api;
use kube_client::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::watch;

use super::node::{self, ReadyStatus};
use super::runtime::{LEASE_NAMESPACE, NodeEntry};
use super::{Shared, SimError};

/// One unit of keeper work for a node.
struct KeeperJob {
    name: String,
    uid: String,
    post_status: Option<(ReadyStatus, Timestamp)>,
    renew_lease: bool,
}

/// Keeps every node's Ready condition and Lease as its knobs say, until shutdown.
pub(crate) async fn run_keeper(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    loop {
        keep_once(&shared).await;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = shared.wake_keeper.notified() => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn keep_once(shared: &Arc<Shared>) {
    let now = Instant::now();
    let cfg = &shared.config;
    let jobs: Vec<KeeperJob> = {
        let state = shared.lock();
        state
            .instances
            .values()
            .filter_map(|t| t.node.as_ref())
            .filter(|n| !n.gone)
            .filter_map(|n| {
                let target = n.target(now);
                let changed = target != n.reported;
                // A silent kubelet posts nothing after its one Unknown.
                let heartbeat = target != ReadyStatus::Unknown
                    && now >= n.last_status + cfg.status_update_interval;
                let post_status = (changed || heartbeat).then(|| {
                    let since = if changed {
                        Timestamp::now()
                    } else {
                        n.reported_since
                    };
                    (target, since)
                });
                let renew_lease = n.renews_lease()
                    && n.last_lease
                        .is_none_or(|l| now >= l + cfg.lease_renew_interval);
                (post_status.is_some() || renew_lease).then(|| KeeperJob {
                    name: n.name.clone(),
                    uid: n.uid.clone(),
                    post_status,
                    renew_lease,
                })
            })
            .collect()
    };
    stream::iter(jobs)
        .for_each_concurrent(cfg.concurrency.max(1), |job| async move {
            let status = match job.post_status {
                Some((ready, since)) => Some(
                    post_status(shared, &job.name, ready, since)
                        .await
                        .map(|()| (ready, since)),
                ),
                None => None,
            };
            let lease = if job.renew_lease {
                Some(renew_lease(shared, &job.name, &job.uid).await)
            } else {
                None
            };
            let mut state = shared.lock();
            let Some(n) = state.node_by_name_mut(&job.name) else {
                return;
            };
            let became_ready = match status {
                Some(Ok((ready, since))) => {
                    let became = ready == ReadyStatus::True && n.reported != ReadyStatus::True;
                    n.reported = ready;
                    n.reported_since = since;
                    n.last_status = Instant::now();
                    became
                }
                Some(Err(e)) => {
                    keeper_error(n, "status", e);
                    false
                }
                None => false,
            };
            match lease {
                Some(Ok(())) => n.last_lease = Some(Instant::now()),
                Some(Err(e)) => keeper_error(n, "lease", e),
                None => {}
            }
            if became_ready {
                // Pods bound while it was NotReady are started now.
                let _ = shared.pod_resync.send(job.name.clone());
            }
        })
        .await;
}

fn keeper_error(n: &mut NodeEntry, what: &str, e: SimError) {
    // Both the status patch and the lease renewal report a missing Node as not found.
    if let SimError::Kube(kube_client::Error::Api(s)) = &e
        && s.is_not_found()
    {
        tracing::info!(node = %n.name, "node-sim: node deleted by someone else; leaving it");
        n.gone = true;
        return;
    }
    tracing::warn!(node = %n.name, error = %e, "node-sim: {what} update failed (will retry)");
}

/// Posts the node's conditions (merge patch of `/status`).
async fn post_status(
    shared: &Shared,
    name: &str,
    ready: ReadyStatus,
    since: Timestamp,
) -> Result<(), SimError> {
    let api: Api<Node> = Api::all(shared.kube.clone());
    let patch =
        json!({ "status": { "conditions": node::conditions(ready, Timestamp::now(), since) } });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// Renews (or creates) the node's Lease, owned by the Node as the kubelet does it.
async fn renew_lease(shared: &Shared, name: &str, uid: &str) -> Result<(), SimError> {
    let api: Api<Lease> = Api::namespaced(shared.kube.clone(), LEASE_NAMESPACE);
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(Timestamp::now());
    let patch = json!({ "spec": { "holderIdentity": name, "renewTime": now } });
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube_client::Error::Api(s)) if s.is_not_found() => {
            // No lease for a deleted Node (its owner reference would only get it collected).
            let nodes: Api<Node> = Api::all(shared.kube.clone());
            nodes.get(name).await?;
            let lease: Lease = serde_json::from_value(json!({
                "metadata": {
                    "name": name,
                    "namespace": LEASE_NAMESPACE,
                    "ownerReferences": [{
                        "apiVersion": "v1", "kind": "Node", "name": name, "uid": uid,
                    }],
                },
                "spec": {
                    "holderIdentity": name,
                    "leaseDurationSeconds": shared.config.lease_duration_seconds,
                    "renewTime": now,
                },
            }))
            .map_err(|e| SimError::Task(format!("lease object: {e}")))?;
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(()),
                // Raced with another renewal: the next one patches it.
                Err(kube_client::Error::Api(s)) if s.is_already_exists() => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

//! The NodePool status controller: reads and validates every NodePool (the local API server
//! has no CEL, so the controller enforces Karpenter's CRD rules, as core's validation
//! reports them) and writes its `ValidationSucceeded` and `Ready` conditions. A pool that
//! does not read or validate also gets a Warning Event, so `kubectl describe nodepool` says
//! why the provisioner leaves it out, not only the controller's log.

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::jiff::Timestamp;
use kube_client::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube_client::runtime::events::EventType;
use kube_client::{Client, Resource};
use serde_json::json;

use crate::controllers::conditions::guarded_status_patch;
use crate::controllers::events::{Events, Note};
use crate::model::ClusterState;
use crate::model::objects;

mod decide;

pub use decide::{OWNED, PoolStatus, READY, VALIDATION_FAILED, decide};

/// How often every pool is looked at without a change (a safety net for missed changes).
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(60);

/// Least time between two Warning events about the same invalid pool: the problem is in the
/// pool's conditions all along, the event is the nudge.
pub const EVENT_FLOOR: Duration = Duration::from_secs(600);

/// Runs until the process ends: every pool at start, on each NodePool change and every
/// [`RESYNC_INTERVAL`].
pub async fn run(client: Client, state: ClusterState, events: Arc<Events>) {
    let res = objects::node_pool_resource();
    // The change broadcast, not a Notify: the NodePool watch pokes `capacity_changed`, which
    // Node and NodeClaim changes poke too, and a Notify wakes one waiter only.
    let mut changes = std::pin::pin!(state.node_pools.changes().fuse());
    loop {
        for obj in state.node_pools.state() {
            reconcile_one(&client, &res, &events, &obj).await;
        }
        tokio::select! {
            Some(_) = changes.next() => {
                // One pass covers a burst of changes (including our own status writes).
                while let Some(Some(_)) = changes.next().now_or_never() {}
            }
            _ = tokio::time::sleep(RESYNC_INTERVAL) => {}
        }
    }
}

async fn reconcile_one(client: &Client, res: &ApiResource, events: &Events, obj: &DynamicObject) {
    let name = obj.metadata.name.clone().unwrap_or_default();
    let decided = decide(obj, Timestamp::now());
    if !decided.problems.is_empty() {
        let message = decided.message();
        // Logged when the status changes; the event repeats, with its floor, while it lasts.
        if decided.changed {
            tracing::warn!(nodepool = %name, problems = %message, "NodePool is not valid");
        }
        let note = Note {
            type_: EventType::Warning,
            reason: VALIDATION_FAILED,
            action: "Validation",
            message,
        };
        events
            .publish(&obj.object_ref(res), note, EVENT_FLOOR)
            .await;
    }
    if !decided.changed {
        return;
    }
    // Only `conditions`: a merge patch leaves the rest of the status (resources) alone.
    // Guarded: a write from a stale read is refused, and the watch brings the newer pool.
    let patch = guarded_status_patch(&obj.metadata, &json!({"conditions": decided.conditions}));
    // Through the body's own version: see `node_pool_resource_for`.
    let api: Api<DynamicObject> =
        Api::all_with(client.clone(), &objects::node_pool_resource_for(obj));
    if let Err(e) = api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        tracing::warn!(nodepool = %name, error = %e, "writing NodePool status");
    }
}

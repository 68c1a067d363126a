//! The controllers. Each reads the shared cluster model ([`crate::model`]), decides in a pure
//! function (its `decide` module, tested without a cluster) and does the I/O apart; each field
//! of each object has one writer:
//!
//! | controller | the only writer of |
//! |---|---|
//! | [`provisioner`] | new NodeClaims; `Nominated` / `FailedScheduling` events |
//! | [`lifecycle`] | NodeClaim `Launched`/`Registered`/`Initialized`/`Ready`; Node labels and taints from the claim |
//! | [`gc`] | termination of instances no claim accounts for; deletion of claims whose instance is gone |
//! | [`termination`] | evictions, the disrupted taint on nodes being deleted, instance termination, termination finalizers, `InstanceTerminating` |
//! | [`disruption`] | replacement NodeClaims; deletion of disrupted NodeClaims; the disrupted taint on candidates not yet deleted; NodeClaim `DisruptionReason` |
//! | [`nodeclass_status`] | EC2NodeClass status |
//! | [`nodepool_status`] | NodePool `ValidationSucceeded` / `Ready` conditions; `ValidationFailed` events |
//! | [`claim_disruption`] | NodeClaim `Consolidatable` / `Drifted` conditions and `status.lastPodEventTime` |
//! | [`interruption`] | deletion of NodeClaims an interruption message dooms; the interruption events (`SpotInterrupted`, `TerminatingOnInterruption`, …); interrupted spot offerings in the provider's unavailable cache |
//! | [`cluster_metrics`] | the node, pod and NodePool gauges of the dashboards (`karpenter_nodes_allocatable`, `_total_pod_requests`, `_total_daemon_requests`, `karpenter_pods_state`, `karpenter_nodepools_usage`/`_limit`, `karpenter_cluster_state_node_count`) |
//! | [`expiration`] | deletion of expired NodeClaims (`expireAfter` passed; forceful, unbudgeted) |
//! | [`claim_migration`] | the spec and metadata of NodeClaims Karpenter 0.3x left with a v1beta1 body (rewritten once as v1) |
//! | [`hash`] | the NodePool / EC2NodeClass hash and hash-version annotations, on the pools and classes and on NodeClaims (rewritten only when the claim's version is not current) |

use std::time::Duration;

use futures::Stream;

pub mod backoff;
pub mod claim_delete;
pub mod claim_disruption;
pub mod claim_migration;
pub mod cluster_metrics;
pub mod conditions;
pub mod disruption;
pub mod events;
pub mod expiration;
pub mod gc;
pub mod hash;
pub mod interruption;
pub mod lifecycle;
pub mod nodeclass_status;
pub mod nodepool_status;
pub mod provisioner;
pub mod termination;

/// How often a controller reconciles every object without an event (a safety net for missed
/// changes).
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(300);

/// A tick now and every [`RESYNC_INTERVAL`] after: the `reconcile_all_on` trigger of the
/// controllers, so everything in the shared model is looked at when a controller starts.
pub fn resync_ticks() -> impl Stream<Item = ()> + Send + 'static {
    futures::stream::unfold(true, |first| async move {
        if !first {
            tokio::time::sleep(RESYNC_INTERVAL).await;
        }
        Some(((), false))
    })
}

//! Turning Kubernetes objects into the scheduler's [`Snapshot`](crate::snapshot::Snapshot), at
//! the edge.
//!
//! Everything here is still pure: objects in, scheduler types (or [`IngestError`]s naming the
//! object and field at fault) out. The controller feeds it what its informers hold;
//! `karpenter simulate` feeds it manifest files through [`parse_manifests`] and
//! [`build_snapshot`].
//!
//! - [`pod`]: effective requests, affinities, spread, tolerations, host ports; pending checks.
//! - [`node`]: nodes with their bound pods, minus ephemeral and startup taints.
//! - [`workloads`]: Deployments, StatefulSets, ReplicaSets, Jobs → pods; DaemonSets → templates.
//! - [`nodepool`]: `karpenter.sh/v1` NodePool → `NodePoolInput`.
//! - [`manifests`]: multi-document YAML → typed objects.

mod assemble;
mod convert;
pub mod disruption;
mod error;
pub mod manifests;
pub mod node;
pub mod nodepool;
pub mod pod;
pub mod workloads;

pub use assemble::{NAMESPACE_NAME_LABEL, SnapshotBuild, build_snapshot};
pub use convert::{
    MATCH_NOTHING_KEY, label_selector_from_k8s, match_nothing, taint_from_k8s, taints_from_k8s,
    toleration_from_k8s,
};
pub use error::IngestError;
pub use manifests::{Manifest, parse_manifests};
pub use node::existing_node_from_k8s;
pub use nodepool::compile_node_pool;
pub use pod::{
    is_daemonset_pod, is_pending, is_pending_unschedulable, is_provisionable, pod_from_k8s,
};

//! Karpenter's API types, readable from the same manifests AWS Karpenter reads.
//!
//! - [`nodepool`] / [`nodeclaim`]: `karpenter.sh/v1` NodePool and NodeClaim.
//! - [`v1beta1`]: the `karpenter.sh/v1beta1` NodePool and NodeClaim (Karpenter 0.33–0.37) and
//!   their conversion.
//! - [`kubelet`]: kubelet overrides, shared with provider node classes.
//! - [`duration`]: Go duration strings (`"720h"`, `"Never"`).
//! - [`validation`]: the CRD CEL rules and webhook checks, as pure functions.

pub mod duration;
pub mod hash;
pub mod kubelet;
pub mod nodeclaim;
pub mod nodepool;
pub mod v1beta1;
pub mod validation;

pub use duration::{
    DurationError, GoDuration, NillableDuration, format_go_duration, parse_go_duration,
};
pub use hash::{NODE_POOL_HASH_VERSION, canonical_hash, nodepool_hash};
pub use kubelet::KubeletConfiguration;
pub use nodeclaim::{
    NodeClaim, NodeClaimSpec, NodeClaimStatus, NodeClassReference, NodeSelectorOperator,
    NodeSelectorRequirementWithMinValues, ResourceRequirements,
};
pub use nodepool::{
    Budget, ConsolidationPolicy, Disruption, DisruptionReason, NodeClaimTemplate,
    NodeClaimTemplateSpec, NodePool, NodePoolSpec, NodePoolStatus, TemplateMetadata,
};
pub use v1beta1::{
    ConversionError, ConvertedNodePool, convert_node_claim, convert_to_v1,
    convert_to_v1_with_default_node_class,
};
pub use validation::{ValidationError, validate_node_claim, validate_node_pool};

/// API group of Karpenter's core objects.
pub const GROUP: &str = "karpenter.sh";

/// Annotation group Karpenter uses for v1beta1 → v1 conversion bookkeeping.
pub const COMPATIBILITY_GROUP: &str = "compatibility.karpenter.sh";

/// Annotation Karpenter v1.0's conversion webhook sets on converted NodePools / NodeClaims:
/// the original v1beta1 `nodeClassRef` as JSON, so a round trip back to v1beta1 is lossless.
pub const NODE_CLASS_REFERENCE_ANNOTATION_KEY: &str =
    "compatibility.karpenter.sh/v1beta1-nodeclass-reference";

/// Annotation Karpenter v1.0's conversion webhook used to carry v1beta1 `kubelet` settings.
/// Karpenter v1.1+ (AWS) refuses to start while any NodePool still has it, so
/// [`convert_to_v1`] returns kubelet settings separately instead of writing this.
pub const KUBELET_COMPATIBILITY_ANNOTATION_KEY: &str =
    "compatibility.karpenter.sh/v1beta1-kubelet-conversion";

/// Annotation on NodeClaims holding the hash of the NodePool template they came from.
pub const NODE_POOL_HASH_ANNOTATION_KEY: &str = "karpenter.sh/nodepool-hash";

/// Annotation holding the version of the NodePool hash algorithm.
pub const NODE_POOL_HASH_VERSION_ANNOTATION_KEY: &str = "karpenter.sh/nodepool-hash-version";

/// Finalizer Karpenter puts on NodeClaims and Nodes so it can drain before deletion.
pub const TERMINATION_FINALIZER: &str = "karpenter.sh/termination";

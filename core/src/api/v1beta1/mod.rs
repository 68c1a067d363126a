//! The `karpenter.sh/v1beta1` API of Karpenter 0.33–0.37 and its conversion to v1.
//!
//! - [`nodepool`]: the NodePool users write; converted in process on every read.
//! - [`nodeclaim`]: the NodeClaim Karpenter 0.3x wrote for each node it launched; the controller
//!   rewrites those to v1 once, since it owns them.

pub mod nodeclaim;
pub mod nodepool;

pub use nodeclaim::{KnativeCondition, NodeClaim, NodeClaimSpec, convert_node_claim, created_at};
pub use nodepool::*;

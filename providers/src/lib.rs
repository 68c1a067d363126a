//! Cloud providers for karpenter-rs.
//!
//! The [`CloudProvider`] trait is what the controller talks to; `fake` is
//! an in-memory implementation with call records and injectable errors for tests, and `aws`
//! holds the EC2 implementation's pure parts (API types, catalog, instance-type maths).

#![warn(missing_docs)]

pub mod aws;
pub mod fake;
pub mod provider;

pub use fake::FakeCloudProvider;
pub use provider::{
    CloudProvider, DriftReason, Found, LaunchedInstance, NodeClaimRequest, NodePoolRef,
    OfferingKey, ProviderError, adoptable, launched_for,
};

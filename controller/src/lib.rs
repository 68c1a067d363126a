//! The karpenter-rs controller as a library: the `karpenter` binary is a thin `main` over it, and
//! the e2e tests drive its parts against a real API server.
//!
//! - [`model`]: the one shared cluster model (a reflector per kind) and the pure conversions
//!   between cluster objects and `core`;
//! - [`controllers`]: one folder per controller, each a pure decision and its I/O;
//! - [`runtime`]: settings, leader election, health and metrics endpoints, logging, metrics;
//! - [`run`]: `karpenter run`, wiring the controllers around the AWS provider;
//! - [`simulate`]: the offline planner (`karpenter simulate`); [`crds`]: the
//!   CustomResourceDefinitions generated from the Rust types.

#![warn(missing_docs)]

pub mod controllers;
pub mod crds;
pub mod model;
pub mod run;
pub mod runtime;
pub mod simulate;

//! The karpenter-rs controller as a library: the `karpenter` binary is a thin `main` over it, and
//! the e2e tests drive its parts against a real API server.
//!
//! - [`settings`]: Karpenter's flags and environment variables;
//! - [`crds`]: the CustomResourceDefinitions generated from the Rust types;
//! - [`simulate`]: the offline planner (`karpenter simulate`);
//! - [`metrics`], [`http_server`], [`leader`], [`logging`]: the operational surface (Prometheus
//!   metrics under Karpenter's names, health probes, Lease leader election, JSON logs);
//! - [`run`]: `karpenter run`, wiring [`state`] (reflectors), [`provisioner`], [`lifecycle`]
//!   (NodeClaims), [`gc`] and [`nodeclass_status`] around the AWS provider; [`cluster`] and
//!   [`objects`] are the pure conversions between cluster objects and `core`.

#![warn(missing_docs)]

pub mod cluster;
pub mod crds;
pub mod gc;
pub mod http_server;
pub mod leader;
pub mod lifecycle;
pub mod logging;
pub mod metrics;
pub mod nodeclass_status;
pub mod objects;
pub mod provisioner;
pub mod run;
pub mod settings;
pub mod simulate;
pub mod state;
pub mod volume_topology;

//! karpenter-rs core: pure scheduling logic.
//!
//! Everything in this crate is a function of its inputs: a [`snapshot::Snapshot`] of the cluster
//! (pending pods, nodes, node pools, instance types) goes in and a
//! [`scheduling::Decision`] comes out, with the reason for every choice it could not make. No
//! I/O, no clock, no kube client, no cloud SDK: the controller gathers, `core` decides.

pub mod api;
pub mod disruption;
pub mod fixtures;
pub mod ingest;
pub mod instance_type;
pub mod labels;
pub mod requirements;
pub mod resources;
pub mod scheduling;
pub mod snapshot;

//! End-to-end test bed of karpenter-rs (issue #3).
//!
//! Started by `cargo xtask e2e`, which brings up a local control plane (`cargo xtask cluster`),
//! moto as the fake AWS endpoint (`cargo xtask aws`), writes the environment file described in
//! [`env`], and runs this crate's tests. None of this ships in the controller.

pub mod chart;
pub mod contract;
pub mod controller;
pub mod dashboards;
pub mod demo;
pub mod env;
pub mod fault_proxy;
pub mod harness;
pub mod node_sim;
pub mod prometheus;
pub mod scenario;

/// Makes ring rustls's process-wide crypto provider. This crate links rustls with both ring
/// (through kube) and aws-lc-rs (through the AWS SDK), and rustls refuses to guess; a no-op
/// when a provider is already installed.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

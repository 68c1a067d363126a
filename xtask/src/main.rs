//! `cargo xtask …`: developer tasks for karpenter-rs.

use clap::{Parser, Subcommand};

mod aws;
mod bench;
mod catalog;
mod cluster;
/// The state files' schema, shared with the e2e crate by source (xtask does not depend on it).
#[path = "../../e2e/src/contract.rs"]
mod contract;
mod crds;
mod demo;
mod e2e;
mod helm;
mod static_binary;
mod test;

#[derive(Parser)]
#[command(name = "xtask", about = "Developer tasks for karpenter-rs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Regenerate the embedded EC2 instance-type catalog from moto's data and the static prices.
    Catalog(catalog::CatalogArgs),
    /// Run every check CI runs: fmt, clippy, all tests, catalog staleness.
    Test(test::TestArgs),
    /// Scheduling throughput (criterion) and packing quality on the EC2 catalog, in release.
    Bench(bench::BenchArgs),
    /// Build karpenter (debug) and simulate the staging example (`examples/staging`).
    Demo(demo::DemoArgs),
    /// The local control plane for e2e: etcd + Kubernetes v1.20.2 built from Debian's source.
    Cluster(cluster::ClusterArgs),
    /// The fake AWS endpoint for e2e: moto, seeded with an EKS-like account.
    Aws(aws::AwsArgs),
    /// Bring up the cluster and fake AWS, run the `e2e` crate's tests, tear everything down.
    E2e(e2e::E2eArgs),
    /// Regenerate crds/ from the Rust API types (`--check`: fail when it is stale).
    Crds(crds::CrdsArgs),
    /// Build karpenter static (glibc, +crt-static) as the Dockerfile does, check the ELF has no
    /// interpreter or shared libraries, and run it in a bare chroot as uid 65532 (needs root).
    StaticCheck(static_binary::StaticCheckArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Catalog(args) => catalog::run(args),
        Command::Test(args) => test::run_all(args),
        Command::Bench(args) => bench::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Cluster(args) => cluster::run(args),
        Command::Aws(args) => aws::run(args),
        Command::E2e(args) => e2e::run(args),
        Command::Crds(args) => crds::run(args),
        Command::StaticCheck(args) => static_binary::run(args),
    }
}

/// Installs rustup components a step needs when they are missing (fresh machines may lack
/// them); a no-op when they are present or rustup is absent.
pub(crate) fn ensure_rust_components(components: &[&str]) -> anyhow::Result<()> {
    let Ok(out) = std::process::Command::new("rustup")
        .args(["component", "list", "--installed"])
        .output()
    else {
        return Ok(());
    };
    let installed = String::from_utf8_lossy(&out.stdout);
    for c in components {
        if !installed.lines().any(|l| l.starts_with(c)) {
            eprintln!("==> installing rustup component {c}");
            let status = std::process::Command::new("rustup")
                .args(["component", "add", c])
                .status()?;
            anyhow::ensure!(status.success(), "rustup component add {c} failed");
        }
    }
    Ok(())
}

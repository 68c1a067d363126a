//! `karpenter`: the karpenter-rs command line.
//!
//! `simulate` plans nodes for manifests offline (no cluster, no AWS account); `crds` writes the
//! CustomResourceDefinitions. The controller itself (`karpenter run`, whose flags are in
//! `settings`) will live beside them.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod crds;
mod settings;
mod simulate;

#[derive(Parser)]
#[command(
    name = "karpenter",
    version,
    about = "karpenter-rs: a Kubernetes node autoscaler compatible with AWS Karpenter's manifests"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Plan the nodes Karpenter would launch for the pods in some manifests, offline.
    Simulate(simulate::SimulateArgs),
    /// Write the CustomResourceDefinitions (NodePool, NodeClaim, EC2NodeClass) as YAML.
    Crds(crds::CrdsArgs),
    // `Run` (the controller) will be added here.
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Simulate(args) => simulate::main(&args),
        Command::Crds(args) => crds::main(&args),
    }
}

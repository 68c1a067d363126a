//! `karpenter`: the karpenter-rs command line.
//!
//! Today it has one subcommand, `simulate`, which plans nodes for manifests offline (no cluster,
//! no AWS account). The controller itself (`karpenter run`) will live beside it.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    // `Run` (the controller) will be added here.
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Simulate(args) => simulate::main(&args),
    }
}

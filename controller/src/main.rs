//! `karpenter`: the karpenter-rs command line.
//!
//! `run` is the controller; `simulate` plans nodes for manifests offline (no cluster, no AWS
//! account); `crds` writes the CustomResourceDefinitions.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use karpenter::runtime::{logging, settings};
use karpenter::{crds, run, simulate};

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
    /// Run the controller (flags and environment variables as Karpenter's settings).
    Run(Box<settings::Settings>),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Simulate(args) => simulate::main(&args),
        Command::Crds(args) => crds::main(&args),
        Command::Run(settings) => run_controller(*settings),
    }
}

fn run_controller(settings: settings::Settings) -> ExitCode {
    logging::init(settings.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("karpenter: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run::run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "controller stopped");
            ExitCode::FAILURE
        }
    }
}

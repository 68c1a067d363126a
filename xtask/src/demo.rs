//! `cargo xtask demo`: builds the `karpenter` binary (debug profile, to save build time) and
//! runs `karpenter simulate -f examples/staging` on the staging example, printing its output.
//! `cargo xtask demo --live` brings the e2e bed up (local control plane, fake AWS, simulated
//! kubelets), runs the controller against the seed's staging pool while a Deployment is scaled
//! up and down (`karpenter_e2e::demo`), prints the fleet and its $/h after each step, and tears
//! the bed down.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};

/// Options of `cargo xtask demo`.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// Print the plan as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Run the controller on the e2e bed instead of simulating: launch and consolidate nodes
    /// while a Deployment is scaled.
    #[arg(long, conflicts_with = "json")]
    pub live: bool,
    /// With `--live`: the Deployment's sizes, in order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "10,40,5,0",
        requires = "live"
    )]
    pub sizes: Vec<u32>,
}

fn workspace_root() -> PathBuf {
    // xtask/ is one level below the workspace root.
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map_or_else(|| manifest_dir.clone(), PathBuf::from)
}

/// Builds (debug) and runs the simulation of `examples/staging`, or the live demo.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    if args.live {
        return live(&args.sizes);
    }
    let root = workspace_root();
    let example = root.join("examples").join("staging");
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(&root)
        .args(["run", "--quiet", "-p", "karpenter", "--", "simulate", "-f"])
        .arg(&example);
    if args.json {
        cmd.args(["--output", "json"]);
    }
    eprintln!(
        "==> karpenter simulate -f {}{} (debug build)",
        example.strip_prefix(&root).unwrap_or(&example).display(),
        if args.json { " --output json" } else { "" }
    );
    let status = cmd.status().context("could not start cargo")?;
    if !status.success() {
        bail!("karpenter simulate failed ({status})");
    }
    Ok(())
}

/// The live demo on a bed of its own (`target/e2e-demo`), torn down afterwards.
fn live(sizes: &[u32]) -> anyhow::Result<()> {
    let bed = crate::e2e::Bed::up(
        crate::cluster::ClusterKind::Local,
        Some(workspace_root().join("target").join("e2e-demo")),
        false,
        &["build", "-p", "karpenter-e2e", "--bin", "live-demo"],
    )?;
    let sizes: Vec<String> = sizes.iter().map(u32::to_string).collect();
    let mut args = vec![
        "run",
        "--quiet",
        "-p",
        "karpenter-e2e",
        "--bin",
        "live-demo",
        "--",
    ];
    args.extend(sizes.iter().map(String::as_str));
    eprintln!(
        "==> live demo: scaling a Deployment to {} pods",
        sizes.join(", then ")
    );
    let status = bed.cargo(&args).status().context("could not start cargo")?;
    bed.check()?;
    if !status.success() {
        bail!("the live demo failed ({status})");
    }
    Ok(())
}

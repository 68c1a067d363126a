//! `cargo xtask demo`: builds the `karpenter` binary (debug profile, to save build time) and
//! runs `karpenter simulate -f examples/staging` on the staging example, printing its output.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};

/// Options of `cargo xtask demo`.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// Print the plan as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

fn workspace_root() -> PathBuf {
    // xtask/ is one level below the workspace root.
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map_or_else(|| manifest_dir.clone(), PathBuf::from)
}

/// Builds (debug) and runs the simulation of `examples/staging`.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
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

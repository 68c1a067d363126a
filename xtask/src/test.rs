//! `cargo xtask test`: everything CI checks, in the order a developer wants to hear about it.

use std::process::Command;

use anyhow::{Context, bail};

/// Options of `cargo xtask test`.
#[derive(clap::Args)]
pub struct TestArgs {
    /// Skip `cargo fmt --check` and clippy (for a quick local loop).
    #[arg(long)]
    pub no_lint: bool,
    /// Skip the catalog staleness check (it downloads moto's wheel from PyPI once).
    #[arg(long)]
    pub no_catalog_check: bool,
}

fn run(step: &str, cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("==> {step}: {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start {step}"))?;
    if !status.success() {
        bail!("{step} failed ({status})");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Runs formatting and lint checks, the whole workspace's tests and the catalog check.
pub fn run_all(args: TestArgs) -> anyhow::Result<()> {
    crate::ensure_rust_components(&["rustfmt", "clippy"])?;
    if !args.no_lint {
        run("rustfmt", cargo().args(["fmt", "--all", "--check"]))?;
        run(
            "clippy",
            cargo().args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]),
        )?;
    }
    run(
        "unit and scenario tests",
        cargo().args(["test", "--workspace"]),
    )?;
    if !args.no_catalog_check {
        run(
            "catalog is up to date",
            cargo().args(["run", "--quiet", "-p", "xtask", "--", "catalog", "--check"]),
        )?;
    }
    eprintln!("==> all checks passed");
    Ok(())
}

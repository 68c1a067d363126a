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
    /// Skip the e2e suite (local control plane + fake AWS; the first run builds Kubernetes).
    #[arg(long)]
    pub no_e2e: bool,
    /// Also run the static binary check (`cargo xtask static-check`: a second, static build of
    /// `karpenter` run in a bare chroot; needs root). Off by default for now: it adds a full
    /// build of the dependency tree for the explicit target to the CI run.
    #[arg(long)]
    pub static_check: bool,
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
    let (mut passed, mut failed) = run_tests()?;
    if !args.no_e2e {
        let (p, f) = crate::e2e::run_suite(&crate::e2e::E2eArgs {
            cluster: crate::cluster::ClusterKind::Local,
            state_dir: None,
            keep: false,
            test_args: Vec::new(),
        })?;
        passed += p;
        failed += f;
    }
    if args.static_check {
        // What the container image ships, as far as it can be tested without a container
        // engine; the dev profile, since being static does not depend on it.
        eprintln!("==> static binary check");
        crate::static_binary::run(crate::static_binary::StaticCheckArgs {
            release: false,
            binary: None,
        })?;
    }
    if !args.no_catalog_check {
        run(
            "catalog is up to date",
            cargo().args(["run", "--quiet", "-p", "xtask", "--", "catalog", "--check"]),
        )?;
    }
    eprintln!("==> all checks passed");
    report_target_size();
    // One summary line for whoever reads the end of the log (CI does).
    println!("tests: {passed} passed, {failed} failed");
    Ok(())
}

/// Prints how much disk the build took: CI's disk is finite, and a clean target once filled it.
fn report_target_size() {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            let xtask = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
            xtask.parent().unwrap_or(xtask).join("target")
        });
    let bytes = dir_size(&target);
    eprintln!(
        "==> {} holds {:.1} GiB",
        target.display(),
        bytes as f64 / f64::from(1u32 << 30)
    );
}

/// Sums the sizes of the files under `dir` (symlinks not followed, unreadable entries skipped).
fn dir_size(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => dir_size(&entry.path()),
            Ok(kind) if kind.is_file() => entry.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// Runs the unit, scenario and integration tests of every crate but the e2e one (which needs
/// the bed) and adds up their `test result:` lines.
fn run_tests() -> anyhow::Result<(u64, u64)> {
    let mut cmd = cargo();
    cmd.args(["test", "--workspace", "--exclude", "karpenter-e2e"]);
    let (passed, failed, ok) = run_counting("unit and scenario tests", &mut cmd)?;
    if !ok {
        bail!("cargo test failed: {passed} passed, {failed} failed");
    }
    Ok((passed, failed))
}

/// Runs a `cargo test` command, echoing its output, and returns the summed `test result:`
/// counts and whether it succeeded.
pub(crate) fn run_counting(step: &str, cmd: &mut Command) -> anyhow::Result<(u64, u64, bool)> {
    use std::io::{BufRead, BufReader};
    cmd.stdout(std::process::Stdio::piped());
    eprintln!("==> {step}: {cmd:?}");
    let mut child = cmd
        .spawn()
        .with_context(|| format!("could not start {step}"))?;
    let stdout = child.stdout.take().context("cargo test has no stdout")?;
    let (mut passed, mut failed) = (0, 0);
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        if let Some((p, f)) = parse_result_line(&line) {
            passed += p;
            failed += f;
        }
    }
    let status = child.wait()?;
    Ok((passed, failed, status.success()))
}

/// Reads `test result: ok. 9 passed; 1 failed; …` into (9, 1).
fn parse_result_line(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix("test result: ")?;
    let count = |word: &str| -> Option<u64> {
        rest.split(';').find_map(|part| {
            part.trim()
                .strip_suffix(word)?
                .trim()
                .rsplit(' ')
                .next()?
                .parse()
                .ok()
        })
    };
    Some((count("passed")?, count("failed")?))
}

#[cfg(test)]
mod tests {
    use super::{dir_size, parse_result_line};

    #[test]
    fn sums_file_sizes_through_nested_directories() {
        let root = std::env::temp_dir().join(format!("xtask-dir-size-{}", std::process::id()));
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("top"), [0u8; 10]).unwrap();
        std::fs::write(root.join("a/b/deep"), [0u8; 32]).unwrap();
        let size = dir_size(&root);
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(size, 42);
        assert_eq!(dir_size(&root), 0, "a missing directory counts as empty");
    }

    #[test]
    fn reads_cargo_test_summaries() {
        assert_eq!(
            parse_result_line(
                "test result: ok. 9 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.12s"
            ),
            Some((9, 0))
        );
        assert_eq!(
            parse_result_line("test result: FAILED. 3 passed; 2 failed; 0 ignored"),
            Some((3, 2))
        );
        assert_eq!(parse_result_line("running 3 tests"), None);
    }
}

//! `cargo xtask e2e`: bring up the control plane and the fake AWS account, run the `e2e`
//! crate's tests against them, and tear both down again, also when the tests fail or the user
//! presses Ctrl-C.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};

use crate::{aws, cluster};

/// Options of `cargo xtask e2e`.
#[derive(clap::Args)]
pub struct E2eArgs {
    /// Control plane: `local` (processes on loopback, the default) or `kind` (needs Docker).
    #[arg(long, value_enum, default_value_t = cluster::ClusterKind::Local)]
    pub cluster: cluster::ClusterKind,
    /// State directory (default `<workspace>/target/e2e`).
    #[arg(long, env = cluster::STATE_DIR_VAR)]
    pub state_dir: Option<PathBuf>,
    /// Leave the cluster and fake AWS running afterwards (for debugging; `cargo xtask cluster
    /// down` and `cargo xtask aws down` stop them).
    #[arg(long)]
    pub keep: bool,
    /// Arguments for the test binaries, e.g. a test name filter.
    #[arg(last = true)]
    pub test_args: Vec<String>,
}

/// The cluster name the fake account's discovery tags and queue use.
pub const CLUSTER_NAME: &str = "karpenter-e2e";

/// Runs `cargo xtask e2e`.
pub fn run(args: E2eArgs) -> anyhow::Result<()> {
    let (passed, failed) = run_suite(&args)?;
    println!("e2e tests: {passed} passed, {failed} failed");
    Ok(())
}

/// Tears the bed down when dropped, unless asked to keep it.
struct Teardown {
    state_dir: PathBuf,
    keep: bool,
}

impl Drop for Teardown {
    fn drop(&mut self) {
        if self.keep {
            eprintln!(
                "==> leaving the e2e bed running in {} (--keep)",
                self.state_dir.display()
            );
            return;
        }
        eprintln!("==> tearing down the e2e bed");
        if let Err(e) = aws::down(&self.state_dir) {
            eprintln!("warning: aws down: {e:#}");
        }
        if let Err(e) = cluster::down(&self.state_dir) {
            eprintln!("warning: cluster down: {e:#}");
        }
    }
}

/// The bed, up until dropped: its state directory, the controller binary runs start, Helm,
/// and the environment a process needs to use it.
pub struct Bed {
    /// The state directory (`cluster.json`, `aws.json`, logs).
    pub state_dir: PathBuf,
    /// The copy of the controller that runs start.
    pub binary: PathBuf,
    /// Helm, for the chart tests.
    pub helm: PathBuf,
    // Fields drop in declaration order: the bed is torn down while signals are still caught.
    _teardown: Teardown,
    signals: CatchInterrupts,
}

impl Bed {
    /// Builds the controller and `also` (cargo arguments, e.g. the e2e tests with `--no-run`),
    /// then brings the control plane and the fake AWS account up in `state_dir` (default
    /// `target/e2e`). Teardown happens on drop unless `keep`.
    pub fn up(
        cluster_kind: cluster::ClusterKind,
        state_dir: Option<PathBuf>,
        keep: bool,
        also: &[&str],
    ) -> anyhow::Result<Bed> {
        let state_dir = state_dir.unwrap_or_else(cluster::default_state_dir);
        let state_dir = absolute(&state_dir)?;
        std::fs::create_dir_all(&state_dir)
            .with_context(|| format!("creating {}", state_dir.display()))?;
        // Ctrl-C reaches the whole foreground process group: the run stops, and this process
        // (which catches it while the bed is up) goes on to tear everything down.
        let signals = CatchInterrupts::new();
        let teardown = Teardown {
            state_dir: state_dir.clone(),
            keep,
        };
        cluster::ensure_prometheus()?;
        let helm = crate::helm::ensure()?;
        // Build what will run first: the bed should not idle through a long compile.
        let built = cargo()
            .args(["build", "-p", "karpenter", "--bin", "karpenter"])
            .status()
            .context("could not start cargo build")?;
        if !built.success() {
            bail!("building the controller failed ({built})");
        }
        let built = cargo()
            .args(also)
            .status()
            .context("could not start cargo")?;
        if !built.success() {
            bail!("`cargo {}` failed ({built})", also.join(" "));
        }
        // Runs start a copy, so building the controller while they run (another session's
        // edit, a second e2e run) cannot swap the binary under them. A binary named by
        // `KARPENTER_E2E_BINARY` (a release build, to measure memory) is used as it is.
        let binary = match std::env::var_os("KARPENTER_E2E_BINARY") {
            Some(given) => PathBuf::from(given),
            None => {
                let target = std::env::var_os("CARGO_TARGET_DIR")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| {
                        let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
                        xtask.parent().unwrap_or(xtask).join("target")
                    });
                let binary = state_dir.join("karpenter");
                std::fs::copy(target.join("debug").join("karpenter"), &binary)
                    .with_context(|| format!("copying the controller to {}", binary.display()))?;
                binary
            }
        };
        signals.check()?;
        let started = std::time::Instant::now();
        let mut opts = cluster::UpOptions::new(&state_dir);
        opts.cluster = cluster_kind;
        cluster::up(&opts).context("starting the control plane")?;
        signals.check()?;
        aws::up(&aws::UpOptions {
            state_dir: state_dir.clone(),
            cluster_name: CLUSTER_NAME.to_owned(),
        })
        .context("starting the fake AWS endpoint")?;
        signals.check()?;
        eprintln!(
            "==> e2e bed up in {:.1} s ({})",
            started.elapsed().as_secs_f64(),
            state_dir.display()
        );
        Ok(Bed {
            state_dir,
            binary,
            helm,
            _teardown: teardown,
            signals,
        })
    }

    /// `cargo <args>` with the bed's environment (state directory, controller binary, Helm).
    pub fn cargo(&self, args: &[&str]) -> Command {
        let mut cmd = cargo();
        cmd.args(args)
            .env(cluster::STATE_DIR_VAR, &self.state_dir)
            .env("KARPENTER_E2E_BINARY", &self.binary)
            .env("HELM", &self.helm);
        cmd
    }

    /// Fails when Ctrl-C or SIGTERM arrived.
    pub fn check(&self) -> anyhow::Result<()> {
        self.signals.check()
    }
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Brings the bed up, runs `cargo test -p karpenter-e2e` against it, tears it down, and
/// returns the summed `test result:` counts. Fails when any test fails.
pub fn run_suite(args: &E2eArgs) -> anyhow::Result<(u64, u64)> {
    let bed = Bed::up(
        args.cluster,
        args.state_dir.clone(),
        args.keep,
        &["test", "-p", "karpenter-e2e", "--no-run"],
    )?;
    // Every test binary runs even when one fails, so the summary counts them all.
    let mut cmd = bed.cargo(&["test", "--no-fail-fast", "-p", "karpenter-e2e"]);
    if !args.test_args.is_empty() {
        cmd.arg("--").args(&args.test_args);
    }
    let (passed, failed, ok) = crate::test::run_counting("e2e tests", &mut cmd)?;
    bed.check()?;
    if !ok {
        bail!("e2e tests failed: {passed} passed, {failed} failed");
    }
    Ok((passed, failed))
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    if path.is_absolute() {
        Ok(path.to_owned())
    } else {
        Ok(std::env::current_dir()?.join(path))
    }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_signal: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Catches SIGINT and SIGTERM while alive (restoring the defaults on drop), so this process
/// survives a Ctrl-C and tears the bed down. A caught signal's handler is reset to the default
/// in programs it starts, so the test run and the bed's daemons still react normally.
struct CatchInterrupts;

impl CatchInterrupts {
    fn new() -> Self {
        INTERRUPTED.store(false, Ordering::SeqCst);
        let handler = on_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(libc::SIGINT, handler);
            libc::signal(libc::SIGTERM, handler);
        }
        CatchInterrupts
    }

    /// Fails when a signal arrived, so bring-up stops between steps.
    fn check(&self) -> anyhow::Result<()> {
        if INTERRUPTED.load(Ordering::SeqCst) {
            bail!("interrupted");
        }
        Ok(())
    }
}

impl Drop for CatchInterrupts {
    fn drop(&mut self) {
        // SAFETY: restoring the default disposition has no preconditions.
        unsafe {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGTERM, libc::SIG_DFL);
        }
    }
}

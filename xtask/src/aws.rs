//! `cargo xtask aws up|down|status`: moto as the fake AWS endpoint of the e2e bed.
//!
//! `up` makes sure the cached venv exists ([`venv`]), starts `e2e/fakeaws/launcher.py` detached
//! (it seeds an EKS-like account and writes `aws.json` into the state directory), waits for it,
//! and warms EC2. A healthy running instance is reused. `down` stops only the process recorded in
//! `aws.json`, after checking that it is our launcher for that state directory.

mod http;
mod state;
mod venv;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub use state::AwsInfo;

/// Default `karpenter.sh/discovery` value (and interruption queue name) of the seeded account.
pub const DEFAULT_CLUSTER_NAME: &str = "karpenter-e2e";
/// Region of the seeded account.
const REGION: &str = "us-east-1";
/// Log of the launcher (moto's request log included), in the state directory.
const LOG_FILE: &str = "aws.log";
/// How long the launcher may take to import moto and seed the account (cold caches included).
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a stopping launcher gets before SIGKILL, and SIGKILL before giving up.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// One probe of moto.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(100);

/// Options of `cargo xtask aws`.
#[derive(clap::Args)]
pub struct AwsArgs {
    #[command(subcommand)]
    command: AwsCommand,
    /// State directory for aws.json and aws.log [default: $KARPENTER_E2E_DIR, else
    /// <workspace>/target/e2e].
    #[arg(long, global = true)]
    state_dir: Option<PathBuf>,
    /// `karpenter.sh/discovery` tag value of the seeded subnets and security group, and the name
    /// of the interruption queue.
    #[arg(long, global = true, default_value = DEFAULT_CLUSTER_NAME)]
    cluster_name: String,
}

#[derive(clap::Subcommand)]
enum AwsCommand {
    /// Start moto seeded with an EKS-like account (or reuse a healthy running one).
    Up,
    /// Stop the moto started by `up` and remove aws.json.
    Down,
    /// Show whether moto is running and healthy (exit status 1 when not).
    Status,
}

/// Options of [`up`].
#[derive(Clone, Debug)]
pub struct UpOptions {
    /// Where `aws.json` and `aws.log` go.
    pub state_dir: PathBuf,
    /// `karpenter.sh/discovery` value and interruption queue name.
    pub cluster_name: String,
}

/// The state directory: `explicit`, else `$KARPENTER_E2E_DIR`, else `<workspace>/target/e2e`.
pub fn state_dir(explicit: Option<&Path>) -> PathBuf {
    state::resolve_state_dir(
        explicit,
        std::env::var_os(state::STATE_DIR_VAR),
        &state::workspace_root(),
    )
}

/// Runs `cargo xtask aws`.
pub fn run(args: AwsArgs) -> Result<()> {
    let state_dir = state_dir(args.state_dir.as_deref());
    match args.command {
        AwsCommand::Up => {
            let info = up(&UpOptions {
                state_dir: state_dir.clone(),
                cluster_name: args.cluster_name,
            })?;
            print_summary(&info);
            eprintln!(
                "==> tests find it with: export {}={}",
                state::STATE_DIR_VAR,
                absolute(&state_dir)?.display()
            );
            Ok(())
        }
        AwsCommand::Down => down(&state_dir),
        AwsCommand::Status => match running(&absolute(&state_dir)?)? {
            Some(info) => {
                health(&info)?;
                print_summary(&info);
                Ok(())
            }
            None => bail!(
                "fake AWS is not running (no live launcher recorded in {})",
                state_dir.display()
            ),
        },
    }
}

/// `dir` as the launcher is told it (and recognised by): canonical when it exists.
fn absolute(dir: &Path) -> Result<PathBuf> {
    dir.canonicalize()
        .or_else(|_| std::path::absolute(dir))
        .with_context(|| format!("resolving {}", dir.display()))
}

fn print_summary(info: &AwsInfo) {
    eprintln!(
        "==> fake AWS (moto {}) at {} (pid {}), region {}, cluster {}",
        venv::MOTO_VERSION,
        info.endpoint,
        info.pid.map_or("?".into(), |p| p.to_string()),
        info.region,
        info.cluster_name
    );
    eprintln!("    vpc {}", info.vpc_id);
    for s in &info.subnets {
        eprintln!("    subnet {} {} {}", s.id, s.zone, s.cidr);
    }
    eprintln!("    security groups {}", info.security_group_ids.join(", "));
    eprintln!("    interruption queue {}", info.interruption_queue_url);
    eprintln!(
        "    between tests: POST {}/moto-api/reset empties moto and re-seeds this account (same ids)",
        info.endpoint
    );
}

/// The launcher recorded in `dir`'s `aws.json` if it is still alive (and really ours). A stale
/// `aws.json` (dead or foreign pid) is removed.
fn running(dir: &Path) -> Result<Option<AwsInfo>> {
    let Some(info) = state::read(dir)? else {
        return Ok(None);
    };
    let ours = info
        .pid
        .and_then(state::cmdline)
        .is_some_and(|args| state::is_launcher_for(&args, dir));
    if ours {
        return Ok(Some(info));
    }
    eprintln!(
        "==> removing stale {} (its launcher is gone)",
        dir.join(state::STATE_FILE).display()
    );
    state::remove(dir)?;
    Ok(None)
}

/// A cheap EC2 call: proves moto answers.
const HEALTH_CALL: &str = "Action=DescribeAvailabilityZones&Version=2016-11-15";
/// The first instance-type lookup loads moto's instance-type data (seconds): pay it before tests
/// run. (Unfiltered DescribeInstanceTypes costs ~2.5 s every time: moto ignores MaxResults.)
const WARM_CALL: &str = "Action=DescribeInstanceTypes&Version=2016-11-15&InstanceType.1=m5.large";

/// Makes one EC2 call; returns how long it took.
fn probe(info: &AwsInfo, body: &str) -> Result<Duration> {
    let started = Instant::now();
    let (status, answer) =
        http::post_query(&info.endpoint, "ec2", body, PROBE_TIMEOUT).context("probing moto")?;
    if status != 200 {
        bail!(
            "moto at {} answered {body:?} with HTTP {status}: {answer:.300}",
            info.endpoint
        );
    }
    Ok(started.elapsed())
}

fn health(info: &AwsInfo) -> Result<()> {
    probe(info, HEALTH_CALL).map(drop)
}

/// The moto venv's Python (created if missing): it has pip, which the Helm fetch uses.
pub fn venv_python() -> Result<std::path::PathBuf> {
    Ok(venv::ensure()?.python())
}

/// Starts moto seeded with an EKS-like account, or returns the healthy one already running for
/// this state directory. Creates the venv on first use.
pub fn up(opts: &UpOptions) -> Result<AwsInfo> {
    std::fs::create_dir_all(&opts.state_dir)
        .with_context(|| format!("creating {}", opts.state_dir.display()))?;
    let dir = absolute(&opts.state_dir)?;
    if let Some(info) = running(&dir)? {
        if info.cluster_name != opts.cluster_name {
            bail!(
                "fake AWS in {} already runs for cluster {:?}, not {:?}; run `cargo xtask aws down --state-dir {}` first",
                dir.display(),
                info.cluster_name,
                opts.cluster_name,
                dir.display()
            );
        }
        match health(&info) {
            Ok(_) => {
                eprintln!(
                    "==> reusing the running fake AWS (pid {})",
                    info.pid.unwrap_or_default()
                );
                return Ok(info);
            }
            Err(e) => {
                eprintln!("==> the running fake AWS is unhealthy ({e:#}); restarting it");
                down(&dir)?;
            }
        }
    }
    let venv = venv::ensure()?;
    let launcher = state::workspace_root().join(state::LAUNCHER);
    let log_path = dir.join(LOG_FILE);
    let log =
        File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    eprintln!(
        "==> starting moto {} (log: {})",
        venv::MOTO_VERSION,
        log_path.display()
    );
    let started = Instant::now();
    let mut child = Command::new(venv.python())
        .arg(&launcher)
        .arg("--state-dir")
        .arg(&dir)
        .args(["--cluster-name", &opts.cluster_name, "--region", REGION])
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", launcher.display()))?;
    let pid = child.id();
    // The launcher writes aws.json (atomically) once the account is seeded and checked.
    let info = loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "the moto launcher exited ({status}) before it was ready:\n{}",
                log_tail(&log_path)
            );
        }
        if let Some(info) = state::read(&dir)?.filter(|i| i.pid == Some(pid)) {
            break info;
        }
        if started.elapsed() > START_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "moto was not ready within {START_TIMEOUT:?}:\n{}",
                log_tail(&log_path)
            );
        }
        sleep(POLL);
    };
    let warm = probe(&info, WARM_CALL)?;
    eprintln!(
        "==> fake AWS ready in {:.1?} (EC2 warm-up call {warm:.0?})",
        started.elapsed()
    );
    Ok(info)
}

/// Stops the launcher recorded in `state_dir` (only if it is ours) and removes `aws.json`.
pub fn down(state_dir: &Path) -> Result<()> {
    let dir = absolute(state_dir)?;
    let Some(info) = running(&dir)? else {
        eprintln!("==> fake AWS is not running in {}", dir.display());
        return Ok(());
    };
    let pid = info
        .pid
        .expect("running() only returns launchers with a pid");
    eprintln!("==> stopping moto (pid {pid})");
    signal(pid, "TERM")?;
    if !wait_gone(pid, STOP_TIMEOUT) {
        eprintln!("==> pid {pid} ignored SIGTERM for {STOP_TIMEOUT:?}; sending SIGKILL");
        // Re-check right before killing: the pid must still be our launcher.
        if state::cmdline(pid).is_some_and(|a| state::is_launcher_for(&a, &dir)) {
            signal(pid, "KILL")?;
        }
        if !wait_gone(pid, STOP_TIMEOUT) {
            bail!("pid {pid} is still alive after SIGKILL");
        }
    }
    state::remove(&dir)?;
    eprintln!("==> fake AWS stopped");
    Ok(())
}

fn signal(pid: u32, name: &str) -> Result<()> {
    // std has no kill(2) for arbitrary pids; the xtask avoids a libc dependency.
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .context("running kill")?;
    if !status.success() && state::is_alive(pid) {
        bail!("kill -{name} {pid} failed ({status})");
    }
    Ok(())
}

fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while state::is_alive(pid) {
        if Instant::now() > deadline {
            return false;
        }
        sleep(POLL);
    }
    true
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        aws: AwsArgs,
    }

    #[test]
    fn arguments_before_or_after_the_subcommand() {
        let cli =
            Cli::try_parse_from(["aws", "up", "--state-dir", "/d", "--cluster-name", "c"]).unwrap();
        assert!(matches!(cli.aws.command, AwsCommand::Up));
        assert_eq!(cli.aws.state_dir.as_deref(), Some(Path::new("/d")));
        assert_eq!(cli.aws.cluster_name, "c");

        let cli = Cli::try_parse_from(["aws", "--state-dir", "/d", "down"]).unwrap();
        assert!(matches!(cli.aws.command, AwsCommand::Down));
        assert_eq!(cli.aws.state_dir.as_deref(), Some(Path::new("/d")));
        assert_eq!(cli.aws.cluster_name, DEFAULT_CLUSTER_NAME);

        let cli = Cli::try_parse_from(["aws", "status"]).unwrap();
        assert!(matches!(cli.aws.command, AwsCommand::Status));
        assert_eq!(cli.aws.state_dir, None);

        assert!(Cli::try_parse_from(["aws"]).is_err());
        assert!(Cli::try_parse_from(["aws", "restart"]).is_err());
    }

    #[test]
    fn down_without_state_is_a_no_op() {
        let dir = std::env::temp_dir().join(format!("xtask-aws-down-{}", std::process::id()));
        down(&dir).unwrap();
        assert!(!dir.exists(), "down does not create the state directory");
        std::fs::create_dir_all(&dir).unwrap();
        down(&dir).unwrap();
        // A stale aws.json (pid not a launcher: this test process) is removed, nothing is killed.
        let stale = format!(
            r#"{{"endpoint":"http://127.0.0.1:1","region":"us-east-1","cluster_name":"c","vpc_id":"v",
               "subnets":[],"security_group_ids":[],"interruption_queue_name":"c",
               "interruption_queue_url":"u","pid":{}}}"#,
            std::process::id()
        );
        std::fs::write(dir.join(state::STATE_FILE), stale).unwrap();
        down(&dir).unwrap();
        assert!(!dir.join(state::STATE_FILE).exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

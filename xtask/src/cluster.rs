//! `cargo xtask cluster up|down|status`: the control plane the e2e tests run against.
//!
//! `local` (the default) runs etcd (Debian's `etcd-server`) and kube-apiserver,
//! kube-controller-manager and kube-scheduler v1.20.2, built once from Debian bookworm's
//! `kubernetes` source package and cached in `~/.cache/karpenter-rs/` (see `build.rs` and
//! `shared/design.md` §4), as detached processes on free loopback ports. `kind` is for machines
//! with a Docker engine. Either way the result is described in `<state-dir>/cluster.json` (the
//! `ClusterInfo` contract of `e2e/src/env.rs`) next to an admin `kubeconfig`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

mod build;
pub use build::{cache_root, ensure_prometheus};
mod certs;
mod kind;
mod process;

use process::{Layout, Ports};

/// Environment variable overriding the default state directory (same as the e2e crate's).
pub const STATE_DIR_VAR: &str = "KARPENTER_E2E_DIR";
/// Kubernetes version of the local control plane.
pub const KUBERNETES_VERSION: &str = "v1.20.2";
/// Default cluster name (kubeconfig context, kind cluster).
pub const DEFAULT_NAME: &str = "karpenter-e2e";

const CLUSTER_JSON: &str = "cluster.json";
const READY_TIMEOUT: Duration = Duration::from_secs(180);
const SERVICE_ACCOUNT_TIMEOUT: Duration = Duration::from_secs(90);

/// Options of `cargo xtask cluster`.
#[derive(clap::Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(clap::Subcommand)]
enum ClusterCommand {
    /// Start the control plane (reuses a healthy one recorded in the state directory).
    Up(UpArgs),
    /// Stop the control plane recorded in the state directory and remove its state.
    Down(DirArgs),
    /// Print whether each process is alive and whether the API server is ready.
    Status(DirArgs),
}

#[derive(clap::Args)]
struct DirArgs {
    /// State directory (default `<workspace>/target/e2e`).
    #[arg(long, env = STATE_DIR_VAR)]
    state_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
struct UpArgs {
    #[command(flatten)]
    dir: DirArgs,
    /// Which control plane: local processes, or kind (needs a Docker engine).
    #[arg(long, value_enum, default_value_t = ClusterKind::Local)]
    cluster: ClusterKind,
    /// Cluster name (kubeconfig context; the kind cluster's name).
    #[arg(long, default_value = DEFAULT_NAME)]
    name: String,
}

/// Which kind of control plane to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ClusterKind {
    /// etcd + kube-apiserver/-controller-manager/-scheduler as local processes.
    Local,
    /// A kind cluster (Docker).
    Kind,
}

impl ClusterKind {
    /// The `kind` value written to `cluster.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Kind => "kind",
        }
    }
}

/// What `cluster up` needs to know.
#[derive(Clone, Debug)]
pub struct UpOptions {
    /// Where the state lives (made absolute by `up`).
    pub state_dir: PathBuf,
    /// Local processes or kind.
    pub cluster: ClusterKind,
    /// Cluster name.
    pub name: String,
}

impl UpOptions {
    /// A local cluster named [`DEFAULT_NAME`] in `state_dir`.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
            cluster: ClusterKind::Local,
            name: DEFAULT_NAME.to_owned(),
        }
    }
}

/// A running cluster: the content of `cluster.json`.
pub type ClusterState = crate::contract::ClusterInfo;

/// The default state directory: `$KARPENTER_E2E_DIR`, else `<workspace>/target/e2e`.
pub fn default_state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(STATE_DIR_VAR) {
        return PathBuf::from(dir);
    }
    // xtask/ is one level below the workspace root.
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .unwrap_or(manifest_dir)
        .join("target")
        .join("e2e")
}

/// Runs `cargo xtask cluster`.
pub fn run(args: ClusterArgs) -> anyhow::Result<()> {
    match args.command {
        ClusterCommand::Up(a) => {
            let state = up(&UpOptions {
                cluster: a.cluster,
                name: a.name,
                ..UpOptions::new(a.dir.state_dir.unwrap_or_else(default_state_dir))
            })?;
            println!("server:     {}", state.server);
            println!("kubeconfig: {}", state.kubeconfig.display());
            println!(
                "use it:     export KUBECONFIG={}",
                state.kubeconfig.display()
            );
            Ok(())
        }
        ClusterCommand::Down(a) => down(&a.state_dir.unwrap_or_else(default_state_dir)),
        ClusterCommand::Status(a) => status(&a.state_dir.unwrap_or_else(default_state_dir)),
    }
}

/// Brings a cluster up in `opts.state_dir` and writes `cluster.json` and `kubeconfig` there.
///
/// A healthy cluster of the same kind already recorded there is reused; a stale or different one
/// is torn down first. On failure everything started is stopped again (logs are kept).
pub fn up(opts: &UpOptions) -> anyhow::Result<ClusterState> {
    std::fs::create_dir_all(&opts.state_dir)
        .with_context(|| format!("cannot create state dir {}", opts.state_dir.display()))?;
    // Absolute, so PIDs can be matched by the paths in their command lines.
    let state_dir = opts
        .state_dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", opts.state_dir.display()))?;
    let recorded = read_state(&state_dir).unwrap_or_else(|e| {
        eprintln!("warning: ignoring unreadable state: {e:#}");
        None
    });
    if let Some(existing) = recorded {
        if existing.kind == opts.cluster.as_str() && is_healthy(&state_dir, &existing) {
            eprintln!(
                "==> reusing the running {} cluster recorded in {} ({})",
                existing.kind,
                state_dir.display(),
                existing.server
            );
            return Ok(existing);
        }
        eprintln!(
            "==> a stale cluster is recorded in {}: cleaning it up first",
            state_dir.display()
        );
    }
    // Also cleans up after an interrupted `up` that never wrote cluster.json.
    down(&state_dir)?;
    let state = match opts.cluster {
        ClusterKind::Local => {
            let started = Instant::now();
            let result = up_local(&state_dir, &opts.name);
            if result.is_err() {
                eprintln!("==> cluster up failed: stopping what was started (logs are kept)");
                if let Err(e) = down(&state_dir) {
                    eprintln!("warning: cleanup failed too: {e:#}");
                }
            } else {
                eprintln!("==> cluster ready in {:.1?}", started.elapsed());
            }
            result?
        }
        ClusterKind::Kind => kind::up(&state_dir, &opts.name)?,
    };
    write_state(&state_dir, &state)?;
    Ok(state)
}

fn up_local(state_dir: &Path, name: &str) -> anyhow::Result<ClusterState> {
    let bins = build::ensure_binaries()?;
    let layout = Layout::new(state_dir);
    layout.create_dirs()?;
    let creds = certs::generate(&layout)?;
    let ports = Ports::pick()?;
    let server = format!("https://127.0.0.1:{}", ports.apiserver);
    let ca_pem = std::fs::read(layout.ca_cert())?;
    for (path, user, token) in [
        (layout.admin_kubeconfig(), "admin", &creds.admin_token),
        (
            layout.component_kubeconfig("kube-controller-manager"),
            "kube-controller-manager",
            &creds.controller_manager_token,
        ),
        (
            layout.component_kubeconfig("kube-scheduler"),
            "kube-scheduler",
            &creds.scheduler_token,
        ),
    ] {
        let text = certs::render_kubeconfig(name, &server, &ca_pem, user, token);
        certs::write_private(&path, text.as_bytes())?;
    }

    eprintln!("==> starting etcd on 127.0.0.1:{}", ports.etcd_client);
    let mut pids = Vec::new();
    let etcd = process::spawn_detached(
        &layout,
        "etcd",
        &bins.etcd,
        &process::etcd_flags(&layout, &ports),
    )?;
    pids.push(etcd);
    let etcd_url = format!("http://127.0.0.1:{}/health", ports.etcd_client);
    wait_until(&layout, &pids, "etcd", Duration::from_secs(60), || {
        Ok(process::http_get(&etcd_url, None, None)?.1.contains("true"))
    })?;

    eprintln!("==> starting kube-apiserver {KUBERNETES_VERSION} on {server}");
    pids.push(process::spawn_detached(
        &layout,
        "kube-apiserver",
        &bins.apiserver,
        &process::apiserver_flags(&layout, &ports),
    )?);
    let ca = layout.ca_cert();
    let readyz = format!("{server}/readyz");
    wait_until(&layout, &pids, "kube-apiserver", READY_TIMEOUT, || {
        Ok(process::http_get(&readyz, Some(&ca), None)?.0 == 200)
    })?;

    eprintln!("==> starting kube-controller-manager and kube-scheduler");
    pids.push(process::spawn_detached(
        &layout,
        "kube-controller-manager",
        &bins.controller_manager,
        &process::controller_manager_flags(&layout),
    )?);
    pids.push(process::spawn_detached(
        &layout,
        "kube-scheduler",
        &bins.scheduler,
        &process::scheduler_flags(&layout),
    )?);
    // Pods of the default ServiceAccount are refused until its token secret exists.
    let sa_url = format!("{server}/api/v1/namespaces/default/serviceaccounts/default");
    wait_until(
        &layout,
        &pids,
        "kube-controller-manager",
        SERVICE_ACCOUNT_TIMEOUT,
        || {
            let (code, body) = process::http_get(&sa_url, Some(&ca), Some(&creds.admin_token))?;
            Ok(code == 200 && service_account_has_token(&body))
        },
    )?;
    Ok(ClusterState {
        kind: ClusterKind::Local.as_str().to_owned(),
        server,
        kubeconfig: layout.admin_kubeconfig(),
        kubernetes_version: KUBERNETES_VERSION.to_owned(),
        pids,
    })
}

/// Polls `check` until it returns true; fails early when a started process died, and on
/// timeout, printing the tail of `log_of`'s log either way.
fn wait_until(
    layout: &Layout,
    pids: &[u32],
    log_of: &str,
    timeout: Duration,
    mut check: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last_error = String::new();
    loop {
        match check() {
            Ok(true) => return Ok(()),
            Ok(false) => last_error.clear(),
            Err(e) => last_error = format!(" (last error: {e:#})"),
        }
        let records = process::read_records(layout);
        if let Some(dead) = records
            .iter()
            .find(|r| pids.contains(&r.pid) && !process::is_alive(r.pid))
        {
            eprintln!("{}", process::log_tail(layout, &dead.name, 40));
            bail!(
                "{} (pid {}) exited during startup; its log is {} (tail above)",
                dead.name,
                dead.pid,
                layout.log(&dead.name).display()
            );
        }
        if Instant::now() >= deadline {
            eprintln!("{}", process::log_tail(layout, log_of, 40));
            bail!(
                "timed out after {timeout:?} waiting for {log_of}{last_error}; see {} (tail above)",
                layout.log(log_of).display()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn service_account_has_token(body: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("secrets")?.as_array().map(|s| !s.is_empty()))
        .unwrap_or(false)
}

/// Stops the cluster recorded in `state_dir` and removes its state (logs are kept). Safe to call
/// when nothing is up.
pub fn down(state_dir: &Path) -> anyhow::Result<()> {
    let state_dir = state_dir
        .canonicalize()
        .unwrap_or_else(|_| state_dir.to_owned());
    let layout = Layout::new(&state_dir);
    let state = read_state(&state_dir).unwrap_or_else(|e| {
        eprintln!("warning: ignoring unreadable {CLUSTER_JSON}: {e:#}");
        None
    });
    if state.as_ref().is_some_and(|s| s.kind == "kind") {
        kind::down(&state_dir)?;
    }
    // PIDs from both records: cluster.json, and the one written as each process starts (it
    // also covers an `up` interrupted before cluster.json was written).
    let mut pids: Vec<u32> = process::read_records(&layout)
        .iter()
        .map(|r| r.pid)
        .collect();
    for pid in state.iter().flat_map(|s| &s.pids) {
        if !pids.contains(pid) {
            pids.push(*pid);
        }
    }
    let stopped = process::stop(&layout, &pids);
    layout.remove_state()?;
    for file in [CLUSTER_JSON, kind::CONFIG_FILE] {
        remove_file_if_exists(&state_dir.join(file))?;
    }
    if state.is_some() || stopped > 0 {
        eprintln!(
            "==> cluster in {} is down ({stopped} process(es) stopped)",
            state_dir.display()
        );
    }
    Ok(())
}

/// Prints the state of the recorded cluster; fails when it is not up and healthy.
pub fn status(state_dir: &Path) -> anyhow::Result<()> {
    let state_dir = state_dir
        .canonicalize()
        .unwrap_or_else(|_| state_dir.to_owned());
    let Some(state) = read_state(&state_dir)? else {
        bail!(
            "no cluster is up in {} (no {CLUSTER_JSON}); start one with `cargo xtask cluster up`",
            state_dir.display()
        );
    };
    println!(
        "{} cluster {} ({}), kubeconfig {}",
        state.kind,
        state.server,
        state.kubernetes_version,
        state.kubeconfig.display()
    );
    let layout = Layout::new(&state_dir);
    let records = process::read_records(&layout);
    let mut healthy = true;
    for pid in &state.pids {
        match process::our_process(&layout, *pid) {
            Some(name) => println!("  {name:<24} pid {pid:<8} running"),
            None => {
                healthy = false;
                let name = records
                    .iter()
                    .find(|r| r.pid == *pid)
                    .map_or("?", |r| r.name.as_str());
                println!("  {name:<24} pid {pid:<8} NOT running");
            }
        }
    }
    match readyz(&state_dir, &state) {
        Ok(()) => println!("  /readyz                  ok"),
        Err(e) => {
            healthy = false;
            println!("  /readyz                  FAILED: {e:#}");
        }
    }
    if !healthy {
        bail!(
            "the cluster is not healthy; restart it with `cargo xtask cluster down && cargo xtask cluster up`"
        );
    }
    Ok(())
}

fn readyz(state_dir: &Path, state: &ClusterState) -> anyhow::Result<()> {
    if state.kind == "kind" {
        return kind::readyz(&state.kubeconfig);
    }
    let ca = Layout::new(state_dir).ca_cert();
    let (code, body) = process::http_get(&format!("{}/readyz", state.server), Some(&ca), None)?;
    if code != 200 {
        bail!("HTTP {code}: {}", body.trim());
    }
    Ok(())
}

fn is_healthy(state_dir: &Path, state: &ClusterState) -> bool {
    let layout = Layout::new(state_dir);
    state
        .pids
        .iter()
        .all(|pid| process::our_process(&layout, *pid).is_some())
        && readyz(state_dir, state).is_ok()
}

fn read_state(state_dir: &Path) -> anyhow::Result<Option<ClusterState>> {
    let path = state_dir.join(CLUSTER_JSON);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            Ok(Some(serde_json::from_str(&text).with_context(|| {
                format!("cannot parse {}", path.display())
            })?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn write_state(state_dir: &Path, state: &ClusterState) -> anyhow::Result<()> {
    let path = state_dir.join(CLUSTER_JSON);
    let tmp = state_dir.join(format!("{CLUSTER_JSON}.tmp"));
    std::fs::write(&tmp, serde_json::to_string_pretty(state)? + "\n")?;
    // Readers (e2e tests) never see a half-written file.
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))
}

fn remove_file_if_exists(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_json_has_the_e2e_field_names() {
        let state = ClusterState {
            kind: "local".into(),
            server: "https://127.0.0.1:1".into(),
            kubeconfig: "/s/kubeconfig".into(),
            kubernetes_version: KUBERNETES_VERSION.into(),
            pids: vec![1, 2],
        };
        let v: serde_json::Value = serde_json::to_value(&state).unwrap();
        let mut keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            ["kind", "kubeconfig", "kubernetes_version", "pids", "server"]
        );
        // `pids` may be absent (kind clusters written by older tools).
        let no_pids: ClusterState = serde_json::from_str(
            r#"{"kind":"kind","server":"s","kubeconfig":"k","kubernetes_version":"v"}"#,
        )
        .unwrap();
        assert!(no_pids.pids.is_empty());
    }

    #[test]
    fn service_account_token_detection() {
        assert!(!service_account_has_token(r#"{"metadata":{}}"#));
        assert!(!service_account_has_token(r#"{"secrets":[]}"#));
        assert!(service_account_has_token(
            r#"{"secrets":[{"name":"default-token-x"}]}"#
        ));
        assert!(!service_account_has_token("not json"));
    }

    #[test]
    fn down_is_safe_when_nothing_is_up() {
        let dir = std::env::temp_dir().join(format!("xtask-cluster-down-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        down(&dir).unwrap();
        down(&dir.join("missing")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

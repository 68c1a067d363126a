//! The `karpenter` binary as the e2e tests run it: CRDs installed on the bed's API server, the
//! controller started as a child process against the bed (its AWS calls through a fault proxy
//! in front of moto), its log kept under `target/e2e/logs/`, and killed when dropped.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube_client::Client;
use kube_client::api::{Api, Patch, PatchParams};

use crate::env::TestEnv;
use crate::fault_proxy::FaultProxy;
use crate::harness::eventually;

/// The repository root (the e2e crate's parent).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ has a parent")
        .to_path_buf()
}

/// The `karpenter` binary the tests start: `KARPENTER_E2E_BINARY` (the copy `cargo xtask e2e`
/// makes of the one it built), else the build under `CARGO_TARGET_DIR`.
pub fn karpenter_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("KARPENTER_E2E_BINARY") {
        return PathBuf::from(path);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    target.join("debug").join("karpenter")
}

/// Applies the checked-in CRDs (server-side apply) and waits until they are established.
pub async fn install_crds(kube: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(kube.clone());
    let dir = repo_root().join("crds");
    let mut names = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    entries.sort();
    for path in entries {
        let text = std::fs::read_to_string(&path).expect("CRD file reads");
        let crd: CustomResourceDefinition =
            serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let name = crd.metadata.name.clone().expect("CRD has a name");
        api.patch(
            &name,
            &PatchParams::apply("karpenter-e2e").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("applying CRD {name}: {e}"));
        names.push(name);
    }
    for name in names {
        eventually(
            &format!("CRD {name} established"),
            Duration::from_secs(30),
            || {
                let api = api.clone();
                let name = name.clone();
                async move {
                    let crd = api.get(&name).await.ok()?;
                    let established = crd
                        .status?
                        .conditions?
                        .iter()
                        .any(|c| c.type_ == "Established" && c.status == "True");
                    established.then_some(())
                }
            },
        )
        .await;
    }
}

/// A TCP port free on loopback right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

/// A running controller.
pub struct ControllerProcess {
    child: Child,
    /// Where its log goes.
    pub log: PathBuf,
    /// `http://127.0.0.1:<port>/metrics`.
    pub metrics_url: String,
    /// Its health probe port (`/healthz`, `/readyz`).
    pub health_port: u16,
    /// The fault proxy its AWS calls go through.
    pub proxy: FaultProxy,
}

impl ControllerProcess {
    /// Starts `karpenter run` against the bed with test-friendly settings (short batches,
    /// frequent GC, no leader election) plus `extra_env`, which wins.
    pub fn start(env: &TestEnv, test: &str, extra_env: &[(&str, &str)]) -> ControllerProcess {
        let binary = karpenter_binary();
        assert!(
            binary.exists(),
            "{} is missing: run the e2e suite through `cargo xtask e2e` (it builds the controller)",
            binary.display()
        );
        let proxy = FaultProxy::start(&env.aws.endpoint).expect("fault proxy starts");
        let logs = repo_root().join("target/e2e/logs");
        std::fs::create_dir_all(&logs).expect("log dir");
        let log = logs.join(format!("{test}.log"));
        let out = File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file clone");
        let metrics_port = free_port().to_string();
        let health_port = free_port();
        let mut vars: BTreeMap<&str, String> = BTreeMap::from([
            ("KUBECONFIG", env.cluster.kubeconfig.display().to_string()),
            ("CLUSTER_NAME", env.aws.cluster_name.clone()),
            ("CLUSTER_ENDPOINT", env.cluster.server.clone()),
            ("AWS_ENDPOINT_URL", proxy.endpoint()),
            ("AWS_REGION", env.aws.region.clone()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("DISABLE_LEADER_ELECTION", "true".into()),
            ("METRICS_PORT", metrics_port.clone()),
            ("HEALTH_PROBE_PORT", health_port.to_string()),
            ("BATCH_IDLE_DURATION", "1s".into()),
            ("BATCH_MAX_DURATION", "5s".into()),
            ("GC_INTERVAL", "3s".into()),
            ("GC_GRACE", "2s".into()),
            ("LOG_LEVEL", "debug".into()),
            // Our crates at debug; the AWS SDK and kube at info (their debug logs drown ours).
            (
                "RUST_LOG",
                "info,karpenter=debug,karpenter_providers=debug".into(),
            ),
        ]);
        for (k, v) in extra_env {
            vars.insert(k, (*v).to_owned());
        }
        let child = Command::new(&binary)
            .arg("run")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", std::env::var_os("HOME").unwrap_or_default())
            .envs(&vars)
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        ControllerProcess {
            child,
            log,
            metrics_url: format!("http://127.0.0.1:{metrics_port}/metrics"),
            health_port,
            proxy,
        }
    }

    /// The body of `GET /metrics`.
    pub async fn scrape_metrics(&self) -> std::io::Result<String> {
        let address = self
            .metrics_url
            .trim_start_matches("http://")
            .trim_end_matches("/metrics");
        let (_, body) = crate::harness::http_request(address, "GET", "/metrics", "").await?;
        Ok(body)
    }

    /// The last `lines` lines of its log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Panics with the log excerpt if the controller's log shows a Rust panic: the
    /// controller must never panic on cluster data.
    pub fn assert_no_panic(&self) {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        if let Some(at) = log.find("panicked") {
            let from = log[..at].rfind('\n').map_or(0, |i| i + 1);
            let excerpt: Vec<&str> = log[from..].lines().take(15).collect();
            panic!("controller panicked:\n{}", excerpt.join("\n"));
        }
    }

    /// "peak N MiB (now: heap M MiB + binary/files F MiB)" from `/proc/<pid>/status`: the peak
    /// resident set, and how the current one splits into anonymous memory (`RssAnon`: what the
    /// controller allocates) and file-backed pages (`RssFile`: mostly the executable).
    pub fn memory(&self) -> String {
        let mib = |key| {
            self.status_mib(key)
                .map_or("?".to_owned(), |v| format!("{v:.1}"))
        };
        format!(
            "peak {} MiB (now: heap {} MiB + binary/files {} MiB)",
            mib("VmHWM"),
            mib("RssAnon"),
            mib("RssFile")
        )
    }

    fn status_mib(&self, key: &str) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib / 1024.0)
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `timeout` for the process to exit on its own; its exit status, or `None`
    /// if it still runs.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends SIGTERM, as the kubelet does to stop a pod; see [`Self::wait_exit`].
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// Kills the process (as a crash would) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        self.kill();
        // A failing test drops its controller while unwinding: show what the controller was
        // doing, since CI keeps only the test's output and not the log file.
        if std::thread::panicking() {
            eprintln!(
                "--- last 80 lines of the controller's log ({}) ---\n{}\n--- end of the controller's log ---",
                self.log.display(),
                self.log_tail(80)
            );
        }
    }
}

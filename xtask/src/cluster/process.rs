//! The control-plane processes: where their files live, their flags, starting them detached,
//! recognising them by PID and stopping them.

use std::fs::File;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::certs::SERVICE_CIDR;

/// Binaries this module starts; a PID is only ever signalled when its command line names one.
pub const BINARIES: [&str; 4] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

/// The issuer of service-account tokens (what a real cluster uses).
const SERVICE_ACCOUNT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// Where the local cluster keeps its files inside the state directory.
///
/// Everything but the admin `kubeconfig` lives under `<state>/cluster/`, so PIDs can be told
/// apart by that path in their command lines (every process gets at least one flag under it).
#[derive(Clone, Debug)]
pub struct Layout {
    state_dir: PathBuf,
    root: PathBuf,
}

impl Layout {
    /// The layout inside `state_dir` (which should be absolute).
    pub fn new(state_dir: &Path) -> Self {
        Self {
            state_dir: state_dir.to_owned(),
            root: state_dir.join("cluster"),
        }
    }

    /// Creates the directories (the pki one private).
    pub fn create_dirs(&self) -> anyhow::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        for dir in [self.etcd_data(), self.logs()] {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(self.pki())
            .with_context(|| format!("cannot create {}", self.pki().display()))
    }

    /// Removes everything but the logs; missing files are fine.
    pub fn remove_state(&self) -> anyhow::Result<()> {
        for dir in [self.etcd_data(), self.pki()] {
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("cannot remove {}", dir.display()))?;
            }
        }
        for file in [self.records(), self.admin_kubeconfig()] {
            super::remove_file_if_exists(&file)?;
        }
        Ok(())
    }

    /// The marker every process's command line carries.
    fn marker(&self) -> String {
        format!("{}/", self.root.display())
    }
    fn etcd_data(&self) -> PathBuf {
        self.root.join("etcd")
    }
    fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    /// The directory of keys, certificates and tokens.
    pub fn pki(&self) -> PathBuf {
        self.root.join("pki")
    }
    fn records(&self) -> PathBuf {
        self.root.join("pids.json")
    }
    /// The log file of a component.
    pub fn log(&self, name: &str) -> PathBuf {
        self.logs().join(format!("{name}.log"))
    }
    /// The admin kubeconfig: `<state>/kubeconfig`.
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.state_dir.join("kubeconfig")
    }
    /// The kubeconfig a component uses.
    pub fn component_kubeconfig(&self, name: &str) -> PathBuf {
        self.pki().join(format!("{name}.kubeconfig"))
    }
    /// The cluster CA certificate.
    pub fn ca_cert(&self) -> PathBuf {
        self.pki().join("ca.crt")
    }
    /// The cluster CA key.
    pub fn ca_key(&self) -> PathBuf {
        self.pki().join("ca.key")
    }
    /// The API server's serving certificate.
    pub fn apiserver_cert(&self) -> PathBuf {
        self.pki().join("apiserver.crt")
    }
    /// The API server's serving key.
    pub fn apiserver_key(&self) -> PathBuf {
        self.pki().join("apiserver.key")
    }
    /// The service-account signing key.
    pub fn sa_key(&self) -> PathBuf {
        self.pki().join("sa.key")
    }
    /// The service-account verification key.
    pub fn sa_pub(&self) -> PathBuf {
        self.pki().join("sa.pub")
    }
    /// The API server's static token file.
    pub fn tokens(&self) -> PathBuf {
        self.pki().join("tokens.csv")
    }
}

/// Loopback ports picked for this run.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    /// etcd clients.
    pub etcd_client: u16,
    /// etcd peers (only itself, but etcd insists on listening).
    pub etcd_peer: u16,
    /// kube-apiserver HTTPS.
    pub apiserver: u16,
}

impl Ports {
    /// Asks the kernel for free ports: binds them all at once (so they differ), then releases
    /// them for the processes to take.
    pub fn pick() -> anyhow::Result<Self> {
        let listeners = (0..3)
            .map(|_| TcpListener::bind("127.0.0.1:0"))
            .collect::<Result<Vec<_>, _>>()
            .context("cannot bind a free port on 127.0.0.1")?;
        let port = |i: usize| listeners[i].local_addr().map(|a| a.port());
        Ok(Self {
            etcd_client: port(0)?,
            etcd_peer: port(1)?,
            apiserver: port(2)?,
        })
    }
}

fn flag(name: &str, value: impl std::fmt::Display) -> String {
    format!("--{name}={value}")
}

/// etcd: one member on loopback; no fsync (a throwaway test store on a shared disk).
pub fn etcd_flags(l: &Layout, p: &Ports) -> Vec<String> {
    let client = format!("http://127.0.0.1:{}", p.etcd_client);
    let peer = format!("http://127.0.0.1:{}", p.etcd_peer);
    vec![
        flag("name", "default"),
        flag("data-dir", l.etcd_data().display()),
        flag("listen-client-urls", &client),
        flag("advertise-client-urls", &client),
        flag("listen-peer-urls", &peer),
        flag("initial-advertise-peer-urls", &peer),
        flag("initial-cluster", format!("default={peer}")),
        "--unsafe-no-fsync".to_owned(),
        flag("logger", "zap"),
        flag("log-outputs", "stderr"),
    ]
}

/// kube-apiserver v1.20: static tokens for the admin and components, RBAC, service-account
/// token signing; no insecure port (1.20 still has one).
pub fn apiserver_flags(l: &Layout, p: &Ports) -> Vec<String> {
    vec![
        flag(
            "etcd-servers",
            format!("http://127.0.0.1:{}", p.etcd_client),
        ),
        flag("bind-address", "127.0.0.1"),
        flag("secure-port", p.apiserver),
        flag("insecure-port", 0),
        flag("tls-cert-file", l.apiserver_cert().display()),
        flag("tls-private-key-file", l.apiserver_key().display()),
        flag("client-ca-file", l.ca_cert().display()),
        flag("token-auth-file", l.tokens().display()),
        flag("authorization-mode", "RBAC"),
        flag("service-account-key-file", l.sa_pub().display()),
        flag("service-account-signing-key-file", l.sa_key().display()),
        flag("service-account-issuer", SERVICE_ACCOUNT_ISSUER),
        flag("service-cluster-ip-range", SERVICE_CIDR),
        flag("allow-privileged", true),
    ]
}

/// kube-controller-manager: every controller but node IPAM (no pod CIDRs here). The token
/// controller (needs the SA key and root CA) is what lets ReplicaSets create pods; the node
/// lifecycle controller (in `*`) lifts `node.kubernetes.io/not-ready` once a Node is Ready.
/// Controllers use their own service accounts, so RBAC behaves as in a real cluster. No serving
/// ports: fixed defaults would clash between clusters.
pub fn controller_manager_flags(l: &Layout) -> Vec<String> {
    let kubeconfig = l.component_kubeconfig("kube-controller-manager");
    vec![
        flag("kubeconfig", kubeconfig.display()),
        flag("leader-elect", false),
        flag("use-service-account-credentials", true),
        flag("service-account-private-key-file", l.sa_key().display()),
        flag("root-ca-file", l.ca_cert().display()),
        flag("cluster-signing-cert-file", l.ca_cert().display()),
        flag("cluster-signing-key-file", l.ca_key().display()),
        flag("controllers", "*,-nodeipam"),
        flag("bind-address", "127.0.0.1"),
        flag("secure-port", 0),
        flag("port", 0),
        // e2e creates many objects quickly; the default 20 QPS makes ReplicaSets lag.
        flag("kube-api-qps", 100),
        flag("kube-api-burst", 200),
    ]
}

/// kube-scheduler: no serving ports, for the same reason.
pub fn scheduler_flags(l: &Layout) -> Vec<String> {
    vec![
        flag(
            "kubeconfig",
            l.component_kubeconfig("kube-scheduler").display(),
        ),
        flag("leader-elect", false),
        flag("bind-address", "127.0.0.1"),
        flag("secure-port", 0),
        flag("port", 0),
    ]
}

/// One started process, recorded the moment it starts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Binary name.
    pub name: String,
    /// Its PID.
    pub pid: u32,
}

/// The processes recorded in `<state>/cluster/pids.json` (empty when none or unreadable).
pub fn read_records(l: &Layout) -> Vec<Record> {
    std::fs::read_to_string(l.records())
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Starts `bin` in a session of its own (it outlives the xtask and a Ctrl-C in its terminal),
/// output to its log file, and records its PID.
pub fn spawn_detached(l: &Layout, name: &str, bin: &Path, args: &[String]) -> anyhow::Result<u32> {
    let log_path = l.log(name);
    let log =
        File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let pid = child.id();
    let mut records = read_records(l);
    records.push(Record {
        name: name.to_owned(),
        pid,
    });
    std::fs::write(l.records(), serde_json::to_string_pretty(&records)?)
        .with_context(|| format!("cannot write {}", l.records().display()))?;
    Ok(pid)
}

/// Whether `pid` exists and is not a zombie.
pub fn is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| proc_state(&stat))
        .is_some_and(|s| s != 'Z' && s != 'X')
}

/// The state letter of a `/proc/<pid>/stat` line (after the command name, which may hold spaces
/// and parentheses).
fn proc_state(stat: &str) -> Option<char> {
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Which of our binaries a `/proc/<pid>/cmdline` is, if it is one of ours at all: argv\[0\] must
/// name one of [`BINARIES`] and an argument must lie under this cluster's directory (a reused
/// PID, or another state directory's cluster, fails one of the two).
pub fn cmdline_matches(cmdline: &[u8], marker: &str) -> Option<&'static str> {
    let mut args = cmdline
        .split(|b| *b == 0)
        .map(String::from_utf8_lossy)
        .filter(|a| !a.is_empty());
    let argv0 = args.next()?;
    let base = argv0.rsplit('/').next()?;
    let name = BINARIES.into_iter().find(|b| *b == base)?;
    args.any(|a| a.contains(marker)).then_some(name)
}

/// The binary name of `pid` when it is alive and one of this cluster's processes.
pub fn our_process(l: &Layout, pid: u32) -> Option<&'static str> {
    if !is_alive(pid) {
        return None;
    }
    let mut cmdline = Vec::new();
    File::open(format!("/proc/{pid}/cmdline"))
        .ok()?
        .read_to_end(&mut cmdline)
        .ok()?;
    cmdline_matches(&cmdline, &l.marker())
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: plain syscall; the PID was just checked to be one of ours.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Reaps `pid` when it is our own child (an `up` and `down` in one process); harmless otherwise.
fn reap(pid: u32) {
    // SAFETY: plain syscall with WNOHANG; fails with ECHILD for non-children.
    unsafe {
        libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), libc::WNOHANG);
    }
}

fn wait_gone(pids: &[u32], timeout: Duration) -> Vec<u32> {
    let deadline = Instant::now() + timeout;
    loop {
        let alive: Vec<u32> = pids
            .iter()
            .copied()
            .filter(|p| {
                reap(*p);
                is_alive(*p)
            })
            .collect();
        if alive.is_empty() || Instant::now() >= deadline {
            return alive;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Stops those of `pids` that are still this cluster's processes, last started first: SIGTERM,
/// then SIGKILL after a grace period. Returns how many were signalled.
pub fn stop(l: &Layout, pids: &[u32]) -> usize {
    let mut ours = Vec::new();
    for pid in pids.iter().rev() {
        match our_process(l, *pid) {
            Some(name) => {
                eprintln!("==> stopping {name} (pid {pid})");
                signal(*pid, libc::SIGTERM);
                ours.push(*pid);
            }
            None if is_alive(*pid) => eprintln!(
                "note: pid {pid} no longer runs one of this cluster's binaries; leaving it alone"
            ),
            None => {}
        }
    }
    let left = wait_gone(&ours, Duration::from_secs(15));
    for pid in &left {
        eprintln!("==> pid {pid} ignored SIGTERM for 15s: sending SIGKILL");
        signal(*pid, libc::SIGKILL);
    }
    for pid in wait_gone(&left, Duration::from_secs(5)) {
        eprintln!("warning: pid {pid} is still alive after SIGKILL");
    }
    ours.len()
}

/// `GET url` with curl: (HTTP status, body). Errors when no HTTP answer came at all.
pub fn http_get(
    url: &str,
    ca: Option<&Path>,
    token: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let mut cmd = Command::new("curl");
    cmd.args(["--silent", "--show-error", "--max-time", "5"]);
    if let Some(ca) = ca {
        cmd.arg("--cacert").arg(ca);
    }
    if let Some(token) = token {
        cmd.arg("--header")
            .arg(format!("Authorization: Bearer {token}"));
    }
    cmd.args(["--write-out", "\n%{http_code}", url]);
    let out = cmd.output().context("cannot run curl")?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    Ok((code.trim().parse().unwrap_or(0), body.to_owned()))
}

/// The last `n` lines of a component's log, with a header naming the file.
pub fn log_tail(l: &Layout, name: &str, n: usize) -> String {
    let path = l.log(name);
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(n)..].join("\n");
    format!(
        "----- last {n} lines of {} -----\n{tail}\n-----",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout::new(Path::new("/s"))
    }

    fn ports() -> Ports {
        Ports {
            etcd_client: 1001,
            etcd_peer: 1002,
            apiserver: 1003,
        }
    }

    #[test]
    fn etcd_listens_on_loopback_only() {
        let f = etcd_flags(&layout(), &ports());
        assert!(f.contains(&"--data-dir=/s/cluster/etcd".to_owned()));
        assert!(f.contains(&"--listen-client-urls=http://127.0.0.1:1001".to_owned()));
        assert!(f.contains(&"--listen-peer-urls=http://127.0.0.1:1002".to_owned()));
        assert!(f.contains(&"--initial-cluster=default=http://127.0.0.1:1002".to_owned()));
    }

    #[test]
    fn apiserver_flags_cover_auth_and_service_accounts() {
        let f = apiserver_flags(&layout(), &ports());
        for want in [
            "--etcd-servers=http://127.0.0.1:1001",
            "--secure-port=1003",
            "--bind-address=127.0.0.1",
            "--insecure-port=0",
            "--authorization-mode=RBAC",
            "--token-auth-file=/s/cluster/pki/tokens.csv",
            "--tls-cert-file=/s/cluster/pki/apiserver.crt",
            "--service-account-key-file=/s/cluster/pki/sa.pub",
            "--service-account-signing-key-file=/s/cluster/pki/sa.key",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--service-cluster-ip-range=10.96.0.0/12",
        ] {
            assert!(f.contains(&want.to_owned()), "missing {want} in {f:?}");
        }
    }

    #[test]
    fn controller_manager_runs_token_and_node_lifecycle_controllers() {
        let f = controller_manager_flags(&layout());
        for want in [
            "--kubeconfig=/s/cluster/pki/kube-controller-manager.kubeconfig",
            "--leader-elect=false",
            "--service-account-private-key-file=/s/cluster/pki/sa.key",
            "--root-ca-file=/s/cluster/pki/ca.crt",
            // `*` includes nodelifecycle and serviceaccount-token; only IPAM is off.
            "--controllers=*,-nodeipam",
            "--port=0",
            "--secure-port=0",
        ] {
            assert!(f.contains(&want.to_owned()), "missing {want} in {f:?}");
        }
        let s = scheduler_flags(&layout());
        assert!(s.contains(&"--leader-elect=false".to_owned()));
        assert!(s.contains(&"--kubeconfig=/s/cluster/pki/kube-scheduler.kubeconfig".to_owned()));
    }

    #[test]
    fn every_process_carries_the_marker() {
        let l = layout();
        let marker = l.marker();
        for flags in [
            etcd_flags(&l, &ports()),
            apiserver_flags(&l, &ports()),
            controller_manager_flags(&l),
            scheduler_flags(&l),
        ] {
            assert!(flags.iter().any(|f| f.contains(&marker)), "{flags:?}");
        }
    }

    #[test]
    fn cmdline_check_needs_our_binary_and_our_directory() {
        let marker = "/s/cluster/";
        let ours = b"/root/.cache/k/kube-apiserver\0--secure-port=1\0--tls-cert-file=/s/cluster/pki/a.crt\0";
        assert_eq!(cmdline_matches(ours, marker), Some("kube-apiserver"));
        let etcd = b"/usr/bin/etcd\0--data-dir=/s/cluster/etcd\0";
        assert_eq!(cmdline_matches(etcd, marker), Some("etcd"));
        // A reused PID: some other program.
        assert_eq!(
            cmdline_matches(b"/usr/bin/python3\0/s/cluster/x\0", marker),
            None
        );
        // Our binary, but another state directory's cluster.
        let other = b"/usr/bin/etcd\0--data-dir=/s2/cluster/etcd\0";
        assert_eq!(cmdline_matches(other, marker), None);
        assert_eq!(cmdline_matches(b"", marker), None);
    }

    #[test]
    fn proc_stat_state_survives_odd_command_names() {
        assert_eq!(proc_state("12 (etcd) S 1 12 12"), Some('S'));
        assert_eq!(proc_state("12 (a) b) Z 1"), Some('Z'));
        assert_eq!(proc_state("garbage"), None);
        assert!(is_alive(std::process::id()));
    }

    #[test]
    fn picks_distinct_ports() {
        let p = Ports::pick().unwrap();
        assert!(p.etcd_client != p.etcd_peer && p.etcd_peer != p.apiserver);
    }
}

//! The control-plane binaries: etcd from Debian's `etcd-server`, and kube-apiserver,
//! kube-controller-manager and kube-scheduler v1.20.2 built from Debian bookworm's `kubernetes`
//! source package (`shared/design.md` §4), cached in `~/.cache/karpenter-rs/k8s-v1.20.2/` so
//! only the first run on a machine builds. Every step is idempotent and says what it changes.

use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};

use super::KUBERNETES_VERSION;

/// The three Kubernetes binaries we build.
pub const K8S_BINARIES: [&str; 3] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];
/// Top directory of the upstream tree in Debian's `.orig.tar.gz`.
const TREE: &str = "kubernetes-1.20.2";
const GO_BIN: &str = "/usr/lib/go-1.19/bin";
/// Debian's reflect2 1.0.2: the vendored 1.0.1 crashes kube-apiserver built with Go 1.19
/// (`fatal error: fault` in UnsafeIterate on the first custom-resource create).
const REFLECT2_SRC: &str = "/usr/share/gocode/src/github.com/modern-go/reflect2";
const REFLECT2_VENDOR: &str = "vendor/github.com/modern-go/reflect2";
/// Our deb-src entry, written only when no bookworm deb-src entry exists.
const DEB_SRC_FILE: &str = "/etc/apt/sources.list.d/karpenter-rs-deb-src.sources";
/// Written into the unpacked tree once it is patched.
const PATCHED_MARKER: &str = ".karpenter-rs-patched";

/// Paths of the binaries a local cluster runs.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// etcd (Debian's).
    pub etcd: PathBuf,
    /// kube-apiserver.
    pub apiserver: PathBuf,
    /// kube-controller-manager.
    pub controller_manager: PathBuf,
    /// kube-scheduler.
    pub scheduler: PathBuf,
}

/// `~/.cache/karpenter-rs`: everything built or downloaded for the test bed.
pub fn cache_root() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache").join("karpenter-rs")
}

/// Where the built binaries are kept, keyed by version.
pub fn bin_cache_dir() -> PathBuf {
    cache_root().join(format!("k8s-{KUBERNETES_VERSION}"))
}

/// Makes sure every binary exists (installing or building what is missing) and returns them.
pub fn ensure_binaries() -> anyhow::Result<Binaries> {
    ensure_packages(
        &["curl", "openssl"],
        "to generate certificates and poll the API server",
    )?;
    let etcd = match which("etcd") {
        Some(p) => p,
        None => {
            ensure_packages(&["etcd-server"], "etcd for the local control plane")?;
            which("etcd").context("etcd-server is installed but `etcd` is not on PATH")?
        }
    };
    let dir = bin_cache_dir();
    if !K8S_BINARIES.iter().all(|b| is_executable(&dir.join(b))) {
        build_kubernetes(&dir)?;
    }
    Ok(Binaries {
        etcd,
        apiserver: dir.join(K8S_BINARIES[0]),
        controller_manager: dir.join(K8S_BINARIES[1]),
        scheduler: dir.join(K8S_BINARIES[2]),
    })
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn is_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Abbrev}", package])
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout.starts_with(b"ii"))
}

static APT_UPDATED: AtomicBool = AtomicBool::new(false);

fn apt_get(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()
        .context("cannot run apt-get (this needs a Debian machine)")?;
    if !out.status.success() {
        bail!(
            "`apt-get {}` failed:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn apt_update() -> anyhow::Result<()> {
    eprintln!("==> apt-get update");
    apt_get(&["update", "-q"])?;
    APT_UPDATED.store(true, Ordering::Relaxed);
    Ok(())
}

fn require_root(what: &str) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("{what} needs root; run it as root or do it by hand, then run this again");
    }
    Ok(())
}

/// Makes sure `prometheus` is on PATH (the dashboards e2e test runs one), installing Debian's
/// package when it is not.
pub fn ensure_prometheus() -> anyhow::Result<()> {
    if which("prometheus").is_none() {
        ensure_packages(
            &["prometheus"],
            "the dashboards e2e test scrapes the controller with it",
        )?;
    }
    Ok(())
}

/// Installs the Debian packages that are missing, announcing it.
pub fn ensure_packages(packages: &[&str], why: &str) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !is_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    eprintln!("==> installing Debian packages {list} ({why})");
    require_root(&format!("`apt-get install {list}`"))?;
    if !APT_UPDATED.load(Ordering::Relaxed) {
        apt_update()?;
    }
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(&missing);
    apt_get(&args).with_context(|| format!("could not install {list}; install it by hand"))
}

/// A deb822 stanza: its fields, in order.
type Stanza = Vec<(String, String)>;

fn parse_deb822(text: &str) -> Vec<Stanza> {
    let mut stanzas = vec![Stanza::new()];
    for line in text.lines() {
        if line.trim().is_empty() {
            stanzas.push(Stanza::new());
        } else if line.starts_with('#') {
            continue;
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = stanzas.last_mut().and_then(|s| s.last_mut()) {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':')
            && let Some(s) = stanzas.last_mut()
        {
            s.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    stanzas.retain(|s| !s.is_empty());
    stanzas
}

fn field<'a>(s: &'a Stanza, name: &str) -> Option<&'a str> {
    s.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn has_word(s: &Stanza, name: &str, word: &str) -> bool {
    field(s, name).is_some_and(|v| v.split_whitespace().any(|w| w == word))
}

/// Whether sources text (deb822 `.sources` or one-line `.list`) has a bookworm `deb-src` entry.
pub fn has_bookworm_deb_src(text: &str, deb822: bool) -> bool {
    if deb822 {
        return parse_deb822(text).iter().any(|s| {
            has_word(s, "types", "deb-src")
                && has_word(s, "suites", "bookworm")
                && field(s, "enabled").is_none_or(|v| v != "no")
        });
    }
    text.lines().any(|l| {
        // Drop the `[option=value …]` block, which may hold spaces.
        let l = match (l.find('['), l.find(']')) {
            (Some(a), Some(b)) if a < b => format!("{}{}", &l[..a], &l[b + 1..]),
            _ => l.to_owned(),
        };
        let words: Vec<&str> = l.split_whitespace().collect();
        words.first() == Some(&"deb-src") && words.get(2) == Some(&"bookworm")
    })
}

/// A `deb-src` stanza for bookworm `main`, mirroring the machine's own bookworm `deb` entry
/// (same mirror, snapshot and key); Debian's defaults when there is none.
pub fn deb_src_stanza(sources: &str) -> String {
    let stanzas = parse_deb822(sources);
    let deb = stanzas
        .iter()
        .find(|s| has_word(s, "types", "deb") && has_word(s, "suites", "bookworm"));
    let uris = deb
        .and_then(|s| field(s, "uris"))
        .unwrap_or("http://deb.debian.org/debian");
    let key = deb
        .and_then(|s| field(s, "signed-by"))
        .unwrap_or("/usr/share/keyrings/debian-archive-keyring.gpg");
    format!(
        "# Added by `cargo xtask cluster up` (karpenter-rs): Debian's `kubernetes` source package,\n\
         # from which kube-apiserver/-controller-manager/-scheduler v1.20.2 are built.\n\
         Types: deb-src\n\
         URIs: {uris}\n\
         Suites: bookworm\n\
         Components: main\n\
         Signed-By: {key}\n"
    )
}

fn read_sources() -> Vec<(PathBuf, String)> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = dir.filter_map(|e| Some(e.ok()?.path())).collect();
        more.sort();
        files.extend(more);
    }
    files
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "sources" || e == "list"))
        .filter_map(|p| Some((p.clone(), std::fs::read_to_string(&p).ok()?)))
        .collect()
}

fn source_available() -> bool {
    Command::new("apt-cache")
        .args(["showsrc", "--only-source", "kubernetes"])
        .output()
        .is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains("Package: kubernetes")
        })
}

/// Makes `apt-get source kubernetes` work: adds a bookworm deb-src entry when there is none.
fn ensure_deb_src() -> anyhow::Result<()> {
    if source_available() {
        return Ok(());
    }
    let sources = read_sources();
    let present = sources
        .iter()
        .any(|(p, t)| has_bookworm_deb_src(t, p.extension().is_some_and(|e| e == "sources")));
    if !present {
        let deb822: String = sources
            .iter()
            .filter(|(p, _)| p.extension().is_some_and(|e| e == "sources"))
            .map(|(_, t)| format!("{t}\n\n"))
            .collect();
        let stanza = deb_src_stanza(&deb822);
        eprintln!("==> adding a deb-src entry for bookworm to apt: {DEB_SRC_FILE}");
        require_root(&format!("writing {DEB_SRC_FILE}"))?;
        std::fs::write(DEB_SRC_FILE, stanza)
            .with_context(|| format!("cannot write {DEB_SRC_FILE}"))?;
    }
    apt_update()?;
    if !source_available() {
        bail!(
            "apt still cannot find the `kubernetes` source package after adding a bookworm deb-src \
             entry; check /etc/apt/sources.list.d/ (this needs Debian bookworm's archive)"
        );
    }
    Ok(())
}

/// Holds an exclusive lock on `path` while alive (two concurrent `up`s would build twice in the
/// same tree).
struct BuildLock {
    _file: File,
}

impl BuildLock {
    fn acquire(path: &Path) -> anyhow::Result<Self> {
        let f = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            eprintln!("==> another build holds {}: waiting for it", path.display());
            // SAFETY: as above.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
                bail!("cannot lock {}", path.display());
            }
        }
        Ok(Self { _file: f })
    }
}

fn run_logged(cmd: &mut Command, what: &str, log: &Path) -> anyhow::Result<()> {
    let out = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let status = cmd
        .stdout(out.try_clone()?)
        .stderr(out)
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("cannot start {what}"))?;
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        bail!(
            "{what} failed ({status}); last lines of {}:\n{}",
            log.display(),
            lines[lines.len().saturating_sub(30)..].join("\n")
        );
    }
    Ok(())
}

/// Builds the three binaries into `dest` (see the module docs).
fn build_kubernetes(dest: &Path) -> anyhow::Result<()> {
    let build = cache_root().join("build");
    std::fs::create_dir_all(&build)
        .with_context(|| format!("cannot create {}", build.display()))?;
    let _lock = BuildLock::acquire(&build.join(".lock"))?;
    if K8S_BINARIES.iter().all(|b| is_executable(&dest.join(b))) {
        return Ok(()); // Another process built them while we waited.
    }
    eprintln!(
        "==> kube-apiserver/-controller-manager/-scheduler {KUBERNETES_VERSION} are not in {}: \
         building them from Debian's source once (a few minutes; needs ~4 GB in {})",
        dest.display(),
        build.display()
    );
    let started = Instant::now();
    ensure_packages(
        &[
            "dpkg-dev",
            "golang-1.19-go",
            "rsync",
            "make",
            "golang-github-modern-go-reflect2-dev",
        ],
        "to build Kubernetes v1.20.2 from source",
    )?;
    ensure_deb_src()?;

    eprintln!(
        "==> apt-get source --download-only kubernetes (into {})",
        build.display()
    );
    let mut cmd = Command::new("apt-get");
    // Sandbox user root: _apt cannot write into root's ~/.cache.
    cmd.current_dir(&build).args([
        "source",
        "--download-only",
        "-o",
        "APT::Sandbox::User=root",
        "kubernetes",
    ]);
    run_logged(
        &mut cmd,
        "apt-get source kubernetes",
        &build.join("download.log"),
    )?;
    let orig = find_orig_tarball(&build)?;

    let tree = build.join(TREE);
    if !tree.join(PATCHED_MARKER).exists() {
        if tree.exists() {
            std::fs::remove_dir_all(&tree)
                .with_context(|| format!("cannot remove the stale tree {}", tree.display()))?;
        }
        eprintln!("==> unpacking {}", orig.display());
        let mut cmd = Command::new("tar");
        cmd.current_dir(&build).arg("xzf").arg(&orig);
        run_logged(&mut cmd, "tar", &build.join("unpack.log"))?;
        if !tree.join("vendor").is_dir() {
            bail!(
                "{} does not hold {TREE}/vendor: bookworm's kubernetes source is not the \
                 expected v1.20.2 tree",
                orig.display()
            );
        }
        patch_reflect2(&tree)?;
        std::fs::write(tree.join(PATCHED_MARKER), "")?;
    }

    let log = build.join("make.log");
    eprintln!(
        "==> make WHAT=\"cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler\" \
         (Go 1.19; log: {})",
        log.display()
    );
    let gopath = tree.join(".go");
    let link = gopath.join("src/k8s.io/kubernetes");
    std::fs::create_dir_all(link.parent().expect("has a parent"))?;
    if std::fs::symlink_metadata(&link).is_err() {
        // The build scripts expect the tree inside GOPATH as k8s.io/kubernetes.
        std::os::unix::fs::symlink("../../..", &link)?;
    }
    let path = std::env::var("PATH").unwrap_or_default();
    let mut cmd = Command::new("make");
    cmd.current_dir(&tree)
        .arg("WHAT=cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler")
        .env("PATH", format!("{GO_BIN}:{path}"))
        .env("GOPATH", &gopath)
        .env("CGO_ENABLED", "0")
        // (The build's Go cache is the tree's `_output/local/go/cache`: after an interruption
        // the patched tree is reused, so a rerun resumes rather than starts over.)
        .env_remove("GOROOT")
        .env_remove("GOFLAGS");
    run_logged(&mut cmd, "the Kubernetes build (make)", &log)?;

    install_binaries(&tree.join("_output/bin"), dest)?;
    eprintln!(
        "==> built and cached {KUBERNETES_VERSION} in {} ({:.0?}); removing the build tree",
        dest.display(),
        started.elapsed()
    );
    if let Err(e) = std::fs::remove_dir_all(&tree) {
        eprintln!("warning: could not remove {}: {e}", tree.display());
    }
    Ok(())
}

fn find_orig_tarball(build: &Path) -> anyhow::Result<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(build)?
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("kubernetes_") && n.contains("1.20.2.orig.tar.gz"))
        })
        .collect();
    found.sort();
    found.pop().with_context(|| {
        format!(
            "no kubernetes_*1.20.2.orig.tar.gz in {} after `apt-get source`: Debian's kubernetes \
             source is not v1.20.2 (is apt pointed at bookworm?)",
            build.display()
        )
    })
}

/// Swaps the vendored reflect2 for Debian's 1.0.2 (without its go.mod, which would make Go
/// treat it as a nested module).
fn patch_reflect2(tree: &Path) -> anyhow::Result<()> {
    eprintln!("==> patching {REFLECT2_VENDOR} with Debian's reflect2 1.0.2 ({REFLECT2_SRC})");
    if !Path::new(REFLECT2_SRC).is_dir() {
        bail!("{REFLECT2_SRC} is missing: install golang-github-modern-go-reflect2-dev");
    }
    let vendored = tree.join(REFLECT2_VENDOR);
    std::fs::remove_dir_all(&vendored)
        .with_context(|| format!("cannot remove {}", vendored.display()))?;
    // -L: Debian's gocode trees may hold symlinks.
    let status = Command::new("cp")
        .args(["-rL", REFLECT2_SRC])
        .arg(&vendored)
        .status()?;
    if !status.success() {
        bail!("copying {REFLECT2_SRC} into {} failed", vendored.display());
    }
    for f in ["go.mod", "go.sum"] {
        super::remove_file_if_exists(&vendored.join(f))?;
    }
    Ok(())
}

/// Copies the binaries into a temporary directory next to `dest`, checks their version, then
/// renames it into place: an interrupted build never leaves a half-filled cache.
fn install_binaries(from: &Path, dest: &Path) -> anyhow::Result<()> {
    let parent = dest.parent().expect("cache dir has a parent");
    let tmp = parent.join(format!(
        ".k8s-{KUBERNETES_VERSION}.tmp-{}",
        std::process::id()
    ));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir_all(&tmp)?;
    for b in K8S_BINARIES {
        std::fs::copy(from.join(b), tmp.join(b))
            .with_context(|| format!("the build did not produce {}", from.join(b).display()))?;
        let out = Command::new(tmp.join(b)).arg("--version").output()?;
        let version = String::from_utf8_lossy(&out.stdout);
        if !version.contains(KUBERNETES_VERSION) {
            bail!(
                "{b} --version says {:?}, expected {KUBERNETES_VERSION}",
                version.trim()
            );
        }
    }
    if dest.exists() {
        std::fs::remove_dir_all(dest)?; // An older, incomplete cache.
    }
    std::fs::rename(&tmp, dest)
        .with_context(|| format!("cannot move {} to {}", tmp.display(), dest.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // This machine's sources file (deb822, pinned mirror in a comment).
    const SOURCES: &str = "Types: deb\n\
        # http://snapshot.debian.org/archive/debian/20250520T000000Z\n\
        URIs: http://deb.debian.org/debian\n\
        Suites: bookworm bookworm-updates\n\
        Components: main\n\
        Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\
        \n\
        Types: deb\n\
        URIs: http://deb.debian.org/debian-security\n\
        Suites: bookworm-security\n\
        Components: main\n\
        Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n";

    #[test]
    fn deb_src_entry_mirrors_the_bookworm_deb_entry() {
        assert!(!has_bookworm_deb_src(SOURCES, true));
        let stanza = deb_src_stanza(SOURCES);
        assert!(stanza.contains("\nTypes: deb-src\n"), "{stanza}");
        assert!(
            stanza.contains("\nURIs: http://deb.debian.org/debian\n"),
            "{stanza}"
        );
        assert!(stanza.contains("\nSuites: bookworm\n"), "{stanza}");
        assert!(
            stanza.contains("\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"),
            "{stanza}"
        );
        assert!(has_bookworm_deb_src(&stanza, true));
    }

    #[test]
    fn deb_src_detection_in_both_formats() {
        let disabled = "Types: deb deb-src\nURIs: x\nSuites: bookworm\nEnabled: no\n";
        assert!(!has_bookworm_deb_src(disabled, true));
        assert!(has_bookworm_deb_src(
            "Types: deb deb-src\nURIs: x\nSuites: bookworm\n",
            true
        ));
        assert!(has_bookworm_deb_src(
            "deb-src [arch=amd64 signed-by=/k.gpg] http://deb.debian.org/debian bookworm main\n",
            false
        ));
        assert!(!has_bookworm_deb_src(
            "deb http://deb.debian.org/debian bookworm main\n# deb-src x bookworm main\n",
            false
        ));
        assert!(!has_bookworm_deb_src(
            "deb-src http://deb.debian.org/debian trixie main\n",
            false
        ));
    }

    #[test]
    fn falls_back_to_debian_defaults() {
        let stanza = deb_src_stanza("");
        assert!(stanza.contains("URIs: http://deb.debian.org/debian\n"));
    }
}

//! `cargo xtask static-check`: builds `karpenter` the way the `Dockerfile` does (glibc with
//! `+crt-static` on `x86_64-unknown-linux-gnu`), checks that the ELF file is static (no program
//! interpreter, no `DT_NEEDED`), and runs it the way `gcr.io/distroless/static` would: chrooted
//! into a directory holding only the binary and a few `/etc` files, as uid 65532, with no shared
//! library at all. It checks `--version`, `crds`, and that `karpenter run` resolves the API
//! server's host name through `/etc/hosts` and through DNS: a static glibc cannot load
//! `libnss_*.so`, so this only works through the `files` and `dns` modules built into libc
//! (as in bookworm's glibc 2.36).
//!
//! The image itself cannot be built here (no container engine); this tests what goes in it.

use std::fs;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

/// The target the image is built for; explicit so `+crt-static` skips build scripts and
/// proc-macros, and so these artifacts live apart from the host build's in the target dir.
pub const TARGET: &str = "x86_64-unknown-linux-gnu";
/// distroless's `nonroot` user and group, which the chart's securityContext runs as.
const NONROOT: u32 = 65532;
/// Resolved through the chroot's `/etc/hosts`.
const HOSTS_NAME: &str = "kube-hosts.static-check.test";
/// Resolved only by the check's DNS responder (the chroot's `/etc/resolv.conf` names it).
const DNS_NAME: &str = "kube-dns.static-check.test";
/// Where the DNS responder listens: resolv.conf cannot name a port, and 127.0.0.2 is loopback
/// too on Linux, so it leaves 127.0.0.1:53 to whatever local resolver the machine has.
const DNS_ADDR: &str = "127.0.0.2:53";
/// Debian's CA bundle, at the same path in distroless/static.
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// How long `karpenter run` gets to connect to the fake API server.
const CONNECT_DEADLINE: Duration = Duration::from_secs(60);

/// Options of `cargo xtask static-check`.
#[derive(clap::Args)]
pub struct StaticCheckArgs {
    /// Build with the release profile (what the image ships) instead of the dev profile. Being
    /// static, and resolving names without NSS libraries, do not depend on the profile.
    #[arg(long)]
    pub release: bool,
    /// Check this binary (e.g. one copied out of a built image) instead of building one.
    #[arg(long, value_name = "PATH", conflicts_with = "release")]
    pub binary: Option<PathBuf>,
}

/// Builds (unless `--binary`), checks the ELF file, runs the chroot checks, prints a report,
/// and fails when any check failed.
pub fn run(args: StaticCheckArgs) -> Result<()> {
    let (binary, build) = match &args.binary {
        Some(path) => (path.clone(), None),
        None => {
            let started = Instant::now();
            let path = build(args.release)?;
            (path, Some(started.elapsed()))
        }
    };
    let built_size = fs::metadata(&binary)
        .with_context(|| format!("reading {}", binary.display()))?
        .len();
    // The bed holds the binary as the image ships it (debug info stripped); that copy is the
    // one checked and run.
    let bed = ChrootBed::create(&binary)?;
    let shipped = bed.root.join("karpenter");
    let bytes = fs::read(&shipped).with_context(|| format!("reading {}", shipped.display()))?;
    let linkage = ElfLinkage::parse(&bytes).with_context(|| binary.display().to_string())?;
    let shipped_size = bytes.len() as u64;
    drop(bytes);

    let mut checks: Vec<(&str, Result<String>)> = Vec::new();
    if linkage.is_static() && !is_root() {
        checks.push(("chroot", Err(anyhow::anyhow!("needs root; not run"))));
    } else if linkage.is_static() {
        eprintln!("==> running it in a chroot of {}", bed.root.display());
        checks.push(("--version", check_version(&bed)));
        checks.push(("crds", check_crds(&bed)));
        checks.push(("/etc/hosts", check_resolves(&bed, HOSTS_NAME, None)));
        checks.push(("DNS", check_dns(&bed)));
    }

    println!("static-check report");
    let mib = |bytes: u64| bytes as f64 / f64::from(1u32 << 20);
    println!(
        "  binary   {} ({:.1} MiB; {:.1} MiB with debug info stripped, as shipped)",
        binary.display(),
        mib(built_size),
        mib(shipped_size)
    );
    match build {
        Some(took) => println!(
            "  build    {} profile, RUSTFLAGS=\"-C target-feature=+crt-static\" --target {TARGET}: {}",
            if args.release { "release" } else { "dev" },
            format_duration(took)
        ),
        None => println!("  build    none (--binary)"),
    }
    println!("  static   {}", linkage.describe());
    if !linkage.is_static() {
        bail!("{} is not statically linked", binary.display());
    }
    let mut failed = 0;
    for (name, result) in &checks {
        match result {
            Ok(detail) => println!("  ok       {name}: {detail}"),
            Err(e) => {
                failed += 1;
                println!("  FAILED   {name}: {e:#}");
            }
        }
    }
    ensure!(failed == 0, "{failed} of {} checks failed", checks.len());
    Ok(())
}

/// `cargo build -p karpenter --bin karpenter --target x86_64-unknown-linux-gnu` with
/// `+crt-static`; returns the executable's path in the target dir cargo reports (so
/// `CARGO_TARGET_DIR` and a configured `build.target-dir` are honoured).
fn build(release: bool) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut rustflags = std::env::var("RUSTFLAGS").unwrap_or_default();
    if !rustflags.is_empty() {
        rustflags.push(' ');
    }
    rustflags.push_str("-C target-feature=+crt-static");
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(workspace_root())
        .args(["build", "-p", "karpenter", "--bin", "karpenter"])
        .args(["--target", TARGET])
        // CARGO_ENCODED_RUSTFLAGS would win over RUSTFLAGS.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("RUSTFLAGS", &rustflags);
    if release {
        cmd.arg("--release");
    }
    eprintln!(
        "==> RUSTFLAGS=\"{rustflags}\" cargo build -p karpenter --bin karpenter --target {TARGET}{}",
        if release { " --release" } else { "" }
    );
    let status = cmd.status().context("could not start cargo")?;
    ensure!(status.success(), "cargo build failed ({status})");
    let metadata = Command::new(&cargo)
        .current_dir(workspace_root())
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("could not start cargo metadata")?;
    ensure!(metadata.status.success(), "cargo metadata failed");
    let target_dir = target_directory(&metadata.stdout).context("reading cargo metadata")?;
    let profile = if release { "release" } else { "debug" };
    Ok(target_dir.join(TARGET).join(profile).join("karpenter"))
}

/// `target_directory` of `cargo metadata`'s output.
fn target_directory(metadata: &[u8]) -> Result<PathBuf> {
    let metadata: serde_json::Value = serde_json::from_slice(metadata)?;
    let dir = metadata["target_directory"]
        .as_str()
        .context("no target_directory")?;
    Ok(PathBuf::from(dir))
}

fn workspace_root() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_path_buf()
}

fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{:.2}s", d.as_secs_f64())
    }
}
mod dns;
mod elf;

use dns::DnsResponder;
use elf::ElfLinkage;

/// A directory laid out like distroless/static's root as a pod sees it, holding only the
/// binary: distroless's passwd, group, nsswitch.conf and CA bundle; the hosts and resolv.conf
/// the kubelet mounts; /tmp and the nonroot home. No shared library, no /proc, no /dev.
struct ChrootBed {
    /// Parent of `root`; also holds the logs.
    dir: PathBuf,
    /// The chroot.
    root: PathBuf,
    /// The `chroot` program.
    chroot: PathBuf,
}

impl ChrootBed {
    fn create(binary: &Path) -> Result<ChrootBed> {
        let dir =
            std::env::temp_dir().join(format!("karpenter-static-check-{}", std::process::id()));
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        let root = dir.join("root");
        let chroot = find_program("chroot").context("no `chroot` program (coreutils) in PATH")?;
        let bed = ChrootBed { dir, root, chroot };
        let mkdir = |path: &str, mode: u32| -> Result<()> {
            let p = bed.root.join(path);
            fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(&p)
                .with_context(|| format!("creating {}", p.display()))?;
            // The umask may have narrowed the mode (and /tmp needs its sticky bit).
            fs::set_permissions(&p, fs::Permissions::from_mode(mode))?;
            Ok(())
        };
        mkdir("", 0o755)?;
        mkdir("etc", 0o755)?;
        mkdir("tmp", 0o1777)?;
        mkdir("home/nonroot", 0o700)?;
        if is_root() {
            std::os::unix::fs::chown(bed.root.join("home/nonroot"), Some(NONROOT), Some(NONROOT))?;
        }
        let write = |path: &str, text: &str| -> Result<()> {
            let p = bed.root.join(path);
            fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o644))?;
            Ok(())
        };
        write(
            "etc/passwd",
            "root:x:0:0:root:/root:/sbin/nologin\n\
             nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n\
             nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
        )?;
        write(
            "etc/group",
            "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n",
        )?;
        write("etc/nsswitch.conf", "hosts: files dns\n")?;
        write(
            "etc/hosts",
            &format!("127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.0.1\t{HOSTS_NAME}\n"),
        )?;
        let nameserver = DNS_ADDR.split(':').next().unwrap_or_default();
        write(
            "etc/resolv.conf",
            &format!("nameserver {nameserver}\noptions timeout:2 attempts:2\n"),
        )?;
        // distroless/static ships Debian's CA bundle. It is needed: with no CA in the
        // kubeconfig (even with insecure-skip-tls-verify) kube's rustls client asks the
        // platform verifier for the system roots and refuses to start without any.
        mkdir("etc/ssl/certs", 0o755)?;
        fs::copy(CA_BUNDLE, bed.root.join(&CA_BUNDLE[1..]))
            .with_context(|| format!("copying {CA_BUNDLE} (install ca-certificates)"))?;
        // As the Dockerfile does: the release profile keeps line tables, which make the
        // binary ~7 times larger; symbols stay, so backtraces still name functions.
        let target = bed.root.join("karpenter");
        let objcopy = find_program("objcopy").context("no `objcopy` (binutils) in PATH")?;
        let status = Command::new(objcopy)
            .arg("--strip-debug")
            .arg(binary)
            .arg(&target)
            .status()
            .context("starting objcopy")?;
        ensure!(
            status.success(),
            "objcopy --strip-debug {} failed",
            binary.display()
        );
        fs::set_permissions(&target, fs::Permissions::from_mode(0o755))?;
        Ok(bed)
    }

    /// `chroot --userspec=65532:65532 <root> /karpenter <args>` with distroless's environment
    /// and `env`, nothing inherited.
    fn command(&self, args: &[&str], env: &[(&str, String)]) -> Command {
        // Looked up here: with env_clear() the child's (empty) PATH would be searched.
        let mut cmd = Command::new(&self.chroot);
        cmd.arg(format!("--userspec={NONROOT}:{NONROOT}"))
            .arg(&self.root)
            .arg("/karpenter")
            .args(args)
            .env_clear()
            // What distroless/static's image config sets, and the home of its nonroot user.
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("SSL_CERT_FILE", CA_BUNDLE)
            .env("HOME", "/home/nonroot");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `name` in this process's PATH or the sbin directories (chroot lives in /usr/sbin).
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

impl Drop for ChrootBed {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Runs `karpenter <args>` in the chroot; its stdout when it exits 0.
fn run_ok(bed: &ChrootBed, args: &[&str]) -> Result<String> {
    let out = bed.command(args, &[]).output().context("starting chroot")?;
    ensure!(
        out.status.success(),
        "exit {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `karpenter --version` exits 0 and names itself.
fn check_version(bed: &ChrootBed) -> Result<String> {
    let stdout = run_ok(bed, &["--version"])?;
    ensure!(stdout.starts_with("karpenter "), "printed {stdout:?}");
    Ok(format!("{:?}", stdout.trim()))
}

/// `karpenter crds` prints the three CustomResourceDefinitions.
fn check_crds(bed: &ChrootBed) -> Result<String> {
    let stdout = run_ok(bed, &["crds"])?;
    let count = stdout.matches("kind: CustomResourceDefinition").count();
    ensure!(count == 3, "{count} CRDs printed, expected 3");
    let names = [
        "nodepools.karpenter.sh",
        "nodeclaims.karpenter.sh",
        "ec2nodeclasses.karpenter.k8s.aws",
    ];
    for name in names {
        ensure!(stdout.contains(&format!("name: {name}")), "{name} missing");
    }
    Ok(format!("3 CRDs ({})", names.join(", ")))
}

/// Runs `karpenter run` with a kubeconfig whose server is `https://<host>:<port>`, a local
/// listener on that port, and passes when a TLS ClientHello for `host` arrives there: the
/// process resolved `host` to 127.0.0.1 with no NSS library present.
fn check_resolves(bed: &ChrootBed, host: &str, dns: Option<&DnsResponder>) -> Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding the fake API server")?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let server = format!("https://{host}:{port}");
    fs::write(bed.root.join("kubeconfig"), kubeconfig(&server))?;
    fs::set_permissions(
        bed.root.join("kubeconfig"),
        fs::Permissions::from_mode(0o644),
    )?;
    let log_path = bed.dir.join(format!("run-{host}.log"));
    let log = fs::File::create(&log_path)?;
    let env = [
        ("KUBECONFIG", "/kubeconfig".to_string()),
        ("CLUSTER_NAME", "static-check".to_string()),
        // Set so DescribeCluster is never needed should start-up get that far.
        ("CLUSTER_ENDPOINT", server.clone()),
        ("DISABLE_LEADER_ELECTION", "true".to_string()),
        ("METRICS_PORT", free_port()?.to_string()),
        ("HEALTH_PROBE_PORT", free_port()?.to_string()),
        ("AWS_REGION", "us-west-2".to_string()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ("AWS_ACCESS_KEY_ID", "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:1".to_string()),
    ];
    let mut child = bed
        .command(&["run"], &env)
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting chroot")?;
    let started = Instant::now();
    let outcome = wait_for_hello(&listener, &mut child, host, started + CONNECT_DEADLINE);
    // chroot execs karpenter, so this is the controller's pid.
    let _ = child.kill();
    let _ = child.wait();
    let took = started.elapsed();
    let log_tail = || {
        let text = fs::read_to_string(&log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n    ")
    };
    outcome.with_context(|| format!("karpenter run, last log lines:\n    {}", log_tail()))?;
    let mut detail = format!(
        "{host} → 127.0.0.1:{port}, TLS ClientHello for it after {}",
        format_duration(took)
    );
    if let Some(dns) = dns {
        let seen = dns.queries();
        ensure!(
            seen.iter().any(|(name, qtype)| name == host && *qtype == 1),
            "connected, but the DNS responder saw no A query for {host} (saw {seen:?})"
        );
        detail.push_str(&format!(", A query seen at {DNS_ADDR}"));
    }
    Ok(detail)
}

/// The same as the `/etc/hosts` check for a name only the check's DNS responder knows.
fn check_dns(bed: &ChrootBed) -> Result<String> {
    let dns = DnsResponder::start(DNS_NAME)?;
    check_resolves(bed, DNS_NAME, Some(&dns))
}

/// Accepts the first connection before `deadline` and reads a TLS ClientHello naming `host`
/// (SNI); fails early when the process exits first.
fn wait_for_hello(
    listener: &TcpListener,
    child: &mut Child,
    host: &str,
    deadline: Instant,
) -> Result<()> {
    let stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e).context("accepting"),
        }
        if let Some(status) = child.try_wait()? {
            bail!("exited ({status}) without connecting");
        }
        if Instant::now() >= deadline {
            bail!("no connection within {}s", CONNECT_DEADLINE.as_secs());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let hello = read_hello(stream, deadline)?;
    ensure!(
        is_client_hello_for(&hello, host),
        "the connection did not start with a TLS ClientHello for {host} ({} bytes)",
        hello.len()
    );
    Ok(())
}

/// Reads what the client sends first (rustls writes its ClientHello in one go).
fn read_hello(mut stream: TcpStream, deadline: Instant) -> Result<Vec<u8>> {
    stream.set_nonblocking(false)?;
    let mut hello = Vec::new();
    let mut buf = [0u8; 4096];
    while hello.len() < 16 * 1024 {
        let left = deadline.saturating_duration_since(Instant::now());
        ensure!(
            !left.is_zero(),
            "connected, but sent no ClientHello in time"
        );
        stream.set_read_timeout(Some(left))?;
        let n = stream.read(&mut buf).context("reading the ClientHello")?;
        if n == 0 {
            break;
        }
        hello.extend_from_slice(&buf[..n]);
        // Record header: type, version, 2-byte length.
        if hello.len() >= 5 && hello.len() >= 5 + u16::from_be_bytes([hello[3], hello[4]]) as usize
        {
            break;
        }
    }
    Ok(hello)
}

/// A TLS handshake record (a ClientHello) carrying `host` (the SNI extension).
fn is_client_hello_for(bytes: &[u8], host: &str) -> bool {
    bytes.len() > 5
        && bytes[0] == 0x16
        && bytes[5] == 0x01
        && bytes.windows(host.len()).any(|w| w == host.as_bytes())
}

fn kubeconfig(server: &str) -> String {
    format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: static-check\n  cluster:\n    server: {server}\n    insecure-skip-tls-verify: true\n\
         users:\n\
         - name: static-check\n  user:\n    token: static-check-dummy-token\n\
         contexts:\n\
         - name: static-check\n  context:\n    cluster: static-check\n    user: static-check\n\
         current-context: static-check\n"
    )
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::dns::*;
    use super::elf::*;
    use super::*;

    /// A minimal ELF64 file: header, program headers, then `data` at offset 0x200. Each header
    /// is (p_type, offset, vaddr, filesz).
    fn elf(headers: &[(u32, u64, u64, u64)], data: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 0x200];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2; // ELFCLASS64
        f[5] = 1; // little-endian
        f[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        f[0x36..0x38].copy_from_slice(&0x38u16.to_le_bytes());
        f[0x38..0x3a].copy_from_slice(&(headers.len() as u16).to_le_bytes());
        for (i, &(kind, offset, vaddr, size)) in headers.iter().enumerate() {
            let h = 0x40 + i * 0x38;
            f[h..h + 4].copy_from_slice(&kind.to_le_bytes());
            f[h + 8..h + 16].copy_from_slice(&offset.to_le_bytes());
            f[h + 16..h + 24].copy_from_slice(&vaddr.to_le_bytes());
            f[h + 32..h + 40].copy_from_slice(&size.to_le_bytes());
        }
        f.extend_from_slice(data);
        f
    }

    fn dynamic(entries: &[(u64, u64)]) -> Vec<u8> {
        entries
            .iter()
            .flat_map(|(t, v)| t.to_le_bytes().into_iter().chain(v.to_le_bytes()))
            .collect()
    }

    #[test]
    fn no_interpreter_and_no_dynamic_segment_is_static() {
        let l = ElfLinkage::parse(&elf(&[(PT_LOAD, 0, 0x1000, 0x200)], &[])).unwrap();
        assert!(l.is_static());
        assert!(!l.has_dynamic);
    }

    #[test]
    fn a_dynamic_segment_without_needed_libraries_is_static_pie() {
        let d = dynamic(&[(0x6fff_fffb, 0x0800_0000), (DT_NULL, 0)]);
        let f = elf(
            &[(PT_LOAD, 0, 0, 0x300), (PT_DYNAMIC, 0x200, 0x200, 32)],
            &d,
        );
        let l = ElfLinkage::parse(&f).unwrap();
        assert!(l.is_static() && l.has_dynamic, "{l:?}");
        assert!(l.describe().starts_with("yes (static-pie"));
    }

    #[test]
    fn interpreter_and_needed_libraries_are_read() {
        // data at 0x200: interpreter, string table at 0x220, dynamic section at 0x240.
        let mut data = b"/lib64/ld-linux-x86-64.so.2\0".to_vec();
        data.resize(0x20, 0);
        data.extend_from_slice(b"\0libc.so.6\0libm.so.6\0");
        data.resize(0x40, 0);
        // The string table is mapped at 0x10220 (segment 0 at vaddr 0x10000).
        data.extend(dynamic(&[
            (DT_NEEDED, 1),
            (DT_STRTAB, 0x10220),
            (DT_NEEDED, 11),
            (DT_NULL, 0),
        ]));
        let f = elf(
            &[
                (PT_INTERP, 0x200, 0x10200, 28),
                (PT_LOAD, 0, 0x10000, 0x300),
                (PT_DYNAMIC, 0x240, 0x10240, 64),
            ],
            &data,
        );
        let l = ElfLinkage::parse(&f).unwrap();
        assert_eq!(
            l,
            ElfLinkage {
                interpreter: Some("/lib64/ld-linux-x86-64.so.2".into()),
                needed: vec!["libc.so.6".into(), "libm.so.6".into()],
                has_dynamic: true,
            }
        );
        assert!(!l.is_static());
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(ElfLinkage::parse(b"#!/bin/sh\n").is_err());
        assert!(ElfLinkage::parse(b"\x7fELF").is_err());
        let mut f = elf(&[(PT_INTERP, 0x1000_0000, 0, 8)], &[]);
        assert!(ElfLinkage::parse(&f).is_err(), "interpreter past the end");
        f[4] = 1; // ELFCLASS32
        assert!(ElfLinkage::parse(&f).is_err());
    }

    /// This test binary is an ordinary (dynamic) host build.
    #[test]
    fn host_binaries_are_dynamic() {
        let mut paths = vec![std::env::current_exe().unwrap()];
        if Path::new("/bin/ls").exists() {
            paths.push("/bin/ls".into());
        }
        for path in paths {
            let l = ElfLinkage::parse(&fs::read(&path).unwrap()).unwrap();
            assert!(!l.is_static(), "{}: {l:?}", path.display());
            assert!(l.interpreter.is_some(), "{}: {l:?}", path.display());
            assert!(
                l.needed.iter().any(|n| n.starts_with("libc.so")),
                "{}: {l:?}",
                path.display()
            );
        }
    }

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&[0, 1]);
        q
    }

    #[test]
    fn dns_answers_a_for_its_name_only() {
        let (asked, qtype, r) =
            dns_reply(&query("Kube-DNS.static-check.test", 1), DNS_NAME).unwrap();
        assert_eq!((asked.as_str(), qtype), (DNS_NAME, 1));
        assert_eq!(&r[..2], &[0x12, 0x34], "same id");
        assert_eq!(r[3] & 0x0f, 0, "NOERROR");
        assert_eq!(&r[6..8], &[0, 1], "one answer");
        assert_eq!(&r[r.len() - 4..], &[127, 0, 0, 1]);

        let (_, _, r) = dns_reply(&query(DNS_NAME, 28), DNS_NAME).unwrap();
        assert_eq!((r[3] & 0x0f, r[7]), (0, 0), "AAAA: NOERROR, no answer");

        let (_, _, r) = dns_reply(&query("other.test", 1), DNS_NAME).unwrap();
        assert_eq!((r[3] & 0x0f, r[7]), (3, 0), "NXDOMAIN");

        assert!(dns_reply(&[0; 5], DNS_NAME).is_none());
        let mut truncated = query(DNS_NAME, 1);
        truncated.truncate(truncated.len() - 3);
        assert!(dns_reply(&truncated, DNS_NAME).is_none());
    }

    #[test]
    fn client_hello_must_name_the_host() {
        let hello = [
            &[0x16, 0x03, 0x01, 0x00, 0x40, 0x01][..],
            b"..kube-hosts.static-check.test..",
        ]
        .concat();
        assert!(is_client_hello_for(&hello, HOSTS_NAME));
        assert!(!is_client_hello_for(&hello, DNS_NAME));
        assert!(!is_client_hello_for(
            b"GET / HTTP/1.1\r\nHost: kube-hosts.static-check.test",
            HOSTS_NAME
        ));
    }

    #[test]
    fn the_target_dir_comes_from_cargo_metadata() {
        let metadata = br#"{"packages":[],"target_directory":"/cache/static-target","version":1}"#;
        assert_eq!(
            target_directory(metadata).unwrap(),
            PathBuf::from("/cache/static-target")
        );
        assert!(target_directory(b"{}").is_err());
    }
}

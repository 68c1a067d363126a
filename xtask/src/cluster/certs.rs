//! Credentials of the local cluster, made with the `openssl` CLI: a CA, the API server's serving
//! certificate, the service-account key pair, static bearer tokens, and kubeconfigs.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

use super::process::Layout;

/// Service ClusterIP range of the local cluster.
pub const SERVICE_CIDR: &str = "10.96.0.0/12";
/// The `kubernetes` Service's ClusterIP (first address of [`SERVICE_CIDR`]).
const KUBERNETES_SERVICE_IP: &str = "10.96.0.1";

/// Bearer tokens of the cluster's users (the API server's `--token-auth-file`).
#[derive(Clone, Debug)]
pub struct Credentials {
    /// `admin`, in `system:masters`.
    pub admin_token: String,
    /// `system:kube-controller-manager` (RBAC bootstrap roles cover it).
    pub controller_manager_token: String,
    /// `system:kube-scheduler`.
    pub scheduler_token: String,
}

/// Names the serving certificate is valid for: loopback and the in-cluster service names.
pub fn serving_sans() -> Vec<String> {
    let mut sans: Vec<String> = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    .iter()
    .enumerate()
    .map(|(i, d)| format!("DNS.{} = {d}", i + 1))
    .collect();
    sans.push("IP.1 = 127.0.0.1".into());
    sans.push(format!("IP.2 = {KUBERNETES_SERVICE_IP}"));
    sans
}

/// openssl configuration with the extensions rustls/webpki and Go insist on (a CA marked as
/// such; a serving certificate with SANs and serverAuth), independent of the system's
/// openssl.cnf defaults.
pub fn openssl_config() -> String {
    format!(
        "[req]\n\
         distinguished_name = dn\n\
         prompt = no\n\
         [dn]\n\
         CN = karpenter-rs-e2e\n\
         [v3_ca]\n\
         basicConstraints = critical,CA:TRUE\n\
         keyUsage = critical,keyCertSign,cRLSign,digitalSignature\n\
         subjectKeyIdentifier = hash\n\
         [v3_server]\n\
         basicConstraints = critical,CA:FALSE\n\
         keyUsage = critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage = serverAuth\n\
         subjectKeyIdentifier = hash\n\
         authorityKeyIdentifier = keyid\n\
         subjectAltName = @alt_names\n\
         [alt_names]\n\
         {}\n",
        serving_sans().join("\n")
    )
}

/// Runs `openssl` in the pki directory; `args` are whitespace-separated (none holds spaces).
fn openssl(pki: &Path, args: &str) -> anyhow::Result<()> {
    let out = Command::new("openssl")
        .current_dir(pki)
        .args(args.split_whitespace())
        .output()
        .context("cannot run openssl (install Debian's `openssl` package)")?;
    if !out.status.success() {
        bail!(
            "`openssl {args}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Generates every key, certificate and token into the layout's pki directory (fresh each `up`).
pub fn generate(layout: &Layout) -> anyhow::Result<Credentials> {
    let pki = layout.pki();
    std::fs::write(pki.join("openssl.cnf"), openssl_config())?;
    let days = 3650;
    openssl(
        &pki,
        &format!(
            "req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days {days} \
             -subj /CN=karpenter-rs-e2e-ca -config openssl.cnf -extensions v3_ca"
        ),
    )?;
    openssl(
        &pki,
        "req -new -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr \
         -subj /CN=kube-apiserver -config openssl.cnf",
    )?;
    openssl(
        &pki,
        &format!(
            "x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -set_serial 0x{} -days {days} \
             -out apiserver.crt -extfile openssl.cnf -extensions v3_server",
            random_hex(16)?
        ),
    )?;
    openssl(
        &pki,
        "genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key",
    )?;
    openssl(&pki, "pkey -in sa.key -pubout -out sa.pub")?;

    let creds = Credentials {
        admin_token: random_hex(32)?,
        controller_manager_token: random_hex(32)?,
        scheduler_token: random_hex(32)?,
    };
    write_private(&layout.tokens(), token_file(&creds).as_bytes())?;
    Ok(creds)
}

/// The `--token-auth-file` CSV: `token,user,uid,"groups"`.
pub fn token_file(c: &Credentials) -> String {
    format!(
        "{},admin,admin,\"system:masters\"\n\
         {},system:kube-controller-manager,system:kube-controller-manager\n\
         {},system:kube-scheduler,system:kube-scheduler\n",
        c.admin_token, c.controller_manager_token, c.scheduler_token
    )
}

/// A kubeconfig with the CA embedded (so it can be copied anywhere) and a bearer token.
pub fn render_kubeconfig(
    name: &str,
    server: &str,
    ca_pem: &[u8],
    user: &str,
    token: &str,
) -> String {
    format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: {name}\n\
         \x20 cluster:\n\
         \x20   server: {server}\n\
         \x20   certificate-authority-data: {ca}\n\
         users:\n\
         - name: {user}\n\
         \x20 user:\n\
         \x20   token: {token}\n\
         contexts:\n\
         - name: {name}\n\
         \x20 context:\n\
         \x20   cluster: {name}\n\
         \x20   user: {user}\n\
         current-context: {name}\n",
        ca = base64(ca_pem)
    )
}

/// Writes a file only its owner can read (it holds credentials).
pub fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(contents)?;
    Ok(())
}

fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Standard base64 with padding (kubeconfig `*-data` fields).
pub fn base64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want);
        }
    }

    #[test]
    fn kubeconfig_embeds_ca_server_and_token() {
        let k = render_kubeconfig("c1", "https://127.0.0.1:6443", b"foo", "admin", "t0k");
        assert!(k.contains("    server: https://127.0.0.1:6443\n"), "{k}");
        assert!(k.contains("    certificate-authority-data: Zm9v\n"), "{k}");
        assert!(
            k.contains("- name: admin\n  user:\n    token: t0k\n"),
            "{k}"
        );
        assert!(k.contains("    cluster: c1\n    user: admin\n"), "{k}");
        assert!(k.ends_with("current-context: c1\n"), "{k}");
    }

    #[test]
    fn serving_certificate_covers_loopback_and_service_names() {
        let cnf = openssl_config();
        for want in [
            "IP.1 = 127.0.0.1",
            "IP.2 = 10.96.0.1",
            "DNS.1 = localhost",
            "DNS.3 = kubernetes.default",
            "DNS.5 = kubernetes.default.svc.cluster.local",
            "extendedKeyUsage = serverAuth",
            "basicConstraints = critical,CA:TRUE",
        ] {
            assert!(cnf.contains(want), "missing {want} in\n{cnf}");
        }
    }

    #[test]
    fn admin_is_a_cluster_admin_and_components_use_their_rbac_names() {
        let t = token_file(&Credentials {
            admin_token: "a".into(),
            controller_manager_token: "c".into(),
            scheduler_token: "s".into(),
        });
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "a,admin,admin,\"system:masters\"");
        assert!(lines[1].starts_with("c,system:kube-controller-manager,"));
        assert!(lines[2].starts_with("s,system:kube-scheduler,"));
    }
}

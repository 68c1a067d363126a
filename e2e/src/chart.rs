//! Helm on the bed: the `helm` binary `cargo xtask e2e` provides, the chart, the seed's command
//! line, and a kubeconfig that acts as the chart's ServiceAccount.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube_client::api::Api;
use serde_json::json;
use serde_yaml::Value;

use crate::controller::repo_root;
use crate::harness::{Ctx, eventually};

/// The controller role ARN of the seed's command line.
pub const ROLE_ARN: &str = "arn:aws:iam::111122223333:role/KarpenterControllerRole-prod";

/// The `helm` binary (`HELM`, set by `cargo xtask e2e`).
pub fn helm() -> PathBuf {
    PathBuf::from(
        std::env::var_os("HELM")
            .expect("HELM is not set: run the e2e tests through `cargo xtask e2e`"),
    )
}

/// `charts/karpenter`.
pub fn chart() -> PathBuf {
    repo_root().join("charts/karpenter")
}

/// A values file like the seed's (dedicated nodegroup placement).
pub fn values_file() -> PathBuf {
    repo_root().join("e2e/tests/fixtures/seed-values.yaml")
}

/// The seed's `-f` and `--set` flags, as typed in its shell.
pub fn seed_flags(cluster: &str, endpoint: &str) -> String {
    format!(
        "-f {values} --set serviceAccount.annotations.\"eks\\.amazonaws\\.com/role-arn\"=\"{ROLE_ARN}\" \
         --set settings.clusterName={cluster} --set settings.clusterEndpoint='{endpoint}' \
         --set settings.interruptionQueue=\"{cluster}-interruptions\"",
        values = values_file().display()
    )
}

/// Runs `helm <args>` through `sh -c`; its stdout, or a panic with stderr.
pub fn sh_helm(args: &str) -> String {
    let line = format!("{} {args}", helm().display());
    let out = Command::new("sh").args(["-c", &line]).output().expect("sh");
    assert!(
        out.status.success(),
        "{line}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Uninstalls the release `karpenter` from namespace `karpenter` when dropped.
pub struct Release {
    /// The admin kubeconfig.
    pub kubeconfig: String,
}

impl Drop for Release {
    fn drop(&mut self) {
        let _ = Command::new(helm())
            .args(["uninstall", "karpenter", "--namespace", "karpenter"])
            .args(["--kubeconfig", &self.kubeconfig])
            .output();
    }
}

/// A kubeconfig for the bed's API server with the token of the chart's ServiceAccount
/// (`karpenter/karpenter`), so the controller runs with the chart's RBAC alone.
pub async fn service_account_kubeconfig(ctx: &Ctx) -> PathBuf {
    let sas: Api<ServiceAccount> = Api::namespaced(ctx.kube.clone(), "karpenter");
    let secret_name = eventually(
        "the ServiceAccount's token Secret",
        Duration::from_secs(60),
        || async {
            let sa = sas.get("karpenter").await.ok()?;
            sa.secrets?.first()?.name.clone()
        },
    )
    .await;
    let secrets: Api<Secret> = Api::namespaced(ctx.kube.clone(), "karpenter");
    let secret = secrets.get(&secret_name).await.expect("token Secret");
    let token = String::from_utf8(secret.data.unwrap()["token"].0.clone()).unwrap();
    let admin: Value =
        serde_yaml::from_str(&std::fs::read_to_string(&ctx.env.cluster.kubeconfig).unwrap())
            .unwrap();
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "bed", "cluster": {
            "server": ctx.env.cluster.server,
            "certificate-authority-data": admin["clusters"][0]["cluster"]["certificate-authority-data"].as_str(),
        }}],
        "users": [{"name": "karpenter", "user": {"token": token}}],
        "contexts": [{"name": "karpenter", "context": {"cluster": "bed", "user": "karpenter"}}],
        "current-context": "karpenter",
    });
    let path = ctx
        .env
        .state_dir
        .join(format!("kubeconfig-karpenter-sa-{}", ctx.id));
    std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
    path
}

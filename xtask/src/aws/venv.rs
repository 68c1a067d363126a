//! The Python venv moto runs from: created once per moto and Python version, cached in
//! `~/.cache/karpenter-rs/`, re-created only when it is missing or broken.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// moto release the fake AWS runs (pinned: its EC2 quirks are what the test bed is built around).
pub const MOTO_VERSION: &str = "5.2.5";

/// A venv with `moto[server]` and boto3.
pub struct Venv {
    /// Root of the venv.
    pub dir: PathBuf,
}

impl Venv {
    /// The venv's interpreter. Only this is used (never the `bin/` scripts), so the venv
    /// still works after being renamed into place.
    pub fn python(&self) -> PathBuf {
        self.dir.join("bin").join("python")
    }

    /// Why the venv cannot run the launcher, or `None` when it can.
    fn problem(&self) -> Option<String> {
        let check = format!(
            "import moto, boto3, flask, werkzeug\n\
             assert moto.__version__ == '{MOTO_VERSION}', 'moto ' + moto.__version__"
        );
        match Command::new(self.python()).args(["-c", &check]).output() {
            Ok(out) if out.status.success() => None,
            Ok(out) => Some(
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("import check failed")
                    .to_owned(),
            ),
            Err(e) => Some(format!("{}: {e}", self.python().display())),
        }
    }
}

/// `~/.cache` (or `$XDG_CACHE_HOME`).
fn cache_home() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    Ok(PathBuf::from(home).join(".cache"))
}

/// The venv directory name for a Python `major``minor` tag, e.g. `moto-5.2.5-py311`.
pub fn dir_name(python_tag: &str) -> String {
    format!("moto-{MOTO_VERSION}-py{python_tag}")
}

/// `311` for Python 3.11: the venv is tied to the interpreter that created it.
fn python_tag() -> Result<String> {
    let out = Command::new("python3")
        .args(["-c", "import sys; print('%d%d' % sys.version_info[:2])"])
        .output()
        .context("running python3 (install Python 3 with venv support, e.g. apt-get install python3-venv)")?;
    anyhow::ensure!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("starting {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// Returns the cached venv, creating it when it is missing or broken.
pub fn ensure() -> Result<Venv> {
    let venv = Venv {
        dir: cache_home()?
            .join("karpenter-rs")
            .join(dir_name(&python_tag()?)),
    };
    if venv.dir.exists() {
        match venv.problem() {
            None => return Ok(venv),
            Some(problem) => {
                eprintln!(
                    "==> the moto venv {} is broken ({problem}); re-creating it",
                    venv.dir.display()
                );
                std::fs::remove_dir_all(&venv.dir)
                    .with_context(|| format!("removing {}", venv.dir.display()))?;
            }
        }
    }
    create(&venv.dir)?;
    if let Some(problem) = venv.problem() {
        bail!(
            "the new moto venv {} does not work: {problem}",
            venv.dir.display()
        );
    }
    Ok(venv)
}

/// Builds the venv next to `dir` and renames it into place, so an interrupted creation never
/// leaves a half-installed venv where the next run would trust it.
fn create(dir: &Path) -> Result<()> {
    let parent = dir.parent().expect("venv dir has a parent");
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let tmp = parent.join(format!(
        ".{}.tmp-{}",
        dir.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    let started = Instant::now();
    eprintln!(
        "==> creating the moto venv {} (once; about a minute)",
        dir.display()
    );
    run(
        Command::new("python3").arg("-m").arg("venv").arg(&tmp),
        "python3 -m venv (on Debian/Ubuntu: apt-get install python3-venv)",
    )?;
    eprintln!("==> pip install moto[server]=={MOTO_VERSION} boto3");
    let installed = run(
        Command::new(tmp.join("bin").join("python")).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-input",
            &format!("moto[server]=={MOTO_VERSION}"),
            "boto3",
        ]),
        "pip install moto[server] boto3",
    );
    if let Err(e) = installed {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if let Err(e) = std::fs::rename(&tmp, dir) {
        // Another `up` may have won the race; its venv is as good as ours.
        let _ = std::fs::remove_dir_all(&tmp);
        if !dir.exists() {
            return Err(e).with_context(|| format!("renaming the venv to {}", dir.display()));
        }
    }
    eprintln!("==> moto venv ready in {:.0?}", started.elapsed());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn venv_name_pins_moto_and_python() {
        assert_eq!(dir_name("311"), format!("moto-{MOTO_VERSION}-py311"));
    }
}

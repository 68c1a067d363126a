//! `cargo xtask crds`: regenerates `crds/` (the CustomResourceDefinitions) and the chart's copy
//! `charts/karpenter/crds/` with `karpenter crds`, or with `--check` fails when either
//! checked-in copy is stale.
//!
//! xtask runs the binary instead of linking the API crates, so it builds without them.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// Options of `cargo xtask crds`.
#[derive(clap::Args)]
pub struct CrdsArgs {
    /// Generate into a scratch directory and fail if `crds/` differs, instead of writing it.
    #[arg(long)]
    pub check: bool,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Runs `cargo run -q -p karpenter -- crds --output-dir <dir>`.
fn generate_into(root: &Path, dir: &Path) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root)
        .args(["run", "-q", "-p", "karpenter", "--", "crds", "--output-dir"])
        .arg(dir)
        .status()
        .context("could not start cargo")?;
    if !status.success() {
        bail!("karpenter crds failed ({status})");
    }
    Ok(())
}

/// File names and contents of the YAML files in `dir` (empty when it does not exist).
fn yaml_files(dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text =
                fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            files.push((name, text));
        }
    }
    files.sort();
    Ok(files)
}

/// Where the CRDs are checked in: the repository's `crds/` and the chart's (Helm installs a
/// chart's `crds/` on first install; it cannot point elsewhere).
const OUTPUTS: [&str; 2] = ["crds", "charts/karpenter/crds"];

/// Regenerates the CRDs, or checks them with `--check`.
pub fn run(args: CrdsArgs) -> anyhow::Result<()> {
    let root = workspace_root();
    if !args.check {
        for out in OUTPUTS {
            eprintln!("==> karpenter crds --output-dir {out}");
            let dir = root.join(out);
            generate_into(&root, &dir)?;
            for (name, _) in yaml_files(&dir)? {
                println!("wrote {out}/{name}");
            }
        }
        return Ok(());
    }
    let scratch = root.join("target").join("xtask-crds-check");
    if scratch.exists() {
        fs::remove_dir_all(&scratch).with_context(|| format!("clearing {}", scratch.display()))?;
    }
    generate_into(&root, &scratch)?;
    let fresh = yaml_files(&scratch)?;
    let mut stale = Vec::new();
    for out in OUTPUTS {
        let checked_in = yaml_files(&root.join(out))?;
        let names: BTreeSet<&String> = fresh.iter().chain(&checked_in).map(|(n, _)| n).collect();
        for n in names {
            let find = |files: &[(String, String)]| {
                files.iter().find(|(m, _)| m == n).map(|(_, t)| t.clone())
            };
            if find(&fresh) != find(&checked_in) {
                stale.push(format!("{out}/{n}"));
            }
        }
    }
    if !stale.is_empty() {
        bail!(
            "stale CRDs: {}; run `cargo xtask crds` and commit the result",
            stale.join(", ")
        );
    }
    println!(
        "{} are up to date ({} files each)",
        OUTPUTS.join(" and "),
        fresh.len()
    );
    Ok(())
}

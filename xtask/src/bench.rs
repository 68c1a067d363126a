//! `cargo xtask bench [--quick]`: the scheduling benchmark (criterion, Karpenter's "diverse"
//! workload over 400 synthetic types at 1k–50k pods) and the packing-quality report on the real
//! EC2 catalog (`providers/examples/packing.rs`), both in release mode, with a summary table.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use anyhow::{Context, ensure};

/// Options of `cargo xtask bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Criterion's quick mode and a single packing run per size (a rough pass in ~1 minute).
    #[arg(long)]
    pub quick: bool,
}

/// One size of the scheduling benchmark.
#[derive(Debug, Default)]
struct Row {
    pods: u64,
    nodes: Option<String>,
    median: Option<String>,
    thrpt: Option<String>,
}

/// The middle figure of criterion's `[low median high]` triple, e.g. `35.568 ms`.
fn middle(line: &str) -> Option<String> {
    let inner = line.split('[').nth(1)?.split(']').next()?;
    let parts: Vec<&str> = inner.split_whitespace().collect();
    (parts.len() == 6).then(|| format!("{} {}", parts[2], parts[3]))
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("==> cargo bench -p karpenter-core --bench scheduling");
    let mut cmd = Command::new(&cargo);
    cmd.args(["bench", "-p", "karpenter-core", "--bench", "scheduling"]);
    if args.quick {
        cmd.args(["--", "--quick"]);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .context("running cargo bench")?;
    let stdout = child.stdout.take().context("bench stdout")?;
    let mut rows: Vec<Row> = Vec::new();
    let mut current: Option<usize> = None;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("diverse/") {
            let n: String = rest.chars().take_while(char::is_ascii_digit).collect();
            let Ok(pods) = n.parse::<u64>() else { continue };
            let i = match rows.iter().position(|r| r.pods == pods) {
                Some(i) => i,
                None => {
                    rows.push(Row {
                        pods,
                        ..Row::default()
                    });
                    rows.len() - 1
                }
            };
            current = Some(i);
            if let Some(nodes) = rest.split(": ").nth(1).filter(|s| s.contains("nodes")) {
                rows[i].nodes = nodes.split(' ').next().map(str::to_string);
            }
            if trimmed.contains("time:")
                && let Some(m) = middle(trimmed)
            {
                rows[i].median.get_or_insert(m);
            }
        } else if let Some(i) = current
            && let Some(m) = middle(trimmed)
        {
            // Criterion's change-since-last-run lines have three figures, not six: skipped.
            if trimmed.starts_with("time:") {
                rows[i].median.get_or_insert(m);
            } else if trimmed.starts_with("thrpt:") {
                rows[i].thrpt.get_or_insert(m);
            }
        }
    }
    let status = child.wait()?;
    ensure!(status.success(), "cargo bench failed");

    println!("\nScheduling benchmark (diverse pods, 400 synthetic types; criterion medians)\n");
    println!("| pods | median time | throughput | nodes launched |");
    println!("|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} |",
            r.pods,
            r.median.as_deref().unwrap_or("?"),
            r.thrpt
                .as_deref()
                .map(|t| t.replace("Kelem/s", "k pods/s").replace("elem/s", "pods/s"))
                .unwrap_or_else(|| "?".into()),
            r.nodes.as_deref().unwrap_or("?"),
        );
    }

    eprintln!("\n==> cargo run --release -p karpenter-providers --example packing");
    let mut cmd = Command::new(&cargo);
    cmd.args([
        "run",
        "--release",
        "-q",
        "-p",
        "karpenter-providers",
        "--example",
        "packing",
    ]);
    if args.quick {
        cmd.args(["--", "--quick"]);
    }
    println!("\nPacking quality (generic pods, real EC2 catalog, one unconstrained pool)\n");
    let status = cmd.status().context("running the packing example")?;
    ensure!(status.success(), "packing example failed");
    Ok(())
}

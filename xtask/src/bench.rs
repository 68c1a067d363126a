//! `cargo xtask bench [--quick]`: the scheduling benchmark (criterion, Karpenter's "diverse"
//! workload over 400 synthetic types at 1k–50k pods), the disruption benchmark (criterion, a
//! whole plan over 1,000 and 5,000 nodes where every node is a candidate), the
//! consolidation-quality report (`core/examples/consolidation_quality.rs`) and the
//! packing-quality report on the real EC2 catalog (`providers/examples/packing.rs`), all in
//! release mode, with summary tables.

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

/// Runs `cargo bench -p karpenter-core --bench <name>`, echoing its output; returns the lines.
fn criterion_bench(cargo: &str, name: &str, quick: bool) -> anyhow::Result<Vec<String>> {
    eprintln!("==> cargo bench -p karpenter-core --bench {name}");
    let mut cmd = Command::new(cargo);
    cmd.args(["bench", "-p", "karpenter-core", "--bench", name]);
    if quick {
        cmd.args(["--", "--quick"]);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .context("running cargo bench")?;
    let stdout = child.stdout.take().context("bench stdout")?;
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        lines.push(line);
    }
    let status = child.wait()?;
    ensure!(status.success(), "cargo bench --bench {name} failed");
    Ok(lines)
}

/// One case of the disruption benchmark.
#[derive(Debug, Default)]
struct PlanRow {
    /// `packed/1000`.
    id: String,
    nodes: Option<String>,
    pods: Option<String>,
    commands: Option<String>,
    disrupted: Option<String>,
    median: Option<String>,
}

/// The disruption benchmark's table from its output: the summary line the bench prints per
/// case (`disruption/packed/1000: 1000 nodes, 20000 pods; 4 commands, 342 nodes disrupted,
/// …`) and criterion's `time:` line.
fn plan_rows(lines: &[String]) -> Vec<PlanRow> {
    let mut rows: Vec<PlanRow> = Vec::new();
    let mut current: Option<usize> = None;
    for line in lines {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("disruption/") {
            let id: String = rest
                .chars()
                .take_while(|c| *c != ':' && !c.is_whitespace())
                .collect();
            let i = match rows.iter().position(|r| r.id == id) {
                Some(i) => i,
                None => {
                    rows.push(PlanRow {
                        id: id.clone(),
                        ..PlanRow::default()
                    });
                    rows.len() - 1
                }
            };
            current = Some(i);
            if let Some(summary) = rest.strip_prefix(&format!("{id}: ")) {
                // "1000 nodes, 20000 pods; 4 commands, 342 nodes disrupted, …"
                let words: Vec<&str> = summary
                    .split([' ', ',', ';'])
                    .filter(|w| !w.is_empty())
                    .collect();
                let before = |what: &str| {
                    words
                        .windows(2)
                        .find(|w| w[1] == what)
                        .map(|w| w[0].to_string())
                };
                rows[i].nodes = before("nodes");
                rows[i].pods = before("pods");
                rows[i].commands = before("commands");
                rows[i].disrupted = words
                    .windows(3)
                    .find(|w| w[1] == "nodes" && w[2] == "disrupted")
                    .map(|w| w[0].to_string());
            } else if trimmed.contains("time:")
                && let Some(m) = middle(trimmed)
            {
                rows[i].median.get_or_insert(m);
            }
        } else if let Some(i) = current
            && trimmed.starts_with("time:")
            && let Some(m) = middle(trimmed)
        {
            rows[i].median.get_or_insert(m);
        }
    }
    rows
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let lines = criterion_bench(&cargo, "scheduling", args.quick)?;
    let mut rows: Vec<Row> = Vec::new();
    let mut current: Option<usize> = None;
    for line in &lines {
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

    let lines = criterion_bench(&cargo, "disruption", args.quick)?;
    println!(
        "\nDisruption benchmark (whole plan, every node a candidate, 20 pods per node drawn; \
         criterion medians)\n"
    );
    println!("| case | nodes | pods | median plan time | commands | nodes disrupted |");
    println!("|---|---:|---:|---:|---:|---:|");
    for r in plan_rows(&lines) {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "?".into());
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            r.id.split('/').next().unwrap_or(&r.id),
            show(&r.nodes),
            show(&r.pods),
            show(&r.median),
            show(&r.commands),
            show(&r.disrupted),
        );
    }

    eprintln!("\n==> cargo run --release -p karpenter-core --example consolidation_quality");
    let mut cmd = Command::new(&cargo);
    cmd.args([
        "run",
        "--release",
        "-q",
        "-p",
        "karpenter-core",
        "--example",
        "consolidation_quality",
    ]);
    if args.quick {
        cmd.args(["--", "--quick"]);
    }
    println!("\nConsolidation quality (fragmented cluster, plans applied until none acts)\n");
    let status = cmd
        .status()
        .context("running the consolidation_quality example")?;
    ensure!(status.success(), "consolidation_quality example failed");

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_disruption_table_from_criterion_output() {
        let out = "\
disruption/packed/1000: 1000 nodes, 20000 pods; 4 commands, 342 nodes disrupted, 658 kept, saves $330.87/h
Benchmarking disruption/packed/1000: Warming up for 3.0000 s
disruption/packed/1000  time:   [512.10 ms 520.84 ms 530.02 ms]
disruption/fragmented/1000: 1000 nodes, 8076 pods; 8 commands, 718 nodes disrupted, 282 kept, saves $737.14/h
disruption/fragmented/1000
                        time:   [170.1 ms 174.4 ms 180.0 ms]
                        change: [-5.1% -3.2% -1.0%] (p = 0.00 < 0.05)
";
        let lines: Vec<String> = out.lines().map(str::to_string).collect();
        let rows = plan_rows(&lines);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].id, "packed/1000");
        assert_eq!(rows[0].nodes.as_deref(), Some("1000"));
        assert_eq!(rows[0].pods.as_deref(), Some("20000"));
        assert_eq!(rows[0].commands.as_deref(), Some("4"));
        assert_eq!(rows[0].disrupted.as_deref(), Some("342"));
        assert_eq!(rows[0].median.as_deref(), Some("520.84 ms"));
        assert_eq!(rows[1].id, "fragmented/1000");
        assert_eq!(rows[1].pods.as_deref(), Some("8076"));
        assert_eq!(rows[1].median.as_deref(), Some("174.4 ms"));
    }
}

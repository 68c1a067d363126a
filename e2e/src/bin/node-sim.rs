//! `node-sim`: runs the simulated kubelets (see `karpenter_e2e::node_sim`) until killed.
//!
//! ```text
//! node-sim [--kubeconfig PATH | --kube-url URL] [--endpoint URL] [--region REGION] [--cluster-name NAME]
//!          [--state-dir DIR] [--poll-interval-ms N] [--join-delay-ms N] [--ready-delay-ms N]
//!          [--filter NAME=V1,V2]...
//! ```
//!
//! Whatever is not given comes from the e2e state directory (`--state-dir`, else
//! `$KARPENTER_E2E_DIR`, else `target/e2e`): `cluster.json` and `aws.json`. Prints a line per
//! node that joins or leaves. `--kube-url` talks plain HTTP, e.g. to `kubectl proxy`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use karpenter_e2e::env::{STATE_DIR_VAR, TestEnv, default_state_dir};
use karpenter_e2e::node_sim::{self, NodeSimulator, SimConfig};

const USAGE: &str = "usage: node-sim [--kubeconfig PATH | --kube-url URL] [--endpoint URL] [--region REGION] \
[--cluster-name NAME] [--state-dir DIR] [--poll-interval-ms N] [--join-delay-ms N] \
[--ready-delay-ms N] [--filter NAME=V1,V2]...";

#[derive(Default)]
struct Args {
    kubeconfig: Option<PathBuf>,
    kube_url: Option<String>,
    endpoint: Option<String>,
    region: Option<String>,
    cluster_name: Option<String>,
    state_dir: Option<PathBuf>,
    poll_interval_ms: Option<u64>,
    join_delay_ms: Option<u64>,
    ready_delay_ms: Option<u64>,
    filters: Vec<(String, Vec<String>)>,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> anyhow::Result<Args> {
    let mut args = Args::default();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let mut value = || -> anyhow::Result<String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => it.next().with_context(|| format!("{flag} needs a value")),
            }
        };
        let ms = |v: String| {
            v.parse::<u64>()
                .with_context(|| format!("{flag}: not a number: {v}"))
        };
        match flag.as_str() {
            "--kubeconfig" => args.kubeconfig = Some(value()?.into()),
            "--kube-url" => args.kube_url = Some(value()?),
            "--endpoint" => args.endpoint = Some(value()?),
            "--region" => args.region = Some(value()?),
            "--cluster-name" => args.cluster_name = Some(value()?),
            "--state-dir" => args.state_dir = Some(value()?.into()),
            "--poll-interval-ms" => args.poll_interval_ms = Some(ms(value()?)?),
            "--join-delay-ms" => args.join_delay_ms = Some(ms(value()?)?),
            "--ready-delay-ms" => args.ready_delay_ms = Some(ms(value()?)?),
            "--filter" => {
                let v = value()?;
                let (name, values) = v
                    .split_once('=')
                    .with_context(|| format!("--filter wants NAME=V1,V2, got {v}"))?;
                args.filters.push((
                    name.to_string(),
                    values.split(',').map(str::to_string).collect(),
                ));
            }
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args(std::env::args().skip(1))?;
    let needs_env = (args.kubeconfig.is_none() && args.kube_url.is_none())
        || args.endpoint.is_none()
        || args.region.is_none()
        || args.cluster_name.is_none();
    let env = if needs_env {
        let dir = args
            .state_dir
            .clone()
            .or_else(|| std::env::var_os(STATE_DIR_VAR).map(PathBuf::from))
            .unwrap_or_else(default_state_dir);
        Some(TestEnv::load_from(&dir).context("give the missing flags or a state directory")?)
    } else {
        None
    };
    let (kube, kube_source) = match args.kube_url {
        Some(url) => (node_sim::kube_client_plain_http(&url)?, url),
        None => {
            let kubeconfig = args
                .kubeconfig
                .or_else(|| env.as_ref().map(|e| e.cluster.kubeconfig.clone()))
                .context("--kubeconfig")?;
            let kube = node_sim::kube_client_from(&kubeconfig).await?;
            (kube, kubeconfig.display().to_string())
        }
    };
    let endpoint = args
        .endpoint
        .or_else(|| env.as_ref().map(|e| e.aws.endpoint.clone()))
        .context("--endpoint")?;
    let region = args
        .region
        .or_else(|| env.as_ref().map(|e| e.aws.region.clone()))
        .context("--region")?;
    let cluster_name = args
        .cluster_name
        .or_else(|| env.as_ref().map(|e| e.aws.cluster_name.clone()))
        .context("--cluster-name")?;

    let ec2 = node_sim::ec2_client_for(&endpoint, &region).await;
    let mut config = SimConfig::new(&cluster_name);
    config.node.region = Some(region.clone());
    if let Some(ms) = args.poll_interval_ms {
        config.poll_interval = Duration::from_millis(ms);
    }
    if let Some(ms) = args.join_delay_ms {
        config.join_delay = Duration::from_millis(ms);
    }
    if let Some(ms) = args.ready_delay_ms {
        config.ready_delay = Duration::from_millis(ms);
    }
    config.instance_filters.extend(args.filters);
    println!(
        "node-sim: cluster {cluster_name}, EC2 {endpoint} ({region}), Kubernetes {kube_source}"
    );
    let handle = NodeSimulator::start(kube, ec2, config);

    // No tracing subscriber in this crate's dependencies: report joins and leaves here.
    let mut known = BTreeMap::new();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now: BTreeMap<String, node_sim::SimNode> = handle
            .nodes()
            .into_iter()
            .map(|n| (n.node_name.clone(), n))
            .collect();
        for (name, n) in &now {
            let before = known.get(name).map(|b: &node_sim::SimNode| b.reported);
            if before != Some(n.reported) {
                println!(
                    "node {name} ({} {}) Ready={:?}",
                    n.instance_id, n.instance_type, n.reported
                );
            }
        }
        for name in known.keys().filter(|k| !now.contains_key(*k)) {
            println!("node {name} removed");
        }
        known = now;
    }
}

//! `karpenter simulate`: what Karpenter would launch for the pods in some manifests, offline.
//!
//! The pipeline ([`plan`]) is pure: manifest texts and an instance-type catalog in, a
//! [`Plan`] (the snapshot and the scheduler's [`Decision`]) or every problem found out.
//! [`main`] only reads files, calls it and prints.
//!
//! 1. every text goes through [`parse_manifests`] (errors name file, document, object, field);
//! 2. each NodePool's instance types are the catalog's, shaped by the EC2NodeClass its
//!    `nodeClassRef` names (see [`nodeclasses`]): v1 as is, v1beta1 converted to v1 with the
//!    pool's v1beta1 kubelet (so `maxPods` applies);
//! 3. [`build_snapshot`] assembles the scheduler input, [`solve`] decides;
//! 4. when the manifests hold Nodes of a NodePool, [`disruption`] plans what Karpenter's
//!    disruption would do to them at `--now`, and why each other node is kept.

pub mod disruption;
pub mod from_cluster;
mod json;
mod nodeclasses;
#[cfg(test)]
mod tests;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use karpenter_core::ingest::{Manifest, build_snapshot, parse_manifests};
use karpenter_core::scheduling::{
    Burstable, Decision, FleetBound, SolveOptions, fleet_bound, report, solve,
};
use karpenter_core::snapshot::Snapshot;
use karpenter_providers::aws::catalog::{Catalog, CatalogError};

pub use disruption::{DisruptionPlan, DisruptionSettings};
pub use nodeclasses::PoolInfo;

use crate::runtime::settings::FeatureGates;
pub use crate::runtime::settings::{PackingArg, parse_burstable};

/// Exit code for invalid input (unreadable files, bad manifests, a missing node class).
pub const EXIT_INVALID_INPUT: u8 = 2;

/// Exit code when `--from-cluster` cannot read the cluster.
pub const EXIT_CLUSTER_UNREADABLE: u8 = 3;

/// How the embedded catalog is named in the header.
pub const EMBEDDED_CATALOG: &str = "embedded (providers/data/aws-catalog-us-east-1.json)";

/// Options of `karpenter simulate`.
#[derive(clap::Args, Debug)]
pub struct SimulateArgs {
    /// A manifest file, or a directory whose *.yaml and *.yml files are read in name order.
    /// Repeat to read several. With `--from-cluster`, added to what the cluster holds (e.g. a
    /// Deployment about to be applied).
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "FILE",
        required_unless_present = "from_cluster"
    )]
    pub files: Vec<PathBuf>,
    /// Read the live cluster (read-only: nodes, pods, DaemonSets, PDBs, NodePools,
    /// EC2NodeClasses, NodeClaims) instead of, or besides, manifest files.
    #[arg(long)]
    pub from_cluster: bool,
    /// The kubeconfig context to read (default: the current one).
    #[arg(long, value_name = "NAME", requires = "from_cluster")]
    pub context: Option<String>,
    /// The kubeconfig file (default: `$KUBECONFIG`, then `~/.kube/config`, then the pod's
    /// service account).
    #[arg(long, value_name = "FILE", requires = "from_cluster")]
    pub kubeconfig: Option<PathBuf>,
    /// An instance-type catalog (JSON, the shape of the embedded one) instead of the embedded
    /// us-east-1 catalog.
    #[arg(long, value_name = "FILE")]
    pub catalog: Option<PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Pod names listed per node in text output (the rest are counted).
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub max_pods_listed: usize,
    /// How new nodes are filled: `karpenter` (Karpenter's rule: a node takes pods while any
    /// instance type still fits), `cost-aware` (open another node rather than grow one by more
    /// than a new node would cost; greedy), `cheapest` (both, keep the cheaper plan) or
    /// `optimal` (Karpenter's rule, then the unconstrained pods' nodes re-packed from the
    /// configuration LP when that is cheaper).
    #[arg(long, value_enum, default_value_t = PackingArg::Karpenter)]
    pub packing: PackingArg,
    /// $/h the optimal packer adds to every node while comparing fleets, for the costs many
    /// small nodes bring that prices do not show (default 0).
    #[arg(long, value_name = "USD_PER_HOUR", default_value_t = 0.0)]
    pub node_cost: f64,
    /// Burstable (`t`) types in the optimal packer: `allow`, `exclude`, or `derate=F` to count
    /// only the fraction F of their CPU.
    #[arg(long, value_name = "allow|exclude|derate=F", default_value = "allow", value_parser = parse_burstable)]
    pub burstable: Burstable,
    /// The time the disruption plan is made for (RFC 3339, e.g. 2026-12-07T12:00:00Z);
    /// default: now. Decides expiry, `consolidateAfter` and budget schedules.
    #[arg(long, value_name = "RFC3339")]
    pub now: Option<String>,
    /// Feature gates as the controller's flag (`SpotToSpotConsolidation=true`, …).
    #[arg(long, default_value_t = FeatureGates::default())]
    pub feature_gates: FeatureGates,
    /// Least saving, in USD per hour, a consolidation must bring (0: any saving, as
    /// Karpenter). A NodePool's `karpenter-rs.io/min-consolidation-savings` annotation
    /// overrides it.
    #[arg(long, value_name = "USD_PER_HOUR", default_value_t = 0.0)]
    pub min_consolidation_savings: f64,
    /// Let single-node consolidation replace a node by several cheaper ones (beyond Karpenter,
    /// which replaces a node by at most one).
    #[arg(long)]
    pub replace_with_several: bool,
    /// How many candidates multi-node consolidation considers at once: a number, or `all`
    /// for no cap (beyond Karpenter, which caps at 100).
    #[arg(long, value_name = "N|all", default_value = "100", value_parser = crate::runtime::settings::parse_candidate_cap)]
    pub multi_node_candidates: crate::runtime::settings::CandidateCap,
}

/// `--output` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// A readable report.
    Text,
    /// A JSON document (see [`json::Report`]).
    Json,
}

/// One manifest text and where it came from (a path, for error messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// File path (or any name) used in error messages.
    pub origin: String,
    /// The YAML text.
    pub text: String,
}

/// Why a simulation could not run. Every variant is invalid input (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// A file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A directory argument holds no manifests.
    #[error("{0}: no *.yaml or *.yml files in this directory")]
    EmptyDirectory(String),
    /// The `--catalog` file is unusable.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The manifests are invalid; one line per problem, each naming object and field.
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
    /// The cluster could not be read (`--from-cluster`).
    #[error("cannot read the cluster: {0}")]
    Cluster(String),
}

impl SimulateError {
    /// One line per problem, for `error: …` output.
    pub fn lines(&self) -> Vec<String> {
        match self {
            SimulateError::Invalid(problems) => problems.clone(),
            other => vec![other.to_string()],
        }
    }
}

/// The result of a simulation.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The scheduler's input.
    pub snapshot: Snapshot,
    /// The scheduler's output.
    pub decision: Decision,
    /// Each NodePool with its node class and how many instance types it can use.
    pub pools: Vec<PoolInfo>,
    /// Where the catalog came from.
    pub catalog_source: String,
    /// Instance types in the catalog.
    pub catalog_types: usize,
    /// Objects read but not used (Services, ConfigMaps, …), as `Kind/name`.
    pub skipped: Vec<String>,
    /// What disruption would do to the manifests' managed nodes, if there are any.
    pub disruption: Option<DisruptionPlan>,
    /// The lowest cost any fleet for the pods the decision puts on new nodes could have.
    pub bound: Option<FleetBound>,
}

/// Reads the files and directories named on the command line, in order.
pub fn read_sources(paths: &[PathBuf]) -> Result<Vec<Source>, SimulateError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| SimulateError::Io { path, source }
    };
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(io(path))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
                .collect();
            if found.is_empty() {
                return Err(SimulateError::EmptyDirectory(path.display().to_string()));
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    files
        .into_iter()
        .map(|p| {
            Ok(Source {
                origin: p.display().to_string(),
                text: std::fs::read_to_string(&p).map_err(io(&p))?,
            })
        })
        .collect()
}

/// The pure pipeline: manifests and a catalog in, the scheduler's plan out.
///
/// A parse error stops at once (it names the file and document); after that every problem
/// (invalid or missing node classes, objects the snapshot cannot be built from) is reported
/// together.
pub fn plan(
    sources: &[Source],
    catalog: &Catalog,
    catalog_source: &str,
    options: &SolveOptions,
    disruption_settings: &DisruptionSettings,
) -> Result<Plan, SimulateError> {
    let mut manifests: Vec<Manifest> = Vec::new();
    for s in sources {
        let parsed = parse_manifests(&s.text, &s.origin)
            .map_err(|e| SimulateError::Invalid(vec![e.to_string()]))?;
        manifests.extend(parsed);
    }

    let mut problems = Vec::new();
    let (pools, mut types_by_pool) =
        nodeclasses::pool_instance_types(&manifests, catalog, &mut problems);
    let built = build_snapshot(&manifests, &|np| {
        let name = np.metadata.name.as_deref().unwrap_or_default();
        types_by_pool.get(name).cloned().unwrap_or_default()
    });
    types_by_pool.clear();
    let build = match built {
        Ok(b) => b,
        Err(errs) => {
            problems.extend(errs.iter().map(ToString::to_string));
            return Err(SimulateError::Invalid(problems));
        }
    };
    if !problems.is_empty() {
        return Err(SimulateError::Invalid(problems));
    }

    let disruption = disruption::plan(
        &manifests,
        &build.snapshot,
        &build.node_pools,
        disruption_settings,
    )
    .map_err(SimulateError::Invalid)?;
    let snapshot = build.snapshot;
    let decision = solve(&snapshot, options);
    let bound = fleet_bound(&snapshot, &decision, options);
    let skipped = manifests
        .iter()
        .filter(|m| matches!(m, Manifest::Other { .. }))
        .map(Manifest::kind_name)
        .collect();
    let pools = pools
        .into_iter()
        .map(|mut p| {
            if let Some(input) = snapshot.node_pools.iter().find(|i| i.name == p.name) {
                p.matching_types = input
                    .instance_types
                    .iter()
                    .filter(|it| it.compatible(&input.requirements))
                    .count();
            }
            p
        })
        .collect();
    Ok(Plan {
        snapshot,
        decision,
        pools,
        catalog_source: catalog_source.to_string(),
        catalog_types: catalog.instance_types.len(),
        skipped,
        disruption,
        bound,
    })
}

/// The header printed above the text report.
pub fn header(plan: &Plan) -> String {
    let s = &plan.snapshot;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Simulating {} pending pods, {} DaemonSets, {} existing nodes, {} NodePools",
        s.pods.len(),
        s.daemon_sets.len(),
        s.nodes.len(),
        s.node_pools.len(),
    );
    let _ = writeln!(
        out,
        "Catalog: {} ({} instance types)",
        plan.catalog_source, plan.catalog_types
    );
    for p in &plan.pools {
        let max_pods = p
            .max_pods
            .map_or_else(|| "ENI-limited".to_string(), |n| n.to_string());
        let _ = writeln!(
            out,
            "NodePool {}: EC2NodeClass {} ({}), maxPods {}, {} instance types considered",
            p.name, p.node_class, p.ami_family, max_pods, p.matching_types,
        );
    }
    if !plan.skipped.is_empty() {
        let _ = writeln!(out, "Ignored: {}", plan.skipped.join(", "));
    }
    out
}

/// The whole text output: header, blank line, the scheduler's report, and the disruption
/// plan when there are managed nodes.
pub fn render_text(plan: &Plan, max_pods_listed: usize) -> String {
    let mut out = format!(
        "{}\n{}",
        header(plan),
        report::render_text(&plan.snapshot, &plan.decision, max_pods_listed)
    );
    if let Some(b) = &plan.bound {
        out.push_str(&bound_line(b));
    }
    if let Some(d) = &plan.disruption {
        out.push('\n');
        out.push_str(&disruption::render_text(d));
    }
    out
}

/// "No fleet for these N pods costs less than $X/h; this plan is within Y%."
pub fn bound_line(b: &FleetBound) -> String {
    let within = match b.gap() {
        Some(gap) => format!("; this plan is within {:.1}% of it", gap.max(0.0) * 100.0),
        None => String::new(),
    };
    let loose = if b.converged {
        ""
    } else {
        " (the LP search stopped early: the bound is valid, only looser)"
    };
    format!(
        "Lower bound: no fleet for these {} pods costs less than ${:.4}/h{within}{loose}\n",
        b.pods, b.bound
    )
}

/// The JSON output.
pub fn render_json(plan: &Plan) -> String {
    let mut text = serde_json::to_string_pretty(&json::Report::of(plan))
        .expect("the report serializes (plain data)");
    text.push('\n');
    text
}

fn load_catalog(args: &SimulateArgs) -> Result<(Catalog, String), SimulateError> {
    Ok(match &args.catalog {
        Some(path) => (Catalog::from_path(path)?, path.display().to_string()),
        None => (Catalog::embedded().clone(), EMBEDDED_CATALOG.to_string()),
    })
}

/// The disruption settings from the command line.
pub fn disruption_settings(args: &SimulateArgs) -> Result<DisruptionSettings, SimulateError> {
    let now = match &args.now {
        Some(s) => s.parse().map_err(|e| {
            SimulateError::Invalid(vec![format!(
                "--now {s:?}: not an RFC 3339 time (e.g. 2026-12-07T12:00:00Z): {e}"
            )])
        })?,
        None => k8s_openapi::jiff::Timestamp::now(),
    };
    if !(args.min_consolidation_savings.is_finite() && args.min_consolidation_savings >= 0.0) {
        return Err(SimulateError::Invalid(vec![format!(
            "--min-consolidation-savings {}: must be a non-negative amount",
            args.min_consolidation_savings
        )]));
    }
    Ok(DisruptionSettings {
        now,
        spot_to_spot: args.feature_gates.spot_to_spot_consolidation,
        min_savings_per_hour: args.min_consolidation_savings,
        replace_with_several: args.replace_with_several,
        multi_node_cap: args.multi_node_candidates.0,
    })
}

/// The cluster's objects (with `--from-cluster`), then the files'.
fn gather_sources(args: &SimulateArgs) -> Result<Vec<Source>, SimulateError> {
    let mut sources = Vec::new();
    if args.from_cluster {
        let access = from_cluster::ClusterAccess {
            kubeconfig: args.kubeconfig.as_deref(),
            context: args.context.as_deref(),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| SimulateError::Cluster(format!("async runtime: {e}")))?;
        let read = runtime.block_on(async {
            let (client, server) = from_cluster::connect(&access).await?;
            from_cluster::read(&client, &server).await
        })?;
        sources.extend(read.sources);
    }
    if !args.files.is_empty() {
        sources.extend(read_sources(&args.files)?);
    }
    Ok(sources)
}

fn run(args: &SimulateArgs) -> Result<String, SimulateError> {
    let sources = gather_sources(args)?;
    let (catalog, origin) = load_catalog(args)?;
    if !(args.node_cost.is_finite() && args.node_cost >= 0.0) {
        return Err(SimulateError::Invalid(vec![format!(
            "--node-cost {}: must be a non-negative amount",
            args.node_cost
        )]));
    }
    let options = SolveOptions {
        packing: args.packing.into(),
        node_cost: args.node_cost,
        burstable: args.burstable,
        ..SolveOptions::default()
    };
    let settings = disruption_settings(args)?;
    let plan = plan(&sources, &catalog, &origin, &options, &settings)?;
    Ok(match args.output {
        OutputFormat::Text => render_text(&plan, args.max_pods_listed),
        OutputFormat::Json => render_json(&plan),
    })
}

/// Runs `karpenter simulate`: prints the plan and exits 0 (also when some pods are
/// unschedulable: that is a valid plan), or prints `error: …` lines and exits 2 (invalid
/// input) or 3 (`--from-cluster` could not read the cluster).
pub fn main(args: &SimulateArgs) -> ExitCode {
    match run(args) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            for line in e.lines() {
                eprintln!("error: {line}");
            }
            ExitCode::from(match e {
                SimulateError::Cluster(_) => EXIT_CLUSTER_UNREADABLE,
                _ => EXIT_INVALID_INPUT,
            })
        }
    }
}

//! Settings of the controller (`karpenter run`).
//!
//! Every setting is a flag and an environment variable with Karpenter's names and defaults
//! (<https://karpenter.sh/docs/reference/settings/>), so a Karpenter Helm values file or
//! Deployment env block carries over. A flag wins over its environment variable. Bad values are
//! rejected by clap, whose message names the flag and, through the value name, the variable
//! (e.g. `invalid value '5x' for '--batch-max-duration <BATCH_MAX_DURATION>'`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, ValueEnum};
use karpenter_core::api::parse_go_duration;
use karpenter_core::scheduling::{Burstable, Packing, SolveOptions};

/// Flags and environment variables of `karpenter run`.
#[derive(Args, Clone, Debug, PartialEq)]
pub struct Settings {
    /// [REQUIRED] The Kubernetes cluster name, for resource discovery and tagging.
    #[arg(long, env = "CLUSTER_NAME", value_parser = parse_non_empty)]
    pub cluster_name: String,

    /// The API server endpoint new nodes join (https://…). Discovered with DescribeCluster
    /// when unset.
    #[arg(long, env = "CLUSTER_ENDPOINT", value_parser = parse_endpoint)]
    pub cluster_endpoint: Option<String>,

    /// The SQS queue of EC2 interruption events (spot interruption, rebalance, health, state
    /// changes). Interruption handling is off when unset.
    #[arg(long, env = "INTERRUPTION_QUEUE", value_parser = parse_non_empty)]
    pub interruption_queue: Option<String>,

    /// How long the provisioner waits without a new pending pod before closing a batch
    /// (Go duration, e.g. 1s, 500ms).
    #[arg(long, env = "BATCH_IDLE_DURATION", default_value = "1s", value_parser = parse_positive_duration)]
    pub batch_idle_duration: Duration,

    /// The longest a provisioning batch may stay open (Go duration).
    #[arg(long, env = "BATCH_MAX_DURATION", default_value = "10s", value_parser = parse_positive_duration)]
    pub batch_max_duration: Duration,

    /// Optional features as comma-separated Name=bool pairs, e.g.
    /// `Drift=true,SpotToSpotConsolidation=false`; unnamed gates keep their defaults.
    #[arg(long, env = "FEATURE_GATES", default_value_t = FeatureGates::default())]
    pub feature_gates: FeatureGates,

    /// Log verbosity.
    #[arg(long, env = "LOG_LEVEL", value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,

    /// Port of the Prometheus metrics endpoint (8080, what Karpenter's Helm chart sets and
    /// what scrape configs for Karpenter expect).
    #[arg(long, env = "METRICS_PORT", default_value_t = 8080, value_parser = clap::value_parser!(u16).range(1..))]
    pub metrics_port: u16,

    /// Port of the health probe endpoints (/healthz, /readyz).
    #[arg(long, env = "HEALTH_PROBE_PORT", default_value_t = 8081, value_parser = clap::value_parser!(u16).range(1..))]
    pub health_probe_port: u16,

    /// Run without leader election (only safe with a single replica).
    #[arg(long, env = "DISABLE_LEADER_ELECTION", default_value_t = false, action = clap::ArgAction::Set, value_parser = parse_bool)]
    pub disable_leader_election: bool,

    /// Fraction of an instance type's memory reserved for the hypervisor when estimating
    /// allocatable memory before a node of that type has been seen (0.075 = 7.5%).
    #[arg(long, env = "VM_MEMORY_OVERHEAD_PERCENT", default_value_t = 0.075, value_parser = parse_fraction)]
    pub vm_memory_overhead_percent: f64,

    /// ENIs reserved for other uses (e.g. the VPC CNI's custom networking), subtracted when
    /// computing max pods per node.
    #[arg(long, env = "RESERVED_ENIS", default_value_t = 0)]
    pub reserved_enis: u32,

    /// The cluster has no internet egress: skip the public pricing API and use static prices.
    #[arg(long, env = "ISOLATED_VPC", default_value_t = false, action = clap::ArgAction::Set, value_parser = parse_bool)]
    pub isolated_vpc: bool,

    /// Smoothed rate of requests to the Kubernetes API server (per second).
    #[arg(long, env = "KUBE_CLIENT_QPS", default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    pub kube_client_qps: u32,

    /// Maximum burst of requests to the Kubernetes API server.
    #[arg(long, env = "KUBE_CLIENT_BURST", default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..))]
    pub kube_client_burst: u32,

    /// Namespace of the leader-election Lease (the namespace Karpenter runs in).
    #[arg(long, env = "SYSTEM_NAMESPACE", default_value = "kube-system", value_parser = parse_non_empty)]
    pub system_namespace: String,

    /// The cluster's service CIDR, for AL2023's NodeConfig. Not a Karpenter setting (Karpenter
    /// asks EKS); when unset it is derived from the `default/kubernetes` Service IP.
    #[arg(long, env = "CLUSTER_CIDR")]
    pub cluster_cidr: Option<String>,

    /// A NodeClaim that has no instance this long after creation is deleted (Karpenter: 5m).
    #[arg(long, env = "LAUNCH_TTL", default_value = "5m", value_parser = parse_positive_duration)]
    pub launch_ttl: Duration,

    /// A launched NodeClaim whose Node has not registered this long after launch is deleted
    /// and its instance terminated (Karpenter: 15m).
    #[arg(long, env = "REGISTRATION_TTL", default_value = "15m", value_parser = parse_positive_duration)]
    pub registration_ttl: Duration,

    /// How often instances without a NodeClaim are looked for (Karpenter: 2m).
    #[arg(long, env = "GC_INTERVAL", default_value = "2m", value_parser = parse_positive_duration)]
    pub gc_interval: Duration,

    /// An instance must be at least this old before garbage collection may terminate it, so
    /// a launch whose NodeClaim status is still being written is not mistaken for a leak.
    #[arg(long, env = "GC_GRACE", default_value = "30s", value_parser = parse_positive_duration)]
    pub gc_grace: Duration,

    /// How often the disruption loop looks for work when nothing changed (Karpenter: 10s).
    #[arg(long, env = "DISRUPTION_POLL_INTERVAL", default_value = "10s", value_parser = parse_positive_duration)]
    pub disruption_poll_interval: Duration,

    /// How long a consolidation command waits before it is re-planned and, if it still
    /// holds, carried out (Karpenter: 15s).
    #[arg(long, env = "CONSOLIDATION_VALIDATION_WAIT", default_value = "15s", value_parser = parse_positive_duration)]
    pub consolidation_validation_wait: Duration,

    /// A disruption command whose replacements are not all initialized this long after it
    /// started is rolled back (Karpenter: 10m).
    #[arg(long, env = "DISRUPTION_QUEUE_TIMEOUT", default_value = "10m", value_parser = parse_positive_duration)]
    pub disruption_queue_timeout: Duration,

    /// How often every NodeClaim's drift is re-checked against the cloud (AMI, subnets,
    /// security groups) without an event (Karpenter: 5m).
    #[arg(long, env = "DRIFT_RECHECK_INTERVAL", default_value = "5m", value_parser = parse_positive_duration)]
    pub drift_recheck_interval: Duration,

    /// Least saving, in USD per hour, a consolidation must bring (0: any saving, as
    /// Karpenter). A NodePool's `karpenter-rs.io/min-consolidation-savings` annotation
    /// overrides it.
    #[arg(long, env = "MIN_CONSOLIDATION_SAVINGS", default_value_t = 0.0, value_parser = parse_savings)]
    pub min_consolidation_savings: f64,

    /// Let single-node consolidation replace a node by several cheaper ones (beyond
    /// Karpenter, which replaces a node by at most one).
    #[arg(long, env = "CONSOLIDATION_REPLACE_WITH_SEVERAL", default_value_t = false, action = clap::ArgAction::Set, value_parser = parse_bool)]
    pub consolidation_replace_with_several: bool,

    /// How many candidates multi-node consolidation batches at once: a number, or `all`
    /// (Karpenter: 100).
    #[arg(long, env = "MULTI_NODE_CONSOLIDATION_CANDIDATES", default_value = "100", value_parser = parse_candidate_cap)]
    pub multi_node_consolidation_candidates: CandidateCap,

    /// How the provisioner fills new nodes: `karpenter` (Karpenter's rule), `cost-aware`,
    /// `cheapest` or `optimal` (Karpenter's rule, then the unconstrained pods' nodes re-packed
    /// from the configuration LP when that is cheaper; see docs/benchmarks.md).
    #[arg(long, env = "PACKING", value_enum, default_value_t = PackingArg::Karpenter)]
    pub packing: PackingArg,

    /// $/h the optimal packer adds to every node while comparing fleets: the costs many
    /// small nodes bring that instance prices do not show (IPs, per-node agents, API load).
    #[arg(long, env = "PACKING_NODE_COST", default_value_t = 0.0, value_parser = parse_savings)]
    pub packing_node_cost: f64,

    /// Burstable (`t`) types in the optimal packer: `allow`, `exclude`, or `derate=F` to
    /// count only the fraction F of their CPU (their CPU above a baseline runs on credits).
    #[arg(long, env = "PACKING_BURSTABLE", default_value = "allow", value_parser = parse_burstable)]
    pub packing_burstable: Burstable,
}

impl Settings {
    /// The scheduler options the provisioner solves with.
    pub fn solve_options(&self) -> SolveOptions {
        SolveOptions {
            packing: self.packing.into(),
            node_cost: self.packing_node_cost,
            burstable: self.packing_burstable,
            ..SolveOptions::default()
        }
    }
}

/// `--packing` / `PACKING` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PackingArg {
    /// Karpenter's first-fit growth.
    Karpenter,
    /// Grow a node only while that is no dearer than a new one.
    CostAware,
    /// Solve both ways and keep the cheaper plan.
    Cheapest,
    /// Karpenter's rule, then re-pack from the configuration LP when cheaper.
    Optimal,
}

/// Parses `--burstable`.
pub fn parse_burstable(s: &str) -> Result<Burstable, String> {
    match s {
        "allow" => Ok(Burstable::Allow),
        "exclude" => Ok(Burstable::Exclude),
        _ => {
            let f = s
                .strip_prefix("derate=")
                .and_then(|f| f.parse::<f64>().ok())
                .filter(|f| (0.0..=1.0).contains(f))
                .ok_or_else(|| {
                    format!("{s:?}: expected allow, exclude or derate=F with F between 0 and 1")
                })?;
            Ok(Burstable::Derate(f))
        }
    }
}

impl From<PackingArg> for Packing {
    fn from(p: PackingArg) -> Packing {
        match p {
            PackingArg::Karpenter => Packing::Karpenter,
            PackingArg::CostAware => Packing::CostAware,
            PackingArg::Cheapest => Packing::Cheapest,
            PackingArg::Optimal => Packing::Optimal,
        }
    }
}

/// Log verbosity (Karpenter accepts `debug`, `info` and `error`; `warn` is accepted too).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    /// Everything, including per-decision detail.
    Debug,
    /// Decisions and lifecycle events.
    Info,
    /// Recoverable problems and errors.
    Warn,
    /// Errors only.
    Error,
}

impl Settings {
    /// The environment variables `karpenter run` reads (every flag's `env`), e.g. for checking
    /// that a deployment sets nothing the binary would ignore.
    pub fn env_vars() -> Vec<String> {
        let cmd = <Self as Args>::augment_args(clap::Command::new("run"));
        cmd.get_arguments()
            .filter_map(|a| a.get_env())
            .map(|e| e.to_string_lossy().into_owned())
            .collect()
    }
}

/// Karpenter's feature gates, typed. Defaults follow Karpenter: Drift on (0.33+, always on in
/// v1), the rest off. Gates this binary does not know (newer Karpenter charts render
/// `ReservedCapacity`, `NodeOverlay`, …) are kept in [`FeatureGates::ignored`] and warned about
/// at startup, not fatal, so a values file written for a newer chart still starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeatureGates {
    /// Replace nodes whose NodePool/NodeClass no longer matches them.
    pub drift: bool,
    /// Let consolidation replace a spot node with a cheaper spot node.
    pub spot_to_spot_consolidation: bool,
    /// Replace nodes that report unhealthy conditions for too long (Karpenter v1.1+).
    pub node_repair: bool,
    /// `Name=value` pairs naming gates this binary does not know; they have no effect.
    pub ignored: Vec<String>,
}

impl Default for FeatureGates {
    fn default() -> Self {
        Self {
            drift: true,
            spot_to_spot_consolidation: false,
            node_repair: false,
            ignored: Vec::new(),
        }
    }
}

impl FeatureGates {
    /// Gate names as Karpenter spells them, in display order.
    pub const NAMES: [&'static str; 3] = ["Drift", "SpotToSpotConsolidation", "NodeRepair"];

    fn gate_mut(&mut self, name: &str) -> Option<&mut bool> {
        match name {
            "Drift" => Some(&mut self.drift),
            "SpotToSpotConsolidation" => Some(&mut self.spot_to_spot_consolidation),
            "NodeRepair" => Some(&mut self.node_repair),
            _ => None,
        }
    }
}

impl FromStr for FeatureGates {
    type Err = String;

    /// Parses `Name=bool,…` over the defaults; an empty string means all defaults. Unknown
    /// names go to [`FeatureGates::ignored`]; a known gate with a value that is not a boolean
    /// is an error.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut gates = Self::default();
        for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').ok_or_else(|| {
                format!("feature gate {pair:?} is not of the form Name=true|false")
            })?;
            let (name, value) = (name.trim(), value.trim());
            let Some(slot) = gates.gate_mut(name) else {
                gates.ignored.push(format!("{name}={value}"));
                continue;
            };
            *slot = parse_bool(value).map_err(|_| {
                format!("feature gate {name:?} has invalid value {value:?}, want true or false")
            })?;
        }
        Ok(gates)
    }
}

impl fmt::Display for FeatureGates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Drift={},SpotToSpotConsolidation={},NodeRepair={}",
            self.drift, self.spot_to_spot_consolidation, self.node_repair
        )
    }
}

/// Go-style duration that must be greater than zero (a zero batch window would never batch).
fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = parse_go_duration(s.trim()).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err(format!("duration {s:?} must be greater than zero"));
    }
    Ok(d)
}

/// `--multi-node-candidates` / `MULTI_NODE_CONSOLIDATION_CANDIDATES`: a cap on multi-node consolidation's batch, or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CandidateCap(pub Option<usize>);

impl std::fmt::Display for CandidateCap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(n) => write!(f, "{n}"),
            None => f.write_str("all"),
        }
    }
}

/// Parses `all` or a count of at least 2 (a batch of one is single-node consolidation).
pub fn parse_candidate_cap(text: &str) -> Result<CandidateCap, String> {
    if text.eq_ignore_ascii_case("all") {
        return Ok(CandidateCap(None));
    }
    match text.parse::<usize>() {
        Ok(n) if n >= 2 => Ok(CandidateCap(Some(n))),
        Ok(n) => Err(format!(
            "{n}: multi-node consolidation needs at least 2 candidates (or `all`)"
        )),
        Err(_) => Err(format!(
            "{text:?}: expected a number of candidates or `all`"
        )),
    }
}

/// A non-negative, finite amount of USD per hour.
fn parse_savings(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!(
            "{s:?} is not a non-negative amount of USD per hour"
        )),
    }
}

/// Booleans as Go's `strconv.ParseBool` accepts them, so env blocks written for Karpenter work.
fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        other => Err(format!("{other:?} is not a boolean (true or false)")),
    }
}

fn parse_non_empty(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("must not be empty".to_string());
    }
    Ok(s.to_string())
}

/// Karpenter requires an absolute http(s) URL with a host.
fn parse_endpoint(s: &str) -> Result<String, String> {
    let s = s.trim();
    let host = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .ok_or_else(|| format!("{s:?} is not an http(s) URL"))?;
    if host.split('/').next().is_none_or(str::is_empty) {
        return Err(format!("{s:?} has no host"));
    }
    Ok(s.to_string())
}

/// A finite, non-negative fraction (Karpenter rejects negative overheads).
fn parse_fraction(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("{s:?} must be a non-negative number"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use clap::Parser;

    use super::*;

    /// The environment variables the settings read; cleared around every parse.
    const VARS: [&str; 25] = [
        "PACKING",
        "PACKING_NODE_COST",
        "PACKING_BURSTABLE",
        "DISRUPTION_POLL_INTERVAL",
        "CONSOLIDATION_VALIDATION_WAIT",
        "DISRUPTION_QUEUE_TIMEOUT",
        "DRIFT_RECHECK_INTERVAL",
        "MIN_CONSOLIDATION_SAVINGS",
        "CONSOLIDATION_REPLACE_WITH_SEVERAL",
        "MULTI_NODE_CONSOLIDATION_CANDIDATES",
        "CLUSTER_NAME",
        "CLUSTER_ENDPOINT",
        "INTERRUPTION_QUEUE",
        "BATCH_IDLE_DURATION",
        "BATCH_MAX_DURATION",
        "FEATURE_GATES",
        "LOG_LEVEL",
        "METRICS_PORT",
        "HEALTH_PROBE_PORT",
        "DISABLE_LEADER_ELECTION",
        "VM_MEMORY_OVERHEAD_PERCENT",
        "RESERVED_ENIS",
        "ISOLATED_VPC",
        "KUBE_CLIENT_QPS",
        "KUBE_CLIENT_BURST",
    ];

    /// Serialises the tests that touch the process environment.
    static ENV_LOCK: Mutex<()> = Mutex::new(());

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        settings: Settings,
    }

    /// Parses `args` with exactly `env` set among the settings' variables.
    fn parse(env: &[(&str, &str)], args: &[&str]) -> Result<Settings, String> {
        let _guard = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let saved: Vec<_> = VARS.iter().map(|v| (*v, std::env::var_os(v))).collect();
        // SAFETY: every test that reads or writes these variables holds ENV_LOCK, and nothing
        // else in this test binary reads the environment.
        unsafe {
            VARS.iter().for_each(|v| std::env::remove_var(v));
            env.iter().for_each(|(k, v)| std::env::set_var(k, v));
        }
        let argv = std::iter::once("karpenter").chain(args.iter().copied());
        let result = Cli::try_parse_from(argv)
            .map(|c| c.settings)
            .map_err(|e| e.to_string());
        // SAFETY: as above.
        unsafe {
            for (k, v) in saved {
                match v {
                    Some(v) => std::env::set_var(k, v),
                    None => std::env::remove_var(k),
                }
            }
        }
        result
    }

    #[test]
    fn defaults_match_karpenter() {
        let s = parse(&[("CLUSTER_NAME", "prod")], &[]).unwrap();
        assert_eq!(
            s,
            Settings {
                cluster_name: "prod".into(),
                cluster_endpoint: None,
                interruption_queue: None,
                batch_idle_duration: Duration::from_secs(1),
                batch_max_duration: Duration::from_secs(10),
                feature_gates: FeatureGates::default(),
                log_level: LogLevel::Info,
                metrics_port: 8080,
                health_probe_port: 8081,
                disable_leader_election: false,
                vm_memory_overhead_percent: 0.075,
                reserved_enis: 0,
                isolated_vpc: false,
                kube_client_qps: 200,
                kube_client_burst: 300,
                system_namespace: "kube-system".into(),
                cluster_cidr: None,
                launch_ttl: Duration::from_secs(300),
                registration_ttl: Duration::from_secs(900),
                gc_interval: Duration::from_secs(120),
                gc_grace: Duration::from_secs(30),
                disruption_poll_interval: Duration::from_secs(10),
                consolidation_validation_wait: Duration::from_secs(15),
                disruption_queue_timeout: Duration::from_secs(600),
                drift_recheck_interval: Duration::from_secs(300),
                min_consolidation_savings: 0.0,
                consolidation_replace_with_several: false,
                multi_node_consolidation_candidates: CandidateCap(Some(100)),
                packing: PackingArg::Karpenter,
                packing_node_cost: 0.0,
                packing_burstable: Burstable::Allow,
            }
        );
        assert!(s.feature_gates.drift && !s.feature_gates.spot_to_spot_consolidation);
    }

    #[test]
    fn cluster_name_is_required() {
        let err = parse(&[], &[]).unwrap_err();
        assert!(err.contains("--cluster-name"), "{err}");
        let err = parse(&[("CLUSTER_NAME", " ")], &[]).unwrap_err();
        assert!(err.contains("CLUSTER_NAME"), "{err}");
    }

    #[test]
    fn env_form() {
        let s = parse(
            &[
                ("CLUSTER_NAME", "prod"),
                (
                    "CLUSTER_ENDPOINT",
                    "https://ABC.gr7.us-east-1.eks.amazonaws.com",
                ),
                ("INTERRUPTION_QUEUE", "prod-interruptions"),
                ("BATCH_IDLE_DURATION", "500ms"),
                ("BATCH_MAX_DURATION", "1m30s"),
                ("FEATURE_GATES", "Drift=false, SpotToSpotConsolidation=true"),
                ("LOG_LEVEL", "debug"),
                ("METRICS_PORT", "8080"),
                ("HEALTH_PROBE_PORT", "9081"),
                ("DISABLE_LEADER_ELECTION", "true"),
                ("VM_MEMORY_OVERHEAD_PERCENT", "0.1"),
                ("RESERVED_ENIS", "1"),
                ("ISOLATED_VPC", "True"),
                ("KUBE_CLIENT_QPS", "50"),
                ("KUBE_CLIENT_BURST", "100"),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(
            s.cluster_endpoint.as_deref(),
            Some("https://ABC.gr7.us-east-1.eks.amazonaws.com")
        );
        assert_eq!(s.interruption_queue.as_deref(), Some("prod-interruptions"));
        assert_eq!(s.batch_idle_duration, Duration::from_millis(500));
        assert_eq!(s.batch_max_duration, Duration::from_secs(90));
        assert_eq!(
            s.feature_gates,
            FeatureGates {
                drift: false,
                spot_to_spot_consolidation: true,
                node_repair: false,
                ignored: Vec::new(),
            }
        );
        assert_eq!(s.log_level, LogLevel::Debug);
        assert_eq!((s.metrics_port, s.health_probe_port), (8080, 9081));
        assert!(s.disable_leader_election && s.isolated_vpc);
        assert_eq!(s.vm_memory_overhead_percent, 0.1);
        assert_eq!(s.reserved_enis, 1);
        assert_eq!((s.kube_client_qps, s.kube_client_burst), (50, 100));
    }

    #[test]
    fn flag_form_overrides_env() {
        let s = parse(
            &[("CLUSTER_NAME", "from-env"), ("LOG_LEVEL", "error")],
            &[
                "--cluster-name",
                "from-flag",
                "--log-level=warn",
                "--batch-max-duration",
                "2h",
                "--feature-gates",
                "NodeRepair=true",
                "--disable-leader-election",
                "true",
                "--reserved-enis",
                "2",
            ],
        )
        .unwrap();
        assert_eq!(s.cluster_name, "from-flag");
        assert_eq!(s.log_level, LogLevel::Warn);
        assert_eq!(s.batch_max_duration, Duration::from_secs(7200));
        assert!(s.feature_gates.node_repair && s.feature_gates.drift);
        assert!(s.disable_leader_election);
        assert_eq!(s.reserved_enis, 2);
    }

    #[test]
    fn disruption_settings_read_from_the_environment() {
        let s = parse(
            &[
                ("CLUSTER_NAME", "prod"),
                ("DISRUPTION_POLL_INTERVAL", "2s"),
                ("CONSOLIDATION_VALIDATION_WAIT", "3s"),
                ("DISRUPTION_QUEUE_TIMEOUT", "90s"),
                ("DRIFT_RECHECK_INTERVAL", "20s"),
                ("MIN_CONSOLIDATION_SAVINGS", "0.05"),
                ("CONSOLIDATION_REPLACE_WITH_SEVERAL", "true"),
                ("MULTI_NODE_CONSOLIDATION_CANDIDATES", "all"),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(s.disruption_poll_interval, Duration::from_secs(2));
        assert_eq!(s.consolidation_validation_wait, Duration::from_secs(3));
        assert_eq!(s.disruption_queue_timeout, Duration::from_secs(90));
        assert_eq!(s.drift_recheck_interval, Duration::from_secs(20));
        assert_eq!(s.min_consolidation_savings, 0.05);
        assert!(s.consolidation_replace_with_several);
        assert_eq!(s.multi_node_consolidation_candidates, CandidateCap(None));
    }

    #[test]
    fn bad_values_name_the_setting() {
        let cases: [(&str, &str, &str); 13] = [
            ("MIN_CONSOLIDATION_SAVINGS", "-1", "non-negative"),
            ("MULTI_NODE_CONSOLIDATION_CANDIDATES", "1", "at least 2"),
            (
                "CONSOLIDATION_REPLACE_WITH_SEVERAL",
                "sure",
                "--consolidation-replace-with-several",
            ),
            ("CONSOLIDATION_VALIDATION_WAIT", "0s", "greater than zero"),
            ("BATCH_IDLE_DURATION", "1 second", "--batch-idle-duration"),
            ("BATCH_MAX_DURATION", "0s", "greater than zero"),
            ("FEATURE_GATES", "Drift=yes", "\"Drift\" has invalid value"),
            ("LOG_LEVEL", "verbose", "--log-level"),
            ("METRICS_PORT", "70000", "METRICS_PORT"),
            (
                "VM_MEMORY_OVERHEAD_PERCENT",
                "-0.1",
                "VM_MEMORY_OVERHEAD_PERCENT",
            ),
            ("CLUSTER_ENDPOINT", "eks.example.com", "not an http(s) URL"),
            ("RESERVED_ENIS", "-1", "RESERVED_ENIS"),
            ("ISOLATED_VPC", "maybe", "--isolated-vpc"),
        ];
        for (var, value, expected) in cases {
            let err = parse(&[("CLUSTER_NAME", "prod"), (var, value)], &[]).unwrap_err();
            assert!(err.contains(expected), "{var}={value}: {err}");
            // clap's default value name is the variable's name, so every message names both.
            assert!(err.contains(var), "{var}={value}: {err}");
        }
    }

    #[test]
    fn feature_gates_round_trip() {
        let all_on: FeatureGates = "Drift=true,SpotToSpotConsolidation=true,NodeRepair=true"
            .parse()
            .unwrap();
        assert_eq!(all_on.to_string().parse::<FeatureGates>(), Ok(all_on));
        assert_eq!("".parse::<FeatureGates>(), Ok(FeatureGates::default()));
        assert!("Drift".parse::<FeatureGates>().is_err());
    }

    #[test]
    fn unknown_feature_gates_are_kept_aside_not_fatal() {
        // What the current upstream chart renders.
        let gates: FeatureGates =
            "ReservedCapacity=true,SpotToSpotConsolidation=true,NodeRepair=false,NodeOverlay=false"
                .parse()
                .unwrap();
        assert!(gates.spot_to_spot_consolidation && gates.drift && !gates.node_repair);
        assert_eq!(
            gates.ignored,
            ["ReservedCapacity=true", "NodeOverlay=false"]
        );
        assert_eq!(
            gates.to_string(),
            "Drift=true,SpotToSpotConsolidation=true,NodeRepair=false"
        );
    }

    #[test]
    fn packing_settings_reach_the_provisioners_solve_options() {
        let default = parse(&[("CLUSTER_NAME", "c")], &[])
            .unwrap()
            .solve_options();
        assert_eq!(default.packing, Packing::Karpenter);
        assert_eq!(default.node_cost, 0.0);
        assert_eq!(default.burstable, Burstable::Allow);
        let set = parse(
            &[
                ("CLUSTER_NAME", "c"),
                ("PACKING", "optimal"),
                ("PACKING_NODE_COST", "0.002"),
                ("PACKING_BURSTABLE", "derate=0.5"),
            ],
            &[],
        )
        .unwrap()
        .solve_options();
        assert_eq!(set.packing, Packing::Optimal);
        assert_eq!(set.node_cost, 0.002);
        assert_eq!(set.burstable, Burstable::Derate(0.5));
        let bad = parse(&[("CLUSTER_NAME", "c"), ("PACKING_BURSTABLE", "some")], &[]).unwrap_err();
        assert!(
            bad.contains("PACKING_BURSTABLE") || bad.contains("--packing-burstable"),
            "{bad}"
        );
        assert!(bad.contains("allow, exclude or derate=F"), "{bad}");
    }
}

//! The live demo (`cargo xtask demo --live`): on the e2e bed, the controller runs against the
//! seed's staging NodePool and EC2NodeClass, a Deployment is scaled through a list of sizes,
//! and after each step the fleet is printed with its $/h once it has settled (nodes launched or
//! consolidated away, every pod Running). The `live-demo` binary runs it; an e2e test runs a
//! short version, so the demo a user runs is the one CI checks.

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::controller::{ControllerProcess, install_crds};
use crate::harness::Ctx;
use crate::scenario::{
    PoolSpec, apply_pool, deploy, pool_name, scale, settled_fleet, with_teardown,
};

/// The fleet after one step.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// Pods asked for.
    pub replicas: i32,
    /// Instance type of each node, sorted.
    pub nodes: Vec<String>,
    /// On-demand $/h of those nodes.
    pub price_per_hour: f64,
    /// From the scale to a settled fleet.
    pub took: Duration,
}

/// How long the fleet must stay the same to count as settled (several disruption passes).
const SETTLED_FOR: Duration = Duration::from_secs(10);

/// Runs the demo on the bed: scales a Deployment of 900m / 512Mi pods through `sizes`,
/// writing a line per step to `out`; the steps. Tears its pool down at the end.
pub async fn run(ctx: &Ctx, sizes: &[i32], out: &mut (impl Write + Send)) -> Vec<Step> {
    install_crds(&ctx.kube).await;
    let pool = pool_name(ctx, "demo");
    let controller = ControllerProcess::start(
        &ctx.env,
        "live-demo",
        &[
            ("DISRUPTION_POLL_INTERVAL", "2s"),
            ("CONSOLIDATION_VALIDATION_WAIT", "2s"),
        ],
    );
    let _sim = ctx.start_sim(ctx.sim_config_for_tag("karpenter.sh/nodepool", &pool));
    let mut steps = Vec::new();
    with_teardown(ctx, &[&pool], async {
        // The seed's staging pool, consolidating whenever nodes are underused.
        let spec = PoolSpec::staging(json!([
            {"key": "karpenter.k8s.aws/instance-cpu", "operator": "Lt", "values": ["9"]}
        ]))
        .with_disruption(json!({
            "consolidationPolicy": "WhenUnderutilized",
            "expireAfter": "720h",
            "budgets": [{"nodes": "50%"}],
        }));
        apply_pool(ctx, &pool, &spec).await;
        let _ = writeln!(
            out,
            "NodePool and EC2NodeClass {pool}: the seed's staging pool (t/m/r/c, on-demand, amd64), types of ≤ 8 vCPUs; \
             the controller logs to target/e2e/logs/live-demo.log"
        );
        deploy(ctx, "web", Some(&pool), 0, json!({"cpu": "900m", "memory": "512Mi"}), |_| {}).await;
        for &replicas in sizes {
            let started = Instant::now();
            scale(ctx, "web", replicas).await;
            let fleet = settled_fleet(
                ctx,
                &pool,
                ("web", replicas as usize),
                ("the fleet to settle", Duration::from_secs(600), SETTLED_FOR),
                |_| Ok(()),
            )
            .await;
            let step = Step {
                replicas,
                nodes: fleet.types,
                price_per_hour: fleet.price_per_hour,
                took: fleet.since.saturating_duration_since(started),
            };
            let _ = writeln!(
                out,
                "web = {:>3} pods → {} node(s) ${:.4}/h in {:.1} s: {}",
                step.replicas,
                step.nodes.len(),
                step.price_per_hour,
                step.took.as_secs_f64(),
                summary(&step.nodes)
            );
            steps.push(step);
        }
        controller.assert_no_panic();
    })
    .await;
    steps
}

/// `3 × t3a.2xlarge, t3a.xlarge`.
fn summary(types: &[String]) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for t in types {
        match counts.iter_mut().find(|(n, _)| n == t) {
            Some((_, c)) => *c += 1,
            None => counts.push((t.clone(), 1)),
        }
    }
    counts
        .iter()
        .map(|(t, c)| {
            if *c == 1 {
                t.clone()
            } else {
                format!("{c} × {t}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fleet_summary_counts_repeated_types() {
        let types = ["t3a.2xlarge", "t3a.2xlarge", "t3a.xlarge"].map(String::from);
        assert_eq!(summary(&types), "2 × t3a.2xlarge, t3a.xlarge");
        assert_eq!(summary(&[]), "");
    }
}

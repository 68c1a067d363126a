//! The users' Grafana dashboards against a real Prometheus. Prometheus (Debian's package) runs
//! on loopback with the users' own scrape job from `../shared/dashboards/*-prometheus-values.yaml`
//! (`kubernetes_sd_configs` role endpoints, keep `karpenter;http-metrics`) against the bed's API
//! server, where a Service `karpenter` with the port `http-metrics` points at the controller.
//! After a scale-up and a consolidation, every panel query and template variable of the six
//! dashboards (0.36.0 release, 0.36 June-2024 rewrite, current v1; capacity and performance) is
//! evaluated through Prometheus's HTTP API and must return data, except the few listed in
//! [`NO_DATA`] with the reason. Needs the e2e bed and the `prometheus` package.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use karpenter_e2e::controller::{ControllerProcess, install_crds, repo_root};
use karpenter_e2e::dashboards::{self, Dashboard, Variable};
use karpenter_e2e::harness::*;
use karpenter_e2e::prometheus::{Prometheus, endpoints_target_groups, scrape_job, write_targets};
use karpenter_e2e::scenario::*;
use kube_client::api::{Api, PostParams};
use serde_json::json;

/// Timers shortened through the controller's settings.
const FAST: &[(&str, &str)] = &[
    ("DISRUPTION_POLL_INTERVAL", "2s"),
    ("CONSOLIDATION_VALIDATION_WAIT", "2s"),
];

/// Queries that legitimately return nothing here, by a metric they read, and why.
const NO_DATA: &[(&str, &str)] = &[
    (
        "karpenter_deprovisioning_actions_performed",
        "a v0.31 name the 0.36.0 release dashboard still queries; Karpenter 0.36 did not export it either",
    ),
    (
        "node_time_seconds",
        "node-exporter's (the Node Summary's uptime column); the bed runs no node-exporter",
    ),
];

/// The six dashboards.
fn dashboards_dir() -> PathBuf {
    repo_root().join("../shared/dashboards")
}

fn load_dashboards() -> Vec<(String, Dashboard)> {
    let dir = dashboards_dir();
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with("-dashboard.json") {
            continue;
        }
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        out.push((name, dashboards::parse(&json).unwrap()));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(out.len(), 6, "six dashboards in {}", dir.display());
    out
}

/// This machine's address other hosts would reach it on (an Endpoints address may not be
/// loopback); the controller listens on every address.
fn host_ip() -> String {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").expect("udp socket");
    socket
        .connect("10.255.255.255:1")
        .expect("a route to a non-local address (for the Endpoints address)");
    socket.local_addr().expect("local address").ip().to_string()
}

/// The Service `karpenter` (port `http-metrics`) and its Endpoints at the controller, in `ns`;
/// and a decoy the users' relabel rules must drop (another Service's `http-metrics` port, at
/// the controller's health port).
async fn expose_controller(ctx: &Ctx, ns: &str, port: u16, health_port: u16) {
    let services: Api<Service> = Api::namespaced(ctx.kube.clone(), ns);
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "karpenter"},
        "spec": {"ports": [{"name": "http-metrics", "port": 8000, "targetPort": port}]},
    }))
    .unwrap();
    services
        .create(&PostParams::default(), &svc)
        .await
        .expect("Service karpenter");
    let endpoints: Api<Endpoints> = Api::namespaced(ctx.kube.clone(), ns);
    let ep: Endpoints = serde_json::from_value(json!({
        "metadata": {"name": "karpenter"},
        "subsets": [{
            "addresses": [{"ip": host_ip()}],
            "ports": [{"name": "http-metrics", "port": port}],
        }],
    }))
    .unwrap();
    endpoints
        .create(&PostParams::default(), &ep)
        .await
        .expect("Endpoints karpenter");
    let decoy: Endpoints = serde_json::from_value(json!({
        "metadata": {"name": "karpenter-decoy"},
        "subsets": [{
            "addresses": [{"ip": host_ip()}],
            "ports": [{"name": "http-metrics", "port": health_port}],
        }],
    }))
    .unwrap();
    endpoints
        .create(&PostParams::default(), &decoy)
        .await
        .expect("Endpoints karpenter-decoy");
}

/// Keeps `file` filled with the Endpoints of `namespaces` as file-SD target groups, every
/// second, until dropped (Debian's Prometheus has no Kubernetes discovery; see
/// `karpenter_e2e::prometheus`).
fn discover_endpoints(
    ctx: &Ctx,
    namespaces: Vec<String>,
    file: PathBuf,
) -> tokio::task::JoinHandle<()> {
    let kube = ctx.kube.clone();
    write_targets(&file, &json!([]));
    tokio::spawn(async move {
        loop {
            let mut all = Vec::new();
            for ns in &namespaces {
                let api: Api<Endpoints> = Api::namespaced(kube.clone(), ns);
                if let Ok(list) = api.list(&Default::default()).await {
                    all.extend(list.items);
                }
            }
            write_targets(&file, &endpoints_target_groups(&all));
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

/// Every query of every dashboard with its variables substituted: (dashboard, panel, PromQL).
/// A label_values variable with "All" becomes the alternation of its values; a single-value or
/// custom variable multiplies the queries that use it by its options.
async fn expand(
    prom: &Prometheus,
    dashboards: &[(String, Dashboard)],
) -> Result<Vec<(String, String, String)>, String> {
    let mut out = Vec::new();
    for (file, d) in dashboards {
        let mut fixed = BTreeMap::new();
        let mut choices: Vec<(String, Vec<String>)> = Vec::new();
        for v in &d.variables {
            match v {
                Variable::LabelValues {
                    label, include_all, ..
                } => {
                    let promql = v.promql().unwrap();
                    let result = prom.query(&promql).await?;
                    let values: Vec<String> = result
                        .iter()
                        .filter_map(|s| s["metric"][label.as_str()].as_str().map(str::to_owned))
                        .collect();
                    if values.is_empty() {
                        return Err(format!(
                            "{file}: variable {} has no values ({promql})",
                            v.name()
                        ));
                    }
                    out.push((file.clone(), format!("variable {}", v.name()), promql));
                    if *include_all {
                        fixed.insert(v.name().to_owned(), dashboards::all_value(&values));
                    } else {
                        choices.push((v.name().to_owned(), values));
                    }
                }
                Variable::Custom { name, options } => choices.push((name.clone(), options.clone())),
            }
        }
        for q in &d.queries {
            let mut combos = vec![fixed.clone()];
            for (name, values) in &choices {
                if dashboards::uses(&q.expr, name) {
                    combos = combos
                        .into_iter()
                        .flat_map(|c| {
                            values.iter().map(move |v| {
                                let mut c = c.clone();
                                c.insert(name.clone(), v.clone());
                                c
                            })
                        })
                        .collect();
                }
            }
            for values in combos {
                let expr = dashboards::substitute(&q.expr, &values, "1m");
                let label = format!(
                    "{} [{}] {:?}",
                    q.panel,
                    q.ref_id,
                    values
                        .iter()
                        .filter(|(k, _)| choices.iter().any(|(n, _)| n == *k))
                        .collect::<Vec<_>>()
                );
                out.push((file.clone(), label, expr));
            }
        }
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_dashboard_query_returns_data_from_a_real_prometheus() {
    karpenter_e2e::install_crypto_provider();
    let _serial = serial().await;
    let dashboards = load_dashboards();
    let values = std::fs::read_to_string(dashboards_dir().join("current-prometheus-values.yaml"))
        .expect("prometheus values");
    run("dash", |ctx| async move {
        install_crds(&ctx.kube).await;
        let pool = pool_name(&ctx, "dash");
        let controller = ControllerProcess::start(&ctx.env, "dashboards", FAST);
        let _sim = ctx.start_sim(ctx.sim_config_for_tag("karpenter.sh/nodepool", &pool));
        with_teardown(&ctx, &[&pool], async {
            let spec = PoolSpec::staging(json!([
                {"key": "karpenter.k8s.aws/instance-cpu", "operator": "Lt", "values": ["9"]}
            ]))
            .with_limits(json!({"cpu": "1000", "memory": "1000Gi"}))
            .with_disruption(json!({
                "consolidationPolicy": "WhenUnderutilized",
                "expireAfter": "720h",
                "budgets": [{"nodes": "100%"}],
            }));
            apply_pool(&ctx, &pool, &spec).await;
            // The namespace the Service lives in is the test's (deploy creates it).
            deploy(&ctx, "web", Some(&pool), 16, json!({"cpu": "900m", "memory": "512Mi"}), |_| {}).await;
            let port: u16 = controller
                .metrics_url
                .rsplit(':')
                .next()
                .and_then(|p| p.trim_end_matches("/metrics").parse().ok())
                .expect("metrics port");
            expose_controller(&ctx, &ctx.id, port, controller.health_port).await;
            let dir = ctx.env.state_dir.join(format!("prometheus-{}", ctx.id));
            std::fs::create_dir_all(&dir).unwrap();
            let targets = dir.join("targets.json");
            let (job, namespaces) = scrape_job(&values, &ctx.id, &targets).expect("scrape job");
            let discovery = discover_endpoints(&ctx, namespaces, targets);
            let prom = Prometheus::start(&dir, &[job]);
            prom.wait_ready(Duration::from_secs(60)).await;
            // The users' relabel rules keep the controller's metrics port and drop the decoy.
            let scraped = eventually("Prometheus scraping exactly the controller", Duration::from_secs(60), || async {
                let t = prom.targets().await;
                (t.len() == 1 && t[0].1 == "up").then_some(t)
            })
            .await;
            assert!(scraped[0].0.ends_with(&format!(":{port}/metrics")), "{scraped:?}");

            eventually("16 pods Running", Duration::from_secs(300), || async {
                let pods = pods_of(&ctx, "web").await;
                (pods.iter().filter(|p| pod_running_ready(p)).count() == 16).then_some(())
            })
            .await;
            let nodes_before = nodes_of(&ctx, &pool).await.len();
            scale(&ctx, "web", 2).await;
            eventually_why("a node consolidated away and its termination scraped", Duration::from_secs(300), || async {
                let nodes = nodes_of(&ctx, &pool).await.len();
                if nodes >= nodes_before {
                    return Err(format!("{nodes} nodes (was {nodes_before})"));
                }
                let terminated = prom
                    .query("karpenter_nodes_termination_duration_seconds_count")
                    .await?;
                if terminated.is_empty() {
                    return Err(format!("{nodes} nodes; no termination scraped yet; targets {:?}", prom.targets().await));
                }
                Ok(())
            })
            .await;

            // Every query returns data once a few scrapes cover the scale-up and the scale-down.
            let no_data = |expr: &str| NO_DATA.iter().any(|(metric, _)| expr.contains(metric));
            let checked = eventually_why("every dashboard query returns data", Duration::from_secs(120), || async {
                let queries = expand(&prom, &dashboards).await?;
                let mut empty = Vec::new();
                let mut unexpected = Vec::new();
                for (file, what, expr) in &queries {
                    let result = prom.query(expr).await.map_err(|e| format!("{file} {what}: {expr}: {e}"))?;
                    match (result.is_empty(), no_data(expr)) {
                        (true, false) => empty.push(format!("{file} {what}: {expr}")),
                        (false, true) => unexpected.push(format!("{file} {what}: {expr}")),
                        _ => {}
                    }
                }
                if !unexpected.is_empty() {
                    panic!("queries listed as without data returned data (update NO_DATA): {unexpected:#?}");
                }
                if empty.is_empty() { Ok(queries) } else { Err(format!("{} without data: {empty:#?}", empty.len())) }
            })
            .await;
            let skipped = checked.iter().filter(|(_, _, e)| no_data(e)).count();
            eprintln!(
                "dashboards: {} queries over {} dashboards returned data through Prometheus ({} without data as listed: {:?}); targets {:?}",
                checked.len() - skipped,
                dashboards.len(),
                skipped,
                NO_DATA.iter().map(|(m, _)| *m).collect::<Vec<_>>(),
                prom.targets().await,
            );
            discovery.abort();
            controller.assert_no_panic();
        })
        .await;
    })
    .await;
}

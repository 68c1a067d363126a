//! The `karpenter` controller end to end: pending pods → NodeClaims → CreateFleet on the fake
//! EC2 → simulated kubelets → pods Running. Needs the e2e bed (`cargo xtask e2e`).
//!
//! Each test starts its own controller process. A controller acts on every pending pod in the
//! cluster, so the tests take `scenario::serial` and run one at a time.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use base64::Engine;
use k8s_openapi::api::core::v1::Node;
use karpenter_e2e::controller::{ControllerProcess, install_crds};
use karpenter_e2e::harness::*;
use karpenter_e2e::scenario::*;
use kube_client::ResourceExt;
use kube_client::api::{Api, ListParams};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_pods_on_the_staging_pool_get_nodes_from_the_controller() {
    karpenter_e2e::install_crypto_provider();
    let _serial = serial().await;
    run("prov50", |ctx| async move {
        install_crds(&ctx.kube).await;
        let pool = pool_name(&ctx, "staging");
        let controller = ControllerProcess::start(&ctx.env, "prov50", &[]);
        let _sim = ctx.start_sim(ctx.sim_config_for_tag("karpenter.sh/nodepool", &pool));
        apply_staging(&ctx, &pool, json!([])).await;
        let started = Instant::now();
        create_deployment(&ctx, "web", 50, "500m", "512Mi").await;

        let result = tokio::time::timeout(Duration::from_secs(240), async {
            eventually("50 pods Running", Duration::from_secs(240), || async {
                (running_pods(&ctx).await.len() == 50).then_some(())
            })
            .await
        })
        .await;
        assert!(
            result.is_ok(),
            "pods did not all run; controller log tail:\n{}",
            controller.log_tail(60)
        );
        eprintln!("50 pods Running after {:?}", started.elapsed());

        // Every claim went through the lifecycle and its node carries the pool's labels.
        let claims = claims_of(&ctx, &pool).await;
        assert!(!claims.is_empty());
        for c in &claims {
            let status = c.status.as_ref().expect("claim status");
            for cond in ["Launched", "Registered", "Initialized", "Ready"] {
                assert!(
                    status.is_true(cond),
                    "{} not {cond}: {status:?}",
                    c.name_any()
                );
            }
            let types = c.labels().get("node.kubernetes.io/instance-type").cloned();
            let category = c
                .labels()
                .get("karpenter.k8s.aws/instance-category")
                .cloned();
            assert!(
                matches!(category.as_deref(), Some("t" | "m" | "r" | "c")),
                "{} launched {types:?} of category {category:?}",
                c.name_any()
            );
        }
        // Cheapest fitting: the claim lists every fitting type cheapest first, and CreateFleet
        // (on-demand `lowest-price`) launched the cheapest of them.
        let catalog = karpenter_providers::aws::catalog::Catalog::embedded();
        let price = |t: &str| {
            catalog
                .get(t)
                .map(|e| e.on_demand_price)
                .unwrap_or_else(|| panic!("{t} has no static price"))
        };
        for c in &claims {
            let options: Vec<&str> = c
                .spec
                .requirements
                .iter()
                .find(|r| r.key == INSTANCE_TYPE)
                .map(|r| r.values.iter().map(String::as_str).collect())
                .unwrap_or_default();
            assert!(
                options.len() > 1,
                "{} has instance-type options",
                c.name_any()
            );
            let launched = label(c, INSTANCE_TYPE).expect("launched type label");
            let cheapest = options
                .iter()
                .map(|t| price(t))
                .fold(f64::INFINITY, f64::min);
            eprintln!(
                "{} launched {launched} (${}/h); cheapest of {} options ${cheapest}/h",
                c.name_any(),
                price(launched),
                options.len()
            );
            assert_eq!(options.first(), Some(&launched), "options cheapest first");
            assert_eq!(
                price(launched),
                cheapest,
                "{launched} is not the cheapest option"
            );
        }
        let nodes: Api<Node> = Api::all(ctx.kube.clone());
        let pool_nodes = nodes
            .list(&ListParams::default().labels(&format!("karpenter.sh/nodepool={pool}")))
            .await
            .expect("list nodes")
            .items;
        assert_eq!(pool_nodes.len(), claims.len(), "one node per claim");
        for n in &pool_nodes {
            assert_eq!(
                n.labels()
                    .get("karpenter.sh/registered")
                    .map(String::as_str),
                Some("true")
            );
            assert_eq!(n.labels().get(TEST_LABEL), Some(&ctx.id));
        }

        // Subnets: only the tagged ones, and per zone the one with the most free IPs.
        let tagged: BTreeSet<&str> = ctx.env.aws.subnets.iter().map(|s| s.id.as_str()).collect();
        let out = ctx
            .ec2
            .describe_instances()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("tag:karpenter.sh/nodepool")
                    .values(&pool)
                    .build(),
            )
            .send()
            .await
            .expect("DescribeInstances");
        let instances: Vec<_> = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter(|i| i.state().and_then(|s| s.name()).map(|s| s.as_str()) == Some("running"))
            .collect();
        assert_eq!(instances.len(), claims.len());
        for i in &instances {
            let subnet = i.subnet_id().unwrap_or_default();
            assert!(
                tagged.contains(subnet),
                "instance in untagged subnet {subnet}"
            );
        }

        // The launch template carries the merged userData: the user's prefix delegation first,
        // then the bootstrap with maxPods 110 from the v1beta1 pool.
        let templates = ctx
            .ec2
            .describe_launch_templates()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("tag:karpenter.sh/nodepool")
                    .values(&pool)
                    .build(),
            )
            .send()
            .await
            .expect("DescribeLaunchTemplates");
        assert_eq!(
            templates.launch_templates().len(),
            1,
            "one template for one image and maxPods"
        );
        let lt_id = templates.launch_templates()[0]
            .launch_template_id()
            .expect("template id")
            .to_string();
        let versions = ctx
            .ec2
            .describe_launch_template_versions()
            .launch_template_id(&lt_id)
            .send()
            .await
            .expect("DescribeLaunchTemplateVersions");
        let encoded = versions.launch_template_versions()[0]
            .launch_template_data()
            .and_then(|d| d.user_data())
            .expect("launch template has userData");
        let user_data = String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .expect("userData is base64"),
        )
        .expect("userData is text");
        let prefix = user_data
            .find("ENABLE_PREFIX_DELEGATION=true")
            .expect("user's script kept");
        let bootstrap = user_data
            .find("/etc/eks/bootstrap.sh")
            .expect("bootstrap present");
        assert!(prefix < bootstrap, "user's script runs before bootstrap");
        assert!(user_data.contains("--max-pods=110"), "{user_data}");

        // Metrics under Karpenter's names, and the pods were told where they go.
        let metrics = controller.scrape_metrics().await.expect("GET /metrics");
        let created: f64 = metrics
            .lines()
            .filter(|l| l.starts_with("karpenter_nodeclaims_created_total{"))
            .filter(|l| l.contains(&format!("nodepool=\"{pool}\"")))
            .filter(|l| l.contains("reason=\"provisioned\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert_eq!(
            created,
            claims.len() as f64,
            "nodeclaims created:\n{metrics}"
        );
        assert!(
            metrics.contains("karpenter_cluster_state_synced 1"),
            "{metrics}"
        );
        assert!(
            metrics.contains("karpenter_cloudprovider_duration_seconds_count{"),
            "{metrics}"
        );
        // The capacity dashboards' gauges: every node of the pool, the requests of the pods
        // bound to it, every pod's state (written every 10 s).
        let nodes: Vec<String> = claims
            .iter()
            .filter_map(|c| c.status.as_ref()?.node_name.clone())
            .collect();
        let pool_label = format!("nodepool=\"{pool}\"");
        eventually(
            "the dashboards' node and pod gauges",
            Duration::from_secs(40),
            || async {
                let text = controller.scrape_metrics().await.ok()?;
                let every_node = nodes.iter().all(|n| {
                    let node = format!("node_name=\"{n}\"");
                    metric_sum(
                        &text,
                        "karpenter_nodes_allocatable",
                        &[&node, &pool_label, "resource_type=\"cpu\""],
                    ) > 0.0
                });
                let bound = metric_sum(
                    &text,
                    "karpenter_nodes_total_pod_requests",
                    &[&pool_label, "resource_type=\"pods\""],
                );
                let namespace = format!("namespace=\"{}\"", ctx.id);
                let running = metric_sum(
                    &text,
                    "karpenter_pods_state",
                    &[&namespace, &pool_label, "phase=\"Running\""],
                );
                let usage = metric_sum(
                    &text,
                    "karpenter_nodepools_usage",
                    &[&pool_label, "resource_type=\"cpu\""],
                );
                (every_node && bound >= 1.0 && running >= 1.0 && usage > 0.0).then_some(())
            },
        )
        .await;
        let events: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(ctx.kube.clone(), &ctx.id);
        let nominated = events
            .list(&ListParams::default())
            .await
            .expect("list events")
            .items
            .iter()
            .filter(|e| e.reason.as_deref() == Some("Nominated"))
            .count();
        assert!(nominated > 0, "no Nominated events");

        teardown(&ctx, &pool).await;
        drop(controller);
    })
    .await;
}

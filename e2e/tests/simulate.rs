//! `karpenter simulate --from-cluster` against the bed: it reads the live objects (a NodePool,
//! its EC2NodeClass, the NodeClaim and Node the controller made, their pods, a PDB served as
//! `policy/v1beta1` by this v1.20 API server) and prints the same disruption plan the file mode
//! would. Needs the e2e bed.

use std::process::Command;
use std::time::Duration;

use karpenter_e2e::controller::{ControllerProcess, install_crds, karpenter_binary};
use karpenter_e2e::harness::*;
use karpenter_e2e::scenario::*;
use kube_client::ResourceExt;
use serde_json::{Value, json};

/// Runs `karpenter simulate --from-cluster -o json` with `extra` flags; the JSON it printed.
async fn simulate_cluster(ctx: &Ctx, extra: &[&str]) -> Value {
    let kubeconfig = ctx.env.cluster.kubeconfig.display().to_string();
    let mut args = vec![
        "simulate".to_owned(),
        "--from-cluster".to_owned(),
        "--kubeconfig".to_owned(),
        kubeconfig,
        "-o".to_owned(),
        "json".to_owned(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let out = tokio::task::spawn_blocking(move || {
        Command::new(karpenter_binary())
            .args(&args)
            .output()
            .expect("runs the karpenter binary")
    })
    .await
    .expect("simulate task");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "simulate failed: {stderr}");
    serde_json::from_slice(&out.stdout).expect("simulate -o json prints JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simulate_from_cluster_explains_why_the_live_node_is_kept() {
    karpenter_e2e::install_crypto_provider();
    let _serial = serial().await;
    run("simcl", |ctx| async move {
        install_crds(&ctx.kube).await;
        let pool = pool_name(&ctx, "simcl");
        let controller = ControllerProcess::start(&ctx.env, "sim-cluster", &[]);
        let _sim = ctx.start_sim(ctx.sim_config_for_tag("karpenter.sh/nodepool", &pool));
        with_teardown(&ctx, &[&pool], async {
            apply_staging(&ctx, &pool, json!([])).await;
            deploy(
                &ctx,
                "web",
                Some(&pool),
                2,
                json!({"cpu": "500m", "memory": "256Mi"}),
                |_| {},
            )
            .await;
            let claim = claim_holding(&ctx, &pool, "web", 2).await;
            let node = claim
                .status
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .expect("registered claim names its node");
            let pdb = create_pdb(&ctx, "web", "web", json!({"maxUnavailable": 0})).await;
            eventually(
                "the PDB's status allows 0",
                Duration::from_secs(30),
                || async {
                    (pdb_disruptions_allowed(&ctx, &pdb, "web").await == Some(0)).then_some(())
                },
            )
            .await;

            let json = simulate_cluster(&ctx, &[]).await;
            let pools: Vec<&str> = json["input"]["node_pools"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|p| p["name"].as_str())
                .collect();
            assert!(pools.contains(&pool.as_str()), "{pools:?}");
            assert!(
                json["input"]["existing_nodes"].as_u64().unwrap() >= 1,
                "{json}"
            );

            let d = &json["disruption"];
            let in_commands = d["commands"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|c| c["candidates"].as_array().unwrap().iter())
                .filter(|n| n.as_str() == Some(node.as_str()))
                .count();
            assert_eq!(
                in_commands, 0,
                "a node under a PDB allowing 0 is in no command: {d}"
            );
            let kept: Vec<&Value> = d["kept"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|k| k["node"] == node.as_str())
                .collect();
            assert_eq!(kept.len(), 1, "{d}");
            let kept = kept[0];
            // The NodeClaim was read and matched to its Node.
            assert_eq!(kept["nodeclaim"], claim.name_any().as_str(), "{kept}");
            assert_eq!(kept["nodepool"], pool.as_str(), "{kept}");
            let pdb_reason = kept["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["kind"] == "pdb_blocks")
                .unwrap_or_else(|| panic!("kept by the PDB: {kept}"));
            let message = pdb_reason["message"].as_str().unwrap();
            assert!(
                message.contains(&format!("PodDisruptionBudget {}/web", ctx.id)),
                "{message}"
            );
            eprintln!("simulate --from-cluster kept {node}: {}", kept["reasons"]);
            controller.assert_no_panic();
        })
        .await;
    })
    .await;
}

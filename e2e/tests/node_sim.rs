//! The node simulator against the real control plane (kube-apiserver/-controller-manager/
//! -scheduler v1.20) and moto. Needs the e2e bed (`cargo xtask e2e`, or `cargo xtask cluster up`
//! + `cargo xtask aws up` and `KARPENTER_E2E_DIR`); fails loudly without it.
//!
//! Each test tags its instances and labels its nodes with a unique id, runs its own simulator
//! filtered on that tag, and cleans up (namespace, instances, nodes) even when it fails, so the
//! tests can share the bed and run in parallel.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use karpenter_e2e::harness::*;
use karpenter_e2e::node_sim::NotReady;
use kube_client::api::{DeleteParams, ListParams, PostParams};
use kube_client::{Api, ResourceExt};
use serde_json::json;

fn quantity(node: &Node, list: &str, key: &str) -> String {
    let status = node.status.as_ref().unwrap();
    let map = match list {
        "capacity" => status.capacity.as_ref(),
        _ => status.allocatable.as_ref(),
    };
    map.and_then(|m| m.get(key))
        .map(|q| q.0.clone())
        .unwrap_or_default()
}

/// Memory/storage quantity in bytes (the API server normalises `7758848Ki` to `7577Mi`).
fn bytes(q: &str) -> i64 {
    let (n, shift) = match q.len().checked_sub(2).map(|i| q.split_at(i)) {
        Some((n, "Ki")) => (n, 10),
        Some((n, "Mi")) => (n, 20),
        Some((n, "Gi")) => (n, 30),
        _ => (q, 0),
    };
    n.parse::<i64>().expect("integer quantity") << shift
}

async fn create_workloads(ctx: &Ctx, replicas: i32) {
    let namespaces: Api<Namespace> = Api::all(ctx.kube.clone());
    let ns: Namespace = serde_json::from_value(json!({ "metadata": { "name": ctx.id } })).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    let template = |app: &str| {
        json!({
            "metadata": { "labels": { "app": app } },
            "spec": {
                "nodeSelector": { TEST_LABEL: ctx.id },
                "containers": [{
                    "name": "app", "image": "registry.k8s.io/pause:3.2",
                    "resources": { "requests": { "cpu": "100m", "memory": "64Mi" } },
                }],
            },
        })
    };
    let deploy: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "web", "namespace": ctx.id },
        "spec": { "replicas": replicas, "selector": { "matchLabels": { "app": "web" } },
                  "template": template("web") },
    }))
    .unwrap();
    let ds: DaemonSet = serde_json::from_value(json!({
        "metadata": { "name": "agent", "namespace": ctx.id },
        "spec": { "selector": { "matchLabels": { "app": "agent" } }, "template": template("agent") },
    }))
    .unwrap();
    Api::<Deployment>::namespaced(ctx.kube.clone(), &ctx.id)
        .create(&PostParams::default(), &deploy)
        .await
        .expect("create deployment");
    Api::<DaemonSet>::namespaced(ctx.kube.clone(), &ctx.id)
        .create(&PostParams::default(), &ds)
        .await
        .expect("create daemonset");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_join_turn_ready_run_pods_and_leave() {
    run("join", |ctx| async move {
        let mut config = ctx.sim_config();
        // Long enough to see the node as the kubelet registers it, before Ready.
        config.ready_delay = Duration::from_secs(3);
        let sim = ctx.start_sim(config);
        let t0 = Instant::now();
        let mut ids = ctx.launch(1, "m5.large").await;
        ids.extend(ctx.launch(1, "m6g.large").await);
        let t_launched = t0.elapsed();

        let first = eventually("nodes registered", DEADLINE, || async {
            let nodes = ctx.nodes().await;
            (nodes.len() == 2).then_some(nodes)
        })
        .await;
        let t_registered = t0.elapsed();
        for n in &first {
            if condition(n, "Ready").as_deref() == Some("False") {
                assert!(
                    has_taint(n, "node.kubernetes.io/not-ready", "NoSchedule"),
                    "a node that is not Ready yet carries the not-ready taint: {:?}",
                    n.spec
                );
            }
        }
        let nodes = eventually(
            "Ready nodes without the not-ready taint",
            DEADLINE,
            || async {
                let nodes = ctx.nodes().await;
                (nodes.len() == 2 && nodes.iter().all(fully_ready)).then_some(nodes)
            },
        )
        .await;
        let t_ready = t0.elapsed();

        let by_type: BTreeMap<String, &Node> = nodes
            .iter()
            .map(|n| (n.labels()["node.kubernetes.io/instance-type"].clone(), n))
            .collect();
        let m5 = by_type["m5.large"];
        let m6g = by_type["m6g.large"];
        let zone = &ctx.env.aws.subnets[0].zone;
        let hostname = m5.name_any();
        for (key, value) in [
            ("topology.kubernetes.io/zone", zone.as_str()),
            ("topology.kubernetes.io/region", ctx.env.aws.region.as_str()),
            ("kubernetes.io/hostname", hostname.as_str()),
            ("kubernetes.io/arch", "amd64"),
            ("kubernetes.io/os", "linux"),
            ("karpenter.sh/nodepool", "default"),
        ] {
            assert_eq!(
                m5.labels().get(key).map(String::as_str),
                Some(value),
                "{key}"
            );
        }
        assert_eq!(m6g.labels()["kubernetes.io/arch"], "arm64");
        assert!(m5.name_any().starts_with("ip-") && m5.name_any().ends_with(".ec2.internal"));
        let provider_id = m5.spec.as_ref().unwrap().provider_id.clone().unwrap();
        assert!(
            ids.iter()
                .any(|id| provider_id == format!("aws:///{zone}/{id}")),
            "{provider_id} is one of {ids:?}"
        );
        assert_eq!(quantity(m5, "capacity", "cpu"), "2");
        assert_eq!(quantity(m5, "capacity", "pods"), "110");
        assert_eq!(bytes(&quantity(m5, "capacity", "memory")), 7577 << 20);
        assert_eq!(quantity(m5, "allocatable", "cpu"), "1930m");
        assert_eq!(bytes(&quantity(m5, "allocatable", "memory")), 6903 << 20);
        assert_eq!(
            bytes(&quantity(m5, "capacity", "ephemeral-storage")),
            20 << 30
        );
        assert_eq!(quantity(m6g, "capacity", "pods"), "110");
        for n in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
            assert_eq!(condition(m5, n).as_deref(), Some("False"), "{n}");
        }
        let info = m5.status.as_ref().unwrap().node_info.as_ref().unwrap();
        assert_eq!(info.kubelet_version, "v1.20.2");
        let leases: Api<Lease> = Api::namespaced(ctx.kube.clone(), "kube-node-lease");
        let lease = leases.get(&m5.name_any()).await.expect("the node's lease");
        let spec = lease.spec.unwrap();
        assert_eq!(
            spec.holder_identity.as_deref(),
            Some(m5.name_any().as_str())
        );
        assert!(spec.renew_time.is_some());
        assert_eq!(sim.nodes().len(), 2);

        // A Deployment and a DaemonSet, scheduled by the real kube-scheduler.
        let t_pods = Instant::now();
        create_workloads(&ctx, 4).await;
        let pods: Api<Pod> = Api::namespaced(ctx.kube.clone(), &ctx.id);
        let running = eventually("4 web + 2 agent pods Running/Ready", DEADLINE, || async {
            let list = pods.list(&ListParams::default()).await.ok()?.items;
            (list.len() == 6 && list.iter().all(pod_running_ready)).then_some(list)
        })
        .await;
        let t_running = t_pods.elapsed();
        let node_ips: BTreeMap<String, String> = nodes
            .iter()
            .map(|n| {
                let ip = n.status.as_ref().unwrap().addresses.as_ref().unwrap()[0]
                    .address
                    .clone();
                (n.name_any(), ip)
            })
            .collect();
        for p in &running {
            let node = p.spec.as_ref().unwrap().node_name.clone().unwrap();
            let status = p.status.as_ref().unwrap();
            assert_eq!(
                status.host_ip.as_ref(),
                node_ips.get(&node),
                "{}",
                p.name_any()
            );
            assert!(
                status.pod_ip.as_ref().unwrap().starts_with("100."),
                "{:?}",
                status.pod_ip
            );
        }
        let agents: Vec<_> = running
            .iter()
            .filter(|p| p.labels()["app"] == "agent")
            .collect();
        assert_eq!(agents.len(), 2, "one DaemonSet pod per node");

        // A deleted pod (30 s grace) is gone as soon as the "kubelet" has stopped it.
        let victim = running[0].name_any();
        pods.delete(&victim, &DeleteParams::default())
            .await
            .expect("delete pod");
        eventually("deleted pod gone", Duration::from_secs(15), || async {
            matches!(pods.get_opt(&victim).await, Ok(None)).then_some(())
        })
        .await;

        // Remove the workloads while the "kubelets" run, so their pods finish.
        Api::<Namespace>::all(ctx.kube.clone())
            .delete(&ctx.id, &DeleteParams::default())
            .await
            .expect("delete namespace");
        eventually("namespace's pods gone", DEADLINE, || async {
            pods.list(&ListParams::default())
                .await
                .ok()?
                .items
                .is_empty()
                .then_some(())
        })
        .await;

        // Terminating an instance removes its node.
        let t_term = Instant::now();
        ctx.terminate(&ids[..1]).await;
        ctx.wait_node_gone(&ids[0]).await;
        let t_gone = t_term.elapsed();
        assert_eq!(sim.nodes().len(), 1);
        println!(
            "timings: 2 RunInstances done {t_launched:?}, Nodes {t_registered:?}, Ready+untainted \
             {t_ready:?} (ready delay 3 s); workloads→6 pods Running {t_running:?}; \
             TerminateInstances→Node gone {t_gone:?}"
        );
        ctx.terminate(&ids[1..]).await;
        eventually("all nodes deleted", DEADLINE, || async {
            ctx.nodes().await.is_empty().then_some(())
        })
        .await;
        sim.shutdown().await.expect("clean shutdown");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_join_knobs() {
    run("never", |ctx| async move {
        let sim = ctx.start_sim(ctx.sim_config());
        sim.never_join_instance_type("t3.small");
        // Held back long enough to set the per-instance knob after RunInstances returns.
        sim.set_join_delay(Duration::from_secs(3));
        let held = ctx.launch(1, "m5.large").await;
        sim.never_join_instance(&held[0]);
        let small = ctx.launch(1, "t3.small").await;
        sim.set_join_delay(Duration::ZERO);
        let t0 = Instant::now();
        let control = ctx.launch(1, "m5.large").await;

        // While the control instance joins and a further 5 s pass, the other two stay out.
        ctx.wait_ready(&control[0]).await;
        println!(
            "timings: RunInstances→Ready+untainted {:?} (no delays)",
            t0.elapsed()
        );
        let window = Instant::now() + Duration::from_secs(5);
        while Instant::now() < window {
            assert!(
                ctx.node_of(&held[0]).await.is_none(),
                "never-join instance joined"
            );
            assert!(
                ctx.node_of(&small[0]).await.is_none(),
                "never-join type joined"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(sim.node_for_instance(&held[0]).is_none());

        // Lifting the knobs lets them join.
        sim.allow_join_instance(&held[0]);
        sim.allow_join_instance_type("t3.small");
        for id in [&held[0], &small[0]] {
            ctx.wait_ready(id).await;
        }
        sim.shutdown().await.expect("clean shutdown");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_and_back() {
    run("notready", |ctx| async move {
        let mut config = ctx.sim_config();
        config.lease_renew_interval = Duration::from_secs(1);
        let sim = ctx.start_sim(config);
        let ids = ctx.launch(1, "m5.large").await;
        let id = ids[0].clone();
        let node = ctx.wait_ready(&id).await;
        let name = node.name_any();
        let leases: Api<Lease> = Api::namespaced(ctx.kube.clone(), "kube-node-lease");
        let renew_time = || async {
            let lease = leases.get(&name).await.ok()?;
            lease.spec?.renew_time.map(|t| t.0)
        };

        // A silent kubelet: Ready=Unknown, the lease stops, the control plane taints the node
        // unreachable.
        sim.set_not_ready(&id, NotReady::Unknown).expect("knob");
        eventually("Ready=Unknown and unreachable taint", DEADLINE, || async {
            let n = ctx.node_of(&id).await?;
            (condition(&n, "Ready").as_deref() == Some("Unknown")
                && has_taint(&n, "node.kubernetes.io/unreachable", "NoSchedule"))
            .then_some(())
        })
        .await;
        let frozen = renew_time().await.expect("lease renew time");
        let later = Instant::now() + Duration::from_secs(3);
        while Instant::now() < later {
            assert_eq!(
                renew_time().await,
                Some(frozen),
                "lease renewed while NotReady"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }

        sim.set_ready(&name).expect("knob by node name");
        eventually(
            "Ready again, unreachable taint lifted",
            DEADLINE,
            || async {
                let n = ctx.node_of(&id).await?;
                (fully_ready(&n) && !has_taint(&n, "node.kubernetes.io/unreachable", "NoSchedule"))
                    .then_some(())
            },
        )
        .await;
        eventually("lease renewed again", DEADLINE, || async {
            renew_time().await.filter(|t| *t > frozen)
        })
        .await;

        // A kubelet posting NotReady: the control plane adds the not-ready taint back.
        sim.set_not_ready(&id, NotReady::False).expect("knob");
        eventually("Ready=False and not-ready taint", DEADLINE, || async {
            let n = ctx.node_of(&id).await?;
            (condition(&n, "Ready").as_deref() == Some("False")
                && has_taint(&n, "node.kubernetes.io/not-ready", "NoSchedule"))
            .then_some(())
        })
        .await;
        sim.set_ready(&id).expect("knob");
        ctx.wait_ready(&id).await;
        assert!(sim.set_ready("i-does-not-exist").is_err());

        // A Node deleted by someone else stays deleted while the instance runs (a kubelet does
        // not re-register either).
        let nodes: Api<Node> = Api::all(ctx.kube.clone());
        nodes
            .delete(&name, &DeleteParams::default())
            .await
            .expect("delete node");
        eventually("simulator notices the deletion", DEADLINE, || async {
            sim.node_for_instance(&id).filter(|n| n.deleted_externally)
        })
        .await;
        assert!(ctx.node_of(&id).await.is_none(), "node re-registered");

        ctx.terminate(&ids).await;
        ctx.wait_node_gone(&id).await;
        sim.shutdown().await.expect("clean shutdown");
    })
    .await;
}

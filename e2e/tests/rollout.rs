//! Two replicas rolled the way the chart's Deployment rolls them (`maxUnavailable: 1`, PDB
//! `maxUnavailable: 1`): the Deployment controller stops an old pod only once its replacement
//! is Ready, so a standby that is never Ready (Ready only once leading) would deadlock the
//! rollout. Here two controller processes share the leader Lease as two pods would: the new
//! one is Ready while the old one leads, the old one exits cleanly on SIGTERM and releases the
//! Lease, and the new one takes over within seconds, not a lease duration, and provisions.
//! The bed runs no kubelet for controller pods, so the pods are processes. Needs the e2e bed.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use karpenter_e2e::controller::{ControllerProcess, install_crds};
use karpenter_e2e::harness::*;
use karpenter_e2e::scenario::*;
use kube_client::api::{Api, PostParams};
use serde_json::json;

const LEASE: &str = "karpenter-leader-election";
/// controller-runtime's lease duration, which Karpenter and karpenter-rs use.
const LEASE_DURATION: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_roll_the_standby_is_ready_and_takes_over_within_seconds() {
    karpenter_e2e::install_crypto_provider();
    let _serial = serial().await;
    run("rollout", |ctx| async move {
        install_crds(&ctx.kube).await;
        // The release namespace, where the Lease lives.
        let namespaces: Api<Namespace> = Api::all(ctx.kube.clone());
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": ctx.id}})).unwrap();
        namespaces.create(&PostParams::default(), &ns).await.expect("namespace");
        let leases: Api<Lease> = Api::namespaced(ctx.kube.clone(), &ctx.id);
        let holder = || async {
            leases.get_opt(LEASE).await.ok().flatten()?.spec?.holder_identity.filter(|h| !h.is_empty())
        };
        let env = [
            ("DISABLE_LEADER_ELECTION", "false"),
            ("SYSTEM_NAMESPACE", ctx.id.as_str()),
        ];

        let mut old = ControllerProcess::start(&ctx.env, "rollout-old", &env);
        let old_identity = eventually("the first replica leads and is Ready", Duration::from_secs(60), || async {
            let h = holder().await?;
            ready(&old).await.then_some(h)
        })
        .await;

        // The rollout creates the new pod; it must become Ready while the old one leads.
        let new = ControllerProcess::start(&ctx.env, "rollout-new", &env);
        eventually_why("the new replica Ready as a standby", Duration::from_secs(60), || async {
            let h = holder().await;
            if !ready(&new).await {
                return Err("new replica not Ready".to_owned());
            }
            if h.as_deref() != Some(old_identity.as_str()) {
                return Err(format!("Lease held by {h:?}, not the old replica"));
            }
            Ok(())
        })
        .await;

        // Now the Deployment controller may stop the old pod: SIGTERM, as the kubelet sends.
        let stopped = Instant::now();
        old.terminate();
        let status = old.wait_exit(Duration::from_secs(30)).await.expect("the old replica exits within the default grace period");
        assert!(status.success(), "the old replica exits cleanly: {status}");
        let new_identity = eventually("the new replica leads", Duration::from_secs(60), || async {
            holder().await.filter(|h| *h != old_identity)
        })
        .await;
        let handover = stopped.elapsed();
        assert!(
            handover < LEASE_DURATION,
            "released on shutdown, not left to expire: took {handover:?}"
        );
        assert!(ready(&new).await, "the new leader stays Ready");

        // The new leader does the work.
        let pool = pool_name(&ctx, "roll");
        let _sim = ctx.start_sim(ctx.sim_config_for_tag("karpenter.sh/nodepool", &pool));
        with_teardown(&ctx, &[&pool], async {
            apply_staging(&ctx, &pool, json!([])).await;
            deploy(&ctx, "web", Some(&pool), 2, json!({"cpu": "500m", "memory": "256Mi"}), |_| {}).await;
            eventually("2 pods Running after the handover", Duration::from_secs(180), || async {
                let pods = pods_of(&ctx, "web").await;
                (pods.iter().filter(|p| pod_running_ready(p)).count() == 2).then_some(())
            })
            .await;
            new.assert_no_panic();
            old.assert_no_panic();
            assert!(
                new.log_tail(100_000).contains("controllers starting"),
                "the new replica started its controllers"
            );
            eprintln!("rollout: standby Ready while the old replica led; SIGTERM → {new_identity} leading in {:.1} s (lease duration {LEASE_DURATION:?})", handover.as_secs_f64());
        })
        .await;
    })
    .await;
}

async fn ready(controller: &ControllerProcess) -> bool {
    let address = format!("127.0.0.1:{}", controller.health_port);
    matches!(
        http_request(&address, "GET", "/readyz", "").await,
        Ok((200, _))
    )
}

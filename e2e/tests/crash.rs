//! Crash safety: the controller is SIGKILLed at random moments while NodeClaims launch and
//! terminate, and restarted each time. Afterwards no instance leaks, no claim ever got two
//! instances, and no Node is left without a claim. Needs the e2e bed.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_ec2::types::Filter;
use karpenter_core::api::NodeClaim;
use karpenter_e2e::controller::{ControllerProcess, install_crds};
use karpenter_e2e::harness::*;
use karpenter_e2e::scenario::*;
use kube_client::ResourceExt;
use kube_client::api::{Api, DeleteParams};
use serde_json::json;

/// Rounds of launching and terminating [`CLAIMS_PER_ROUND`] claims: 10 × 3 = 30 cycles.
const ROUNDS: usize = 10;
const CLAIMS_PER_ROUND: i32 = 3;

/// A small xorshift generator: kill moments must differ from run to run, and the seed is
/// printed so a failing run can be replayed by hand.
struct Moments(u64);

impl Moments {
    fn next_ms(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

/// Runs the controller as a kubelet would: started again whenever it exits on its own, and
/// killed with SIGKILL (then started again) on request.
struct Kubelet {
    kill: tokio::sync::mpsc::Sender<()>,
    task: tokio::task::JoinHandle<(usize, usize)>,
}

impl Kubelet {
    fn start(env: karpenter_e2e::env::TestEnv) -> Kubelet {
        let (kill, mut kills) = tokio::sync::mpsc::channel::<()>(1);
        let task = tokio::spawn(async move {
            let (mut killed, mut exited) = (0, 0);
            let start = |n: usize| ControllerProcess::start(&env, &format!("crash-{n}"), &[]);
            let mut controller = start(0);
            loop {
                tokio::select! {
                    msg = kills.recv() => match msg {
                        Some(()) => {
                            controller.kill();
                            killed += 1;
                            controller = start(killed + exited);
                        }
                        None => break,
                    },
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {
                        if !controller.is_running() {
                            exited += 1;
                            eprintln!("controller exited on its own (log {}); starting it again", controller.log.display());
                            controller = start(killed + exited);
                        }
                    }
                }
            }
            controller.assert_no_panic();
            (killed, exited)
        });
        Kubelet { kill, task }
    }

    async fn sigkill(&self) {
        self.kill.send(()).await.expect("kubelet runs");
    }

    /// Stops the controller; how many times it was killed and how many it exited on its own.
    async fn stop(self) -> (usize, usize) {
        drop(self.kill);
        self.task.await.expect("kubelet task")
    }
}

/// Every instance the pool ever had (terminated ones included), by its claim tag.
async fn instances_by_claim(
    ctx: &Ctx,
    pool: &str,
) -> (
    BTreeMap<String, Vec<String>>,
    Vec<(String, String, Option<String>)>,
) {
    let out = ctx
        .ec2
        .describe_instances()
        .filters(
            Filter::builder()
                .name("tag:karpenter.sh/nodepool")
                .values(pool)
                .build(),
        )
        .send()
        .await
        .expect("describe instances");
    let mut by_claim: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut all = Vec::new();
    for i in out.reservations().iter().flat_map(|r| r.instances()) {
        let id = i.instance_id().unwrap_or_default().to_owned();
        let state = i
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_owned())
            .unwrap_or_default();
        let claim = i
            .tags()
            .iter()
            .find(|t| t.key() == Some("karpenter.sh/nodeclaim"))
            .and_then(|t| t.value())
            .map(str::to_owned);
        if let Some(c) = &claim {
            by_claim.entry(c.clone()).or_default().push(id.clone());
        }
        all.push((id, state, claim));
    }
    (by_claim, all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_at_random_moments_leaks_nothing_and_never_buys_twice() {
    karpenter_e2e::install_crypto_provider();
    let _serial = serial().await;
    run("crash", |ctx| async move {
        install_crds(&ctx.kube).await;
        let pool = pool_name(&ctx, "crash");
        let seed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
        let mut moments = Moments(seed);
        let kubelet = Kubelet::start(ctx.env.clone());
        let _sim = ctx.start_sim(ctx.sim_config_for_tag("karpenter.sh/nodepool", &pool));
        with_teardown(&ctx, &[&pool], async {
            apply_staging(&ctx, &pool, json!([])).await;
            // One pod per node: each replica is one claim.
            deploy(&ctx, "web", Some(&pool), 0, json!({"cpu": "500m", "memory": "256Mi"}), |spec| {
                spec["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}});
            })
            .await;
            let claims: Api<NodeClaim> = Api::all(ctx.kube.clone());
            for round in 0..ROUNDS {
                // Launch: kill somewhere between the claims' creation and their status writes.
                scale(&ctx, "web", CLAIMS_PER_ROUND).await;
                tokio::time::sleep(Duration::from_millis(1_000 + moments.next_ms(4_000))).await;
                kubelet.sigkill().await;
                eventually(&format!("round {round}: 3 pods running"), Duration::from_secs(180), || async {
                    let running = pods_of(&ctx, "web").await.iter().filter(|p| pod_running_ready(p)).count();
                    (running == CLAIMS_PER_ROUND as usize).then_some(())
                })
                .await;
                // Terminate: kill somewhere in the drain or the instance termination.
                scale(&ctx, "web", 0).await;
                for c in claims_of(&ctx, &pool).await {
                    let _ = claims.delete(&c.name_any(), &DeleteParams::default()).await;
                }
                tokio::time::sleep(Duration::from_millis(moments.next_ms(3_000))).await;
                kubelet.sigkill().await;
                eventually(&format!("round {round}: claims gone"), Duration::from_secs(180), || async {
                    claims_of(&ctx, &pool).await.is_empty().then_some(())
                })
                .await;
            }
            // After the GC window (2 s grace, 3 s interval in e2e) nothing of the pool runs.
            let (by_claim, all) = eventually("no instance of the pool left running", Duration::from_secs(60), || async {
                let (by_claim, all) = instances_by_claim(&ctx, &pool).await;
                let running = all.iter().filter(|(_, s, _)| s == "pending" || s == "running").count();
                (running == 0).then_some((by_claim, all))
            })
            .await;
            let leaked = all.iter().filter(|(_, s, _)| s == "pending" || s == "running").count();
            let doubled: Vec<(&String, &Vec<String>)> = by_claim.iter().filter(|(_, ids)| ids.len() > 1).collect();
            let untagged = all.iter().filter(|(_, _, c)| c.is_none()).count();
            let nodes_without_claim = nodes_of(&ctx, &pool).await.len();
            let (kills, exits) = kubelet.stop().await;
            eprintln!(
                "crash test (seed {seed}): {} launch/terminate cycles, {kills} SIGKILLs, {exits} exits on its own; {} instances launched in all ({untagged} never tagged for a claim); leaked {leaked}, claims with two instances {}, nodes without a claim {nodes_without_claim}",
                ROUNDS * CLAIMS_PER_ROUND as usize,
                all.len(),
                doubled.len()
            );
            assert_eq!(leaked, 0, "leaked instances: {all:?}");
            assert!(doubled.is_empty(), "claims that got two instances: {doubled:?}");
            assert_eq!(nodes_without_claim, 0, "nodes left without a claim");
        })
        .await;
    })
    .await;
}

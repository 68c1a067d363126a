//! Lease leader election against the bed's real API server: of two candidates exactly one
//! leads, and when it shuts down (releasing the Lease) the other takes over well before the
//! lease would have expired. Needs the e2e bed (`cargo xtask e2e`); fails loudly without it.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::coordination::v1::Lease;
use karpenter::runtime::leader::{Ended, LeaderElector, Timings};
use karpenter_e2e::env::TestEnv;
use karpenter_e2e::harness::eventually;
use karpenter_e2e::node_sim::kube_client_from;
use kube_client::Api;
use kube_client::api::DeleteParams;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

const NAMESPACE: &str = "default";

/// A running candidate: whether it leads, how to stop it, and its result.
struct Candidate {
    identity: String,
    leading: watch::Receiver<bool>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Ended>,
}

impl Candidate {
    fn start(client: kube_client::Client, lease: &str, identity: &str, timings: Timings) -> Self {
        let elector = LeaderElector::new(client, NAMESPACE, lease, identity, timings);
        let (tx, leading) = watch::channel(false);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(elector.run(tx, async {
            let _ = stopped.await;
        }));
        Candidate {
            identity: identity.to_string(),
            leading,
            stop: Some(stop),
            task,
        }
    }

    fn leads(&self) -> bool {
        *self.leading.borrow()
    }

    async fn shutdown(mut self) -> Ended {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("elector stops within the deadline")
            .expect("elector task")
    }
}

async fn holder(leases: &Api<Lease>, name: &str) -> Option<String> {
    leases.get_opt(name).await.ok()??.spec?.holder_identity
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_election_one_leader_then_fast_takeover_after_release() {
    let env = TestEnv::require();
    let client = kube_client_from(&env.cluster.kubeconfig)
        .await
        .expect("kube client from the bed's kubeconfig");
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let lease = format!("karpenter-leader-election-{}-{nanos:x}", std::process::id());
    let leases: Api<Lease> = Api::namespaced(client.clone(), NAMESPACE);

    // A long lease and short retries: a takeover well within the lease duration can only come
    // from the leader releasing the Lease.
    let timings = Timings {
        lease_duration: Duration::from_secs(30),
        renew_deadline: Duration::from_secs(4),
        retry_period: Duration::from_millis(300),
    };
    let a = Candidate::start(client.clone(), &lease, "candidate-a", timings);
    let b = Candidate::start(client.clone(), &lease, "candidate-b", timings);

    eventually("one candidate leads", Duration::from_secs(20), || async {
        (a.leads() || b.leads()).then_some(())
    })
    .await;
    // For several retry periods exactly one leads, and the Lease names it.
    let watch_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < watch_until {
        assert!(a.leads() != b.leads(), "a={} b={}", a.leads(), b.leads());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (leader, standby) = if a.leads() { (a, b) } else { (b, a) };
    assert_eq!(
        holder(&leases, &lease).await.as_deref(),
        Some(leader.identity.as_str())
    );
    let transitions_before = leases
        .get(&lease)
        .await
        .expect("lease")
        .spec
        .and_then(|s| s.lease_transitions)
        .unwrap_or(0);

    // The leader steps down; the standby takes over long before the 30 s lease would expire.
    let stopped_at = Instant::now();
    assert_eq!(leader.shutdown().await, Ended::Shutdown);
    eventually(
        "the standby takes over",
        Duration::from_secs(10),
        || async { standby.leads().then_some(()) },
    )
    .await;
    assert!(stopped_at.elapsed() < Duration::from_secs(15));
    let spec = leases.get(&lease).await.expect("lease").spec.expect("spec");
    assert_eq!(
        spec.holder_identity.as_deref(),
        Some(standby.identity.as_str())
    );
    assert_eq!(spec.lease_transitions, Some(transitions_before + 1));

    assert_eq!(standby.shutdown().await, Ended::Shutdown);
    assert_eq!(holder(&leases, &lease).await.as_deref(), Some(""));
    let _ = leases.delete(&lease, &DeleteParams::default()).await;
}

//! `karpenter run`: the controller process. Wires the settings, the kube client, the AWS
//! provider, the reflectors, the HTTP endpoints, leader election and the controllers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::core::v1::Service;
use karpenter_providers::CloudProvider;
use karpenter_providers::aws::cloud::{AwsCloudProvider, ClusterInfo};
use karpenter_providers::aws::eks::{
    ClusterEndpoint, EksApi, EndpointError, SdkEks, resolve_cluster_endpoint,
};
use karpenter_providers::aws::sqs::SqsApi;
use kube_client::runtime::events::{Recorder, Reporter};
use kube_client::{Api, Client, Config};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::controllers::claim_disruption::{self, ClaimDisruptionContext};
use crate::controllers::disruption::{self, DisruptionContext, DisruptionSettings};
use crate::controllers::events::Events;
use crate::controllers::expiration::{self, ExpirationContext};
use crate::controllers::interruption::{self, InterruptionContext};
use crate::controllers::lifecycle::{self, LifecycleContext};
use crate::controllers::termination::{self, TerminationContext};
use crate::controllers::{
    claim_migration, cluster_metrics, gc, hash, nodeclass_status, nodepool_status, provisioner,
};
use crate::model::ClusterState;
use crate::runtime::aws_sdk;
use crate::runtime::http_server::{self, Health};
use crate::runtime::leader::{self, LeaderElector, Timings};
use crate::runtime::metrics::{MeteredCloudProvider, Metrics};
use crate::runtime::settings::Settings;
use crate::runtime::supervisor::{Supervisor, TaskEnded};

/// Why the controller stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No usable kubeconfig / in-cluster config.
    #[error("kubernetes client: {0}")]
    Kube(String),
    /// No API server endpoint for nodes: `CLUSTER_ENDPOINT` is unset and DescribeCluster
    /// failed or gave none.
    #[error("cluster {cluster}: {source}")]
    ClusterEndpoint {
        /// `CLUSTER_NAME`.
        cluster: String,
        /// Why.
        source: EndpointError,
    },
    /// A listener could not bind.
    #[error("binding {what} on {addr}: {source}")]
    Bind {
        /// `metrics` or `health`.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Leadership was lost; the process must exit so a fresh one campaigns again.
    #[error("leader election lost")]
    LeadershipLost,
    /// A start-up step did not finish within [`STARTUP_STEP_DEADLINE`].
    #[error("{0} did not finish within the start-up deadline")]
    Startup(&'static str),
    /// A task that must run until shutdown ended (returned or panicked).
    #[error("{0}")]
    TaskEnded(TaskEnded),
}

/// Runs the controller until SIGTERM/SIGINT, lost leadership, or the end of a task that must
/// not end (then `/healthz` turns unhealthy and the error names the task).
pub async fn run(settings: Settings) -> Result<(), RunError> {
    for gate in &settings.feature_gates.ignored {
        tracing::warn!(gate = %gate, "ignoring a feature gate this version does not know");
    }
    // kube links rustls with ring, the AWS SDK with aws-lc-rs: one must be chosen explicitly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = Config::infer()
        .await
        .map_err(|e| RunError::Kube(e.to_string()))?;
    let ca_bundle = ca_bundle_base64(&config);
    let client = Client::try_from(config.clone()).map_err(|e| RunError::Kube(e.to_string()))?;
    let cluster = cluster_info(&client, &config, &settings, ca_bundle).await?;
    tracing::info!(cluster = %cluster.name, endpoint = %cluster.endpoint, version = %cluster.kubernetes_version, "starting karpenter-rs");

    let metrics = Arc::new(Metrics::new());
    let health = Health::new();
    // The HTTP servers stop last, so probes answer until the very end.
    let (http_stop_tx, http_stop_rx) = watch::channel(false);
    let http_stopped = move || {
        let mut rx = http_stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let mut runtime = Supervisor::new();
    let metrics_listener = bind("metrics", settings.metrics_port).await?;
    let health_listener = bind("health", settings.health_probe_port).await?;
    runtime.spawn(
        "metrics server",
        http_server::serve_metrics(metrics_listener, metrics.clone(), http_stopped()),
    );
    runtime.spawn(
        "health server",
        http_server::serve_health(health_listener, health.clone(), http_stopped()),
    );

    // The shared cluster model runs on every replica: a standby is Ready once it is synced,
    // so a 2-replica Deployment with a PodDisruptionBudget can roll.
    let pdb_resource = crate::model::disruption_budget_resource(&client).await;
    let eviction_api_version = eviction_api_version(&client).await;
    let state = ClusterState::start(&client, pdb_resource, metrics.clone(), &mut runtime);
    // Only the readiness task waits on the stores: kube-runtime's store readiness wakes a single
    // waiter (a oneshot receiver keeps one waker), so a second concurrent waiter could sleep
    // forever. Everyone else waits on this flag.
    let (synced_tx, synced_rx) = watch::channel(false);
    runtime.spawn(
        "readiness",
        readiness(state.clone(), health.clone(), metrics.clone(), synced_tx),
    );
    // Building the provider reads the environment and the SDK's profile files; a start-up that
    // never finishes must end the process (the kubelet restarts it), not leave it unready.
    let aws_provider = tokio::time::timeout(
        STARTUP_STEP_DEADLINE,
        aws_sdk::provider(&settings, cluster, state.clone()),
    )
    .await
    .map_err(|_| RunError::Startup("building the AWS provider"))?;
    let aws_provider = Arc::new(aws_provider);
    tracing::info!("AWS provider ready");
    let sqs: Option<Arc<dyn SqsApi>> = match &settings.interruption_queue {
        Some(_) => Some(Arc::new(aws_sdk::sqs().await)),
        None => {
            tracing::info!("interruption handling off (no INTERRUPTION_QUEUE)");
            None
        }
    };

    let mut signal = std::pin::pin!(shutdown_signal());
    let (leading_tx, mut leading_rx) = watch::channel(settings.disable_leader_election);
    let (election_stop_tx, election_stop_rx) = watch::channel(false);
    let mut election = None;
    if !settings.disable_leader_election {
        let elector = LeaderElector::new(
            client.clone(),
            &settings.system_namespace,
            leader::LEASE_NAME,
            leader::default_identity(),
            Timings::default(),
        );
        tracing::info!(identity = %elector.identity(), "waiting for leadership");
        let mut stop = election_stop_rx.clone();
        election = Some(tokio::spawn(elector.run(leading_tx, async move {
            let _ = stop.wait_for(|s| *s).await;
        })));
    }

    let mut controllers = Supervisor::new();
    let outcome = tokio::select! {
        _ = &mut signal => Ok(()),
        ended = runtime.first_end() => Err(ended_error(ended)),
        _ = async {
            let _ = leading_rx.wait_for(|l| *l).await;
            let mut synced = synced_rx.clone();
            let _ = synced.wait_for(|s| *s).await;
        } => {
            tracing::info!("leading and synced; controllers starting");
            start_controllers(&mut controllers, &settings, &client, &state, &metrics, AwsClients { provider: aws_provider, sqs: sqs.clone() }, eviction_api_version);
            let lost = async {
                if settings.disable_leader_election {
                    std::future::pending::<()>().await;
                }
                let _ = leading_rx.wait_for(|l| !*l).await;
            };
            tokio::select! {
                _ = &mut signal => Ok(()),
                _ = lost => Err(RunError::LeadershipLost),
                ended = controllers.first_end() => Err(ended_error(ended)),
                ended = runtime.first_end() => Err(ended_error(ended)),
            }
        }
    };
    match &outcome {
        Ok(()) => {
            tracing::info!("shutting down");
            health.set_not_ready("shutting down");
        }
        Err(e) => {
            tracing::error!(error = %e, "stopping");
            health.set_unhealthy(e.to_string());
        }
    }
    // Controllers stop before the Lease is released, so a new leader never overlaps them.
    controllers.shutdown().await;
    let _ = election_stop_tx.send(true);
    if let Some(e) = election {
        let _ = e.await;
    }
    let _ = http_stop_tx.send(true);
    runtime.shutdown().await;
    outcome
}

fn ended_error(ended: Option<TaskEnded>) -> RunError {
    RunError::TaskEnded(ended.unwrap_or_else(|| TaskEnded {
        name: "every task".into(),
        how: "ended".into(),
    }))
}

async fn bind(what: &'static str, port: u16) -> Result<TcpListener, RunError> {
    let addr = SocketAddr::from(([0, 0, 0, 0], port));
    TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Bind { what, addr, source })
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

/// The longest a start-up step (outside waiting for leadership and for the caches) may take.
pub const STARTUP_STEP_DEADLINE: Duration = Duration::from_secs(60);

/// How long a watch may keep failing before the replica reports not ready.
const WATCH_FAILURE_GRACE: Duration = Duration::from_secs(30);

/// Readiness: ready once every watch has listed, not ready while a watch keeps failing.
async fn readiness(
    state: ClusterState,
    health: Health,
    metrics: Arc<Metrics>,
    synced: watch::Sender<bool>,
) {
    health.set_not_ready("caches not synced");
    state.wait_synced().await;
    synced.send_replace(true);
    metrics.set_cluster_state_synced(true);
    tracing::info!("caches synced");
    loop {
        let failing = state.watch_health.failing_longer_than(WATCH_FAILURE_GRACE);
        if failing.is_empty() {
            health.set_ready();
        } else {
            let kinds: Vec<String> = failing.iter().map(|(k, e)| format!("{k}: {e}")).collect();
            health.set_not_ready(format!("watch failing: {}", kinds.join("; ")));
        }
        metrics.set_cluster_state_synced(failing.is_empty());
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Where the API server serves Evictions: the version the `pods/eviction` subresource names
/// (`policy/v1` from Kubernetes 1.22, `policy/v1beta1` before).
async fn eviction_api_version(client: &Client) -> String {
    let listed = client.list_core_api_resources("v1").await;
    let version = listed.ok().and_then(|list| {
        list.resources
            .into_iter()
            .find(|r| r.name == "pods/eviction")
            .and_then(|r| r.version)
    });
    match version.as_deref() {
        Some("v1") => "policy/v1".to_owned(),
        _ => "policy/v1beta1".to_owned(),
    }
}

/// The AWS side the controllers use.
struct AwsClients {
    /// The cloud provider.
    provider: Arc<AwsCloudProvider>,
    /// The interruption queue's client, when `INTERRUPTION_QUEUE` is set.
    sqs: Option<Arc<dyn SqsApi>>,
}

/// Spawns every controller under `controllers`.
fn start_controllers(
    controllers: &mut Supervisor,
    settings: &Settings,
    client: &Client,
    state: &ClusterState,
    metrics: &Arc<Metrics>,
    aws: AwsClients,
    eviction_api_version: String,
) {
    let AwsClients {
        provider: aws_provider,
        sqs,
    } = aws;
    let provider: Arc<dyn CloudProvider> = Arc::new(MeteredCloudProvider::new(
        aws_provider.clone(),
        metrics.clone(),
        "karpenter",
    ));
    let reporter = Reporter {
        controller: "karpenter".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let recorder = Recorder::new(client.clone(), reporter);
    // First, so Karpenter 0.3x's claims are writable before the others need to write them.
    controllers.spawn(
        "nodeclaim.migration",
        claim_migration::run(client.clone(), state.clone()),
    );
    controllers.spawn(
        "provisioner",
        provisioner::Provisioner::new(
            client.clone(),
            state.clone(),
            provider.clone(),
            metrics.clone(),
            recorder.clone(),
            settings.batch_idle_duration,
            settings.batch_max_duration,
        )
        .with_solve_options(settings.solve_options())
        .run(),
    );
    controllers.spawn(
        "nodeclaim.lifecycle",
        lifecycle::run(Arc::new(LifecycleContext {
            client: client.clone(),
            state: state.clone(),
            provider: provider.clone(),
            metrics: metrics.clone(),
            recorder: recorder.clone(),
            launch_ttl: settings.launch_ttl,
            registration_ttl: settings.registration_ttl,
            launches: Default::default(),
            controllers_started: k8s_openapi::jiff::Timestamp::now(),
            backoff: Default::default(),
        })),
    );
    controllers.spawn(
        "nodepool status",
        nodepool_status::run(
            client.clone(),
            state.clone(),
            Arc::new(Events::new(recorder.clone())),
        ),
    );
    controllers.spawn(
        "termination",
        termination::run(Arc::new(TerminationContext {
            client: client.clone(),
            state: state.clone(),
            provider: provider.clone(),
            metrics: metrics.clone(),
            events: Arc::new(Events::new(recorder.clone())),
            eviction_api_version,
            evictions: Default::default(),
            backoff: Default::default(),
            drained: Default::default(),
        })),
    );
    controllers.spawn(
        "disruption",
        disruption::run(Arc::new(DisruptionContext::new(
            client.clone(),
            state.clone(),
            provider.clone(),
            metrics.clone(),
            Arc::new(Events::new(recorder.clone())),
            DisruptionSettings {
                poll_interval: settings.disruption_poll_interval,
                validation_wait: settings.consolidation_validation_wait,
                queue_timeout: settings.disruption_queue_timeout,
                options: karpenter_core::disruption::DisruptionOptions {
                    spot_to_spot: settings.feature_gates.spot_to_spot_consolidation,
                    replace_with_several: settings.consolidation_replace_with_several,
                    multi_node_cap: settings.multi_node_consolidation_candidates.0,
                    ..Default::default()
                },
                min_savings_per_hour: settings.min_consolidation_savings,
            },
        ))),
    );
    controllers.spawn(
        "garbage collection",
        gc::run(
            client.clone(),
            state.clone(),
            provider.clone(),
            settings.gc_interval,
            settings.gc_grace,
        ),
    );
    controllers.spawn(
        "nodeclass status",
        nodeclass_status::run(client.clone(), state.clone(), aws_provider),
    );
    // NodeClaim disruption status: hashes, then the conditions and expiry that read them.
    controllers.spawn("hash", hash::run(client.clone(), state.clone()));
    controllers.spawn(
        "nodeclaim.disruption",
        claim_disruption::run(Arc::new(ClaimDisruptionContext {
            client: client.clone(),
            state: state.clone(),
            provider: provider.clone(),
            drift_gate: settings.feature_gates.drift,
            drift_recheck: settings.drift_recheck_interval,
            metrics: metrics.clone(),
            backoff: Default::default(),
        })),
    );
    controllers.spawn(
        "nodeclaim.expiration",
        expiration::run(Arc::new(ExpirationContext {
            client: client.clone(),
            state: state.clone(),
            metrics: metrics.clone(),
            counted: Default::default(),
            backoff: Default::default(),
        })),
    );
    if let (Some(sqs), Some(queue)) = (sqs, &settings.interruption_queue) {
        controllers.spawn(
            "interruption",
            interruption::run(Arc::new(InterruptionContext {
                state: state.clone(),
                queue_name: queue.clone(),
                handler: interruption::Handler::new(
                    sqs,
                    provider.clone(),
                    Arc::new(interruption::KubeWrites {
                        client: client.clone(),
                        events: Events::new(recorder.clone()),
                    }),
                    metrics.clone(),
                ),
            })),
        );
    }
    controllers.spawn(
        "cluster metrics",
        cluster_metrics::run(state.clone(), metrics.clone()),
    );
    controllers.spawn(
        "nodeclaim.podevents",
        claim_disruption::pod_events::run(client.clone(), state.clone()),
    );
}

/// The cluster CA as EKS hands it out (base64 of the PEM bundle), from the kube config.
fn ca_bundle_base64(config: &Config) -> Option<String> {
    let certs = config.root_cert.as_ref()?;
    let engine = base64::engine::general_purpose::STANDARD;
    let mut pem = String::new();
    for der in certs {
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        let body = engine.encode(der);
        for chunk in body.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(chunk).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    (!pem.is_empty()).then(|| engine.encode(pem))
}

/// `10.100.0.1` → `10.100.0.0/16`: EKS's two default service CIDRs (10.100.0.0/16,
/// 172.20.0.0/16) are /16s starting at the API server's service IP's /16.
pub fn service_cidr_from_ip(ip: &str) -> Option<String> {
    let v4: std::net::Ipv4Addr = ip.parse().ok()?;
    let [a, b, _, _] = v4.octets();
    Some(format!("{a}.{b}.0.0/16"))
}

async fn cluster_info(
    client: &Client,
    config: &Config,
    settings: &Settings,
    ca_bundle: Option<String>,
) -> Result<ClusterInfo, RunError> {
    let version = client
        .apiserver_version()
        .await
        .map_err(|e| RunError::Kube(format!("reading the API server version: {e}")))?;
    let minor: String = version
        .minor
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let cluster_cidr = match &settings.cluster_cidr {
        Some(c) => Some(c.clone()),
        None => {
            let svc: Api<Service> = Api::namespaced(client.clone(), "default");
            svc.get_opt("kubernetes")
                .await
                .ok()
                .flatten()
                .and_then(|s| s.spec?.cluster_ip)
                .and_then(|ip| service_cidr_from_ip(&ip))
        }
    };
    // In a pod the kubeconfig's URL is the `kubernetes` Service, unreachable from new nodes.
    let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    let nodes_join = node_endpoint(
        &settings.cluster_name,
        settings.cluster_endpoint.as_deref(),
        &config.cluster_url.to_string(),
        ca_bundle.as_deref(),
        in_cluster,
        || async { SdkEks::new(aws_sdk_eks::Client::new(&aws_sdk::sdk_config().await)) },
    )
    .await?;
    Ok(ClusterInfo {
        name: settings.cluster_name.clone(),
        endpoint: nodes_join.endpoint,
        ca_bundle: nodes_join.ca_bundle,
        cluster_cidr,
        kubernetes_version: format!("{}.{minor}", version.major),
        region: std::env::var("AWS_REGION")
            .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|_| "us-east-1".to_owned()),
    })
}

/// The endpoint and CA nodes join ([`resolve_cluster_endpoint`]): `setting` (CLUSTER_ENDPOINT),
/// else EKS DescribeCluster of `cluster`, with the client made by `eks` only then, so a set
/// CLUSTER_ENDPOINT needs neither the call nor its permission.
async fn node_endpoint<E: EksApi, F: std::future::Future<Output = E>>(
    cluster: &str,
    setting: Option<&str>,
    kubeconfig_url: &str,
    kubeconfig_ca: Option<&str>,
    in_cluster: bool,
    eks: impl FnOnce() -> F,
) -> Result<ClusterEndpoint, RunError> {
    let described = match setting {
        Some(_) => None,
        None => Some(eks().await.describe_cluster(cluster).await),
    };
    resolve_cluster_endpoint(
        setting,
        kubeconfig_url,
        kubeconfig_ca,
        in_cluster,
        described,
    )
    .map_err(|source| RunError::ClusterEndpoint {
        cluster: cluster.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use karpenter_providers::aws::ec2api::Ec2Error;
    use karpenter_providers::aws::eks::DescribedCluster;

    use super::*;

    #[test]
    fn service_cidr_is_the_slash_16_of_the_api_service_ip() {
        assert_eq!(
            service_cidr_from_ip("10.100.0.1").as_deref(),
            Some("10.100.0.0/16")
        );
        assert_eq!(
            service_cidr_from_ip("172.20.0.1").as_deref(),
            Some("172.20.0.0/16")
        );
        assert_eq!(service_cidr_from_ip("fd00::1"), None);
    }

    /// An [`EksApi`] answering `answer` and counting the calls, by cluster name.
    struct FakeEks {
        answer: Result<DescribedCluster, Ec2Error>,
        asked: std::sync::Mutex<Vec<String>>,
    }

    #[async_trait::async_trait]
    impl EksApi for &FakeEks {
        async fn describe_cluster(&self, name: &str) -> Result<DescribedCluster, Ec2Error> {
            self.asked.lock().unwrap().push(name.to_owned());
            self.answer.clone()
        }
    }

    fn fake(answer: Result<DescribedCluster, Ec2Error>) -> FakeEks {
        FakeEks {
            answer,
            asked: Default::default(),
        }
    }

    const IN_CLUSTER: &str = "https://10.100.0.1/";
    const EKS: &str = "https://ABCD.gr7.us-east-1.eks.amazonaws.com";

    #[tokio::test]
    async fn cluster_endpoint_set_needs_no_describe_cluster() {
        let eks = fake(Err(Ec2Error::Transport {
            operation: "DescribeCluster".into(),
            message: "must not be called".into(),
        }));
        let got = node_endpoint("prod", Some(EKS), IN_CLUSTER, Some("Q0E="), true, || {
            std::future::ready(&eks)
        })
        .await
        .unwrap();
        assert_eq!(got.endpoint, EKS);
        assert_eq!(got.ca_bundle.as_deref(), Some("Q0E="));
        assert!(eks.asked.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn unset_asks_eks_for_the_cluster_and_takes_its_endpoint_and_ca() {
        let eks = fake(Ok(DescribedCluster {
            endpoint: Some(EKS.into()),
            ca_bundle: Some("RUtT".into()),
            status: Some("ACTIVE".into()),
        }));
        let got = node_endpoint("prod", None, IN_CLUSTER, None, true, || {
            std::future::ready(&eks)
        })
        .await
        .unwrap();
        assert_eq!(*eks.asked.lock().unwrap(), ["prod"]);
        assert_eq!(got.endpoint, EKS);
        assert_eq!(got.ca_bundle.as_deref(), Some("RUtT"));
    }

    #[tokio::test]
    async fn denied_describe_cluster_refuses_to_start_naming_cluster_endpoint() {
        let eks = fake(Err(Ec2Error::Api {
            operation: "DescribeCluster".into(),
            code: "AccessDeniedException".into(),
            message: "not authorized".into(),
        }));
        let err = node_endpoint("prod", None, IN_CLUSTER, Some("Q0E="), true, || {
            std::future::ready(&eks)
        })
        .await
        .unwrap_err();
        assert!(
            matches!(&err, RunError::ClusterEndpoint { cluster, .. } if cluster == "prod"),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("CLUSTER_ENDPOINT") && text.contains("AccessDeniedException"),
            "{text}"
        );
    }
}

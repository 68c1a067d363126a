//! `karpenter run`: the controller process. Wires the settings, the kube client, the AWS
//! provider, the reflectors, the HTTP endpoints, leader election and the controllers.

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine;
use k8s_openapi::api::core::v1::Service;
use karpenter_providers::CloudProvider;
use karpenter_providers::aws::batcher::{BatchWindows, BatchingEc2};
use karpenter_providers::aws::cloud::{AwsCloudProvider, AwsProviderConfig, ClusterInfo, SdkIam};
use karpenter_providers::aws::ec2api::SdkEc2;
use karpenter_providers::aws::pricing::pricing_endpoint_region;
use karpenter_providers::aws::pricing_sdk::SdkPricing;
use karpenter_providers::aws::ssm_sdk::SdkSsm;
use kube_client::runtime::events::{Recorder, Reporter};
use kube_client::{Api, Client, Config};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::http_server::{self, Health};
use crate::leader::{self, LeaderElector, Timings};
use crate::lifecycle::{self, LifecycleContext};
use crate::metrics::{MeteredCloudProvider, Metrics};
use crate::settings::Settings;
use crate::state::ClusterState;
use crate::{gc, nodeclass_status, provisioner};

/// Name of the leader-election Lease (Karpenter's).
pub const LEADER_LEASE: &str = "karpenter-leader-election";

/// Why the controller stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No usable kubeconfig / in-cluster config.
    #[error("kubernetes client: {0}")]
    Kube(String),
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
}

/// Runs the controller until SIGTERM/SIGINT (or lost leadership).
pub async fn run(settings: Settings) -> Result<(), RunError> {
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
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let mut tasks = JoinSet::new();
    let metrics_addr = SocketAddr::from(([0, 0, 0, 0], settings.metrics_port));
    let metrics_listener =
        TcpListener::bind(metrics_addr)
            .await
            .map_err(|source| RunError::Bind {
                what: "metrics",
                addr: metrics_addr,
                source,
            })?;
    let health_addr = SocketAddr::from(([0, 0, 0, 0], settings.health_probe_port));
    let health_listener =
        TcpListener::bind(health_addr)
            .await
            .map_err(|source| RunError::Bind {
                what: "health",
                addr: health_addr,
                source,
            })?;
    tasks.spawn(http_server::serve_metrics(
        metrics_listener,
        metrics.clone(),
        stopped(),
    ));
    tasks.spawn(http_server::serve_health(
        health_listener,
        health.clone(),
        stopped(),
    ));

    // Leader election before any controller runs: a standby only serves probes and metrics.
    let (leading_tx, mut leading_rx) = watch::channel(settings.disable_leader_election);
    let mut election = None;
    if !settings.disable_leader_election {
        let elector = LeaderElector::new(
            client.clone(),
            &settings.system_namespace,
            LEADER_LEASE,
            leader::default_identity(),
            Timings::default(),
        );
        tracing::info!(identity = %elector.identity(), "waiting for leadership");
        election = Some(tokio::spawn(elector.run(leading_tx, stopped())));
    }

    let pdb_resource = crate::state::disruption_budget_resource(&client).await;
    let state = ClusterState::start(&client, pdb_resource, &mut tasks);
    let aws_provider = Arc::new(aws_provider(&settings, cluster, state.clone()).await);

    let signal = async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
    };
    let mut signal = std::pin::pin!(signal);

    // Wait to lead (or for a signal).
    tokio::select! {
        _ = leading_rx.wait_for(|l| *l) => {}
        _ = &mut signal => {
            let _ = stop_tx.send(true);
            return Ok(());
        }
    }
    state.wait_synced().await;
    metrics.set_cluster_state_synced(true);
    health.set_ready();
    tracing::info!("caches synced; controllers starting");

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
    tasks.spawn(
        provisioner::Provisioner::new(
            client.clone(),
            state.clone(),
            provider.clone(),
            metrics.clone(),
            recorder.clone(),
            settings.batch_idle_duration,
            settings.batch_max_duration,
        )
        .run(),
    );
    tasks.spawn(lifecycle::run(Arc::new(LifecycleContext {
        client: client.clone(),
        state: state.clone(),
        provider: provider.clone(),
        metrics: metrics.clone(),
        recorder,
        launch_ttl: settings.launch_ttl,
        registration_ttl: settings.registration_ttl,
        launched: Default::default(),
    })));
    tasks.spawn(gc::run(
        client.clone(),
        state.clone(),
        provider.clone(),
        settings.gc_interval,
        settings.gc_grace,
    ));
    tasks.spawn(nodeclass_status::run(
        client.clone(),
        state.clone(),
        aws_provider,
    ));

    let lost = async {
        if settings.disable_leader_election {
            std::future::pending::<()>().await;
        }
        let _ = leading_rx.wait_for(|l| !*l).await;
    };
    let result = tokio::select! {
        _ = &mut signal => Ok(()),
        _ = lost => Err(RunError::LeadershipLost),
    };
    tracing::info!("shutting down");
    health.set_not_ready("shutting down");
    let _ = stop_tx.send(true);
    if let Some(e) = election {
        let _ = e.await;
    }
    tasks.abort_all();
    result
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
    Ok(ClusterInfo {
        name: settings.cluster_name.clone(),
        endpoint: settings.cluster_endpoint.clone().unwrap_or_else(|| {
            config
                .cluster_url
                .to_string()
                .trim_end_matches('/')
                .to_owned()
        }),
        ca_bundle,
        cluster_cidr,
        kubernetes_version: format!("{}.{minor}", version.major),
        region: std::env::var("AWS_REGION")
            .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|_| "us-east-1".to_owned()),
    })
}

/// The AWS provider over the SDK clients (`AWS_ENDPOINT_URL` and the usual credential chain
/// honoured): EC2 calls batched like Karpenter's (CreateFleet, DescribeInstances and
/// TerminateInstances from concurrent reconciles merged), on-demand prices from the Pricing API
/// unless the VPC is isolated or the partition has none (the embedded prices otherwise).
async fn aws_provider(
    settings: &Settings,
    cluster: ClusterInfo,
    state: ClusterState,
) -> AwsCloudProvider {
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let ec2 = SdkEc2::new(aws_sdk_ec2::Client::new(&aws));
    // The Pricing API lives in us-east-1 (ap-south-1 / eu-central-1 for those regions); the
    // endpoint overrides of `aws` still apply.
    let pricing = match pricing_endpoint_region(&cluster.region) {
        Some(region) if !settings.isolated_vpc => {
            let conf = aws_sdk_pricing::config::Builder::from(&aws)
                .region(aws_sdk_pricing::config::Region::new(region))
                .build();
            Some(SdkPricing::new(aws_sdk_pricing::Client::from_conf(conf)))
        }
        _ => None,
    };
    let provider = AwsCloudProvider::new(
        Arc::new(BatchingEc2::new(Arc::new(ec2), BatchWindows::default())),
        Arc::new(SdkSsm::new(aws_sdk_ssm::Client::new(&aws))),
        Arc::new(SdkIam::new(aws_sdk_iam::Client::new(&aws))),
        Arc::new(state),
        AwsProviderConfig {
            vm_memory_overhead_percent: settings.vm_memory_overhead_percent,
            reserved_enis: settings.reserved_enis,
            isolated_vpc: settings.isolated_vpc,
            ..AwsProviderConfig::new(cluster)
        },
    );
    match pricing {
        Some(pricing) => provider.with_pricing(Arc::new(pricing)),
        None => provider,
    }
}

#[cfg(test)]
mod tests {
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
}

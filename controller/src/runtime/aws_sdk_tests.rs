//! The timeouts hold against a server that accepts connections and never answers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use aws_sdk_eks::config::{Credentials, Region};
use aws_sdk_eks::error::SdkError;
use karpenter_providers::aws::ec2api::{
    CapacityType, CreateFleetRequest, Ec2Api, Ec2Error, SdkEc2,
};
use karpenter_providers::aws::eks::{EksApi, SdkEks};
use tokio::net::TcpListener;

use super::*;

/// A server that accepts every connection, keeps it open and never writes a byte; counts the
/// connections (one per attempt: a timed-out connection is not reused).
async fn silent_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            open.push(socket);
        }
    });
    (addr, accepted)
}

/// The production loader with `timeouts`, pointed at `addr` with fixed region and
/// credentials (nothing read from the machine that matters).
async fn sdk_config(timeouts: AwsTimeouts, addr: SocketAddr) -> aws_config::SdkConfig {
    config_loader(timeouts)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKID", "SECRET", None, None, "test"))
        .endpoint_url(format!("http://{addr}"))
        .load()
        .await
}

const SHORT: AwsTimeouts = AwsTimeouts {
    connect: Duration::from_secs(1),
    attempt: Duration::from_millis(200),
    operation: Duration::from_millis(600),
};

/// Room for a retry: the first retry waits at most 1 s (the standard mode's backoff), so a
/// second attempt starts by 1.2 s.
const RETRYING: AwsTimeouts = AwsTimeouts {
    connect: Duration::from_secs(1),
    attempt: Duration::from_millis(200),
    operation: Duration::from_millis(2500),
};

/// Runs `call` under a generous guard: without SDK timeouts it would never end.
async fn ends<T>(call: impl Future<Output = T>) -> (T, Duration) {
    let start = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .expect("the call never ended: no SDK timeout");
    (out, start.elapsed())
}

#[test]
fn production_timeouts_are_set_and_create_fleet_is_never_retried_after_a_timeout() {
    let c = DEFAULT_TIMEOUTS.config();
    assert_eq!(c.operation_timeout(), Some(Duration::from_secs(30)));
    assert_eq!(c.operation_attempt_timeout(), Some(Duration::from_secs(10)));
    assert!(c.connect_timeout().is_some());
    let f = CREATE_FLEET_TIMEOUTS;
    assert!(f.operation > DEFAULT_TIMEOUTS.operation);
    assert_eq!(f.attempt, f.operation);
}

#[tokio::test]
async fn a_call_that_never_answers_ends_with_a_timeout_error() {
    let (addr, accepted) = silent_server().await;
    let conf = sdk_config(RETRYING, addr).await;
    let eks = aws_sdk_eks::Client::new(&conf);

    let (out, took) = ends(eks.describe_cluster().name("prod").send()).await;
    let err = out.expect_err("the silent server answered");
    assert!(matches!(err, SdkError::TimeoutError(_)), "{err:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // The attempt timeout cut the first attempt short and the SDK tried again.
    assert!(accepted.load(Ordering::SeqCst) >= 2, "{accepted:?}");

    // Through the provider's trait it is a transport failure the reconcile can retry.
    let (out, _) = ends(SdkEks::new(eks).describe_cluster("prod")).await;
    assert!(
        matches!(&out, Err(Ec2Error::Transport { operation, message })
            if operation == "DescribeCluster" && message.contains("Timeout")),
        "{out:?}"
    );
}

#[tokio::test]
async fn create_fleet_gets_its_own_timeout_and_a_single_attempt() {
    let (addr, accepted) = silent_server().await;
    let conf = sdk_config(SHORT, addr).await;
    let fleet_timeouts = AwsTimeouts {
        connect: Duration::from_secs(1),
        attempt: Duration::from_millis(1500),
        operation: Duration::from_millis(1500),
    };
    let ec2 = SdkEc2::new(aws_sdk_ec2::Client::new(&conf))
        .with_create_fleet_timeouts(fleet_timeouts.config());

    // Any other call keeps the short timeouts.
    let (out, took) = ends(ec2.delete_launch_template("lt")).await;
    assert!(matches!(&out, Err(Ec2Error::Transport { .. })), "{out:?}");
    assert!(took < Duration::from_millis(1200), "took {took:?}");

    let before = accepted.load(Ordering::SeqCst);
    let request = CreateFleetRequest {
        capacity_type: CapacityType::OnDemand,
        target_capacity: 1,
        launch_template_configs: Vec::new(),
        spot_allocation_strategy: "price-capacity-optimized".into(),
        on_demand_allocation_strategy: "lowest-price".into(),
        tag_specifications: Vec::new(),
        context: None,
    };
    let (out, took) = ends(ec2.create_fleet(&request)).await;
    assert!(
        matches!(&out, Err(Ec2Error::Transport { operation, message })
            if operation == "CreateFleet" && message.contains("Timeout")),
        "{out:?}"
    );
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(8),
        "took {took:?}"
    );
    // One attempt: a CreateFleet cut off by its timeout is not sent again.
    assert_eq!(accepted.load(Ordering::SeqCst) - before, 1);
}

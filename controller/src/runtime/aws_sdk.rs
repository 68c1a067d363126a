//! The AWS SDK configuration of `karpenter run`. Every call has an attempt timeout and an
//! operation timeout (its retries and their backoff included), so a call that never answers
//! fails its reconcile, which retries later, instead of hanging it for good: the SDK sets
//! neither by default.

use std::time::Duration;

use std::sync::Arc;

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use karpenter_providers::aws::batcher::{BatchWindows, BatchingEc2};
use karpenter_providers::aws::cloud::{AwsCloudProvider, AwsProviderConfig, ClusterInfo, SdkIam};
use karpenter_providers::aws::ec2api::SdkEc2;
use karpenter_providers::aws::pricing::pricing_endpoint_region;
use karpenter_providers::aws::pricing_sdk::SdkPricing;
use karpenter_providers::aws::sqs_sdk::SdkSqs;
use karpenter_providers::aws::ssm_sdk::SdkSsm;

use crate::model::ClusterState;
use crate::runtime::settings::Settings;

/// How long an AWS call may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AwsTimeouts {
    /// Opening the connection.
    pub connect: Duration,
    /// One attempt, from sending the request to reading the whole response.
    pub attempt: Duration,
    /// The whole operation: every attempt and the backoff between them.
    pub operation: Duration,
}

/// Every call but `CreateFleet`. Describe pages, SSM, IAM, Pricing and EKS answer within a
/// second or two; 10 s per attempt leaves room for the standard retry mode's three attempts
/// within 30 s. The connect timeout is the SDK's own default.
pub const DEFAULT_TIMEOUTS: AwsTimeouts = AwsTimeouts {
    connect: Duration::from_millis(3100),
    attempt: Duration::from_secs(10),
    operation: Duration::from_secs(30),
};

/// `CreateFleet` (type `instant`) launches the instances before it answers, which takes
/// longer with many overrides or scarce capacity, so it gets a minute. The attempt may use the
/// whole minute: the request carries no `ClientToken`, so an attempt cut off after EC2 had
/// launched would be retried as a second launch (its instance leaked until garbage
/// collection). Errors EC2 answers quickly (throttling) are still retried within the minute.
pub const CREATE_FLEET_TIMEOUTS: AwsTimeouts = AwsTimeouts {
    connect: Duration::from_millis(3100),
    attempt: Duration::from_secs(60),
    operation: Duration::from_secs(60),
};

impl AwsTimeouts {
    /// As the SDK's timeout configuration.
    pub fn config(self) -> TimeoutConfig {
        TimeoutConfig::builder()
            .connect_timeout(self.connect)
            .operation_attempt_timeout(self.attempt)
            .operation_timeout(self.operation)
            .build()
    }
}

/// The SDK configuration loader with `timeouts`; region, credentials and `AWS_ENDPOINT_URL`
/// come from the environment as usual.
pub fn config_loader(timeouts: AwsTimeouts) -> aws_config::ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest()).timeout_config(timeouts.config())
}

/// The AWS SDK configuration every client is built from (`AWS_ENDPOINT_URL`, region and the
/// usual credential chain honoured), with [`DEFAULT_TIMEOUTS`] on every call.
pub async fn sdk_config() -> aws_config::SdkConfig {
    config_loader(DEFAULT_TIMEOUTS).load().await
}

/// The AWS provider over the SDK clients (`AWS_ENDPOINT_URL` and the usual credential chain
/// honoured): EC2 calls batched like Karpenter's (CreateFleet, DescribeInstances and
/// TerminateInstances from concurrent reconciles merged), on-demand prices from the Pricing API
/// unless the VPC is isolated or the partition has none (the embedded prices otherwise). Every
/// call times out ([`DEFAULT_TIMEOUTS`]; CreateFleet [`CREATE_FLEET_TIMEOUTS`]).
pub async fn provider(
    settings: &Settings,
    cluster: ClusterInfo,
    state: ClusterState,
) -> AwsCloudProvider {
    let aws = sdk_config().await;
    let ec2 = SdkEc2::new(aws_sdk_ec2::Client::new(&aws))
        .with_create_fleet_timeouts(CREATE_FLEET_TIMEOUTS.config());
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

/// `ReceiveMessage` long-polls for up to 20 s before it answers an empty queue, so SQS calls
/// get an attempt of 30 s; the operation allows a retry.
pub const SQS_TIMEOUTS: AwsTimeouts = AwsTimeouts {
    connect: Duration::from_millis(3100),
    attempt: Duration::from_secs(30),
    operation: Duration::from_secs(65),
};

/// The interruption queue's client, with [`SQS_TIMEOUTS`].
pub async fn sqs() -> SdkSqs {
    let conf = config_loader(SQS_TIMEOUTS).load().await;
    SdkSqs::new(aws_sdk_sqs::Client::new(&conf))
}

#[cfg(test)]
#[path = "aws_sdk_tests.rs"]
mod tests;

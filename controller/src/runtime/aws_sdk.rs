//! The AWS SDK configuration of `karpenter run`. Every call has an attempt timeout and an
//! operation timeout (its retries and their backoff included), so a call that never answers
//! fails its reconcile, which retries later, instead of hanging it for good: the SDK sets
//! neither by default.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;

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

#[cfg(test)]
#[path = "aws_sdk_tests.rs"]
mod tests;

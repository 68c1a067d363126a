//! AWS provider: EC2NodeClass API types, the embedded instance-type catalog and the pure maths
//! that turns EC2 instance-type facts into schedulable instance types.

pub mod batcher;
pub mod catalog;
pub mod cloud;
pub mod ec2api;
pub mod eks;
pub mod fleet;
pub mod instance_types;
pub mod interruption;
pub mod nodeclass;
pub mod pricing;
pub mod pricing_sdk;
pub mod resolve;
pub mod sqs;
pub mod sqs_sdk;
pub mod ssm;
pub mod ssm_sdk;
pub mod userdata;

/// Test support: a client of SDK crate `$sdk` answering from aws-smithy-mocks `$rules` strictly
/// in order (a request the next rule does not expect fails the test), retries off so one rule
/// answers one call. Built by hand: aws-smithy-mocks' `mock_client!` needs the SDK's
/// `test-util` feature.
#[cfg(test)]
macro_rules! sequential_mock_client {
    ($sdk:ident, $rules:expr) => {{
        let mut interceptor = aws_smithy_mocks::MockResponseInterceptor::new()
            .rule_mode(aws_smithy_mocks::RuleMode::Sequential);
        for rule in $rules {
            interceptor = interceptor.with_rule(rule);
        }
        let conf = $sdk::Config::builder()
            .behavior_version($sdk::config::BehaviorVersion::latest())
            .region($sdk::config::Region::new("us-east-1"))
            .credentials_provider($sdk::config::Credentials::new(
                "AKID", "SECRET", None, None, "test",
            ))
            .http_client(aws_smithy_mocks::create_mock_http_client())
            .interceptor(interceptor)
            .retry_config($sdk::config::retry::RetryConfig::disabled())
            .build();
        $sdk::Client::from_conf(conf)
    }};
}
#[cfg(test)]
pub(crate) use sequential_mock_client;

//! The fake AWS of the e2e bed: moto as `cargo xtask aws up` seeds it, behind the fault proxy,
//! driven with the real aws-sdk-ec2/-sqs. Needs `cargo xtask aws up` (and `KARPENTER_E2E_DIR`
//! when the state directory is not the default); fails, never skips, without it.
//!
//! Every test starts its own proxy (its own rules and records), so they run in parallel against
//! the one shared moto; they clean up the instances, templates and queues they create.

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_ec2::config::retry::RetryConfig;
use aws_sdk_ec2::config::timeout::TimeoutConfig;
use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{
    DefaultTargetCapacityType, Filter, FleetLaunchTemplateConfigRequest,
    FleetLaunchTemplateOverridesRequest, FleetLaunchTemplateSpecificationRequest, FleetType,
    InstanceType, RequestLaunchTemplateData, TargetCapacitySpecificationRequest,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use karpenter_e2e::env::{AwsInfo, require_aws};
use karpenter_e2e::fault_proxy::{FaultProxy, Outcome};

const DISCOVERY_TAG: &str = "karpenter.sh/discovery";

fn credentials() -> Credentials {
    Credentials::new("test", "test", None, None, "e2e-static")
}

/// An EC2 client for `endpoint`; tests choose the retry and timeout behaviour they exercise.
fn ec2_with(
    aws: &AwsInfo,
    endpoint: &str,
    retry: RetryConfig,
    attempt_timeout: Option<Duration>,
) -> aws_sdk_ec2::Client {
    let mut timeouts = TimeoutConfig::builder();
    if let Some(t) = attempt_timeout {
        timeouts = timeouts.operation_attempt_timeout(t);
    }
    let config = aws_sdk_ec2::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(aws.region.clone()))
        .credentials_provider(credentials())
        .endpoint_url(endpoint)
        .retry_config(retry)
        .timeout_config(timeouts.build())
        .build();
    aws_sdk_ec2::Client::from_conf(config)
}

fn ec2(aws: &AwsInfo, proxy: &FaultProxy) -> aws_sdk_ec2::Client {
    ec2_with(aws, &proxy.endpoint(), RetryConfig::disabled(), None)
}

/// A name no other test (or earlier run against the same moto) uses.
fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// The seeded subnets of two different zones.
fn two_subnets(aws: &AwsInfo) -> [(String, String); 2] {
    let s = &aws.subnets;
    assert!(
        s.len() >= 2 && s[0].zone != s[1].zone,
        "seed has subnets in 2 zones: {s:?}"
    );
    [
        (s[0].id.clone(), s[0].zone.clone()),
        (s[1].id.clone(), s[1].zone.clone()),
    ]
}

/// A launch template on a seeded EKS AMI; returns its id.
async fn launch_template(client: &aws_sdk_ec2::Client) -> String {
    let images = client
        .describe_images()
        .owners("amazon")
        .filters(
            Filter::builder()
                .name("name")
                .values("amazon-eks-node-1.30-*")
                .build(),
        )
        .send()
        .await
        .expect("DescribeImages");
    let image = images.images()[0].image_id().expect("image id").to_owned();
    let created = client
        .create_launch_template()
        .launch_template_name(unique("fake-aws-test"))
        .launch_template_data(RequestLaunchTemplateData::builder().image_id(image).build())
        .send()
        .await
        .expect("CreateLaunchTemplate");
    created
        .launch_template()
        .and_then(|t| t.launch_template_id())
        .unwrap()
        .to_owned()
}

/// An instant on-demand CreateFleet for one instance with `overrides` of (type, subnet).
async fn create_fleet(
    client: &aws_sdk_ec2::Client,
    template: &str,
    overrides: &[(InstanceType, &str)],
) -> aws_sdk_ec2::operation::create_fleet::CreateFleetOutput {
    let mut config = FleetLaunchTemplateConfigRequest::builder().launch_template_specification(
        FleetLaunchTemplateSpecificationRequest::builder()
            .launch_template_id(template)
            .version("$Latest")
            .build(),
    );
    for (instance_type, subnet) in overrides {
        config = config.overrides(
            FleetLaunchTemplateOverridesRequest::builder()
                .instance_type(instance_type.clone())
                .subnet_id(*subnet)
                .build(),
        );
    }
    client
        .create_fleet()
        .r#type(FleetType::Instant)
        .target_capacity_specification(
            TargetCapacitySpecificationRequest::builder()
                .total_target_capacity(1)
                .default_target_capacity_type(DefaultTargetCapacityType::OnDemand)
                .build(),
        )
        .launch_template_configs(config.build())
        .send()
        .await
        .expect("CreateFleet")
}

async fn cleanup(client: &aws_sdk_ec2::Client, template: &str, instances: Vec<String>) {
    if !instances.is_empty() {
        client
            .terminate_instances()
            .set_instance_ids(Some(instances))
            .send()
            .await
            .unwrap();
    }
    client
        .delete_launch_template()
        .launch_template_id(template)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn seeded_subnets_are_discoverable_and_differ_in_free_ips() {
    let aws = require_aws();
    let proxy = FaultProxy::start(&aws.endpoint).unwrap();
    let client = ec2(&aws, &proxy);
    let discovery = Filter::builder()
        .name(format!("tag:{DISCOVERY_TAG}"))
        .values(&aws.cluster_name)
        .build();
    let subnets = client
        .describe_subnets()
        .filters(discovery.clone())
        .send()
        .await
        .unwrap();
    let subnets = subnets.subnets();
    let ids: BTreeSet<_> = subnets.iter().filter_map(|s| s.subnet_id()).collect();
    let seeded: BTreeSet<_> = aws.subnets.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids, seeded,
        "discovery finds exactly the seeded private subnets"
    );
    let zones: BTreeSet<_> = subnets
        .iter()
        .filter_map(|s| s.availability_zone())
        .collect();
    assert_eq!(zones.len(), 3, "{zones:?}");
    let free: BTreeSet<_> = subnets
        .iter()
        .filter_map(|s| s.available_ip_address_count())
        .collect();
    assert_eq!(
        free.len(),
        aws.subnets.len(),
        "subnets must differ in free IPs: {free:?}"
    );
    // A big subnet per zone (generous, moto never frees IPs) and zone a's small second one.
    assert_eq!(subnets.len(), 4, "{subnets:?}");
    assert_eq!(free.iter().filter(|n| **n > 1000).count(), 3, "{free:?}");

    let groups = client
        .describe_security_groups()
        .filters(discovery)
        .send()
        .await
        .unwrap();
    let groups: Vec<_> = groups
        .security_groups()
        .iter()
        .filter_map(|g| g.group_id())
        .collect();
    assert_eq!(groups, aws.security_group_ids);

    let calls = proxy.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(
        (calls[0].service.as_str(), calls[0].action.as_str()),
        ("ec2", "DescribeSubnets")
    );
    assert_eq!(
        calls[0].outcome,
        Outcome::Forwarded {
            status: 200,
            iced: 0
        }
    );
}

/// SSM has no client in this crate: a plain JSON call (moto routes by the credential scope and
/// does not check signatures).
async fn ssm_parameter(proxy: &FaultProxy, name: &str) -> String {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = hyper::Request::post(proxy.endpoint())
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", "AmazonSSM.GetParameter")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=test/20250101/us-east-1/ssm/aws4_request, \
             SignedHeaders=host, Signature=0",
        )
        .body(Full::new(Bytes::from(
            serde_json::json!({ "Name": name }).to_string(),
        )))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(
        status.is_success(),
        "GetParameter {name}: {status} {body:?}"
    );
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    json["Parameter"]["Value"]
        .as_str()
        .expect("Parameter.Value")
        .to_owned()
}

#[tokio::test]
async fn eks_ami_parameters_point_at_registered_images() {
    let aws = require_aws();
    let proxy = FaultProxy::start(&aws.endpoint).unwrap();
    let client = ec2(&aws, &proxy);
    for (parameter, name_prefix, arch) in [
        (
            "/aws/service/eks/optimized-ami/1.30/amazon-linux-2/recommended/image_id",
            "amazon-eks-node-1.30-",
            "x86_64",
        ),
        (
            "/aws/service/eks/optimized-ami/1.33/amazon-linux-2023/arm64/standard/recommended/image_id",
            "amazon-eks-node-al2023-arm64-standard-1.33-",
            "arm64",
        ),
        (
            "/aws/service/bottlerocket/aws-k8s-1.28/x86_64/latest/image_id",
            "bottlerocket-aws-k8s-1.28-x86_64-",
            "x86_64",
        ),
    ] {
        let image_id = ssm_parameter(&proxy, parameter).await;
        let images = client
            .describe_images()
            .image_ids(&image_id)
            .send()
            .await
            .unwrap();
        let image = &images.images()[0];
        assert!(
            image.name().unwrap().starts_with(name_prefix),
            "{parameter}: {image:?}"
        );
        assert_eq!(image.architecture().unwrap().as_str(), arch, "{parameter}");
    }
    let call = &proxy.calls()[0];
    assert_eq!(
        (call.service.as_str(), call.action.as_str()),
        ("ssm", "GetParameter")
    );
}

#[tokio::test]
async fn create_fleet_reports_the_iced_override_and_launches_another() {
    let aws = require_aws();
    let proxy = FaultProxy::start(&aws.endpoint).unwrap();
    let client = ec2(&aws, &proxy);
    let template = launch_template(&client).await;
    let [(subnet_a, zone_a), (subnet_b, zone_b)] = two_subnets(&aws);
    proxy.ice("m5.large", &zone_a);
    let overrides = [
        (InstanceType::M5Large, subnet_a.as_str()),
        (InstanceType::M5Large, subnet_b.as_str()),
        (InstanceType::C5Large, subnet_a.as_str()),
        (InstanceType::C5Large, subnet_b.as_str()),
    ];
    let fleet = create_fleet(&client, &template, &overrides).await;

    let errors = fleet.errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].error_code(), Some("InsufficientInstanceCapacity"));
    let iced = errors[0].launch_template_and_overrides().unwrap();
    let o = iced.overrides().unwrap();
    assert_eq!(o.instance_type(), Some(&InstanceType::M5Large));
    assert_eq!(o.subnet_id(), Some(subnet_a.as_str()));
    assert_eq!(o.availability_zone(), Some(zone_a.as_str()));
    let spec = iced.launch_template_specification().unwrap();
    assert_eq!(spec.launch_template_id(), Some(template.as_str()));

    let instances: Vec<String> = fleet
        .instances()
        .iter()
        .flat_map(|i| i.instance_ids().to_vec())
        .collect();
    assert_eq!(instances.len(), 1, "{:?}", fleet.instances());
    let described = client
        .describe_instances()
        .instance_ids(&instances[0])
        .send()
        .await
        .unwrap();
    let instance = &described.reservations()[0].instances()[0];
    let pair = (
        instance.instance_type().unwrap().as_str(),
        instance
            .placement()
            .and_then(|p| p.availability_zone())
            .unwrap(),
    );
    assert_ne!(
        pair,
        ("m5.large", zone_a.as_str()),
        "launched into the ICE'd pool"
    );
    assert_eq!(
        pair,
        ("m5.large", zone_b.as_str()),
        "moto takes the first remaining override"
    );

    let fleet_calls: Vec<_> = proxy
        .calls()
        .into_iter()
        .filter(|c| c.action == "CreateFleet")
        .collect();
    assert_eq!(
        fleet_calls[0].outcome,
        Outcome::Forwarded {
            status: 200,
            iced: 1
        }
    );
    cleanup(&client, &template, instances).await;
}

#[tokio::test]
async fn create_fleet_with_every_override_iced_launches_nothing() {
    let aws = require_aws();
    let proxy = FaultProxy::start(&aws.endpoint).unwrap();
    let client = ec2(&aws, &proxy);
    let template = launch_template(&client).await;
    let [(subnet_a, zone_a), (subnet_b, zone_b)] = two_subnets(&aws);
    for zone in [&zone_a, &zone_b] {
        proxy.ice("m5.large", zone);
        proxy.ice("c5.large", zone);
    }
    let overrides = [
        (InstanceType::M5Large, subnet_a.as_str()),
        (InstanceType::M5Large, subnet_b.as_str()),
        (InstanceType::C5Large, subnet_a.as_str()),
        (InstanceType::C5Large, subnet_b.as_str()),
    ];
    let fleet = create_fleet(&client, &template, &overrides).await;

    assert!(fleet.instances().is_empty(), "{:?}", fleet.instances());
    assert!(fleet.fleet_id().is_some_and(|id| id.starts_with("fleet-")));
    let errors = fleet.errors();
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert!(
        errors
            .iter()
            .all(|e| e.error_code() == Some("InsufficientInstanceCapacity"))
    );
    let reported: BTreeSet<_> = errors
        .iter()
        .filter_map(|e| e.launch_template_and_overrides()?.overrides())
        .map(|o| {
            (
                o.instance_type().unwrap().as_str(),
                o.availability_zone().unwrap(),
            )
        })
        .collect();
    assert_eq!(reported.len(), 4, "{reported:?}");

    let fleet_calls: Vec<_> = proxy
        .calls()
        .into_iter()
        .filter(|c| c.action == "CreateFleet")
        .collect();
    assert_eq!(
        fleet_calls[0].outcome,
        Outcome::InsufficientCapacity,
        "moto is not called"
    );
    cleanup(&client, &template, Vec::new()).await;
}

#[tokio::test]
async fn run_instances_in_an_iced_pool_fails_with_insufficient_capacity() {
    let aws = require_aws();
    let proxy = FaultProxy::start(&aws.endpoint).unwrap();
    let client = ec2(&aws, &proxy);
    let template = launch_template(&client).await;
    let [(subnet_a, zone_a), _] = two_subnets(&aws);
    proxy.ice("c5.large", &zone_a);
    let err = client
        .run_instances()
        .launch_template(
            aws_sdk_ec2::types::LaunchTemplateSpecification::builder()
                .launch_template_id(&template)
                .build(),
        )
        .instance_type(InstanceType::C5Large)
        .subnet_id(&subnet_a)
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .expect_err("ICE'd pool");
    assert_eq!(err.code(), Some("InsufficientInstanceCapacity"), "{err:?}");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(500));
    assert_eq!(
        proxy.calls().last().unwrap().outcome,
        Outcome::InsufficientCapacity
    );
    cleanup(&client, &template, Vec::new()).await;
}

#[tokio::test]
async fn throttling_surfaces_request_limit_exceeded_after_the_sdk_retries() {
    let aws = require_aws();
    let proxy = FaultProxy::start(&aws.endpoint).unwrap();
    // Short backoff: the retries are the point, not the waiting.
    let retry = RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(10))
        .with_max_backoff(Duration::from_millis(50));
    let client = ec2_with(&aws, &proxy.endpoint(), retry.clone(), None);

    proxy.throttle("DescribeAvailabilityZones", 10);
    let err = client
        .describe_availability_zones()
        .send()
        .await
        .expect_err("throttled");
    assert_eq!(err.code(), Some("RequestLimitExceeded"), "{err:?}");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(503));
    assert_eq!(
        proxy.count("DescribeAvailabilityZones"),
        3,
        "one call per SDK attempt"
    );
    assert!(
        proxy
            .calls()
            .iter()
            .all(|c| c.outcome == Outcome::Throttled)
    );

    // Once throttling stops, the SDK's own retry gets through.
    proxy.clear();
    proxy.throttle("DescribeAvailabilityZones", 1);
    let zones = client
        .describe_availability_zones()
        .send()
        .await
        .expect("retried");
    assert!(!zones.availability_zones().is_empty());
    let outcomes: Vec<_> = proxy.calls().into_iter().map(|c| c.outcome).collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Throttled,
            Outcome::Forwarded {
                status: 200,
                iced: 0
            }
        ]
    );

    // Without retries, a single throttled call is the error.
    proxy.clear();
    proxy.throttle("DescribeAvailabilityZones", 1);
    let err = ec2(&aws, &proxy)
        .describe_availability_zones()
        .send()
        .await
        .expect_err("throttled");
    assert_eq!(err.code(), Some("RequestLimitExceeded"));
    assert_eq!(proxy.count("DescribeAvailabilityZones"), 1);
}

#[tokio::test]
async fn delayed_responses_hit_the_sdk_timeout() {
    let aws = require_aws();
    let proxy = FaultProxy::start(&aws.endpoint).unwrap();
    proxy.delay("DescribeVpcs", Duration::from_secs(3));
    let client = ec2_with(
        &aws,
        &proxy.endpoint(),
        RetryConfig::disabled(),
        Some(Duration::from_millis(300)),
    );
    let started = Instant::now();
    let err = client.describe_vpcs().send().await.expect_err("timed out");
    assert!(matches!(err, SdkError::TimeoutError(_)), "{err:?}");
    assert_eq!(
        proxy.count("DescribeVpcs"),
        1,
        "the timed-out call is recorded"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // Other actions are not delayed.
    let started = Instant::now();
    client.describe_subnets().send().await.expect("not delayed");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn sqs_goes_through_the_proxy_and_the_interruption_queue_exists() {
    let aws = require_aws();
    let proxy = FaultProxy::start(&aws.endpoint).unwrap();
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new(aws.region.clone()))
        .credentials_provider(credentials())
        .endpoint_url(proxy.endpoint())
        .build();
    let sqs = aws_sdk_sqs::Client::from_conf(config);
    let url = sqs
        .get_queue_url()
        .queue_name(&aws.interruption_queue_name)
        .send()
        .await
        .unwrap();
    assert!(
        url.queue_url()
            .unwrap()
            .ends_with(&format!("/{}", aws.interruption_queue_name))
    );

    // A queue of our own: the interruption queue may be in use by other tests.
    let queue = sqs
        .create_queue()
        .queue_name(unique("fake-aws-test"))
        .send()
        .await
        .unwrap();
    let queue = queue.queue_url().unwrap();
    sqs.send_message()
        .queue_url(queue)
        .message_body("hello")
        .send()
        .await
        .unwrap();
    let received = sqs
        .receive_message()
        .queue_url(queue)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    assert_eq!(received.messages()[0].body(), Some("hello"));
    sqs.delete_queue().queue_url(queue).send().await.unwrap();

    let actions: Vec<_> = proxy
        .calls()
        .into_iter()
        .map(|c| (c.service, c.action))
        .collect();
    assert_eq!(actions[0], ("sqs".to_owned(), "GetQueueUrl".to_owned()));
    assert!(
        actions.contains(&("sqs".to_owned(), "ReceiveMessage".to_owned())),
        "{actions:?}"
    );
}

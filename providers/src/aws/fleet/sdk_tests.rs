//! `SdkEc2` against `aws-smithy-mocks`: the request actually sent and how answers map back.

use std::sync::{Arc, Mutex};

use aws_sdk_ec2::Client;
use aws_sdk_ec2::error::ErrorMetadata;
use aws_sdk_ec2::operation::create_fleet::{CreateFleetError, CreateFleetInput, CreateFleetOutput};
use aws_sdk_ec2::types as sdk;
use aws_smithy_mocks::{Rule, mock};

use super::tests::{Fixture, claim};
use super::*;
use crate::aws::ec2api::SdkEc2;

/// A client answering from `rules` in order (see `sequential_mock_client!`).
fn client(rules: &[&Rule]) -> SdkEc2 {
    SdkEc2::new(crate::aws::sequential_mock_client!(aws_sdk_ec2, rules))
}

fn plan_for(c: &NodeClaimRequest) -> (Fixture, FleetPlan) {
    let f = Fixture::new();
    let mut input = f.input();
    input.context = Some("ctx-42");
    let plan = plan_fleet(c, &input).unwrap();
    (f, plan)
}

fn lto(lt: &str, t: &str, z: &str) -> sdk::LaunchTemplateAndOverridesResponse {
    sdk::LaunchTemplateAndOverridesResponse::builder()
        .launch_template_specification(
            sdk::FleetLaunchTemplateSpecification::builder()
                .launch_template_name(lt)
                .version("$Latest")
                .build(),
        )
        .overrides(
            sdk::FleetLaunchTemplateOverrides::builder()
                .instance_type(sdk::InstanceType::from(t))
                .availability_zone(z)
                .subnet_id("subnet-x")
                .build(),
        )
        .build()
}

#[tokio::test]
async fn sends_karpenters_request_shape_and_maps_success() {
    let c = claim(&["spot", "on-demand"]);
    let (_f, plan) = plan_for(&c);
    let seen: Arc<Mutex<Option<CreateFleetInput>>> = Arc::default();
    let sink = seen.clone();
    let rule = mock!(Client::create_fleet)
        .match_requests(move |input| {
            *sink.lock().unwrap() = Some(input.clone());
            true
        })
        .then_output(|| {
            CreateFleetOutput::builder()
                .fleet_id("fleet-1")
                .instances(
                    sdk::CreateFleetInstance::builder()
                        .instance_ids("i-0123")
                        .instance_type(sdk::InstanceType::M6gLarge)
                        .availability_zone("us-east-1a")
                        .lifecycle(sdk::InstanceLifecycle::Spot)
                        .launch_template_and_overrides(lto("lt-arm64", "m6g.large", "us-east-1a"))
                        .build(),
                )
                .build()
        });
    let api = client(&[&rule]);
    let mut cache = UnavailableOfferings::new();
    let got = launch(&api, &c, &plan, &mut cache, 500).await.unwrap();
    assert_eq!(rule.num_calls(), 1);

    let input = seen.lock().unwrap().clone().expect("request seen");
    assert_eq!(input.r#type(), Some(&sdk::FleetType::Instant));
    let tcs = input.target_capacity_specification().unwrap();
    assert_eq!(tcs.total_target_capacity(), Some(1));
    assert_eq!(
        tcs.default_target_capacity_type(),
        Some(&sdk::DefaultTargetCapacityType::Spot)
    );
    assert_eq!(
        input.spot_options().unwrap().allocation_strategy(),
        Some(&sdk::SpotAllocationStrategy::PriceCapacityOptimized)
    );
    assert_eq!(
        input.on_demand_options().unwrap().allocation_strategy(),
        Some(&sdk::FleetOnDemandAllocationStrategy::LowestPrice)
    );
    assert_eq!(input.context(), Some("ctx-42"));
    let configs = input.launch_template_configs();
    assert_eq!(configs.len(), 2);
    let spec = configs[0].launch_template_specification().unwrap();
    assert_eq!(spec.launch_template_name(), Some("lt-amd64"));
    assert_eq!(spec.version(), Some("$Latest"));
    let o = &configs[0].overrides()[0];
    assert_eq!(o.instance_type(), Some(&sdk::InstanceType::C5Large));
    assert_eq!(o.subnet_id(), Some("subnet-a"));
    assert_eq!(o.availability_zone(), Some("us-east-1a"));
    assert_eq!(o.priority(), None);
    let total: usize = configs.iter().map(|c| c.overrides().len()).sum();
    assert_eq!(total, 6);
    let kinds: Vec<_> = input
        .tag_specifications()
        .iter()
        .map(|t| t.resource_type().unwrap().clone())
        .collect();
    assert_eq!(
        kinds,
        [
            sdk::ResourceType::Instance,
            sdk::ResourceType::Volume,
            sdk::ResourceType::Fleet
        ]
    );
    let tag = |k: &str| {
        input.tag_specifications()[0]
            .tags()
            .iter()
            .find(|t| t.key() == Some(k))
            .and_then(|t| t.value())
            .map(str::to_owned)
    };
    assert_eq!(tag("karpenter.sh/nodeclaim"), None, "written after launch");
    assert_eq!(tag("kubernetes.io/cluster/prod").as_deref(), Some("owned"));

    assert_eq!(got.provider_id, "aws:///us-east-1a/i-0123");
    assert_eq!(got.instance_type, "m6g.large");
    assert_eq!(got.capacity_type, "spot");
    assert_eq!(got.image_id, "ami-arm64");
    assert!(cache.is_empty());
}

#[tokio::test]
async fn ice_errors_become_insufficient_capacity_and_fill_the_cache() {
    let c = claim(&["spot"]);
    let (_f, plan) = plan_for(&c);
    let fleet_error = |code: &str, t: &str, z: &str| {
        sdk::CreateFleetError::builder()
            .error_code(code)
            .error_message("There is no Spot capacity available that matches your request.")
            .lifecycle(sdk::InstanceLifecycle::Spot)
            .launch_template_and_overrides(lto("lt-amd64", t, z))
            .build()
    };
    let rule = mock!(Client::create_fleet).then_output(move || {
        CreateFleetOutput::builder()
            .fleet_id("fleet-2")
            .errors(fleet_error(
                "InsufficientInstanceCapacity",
                "c5.large",
                "us-east-1a",
            ))
            .errors(fleet_error(
                "MaxSpotInstanceCountExceeded",
                "m5.large",
                "us-east-1b",
            ))
            .build()
    });
    let api = client(&[&rule]);
    let mut cache = UnavailableOfferings::new();
    let err = launch(&api, &c, &plan, &mut cache, 700).await.unwrap_err();
    let ProviderError::InsufficientCapacity { offerings, message } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(
        offerings,
        &[
            ("c5.large".into(), "us-east-1a".into(), "spot".into()),
            ("m5.large".into(), "us-east-1b".into(), "spot".into()),
        ]
    );
    assert!(message.contains("MaxSpotInstanceCountExceeded"));
    assert!(err.is_retryable());
    assert!(cache.is_unavailable("c5.large", "us-east-1a", "spot", 700));
    assert!(cache.is_unavailable("m5.large", "us-east-1b", "spot", 879));
    assert!(!cache.is_unavailable("m5.large", "us-east-1b", "spot", 880));
}

#[tokio::test]
async fn request_limit_exceeded_is_retryable_throttling() {
    let c = claim(&["on-demand"]);
    let (_f, plan) = plan_for(&c);
    let rule = mock!(Client::create_fleet).then_error(|| {
        CreateFleetError::generic(
            ErrorMetadata::builder()
                .code("RequestLimitExceeded")
                .message("Request limit exceeded.")
                .build(),
        )
    });
    let api = client(&[&rule]);
    let raw = api.create_fleet(&plan.request).await.unwrap_err();
    assert!(matches!(raw, Ec2Error::Throttled { ref code, .. } if code == "RequestLimitExceeded"));
    let mut cache = UnavailableOfferings::new();
    let rule2 = mock!(Client::create_fleet).then_error(|| {
        CreateFleetError::generic(
            ErrorMetadata::builder()
                .code("RequestLimitExceeded")
                .build(),
        )
    });
    let err = launch(&client(&[&rule2]), &c, &plan, &mut cache, 0)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ProviderError::Throttled {
            operation: "CreateFleet".into()
        }
    );
    assert!(err.is_retryable());
}

#[tokio::test]
async fn other_api_errors_are_final() {
    let c = claim(&["on-demand"]);
    let (_f, plan) = plan_for(&c);
    let rule = mock!(Client::create_fleet).then_error(|| {
        CreateFleetError::generic(
            ErrorMetadata::builder()
                .code("UnauthorizedOperation")
                .message("You are not authorized to perform this operation.")
                .build(),
        )
    });
    let mut cache = UnavailableOfferings::new();
    let err = launch(&client(&[&rule]), &c, &plan, &mut cache, 0)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProviderError::Create { ref reason } if reason.starts_with("UnauthorizedOperation"))
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn spot_role_error_marks_spot_unavailable() {
    let c = claim(&["spot", "on-demand"]);
    let (_f, plan) = plan_for(&c);
    let rule = mock!(Client::create_fleet).then_output(|| {
        CreateFleetOutput::builder()
            .errors(
                sdk::CreateFleetError::builder()
                    .error_code(SPOT_ROLE_ERROR_CODE)
                    .error_message("not permitted")
                    .build(),
            )
            .build()
    });
    let mut cache = UnavailableOfferings::new();
    let err = launch(&client(&[&rule]), &c, &plan, &mut cache, 10)
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Create { .. }));
    assert!(cache.is_unavailable("anything", "anywhere", "spot", 10));
    let f = Fixture::new();
    let mut input = f.input();
    input.unavailable = &cache;
    input.now = 10;
    assert_eq!(
        plan_fleet(&c, &input).unwrap().request.capacity_type,
        CapacityType::OnDemand
    );
}

//! `SdkEc2` against `aws-smithy-mocks`, continued: `DescribeInstances`,
//! `TerminateInstances`, the launch-template calls, and the error mapping of every call.

use std::collections::BTreeMap;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::error::ErrorMetadata;
use aws_sdk_ec2::operation::create_launch_template::CreateLaunchTemplateOutput;
use aws_sdk_ec2::operation::delete_launch_template::DeleteLaunchTemplateOutput;
use aws_sdk_ec2::operation::describe_instances::{
    DescribeInstancesError, DescribeInstancesInput, DescribeInstancesOutput,
};
use aws_sdk_ec2::operation::describe_launch_templates::DescribeLaunchTemplatesOutput;
use aws_sdk_ec2::operation::terminate_instances::TerminateInstancesOutput;
use aws_sdk_ec2::operation::{
    create_launch_template, delete_launch_template, describe_images,
    describe_instance_type_offerings, describe_instance_types, describe_launch_templates,
    describe_security_groups, describe_spot_price_history, describe_subnets, terminate_instances,
};
use aws_sdk_ec2::primitives::DateTime;
use aws_sdk_ec2::types as sdk;
use aws_smithy_mocks::{Rule, mock};

use super::{Seen, as_pairs, client, record, seen, sent_filters, tag, tags};
use crate::aws::ec2api::{
    CapacityType, Ec2Api, Ec2Error, Instance, InstanceQuery, LaunchTemplateBlockDevice,
    LaunchTemplateMetadataOptions, LaunchTemplateRequest, LaunchTemplateSummary,
    TerminatedInstance,
};
use crate::aws::resolve::{Filter, ImageQuery};

fn instance(id: &str, lifecycle: Option<sdk::InstanceLifecycleType>) -> sdk::Instance {
    sdk::Instance::builder()
        .instance_id(id)
        .instance_type(sdk::InstanceType::M5Large)
        .placement(
            sdk::Placement::builder()
                .availability_zone("us-east-1a")
                .build(),
        )
        .set_instance_lifecycle(lifecycle)
        .image_id("ami-1")
        .state(
            sdk::InstanceState::builder()
                .name(sdk::InstanceStateName::Running)
                .code(16)
                .build(),
        )
        .launch_time(DateTime::from_secs(1_700_000_000))
        .subnet_id("subnet-a")
        .security_groups(
            sdk::GroupIdentifier::builder()
                .group_id("sg-1")
                .group_name("n")
                .build(),
        )
        .security_groups(sdk::GroupIdentifier::builder().group_id("sg-2").build())
        .private_dns_name(format!("ip-{id}.ec2.internal"))
        .tags(tag("karpenter.sh/nodepool", "default"))
        .build()
}

#[tokio::test]
async fn instances_by_id_read_all_reservations_of_all_pages() {
    use sdk::InstanceLifecycleType as L;
    let s: Seen<DescribeInstancesInput> = Seen::default();
    let reservation =
        |is: Vec<sdk::Instance>| sdk::Reservation::builder().set_instances(Some(is)).build();
    let p1 = DescribeInstancesOutput::builder()
        .reservations(reservation(vec![
            instance("i-1", Some(L::Spot)),
            instance("i-2", None),
        ]))
        .reservations(reservation(vec![
            sdk::Instance::builder().image_id("ami-x").build(),
        ]))
        .next_token("t2")
        .build();
    let p2 = DescribeInstancesOutput::builder()
        .reservations(reservation(vec![
            instance("i-3", Some(L::Scheduled)),
            sdk::Instance::builder()
                .instance_id("i-4")
                .private_dns_name("")
                .build(),
        ]))
        .build();
    let r1 = mock!(Client::describe_instances)
        .match_requests(record(&s))
        .then_output(move || p1.clone());
    let r2 = mock!(Client::describe_instances)
        .match_requests(record(&s))
        .then_output(move || p2.clone());
    let ids: Vec<String> = ["i-1", "i-2", "i-3", "i-4"].map(String::from).to_vec();
    let got = client(&[&r1, &r2])
        .describe_instances(&InstanceQuery::Ids(ids.clone()))
        .await
        .unwrap();
    let inputs = seen(&s);
    assert_eq!(
        inputs.iter().map(|i| i.next_token()).collect::<Vec<_>>(),
        [None, Some("t2")]
    );
    for i in &inputs {
        assert_eq!(i.instance_ids(), ids);
        assert_eq!(i.filters, None);
        // EC2 refuses MaxResults together with InstanceIds.
        assert_eq!(i.max_results(), None);
    }
    let brief: Vec<(&str, CapacityType)> = got
        .iter()
        .map(|i| (i.id.as_str(), i.capacity_type))
        .collect();
    assert_eq!(
        brief,
        [
            ("i-1", CapacityType::Spot),
            ("i-2", CapacityType::OnDemand),
            ("i-3", CapacityType::OnDemand),
            ("i-4", CapacityType::OnDemand),
        ]
    );
    assert_eq!(
        got[0],
        Instance {
            id: "i-1".into(),
            instance_type: "m5.large".into(),
            zone: "us-east-1a".into(),
            capacity_type: CapacityType::Spot,
            image_id: "ami-1".into(),
            state: "running".into(),
            launch_time_unix: 1_700_000_000,
            subnet_id: Some("subnet-a".into()),
            security_group_ids: vec!["sg-1".into(), "sg-2".into()],
            private_dns_name: Some("ip-i-1.ec2.internal".into()),
            tags: tags(&[("karpenter.sh/nodepool", "default")]),
        }
    );
    let bare = &got[3];
    assert_eq!((bare.instance_type.as_str(), bare.state.as_str()), ("", ""));
    assert_eq!(
        (bare.launch_time_unix, bare.private_dns_name.clone()),
        (0, None)
    );
}

#[tokio::test]
async fn instances_by_filter_send_filters_and_no_ids_send_nothing() {
    let s: Seen<DescribeInstancesInput> = Seen::default();
    let r = mock!(Client::describe_instances)
        .match_requests(record(&s))
        .then_output(|| DescribeInstancesOutput::builder().build());
    let api = client(&[&r]);
    let filters = vec![
        Filter::new("tag-key", ["karpenter.sh/nodepool"]),
        Filter::new("instance-state-name", ["pending", "running"]),
    ];
    let got = api
        .describe_instances(&InstanceQuery::Filters(filters.clone()))
        .await
        .unwrap();
    assert!(got.is_empty());
    let inputs = seen(&s);
    assert_eq!(sent_filters(inputs[0].filters()), as_pairs(&filters));
    assert_eq!(inputs[0].instance_ids, None);
    // An empty id list would describe the whole account; it is not sent.
    assert!(
        api.describe_instances(&InstanceQuery::Ids(vec![]))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(r.num_calls(), 1);
}

#[tokio::test]
async fn a_failing_later_page_fails_the_whole_describe() {
    let r1 = mock!(Client::describe_instances).then_output(|| {
        DescribeInstancesOutput::builder()
            .reservations(
                sdk::Reservation::builder()
                    .instances(instance("i-1", None))
                    .build(),
            )
            .next_token("t2")
            .build()
    });
    let r2 = mock!(Client::describe_instances)
        .match_requests(|i| i.next_token() == Some("t2"))
        .then_error(|| {
            DescribeInstancesError::generic(
                ErrorMetadata::builder()
                    .code("RequestLimitExceeded")
                    .message("slow down")
                    .build(),
            )
        });
    let err = client(&[&r1, &r2])
        .describe_instances(&InstanceQuery::Filters(vec![]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Ec2Error::Throttled { ref operation, .. } if operation == "DescribeInstances")
    );
    assert_eq!(r2.num_calls(), 1);
}

#[tokio::test]
async fn terminate_sends_ids_and_reads_state_changes() {
    let s: Seen<terminate_instances::TerminateInstancesInput> = Seen::default();
    let change = |id: Option<&str>, state: sdk::InstanceStateName| {
        sdk::InstanceStateChange::builder()
            .set_instance_id(id.map(str::to_owned))
            .current_state(sdk::InstanceState::builder().name(state).build())
            .previous_state(
                sdk::InstanceState::builder()
                    .name(sdk::InstanceStateName::Running)
                    .build(),
            )
            .build()
    };
    let r = mock!(Client::terminate_instances)
        .match_requests(record(&s))
        .then_output(move || {
            TerminateInstancesOutput::builder()
                .terminating_instances(change(Some("i-1"), sdk::InstanceStateName::ShuttingDown))
                .terminating_instances(change(Some("i-2"), sdk::InstanceStateName::Terminated))
                .terminating_instances(change(None, sdk::InstanceStateName::Terminated))
                .build()
        });
    let api = client(&[&r]);
    let got = api
        .terminate_instances(&["i-1".into(), "i-2".into()])
        .await
        .unwrap();
    assert_eq!(seen(&s)[0].instance_ids(), ["i-1", "i-2"]);
    let t = |id: &str, st: &str| TerminatedInstance {
        id: id.into(),
        current_state: st.into(),
    };
    assert_eq!(got, [t("i-1", "shutting-down"), t("i-2", "terminated")]);
    assert!(api.terminate_instances(&[]).await.unwrap().is_empty());
    assert_eq!(r.num_calls(), 1);
}

fn lt_request(associate_public_ip: Option<bool>) -> LaunchTemplateRequest {
    LaunchTemplateRequest {
        name: "karpenter.k8s.aws/123".into(),
        image_id: "ami-1".into(),
        user_data_base64: "IyEvYmluL2Jhc2gK".into(),
        security_group_ids: vec!["sg-1".into(), "sg-2".into()],
        instance_profile: Some("KarpenterNodeProfile".into()),
        block_devices: vec![
            LaunchTemplateBlockDevice {
                device_name: "/dev/xvda".into(),
                volume_size_gib: Some(20),
                volume_type: Some("gp3".into()),
                iops: Some(3000),
                throughput: Some(125),
                encrypted: Some(true),
                kms_key_id: Some("arn:aws:kms:key/1".into()),
                delete_on_termination: Some(true),
                snapshot_id: Some("snap-1".into()),
            },
            LaunchTemplateBlockDevice {
                device_name: "/dev/xvdb".into(),
                volume_size_gib: Some(100),
                volume_type: None,
                iops: None,
                throughput: None,
                encrypted: None,
                kms_key_id: None,
                delete_on_termination: None,
                snapshot_id: None,
            },
        ],
        metadata_options: Some(LaunchTemplateMetadataOptions {
            http_endpoint: Some("enabled".into()),
            http_protocol_ipv6: Some("disabled".into()),
            http_put_response_hop_limit: Some(1),
            http_tokens: Some("required".into()),
        }),
        detailed_monitoring: true,
        associate_public_ip,
        tags: tags(&[("karpenter.k8s.aws/cluster", "prod"), ("team", "a")]),
    }
}

fn lt_rule(s: &Seen<create_launch_template::CreateLaunchTemplateInput>) -> Rule {
    mock!(Client::create_launch_template)
        .match_requests(record(s))
        .then_output(|| {
            CreateLaunchTemplateOutput::builder()
                .launch_template(
                    sdk::LaunchTemplate::builder()
                        .launch_template_id("lt-0abc")
                        .launch_template_name("karpenter.k8s.aws/123")
                        .build(),
                )
                .build()
        })
}

#[tokio::test]
async fn create_launch_template_sends_the_full_template_data() {
    let s = Seen::default();
    let r = lt_rule(&s);
    let id = client(&[&r])
        .create_launch_template(&lt_request(None))
        .await
        .unwrap();
    assert_eq!(id, "lt-0abc");
    let input = seen(&s).remove(0);
    assert_eq!(input.launch_template_name(), Some("karpenter.k8s.aws/123"));
    let d = input.launch_template_data().unwrap();
    assert_eq!(d.image_id(), Some("ami-1"));
    assert_eq!(d.user_data(), Some("IyEvYmluL2Jhc2gK"));
    assert_eq!(d.security_group_ids(), ["sg-1", "sg-2"]);
    assert!(d.network_interfaces().is_empty());
    assert_eq!(
        d.iam_instance_profile().unwrap().name(),
        Some("KarpenterNodeProfile")
    );
    assert_eq!(d.iam_instance_profile().unwrap().arn(), None);
    assert_eq!(d.monitoring().unwrap().enabled(), Some(true));
    let m = d.metadata_options().unwrap();
    assert_eq!(m.http_endpoint().map(|v| v.as_str()), Some("enabled"));
    assert_eq!(m.http_protocol_ipv6().map(|v| v.as_str()), Some("disabled"));
    assert_eq!(m.http_put_response_hop_limit(), Some(1));
    assert_eq!(
        m.http_tokens(),
        Some(&sdk::LaunchTemplateHttpTokensState::Required)
    );
    let bd = d.block_device_mappings();
    assert_eq!(bd.len(), 2);
    assert_eq!(bd[0].device_name(), Some("/dev/xvda"));
    let ebs = bd[0].ebs().unwrap();
    assert_eq!(ebs.volume_size(), Some(20));
    assert_eq!(ebs.volume_type(), Some(&sdk::VolumeType::Gp3));
    assert_eq!((ebs.iops(), ebs.throughput()), (Some(3000), Some(125)));
    assert_eq!(
        (ebs.encrypted(), ebs.delete_on_termination()),
        (Some(true), Some(true))
    );
    assert_eq!(ebs.kms_key_id(), Some("arn:aws:kms:key/1"));
    assert_eq!(ebs.snapshot_id(), Some("snap-1"));
    let ebs = bd[1].ebs().unwrap();
    assert_eq!(bd[1].device_name(), Some("/dev/xvdb"));
    assert_eq!(
        (ebs.volume_size(), ebs.volume_type(), ebs.iops()),
        (Some(100), None, None)
    );
    assert_eq!((ebs.encrypted(), ebs.snapshot_id()), (None, None));
    // Tags go on the launch template itself, not into the template data.
    assert!(d.tag_specifications().is_empty());
    let specs = input.tag_specifications();
    assert_eq!(specs.len(), 1);
    assert_eq!(
        specs[0].resource_type(),
        Some(&sdk::ResourceType::LaunchTemplate)
    );
    let sent: BTreeMap<String, String> = specs[0]
        .tags()
        .iter()
        .map(|t| (t.key().unwrap().to_owned(), t.value().unwrap().to_owned()))
        .collect();
    assert_eq!(sent, lt_request(None).tags);
}

#[tokio::test]
async fn public_ip_moves_security_groups_into_the_primary_interface() {
    let s = Seen::default();
    let r = lt_rule(&s);
    let mut req = lt_request(Some(false));
    req.instance_profile = None;
    req.metadata_options = None;
    req.detailed_monitoring = false;
    req.tags.clear();
    client(&[&r]).create_launch_template(&req).await.unwrap();
    let input = seen(&s).remove(0);
    let d = input.launch_template_data().unwrap();
    assert!(d.security_group_ids().is_empty());
    let ni = d.network_interfaces();
    assert_eq!(ni.len(), 1);
    assert_eq!(ni[0].associate_public_ip_address(), Some(false));
    assert_eq!(ni[0].device_index(), Some(0));
    assert_eq!(ni[0].groups(), ["sg-1", "sg-2"]);
    assert_eq!(d.iam_instance_profile(), None);
    assert_eq!(d.metadata_options(), None);
    assert_eq!(d.monitoring().unwrap().enabled(), Some(false));
    assert!(input.tag_specifications().is_empty());
}

#[tokio::test]
async fn create_launch_template_without_id_in_answer_is_an_error() {
    let r = mock!(Client::create_launch_template)
        .then_output(|| CreateLaunchTemplateOutput::builder().build());
    let err = client(&[&r])
        .create_launch_template(&lt_request(None))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Ec2Error::Transport { ref operation, ref message }
            if operation == "CreateLaunchTemplate" && message.contains("LaunchTemplateId"))
    );
}

#[tokio::test]
async fn launch_templates_are_listed_by_filter_over_pages_and_deleted_by_name() {
    let s: Seen<describe_launch_templates::DescribeLaunchTemplatesInput> = Seen::default();
    let lt = |id: &str, name: &str| {
        sdk::LaunchTemplate::builder()
            .launch_template_id(id)
            .launch_template_name(name)
            .tags(tag("karpenter.k8s.aws/cluster", "prod"))
            .build()
    };
    let p1 = DescribeLaunchTemplatesOutput::builder()
        .launch_templates(lt("lt-1", "karpenter.k8s.aws/1"))
        .launch_templates(
            sdk::LaunchTemplate::builder()
                .launch_template_id("lt-x")
                .build(),
        )
        .next_token("t2")
        .build();
    let p2 = DescribeLaunchTemplatesOutput::builder()
        .launch_templates(lt("lt-2", "karpenter.k8s.aws/2"))
        .build();
    let r1 = mock!(Client::describe_launch_templates)
        .match_requests(record(&s))
        .then_output(move || p1.clone());
    let r2 = mock!(Client::describe_launch_templates)
        .match_requests(record(&s))
        .then_output(move || p2.clone());
    let d: Seen<delete_launch_template::DeleteLaunchTemplateInput> = Seen::default();
    let r3 = mock!(Client::delete_launch_template)
        .match_requests(record(&d))
        .then_output(|| DeleteLaunchTemplateOutput::builder().build());
    let api = client(&[&r1, &r2, &r3]);
    let filters = [Filter::new("tag:karpenter.k8s.aws/cluster", ["prod"])];
    let got = api.describe_launch_templates(&filters).await.unwrap();
    let inputs = seen(&s);
    assert_eq!(
        inputs.iter().map(|i| i.next_token()).collect::<Vec<_>>(),
        [None, Some("t2")]
    );
    assert_eq!(sent_filters(inputs[1].filters()), as_pairs(&filters));
    let summary = |id: &str, name: &str| LaunchTemplateSummary {
        id: id.into(),
        name: name.into(),
        tags: tags(&[("karpenter.k8s.aws/cluster", "prod")]),
    };
    assert_eq!(
        got,
        [
            summary("lt-1", "karpenter.k8s.aws/1"),
            summary("lt-2", "karpenter.k8s.aws/2"),
        ]
    );

    api.delete_launch_template("karpenter.k8s.aws/1")
        .await
        .unwrap();
    let del = seen(&d).remove(0);
    assert_eq!(del.launch_template_name(), Some("karpenter.k8s.aws/1"));
    assert_eq!(del.launch_template_id(), None);
}

/// One test per call: `RequestLimitExceeded` becomes [`Ec2Error::Throttled`], another code
/// [`Ec2Error::Api`], both with the operation, code and message.
macro_rules! maps_errors {
    ($test:ident, $method:ident, $err:ty, $op:literal, |$api:ident| $call:expr) => {
        #[tokio::test]
        async fn $test() {
            for (code, throttled) in [
                ("RequestLimitExceeded", true),
                ("UnauthorizedOperation", false),
            ] {
                let rule = mock!(Client::$method).then_error(move || {
                    <$err>::generic(ErrorMetadata::builder().code(code).message("boom").build())
                });
                let $api = client(&[&rule]);
                let err = $call.await.unwrap_err();
                let (operation, code, message) =
                    ($op.to_owned(), code.to_owned(), "boom".to_owned());
                let want = if throttled {
                    Ec2Error::Throttled {
                        operation,
                        code,
                        message,
                    }
                } else {
                    Ec2Error::Api {
                        operation,
                        code,
                        message,
                    }
                };
                assert_eq!(err, want);
                assert_eq!(rule.num_calls(), 1);
            }
        }
    };
}

maps_errors!(
    subnet_errors,
    describe_subnets,
    describe_subnets::DescribeSubnetsError,
    "DescribeSubnets",
    |api| api.describe_subnets(&[])
);
maps_errors!(
    security_group_errors,
    describe_security_groups,
    describe_security_groups::DescribeSecurityGroupsError,
    "DescribeSecurityGroups",
    |api| api.describe_security_groups(&[])
);
maps_errors!(
    image_errors,
    describe_images,
    describe_images::DescribeImagesError,
    "DescribeImages",
    |api| api.describe_images(
        &ImageQuery {
            filters: vec![],
            owners: vec!["self".into()]
        },
        0
    )
);
maps_errors!(
    instance_type_errors,
    describe_instance_types,
    describe_instance_types::DescribeInstanceTypesError,
    "DescribeInstanceTypes",
    |api| api.describe_instance_types()
);
maps_errors!(
    offering_errors,
    describe_instance_type_offerings,
    describe_instance_type_offerings::DescribeInstanceTypeOfferingsError,
    "DescribeInstanceTypeOfferings",
    |api| api.describe_instance_type_offerings()
);
maps_errors!(
    spot_price_errors,
    describe_spot_price_history,
    describe_spot_price_history::DescribeSpotPriceHistoryError,
    "DescribeSpotPriceHistory",
    |api| api.describe_spot_price_history(0)
);
maps_errors!(
    instance_errors,
    describe_instances,
    DescribeInstancesError,
    "DescribeInstances",
    |api| api.describe_instances(&InstanceQuery::Ids(vec!["i-1".into()]))
);
maps_errors!(
    terminate_errors,
    terminate_instances,
    terminate_instances::TerminateInstancesError,
    "TerminateInstances",
    |api| api.terminate_instances(&["i-1".into()])
);
maps_errors!(
    create_launch_template_errors,
    create_launch_template,
    create_launch_template::CreateLaunchTemplateError,
    "CreateLaunchTemplate",
    |api| api.create_launch_template(&lt_request(None))
);
maps_errors!(
    describe_launch_template_errors,
    describe_launch_templates,
    describe_launch_templates::DescribeLaunchTemplatesError,
    "DescribeLaunchTemplates",
    |api| api.describe_launch_templates(&[])
);
maps_errors!(
    delete_launch_template_errors,
    delete_launch_template,
    delete_launch_template::DeleteLaunchTemplateError,
    "DeleteLaunchTemplate",
    |api| api.delete_launch_template("lt")
);

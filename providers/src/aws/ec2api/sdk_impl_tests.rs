//! `SdkEc2`'s calls besides `CreateFleet` against `aws-smithy-mocks`: the request actually
//! sent (every page), how answers map back, and how errors are sorted. This file holds the
//! shared helpers and the read-only Describe calls of resolution and the catalog; instances,
//! termination, launch templates and the error mapping of every call are in
//! `sdk_impl_tests_launch.rs`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_ec2::Client;
use aws_sdk_ec2::operation::describe_images::DescribeImagesOutput;
use aws_sdk_ec2::operation::describe_instance_type_offerings::DescribeInstanceTypeOfferingsOutput;
use aws_sdk_ec2::operation::describe_instance_types::DescribeInstanceTypesOutput;
use aws_sdk_ec2::operation::describe_security_groups::DescribeSecurityGroupsOutput;
use aws_sdk_ec2::operation::describe_spot_price_history::DescribeSpotPriceHistoryOutput;
use aws_sdk_ec2::operation::describe_subnets::DescribeSubnetsOutput;
use aws_sdk_ec2::operation::{
    describe_images, describe_instance_type_offerings, describe_instance_types,
    describe_security_groups, describe_spot_price_history, describe_subnets,
};
use aws_sdk_ec2::primitives::DateTime;
use aws_sdk_ec2::types as sdk;
use aws_smithy_mocks::{Rule, mock};

use crate::aws::catalog::Gpu;
use crate::aws::ec2api::{Ec2Api, InstanceTypeInfo, SdkEc2, SpotPrice};
use crate::aws::resolve::{Filter, Image, ImageQuery, SecurityGroup, Subnet};

#[path = "sdk_impl_tests_launch.rs"]
mod launch;

/// A client answering from `rules` strictly in order (a request the next rule does not expect
/// fails the test); retries are off so one rule answers one call.
fn client(rules: &[&Rule]) -> SdkEc2 {
    SdkEc2::new(crate::aws::sequential_mock_client!(aws_sdk_ec2, rules))
}

type Seen<I> = Arc<Mutex<Vec<I>>>;

/// A request matcher that records every input it sees into `seen`.
fn record<I: Clone + Send + 'static>(seen: &Seen<I>) -> impl Fn(&I) -> bool + Send + Sync + use<I> {
    let sink = seen.clone();
    move |input| {
        sink.lock().unwrap().push(input.clone());
        true
    }
}

fn seen<I: Clone>(s: &Seen<I>) -> Vec<I> {
    s.lock().unwrap().clone()
}

fn tag(k: &str, v: &str) -> sdk::Tag {
    sdk::Tag::builder().key(k).value(v).build()
}

fn tags(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `(name, values)` of the filters sent.
fn sent_filters(f: &[sdk::Filter]) -> Vec<(String, Vec<String>)> {
    f.iter()
        .map(|f| (f.name().unwrap().to_owned(), f.values().to_vec()))
        .collect()
}

fn as_pairs(f: &[Filter]) -> Vec<(String, Vec<String>)> {
    f.iter()
        .map(|f| (f.name.clone(), f.values.clone()))
        .collect()
}

#[tokio::test]
async fn subnets_send_filters_on_every_page_and_convert() {
    let s: Seen<describe_subnets::DescribeSubnetsInput> = Seen::default();
    let p1 = DescribeSubnetsOutput::builder()
        .subnets(
            sdk::Subnet::builder()
                .subnet_id("subnet-a")
                .availability_zone("us-east-1a")
                .availability_zone_id("use1-az1")
                .available_ip_address_count(250)
                .tags(tag("karpenter.sh/discovery", "prod"))
                .tags(sdk::Tag::builder().value("keyless").build())
                .build(),
        )
        .subnets(
            sdk::Subnet::builder()
                .availability_zone("us-east-1c")
                .build(),
        )
        .next_token("t2")
        .build();
    let p2 = DescribeSubnetsOutput::builder()
        .subnets(
            sdk::Subnet::builder()
                .subnet_id("subnet-b")
                .availability_zone("us-east-1b")
                .available_ip_address_count(-1)
                .build(),
        )
        .build();
    let r1 = mock!(Client::describe_subnets)
        .match_requests(record(&s))
        .then_output(move || p1.clone());
    let r2 = mock!(Client::describe_subnets)
        .match_requests(record(&s))
        .then_output(move || p2.clone());
    let filters = vec![
        Filter::new("tag:karpenter.sh/discovery", ["prod"]),
        Filter::new("tag-key", ["kubernetes.io/role/internal-elb"]),
    ];
    let got = client(&[&r1, &r2])
        .describe_subnets(&filters)
        .await
        .unwrap();

    let inputs = seen(&s);
    assert_eq!(inputs.len(), 2);
    assert_eq!(inputs[0].next_token(), None);
    assert_eq!(inputs[1].next_token(), Some("t2"));
    for i in &inputs {
        assert_eq!(sent_filters(i.filters()), as_pairs(&filters));
    }
    assert_eq!(
        got,
        [
            Subnet {
                id: "subnet-a".into(),
                zone: "us-east-1a".into(),
                zone_id: "use1-az1".into(),
                available_ips: 250,
                tags: tags(&[("karpenter.sh/discovery", "prod")]),
            },
            Subnet {
                id: "subnet-b".into(),
                zone: "us-east-1b".into(),
                ..Subnet::default()
            },
        ]
    );
}

#[tokio::test]
async fn security_groups_follow_pages_and_omit_empty_filters() {
    let s: Seen<describe_security_groups::DescribeSecurityGroupsInput> = Seen::default();
    let p1 = DescribeSecurityGroupsOutput::builder()
        .security_groups(
            sdk::SecurityGroup::builder()
                .group_id("sg-1")
                .group_name("nodes")
                .tags(tag("team", "a"))
                .build(),
        )
        .next_token("t2")
        .build();
    let p2 = DescribeSecurityGroupsOutput::builder()
        .security_groups(sdk::SecurityGroup::builder().group_id("sg-2").build())
        .security_groups(sdk::SecurityGroup::builder().group_name("no-id").build())
        .build();
    let r1 = mock!(Client::describe_security_groups)
        .match_requests(record(&s))
        .then_output(move || p1.clone());
    let r2 = mock!(Client::describe_security_groups)
        .match_requests(record(&s))
        .then_output(move || p2.clone());
    let filters = [Filter::new("group-name", ["nodes", "extra-*"])];
    let api = client(&[&r1, &r2]);
    let got = api.describe_security_groups(&filters).await.unwrap();
    let inputs = seen(&s);
    assert_eq!(
        inputs.iter().map(|i| i.next_token()).collect::<Vec<_>>(),
        [None, Some("t2")]
    );
    assert_eq!(sent_filters(inputs[1].filters()), as_pairs(&filters));
    assert_eq!(
        got,
        [
            SecurityGroup {
                id: "sg-1".into(),
                name: "nodes".into(),
                tags: tags(&[("team", "a")]),
            },
            SecurityGroup {
                id: "sg-2".into(),
                ..SecurityGroup::default()
            },
        ]
    );

    let r = mock!(Client::describe_security_groups)
        .match_requests(record(&s))
        .then_output(|| DescribeSecurityGroupsOutput::builder().build());
    assert!(
        client(&[&r])
            .describe_security_groups(&[])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(seen(&s)[2].filters, None);
}

fn image(id: &str, deprecation: Option<&str>) -> sdk::Image {
    sdk::Image::builder()
        .image_id(id)
        .name(format!("name-{id}"))
        .architecture(sdk::ArchitectureValues::Arm64)
        .creation_date("2024-10-24T12:00:00.000Z")
        .owner_id("137112412989")
        .image_owner_alias("amazon")
        .set_deprecation_time(deprecation.map(str::to_owned))
        .tags(tag("os", "al2023"))
        .build()
}

#[tokio::test]
async fn images_send_owners_filters_and_include_deprecated_and_judge_deprecation() {
    let now = 1_735_689_600; // 2025-01-01T00:00:00Z
    let s: Seen<describe_images::DescribeImagesInput> = Seen::default();
    let p1 = DescribeImagesOutput::builder()
        .images(image("ami-past", Some("2024-12-31T23:59:59.000Z")))
        .images(image("ami-now", Some("2025-01-01T02:00:00+02:00")))
        .images(image("ami-future", Some("2025-01-01T00:00:01Z")))
        .next_token("t2")
        .build();
    let p2 = DescribeImagesOutput::builder()
        .images(image("ami-garbled", Some("next tuesday")))
        .images(image("ami-never", None))
        .images(sdk::Image::builder().name("no-id").build())
        .build();
    let r1 = mock!(Client::describe_images)
        .match_requests(record(&s))
        .then_output(move || p1.clone());
    let r2 = mock!(Client::describe_images)
        .match_requests(record(&s))
        .then_output(move || p2.clone());
    let query = ImageQuery {
        filters: vec![
            Filter::new("name", ["al2023-ami-*"]),
            Filter::new("tag:os", ["al2023"]),
        ],
        owners: vec!["self".into(), "amazon".into()],
    };
    let got = client(&[&r1, &r2])
        .describe_images(&query, now)
        .await
        .unwrap();

    let inputs = seen(&s);
    assert_eq!(
        inputs.iter().map(|i| i.next_token()).collect::<Vec<_>>(),
        [None, Some("t2")]
    );
    for i in &inputs {
        assert_eq!(i.owners(), ["self", "amazon"]);
        assert_eq!(sent_filters(i.filters()), as_pairs(&query.filters));
        assert_eq!(i.include_deprecated(), Some(true));
        assert_eq!(i.max_results(), Some(1000));
    }
    let deprecated: Vec<(&str, bool)> = got.iter().map(|i| (i.id.as_str(), i.deprecated)).collect();
    assert_eq!(
        deprecated,
        [
            ("ami-past", true),
            ("ami-now", true),
            ("ami-future", false),
            ("ami-garbled", false),
            ("ami-never", false),
        ]
    );
    assert_eq!(
        got[0],
        Image {
            id: "ami-past".into(),
            name: "name-ami-past".into(),
            architecture: "arm64".into(),
            creation_date: "2024-10-24T12:00:00.000Z".into(),
            owner: "137112412989".into(),
            owner_alias: Some("amazon".into()),
            deprecated: true,
            tags: tags(&[("os", "al2023")]),
        }
    );
}

#[tokio::test]
async fn image_id_query_sends_no_owners_and_empty_query_sends_nothing() {
    let s: Seen<describe_images::DescribeImagesInput> = Seen::default();
    let r = mock!(Client::describe_images)
        .match_requests(record(&s))
        .then_output(|| DescribeImagesOutput::builder().build());
    let api = client(&[&r]);
    let by_id = ImageQuery {
        filters: vec![Filter::new("image-id", ["ami-1", "ami-2"])],
        owners: vec![],
    };
    assert!(api.describe_images(&by_id, 0).await.unwrap().is_empty());
    assert_eq!(seen(&s)[0].owners, None);
    // No rule is left: a second call would fail the test.
    assert!(
        api.describe_images(&ImageQuery::default(), 0)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(r.num_calls(), 1);
}

fn instance_type(t: sdk::InstanceType, archs: &[sdk::ArchitectureType]) -> sdk::InstanceTypeInfo {
    sdk::InstanceTypeInfo::builder()
        .instance_type(t)
        .current_generation(true)
        .bare_metal(false)
        .burstable_performance_supported(false)
        .hypervisor(sdk::InstanceTypeHypervisor::Nitro)
        .supported_usage_classes(sdk::UsageClassType::OnDemand)
        .processor_info(
            sdk::ProcessorInfo::builder()
                .set_supported_architectures(Some(archs.to_vec()))
                .manufacturer("AMD")
                .build(),
        )
        .v_cpu_info(sdk::VCpuInfo::builder().default_v_cpus(4).build())
        .memory_info(sdk::MemoryInfo::builder().size_in_mib(16384).build())
        .network_info(
            sdk::NetworkInfo::builder()
                .maximum_network_interfaces(4)
                .ipv4_addresses_per_interface(15)
                .efa_supported(false)
                .network_performance("Up to 10 Gigabit")
                .build(),
        )
        .build()
}

#[tokio::test]
async fn instance_types_read_every_page_and_convert() {
    use sdk::ArchitectureType as A;
    let s: Seen<describe_instance_types::DescribeInstanceTypesInput> = Seen::default();
    let g5 = {
        let mut t = instance_type(sdk::InstanceType::G5Xlarge, &[A::X8664, A::I386]);
        t.supported_usage_classes = Some(vec![
            sdk::UsageClassType::OnDemand,
            sdk::UsageClassType::Spot,
        ]);
        t.gpu_info = Some(
            sdk::GpuInfo::builder()
                .gpus(
                    sdk::GpuDeviceInfo::builder()
                        .name("A10G")
                        .manufacturer("NVIDIA")
                        .count(1)
                        .memory_info(
                            sdk::GpuDeviceMemoryInfo::builder()
                                .size_in_mib(24576)
                                .build(),
                        )
                        .build(),
                )
                .gpus(sdk::GpuDeviceInfo::builder().name("countless").build())
                .total_gpu_memory_in_mib(24576)
                .build(),
        );
        t.instance_storage_info = Some(
            sdk::InstanceStorageInfo::builder()
                .total_size_in_gb(250)
                .build(),
        );
        t.network_info = Some(
            sdk::NetworkInfo::builder()
                .maximum_network_interfaces(4)
                .ipv4_addresses_per_interface(15)
                .efa_supported(true)
                .build(),
        );
        t
    };
    let metal = {
        let mut t = instance_type(sdk::InstanceType::M6gMetal, &[A::Arm64]);
        t.hypervisor = None;
        t.bare_metal = Some(true);
        t
    };
    let p1 = DescribeInstanceTypesOutput::builder()
        .instance_types(g5)
        .instance_types(
            sdk::InstanceTypeInfo::builder()
                .instance_type(sdk::InstanceType::T3Micro)
                .build(),
        )
        .next_token("t2")
        .build();
    let p2 = DescribeInstanceTypesOutput::builder()
        .instance_types(metal)
        .instance_types(instance_type(sdk::InstanceType::Mac1Metal, &[A::X8664Mac]))
        .build();
    let r1 = mock!(Client::describe_instance_types)
        .match_requests(record(&s))
        .then_output(move || p1.clone());
    let r2 = mock!(Client::describe_instance_types)
        .match_requests(record(&s))
        .then_output(move || p2.clone());
    let got = client(&[&r1, &r2]).describe_instance_types().await.unwrap();

    let inputs = seen(&s);
    assert_eq!(
        inputs.iter().map(|i| i.next_token()).collect::<Vec<_>>(),
        [None, Some("t2")]
    );
    assert!(inputs.iter().all(|i| i.max_results() == Some(100)));
    assert!(
        inputs
            .iter()
            .all(|i| i.filters().is_empty() && i.instance_types().is_empty())
    );
    // t3.micro has no vCPU or memory figures and is skipped.
    let names: Vec<&str> = got.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["g5.xlarge", "m6g.metal", "mac1.metal"]);
    assert_eq!(
        got[0],
        InstanceTypeInfo {
            name: "g5.xlarge".into(),
            vcpu: 4,
            memory_mib: 16384,
            architectures: vec!["amd64".into()],
            processor_manufacturer: Some("AMD".into()),
            hypervisor: Some("nitro".into()),
            bare_metal: false,
            burstable: false,
            current_generation: true,
            max_network_interfaces: 4,
            ipv4_per_interface: 15,
            efa_supported: true,
            network_performance: None,
            gpus: vec![Gpu {
                name: "A10G".into(),
                manufacturer: "NVIDIA".into(),
                count: 1,
                memory_mib: 24576,
            }],
            local_nvme_gb: 250,
            spot_supported: true,
        }
    );
    let metal = &got[1];
    assert_eq!(metal.architectures, ["arm64"]);
    assert_eq!(
        (metal.hypervisor.as_deref(), metal.bare_metal),
        (None, true)
    );
    assert!(!metal.spot_supported);
    assert_eq!(
        metal.network_performance.as_deref(),
        Some("Up to 10 Gigabit")
    );
    assert_eq!((metal.local_nvme_gb, metal.gpus.len()), (0, 0));
    assert!(got[2].architectures.is_empty());
}

#[tokio::test]
async fn offerings_ask_for_zones_on_every_page() {
    let s: Seen<describe_instance_type_offerings::DescribeInstanceTypeOfferingsInput> =
        Seen::default();
    let offer = |t: sdk::InstanceType, z: &str| {
        sdk::InstanceTypeOffering::builder()
            .instance_type(t)
            .location_type(sdk::LocationType::AvailabilityZone)
            .location(z)
            .build()
    };
    let p1 = DescribeInstanceTypeOfferingsOutput::builder()
        .instance_type_offerings(offer(sdk::InstanceType::M5Large, "us-east-1a"))
        .instance_type_offerings(offer(sdk::InstanceType::M5Large, "us-east-1b"))
        .next_token("t2")
        .build();
    let p2 = DescribeInstanceTypeOfferingsOutput::builder()
        .instance_type_offerings(offer(sdk::InstanceType::G5Xlarge, "us-east-1b"))
        .instance_type_offerings(
            sdk::InstanceTypeOffering::builder()
                .instance_type(sdk::InstanceType::T3Micro)
                .build(),
        )
        .build();
    let r1 = mock!(Client::describe_instance_type_offerings)
        .match_requests(record(&s))
        .then_output(move || p1.clone());
    let r2 = mock!(Client::describe_instance_type_offerings)
        .match_requests(record(&s))
        .then_output(move || p2.clone());
    let got = client(&[&r1, &r2])
        .describe_instance_type_offerings()
        .await
        .unwrap();
    let inputs = seen(&s);
    assert_eq!(
        inputs.iter().map(|i| i.next_token()).collect::<Vec<_>>(),
        [None, Some("t2")]
    );
    for i in &inputs {
        assert_eq!(
            i.location_type(),
            Some(&sdk::LocationType::AvailabilityZone)
        );
        assert_eq!(i.max_results(), Some(1000));
    }
    let pair = |t: &str, z: &str| (t.to_owned(), z.to_owned());
    assert_eq!(
        got,
        [
            pair("m5.large", "us-east-1a"),
            pair("m5.large", "us-east-1b"),
            pair("g5.xlarge", "us-east-1b"),
        ]
    );
}

fn spot(t: sdk::InstanceType, z: &str, price: &str, ts: Option<i64>) -> sdk::SpotPrice {
    sdk::SpotPrice::builder()
        .instance_type(t)
        .availability_zone(z)
        .product_description(sdk::RiProductDescription::LinuxUnix)
        .spot_price(price)
        .set_timestamp(ts.map(DateTime::from_secs))
        .build()
}

#[tokio::test]
async fn spot_prices_are_linux_since_start_and_skip_garbage() {
    let s: Seen<describe_spot_price_history::DescribeSpotPriceHistoryInput> = Seen::default();
    let p1 = DescribeSpotPriceHistoryOutput::builder()
        .spot_price_history(spot(
            sdk::InstanceType::M5Large,
            "us-east-1a",
            "0.031200",
            Some(1_700_000_100),
        ))
        .spot_price_history(spot(
            sdk::InstanceType::M5Large,
            "us-east-1b",
            "n/a",
            Some(1_700_000_100),
        ))
        .spot_price_history(spot(
            sdk::InstanceType::M5Large,
            "us-east-1c",
            "NaN",
            Some(1_700_000_100),
        ))
        .next_token("t2")
        .build();
    let p2 = DescribeSpotPriceHistoryOutput::builder()
        .spot_price_history(spot(
            sdk::InstanceType::G5Xlarge,
            "us-east-1b",
            "0.4",
            Some(1_700_000_200),
        ))
        .spot_price_history(spot(sdk::InstanceType::G5Xlarge, "us-east-1c", "0.5", None))
        .build();
    let r1 = mock!(Client::describe_spot_price_history)
        .match_requests(record(&s))
        .then_output(move || p1.clone());
    let r2 = mock!(Client::describe_spot_price_history)
        .match_requests(record(&s))
        .then_output(move || p2.clone());
    let got = client(&[&r1, &r2])
        .describe_spot_price_history(1_700_000_000)
        .await
        .unwrap();
    let inputs = seen(&s);
    assert_eq!(
        inputs.iter().map(|i| i.next_token()).collect::<Vec<_>>(),
        [None, Some("t2")]
    );
    for i in &inputs {
        assert_eq!(i.product_descriptions(), ["Linux/UNIX"]);
        assert_eq!(i.start_time().map(DateTime::secs), Some(1_700_000_000));
        assert_eq!(i.end_time(), None);
        assert_eq!(i.max_results(), Some(1000));
    }
    assert_eq!(
        got,
        [
            SpotPrice {
                instance_type: "m5.large".into(),
                zone: "us-east-1a".into(),
                price: 0.0312,
                timestamp_unix: 1_700_000_100,
            },
            SpotPrice {
                instance_type: "g5.xlarge".into(),
                zone: "us-east-1b".into(),
                price: 0.4,
                timestamp_unix: 1_700_000_200,
            },
        ]
    );
}

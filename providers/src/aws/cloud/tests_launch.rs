//! `AwsCloudProvider::create` over the in-memory fakes: fleet and launch templates, subnet
//! choice, userData, template reuse and recreation, and capacity errors.

use std::collections::BTreeMap;

use base64::Engine as _;
use karpenter_core::api::kubelet::KubeletConfiguration;
use karpenter_core::labels;

use super::tests::{Fixture, claim, node_class, pool};
use super::*;
use crate::aws::ec2api::{CapacityType, LaunchTemplateRequest};
use crate::aws::fleet::NODE_CLAIM_TAG;
use crate::aws::nodeclass::{AmiFamily, AmiSelectorTerm};
use crate::provider::CloudProvider;

fn user_data(req: &LaunchTemplateRequest) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&req.user_data_base64)
        .unwrap();
    String::from_utf8(bytes).unwrap()
}

#[tokio::test]
async fn create_sends_one_fleet_with_a_template_per_image() {
    let f = Fixture::new();
    let got = f
        .provider
        .create(&claim(&["m6g.large", "m5.large"], &["on-demand"]))
        .await
        .unwrap();

    assert_eq!(f.ec2.count("CreateFleet"), 1);
    // The claim's tag goes on the instance after the launch (not on the fleet request).
    assert_eq!(f.ec2.count("CreateTags"), 1);
    assert_eq!(got.node_claim.as_deref(), Some("default-abcde"));
    let launched_id = got.instance_id().to_owned();
    assert_eq!(
        f.ec2
            .with(|s| s.instances[&launched_id].tags.get(NODE_CLAIM_TAG).cloned())
            .as_deref(),
        Some("default-abcde")
    );
    let req = f.ec2.with(|s| s.fleet_requests[0].clone());
    assert_eq!(req.capacity_type, CapacityType::OnDemand);
    assert_eq!(req.target_capacity, 1);
    assert_eq!(req.launch_template_configs.len(), 2);
    let templates = f.ec2.with(|s| s.launch_templates.clone());
    assert_eq!(templates.len(), 2);
    let mut images = Vec::new();
    for config in &req.launch_template_configs {
        assert!(
            config
                .launch_template_name
                .starts_with("karpenter.k8s.aws/"),
            "{}",
            config.launch_template_name
        );
        let t = &templates[&config.launch_template_name];
        images.push(t.image_id.as_str());
        let types: Vec<&str> = config
            .overrides
            .iter()
            .map(|o| o.instance_type.as_str())
            .collect();
        let expected = if t.image_id == "ami-arm" {
            "m6g.large"
        } else {
            "m5.large"
        };
        assert!(types.iter().all(|t| *t == expected), "{types:?}");
        // The subnet with the most free IPs per zone; no subnet in us-east-1c.
        for o in &config.overrides {
            let want = match o.availability_zone.as_str() {
                "us-east-1a" => "subnet-a2",
                "us-east-1b" => "subnet-b1",
                z => panic!("override in {z}"),
            };
            assert_eq!(o.subnet_id, want);
        }
        assert_eq!(t.security_group_ids, ["sg-1"]);
        assert_eq!(
            t.instance_profile,
            Some(instance_profile_name("prod", "us-east-1", "default"))
        );
        assert_eq!(t.tags["karpenter.k8s.aws/cluster"], "prod");
        assert_eq!(t.tags["karpenter.sh/nodepool"], "default");
        assert_eq!(t.tags["karpenter.k8s.aws/ec2nodeclass"], "default");
        assert_eq!(t.tags["team"], "infra");
        assert_eq!(t.block_devices.len(), 1);
        assert_eq!(t.block_devices[0].device_name, "/dev/xvda");
        assert_eq!(t.block_devices[0].volume_size_gib, Some(20));
        assert_eq!(t.block_devices[0].volume_type.as_deref(), Some("gp3"));
        assert_eq!(t.block_devices[0].encrypted, Some(true));
        let m = t.metadata_options.clone().unwrap();
        assert_eq!(m.http_endpoint.as_deref(), Some("enabled"));
        assert_eq!(m.http_protocol_ipv6.as_deref(), Some("disabled"));
        assert_eq!(m.http_put_response_hop_limit, Some(1));
        assert_eq!(m.http_tokens.as_deref(), Some("required"));
        // AL2023 nodeadm config with the cluster and the capacity type label.
        let ud = user_data(t);
        assert!(ud.contains("https://prod.eks.example"), "{ud}");
        assert!(ud.contains("karpenter.sh/capacity-type=on-demand"), "{ud}");
    }
    images.sort();
    assert_eq!(images, ["ami-amd", "ami-arm"]);

    // m6g.large is cheaper, and the fake launches the first override.
    assert_eq!(got.instance_type, "m6g.large");
    assert_eq!(got.image_id, "ami-arm");
    assert_eq!(got.capacity_type, "on-demand");
    assert!(got.provider_id.starts_with("aws:///us-east-1"));
    assert_eq!(got.labels[labels::ARCH], "arm64");
    assert_eq!(got.labels[labels::OS], "linux");
    assert_eq!(got.labels[labels::INSTANCE_TYPE], "m6g.large");
    assert_eq!(got.labels[labels::aws::INSTANCE_CPU], "2");
    assert_eq!(got.labels[labels::ZONE], got.zone);
    assert_eq!(got.labels[labels::CAPACITY_TYPE], "on-demand");
    assert_eq!(got.labels[labels::NODE_POOL], "default");
    assert_eq!(got.labels[labels::aws::EC2_NODE_CLASS], "default");
    assert_eq!(got.labels["team"], "infra");
    assert_eq!(got.node_claim.as_deref(), Some("default-abcde"));
    assert!(got.capacity.0[karpenter_core::resources::CPU] == 2000);
}

#[tokio::test]
async fn al2_user_data_carries_the_users_script_and_max_pods_and_templates_are_reused() {
    let f = Fixture::new();
    let mut nc = node_class("default");
    nc.spec.ami_selector_terms = vec![AmiSelectorTerm {
        alias: Some("al2@latest".into()),
        ..Default::default()
    }];
    nc.spec.user_data = Some("#!/bin/bash\nexport ENABLE_PREFIX_DELEGATION=true\n".into());
    nc.spec.kubelet = Some(KubeletConfiguration {
        max_pods: Some(110),
        ..Default::default()
    });
    f.set_class(nc);
    let c = claim(&["m5.large", "c5.large"], &["on-demand"]);
    f.provider.create(&c).await.unwrap();
    f.provider.create(&c).await.unwrap();

    assert_eq!(f.ec2.count("CreateFleet"), 2);
    // Both types share image and max pods: one template, created once for both launches.
    assert_eq!(f.ec2.count("CreateLaunchTemplate"), 1);
    let t = f.ec2.with(|s| s.template_requests[0].clone());
    assert_eq!(t.image_id, "ami-al2");
    let ud = user_data(&t);
    assert!(ud.contains("ENABLE_PREFIX_DELEGATION=true"), "{ud}");
    assert!(ud.contains("--max-pods=110"), "{ud}");
    assert!(ud.contains("/etc/eks/bootstrap.sh 'prod'"), "{ud}");
    let fleets = f.ec2.with(|s| s.fleet_requests.clone());
    assert_eq!(
        fleets[0].launch_template_configs[0].launch_template_name,
        fleets[1].launch_template_configs[0].launch_template_name
    );
}

#[tokio::test]
async fn launches_spread_over_subnets_with_in_flight_ips() {
    let f = Fixture::new();
    f.ec2.with(|s| {
        for n in &mut s.subnets {
            n.available_ips = match n.id.as_str() {
                "subnet-a1" => 100,
                "subnet-a2" => 101,
                _ => 0,
            };
        }
    });
    let mut c = claim(&["m5.large"], &["on-demand"]);
    c.requirements.add(
        labels::ZONE,
        karpenter_core::requirements::Requirement::single("us-east-1a"),
    );
    let subnet_of_last = || {
        f.ec2.with(|s| {
            let r = s.fleet_requests.last().unwrap();
            r.launch_template_configs[0].overrides[0].subnet_id.clone()
        })
    };
    f.provider.create(&c).await.unwrap();
    assert_eq!(subnet_of_last(), "subnet-a2");
    // One IP of subnet-a2 is in flight: 100 vs 100, the smaller id wins.
    f.provider.create(&c).await.unwrap();
    assert_eq!(subnet_of_last(), "subnet-a1");
    f.provider.create(&c).await.unwrap();
    assert_eq!(subnet_of_last(), "subnet-a2");
    assert_eq!(f.ec2.count("DescribeSubnets"), 1);

    // Once the subnet answer is stale it is described again and the counts reset.
    f.advance(SUBNETS_TTL_SECS);
    f.provider.create(&c).await.unwrap();
    assert_eq!(f.ec2.count("DescribeSubnets"), 2);
    assert_eq!(subnet_of_last(), "subnet-a2");
}

#[tokio::test]
async fn capacity_errors_mark_the_offering_and_the_retry_launches_the_next_type() {
    let f = Fixture::new();
    f.ec2.with(|s| {
        s.ice.insert(("c5.large".into(), "us-east-1a".into()));
        s.ice.insert(("c5.large".into(), "us-east-1b".into()));
    });
    let err = f
        .provider
        .create(&claim(&["c5.large"], &["on-demand"]))
        .await
        .unwrap_err();
    match &err {
        ProviderError::InsufficientCapacity { offerings, .. } => {
            assert!(
                offerings.contains(&(
                    "c5.large".to_string(),
                    "us-east-1a".to_string(),
                    "on-demand".to_string()
                )),
                "{offerings:?}"
            );
        }
        other => panic!("expected a capacity error, got {other:?}"),
    }

    let types = f.provider.instance_types(&pool()).await.unwrap();
    let c5 = types.iter().find(|t| t.name == "c5.large").unwrap();
    for o in &c5.offerings {
        let refused = o.capacity_type == "on-demand" && o.zone != "us-east-1c";
        if refused {
            assert!(!o.available, "{o:?}");
        }
    }
    assert!(
        c5.offerings
            .iter()
            .any(|o| o.capacity_type == "spot" && o.zone == "us-east-1a" && o.available)
    );

    let got = f
        .provider
        .create(&claim(&["c5.large", "m5.large"], &["on-demand"]))
        .await
        .unwrap();
    assert_eq!(got.instance_type, "m5.large");
    let last = f.ec2.with(|s| s.fleet_requests.last().unwrap().clone());
    assert!(
        last.launch_template_configs
            .iter()
            .flat_map(|c| &c.overrides)
            .all(|o| o.instance_type == "m5.large")
    );

    // After the TTL the offering is offered again.
    f.advance(crate::aws::fleet::UNAVAILABLE_OFFERINGS_TTL_SECS + 1);
    let types = f.provider.instance_types(&pool()).await.unwrap();
    let c5 = types.iter().find(|t| t.name == "c5.large").unwrap();
    assert!(
        c5.offerings
            .iter()
            .any(|o| o.capacity_type == "on-demand" && o.zone == "us-east-1a" && o.available)
    );
}

#[tokio::test]
async fn a_vanished_launch_template_is_recreated_once() {
    let f = Fixture::new();
    let c = claim(&["m5.large"], &["on-demand"]);
    f.provider.create(&c).await.unwrap();
    // Someone deleted the template behind our back.
    f.ec2.with(|s| s.launch_templates.clear());
    let got = f.provider.create(&c).await.unwrap();
    assert_eq!(got.instance_type, "m5.large");
    assert_eq!(f.ec2.count("CreateLaunchTemplate"), 2);
    assert_eq!(f.ec2.count("CreateFleet"), 3);

    // One refusal: forgotten, recreated, retried.
    let code = "InvalidLaunchTemplateId.NotFound".to_string();
    f.ec2.with(|s| s.next_fleet_errors = vec![code.clone()]);
    f.provider.create(&c).await.unwrap();
    assert_eq!(f.ec2.count("CreateFleet"), 5);
    assert_eq!(f.ec2.count("CreateLaunchTemplate"), 3);

    // If EC2 keeps saying so, the error surfaces instead of looping.
    f.ec2
        .with(|s| s.next_fleet_errors = vec![code.clone(), code.clone()]);
    let err = f.provider.create(&c).await.unwrap_err();
    assert!(matches!(err, ProviderError::Create { .. }), "{err:?}");
    assert_eq!(f.ec2.count("CreateFleet"), 7);
}

#[tokio::test]
async fn unknown_or_unready_node_classes_and_unknown_types_do_not_launch() {
    let f = Fixture::new();
    let mut c = claim(&["m5.large"], &["on-demand"]);
    c.node_class = "missing".into();
    let err = f.provider.create(&c).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::NodeClassNotReady { .. }),
        "{err:?}"
    );

    let err = f
        .provider
        .create(&claim(&["zz9.large", "x1.nope"], &["on-demand"]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProviderError::InsufficientCapacity { .. }),
        "{err:?}"
    );
    assert_eq!(f.ec2.count("CreateFleet"), 0);
}

#[test]
fn default_disks_per_family_and_template_names_follow_content() {
    let br = default_block_devices(AmiFamily::Bottlerocket);
    let names: Vec<(&str, Option<i32>)> = br
        .iter()
        .map(|b| (b.device_name.as_str(), b.volume_size_gib))
        .collect();
    assert_eq!(names, [("/dev/xvda", Some(4)), ("/dev/xvdb", Some(20))]);
    assert!(default_block_devices(AmiFamily::Custom).is_empty());

    let req = LaunchTemplateRequest {
        name: String::new(),
        image_id: "ami-1".into(),
        user_data_base64: "eA==".into(),
        security_group_ids: vec!["sg-1".into()],
        instance_profile: Some("p".into()),
        block_devices: default_block_devices(AmiFamily::Al2023),
        metadata_options: None,
        detailed_monitoring: false,
        associate_public_ip: None,
        tags: BTreeMap::new(),
    };
    let name = launch_template_name(&req);
    assert!(name.starts_with("karpenter.k8s.aws/"));
    assert_eq!(name, launch_template_name(&req.clone()));
    let mut other = req.clone();
    other.block_devices[0].volume_size_gib = Some(21);
    assert_ne!(launch_template_name(&other), name);
    let mut other = req.clone();
    other.tags.insert("a".into(), "b".into());
    assert_ne!(launch_template_name(&other), name);
}

//! `AwsCloudProvider`'s get, delete, list and drift over the in-memory fakes.

use std::collections::BTreeMap;

use karpenter_core::labels;
use karpenter_core::resources::{CPU, Resources};

use super::tests::{Fixture, tags};
use crate::aws::ec2api::{CapacityType, Instance, InstanceQuery};
use crate::aws::fleet::{EKS_CLUSTER_NAME_TAG, NODE_CLAIM_TAG, NODE_CLASS_TAG};
use crate::aws::resolve::Filter;
use crate::provider::{CloudProvider, aws_provider_id};

pub(super) fn instance(id: &str, state: &str, cluster: &str) -> Instance {
    Instance {
        id: id.into(),
        instance_type: "m5.large".into(),
        zone: "us-east-1a".into(),
        capacity_type: CapacityType::Spot,
        image_id: "ami-amd".into(),
        state: state.into(),
        launch_time_unix: 1_700_000_123,
        subnet_id: Some("subnet-a1".into()),
        security_group_ids: vec!["sg-1".into()],
        private_dns_name: None,
        tags: tags(&[
            (labels::NODE_POOL, "default"),
            (NODE_CLAIM_TAG, "default-abcde"),
            (NODE_CLASS_TAG, "default"),
            (EKS_CLUSTER_NAME_TAG, cluster),
        ])
        .into_iter()
        .chain([(
            format!("kubernetes.io/cluster/{cluster}"),
            "owned".to_owned(),
        )])
        .collect(),
    }
}

#[tokio::test]
async fn get_maps_the_instance_and_missing_or_terminated_is_not_found() {
    let f = Fixture::new();
    f.ec2.with(|s| {
        for i in [
            instance("i-1", "running", "prod"),
            instance("i-2", "terminated", "prod"),
        ] {
            s.instances.insert(i.id.clone(), i);
        }
    });
    let got = f
        .provider
        .get(&aws_provider_id("us-east-1a", "i-1"))
        .await
        .unwrap();
    assert_eq!(got.provider_id, "aws:///us-east-1a/i-1");
    assert_eq!(got.capacity_type, "spot");
    assert_eq!(got.image_id, "ami-amd");
    assert_eq!(got.launch_time_unix, 1_700_000_123);
    assert_eq!(got.node_claim.as_deref(), Some("default-abcde"));
    assert_eq!(got.node_pool.as_deref(), Some("default"));
    assert_eq!(got.capacity.0[CPU], 2000);
    assert_eq!(got.labels[labels::ARCH], "amd64");
    assert_eq!(got.labels[labels::INSTANCE_TYPE], "m5.large");
    assert_eq!(got.labels[labels::aws::INSTANCE_FAMILY], "m5");
    assert_eq!(got.labels[labels::CAPACITY_TYPE], "spot");
    assert_eq!(got.labels[labels::NODE_POOL], "default");

    for id in [
        "aws:///us-east-1a/i-2",
        "aws:///us-east-1a/i-404",
        "not-a-provider-id",
    ] {
        let err = f.provider.get(id).await.unwrap_err();
        assert!(err.is_not_found(), "{id}: {err:?}");
    }
}

#[tokio::test]
async fn delete_terminates_and_maps_gone_instances_to_not_found() {
    let f = Fixture::new();
    f.ec2.with(|s| {
        for i in [
            instance("i-1", "running", "prod"),
            instance("i-2", "terminated", "prod"),
        ] {
            s.instances.insert(i.id.clone(), i);
        }
    });
    f.provider.delete("aws:///us-east-1a/i-1").await.unwrap();
    assert_eq!(f.ec2.count("TerminateInstances"), 1);
    assert_eq!(
        f.ec2.with(|s| s.instances["i-1"].state.clone()),
        "shutting-down"
    );
    // Asked again while it shuts down: gone, without another TerminateInstances.
    let err = f
        .provider
        .delete("aws:///us-east-1a/i-1")
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert_eq!(f.ec2.count("TerminateInstances"), 1);
    for id in ["aws:///us-east-1a/i-2", "aws:///us-east-1a/i-404"] {
        let err = f.provider.delete(id).await.unwrap_err();
        assert!(err.is_not_found(), "{id}: {err:?}");
    }
}

#[tokio::test]
async fn list_asks_for_this_clusters_live_karpenter_instances() {
    let f = Fixture::new();
    f.ec2.with(|s| {
        for i in [
            instance("i-1", "running", "prod"),
            instance("i-2", "terminated", "prod"),
            instance("i-3", "running", "staging"),
            instance("i-4", "pending", "prod"),
        ] {
            s.instances.insert(i.id.clone(), i);
        }
        let mut unmanaged = instance("i-5", "running", "prod");
        unmanaged.tags.remove(labels::NODE_POOL);
        s.instances.insert("i-5".into(), unmanaged);
        // Launched by Karpenter 0.3x: no eks:eks-cluster-name tag yet, still this cluster's.
        let mut old = instance("i-6", "running", "prod");
        old.tags.remove(EKS_CLUSTER_NAME_TAG);
        old.tags
            .insert("karpenter.sh/managed-by".into(), "prod".into());
        s.instances.insert("i-6".into(), old);
    });
    let listed = f.provider.list().await.unwrap();
    let ids: Vec<&str> = listed.iter().map(|i| i.instance_id()).collect();
    assert_eq!(ids, ["i-1", "i-4", "i-6"]);
    let queries = f.ec2.with(|s| s.instance_queries.clone());
    assert_eq!(
        queries,
        vec![InstanceQuery::Filters(vec![
            Filter::new("tag-key", ["karpenter.sh/nodepool"]),
            Filter::new("tag-key", ["kubernetes.io/cluster/prod"]),
            Filter::new(
                "instance-state-name",
                ["pending", "running", "stopping", "stopped", "shutting-down"]
            ),
        ])]
    );
}

#[tokio::test]
async fn drift_reports_ami_subnet_and_security_group_changes() {
    let f = Fixture::new();
    let launched = |i: &Instance| crate::provider::LaunchedInstance {
        provider_id: aws_provider_id(&i.zone, &i.id),
        instance_type: i.instance_type.clone(),
        zone: i.zone.clone(),
        capacity_type: "spot".into(),
        image_id: i.image_id.clone(),
        capacity: Resources::ZERO,
        labels: BTreeMap::new(),
        launch_time_unix: 0,
        node_claim: None,
        node_pool: Some("default".into()),
    };
    let fine = instance("i-1", "running", "prod");
    let mut old_ami = instance("i-2", "running", "prod");
    old_ami.image_id = "ami-old".into();
    let mut old_subnet = instance("i-3", "running", "prod");
    old_subnet.subnet_id = Some("subnet-x".into());
    let mut extra_sg = instance("i-4", "running", "prod");
    extra_sg.security_group_ids.push("sg-2".into());
    let mut unowned = instance("i-5", "running", "prod");
    unowned.tags.remove(NODE_CLASS_TAG);
    unowned.image_id = "ami-old".into();
    // What moto reports for a fleet instance: no security groups, no image.
    let mut unreported = instance("i-6", "running", "prod");
    unreported.security_group_ids.clear();
    unreported.image_id.clear();
    let all = [fine, old_ami, old_subnet, extra_sg, unowned, unreported];
    f.ec2.with(|s| {
        for i in &all {
            s.instances.insert(i.id.clone(), i.clone());
        }
    });
    let views: Vec<_> = all.iter().map(launched).collect();
    let drift = |i: usize| f.provider.is_drifted(&views[i]);
    assert_eq!(drift(0).await.unwrap(), None);
    let d = drift(1).await.unwrap().unwrap();
    assert_eq!(d.reason(), "AMIDrift");
    assert!(d.detail().contains("ami-old"), "{d}");
    assert_eq!(drift(2).await.unwrap().unwrap().reason(), "SubnetDrift");
    assert_eq!(
        drift(3).await.unwrap().unwrap().reason(),
        "SecurityGroupDrift"
    );
    assert_eq!(drift(4).await.unwrap(), None);
    assert_eq!(
        drift(5).await.unwrap(),
        None,
        "facts EC2 did not report are unknown, not drifted"
    );
}

fn untagged(id: &str, instance_type: &str, launched: i64) -> Instance {
    let mut i = instance(id, "running", "prod");
    i.tags.remove(NODE_CLAIM_TAG);
    i.instance_type = instance_type.into();
    i.launch_time_unix = launched;
    i
}

#[tokio::test]
async fn find_launched_returns_the_claims_tagged_instance_without_tagging_anything() {
    let f = Fixture::new();
    f.ec2.with(|s| {
        let i = instance("i-1", "running", "prod");
        s.instances.insert(i.id.clone(), i);
        let u = untagged("i-2", "m5.large", 1_700_000_200);
        s.instances.insert(u.id.clone(), u);
    });
    let claim = super::tests::claim(&["m5.large"], &["spot"]);
    let found = f.provider.find_launched(&claim, 0).await.unwrap();
    assert_eq!(
        found.map(|i| i.provider_id),
        Some(aws_provider_id("us-east-1a", "i-1"))
    );
    assert_eq!(f.ec2.count("CreateTags"), 0);
}

#[tokio::test]
async fn find_launched_adopts_an_untagged_instance_of_the_claims_shape_once() {
    let f = Fixture::new();
    f.ec2.with(|s| {
        for i in [
            // Too old to be this claim's launch.
            untagged("i-old", "m5.large", 1_699_999_000),
            // Not among the claim's instance types.
            untagged("i-other-type", "c5.large", 1_700_000_200),
            untagged("i-fits", "m5.large", 1_700_000_200),
        ] {
            s.instances.insert(i.id.clone(), i);
        }
    });
    let mut first = super::tests::claim(&["m5.large"], &["spot"]);
    first.name = "default-aaaaa".into();
    let found = f
        .provider
        .find_launched(&first, 1_700_000_000)
        .await
        .unwrap()
        .expect("adopted");
    assert_eq!(found.instance_id(), "i-fits");
    assert_eq!(found.node_claim.as_deref(), Some("default-aaaaa"));
    assert_eq!(
        f.ec2
            .with(|s| s.instances["i-fits"].tags.get(NODE_CLAIM_TAG).cloned())
            .as_deref(),
        Some("default-aaaaa")
    );
    // A second claim of the same shape finds nothing left to adopt.
    let mut second = first.clone();
    second.name = "default-bbbbb".into();
    assert_eq!(
        f.provider
            .find_launched(&second, 1_700_000_000)
            .await
            .unwrap(),
        None
    );
    // A claim that allows only on-demand cannot adopt a spot instance.
    f.ec2.with(|s| {
        let u = untagged("i-spot", "m5.large", 1_700_000_300);
        s.instances.insert(u.id.clone(), u);
    });
    let on_demand = super::tests::claim(&["m5.large"], &["on-demand"]);
    assert_eq!(
        f.provider
            .find_launched(&on_demand, 1_700_000_000)
            .await
            .unwrap(),
        None
    );
}

#[tokio::test(start_paused = true)]
async fn find_launched_leaves_alone_the_instance_of_a_launch_in_flight() {
    let f = Fixture::new();
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    f.ec2.with(|s| s.fleet_gate = Some(gate.clone()));
    let mut launching = super::tests::claim(&["m5.large"], &["spot"]);
    launching.name = "default-aaaaa".into();
    let mut looking = launching.clone();
    looking.name = "default-bbbbb".into();
    let launch = f.provider.create(&launching);
    let look = async {
        // EC2 has launched the instance (listed, not yet tagged) and not answered yet.
        while f.ec2.count("CreateFleet") == 0 {
            tokio::task::yield_now().await;
        }
        let find = f.provider.find_launched(&looking, 0);
        tokio::pin!(find);
        let early = tokio::time::timeout(std::time::Duration::from_secs(5), &mut find).await;
        assert!(
            early.is_err(),
            "looking for a lost launch must wait for the launch in flight: {early:?}"
        );
        gate.add_permits(1);
        find.await
    };
    let (launched, found) = tokio::join!(launch, look);
    let launched = launched.expect("launched");
    assert_eq!(launched.node_claim.as_deref(), Some("default-aaaaa"));
    assert_eq!(
        found.expect("find answers"),
        None,
        "the new instance is the launching claim's"
    );
    let tag = f.ec2.with(|s| {
        s.instances[launched.instance_id()]
            .tags
            .get(NODE_CLAIM_TAG)
            .cloned()
    });
    assert_eq!(tag.as_deref(), Some("default-aaaaa"));
}

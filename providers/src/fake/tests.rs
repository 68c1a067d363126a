use super::*;
use karpenter_core::requirements::{Requirement, Requirements};
use karpenter_core::resources::{CPU, Resources};

fn claim(
    name: &str,
    options: &[&str],
    zone: Option<&str>,
    capacity_type: Option<&str>,
) -> NodeClaimRequest {
    let mut requirements = Requirements::new();
    if let Some(z) = zone {
        requirements.add(labels::ZONE, Requirement::single(z));
    }
    if let Some(ct) = capacity_type {
        requirements.add(labels::CAPACITY_TYPE, Requirement::single(ct));
    }
    NodeClaimRequest {
        name: name.to_string(),
        node_pool: "default".to_string(),
        node_class: "default".to_string(),
        requirements,
        instance_type_options: options.iter().map(|s| s.to_string()).collect(),
        requests: Resources::ZERO,
        labels: BTreeMap::from([("team".to_string(), "a".to_string())]),
        taints: vec![],
        startup_taints: Vec::new(),
    }
}

fn pool() -> NodePoolRef {
    NodePoolRef {
        name: "default".into(),
        node_class: "default".into(),
    }
}

#[tokio::test]
async fn default_instance_types_come_from_the_catalog() {
    let p = FakeCloudProvider::new();
    let types = p.instance_types(&pool()).await.unwrap();
    let names: Vec<_> = types.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names.len(), DEFAULT_INSTANCE_TYPES.len());
    let m5 = types.iter().find(|t| t.name == "m5.large").unwrap();
    assert_eq!(m5.allocatable().0[CPU], 1930);
    assert_eq!(p.calls(), vec![Call::InstanceTypes { node_pool: pool() }]);
    assert_eq!(p.name(), "fake");
}

#[tokio::test]
async fn launches_the_cheapest_compatible_offering_with_deterministic_ids() {
    let p = FakeCloudProvider::new();
    let c = claim(
        "default-a",
        &["c5.large", "m5.large"],
        Some("us-east-1b"),
        Some("on-demand"),
    );
    let first = p.create(&c).await.unwrap();
    assert_eq!(first.provider_id, "aws:///us-east-1b/i-00000001");
    assert_eq!(first.instance_id(), "i-00000001");
    assert_eq!(first.instance_type, "c5.large");
    assert_eq!(
        (first.zone.as_str(), first.capacity_type.as_str()),
        ("us-east-1b", "on-demand")
    );
    assert_eq!(first.labels[labels::INSTANCE_TYPE], "c5.large");
    assert_eq!(first.labels[labels::ZONE], "us-east-1b");
    assert_eq!(first.labels[labels::CAPACITY_TYPE], "on-demand");
    assert_eq!(first.labels[labels::NODE_POOL], "default");
    assert_eq!(first.labels["team"], "a");
    assert_eq!(first.node_claim.as_deref(), Some("default-a"));
    assert_eq!(first.launch_time_unix, FAKE_EPOCH);
    assert_eq!(first.image_id, FAKE_IMAGE_ID);

    // Spot wins when the claim allows it; the cheapest zone-agnostic pick is deterministic.
    p.set_now(FAKE_EPOCH + 60);
    let second = p
        .create(&claim("default-b", &["c5.large", "m5.large"], None, None))
        .await
        .unwrap();
    assert_eq!(second.provider_id, "aws:///us-east-1a/i-00000002");
    assert_eq!(second.capacity_type, "spot");
    assert_eq!(second.launch_time_unix, FAKE_EPOCH + 60);
    assert_eq!(p.list().await.unwrap(), vec![first.clone(), second]);
    assert_eq!(p.get(&first.provider_id).await.unwrap(), first);
}

#[tokio::test]
async fn options_must_fit_requests_and_requirements() {
    let p = FakeCloudProvider::new();
    let mut c = claim(
        "big",
        &["m5.large", "m5.xlarge", "m5.2xlarge"],
        None,
        Some("on-demand"),
    );
    c.requests = Resources::from_pairs(&[(CPU, 3000)]);
    assert_eq!(p.create(&c).await.unwrap().instance_type, "m5.xlarge");

    let mut arm = claim("arm", &[], None, None);
    arm.requirements
        .add(labels::ARCH, Requirement::single("arm64"));
    assert_eq!(p.create(&arm).await.unwrap().instance_type, "m6g.large");

    let mut gpu = claim("gpu", &[], None, None);
    gpu.requirements
        .add(labels::aws::INSTANCE_GPU_COUNT, Requirement::exists());
    assert_eq!(p.create(&gpu).await.unwrap().instance_type, "g5.xlarge");

    let nowhere = claim("nowhere", &["m5.large"], Some("eu-west-1a"), None);
    let err = p.create(&nowhere).await.unwrap_err();
    assert!(
        matches!(&err, ProviderError::InsufficientCapacity { offerings, .. } if offerings.is_empty()),
        "{err}"
    );
}

#[tokio::test]
async fn records_every_call() {
    let p = FakeCloudProvider::new();
    let c = claim("a", &["m5.large"], None, None);
    let i = p.create(&c).await.unwrap();
    p.get(&i.provider_id).await.unwrap();
    p.list().await.unwrap();
    p.is_drifted(&i).await.unwrap();
    p.delete(&i.provider_id).await.unwrap();
    assert_eq!(
        p.calls(),
        vec![
            Call::Create { claim: Box::new(c) },
            Call::Get {
                id: i.provider_id.clone()
            },
            Call::List,
            Call::IsDrifted {
                id: i.provider_id.clone()
            },
            Call::Delete {
                id: i.provider_id.clone()
            },
        ]
    );
    p.clear_calls();
    assert!(p.calls().is_empty());
}

#[tokio::test]
async fn injected_create_errors_fire_once_each() {
    let p = FakeCloudProvider::new();
    p.fail_next_create(ProviderError::Throttled {
        operation: "CreateFleet".into(),
    });
    p.fail_next_create(ProviderError::Create {
        reason: "bad launch template".into(),
    });
    let c = claim("a", &["m5.large"], None, None);
    assert_eq!(
        p.create(&c).await.unwrap_err(),
        ProviderError::Throttled {
            operation: "CreateFleet".into()
        }
    );
    assert!(matches!(
        p.create(&c).await.unwrap_err(),
        ProviderError::Create { .. }
    ));
    assert!(p.create(&c).await.is_ok());
    assert_eq!(p.instances().len(), 1);
}

#[tokio::test]
async fn insufficient_capacity_falls_back_then_fails_when_exhausted() {
    let p = FakeCloudProvider::new();
    p.insufficient_capacity_for("c5.large", "us-east-1b", "on-demand");
    let c = claim(
        "a",
        &["c5.large", "m5.large"],
        Some("us-east-1b"),
        Some("on-demand"),
    );
    assert_eq!(p.create(&c).await.unwrap().instance_type, "m5.large");

    // The offering that failed is now reported unavailable, as Karpenter's ICE cache does.
    let types = p.instance_types(&pool()).await.unwrap();
    let c5 = types.iter().find(|t| t.name == "c5.large").unwrap();
    for o in &c5.offerings {
        let expected = !(o.zone == "us-east-1b" && o.capacity_type == "on-demand");
        assert_eq!(o.available, expected, "{o:?}");
    }

    p.insufficient_capacity_for("m5.large", "us-east-1b", "on-demand");
    let err = p.create(&c).await.unwrap_err();
    match &err {
        ProviderError::InsufficientCapacity { offerings, .. } => assert_eq!(
            offerings,
            &vec![(
                "m5.large".to_string(),
                "us-east-1b".to_string(),
                "on-demand".to_string()
            )]
        ),
        other => panic!("unexpected {other}"),
    }
    assert!(err.is_retryable());

    p.clear_insufficient_capacity();
    assert_eq!(p.create(&c).await.unwrap().instance_type, "c5.large");
}

#[tokio::test]
async fn every_option_out_of_capacity_lists_them_all() {
    let p = FakeCloudProvider::new();
    p.insufficient_capacity_for("m5.large", "us-east-1a", "spot");
    p.insufficient_capacity_for("m5.large", "us-east-1a", "on-demand");
    let c = claim("a", &["m5.large"], Some("us-east-1a"), None);
    let err = p.create(&c).await.unwrap_err();
    let ProviderError::InsufficientCapacity { offerings, message } = err else {
        panic!()
    };
    assert_eq!(offerings.len(), 2);
    assert!(message.contains("out of capacity"), "{message}");
}

#[tokio::test]
async fn drift_and_not_found() {
    let p = FakeCloudProvider::new();
    let i = p
        .create(&claim("a", &["m5.large"], None, None))
        .await
        .unwrap();
    assert_eq!(p.is_drifted(&i).await.unwrap(), None);
    p.set_drifted(&i.provider_id, DriftReason::Ami("ami-old".into()));
    assert_eq!(
        p.is_drifted(&i).await.unwrap(),
        Some(DriftReason::Ami("ami-old".into()))
    );

    p.delete(&i.provider_id).await.unwrap();
    assert!(p.get(&i.provider_id).await.unwrap_err().is_not_found());
    assert!(p.is_drifted(&i).await.unwrap_err().is_not_found());
    assert_eq!(
        p.delete("aws:///us-east-1a/i-404").await.unwrap_err(),
        ProviderError::NotFound {
            provider_id: "aws:///us-east-1a/i-404".into()
        }
    );
    assert!(p.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn explicit_instance_types_and_inserted_instances() {
    let m5 = crate::aws::instance_types::instance_type(
        Catalog::embedded().get("m5.large").unwrap(),
        &InstanceTypeSettings::default(),
    );
    let p = FakeCloudProvider::with_instance_types(vec![m5.clone()]);
    assert_eq!(p.instance_types(&pool()).await.unwrap(), vec![m5]);
    let err = p
        .create(&claim("a", &["c5.large"], None, None))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::InsufficientCapacity { .. }));
    p.set_instance_types(vec![]);
    assert!(p.instance_types(&pool()).await.unwrap().is_empty());

    let old = LaunchedInstance {
        provider_id: "aws:///us-east-1c/i-0leaked".into(),
        instance_type: "m5.large".into(),
        zone: "us-east-1c".into(),
        capacity_type: "spot".into(),
        image_id: FAKE_IMAGE_ID.into(),
        capacity: Resources::ZERO,
        labels: BTreeMap::new(),
        launch_time_unix: 0,
        node_claim: None,
        node_pool: Some("default".into()),
    };
    p.insert_instance(old.clone());
    assert_eq!(p.list().await.unwrap(), vec![old]);
}

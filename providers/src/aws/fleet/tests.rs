//! Unit tests of the pure fleet parts: request planning, answer interpretation, the cache.

use super::*;
use crate::aws::ec2api::{FleetError, FleetInstance, FleetOverrideRef};
use karpenter_core::instance_type::Offering;
use karpenter_core::requirements::{Operator, Requirement, Requirements};

pub(super) fn offering(zone: &str, ct: &str, price: f64) -> Offering {
    Offering {
        zone: zone.into(),
        capacity_type: ct.into(),
        price,
        available: true,
    }
}

pub(super) fn itype(name: &str, offerings: Vec<Offering>) -> InstanceType {
    InstanceType {
        name: name.into(),
        requirements: Requirements::new(),
        capacity: Resources::from_pairs(&[(0, 2000)]),
        overhead: Resources::ZERO,
        offerings,
    }
}

/// Both capacity types in two zones; on-demand price `od`, spot 40% of it.
pub(super) fn both(name: &str, od: f64) -> InstanceType {
    itype(
        name,
        ["us-east-1a", "us-east-1b"]
            .iter()
            .flat_map(|z| [offering(z, "on-demand", od), offering(z, "spot", od * 0.4)])
            .collect(),
    )
}

pub(super) fn claim(capacity_types: &[&str]) -> NodeClaimRequest {
    let mut requirements = Requirements::new();
    if !capacity_types.is_empty() {
        requirements.add(
            labels::CAPACITY_TYPE,
            Requirement::new(Operator::In, capacity_types).unwrap(),
        );
    }
    NodeClaimRequest {
        name: "default-abcde".into(),
        node_pool: "default".into(),
        node_class: "default".into(),
        requirements,
        instance_type_options: Vec::new(),
        requests: Resources::ZERO,
        labels: BTreeMap::new(),
        taints: Vec::new(),
        startup_taints: Vec::new(),
    }
}

pub(super) fn subnets() -> BTreeMap<String, String> {
    [("us-east-1a", "subnet-a"), ("us-east-1b", "subnet-b")]
        .into_iter()
        .map(|(z, s)| (z.to_owned(), s.to_owned()))
        .collect()
}

pub(super) fn templates() -> Vec<FleetLaunchTemplate> {
    vec![
        FleetLaunchTemplate {
            name: "lt-amd64".into(),
            image_id: "ami-amd64".into(),
            instance_types: vec!["m5.large".into(), "c5.large".into()],
        },
        FleetLaunchTemplate {
            name: "lt-arm64".into(),
            image_id: "ami-arm64".into(),
            instance_types: vec!["m6g.large".into()],
        },
    ]
}

pub(super) struct Fixture {
    pub types: Vec<InstanceType>,
    pub templates: Vec<FleetLaunchTemplate>,
    pub subnets: BTreeMap<String, String>,
    pub user_tags: BTreeMap<String, String>,
    pub cache: UnavailableOfferings,
}

impl Fixture {
    pub fn new() -> Self {
        Fixture {
            types: vec![
                both("m5.large", 0.096),
                both("c5.large", 0.085),
                both("m6g.large", 0.077),
            ],
            templates: templates(),
            subnets: subnets(),
            user_tags: BTreeMap::from([
                ("team".to_owned(), "infra".to_owned()),
                (NODE_CLAIM_TAG.to_owned(), "hijack".to_owned()),
            ]),
            cache: UnavailableOfferings::new(),
        }
    }

    pub fn input(&self) -> FleetPlanInput<'_> {
        FleetPlanInput {
            cluster_name: "prod",
            instance_types: &self.types,
            launch_templates: &self.templates,
            subnets: &self.subnets,
            user_tags: &self.user_tags,
            context: None,
            unavailable: &self.cache,
            now: 1_000,
        }
    }
}

fn override_list(plan: &FleetPlan) -> Vec<(String, String, String, String)> {
    plan.request
        .launch_template_configs
        .iter()
        .flat_map(|c| {
            c.overrides.iter().map(|o| {
                (
                    c.launch_template_name.clone(),
                    o.instance_type.clone(),
                    o.availability_zone.clone(),
                    o.subnet_id.clone(),
                )
            })
        })
        .collect()
}

#[test]
fn prefers_spot_when_allowed_and_groups_by_template_cheapest_first() {
    let f = Fixture::new();
    let plan = plan_fleet(&claim(&["spot", "on-demand"]), &f.input()).unwrap();
    let r = &plan.request;
    assert_eq!(r.capacity_type, CapacityType::Spot);
    assert_eq!(r.target_capacity, 1);
    assert_eq!(r.spot_allocation_strategy, "price-capacity-optimized");
    assert_eq!(r.on_demand_allocation_strategy, "lowest-price");
    assert_eq!(r.context, None);
    let names: Vec<_> = r
        .launch_template_configs
        .iter()
        .map(|c| (c.launch_template_name.as_str(), c.version.as_str()))
        .collect();
    assert_eq!(names, [("lt-amd64", "$Latest"), ("lt-arm64", "$Latest")]);
    let s = |lt: &str, t: &str, z: &str, sn: &str| (lt.into(), t.into(), z.into(), sn.into());
    assert_eq!(
        override_list(&plan),
        vec![
            s("lt-amd64", "c5.large", "us-east-1a", "subnet-a"),
            s("lt-amd64", "c5.large", "us-east-1b", "subnet-b"),
            s("lt-amd64", "m5.large", "us-east-1a", "subnet-a"),
            s("lt-amd64", "m5.large", "us-east-1b", "subnet-b"),
            s("lt-arm64", "m6g.large", "us-east-1a", "subnet-a"),
            s("lt-arm64", "m6g.large", "us-east-1b", "subnet-b"),
        ]
    );
    assert!(
        r.launch_template_configs
            .iter()
            .flat_map(|c| &c.overrides)
            .all(|o| o.priority.is_none())
    );
    assert_eq!(plan.images["lt-arm64"], "ami-arm64");
}

#[test]
fn on_demand_when_only_on_demand_allowed_or_spot_exhausted() {
    let mut f = Fixture::new();
    let plan = plan_fleet(&claim(&["on-demand"]), &f.input()).unwrap();
    assert_eq!(plan.request.capacity_type, CapacityType::OnDemand);
    // Every spot offering unavailable (cache or flag): fall back to on-demand.
    for it in &mut f.types {
        for o in &mut it.offerings {
            if o.capacity_type == "spot" && o.zone == "us-east-1a" {
                o.available = false;
            }
        }
    }
    for t in ["m5.large", "c5.large", "m6g.large"] {
        f.cache
            .mark_unavailable((t.into(), "us-east-1b".into(), "spot".into()), 990);
    }
    let plan = plan_fleet(&claim(&["spot", "on-demand"]), &f.input()).unwrap();
    assert_eq!(plan.request.capacity_type, CapacityType::OnDemand);
    assert_eq!(override_list(&plan).len(), 6);
    // Spot only and none usable: insufficient capacity with no offerings.
    let err = plan_fleet(&claim(&["spot"]), &f.input()).unwrap_err();
    assert!(
        matches!(err, ProviderError::InsufficientCapacity { ref offerings, .. } if offerings.is_empty())
    );
}

#[test]
fn no_capacity_type_requirement_allows_both() {
    let f = Fixture::new();
    let plan = plan_fleet(&claim(&[]), &f.input()).unwrap();
    assert_eq!(plan.request.capacity_type, CapacityType::Spot);
}

#[test]
fn filters_zones_options_subnets_and_cached_offerings() {
    let mut f = Fixture::new();
    f.subnets.remove("us-east-1b");
    f.cache
        .mark_unavailable(("c5.large".into(), "us-east-1a".into(), "spot".into()), 999);
    let mut c = claim(&["spot"]);
    c.instance_type_options = vec!["c5.large".into(), "m5.large".into()];
    let plan = plan_fleet(&c, &f.input()).unwrap();
    let got: Vec<_> = override_list(&plan)
        .into_iter()
        .map(|(_, t, z, _)| (t, z))
        .collect();
    assert_eq!(got, [("m5.large".into(), "us-east-1a".into())]);
    // Expired cache entries no longer filter.
    let mut input = f.input();
    input.now = 999 + UNAVAILABLE_OFFERINGS_TTL_SECS;
    assert_eq!(override_list(&plan_fleet(&c, &input).unwrap()).len(), 2);
    // Zone requirement.
    let mut c = claim(&["spot"]);
    c.requirements.add(
        labels::ZONE,
        Requirement::new(Operator::In, &["us-east-1b"]).unwrap(),
    );
    let f = Fixture::new();
    let zones: BTreeSet<_> = override_list(&plan_fleet(&c, &f.input()).unwrap())
        .into_iter()
        .map(|(_, _, z, _)| z)
        .collect();
    assert_eq!(zones, BTreeSet::from(["us-east-1b".to_owned()]));
}

#[test]
fn caps_overrides_at_sixty_keeping_the_cheapest() {
    let mut f = Fixture::new();
    f.types = (0..40)
        .map(|i| both(&format!("t{i:02}.large"), 1.0 - f64::from(i) * 0.01))
        .collect();
    f.templates = vec![FleetLaunchTemplate {
        name: "lt".into(),
        image_id: "ami-1".into(),
        instance_types: f.types.iter().map(|t| t.name.clone()).collect(),
    }];
    let plan = plan_fleet(&claim(&["spot"]), &f.input()).unwrap();
    let o = override_list(&plan);
    assert_eq!(o.len(), MAX_OVERRIDES);
    assert_eq!(o[0].1, "t39.large");
    // The 10 most expensive types (t00..t09) are dropped.
    assert!(o.iter().all(|(_, t, _, _)| t.as_str() >= "t10.large"));
}

#[test]
fn not_ready_without_subnets_or_templates() {
    let mut f = Fixture::new();
    f.templates.clear();
    assert!(matches!(
        plan_fleet(&claim(&["spot"]), &f.input()),
        Err(ProviderError::NodeClassNotReady { .. })
    ));
    let mut f = Fixture::new();
    f.subnets.clear();
    assert!(matches!(
        plan_fleet(&claim(&["spot"]), &f.input()),
        Err(ProviderError::NodeClassNotReady { .. })
    ));
}

#[test]
fn tags_karpenter_wins_over_user_tags_on_three_resource_types() {
    let f = Fixture::new();
    let mut input = f.input();
    input.context = Some("ctx-1");
    let plan = plan_fleet(&claim(&["spot"]), &input).unwrap();
    assert_eq!(plan.request.context.as_deref(), Some("ctx-1"));
    let kinds: Vec<_> = plan
        .request
        .tag_specifications
        .iter()
        .map(|t| t.resource_type.as_str())
        .collect();
    assert_eq!(kinds, ["instance", "volume", "fleet"]);
    let tags = &plan.request.tag_specifications[0].tags;
    // No claim tag (the user's "hijack" value is dropped too): it is written after launch.
    let expect = [
        ("team", "infra"),
        ("karpenter.sh/nodepool", "default"),
        ("karpenter.k8s.aws/ec2nodeclass", "default"),
        ("kubernetes.io/cluster/prod", "owned"),
        ("eks:eks-cluster-name", "prod"),
    ];
    assert_eq!(tags.len(), expect.len());
    for (k, v) in expect {
        assert_eq!(tags[k], v, "{k}");
    }
}

pub(super) fn ice(code: &str, t: &str, z: &str) -> FleetError {
    FleetError {
        code: code.into(),
        message: "no capacity".into(),
        capacity_type: None,
        source: FleetOverrideRef {
            launch_template_name: Some("lt-amd64".into()),
            instance_type: Some(t.into()),
            availability_zone: Some(z.into()),
            subnet_id: None,
        },
    }
}

#[test]
fn instance_wins_and_ice_errors_are_still_reported() {
    let f = Fixture::new();
    let c = claim(&["spot"]);
    let plan = plan_fleet(&c, &f.input()).unwrap();
    let outcome = FleetOutcome {
        fleet_id: Some("fleet-1".into()),
        instances: vec![FleetInstance {
            instance_ids: vec!["i-0abc".into()],
            instance_type: Some("m5.large".into()),
            availability_zone: Some("us-east-1b".into()),
            capacity_type: None,
            source: FleetOverrideRef {
                launch_template_name: Some("lt-amd64".into()),
                ..Default::default()
            },
        }],
        errors: vec![ice(
            "InsufficientInstanceCapacity",
            "c5.large",
            "us-east-1a",
        )],
    };
    let got = interpret_outcome(&c, &plan, &outcome, 1_234).unwrap();
    let i = &got.instance;
    assert_eq!(i.provider_id, "aws:///us-east-1b/i-0abc");
    assert_eq!(i.instance_id(), "i-0abc");
    assert_eq!(
        (i.instance_type.as_str(), i.zone.as_str()),
        ("m5.large", "us-east-1b")
    );
    assert_eq!(i.capacity_type, "spot");
    assert_eq!(i.image_id, "ami-amd64");
    assert_eq!(i.capacity.cpu_millis(), 2000);
    assert_eq!(i.launch_time_unix, 1_234);
    assert_eq!(i.labels[labels::CAPACITY_TYPE], "spot");
    assert_eq!(i.node_claim.as_deref(), Some("default-abcde"));
    assert_eq!(
        got.unavailable,
        [("c5.large".into(), "us-east-1a".into(), "spot".into())]
    );
}

#[test]
fn no_instance_maps_errors_like_combine_fleet_errors() {
    let f = Fixture::new();
    let c = claim(&["spot"]);
    let plan = plan_fleet(&c, &f.input()).unwrap();
    let with = |errors: Vec<FleetError>| FleetOutcome {
        errors,
        ..Default::default()
    };
    let all_ice = with(vec![
        ice("InsufficientInstanceCapacity", "c5.large", "us-east-1a"),
        ice("UnfulfillableCapacity", "m5.large", "us-east-1b"),
        ice("InsufficientInstanceCapacity", "c5.large", "us-east-1a"),
    ]);
    match interpret_outcome(&c, &plan, &all_ice, 0) {
        Err(ProviderError::InsufficientCapacity { offerings, message }) => {
            assert_eq!(offerings.len(), 2, "deduplicated");
            assert!(message.contains("UnfulfillableCapacity"));
        }
        other => panic!("{other:?}"),
    }
    let throttled = with(vec![ice("RequestLimitExceeded", "c5.large", "us-east-1a")]);
    let err = interpret_outcome(&c, &plan, &throttled, 0).unwrap_err();
    assert!(matches!(err, ProviderError::Throttled { .. }) && err.is_retryable());
    let bad = with(vec![
        ice("InsufficientInstanceCapacity", "c5.large", "us-east-1a"),
        ice(
            "InvalidLaunchTemplateName.NotFoundException",
            "m5.large",
            "us-east-1a",
        ),
    ]);
    let err = interpret_outcome(&c, &plan, &bad, 0).unwrap_err();
    assert!(
        matches!(err, ProviderError::Create { ref reason } if reason.contains("InvalidLaunchTemplateName"))
    );
    assert!(!err.is_retryable());
    // Karpenter treats "no instance, no error" as insufficient capacity too.
    assert!(matches!(
        interpret_outcome(&c, &plan, &with(Vec::new()), 0),
        Err(ProviderError::InsufficientCapacity { .. })
    ));
}

#[test]
fn call_errors_map_to_retryable_or_final() {
    let t = map_call_error(Ec2Error::Throttled {
        operation: "CreateFleet".into(),
        code: "RequestLimitExceeded".into(),
        message: String::new(),
    });
    assert_eq!(
        t,
        ProviderError::Throttled {
            operation: "CreateFleet".into()
        }
    );
    let a = map_call_error(Ec2Error::Api {
        operation: "CreateFleet".into(),
        code: "UnauthorizedOperation".into(),
        message: "no".into(),
    });
    assert!(!a.is_retryable());
    let n = map_call_error(Ec2Error::Transport {
        operation: "CreateFleet".into(),
        message: "timeout".into(),
    });
    assert!(n.is_retryable());
}

#[test]
fn cache_expires_after_ttl_and_marks_capacity_types() {
    let mut c = UnavailableOfferings::new();
    assert!(c.is_empty());
    c.mark_unavailable(("m5.large".into(), "z1".into(), "spot".into()), 100);
    assert!(c.is_unavailable("m5.large", "z1", "spot", 100));
    assert!(c.is_unavailable("m5.large", "z1", "spot", 279));
    assert!(!c.is_unavailable("m5.large", "z1", "spot", 280));
    assert!(!c.is_unavailable("m5.large", "z1", "on-demand", 100));
    assert!(!c.is_unavailable("m5.large", "z2", "spot", 100));
    // Marking again extends.
    c.mark_unavailable(("m5.large".into(), "z1".into(), "spot".into()), 200);
    assert!(c.is_unavailable("m5.large", "z1", "spot", 379));
    c.mark_capacity_type_unavailable("spot", 300);
    assert!(c.is_unavailable("c5.large", "z9", "spot", 479));
    assert!(!c.is_unavailable("c5.large", "z9", "on-demand", 300));
    assert_eq!(c.len(), 2);
    c.evict_expired(400);
    assert_eq!(c.len(), 1);
    c.evict_expired(480);
    assert!(c.is_empty());
    let short = UnavailableOfferings::with_ttl(5);
    assert_eq!(short, {
        let mut s = UnavailableOfferings::with_ttl(5);
        s.evict_expired(0);
        s
    });
}

#[test]
fn claims_of_the_same_shape_send_identical_fleet_requests_so_the_batcher_merges_them() {
    let f = Fixture::new();
    let input = f.input();
    let mut other = claim(&["spot"]);
    other.name = "default-fghij".into();
    let a = plan_fleet(&claim(&["spot"]), &input).unwrap();
    let b = plan_fleet(&other, &input).unwrap();
    assert_eq!(a.request, b.request);
}

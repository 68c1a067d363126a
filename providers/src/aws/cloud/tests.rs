//! `AwsCloudProvider` over the in-memory fakes: node class resolution and status, instance
//! types, get/delete/list and drift. Launch tests are in `tests_launch.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use karpenter_core::labels;
use karpenter_core::requirements::{Operator, Requirement, Requirements};
use karpenter_core::resources::{CPU, Resources};

use super::fake_apis::{FakeEc2, FakeIam, FakeSsm};
use super::node_class::{CONDITION_READY, CONDITION_SUBNETS_READY};
use super::*;
use crate::aws::catalog::Catalog;
use crate::aws::ec2api::{InstanceTypeInfo, SpotPrice};
use crate::aws::nodeclass::{
    AmiSelectorTerm, EC2NodeClassSpec, EC2NodeClassStatus, SecurityGroupSelectorTerm,
    SubnetSelectorTerm,
};
use crate::aws::resolve::{Filter, Image, SecurityGroup, Subnet};
use crate::provider::CloudProvider;

pub(super) const START: i64 = 1_000_000;
pub(super) const AL2023_AMD: &str =
    "/aws/service/eks/optimized-ami/1.30/amazon-linux-2023/x86_64/standard/recommended/image_id";
pub(super) const AL2023_ARM: &str =
    "/aws/service/eks/optimized-ami/1.30/amazon-linux-2023/arm64/standard/recommended/image_id";
pub(super) const AL2023_GPU: &str =
    "/aws/service/eks/optimized-ami/1.30/amazon-linux-2023/x86_64/nvidia/recommended/image_id";
pub(super) const AL2_AMD: &str =
    "/aws/service/eks/optimized-ami/1.30/amazon-linux-2/recommended/image_id";

pub(super) fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn subnet(id: &str, zone: &str, ips: u32, tagged: bool) -> Subnet {
    Subnet {
        id: id.into(),
        zone: zone.into(),
        zone_id: format!("use1-az{}", &zone[zone.len() - 1..]),
        available_ips: ips,
        tags: if tagged {
            tags(&[("karpenter.sh/discovery", "prod")])
        } else {
            BTreeMap::new()
        },
    }
}

fn image(id: &str, arch: &str) -> Image {
    Image {
        id: id.into(),
        name: format!("{id}-name"),
        architecture: arch.into(),
        creation_date: "2024-10-01T00:00:00.000Z".into(),
        owner: "602401143452".into(),
        owner_alias: Some("amazon".into()),
        deprecated: false,
        tags: BTreeMap::new(),
    }
}

/// `DescribeInstanceTypes`' answer for a catalog type.
pub(super) fn info(name: &str) -> InstanceTypeInfo {
    let e = Catalog::embedded().get(name).unwrap().clone();
    InstanceTypeInfo {
        name: e.name,
        vcpu: e.vcpu,
        memory_mib: e.memory_mib,
        architectures: e.architectures,
        processor_manufacturer: e.processor_manufacturer,
        hypervisor: e.hypervisor,
        bare_metal: e.bare_metal,
        burstable: e.burstable,
        current_generation: e.current_generation,
        max_network_interfaces: e.max_network_interfaces,
        ipv4_per_interface: e.ipv4_per_interface,
        efa_supported: e.efa_supported,
        network_performance: e.network_performance,
        gpus: e.gpus,
        local_nvme_gb: e.local_nvme_gb,
        spot_supported: e.spot_supported,
    }
}

/// An AL2023-alias node class selecting the `karpenter.sh/discovery=prod` subnets and groups.
pub(super) fn node_class(name: &str) -> EC2NodeClass {
    let discovery = tags(&[("karpenter.sh/discovery", "prod")]);
    let mut nc = EC2NodeClass::new(
        name,
        EC2NodeClassSpec {
            subnet_selector_terms: vec![SubnetSelectorTerm {
                tags: discovery.clone(),
                id: None,
            }],
            security_group_selector_terms: vec![SecurityGroupSelectorTerm {
                tags: discovery,
                ..Default::default()
            }],
            ami_selector_terms: vec![AmiSelectorTerm {
                alias: Some("al2023@latest".into()),
                ..Default::default()
            }],
            role: Some("KarpenterNodeRole-prod".into()),
            tags: tags(&[("team", "infra")]),
            ..Default::default()
        },
    );
    nc.metadata.generation = Some(1);
    nc
}

/// Node classes by name; every pool finds its class by name.
#[derive(Default)]
pub(super) struct Classes(pub Mutex<BTreeMap<String, EC2NodeClass>>);

impl NodeClassSource for Classes {
    fn node_class_for(&self, pool: &NodePoolRef) -> Option<EC2NodeClass> {
        self.0.lock().unwrap().get(&pool.node_class).cloned()
    }
}

pub(super) struct Fixture {
    pub ec2: Arc<FakeEc2>,
    pub ssm: Arc<FakeSsm>,
    pub iam: Arc<FakeIam>,
    pub classes: Arc<Classes>,
    pub clock: Arc<AtomicI64>,
    pub provider: AwsCloudProvider,
}

impl Fixture {
    pub fn new() -> Self {
        let ec2 = Arc::new(FakeEc2::default());
        ec2.with(|s| {
            s.subnets = vec![
                subnet("subnet-a1", "us-east-1a", 100, true),
                subnet("subnet-a2", "us-east-1a", 200, true),
                subnet("subnet-b1", "us-east-1b", 50, true),
                subnet("subnet-x", "us-east-1c", 500, false),
            ];
            s.security_groups = vec![
                SecurityGroup {
                    id: "sg-1".into(),
                    name: "nodes".into(),
                    tags: tags(&[("karpenter.sh/discovery", "prod")]),
                },
                SecurityGroup {
                    id: "sg-2".into(),
                    name: "other".into(),
                    tags: BTreeMap::new(),
                },
            ];
            s.images = vec![
                image("ami-amd", "x86_64"),
                image("ami-arm", "arm64"),
                image("ami-gpu", "x86_64"),
                image("ami-al2", "x86_64"),
            ];
            s.instance_types = ["m5.large", "c5.large", "m6g.large", "g5.xlarge"]
                .into_iter()
                .map(info)
                .chain([InstanceTypeInfo {
                    name: "zz9.large".into(),
                    ..info("m5.large")
                }])
                .collect();
            s.offerings = [
                "m5.large",
                "c5.large",
                "m6g.large",
                "g5.xlarge",
                "zz9.large",
            ]
            .iter()
            .flat_map(|t| {
                ["us-east-1a", "us-east-1b", "us-east-1c"].map(|z| (t.to_string(), z.to_string()))
            })
            .collect();
            s.spot_prices = vec![
                SpotPrice {
                    instance_type: "m5.large".into(),
                    zone: "us-east-1a".into(),
                    price: 0.05,
                    timestamp_unix: 50,
                },
                SpotPrice {
                    instance_type: "m5.large".into(),
                    zone: "us-east-1a".into(),
                    price: 0.03,
                    timestamp_unix: 100,
                },
            ];
        });
        let ssm = Arc::new(FakeSsm::default());
        *ssm.parameters.lock().unwrap() = BTreeMap::from([
            (AL2023_AMD.to_string(), "ami-amd".to_string()),
            (AL2023_ARM.to_string(), "ami-arm".to_string()),
            (AL2023_GPU.to_string(), "ami-gpu".to_string()),
            (AL2_AMD.to_string(), "ami-al2".to_string()),
        ]);
        let iam = Arc::new(FakeIam::default());
        let classes = Arc::new(Classes::default());
        classes
            .0
            .lock()
            .unwrap()
            .insert("default".into(), node_class("default"));
        let clock = Arc::new(AtomicI64::new(START));
        let now = clock.clone();
        let mut config = AwsProviderConfig::new(ClusterInfo {
            name: "prod".into(),
            endpoint: "https://prod.eks.example".into(),
            ca_bundle: Some("Q0E=".into()),
            cluster_cidr: Some("10.100.0.0/16".into()),
            kubernetes_version: "1.30".into(),
            region: "us-east-1".into(),
        });
        config.clock = Arc::new(move || now.load(Ordering::SeqCst));
        let provider = AwsCloudProvider::new(
            ec2.clone(),
            ssm.clone(),
            iam.clone(),
            classes.clone(),
            config,
        );
        Fixture {
            ec2,
            ssm,
            iam,
            classes,
            clock,
            provider,
        }
    }

    pub fn advance(&self, secs: i64) {
        self.clock.fetch_add(secs, Ordering::SeqCst);
    }

    pub fn set_class(&self, nc: EC2NodeClass) {
        let name = nc.metadata.name.clone().unwrap();
        self.classes.0.lock().unwrap().insert(name, nc);
    }

    pub fn class(&self, name: &str) -> EC2NodeClass {
        self.classes.0.lock().unwrap()[name].clone()
    }
}

pub(super) fn pool() -> NodePoolRef {
    NodePoolRef {
        name: "default".into(),
        node_class: "default".into(),
    }
}

fn cond<'a>(status: &'a EC2NodeClassStatus, type_: &str) -> &'a Condition {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {:?}", status.conditions))
}

#[tokio::test]
async fn resolution_fills_the_status_and_every_condition_is_true() {
    let f = Fixture::new();
    let status = f
        .provider
        .resolve_node_class(&f.class("default"))
        .await
        .unwrap();
    let subnet_ids: Vec<&str> = status.subnets.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(subnet_ids, ["subnet-a2", "subnet-a1", "subnet-b1"]);
    assert_eq!(status.subnets[0].zone_id.as_deref(), Some("use1-aza"));
    let sg_ids: Vec<&str> = status
        .security_groups
        .iter()
        .map(|g| g.id.as_str())
        .collect();
    assert_eq!(sg_ids, ["sg-1"]);
    let ami_ids: BTreeSet<&str> = status.amis.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ami_ids, BTreeSet::from(["ami-amd", "ami-arm", "ami-gpu"]));
    let gpu = status.amis.iter().find(|a| a.id == "ami-gpu").unwrap();
    assert!(
        gpu.requirements
            .iter()
            .any(|r| r.key == labels::aws::INSTANCE_GPU_COUNT && r.operator == "Exists")
    );
    let profile = instance_profile_name("prod", "us-east-1", "default");
    assert_eq!(status.instance_profile.as_deref(), Some(profile.as_str()));
    for t in [
        "Ready",
        "SubnetsReady",
        "SecurityGroupsReady",
        "AMIsReady",
        "InstanceProfileReady",
    ] {
        let c = cond(&status, t);
        assert_eq!(c.status, "True", "{c:?}");
        assert_eq!(c.observed_generation, Some(1));
    }
    // One DescribeSubnets for the one filter set; the alias read SSM, then one image query.
    assert_eq!(f.ec2.count("DescribeSubnets"), 1);
    assert_eq!(
        f.ec2.with(|s| s.subnet_queries.clone()),
        vec![vec![Filter::new("tag:karpenter.sh/discovery", ["prod"])]]
    );
    let requested = f.ssm.requests.lock().unwrap().clone();
    assert_eq!(requested.len(), 1);
    assert!(requested[0].contains(&AL2023_AMD.to_string()));
    let image_queries = f.ec2.with(|s| s.image_queries.clone());
    assert_eq!(image_queries.len(), 1);
    assert_eq!(
        image_queries[0].filters,
        vec![Filter::new("image-id", ["ami-amd", "ami-arm", "ami-gpu"])]
    );
    // The managed instance profile was created with the role.
    assert_eq!(
        f.iam.roles(&profile),
        Some(vec!["KarpenterNodeRole-prod".to_string()])
    );
    let profile_tags = f.iam.profile_tags(&profile).unwrap();
    assert_eq!(profile_tags["karpenter.k8s.aws/ec2nodeclass"], "default");
    assert_eq!(profile_tags["kubernetes.io/cluster/prod"], "owned");
}

#[tokio::test]
async fn nothing_matching_makes_ready_false_naming_the_field() {
    let f = Fixture::new();
    let mut nc = node_class("default");
    nc.spec.subnet_selector_terms[0].tags = tags(&[("karpenter.sh/discovery", "nope")]);
    f.set_class(nc.clone());
    let status = f.provider.resolve_node_class(&nc).await.unwrap();
    let subnets = cond(&status, CONDITION_SUBNETS_READY);
    assert_eq!(subnets.status, "False");
    assert_eq!(subnets.reason, "SubnetsNotFound");
    assert!(
        subnets.message.contains("spec.subnetSelectorTerms")
            && subnets.message.contains("\"default\""),
        "{}",
        subnets.message
    );
    let ready = cond(&status, CONDITION_READY);
    assert_eq!(ready.status, "False");
    assert!(
        ready.message.contains("SubnetsReady=False"),
        "{}",
        ready.message
    );
    assert_eq!(cond(&status, "SecurityGroupsReady").status, "True");
    assert!(status.subnets.is_empty());

    let err = f.provider.instance_types(&pool()).await.unwrap_err();
    assert!(
        matches!(&err, ProviderError::NodeClassNotReady { node_class, reason }
            if node_class == "default" && reason.contains("spec.subnetSelectorTerms")),
        "{err:?}"
    );
}

#[tokio::test]
async fn conditions_keep_their_transition_time_while_unchanged() {
    let f = Fixture::new();
    let mut nc = f.class("default");
    nc.status = Some(f.provider.resolve_node_class(&nc).await.unwrap());
    let first = cond(nc.status.as_ref().unwrap(), CONDITION_READY)
        .last_transition_time
        .clone();
    f.advance(100);
    let again = f.provider.resolve_node_class(&nc).await.unwrap();
    assert_eq!(cond(&again, CONDITION_READY).last_transition_time, first);

    // A change of status moves it.
    nc.spec.security_group_selector_terms[0].tags = tags(&[("x", "y")]);
    let changed = f.provider.resolve_node_class(&nc).await.unwrap();
    let ready = cond(&changed, CONDITION_READY);
    assert_eq!(ready.status, "False");
    assert_ne!(ready.last_transition_time, first);
    assert_eq!(ready.last_transition_time.0.as_second(), START + 100);
}

#[tokio::test]
async fn an_explicit_instance_profile_is_used_as_is() {
    let f = Fixture::new();
    let mut nc = node_class("default");
    nc.spec.role = None;
    nc.spec.instance_profile = Some("my-profile".into());
    let status = f.provider.resolve_node_class(&nc).await.unwrap();
    assert_eq!(status.instance_profile.as_deref(), Some("my-profile"));
    assert!(f.iam.calls().is_empty());

    nc.spec.instance_profile = None;
    let status = f.provider.resolve_node_class(&nc).await.unwrap();
    let c = cond(&status, "InstanceProfileReady");
    assert_eq!(c.status, "False");
    assert!(c.message.contains("spec.role"), "{}", c.message);
}

#[tokio::test]
async fn the_managed_profile_is_checked_once_per_ttl() {
    let f = Fixture::new();
    let nc = f.class("default");
    f.provider.resolve_node_class(&nc).await.unwrap();
    let calls = f.iam.calls().len();
    assert_eq!(calls, 3, "{:?}", f.iam.calls());
    f.provider.resolve_node_class(&nc).await.unwrap();
    assert_eq!(f.iam.calls().len(), calls);
    f.advance(INSTANCE_PROFILE_TTL_SECS);
    f.provider.resolve_node_class(&nc).await.unwrap();
    assert_eq!(f.iam.calls().len(), calls + 1, "{:?}", f.iam.calls());
}

#[tokio::test]
async fn instance_types_come_from_describe_answers_prices_and_offerings() {
    let f = Fixture::new();
    let types = f.provider.instance_types(&pool()).await.unwrap();
    let names: Vec<&str> = types.iter().map(|t| t.name.as_str()).collect();
    // zz9.large has no catalog price and is left out.
    assert_eq!(names, ["c5.large", "g5.xlarge", "m5.large", "m6g.large"]);
    let m5 = types.iter().find(|t| t.name == "m5.large").unwrap();
    assert_eq!(m5.capacity.0[CPU], 2000);
    let offer = |zone: &str, ct: &str| {
        m5.offerings
            .iter()
            .find(|o| o.zone == zone && o.capacity_type == ct)
            .unwrap_or_else(|| panic!("no {zone} {ct} offering"))
            .clone()
    };
    assert_eq!(offer("us-east-1a", "on-demand").price, 0.096);
    // The latest spot price wins; without one, the default discount.
    assert_eq!(offer("us-east-1a", "spot").price, 0.03);
    assert!((offer("us-east-1b", "spot").price - 0.096 * 0.4).abs() < 1e-9);
    // us-east-1c has no selected subnet.
    assert!(offer("us-east-1a", "on-demand").available);
    assert!(!offer("us-east-1c", "on-demand").available);

    // Cached: a second pool and call do not describe again, until the TTL passes.
    let mut nc2 = node_class("other");
    nc2.spec.role = None;
    nc2.spec.instance_profile = Some("p".into());
    f.set_class(nc2);
    f.provider
        .instance_types(&NodePoolRef {
            name: "other".into(),
            node_class: "other".into(),
        })
        .await
        .unwrap();
    f.provider.instance_types(&pool()).await.unwrap();
    assert_eq!(f.ec2.count("DescribeInstanceTypes"), 1);
    assert_eq!(f.ec2.count("DescribeInstanceTypeOfferings"), 1);
    assert_eq!(f.ec2.count("DescribeSpotPriceHistory"), 1);
    f.advance(INSTANCE_TYPES_TTL_SECS);
    f.provider.instance_types(&pool()).await.unwrap();
    assert_eq!(f.ec2.count("DescribeInstanceTypes"), 2);
}

#[tokio::test]
async fn only_types_a_resolved_ami_serves_are_kept() {
    let f = Fixture::new();
    let mut nc = node_class("default");
    nc.spec.ami_selector_terms = vec![AmiSelectorTerm {
        id: Some("ami-arm".into()),
        ..Default::default()
    }];
    nc.spec.ami_family = Some(crate::aws::nodeclass::AmiFamily::Al2023);
    f.set_class(nc);
    let types = f.provider.instance_types(&pool()).await.unwrap();
    let names: Vec<&str> = types.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["m6g.large"]);

    // The standard image does not serve the GPU type; the nvidia one does.
    let f = Fixture::new();
    let mut nc = node_class("default");
    f.ssm.parameters.lock().unwrap().remove(AL2023_GPU);
    nc.metadata.generation = Some(2);
    f.set_class(nc);
    let types = f.provider.instance_types(&pool()).await.unwrap();
    assert!(!types.iter().any(|t| t.name == "g5.xlarge"));
}

#[tokio::test]
async fn an_unknown_node_class_is_not_ready() {
    let f = Fixture::new();
    let err = f
        .provider
        .instance_types(&NodePoolRef {
            name: "gpu".into(),
            node_class: "missing".into(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::NodeClassNotReady { node_class, .. } if node_class == "missing"),
        "{err:?}"
    );
    assert!(err.is_retryable());
}

/// A claim for the default pool with these instance type options and capacity types.
pub(super) fn claim(options: &[&str], capacity_types: &[&str]) -> NodeClaimRequest {
    let mut requirements = Requirements::new();
    requirements.add(
        labels::CAPACITY_TYPE,
        Requirement::new(Operator::In, capacity_types).unwrap(),
    );
    NodeClaimRequest {
        name: "default-abcde".into(),
        node_pool: "default".into(),
        node_class: "default".into(),
        requirements,
        instance_type_options: options.iter().map(|s| s.to_string()).collect(),
        requests: Resources::ZERO,
        labels: tags(&[("team", "infra"), (labels::NODE_POOL, "default")]),
        taints: Vec::new(),
        startup_taints: Vec::new(),
    }
}

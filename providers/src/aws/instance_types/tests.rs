use super::*;
use crate::aws::nodeclass::BlockDevice;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use karpenter_core::requirements::Operator;

fn entry(name: &str) -> &'static CatalogEntry {
    Catalog::embedded()
        .get(name)
        .unwrap_or_else(|| panic!("{name} not in the catalog"))
}

fn settings(family: AmiFamily, kubelet: KubeletConfiguration) -> InstanceTypeSettings {
    InstanceTypeSettings {
        ami_family: family,
        kubelet: Some(kubelet),
        ..Default::default()
    }
}

fn max_pods_kubelet(n: i32) -> KubeletConfiguration {
    KubeletConfiguration {
        max_pods: Some(n),
        ..Default::default()
    }
}

fn label(it: &InstanceType, key: &str) -> Option<String> {
    it.requirements.get(key).and_then(|r| r.any_value())
}

fn bdm(device: &str, size: &str, root: bool) -> BlockDeviceMapping {
    BlockDeviceMapping {
        device_name: Some(device.into()),
        ebs: Some(BlockDevice {
            volume_size: Some(Quantity(size.into())),
            ..Default::default()
        }),
        root_volume: root,
    }
}

const MIB: i64 = 1 << 20;
const GIB: i64 = 1 << 30;

#[test]
fn m5_large_without_max_pods() {
    let it = instance_type(entry("m5.large"), &InstanceTypeSettings::default());
    assert_eq!(it.capacity.0[PODS], 29, "3 ENIs × (10 − 1) + 2");
    assert_eq!(it.capacity.0[CPU], 2000);
    assert_eq!(it.allocatable().0[CPU], 1930, "60m + 10m kube-reserved");
    // 8192 MiB − ⌈8192 × 0.075⌉ = 8192 − 615 MiB (Karpenter's own test: 7945060352 bytes).
    assert_eq!(it.capacity.0[MEMORY], 7577 * MIB);
    assert_eq!(it.capacity.0[MEMORY], 7_945_060_352);
    // kube-reserved 11 × 29 + 255 = 574 MiB, eviction 100 MiB.
    assert_eq!(it.overhead.0[MEMORY], (574 + 100) * MIB);
    assert_eq!(it.allocatable().0[MEMORY], (7577 - 674) * MIB);
    // 20Gi root volume − 1Gi kube-reserved − 10 % eviction.
    assert_eq!(it.capacity.0[EPHEMERAL_STORAGE], 20 * GIB);
    assert_eq!(it.allocatable().0[EPHEMERAL_STORAGE], 17 * GIB);
    assert_eq!(it.capacity.0[NVIDIA_GPU], 0);
    assert_eq!(
        it.capacity.0[resources::slot("vpc.amazonaws.com/efa").unwrap()],
        0
    );
    let efa = instance_type(entry("c6gn.16xlarge"), &InstanceTypeSettings::default());
    assert_eq!(
        efa.capacity.0[resources::slot("vpc.amazonaws.com/efa").unwrap()],
        1
    );
}

#[test]
fn max_pods_110_and_the_memory_reservation() {
    // Bottlerocket reserves for the configured pod count: 11 × 110 + 255 MiB.
    let br = instance_type(
        entry("m5.large"),
        &settings(AmiFamily::Bottlerocket, max_pods_kubelet(110)),
    );
    assert_eq!(br.capacity.0[PODS], 110);
    let parts = overhead_parts(
        entry("m5.large"),
        &settings(AmiFamily::Bottlerocket, max_pods_kubelet(110)),
    );
    assert_eq!(parts.kube_reserved.0[MEMORY], (11 * 110 + 255) * MIB);
    assert_eq!(br.overhead.0[MEMORY], (1465 + 100) * MIB);

    // AL2 / AL2023 (UsesENILimitedMemoryOverhead) keep reserving for the ENI limit of 29.
    for family in [AmiFamily::Al2, AmiFamily::Al2023, AmiFamily::Custom] {
        let s = settings(family, max_pods_kubelet(110));
        let it = instance_type(entry("m5.large"), &s);
        assert_eq!(it.capacity.0[PODS], 110, "{family}");
        assert_eq!(
            overhead_parts(entry("m5.large"), &s).kube_reserved.0[MEMORY],
            574 * MIB,
            "{family}"
        );
    }
}

#[test]
fn pods_per_core_and_windows_density() {
    let k = KubeletConfiguration {
        pods_per_core: Some(4),
        ..Default::default()
    };
    assert_eq!(
        max_pods(entry("m5.large"), &settings(AmiFamily::Al2023, k.clone())),
        8
    );
    assert_eq!(
        max_pods(entry("m5.large"), &settings(AmiFamily::Bottlerocket, k)),
        29,
        "ignored"
    );
    let k = KubeletConfiguration {
        pods_per_core: Some(100),
        max_pods: Some(110),
        ..Default::default()
    };
    assert_eq!(
        max_pods(entry("m5.large"), &settings(AmiFamily::Al2, k)),
        110
    );
    let win = settings(AmiFamily::Windows2022, KubeletConfiguration::default());
    assert_eq!(max_pods(entry("m5.large"), &win), 110);
    let reserved = InstanceTypeSettings {
        reserved_enis: 1,
        ..Default::default()
    };
    assert_eq!(max_pods(entry("m5.large"), &reserved), 20);
}

#[test]
fn g5_xlarge_has_an_nvidia_gpu() {
    let it = instance_type(entry("g5.xlarge"), &InstanceTypeSettings::default());
    assert_eq!(it.capacity.0[NVIDIA_GPU], 1);
    assert_eq!(
        label(&it, aws_labels::INSTANCE_GPU_NAME).as_deref(),
        Some("a10g")
    );
    assert_eq!(
        label(&it, aws_labels::INSTANCE_GPU_MANUFACTURER).as_deref(),
        Some("nvidia")
    );
    assert_eq!(
        label(&it, aws_labels::INSTANCE_GPU_COUNT).as_deref(),
        Some("1")
    );
    assert_eq!(
        label(&it, aws_labels::INSTANCE_GPU_MEMORY).as_deref(),
        Some("22888")
    );
    assert_eq!(
        label(&it, aws_labels::INSTANCE_LOCAL_NVME).as_deref(),
        Some("250")
    );
    assert_eq!(
        label(&it, aws_labels::INSTANCE_CPU_MANUFACTURER).as_deref(),
        Some("amd")
    );
    assert_eq!(
        label(&it, aws_labels::INSTANCE_CATEGORY).as_deref(),
        Some("g")
    );
}

#[test]
fn graviton_is_arm64_with_cma_reserved() {
    let it = instance_type(entry("m6g.large"), &InstanceTypeSettings::default());
    assert_eq!(label(&it, labels::ARCH).as_deref(), Some("arm64"));
    assert_eq!(
        label(&it, aws_labels::INSTANCE_CPU_MANUFACTURER).as_deref(),
        Some("aws")
    );
    // (8192 − 64) MiB − ⌈8128 × 0.075⌉ MiB (Karpenter's own test: 7883194368 bytes).
    assert_eq!(it.capacity.0[MEMORY], 7_883_194_368);
    let c6gn = instance_type(entry("c6gn.large"), &InstanceTypeSettings::default());
    assert_eq!(
        label(&c6gn, aws_labels::INSTANCE_FAMILY).as_deref(),
        Some("c6gn")
    );
    assert_eq!(
        label(&c6gn, aws_labels::INSTANCE_GENERATION).as_deref(),
        Some("6")
    );
}

#[test]
fn m5_large_labels() {
    let it = instance_type(entry("m5.large"), &InstanceTypeSettings::default());
    let expect = [
        (labels::INSTANCE_TYPE, "m5.large"),
        (labels::ARCH, "amd64"),
        (labels::OS, "linux"),
        (aws_labels::INSTANCE_CATEGORY, "m"),
        (aws_labels::INSTANCE_FAMILY, "m5"),
        (aws_labels::INSTANCE_GENERATION, "5"),
        (aws_labels::INSTANCE_SIZE, "large"),
        (aws_labels::INSTANCE_CPU, "2"),
        (aws_labels::INSTANCE_CPU_MANUFACTURER, "intel"),
        (aws_labels::INSTANCE_MEMORY, "8192"),
        (aws_labels::INSTANCE_HYPERVISOR, "nitro"),
    ];
    for (key, value) in expect {
        assert_eq!(label(&it, key).as_deref(), Some(value), "{key}");
    }
    for key in [
        aws_labels::INSTANCE_GPU_NAME,
        aws_labels::INSTANCE_LOCAL_NVME,
        labels::WINDOWS_BUILD,
    ] {
        assert_eq!(
            it.requirements.get(key).unwrap().operator(),
            Operator::DoesNotExist,
            "{key}"
        );
    }
    // "Up to 10 Gigabit" has no known baseline.
    assert_eq!(
        it.requirements
            .get(aws_labels::INSTANCE_NETWORK_BANDWIDTH)
            .unwrap()
            .operator(),
        Operator::DoesNotExist
    );
    // A pod that needs a GPU does not fit a CPU type; one that excludes GPUs does.
    let mut gpu_pod = Requirements::new();
    gpu_pod.add(aws_labels::INSTANCE_GPU_NAME, Requirement::exists());
    assert!(it.requirements.intersects(&gpu_pod).is_err());
    let mut no_gpu = Requirements::new();
    no_gpu.add(
        aws_labels::INSTANCE_GPU_COUNT,
        Requirement::does_not_exist(),
    );
    assert!(it.requirements.intersects(&no_gpu).is_ok());
    assert_eq!(it.requirements.single_valued_labels().len(), 11);

    let metal = instance_type(entry("m5.metal"), &InstanceTypeSettings::default());
    assert_eq!(
        label(&metal, aws_labels::INSTANCE_SIZE).as_deref(),
        Some("metal")
    );
    assert_eq!(
        label(&metal, aws_labels::INSTANCE_HYPERVISOR).as_deref(),
        Some("")
    );
    assert_eq!(
        label(&metal, aws_labels::INSTANCE_NETWORK_BANDWIDTH).as_deref(),
        Some("25000")
    );
}

#[test]
fn names_split_like_karpenter() {
    let cg = |n: &str| category_and_generation(n);
    assert_eq!(cg("m5.large"), Some(("m".into(), "5".into())));
    assert_eq!(cg("c6gn.16xlarge"), Some(("c".into(), "6".into())));
    assert_eq!(cg("inf2.xlarge"), Some(("inf".into(), "2".into())));
    assert_eq!(cg("trn1n.32xlarge"), Some(("trn".into(), "1".into())));
    assert_eq!(cg("x2iedn.xlarge"), Some(("x".into(), "2".into())));
    assert_eq!(cg("u-6tb1.112xlarge"), Some(("u".into(), "1".into())));
    assert_eq!(cg("m5"), None);
    assert_eq!(network_bandwidth_mbps("37.5 Gigabit"), Some(37500));
    assert_eq!(network_bandwidth_mbps("Up to 25 Gigabit"), None);
    assert_eq!(network_bandwidth_mbps("Moderate"), None);
}

#[test]
fn kube_reserved_cpu_tiers() {
    assert_eq!(kube_reserved_cpu_millis(1000), 60);
    assert_eq!(kube_reserved_cpu_millis(2000), 70);
    assert_eq!(kube_reserved_cpu_millis(4000), 80);
    assert_eq!(kube_reserved_cpu_millis(8000), 90);
    assert_eq!(kube_reserved_cpu_millis(48000), 190);
    assert_eq!(kube_reserved_cpu_millis(96000), 310);
}

#[test]
fn kubelet_overrides_apply() {
    let mut k = KubeletConfiguration::default();
    k.kube_reserved
        .insert("memory".into(), Quantity("1Gi".into()));
    k.kube_reserved.insert("pid".into(), Quantity("100".into()));
    k.system_reserved
        .insert("cpu".into(), Quantity("100m".into()));
    k.system_reserved
        .insert("memory".into(), Quantity("100Mi".into()));
    k.eviction_hard
        .insert("memory.available".into(), "500Mi".into());
    k.eviction_hard
        .insert("nodefs.available".into(), "5%".into());
    k.eviction_soft
        .insert("memory.available".into(), "1Gi".into());
    let e = entry("m5.large");
    let parts = overhead_parts(e, &settings(AmiFamily::Al2023, k.clone()));
    assert_eq!(parts.kube_reserved.0[MEMORY], GIB);
    assert_eq!(parts.kube_reserved.0[CPU], 70, "not overridden");
    assert_eq!(parts.system_reserved.0[CPU], 100);
    assert_eq!(parts.system_reserved.0[MEMORY], 100 * MIB);
    assert_eq!(
        parts.eviction_threshold.0[MEMORY], GIB,
        "max of hard 500Mi and soft 1Gi"
    );
    assert_eq!(
        parts.eviction_threshold.0[EPHEMERAL_STORAGE],
        20 * GIB / 20,
        "5 % of 20Gi"
    );
    let it = instance_type(e, &settings(AmiFamily::Al2023, k.clone()));
    assert_eq!(it.allocatable().0[CPU], 2000 - 70 - 100);
    assert_eq!(it.overhead, parts.total());

    // Bottlerocket ignores evictionSoft.
    let parts = overhead_parts(e, &settings(AmiFamily::Bottlerocket, k.clone()));
    assert_eq!(parts.eviction_threshold.0[MEMORY], 500 * MIB);

    // Percentages are of the capacity after VM overhead; 100 % disables the threshold.
    let mut k = KubeletConfiguration::default();
    k.eviction_hard
        .insert("memory.available".into(), "10%".into());
    let parts = overhead_parts(e, &settings(AmiFamily::Al2023, k.clone()));
    assert_eq!(
        parts.eviction_threshold.0[MEMORY],
        ((7577 * MIB) as f64 / 10.0).ceil() as i64
    );
    k.eviction_hard
        .insert("memory.available".into(), "100%".into());
    assert_eq!(
        overhead_parts(e, &settings(AmiFamily::Al2023, k))
            .eviction_threshold
            .0[MEMORY],
        0
    );
}

#[test]
fn ephemeral_storage_follows_block_devices() {
    let e = entry("m5d.large");
    let with = |family, bdms: Vec<BlockDeviceMapping>| InstanceTypeSettings {
        ami_family: family,
        block_device_mappings: bdms,
        ..Default::default()
    };
    assert_eq!(
        ephemeral_storage_bytes(
            e,
            &with(AmiFamily::Al2, vec![bdm("/dev/xvda", "100Gi", true)])
        ),
        100 * GIB
    );
    assert_eq!(
        ephemeral_storage_bytes(
            e,
            &with(AmiFamily::Al2, vec![bdm("/dev/xvda", "80Gi", false)])
        ),
        80 * GIB
    );
    // Bottlerocket's pods live on the data volume /dev/xvdb.
    let br = with(
        AmiFamily::Bottlerocket,
        vec![
            bdm("/dev/xvda", "4Gi", false),
            bdm("/dev/xvdb", "60Gi", false),
        ],
    );
    assert_eq!(ephemeral_storage_bytes(e, &br), 60 * GIB);
    let br_root_only = with(
        AmiFamily::Bottlerocket,
        vec![bdm("/dev/xvda", "50Gi", false)],
    );
    assert_eq!(ephemeral_storage_bytes(e, &br_root_only), 20 * GIB);
    let custom = with(
        AmiFamily::Custom,
        vec![
            bdm("/dev/xvda", "30Gi", false),
            bdm("/dev/xvdb", "80G", false),
        ],
    );
    assert_eq!(ephemeral_storage_bytes(e, &custom), 80_000_000_000);
    assert_eq!(
        ephemeral_storage_bytes(e, &with(AmiFamily::Windows2019, vec![])),
        50 * GIB
    );
    let raid = InstanceTypeSettings {
        instance_store_policy: Some(InstanceStorePolicy::Raid0),
        ..Default::default()
    };
    assert_eq!(ephemeral_storage_bytes(e, &raid), 75_000_000_000);
    assert_eq!(
        ephemeral_storage_bytes(entry("m5.large"), &raid),
        20 * GIB,
        "no instance store"
    );
}

#[test]
fn windows_labels() {
    let win = InstanceTypeSettings {
        ami_family: AmiFamily::Windows2022,
        ..Default::default()
    };
    let it = instance_type(entry("m5.large"), &win);
    assert_eq!(label(&it, labels::OS).as_deref(), Some("windows"));
    assert_eq!(
        label(&it, labels::WINDOWS_BUILD).as_deref(),
        Some("10.0.20348")
    );
    let arm = instance_type(entry("m6g.large"), &win);
    assert_eq!(
        arm.requirements.get(labels::OS).unwrap().operator(),
        Operator::DoesNotExist
    );
}

#[test]
fn offerings_per_zone_with_spot_discount() {
    let e = entry("m5.large");
    let it = instance_type(e, &InstanceTypeSettings::default());
    assert_eq!(it.offerings.len(), e.zones.len() * 2);
    let spot = it
        .offerings
        .iter()
        .find(|o| o.capacity_type == labels::CAPACITY_SPOT)
        .unwrap();
    assert!((spot.price - 0.096 * 0.4).abs() < 1e-12, "{}", spot.price);
    let od = it
        .offerings
        .iter()
        .find(|o| o.capacity_type == labels::CAPACITY_ON_DEMAND)
        .unwrap();
    assert_eq!(od.price, 0.096);
    assert!(it.offerings.iter().all(|o| o.available));

    let only_a = InstanceTypeSettings {
        zones: Some(BTreeSet::from(["us-east-1a".to_string()])),
        ..Default::default()
    };
    let it = instance_type(e, &only_a);
    assert!(
        it.offerings
            .iter()
            .all(|o| o.available == (o.zone == "us-east-1a"))
    );
}

#[test]
fn whole_catalog_is_schedulable() {
    let all = catalog_instance_types(Catalog::embedded(), &InstanceTypeSettings::default());
    assert_eq!(all.len(), Catalog::embedded().instance_types.len());
    assert!(all.windows(2).all(|w| w[0].name < w[1].name));
    for it in &all {
        let a = it.allocatable();
        assert!(
            a.0[CPU] > 0 && a.0[MEMORY] > 0 && a.0[PODS] > 0,
            "{}: {a}",
            it.name
        );
        assert!(!it.offerings.is_empty(), "{}", it.name);
    }
}

#[test]
fn settings_from_a_node_class() {
    let yaml = r#"
apiVersion: karpenter.k8s.aws/v1
kind: EC2NodeClass
metadata: {name: gpu}
spec:
  amiSelectorTerms: [{alias: bottlerocket@latest}]
  kubelet: {maxPods: 110}
  blockDeviceMappings:
    - {deviceName: /dev/xvdb, ebs: {volumeSize: 200Gi}}
status:
  subnets: [{id: subnet-1, zone: us-east-1c}]
"#;
    let nc: EC2NodeClass = serde_yaml::from_str(yaml).unwrap();
    let s = InstanceTypeSettings::for_node_class(&nc);
    assert_eq!(s.ami_family, AmiFamily::Bottlerocket);
    let it = instance_type(entry("m5.large"), &s);
    assert_eq!(it.capacity.0[PODS], 110);
    assert_eq!(it.capacity.0[EPHEMERAL_STORAGE], 200 * GIB);
    assert!(
        it.offerings
            .iter()
            .all(|o| o.available == (o.zone == "us-east-1c"))
    );
}

use super::*;
use crate::node_sim::userdata;

fn instance() -> InstanceInfo {
    InstanceInfo {
        instance_id: "i-0123456789abcdef0".into(),
        instance_type: "m5.large".into(),
        zone: "us-east-1b".into(),
        state: "running".into(),
        private_ip: Some("10.0.1.23".into()),
        private_dns_name: Some("ip-10-0-1-23.ec2.internal".into()),
        launch_template: None,
        root_volume_id: None,
    }
}

fn m5_large() -> InstanceTypeInfo {
    InstanceTypeInfo {
        name: "m5.large".into(),
        vcpus: 2,
        memory_mib: 8192,
        max_enis: 3,
        ipv4_per_eni: 10,
        arch: "amd64".into(),
        nvidia_gpus: 0,
    }
}

fn q(list: &BTreeMap<String, Quantity>, key: &str) -> String {
    list.get(key).map(|q| q.0.clone()).unwrap_or_default()
}

fn now() -> Timestamp {
    Timestamp::from_second(1_700_000_000).unwrap()
}

#[test]
fn names_and_provider_id() {
    let i = instance();
    assert_eq!(i.node_name(), "ip-10-0-1-23.ec2.internal");
    assert_eq!(i.provider_id(), "aws:///us-east-1b/i-0123456789abcdef0");
    let bare = InstanceInfo {
        private_dns_name: Some(String::new()),
        ..instance()
    };
    assert_eq!(bare.node_name(), "i-0123456789abcdef0");
    assert_eq!(region_of_zone("us-west-2d"), "us-west-2");
}

#[test]
fn node_from_al2_user_data() {
    let kubelet = userdata::parse(
        "/etc/eks/bootstrap.sh e2e --kubelet-extra-args '--max-pods=110 \
         --node-labels=karpenter.sh/nodepool=default,kubernetes.io/arch=sparc \
         --register-with-taints=karpenter.sh/unregistered:NoExecute'",
    );
    let inputs = NodeInputs {
        kubelet: &kubelet,
        ephemeral_bytes: None,
        pod_cidr: Some("100.64.4.0/22".into()),
        now: now(),
    };
    let node = build_node(&instance(), &m5_large(), &inputs, &NodeOptions::default());
    let meta = &node.metadata;
    assert_eq!(meta.name.as_deref(), Some("ip-10-0-1-23.ec2.internal"));
    let labels = meta.labels.as_ref().unwrap();
    assert_eq!(
        labels["kubernetes.io/hostname"],
        "ip-10-0-1-23.ec2.internal"
    );
    assert_eq!(labels["topology.kubernetes.io/zone"], "us-east-1b");
    assert_eq!(labels["topology.kubernetes.io/region"], "us-east-1");
    assert_eq!(labels["node.kubernetes.io/instance-type"], "m5.large");
    // The kubelet's own label wins over a userData one.
    assert_eq!(labels["kubernetes.io/arch"], "amd64");
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert_eq!(labels["karpenter.sh/nodepool"], "default");
    assert_eq!(
        meta.annotations.as_ref().unwrap()[INSTANCE_ANNOTATION],
        "i-0123456789abcdef0"
    );

    let spec = node.spec.as_ref().unwrap();
    assert_eq!(
        spec.provider_id.as_deref(),
        Some("aws:///us-east-1b/i-0123456789abcdef0")
    );
    assert_eq!(spec.pod_cidr.as_deref(), Some("100.64.4.0/22"));
    let taints: Vec<(&str, &str)> = spec
        .taints
        .as_ref()
        .unwrap()
        .iter()
        .map(|t| (t.key.as_str(), t.effect.as_str()))
        .collect();
    assert_eq!(
        taints,
        vec![
            ("karpenter.sh/unregistered", "NoExecute"),
            (NOT_READY_TAINT, "NoSchedule")
        ]
    );

    let status = node.status.as_ref().unwrap();
    let cap = status.capacity.as_ref().unwrap();
    let alloc = status.allocatable.as_ref().unwrap();
    assert_eq!(q(cap, "cpu"), "2");
    assert_eq!(q(cap, "pods"), "110");
    // 8192 MiB − ⌈7.5 %⌉ = 7577 MiB.
    assert_eq!(q(cap, "memory"), format!("{}Ki", 7577 * 1024));
    assert_eq!(
        q(cap, "ephemeral-storage"),
        format!("{}Ki", 20 * 1024 * 1024)
    );
    assert!(!cap.contains_key("nvidia.com/gpu"));
    // 2000m − (60 + 10)m.
    assert_eq!(q(alloc, "cpu"), "1930m");
    // 7577 − (11 × 29 + 255) − 100 MiB: kube-reserved uses the ENI pod count (29), not 110.
    assert_eq!(q(alloc, "memory"), format!("{}Ki", 6903 * 1024));
    assert_eq!(
        q(alloc, "ephemeral-storage"),
        format!("{}Ki", 17 * 1024 * 1024)
    );
    assert_eq!(q(alloc, "pods"), "110");

    let conditions = status.conditions.as_ref().unwrap();
    let ready = conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.status, "False");
    for c in conditions.iter().filter(|c| c.type_ != "Ready") {
        assert_eq!(c.status, "False", "{}", c.type_);
    }
    let addresses: Vec<(&str, &str)> = status
        .addresses
        .as_ref()
        .unwrap()
        .iter()
        .map(|a| (a.type_.as_str(), a.address.as_str()))
        .collect();
    assert_eq!(addresses[0], ("InternalIP", "10.0.1.23"));
    assert_eq!(addresses[1], ("Hostname", "ip-10-0-1-23.ec2.internal"));
    let info = status.node_info.as_ref().unwrap();
    assert_eq!(info.kubelet_version, "v1.20.2");
    assert_eq!(info.architecture, "amd64");
    assert_eq!(info.os_image, "Amazon Linux 2");
}

#[test]
fn max_pods_sources() {
    let ty = m5_large();
    assert_eq!(ty.eni_max_pods(), 29);
    let none = KubeletSettings::default();
    assert_eq!(max_pods(&ty, &none), 29);
    let no_eni = KubeletSettings {
        use_max_pods: Some(false),
        ..KubeletSettings::default()
    };
    assert_eq!(max_pods(&ty, &no_eni), 110);
    let al2023 = userdata::parse(
        "apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  kubelet:\n    config:\n      maxPods: 8\n",
    );
    assert_eq!(max_pods(&ty, &al2023), 8);
    let bottlerocket = userdata::parse("[settings.kubernetes]\nmax-pods = 12\n");
    assert_eq!(max_pods(&ty, &bottlerocket), 12);
}

#[test]
fn bottlerocket_reserves_for_its_max_pods_and_arm64_loses_cma() {
    let ty = InstanceTypeInfo {
        name: "m6g.xlarge".into(),
        vcpus: 4,
        memory_mib: 16384,
        max_enis: 4,
        ipv4_per_eni: 15,
        arch: "arm64".into(),
        nvidia_gpus: 0,
    };
    let kubelet = userdata::parse("[settings.kubernetes]\nmax-pods = 110\n");
    let opts = NodeOptions::default();
    let (cap, alloc) = resources(&ty, &kubelet, 20 << 30, &opts);
    // 16384 − 64 = 16320; − ⌈1224⌉ = 15096 MiB.
    assert_eq!(cap.memory_bytes, 15096 * MIB);
    assert_eq!(alloc.memory_bytes, (15096 - (11 * 110 + 255) - 100) * MIB);
    assert_eq!(alloc.cpu_millis, 4000 - 80);
}

#[test]
fn gpus_and_cpu_reservation_steps() {
    let ty = InstanceTypeInfo {
        name: "g4dn.12xlarge".into(),
        vcpus: 48,
        memory_mib: 196_608,
        max_enis: 8,
        ipv4_per_eni: 30,
        arch: "amd64".into(),
        nvidia_gpus: 4,
    };
    let (cap, alloc) = resources(
        &ty,
        &KubeletSettings::default(),
        20 << 30,
        &NodeOptions::default(),
    );
    assert_eq!(cap.gpus, 4);
    assert_eq!(cap.pods, 234);
    assert_eq!(cap.to_quantities()["nvidia.com/gpu"].0, "4");
    assert_eq!(kube_reserved_cpu_millis(1), 60);
    assert_eq!(kube_reserved_cpu_millis(3), 75);
    assert_eq!(alloc.cpu_millis, 48_000 - 190);
}

#[test]
fn conditions_by_ready_status() {
    let ready = conditions(ReadyStatus::True, now(), now());
    assert_eq!(ready.len(), 4);
    assert!(
        ready
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    );
    assert!(
        ready
            .iter()
            .filter(|c| c.type_ != "Ready")
            .all(|c| c.status == "False")
    );
    let unknown = conditions(ReadyStatus::Unknown, now(), now());
    assert!(unknown.iter().all(|c| c.status == "Unknown"));
}

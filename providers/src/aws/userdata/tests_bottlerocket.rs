//! Bottlerocket TOML merging.

use super::*;

const USER_TOML: &str = r#"# user settings
[settings]
motd = "hello"

[settings.kubernetes]
cluster-name = "wrong"
max-pods = 20 # too few
allowed-unsafe-sysctls = [
  "net.core.somaxconn", # the one we need
  "net.ipv4.ip_local_port_range",
]
node-taints.old = ["x:NoSchedule"]

[settings.kubernetes.node-labels]
team = "data"
"karpenter.sh/nodepool" = "user"

[settings.kubernetes.eviction-hard]
"memory.available" = "20%"

[[settings.container-registry.mirrors]]
registry = "docker.io"
endpoint = ["https://mirror.example.com"]

[settings.host-containers.admin]
enabled = true
"#;

fn bottlerocket(user_data: Option<&str>) -> UserDataInput {
    let mut input = seed_input(AmiFamily::Bottlerocket);
    input.custom_user_data = user_data.map(Into::into);
    input
}

#[test]
fn bottlerocket_without_user_data() {
    assert_eq!(
        render(&bottlerocket(None)).unwrap(),
        r#"[settings.kubernetes]
api-server = "https://ABCDEF.gr7.us-east-1.eks.amazonaws.com"
cluster-certificate = "Q0EtQlVORExF"
cluster-dns-ip = ["10.100.0.10"]
cluster-name = "avlos-stg"
max-pods = 110

[settings.kubernetes.node-labels]
"karpenter.sh/capacity-type" = "spot"
"karpenter.sh/nodepool" = "default"

[settings.kubernetes.node-taints]
"karpenter.sh/unregistered" = [":NoExecute"]
"#
    );
}

/// User keys survive; Karpenter's cluster facts, `max-pods` and labels win; user `node-taints`
/// are replaced; tables outside `settings.kubernetes` are copied verbatim.
#[test]
fn bottlerocket_merges_user_settings_under_karpenters() {
    assert_eq!(
        render(&bottlerocket(Some(USER_TOML))).unwrap(),
        r#"# user settings

[settings.kubernetes]
allowed-unsafe-sysctls = [
  "net.core.somaxconn",
  "net.ipv4.ip_local_port_range",
]
api-server = "https://ABCDEF.gr7.us-east-1.eks.amazonaws.com"
cluster-certificate = "Q0EtQlVORExF"
cluster-dns-ip = ["10.100.0.10"]
cluster-name = "avlos-stg"
max-pods = 110

[settings.kubernetes.eviction-hard]
"memory.available" = "20%"

[settings.kubernetes.node-labels]
"karpenter.sh/capacity-type" = "spot"
"karpenter.sh/nodepool" = "default"
team = "data"

[settings.kubernetes.node-taints]
"karpenter.sh/unregistered" = [":NoExecute"]

[settings]
motd = "hello"

[[settings.container-registry.mirrors]]
registry = "docker.io"
endpoint = ["https://mirror.example.com"]

[settings.host-containers.admin]
enabled = true
"#
    );
}

#[test]
fn bottlerocket_maps_kubelet_settings_and_keeps_user_max_pods_when_unset() {
    let mut input = bottlerocket(Some(
        "[settings.kubernetes]\nmax-pods = 58\n\n[settings.kubernetes.eviction-hard]\n\
         \"memory.available\" = \"20%\"\n\"nodefs.available\" = \"5%\"\n",
    ));
    input.kubelet = KubeletConfiguration {
        system_reserved: BTreeMap::from([("cpu".into(), Quantity("100m".into()))]),
        eviction_hard: BTreeMap::from([("memory.available".into(), "10%".into())]),
        image_gc_high_threshold_percent: Some(85),
        cpu_cfs_quota: Some(true),
        pods_per_core: Some(4),
        eviction_soft: BTreeMap::from([("memory.available".into(), "1Gi".into())]),
        ..Default::default()
    };
    input.ca_bundle = None;
    let out = render(&input).unwrap();
    assert_eq!(
        out,
        r#"[settings.kubernetes]
api-server = "https://ABCDEF.gr7.us-east-1.eks.amazonaws.com"
cluster-name = "avlos-stg"
cpu-cfs-quota = true
image-gc-high-threshold-percent = "85"
max-pods = 58

[settings.kubernetes.eviction-hard]
"memory.available" = "10%"

[settings.kubernetes.node-labels]
"karpenter.sh/capacity-type" = "spot"
"karpenter.sh/nodepool" = "default"

[settings.kubernetes.node-taints]
"karpenter.sh/unregistered" = [":NoExecute"]

[settings.kubernetes.system-reserved]
cpu = "100m"
"#
    );
}

#[test]
fn bottlerocket_flattens_inline_tables_and_dotted_keys() {
    let input = bottlerocket(Some(
        "settings.kubernetes.node-labels = { team = \"a\", \"x.io/y\" = \"b\" }\n\
         [settings]\nkubernetes.image-gc-low-threshold-percent = \"50\" # keep\nmotd = \"m\"\n",
    ));
    let out = render(&input).unwrap();
    assert!(
        out.contains("\nimage-gc-low-threshold-percent = \"50\"\n"),
        "{out}"
    );
    assert!(
        out.contains("\nteam = \"a\"\n\"x.io/y\" = \"b\"\n"),
        "{out}"
    );
    assert!(out.ends_with("\n[settings]\nmotd = \"m\"\n"), "{out}");
}

#[test]
fn bottlerocket_errors_name_the_line() {
    let msg = |toml: &str| render(&bottlerocket(Some(toml))).unwrap_err().to_string();
    assert_eq!(
        msg("[settings.kubernetes]\nmax-pods\n"),
        "spec.userData: not valid TOML: line 2: expected `key = value`, found \"max-pods\""
    );
    assert_eq!(
        msg("[settings.kubernetes]\nallowed-unsafe-sysctls = [\n  \"a\",\n"),
        "spec.userData: not valid TOML: line 2: unterminated value"
    );
    assert!(msg("[[settings.kubernetes.x]]\na = 1\n").contains("line 1: arrays of tables"));
    assert!(msg("settings = { motd = \"x\" }\n").contains("inline table for settings"));
    assert!(msg("[settings.kubernetes]\na = 1\na = 2\n").contains("line 3: duplicate key"));
    assert!(msg("[settings.kubernetes]\na = 1\na.b = 2\n").contains("both a value and a table"));
    assert!(msg("[settings.kubernetes\n").contains("malformed table header"));
}

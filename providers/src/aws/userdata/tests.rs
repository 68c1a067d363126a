//! Rendering tests across families. Family-specific parsing details are tested next to the
//! code (`mime.rs`); Bottlerocket merging lives in `tests_bottlerocket.rs`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Taint;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use karpenter_core::api::duration::GoDuration;

use super::*;

/// The staging EC2NodeClass's `spec.userData` exactly as in `examples/staging/ec2nodeclass.yaml`
/// (the seed deployment's VPC CNI prefix-delegation settings).
pub(super) const SEED_USER_DATA: &str = "MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=\"BOUNDARY\"

--BOUNDARY
Content-Type: text/x-shellscript; charset=\"us-ascii\"

#!/bin/bash
set -ex
export ENABLE_PREFIX_DELEGATION=true
export WARM_PREFIX_TARGET=1

--BOUNDARY--
";

pub(super) const ENDPOINT: &str = "https://ABCDEF.gr7.us-east-1.eks.amazonaws.com";

/// The seed's staging cluster: spot node from the `default` NodePool with `maxPods: 110`.
pub(super) fn seed_input(family: AmiFamily) -> UserDataInput {
    UserDataInput {
        cluster_name: "avlos-stg".into(),
        cluster_endpoint: ENDPOINT.into(),
        ca_bundle: Some("Q0EtQlVORExF".into()),
        cluster_cidr: Some("10.100.0.0/16".into()),
        ami_family: family,
        kubelet: KubeletConfiguration {
            max_pods: Some(110),
            cluster_dns: vec!["10.100.0.10".into()],
            ..Default::default()
        },
        labels: BTreeMap::from([
            ("karpenter.sh/nodepool".into(), "default".into()),
            ("karpenter.sh/capacity-type".into(), "spot".into()),
        ]),
        taints: Vec::new(),
        startup_taints: Vec::new(),
        custom_user_data: Some(SEED_USER_DATA.into()),
    }
}

pub(super) fn taint(key: &str, value: Option<&str>, effect: &str) -> Taint {
    Taint {
        key: key.into(),
        value: value.map(Into::into),
        effect: effect.into(),
        time_added: None,
    }
}

const KARPENTER_AL2_PART: &str = "--//
Content-Type: text/x-shellscript; charset=\"us-ascii\"

#!/bin/bash -xe
exec > >(tee /var/log/user-data.log|logger -t user-data -s 2>/dev/console) 2>&1
/etc/eks/bootstrap.sh 'avlos-stg' --apiserver-endpoint 'https://ABCDEF.gr7.us-east-1.eks.amazonaws.com' --b64-cluster-ca 'Q0EtQlVORExF' \\
--dns-cluster-ip '10.100.0.10' \\
--use-max-pods false \\
--kubelet-extra-args '--node-labels=\"karpenter.sh/capacity-type=spot,karpenter.sh/nodepool=default\" --register-with-taints=\"karpenter.sh/unregistered:NoExecute\" --max-pods=110'
--//--
";

#[test]
fn al2_seed_user_data_runs_before_bootstrap() {
    let out = render(&seed_input(AmiFamily::Al2)).unwrap();
    let expected = format!(
        "MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=\"//\"

--//
Content-Type: text/x-shellscript; charset=\"us-ascii\"

#!/bin/bash
set -ex
export ENABLE_PREFIX_DELEGATION=true
export WARM_PREFIX_TARGET=1

{KARPENTER_AL2_PART}"
    );
    assert_eq!(out, expected);
    let prefix = out.find("ENABLE_PREFIX_DELEGATION=true").unwrap();
    let warm = out.find("WARM_PREFIX_TARGET=1").unwrap();
    let bootstrap = out.find("/etc/eks/bootstrap.sh").unwrap();
    assert!(prefix < bootstrap && warm < bootstrap);
    // The merged archive is itself valid MIME with exactly two parts.
    assert_eq!(mime::parse(&out).unwrap().len(), 2);
}

#[test]
fn al2_plain_script_becomes_a_part_before_bootstrap() {
    let mut input = seed_input(AmiFamily::Al2);
    input.custom_user_data = Some(
        "#!/bin/bash\nexport ENABLE_PREFIX_DELEGATION=true\nexport WARM_PREFIX_TARGET=1\n".into(),
    );
    let out = render(&input).unwrap();
    let expected = format!(
        "MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=\"//\"

--//
Content-Type: text/x-shellscript; charset=\"us-ascii\"

#!/bin/bash
export ENABLE_PREFIX_DELEGATION=true
export WARM_PREFIX_TARGET=1

{KARPENTER_AL2_PART}"
    );
    assert_eq!(out, expected);
}

#[test]
fn al2_without_user_data_has_only_karpenters_part() {
    let mut input = seed_input(AmiFamily::Al2);
    input.custom_user_data = None;
    let out = render(&input).unwrap();
    assert_eq!(
        out,
        format!(
            "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"//\"\n\n{KARPENTER_AL2_PART}"
        )
    );
    input.custom_user_data = Some(String::new());
    assert_eq!(render(&input).unwrap(), out);
}

#[test]
fn al2_passes_every_kubelet_setting_in_karpenters_order() {
    let mut input = seed_input(AmiFamily::Al2);
    input.custom_user_data = None;
    input.ca_bundle = None;
    let q = |s: &str| Quantity(s.into());
    input.kubelet = KubeletConfiguration {
        cluster_dns: vec![],
        max_pods: None,
        pods_per_core: Some(2),
        system_reserved: BTreeMap::from([("memory".into(), q("100Mi")), ("cpu".into(), q("100m"))]),
        kube_reserved: BTreeMap::from([("cpu".into(), q("200m"))]),
        eviction_hard: BTreeMap::from([
            ("nodefs.available".into(), "10%".into()),
            ("memory.available".into(), "5%".into()),
        ]),
        eviction_soft: BTreeMap::from([("memory.available".into(), "500Mi".into())]),
        eviction_soft_grace_period: BTreeMap::from([
            ("memory.available".into(), GoDuration::new("1m")),
            ("nodefs.available".into(), GoDuration::new("1m30s")),
        ]),
        eviction_max_pod_grace_period: Some(60),
        image_gc_high_threshold_percent: Some(85),
        image_gc_low_threshold_percent: Some(80),
        cpu_cfs_quota: Some(true),
    };
    input.taints = vec![taint("dedicated", Some("gpu"), "NoSchedule")];
    input.startup_taints = vec![taint("example.com/not-ready", None, "NoSchedule")];
    let script = al2::bootstrap_script(&input).unwrap();
    assert_eq!(
        script,
        "#!/bin/bash -xe
exec > >(tee /var/log/user-data.log|logger -t user-data -s 2>/dev/console) 2>&1
/etc/eks/bootstrap.sh 'avlos-stg' --apiserver-endpoint 'https://ABCDEF.gr7.us-east-1.eks.amazonaws.com' \\
--kubelet-extra-args '--node-labels=\"karpenter.sh/capacity-type=spot,karpenter.sh/nodepool=default\" \
--register-with-taints=\"dedicated=gpu:NoSchedule,example.com/not-ready:NoSchedule,karpenter.sh/unregistered:NoExecute\" \
--pods-per-core=2 --system-reserved=\"cpu=100m,memory=100Mi\" --kube-reserved=\"cpu=200m\" \
--eviction-hard=\"memory.available<5%,nodefs.available<10%\" --eviction-soft=\"memory.available<500Mi\" \
--eviction-soft-grace-period=\"memory.available=1m0s,nodefs.available=1m30s\" \
--eviction-max-pod-grace-period=60 --image-gc-high-threshold=85 --image-gc-low-threshold=80 \
--cpu-cfs-quota=true'"
    );
}

#[test]
fn al2_rejects_broken_mime_naming_the_field() {
    let mut input = seed_input(AmiFamily::Al2);
    input.custom_user_data = Some("MIME-Version: 1.0\nContent-Type: text/plain\n\nhi\n".into());
    assert_eq!(
        render(&input).unwrap_err().to_string(),
        "spec.userData: not valid MIME multipart: Content-Type is \"text/plain\", not multipart/*"
    );
    input.custom_user_data = Some(SEED_USER_DATA.replace("--BOUNDARY--", ""));
    let err = render(&input).unwrap_err().to_string();
    assert!(
        err.starts_with("spec.userData: not valid MIME multipart: no closing boundary"),
        "{err}"
    );
}

#[test]
fn al2_refuses_values_that_break_shell_quoting() {
    let mut input = seed_input(AmiFamily::Al2);
    input.cluster_name = "it's".into();
    assert_eq!(
        render(&input).unwrap_err().to_string(),
        "cluster name: \"it's\" cannot be embedded safely: contains a single quote"
    );
    let mut input = seed_input(AmiFamily::Al2);
    input.labels.insert("team".into(), "a,b".into());
    assert!(
        render(&input)
            .unwrap_err()
            .to_string()
            .starts_with("labels[team]:")
    );
}

#[test]
fn restricted_label_domains_are_dropped() {
    let labels = BTreeMap::from([
        (
            "node-restriction.kubernetes.io/team".to_string(),
            "a".to_string(),
        ),
        ("sub.node-restriction.kubernetes.io/x".into(), "b".into()),
        ("kops.k8s.io/instancegroup".into(), "c".into()),
        ("node.kubernetes.io/instance-type".into(), "m5.large".into()),
        ("team".into(), "d".into()),
        // Allowed in NodePool templates since Karpenter v1.10, refused by the kubelet's
        // --node-labels: set on the Node at registration instead.
        ("node-role.kubernetes.io/worker".into(), "".into()),
        ("example.k8s.io/tier".into(), "gold".into()),
        // The kubelet's own labels and domains stay.
        ("kubernetes.io/arch".into(), "amd64".into()),
        ("topology.kubernetes.io/zone".into(), "us-east-1a".into()),
        ("team.node.kubernetes.io/pool".into(), "x".into()),
        ("kubelet.kubernetes.io/role".into(), "y".into()),
        ("example.com/kubernetes.io-lookalike".into(), "z".into()),
    ]);
    assert_eq!(
        kubelet_labels(&labels),
        vec![
            ("example.com/kubernetes.io-lookalike", "z"),
            ("kubelet.kubernetes.io/role", "y"),
            ("kubernetes.io/arch", "amd64"),
            ("node.kubernetes.io/instance-type", "m5.large"),
            ("team", "d"),
            ("team.node.kubernetes.io/pool", "x"),
            ("topology.kubernetes.io/zone", "us-east-1a"),
        ]
    );
}

#[test]
fn taints_are_sorted_deduplicated_and_include_unregistered_once() {
    let mut input = seed_input(AmiFamily::Al2);
    input.taints = vec![
        taint("z", Some("1"), "NoSchedule"),
        taint("a", None, "NoExecute"),
        taint("z", Some("1"), "NoSchedule"),
    ];
    input.startup_taints = vec![taint(UNREGISTERED_TAINT_KEY, None, "NoExecute")];
    input.custom_user_data = None;
    let flags: Vec<String> = register_taints(&input)
        .iter()
        .map(taint_flag_value)
        .collect();
    assert_eq!(
        flags,
        [
            "a:NoExecute",
            "karpenter.sh/unregistered:NoExecute",
            "z=1:NoSchedule"
        ]
    );
    // Order of the input does not change the rendering.
    let mut reversed = input.clone();
    reversed.taints.reverse();
    for family in [AmiFamily::Al2, AmiFamily::Al2023, AmiFamily::Bottlerocket] {
        input.ami_family = family;
        reversed.ami_family = family;
        assert_eq!(
            render(&input).unwrap(),
            render(&reversed).unwrap(),
            "{family}"
        );
    }
}

const KARPENTER_NODE_CONFIG_PART: &str = "--//
Content-Type: application/node.eks.aws

# Karpenter Generated NodeConfig
apiVersion: node.eks.aws/v1alpha1
kind: NodeConfig
spec:
  cluster:
    apiServerEndpoint: https://ABCDEF.gr7.us-east-1.eks.amazonaws.com
    certificateAuthority: Q0EtQlVORExF
    cidr: 10.100.0.0/16
    name: avlos-stg
  kubelet:
    config:
      clusterDNS:
      - 10.100.0.10
      maxPods: 110
      registerWithTaints:
      - effect: NoExecute
        key: karpenter.sh/unregistered
    flags:
    - --node-labels=\"karpenter.sh/capacity-type=spot,karpenter.sh/nodepool=default\"
    - --register-with-taints=\"karpenter.sh/unregistered:NoExecute\"

--//--
";

#[test]
fn al2023_keeps_user_parts_before_karpenters_node_config() {
    let out = render(&seed_input(AmiFamily::Al2023)).unwrap();
    assert_eq!(
        out,
        format!(
            "MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=\"//\"

--//
Content-Type: text/x-shellscript; charset=\"us-ascii\"

#!/bin/bash
set -ex
export ENABLE_PREFIX_DELEGATION=true
export WARM_PREFIX_TARGET=1

{KARPENTER_NODE_CONFIG_PART}"
        )
    );
}

#[test]
fn al2023_detects_a_bare_node_config_or_script() {
    let mut input = seed_input(AmiFamily::Al2023);
    let user_config = "apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  kubelet:\n    config:\n      shutdownGracePeriod: 30s\n";
    input.custom_user_data = Some(user_config.into());
    let parts = mime::parse(&render(&input).unwrap()).unwrap();
    assert_eq!(parts.len(), 2);
    assert_eq!(
        parts[0],
        mime::Part::new(mime::CONTENT_TYPE_NODE_CONFIG, user_config)
    );
    assert!(
        parts[1]
            .body
            .starts_with("# Karpenter Generated NodeConfig\n")
    );

    input.custom_user_data = Some("#!/bin/bash\necho hello\n".into());
    let parts = mime::parse(&render(&input).unwrap()).unwrap();
    assert_eq!(
        parts[0].content_type(),
        Some(mime::CONTENT_TYPE_SHELL_SCRIPT)
    );

    // A MIME archive given as `Content-Type:` first is split, its NodeConfig kept first.
    input.custom_user_data = Some(format!(
        "Content-Type: multipart/mixed; boundary=\"X\"\n\n--X\nContent-Type: application/node.eks.aws\n\n{user_config}--X--\n"
    ));
    let parts = mime::parse(&render(&input).unwrap()).unwrap();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].body, user_config.trim_end_matches('\n'));
}

#[test]
fn al2023_needs_the_cluster_cidr_and_quotes_odd_values() {
    let mut input = seed_input(AmiFamily::Al2023);
    input.cluster_cidr = None;
    assert_eq!(
        render(&input).unwrap_err().to_string(),
        "cluster CIDR: required for amiFamily AL2023 but not known"
    );
    let mut input = seed_input(AmiFamily::Al2023);
    input.custom_user_data = None;
    input.cluster_name = "true".into();
    input.kubelet.system_reserved = BTreeMap::from([("cpu".into(), Quantity("100m".into()))]);
    input.kubelet.eviction_soft_grace_period =
        BTreeMap::from([("memory.available".into(), GoDuration::new("90s"))]);
    input.kubelet.cpu_cfs_quota = Some(false);
    let config = al2023::node_config(&input).unwrap();
    assert!(config.contains("    name: \"true\"\n"), "{config}");
    assert!(config.contains("      cpuCFSQuota: false\n"), "{config}");
    assert!(
        config.contains("      evictionSoftGracePeriod:\n        memory.available: 1m30s\n"),
        "{config}"
    );
    assert!(
        config.contains("      systemReserved:\n        cpu: 100m\n"),
        "{config}"
    );
    assert_eq!(al2023::scalar("a: b"), "\"a: b\"");
    assert_eq!(al2023::scalar("1.0"), "\"1.0\"");
    assert_eq!(al2023::scalar(""), "\"\"");
    assert_eq!(al2023::scalar("--x=\"y\""), "--x=\"y\"");
}

#[test]
fn custom_is_verbatim_and_windows_is_refused() {
    let mut input = seed_input(AmiFamily::Custom);
    assert_eq!(render(&input).unwrap(), SEED_USER_DATA);
    input.custom_user_data = None;
    assert_eq!(render(&input).unwrap(), "");
    input.ami_family = AmiFamily::Windows2022;
    assert_eq!(
        render(&input).unwrap_err().to_string(),
        "spec.amiFamily: userData for Windows2022 is not supported"
    );
}

#[test]
fn base64_matches_rfc_4648_vectors() {
    for (plain, encoded) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(encode_base64(plain.as_bytes()), encoded);
    }
    assert_eq!(encode_base64(&[0xfb, 0xff]), "+/8=");
}

/// What the e2e node simulator (`e2e/src/node_sim/userdata.rs`) reads to register a node, per
/// family. It recognises AL2 by `/etc/eks/bootstrap.sh` and collects `--node-labels=`,
/// `--register-with-taints=` (`key=value:Effect` or `key:Effect`, comma separated), `--max-pods=`
/// and `--use-max-pods false` from shell words, descending into the single-quoted
/// `--kubelet-extra-args` word; AL2023 by `kind: NodeConfig`, reading the `maxPods: N` line and
/// `- --flag=…` block-list items; Bottlerocket by a line starting with `[settings`, reading
/// `max-pods`, `node-labels."k" = "v"` and `node-taints."k" = ["value:Effect"]`. This test pins
/// those exact shapes so a change here that would break the simulator fails here first.
#[test]
fn output_has_the_shapes_the_e2e_node_simulator_parses() {
    let mut input = seed_input(AmiFamily::Al2);
    input.taints = vec![taint("dedicated", Some("gpu"), "NoSchedule")];
    let labels = "\"karpenter.sh/capacity-type=spot,karpenter.sh/nodepool=default\"";
    let taints = "\"dedicated=gpu:NoSchedule,karpenter.sh/unregistered:NoExecute\"";

    let al2 = render(&input).unwrap();
    assert!(al2.contains("/etc/eks/bootstrap.sh "));
    assert!(al2.contains(" \\\n--use-max-pods false \\\n"));
    assert!(al2.contains(&format!(
        "--kubelet-extra-args '--node-labels={labels} --register-with-taints={taints} --max-pods=110'"
    )));

    input.ami_family = AmiFamily::Al2023;
    let al2023 = render(&input).unwrap();
    assert!(al2023.contains("\nkind: NodeConfig\n"));
    assert!(al2023.contains("\n      maxPods: 110\n"));
    assert!(al2023.contains(&format!("\n    - --node-labels={labels}\n")));
    assert!(al2023.contains(&format!("\n    - --register-with-taints={taints}\n")));

    input.ami_family = AmiFamily::Bottlerocket;
    input.custom_user_data = None;
    let br = render(&input).unwrap();
    assert!(br.starts_with("[settings.kubernetes]\n"));
    assert!(br.contains("\nmax-pods = 110\n"));
    assert!(br.contains(
        "[settings.kubernetes.node-labels]\n\"karpenter.sh/capacity-type\" = \"spot\"\n\
         \"karpenter.sh/nodepool\" = \"default\"\n"
    ));
    assert!(br.contains(
        "[settings.kubernetes.node-taints]\ndedicated = [\"gpu:NoSchedule\"]\n\
         \"karpenter.sh/unregistered\" = [\":NoExecute\"]\n"
    ));
}

#[path = "tests_bottlerocket.rs"]
mod bottlerocket_tests;

use super::*;

fn taint(key: &str, value: Option<&str>, effect: &str) -> Taint {
    Taint {
        key: key.into(),
        value: value.map(str::to_string),
        effect: effect.into(),
        time_added: None,
    }
}

/// Karpenter's AL2 userData (MIME multipart, bootstrap.sh with quoted kubelet extra args).
const AL2_KARPENTER: &str = r#"MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="//"

--//
Content-Type: text/x-shellscript; charset="us-ascii"

#!/bin/bash -xe
exec > >(tee /var/log/user-data.log|logger -t user-data -s 2>/dev/console) 2>&1
/etc/eks/bootstrap.sh 'test-cluster' --apiserver-endpoint 'https://test-cluster' --b64-cluster-ca 'ca-bundle' \
--dns-cluster-ip '10.100.0.10' \
--use-max-pods false \
--kubelet-extra-args '--node-labels="karpenter.sh/capacity-type=on-demand,karpenter.sh/nodepool=default" --register-with-taints="karpenter.sh/unregistered:NoExecute" --max-pods=110'
--//--
"#;

#[test]
fn al2_bootstrap_in_mime() {
    let s = parse(AL2_KARPENTER);
    assert_eq!(s.family, AmiFamily::Al2);
    assert_eq!(s.max_pods, Some(110));
    assert_eq!(s.use_max_pods, Some(false));
    assert_eq!(s.labels["karpenter.sh/capacity-type"], "on-demand");
    assert_eq!(s.labels["karpenter.sh/nodepool"], "default");
    assert_eq!(
        s.taints,
        vec![taint("karpenter.sh/unregistered", None, "NoExecute")]
    );
    assert!(s.problems.is_empty(), "{:?}", s.problems);
}

#[test]
fn al2_plain_script_base64_and_space_separated_flags() {
    let script = "#!/bin/bash\n/etc/eks/bootstrap.sh e2e --kubelet-extra-args \
                  \"--max-pods 58 --node-labels=team=a,tier= --register-with-taints=dedicated=gpu:NoSchedule,spot:PreferNoSchedule\"\n";
    let s = parse_base64(&encode_base64(script.as_bytes()));
    assert_eq!(s.family, AmiFamily::Al2);
    assert_eq!(s.max_pods, Some(58));
    assert_eq!(s.labels["team"], "a");
    assert_eq!(s.labels["tier"], "");
    assert_eq!(
        s.taints,
        vec![
            taint("dedicated", Some("gpu"), "NoSchedule"),
            taint("spot", None, "PreferNoSchedule"),
        ]
    );
}

#[test]
fn kubelet_extra_args_environment_variable() {
    let script = "KUBELET_EXTRA_ARGS=\"--node-labels=a=b --max-pods=17\"\n\
                  /etc/eks/bootstrap.sh e2e --kubelet-extra-args \"$KUBELET_EXTRA_ARGS\"\n";
    let s = parse(script);
    assert_eq!(s.max_pods, Some(17));
    assert_eq!(s.labels["a"], "b");
}

#[test]
fn no_user_data_or_unrelated_script() {
    let s = parse("#!/bin/bash\necho hello # --max-pods=3\n");
    assert_eq!(s, KubeletSettings::default());
    let s = parse("");
    assert_eq!(s.family, AmiFamily::Unknown);
    assert_eq!(s.max_pods, None);
}

/// Karpenter's AL2023 userData: a nodeadm part (here base64-encoded inside MIME) next to a shell
/// part.
#[test]
fn al2023_nodeadm_node_config() {
    let node_config = r#"apiVersion: node.eks.aws/v1alpha1
kind: NodeConfig
spec:
  cluster:
    name: test-cluster
    apiServerEndpoint: https://example.com
    certificateAuthority: ca-bundle
    cidr: 10.100.0.0/16
  kubelet:
    config:
      clusterDNS:
      - 10.0.100.10
      maxPods: 42
    flags:
    - --node-labels="karpenter.sh/capacity-type=spot,karpenter.sh/nodepool=default"
    - "--register-with-taints=karpenter.sh/unregistered:NoExecute"
"#;
    let mime = format!(
        "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"BOUNDARY\"\r\n\r\n\
         --BOUNDARY\r\nContent-Type: text/x-shellscript\r\n\r\n#!/bin/bash\necho custom\r\n\
         --BOUNDARY\r\nContent-Type: application/node.eks.aws\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n\
         --BOUNDARY--\r\n",
        encode_base64(node_config.as_bytes())
    );
    let s = parse_base64(&encode_base64(mime.as_bytes()));
    assert_eq!(s.family, AmiFamily::Al2023);
    assert_eq!(s.max_pods, Some(42));
    assert_eq!(s.labels["karpenter.sh/capacity-type"], "spot");
    assert_eq!(s.labels["karpenter.sh/nodepool"], "default");
    assert_eq!(
        s.taints,
        vec![taint("karpenter.sh/unregistered", None, "NoExecute")]
    );
    assert!(s.problems.is_empty(), "{:?}", s.problems);
}

#[test]
fn al2023_max_pods_flag_overrides_config() {
    let yaml = "apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  kubelet:\n    config:\n      maxPods: 42\n    flags:\n    - --max-pods=7\n";
    assert_eq!(parse(yaml).max_pods, Some(7));
}

#[test]
fn bottlerocket_toml() {
    let toml = r#"[settings.kubernetes]
api-server = "https://example.com"
cluster-name = "test-cluster"
max-pods = 110

[settings.kubernetes.node-labels]
"karpenter.sh/capacity-type" = "on-demand"
"karpenter.sh/nodepool" = "default"

[settings.kubernetes.node-taints]
"karpenter.sh/unregistered" = [":NoExecute"]
"dedicated" = "gpu:NoSchedule"
"#;
    let s = parse_base64(&encode_base64(toml.as_bytes()));
    assert_eq!(s.family, AmiFamily::Bottlerocket);
    assert_eq!(s.max_pods, Some(110));
    assert_eq!(s.labels["karpenter.sh/nodepool"], "default");
    assert_eq!(s.labels["karpenter.sh/capacity-type"], "on-demand");
    assert_eq!(
        s.taints,
        vec![
            taint("karpenter.sh/unregistered", None, "NoExecute"),
            taint("dedicated", Some("gpu"), "NoSchedule"),
        ]
    );
}

#[test]
fn bottlerocket_dotted_keys() {
    let toml = "[settings]\nkubernetes.max-pods = 29\nkubernetes.node-labels.\"a.io/b\" = \"c\"\n";
    let s = parse(toml);
    assert_eq!(s.max_pods, Some(29));
    assert_eq!(s.labels["a.io/b"], "c");
}

#[test]
fn odd_data_is_noted_not_fatal() {
    let s = parse_base64("%%% not base64 %%%");
    assert_eq!(s.max_pods, None);
    assert_eq!(s.problems.len(), 1);
    let s = parse("--max-pods=lots --node-labels=novalue --register-with-taints=k=v:Sometimes");
    assert_eq!(s.max_pods, None);
    assert!(s.labels.is_empty());
    assert!(s.taints.is_empty());
    assert_eq!(s.problems.len(), 3, "{:?}", s.problems);
    let s = parse("MIME-Version: 1.0\nContent-Type: multipart/mixed\n\nbody");
    assert_eq!(s.problems.len(), 1, "{:?}", s.problems);
}

#[test]
fn shell_words_quoting() {
    assert_eq!(
        shell_words("a 'b c' \"d \\\"e\\\"\" f\\ g \\\n h # comment\ni"),
        vec!["a", "b c", "d \"e\"", "f g", "h", "i"]
    );
    assert_eq!(shell_words("x=''"), vec!["x="]);
}

#[test]
fn base64_round_trip() {
    for text in ["", "a", "ab", "abc", "abcd", "hello, world\n"] {
        let enc = encode_base64(text.as_bytes());
        assert_eq!(decode_base64(&enc).unwrap(), text.as_bytes(), "{enc}");
    }
    assert_eq!(encode_base64(b"hello"), "aGVsbG8=");
    assert_eq!(decode_base64("aGVs\nbG8=").unwrap(), b"hello");
}

#[test]
fn taint_syntax() {
    assert_eq!(
        parse_taint("k=v:NoExecute"),
        Some(taint("k", Some("v"), "NoExecute"))
    );
    assert_eq!(
        parse_taint("k:NoSchedule"),
        Some(taint("k", None, "NoSchedule"))
    );
    assert_eq!(parse_taint("k=v"), None);
    assert_eq!(parse_taint(":NoSchedule"), None);
}

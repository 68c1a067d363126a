//! AL2023: Karpenter's nodeadm `NodeConfig` as the last part of a MIME archive, after the
//! user's parts (Karpenter's `Nodeadm.Script`). nodeadm merges every `NodeConfig` it finds.

use std::collections::BTreeMap;

use super::mime::{self, CONTENT_TYPE_NODE_CONFIG, CONTENT_TYPE_SHELL_SCRIPT, Part};
use super::{
    UserDataError, UserDataInput, canonical_grace_periods, check_labels_and_taints,
    node_labels_flag, register_taints, register_taints_flag,
};
use crate::aws::nodeclass::AmiFamily;

/// nodeadm's API version.
pub const NODE_CONFIG_API_VERSION: &str = "node.eks.aws/v1alpha1";

/// Renders the AL2023 MIME archive.
pub fn render(input: &UserDataInput) -> Result<String, UserDataError> {
    let mut parts = user_parts(input.custom_user_data.as_deref().unwrap_or(""))?;
    parts.push(Part::new(CONTENT_TYPE_NODE_CONFIG, node_config(input)?));
    mime::serialize(&parts)
}

/// The user's parts: a MIME archive (starts with `MIME-Version:` or `Content-Type:`) is split
/// into its parts; otherwise the text is one part, a `NodeConfig` when it reads as a YAML
/// mapping and a shell script when not.
///
/// Karpenter decides "YAML mapping" with a YAML parser; here the first line that is not blank,
/// a comment or `---` must look like `key:` (a shell script's commands do not).
pub fn user_parts(user_data: &str) -> Result<Vec<Part>, UserDataError> {
    if user_data.is_empty() {
        return Ok(Vec::new());
    }
    if mime::starts_with_header(user_data, &["MIME-Version:", "Content-Type:"]) {
        return mime::parse(user_data);
    }
    let content_type = if looks_like_yaml_mapping(user_data) {
        CONTENT_TYPE_NODE_CONFIG
    } else {
        CONTENT_TYPE_SHELL_SCRIPT
    };
    Ok(vec![Part::new(content_type, user_data)])
}

fn looks_like_yaml_mapping(text: &str) -> bool {
    let Some(first) = text.lines().map(str::trim_end).find(|l| {
        let t = l.trim_start();
        !t.is_empty() && !t.starts_with('#') && t != "---"
    }) else {
        return false;
    };
    let Some((key, rest)) = first.split_once(':') else {
        return false;
    };
    !key.is_empty()
        && !key.starts_with([' ', '\t'])
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | '"'))
        && (rest.is_empty() || rest.starts_with(' '))
}

/// Karpenter's `NodeConfig` YAML, starting with `# Karpenter Generated NodeConfig`. Keys are
/// sorted as Go's YAML encoder sorts them; empty sections are left out.
pub fn node_config(input: &UserDataInput) -> Result<String, UserDataError> {
    check_labels_and_taints(input)?;
    let cidr = input
        .cluster_cidr
        .as_deref()
        .filter(|c| !c.is_empty())
        .ok_or(UserDataError::Missing {
            field: "cluster CIDR",
            family: AmiFamily::Al2023,
        })?;
    let mut y = String::from("# Karpenter Generated NodeConfig\n");
    y.push_str(&format!(
        "apiVersion: {NODE_CONFIG_API_VERSION}\nkind: NodeConfig\n"
    ));
    y.push_str("spec:\n  cluster:\n");
    y.push_str(&format!(
        "    apiServerEndpoint: {}\n",
        scalar(&input.cluster_endpoint)
    ));
    if let Some(ca) = input.ca_bundle.as_deref().filter(|c| !c.is_empty()) {
        y.push_str(&format!("    certificateAuthority: {}\n", scalar(ca)));
    }
    y.push_str(&format!("    cidr: {}\n", scalar(cidr)));
    y.push_str(&format!("    name: {}\n", scalar(&input.cluster_name)));
    y.push_str("  kubelet:\n    config:\n");
    for (key, value) in kubelet_config(input) {
        match value {
            Value::Scalar(s) => y.push_str(&format!("      {key}: {s}\n")),
            Value::List(items) => {
                y.push_str(&format!("      {key}:\n"));
                for i in items {
                    y.push_str(&format!("      - {}\n", scalar(&i)));
                }
            }
            Value::Map(m) => {
                y.push_str(&format!("      {key}:\n"));
                for (k, v) in m {
                    y.push_str(&format!("        {}: {}\n", scalar(&k), scalar(&v)));
                }
            }
            Value::Taints => {
                y.push_str(&format!("      {key}:\n"));
                for t in register_taints(input) {
                    y.push_str(&format!("      - effect: {}\n", scalar(&t.effect)));
                    y.push_str(&format!("        key: {}\n", scalar(&t.key)));
                    if let Some(v) = t.value.as_deref().filter(|v| !v.is_empty()) {
                        y.push_str(&format!("        value: {}\n", scalar(v)));
                    }
                }
            }
        }
    }
    y.push_str("    flags:\n");
    for flag in node_labels_flag(input)
        .into_iter()
        .chain([register_taints_flag(input)])
    {
        y.push_str(&format!("    - {}\n", scalar(&flag)));
    }
    Ok(y)
}

enum Value {
    Scalar(String),
    List(Vec<String>),
    Map(BTreeMap<String, String>),
    Taints,
}

/// `kubelet.config`: the kubelet settings under their KubeletConfiguration names, plus
/// `registerWithTaints`, sorted by key.
fn kubelet_config(input: &UserDataInput) -> BTreeMap<&'static str, Value> {
    let k = &input.kubelet;
    let mut c = BTreeMap::new();
    if !k.cluster_dns.is_empty() {
        c.insert("clusterDNS", Value::List(k.cluster_dns.clone()));
    }
    let int = |n: i32| Value::Scalar(n.to_string());
    let opt = [
        ("maxPods", k.max_pods),
        ("podsPerCore", k.pods_per_core),
        ("evictionMaxPodGracePeriod", k.eviction_max_pod_grace_period),
        (
            "imageGCHighThresholdPercent",
            k.image_gc_high_threshold_percent,
        ),
        (
            "imageGCLowThresholdPercent",
            k.image_gc_low_threshold_percent,
        ),
    ];
    for (name, v) in opt {
        if let Some(n) = v {
            c.insert(name, int(n));
        }
    }
    if let Some(b) = k.cpu_cfs_quota {
        c.insert("cpuCFSQuota", Value::Scalar(b.to_string()));
    }
    let quantities =
        |m: &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>| {
            Value::Map(m.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect())
        };
    if !k.system_reserved.is_empty() {
        c.insert("systemReserved", quantities(&k.system_reserved));
    }
    if !k.kube_reserved.is_empty() {
        c.insert("kubeReserved", quantities(&k.kube_reserved));
    }
    if !k.eviction_hard.is_empty() {
        c.insert("evictionHard", Value::Map(k.eviction_hard.clone()));
    }
    if !k.eviction_soft.is_empty() {
        c.insert("evictionSoft", Value::Map(k.eviction_soft.clone()));
    }
    if !k.eviction_soft_grace_period.is_empty() {
        let m = canonical_grace_periods(k).into_iter().collect();
        c.insert("evictionSoftGracePeriod", Value::Map(m));
    }
    c.insert("registerWithTaints", Value::Taints);
    c
}

/// A YAML scalar: plain when that reads back as the same string, double-quoted otherwise.
pub fn scalar(s: &str) -> String {
    if is_plain_safe(s) {
        return s.to_string();
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn is_plain_safe(s: &str) -> bool {
    const RESERVED: &[&str] = &[
        "true", "false", "null", "yes", "no", "on", "off", "y", "n", "~",
    ];
    let Some(first) = s.chars().next() else {
        return false;
    };
    if s.trim() != s
        || s.chars().any(|c| c.is_control())
        || s.contains(": ")
        || s.contains(" #")
        || s.ends_with(':')
        || RESERVED.contains(&s.to_ascii_lowercase().as_str())
        || s.parse::<f64>().is_ok()
        || s.starts_with("0x")
        || s.starts_with("0o")
    {
        return false;
    }
    // Indicators may not start a plain scalar, except `-`/`?`/`:` followed by a non-space.
    match first {
        '-' | '?' | ':' => s.chars().nth(1).is_some_and(|c| c != ' '),
        ',' | '[' | ']' | '{' | '}' | '#' | '&' | '*' | '!' | '|' | '>' | '\'' | '"' | '%'
        | '@' | '`' => false,
        _ => true,
    }
}

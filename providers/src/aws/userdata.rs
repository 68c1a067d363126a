//! The userData Karpenter's AWS provider gives an instance, as pure functions.
//!
//! [`render`] turns a [`UserDataInput`] (cluster facts, the AMI family, the resolved kubelet
//! settings, the node's labels and taints, and the EC2NodeClass's `spec.userData`) into the
//! document the launch template carries, following Karpenter v1's bootstrappers:
//!
//! - **AL2** ([`al2`]): a MIME multipart archive (boundary `//`): the user's parts first (a plain
//!   script becomes a `text/x-shellscript` part, so it runs before bootstrap), then Karpenter's
//!   `/etc/eks/bootstrap.sh` script;
//! - **AL2023** ([`al2023`]): a MIME archive whose last part is Karpenter's nodeadm `NodeConfig`
//!   (`application/node.eks.aws`); the user's parts (scripts, their own `NodeConfig`) come first;
//! - **Bottlerocket** ([`bottlerocket`]): the user's TOML with Karpenter's
//!   `[settings.kubernetes]` keys merged over it;
//! - **Custom**: the user's userData verbatim.
//!
//! The output is plain text; EC2 wants it base64-encoded ([`encode_base64`]), which is the
//! launch-template layer's job. Labels and taints are emitted sorted so the same input always
//! renders the same bytes (a changed rendering would look like drift).

pub mod al2;
pub mod al2023;
pub mod bottlerocket;
pub mod mime;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Taint;
use karpenter_core::api::duration::{format_go_duration, parse_go_duration};
use karpenter_core::api::kubelet::KubeletConfiguration;

use super::nodeclass::AmiFamily;

/// Field path of the user's userData, used in error messages.
pub const USER_DATA_FIELD: &str = "spec.userData";

/// The taint every Karpenter node registers with until Karpenter has initialised it
/// (`karpenter.sh/unregistered:NoExecute`).
pub const UNREGISTERED_TAINT_KEY: &str = "karpenter.sh/unregistered";

/// Everything the userData depends on.
#[derive(Clone, Debug, PartialEq)]
pub struct UserDataInput {
    /// The EKS cluster name (`settings.clusterName`).
    pub cluster_name: String,
    /// The API server URL (`settings.clusterEndpoint` or discovered).
    pub cluster_endpoint: String,
    /// The cluster CA bundle, base64 as EKS returns it; `None` lets the AMI look it up.
    pub ca_bundle: Option<String>,
    /// The service CIDR (required by AL2023's `NodeConfig`, unused elsewhere).
    pub cluster_cidr: Option<String>,
    /// Decides the format.
    pub ami_family: AmiFamily,
    /// The resolved kubelet settings (`EC2NodeClass.spec.kubelet`, with `maxPods` filled in by
    /// the caller where Karpenter computes it per instance type).
    pub kubelet: KubeletConfiguration,
    /// The node's labels (NodePool template labels, `karpenter.sh/nodepool`,
    /// `karpenter.sh/capacity-type`, …).
    pub labels: BTreeMap<String, String>,
    /// `NodeClaim.spec.taints`.
    pub taints: Vec<Taint>,
    /// `NodeClaim.spec.startupTaints`; registered with the kubelet like `taints`.
    pub startup_taints: Vec<Taint>,
    /// `EC2NodeClass.spec.userData`, as written in the manifest.
    pub custom_user_data: Option<String>,
}

/// Why userData could not be rendered. Each message names the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserDataError {
    /// The user's userData claims to be MIME but cannot be read as a multipart archive.
    #[error("spec.userData: not valid MIME multipart: {0}")]
    InvalidMime(String),
    /// Bottlerocket userData that the TOML merge cannot read.
    #[error("spec.userData: not valid TOML: line {line}: {reason}")]
    InvalidToml {
        /// 1-based line in the user's userData.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A required cluster fact is missing (e.g. the service CIDR for AL2023).
    #[error("{field}: required for amiFamily {family} but not known")]
    Missing {
        /// The missing input, e.g. `cluster CIDR`.
        field: &'static str,
        /// The AMI family that needs it.
        family: AmiFamily,
    },
    /// A value that would break the quoting of the generated script or document.
    #[error("{field}: {value:?} cannot be embedded safely: {reason}")]
    Unsafe {
        /// Which input holds the value.
        field: String,
        /// The value.
        value: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The AMI family has no userData renderer here (the Windows families).
    #[error("spec.amiFamily: userData for {0} is not supported")]
    UnsupportedFamily(AmiFamily),
}

/// Renders the userData for `input.ami_family` (plain text, not base64).
pub fn render(input: &UserDataInput) -> Result<String, UserDataError> {
    match input.ami_family {
        AmiFamily::Al2 => al2::render(input),
        AmiFamily::Al2023 => al2023::render(input),
        AmiFamily::Bottlerocket => bottlerocket::render(input),
        AmiFamily::Custom => Ok(input.custom_user_data.clone().unwrap_or_default()),
        family @ (AmiFamily::Windows2019 | AmiFamily::Windows2022) => {
            Err(UserDataError::UnsupportedFamily(family))
        }
    }
}

/// Labels in the `kubernetes.io` / `k8s.io` domains the kubelet accepts in `--node-labels`
/// (its `IsKubeletLabel`): these keys, and the `kubelet.kubernetes.io` and
/// `node.kubernetes.io` domains with their subdomains.
const KUBELET_LABELS: &[&str] = &[
    "kubernetes.io/hostname",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "kubernetes.io/os",
    "kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/arch",
];

fn in_domain(domain: &str, parent: &str) -> bool {
    domain == parent || domain.ends_with(&format!(".{parent}"))
}

/// Whether the kubelet may set `key` on itself: outside the `kubernetes.io` and `k8s.io`
/// domains anything goes; inside them only its own labels.
fn kubelet_may_set(key: &str) -> bool {
    let domain = key.split_once('/').map_or("", |(d, _)| d);
    if !(in_domain(domain, "kubernetes.io") || in_domain(domain, "k8s.io")) {
        return true;
    }
    KUBELET_LABELS.contains(&key)
        || in_domain(domain, "kubelet.kubernetes.io")
        || in_domain(domain, "node.kubernetes.io")
}

/// The labels the kubelet may set on itself, sorted. Left out, as Karpenter does: the
/// `node-restriction.kubernetes.io` and `kops.k8s.io` domains (the NodeRestriction admission
/// plugin would refuse the registration), and any other `kubernetes.io` / `k8s.io` label the
/// kubelet does not own (it refuses to start with one in `--node-labels`; NodePool templates
/// may carry such labels since Karpenter v1.10, and the controller puts them on the Node at
/// registration instead).
pub fn kubelet_labels(labels: &BTreeMap<String, String>) -> Vec<(&str, &str)> {
    labels
        .iter()
        .filter(|(k, _)| {
            let domain = k.split_once('/').map_or("", |(d, _)| d);
            !(in_domain(domain, "node-restriction.kubernetes.io")
                || in_domain(domain, "kops.k8s.io"))
                && kubelet_may_set(k)
        })
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// The taints the kubelet registers with: `taints`, then `startupTaints`, plus
/// `karpenter.sh/unregistered:NoExecute` unless a taint with that key and effect is already
/// there (as Karpenter v1 does); duplicates removed, sorted by key, effect and value.
pub fn register_taints(input: &UserDataInput) -> Vec<Taint> {
    let mut taints: Vec<Taint> = input
        .taints
        .iter()
        .chain(&input.startup_taints)
        .map(|t| Taint {
            time_added: None,
            ..t.clone()
        })
        .collect();
    if !taints
        .iter()
        .any(|t| t.key == UNREGISTERED_TAINT_KEY && t.effect == "NoExecute")
    {
        taints.push(Taint {
            key: UNREGISTERED_TAINT_KEY.into(),
            effect: "NoExecute".into(),
            value: None,
            time_added: None,
        });
    }
    let sort_key = |t: &Taint| (t.key.clone(), t.effect.clone(), t.value.clone());
    taints.sort_by_key(sort_key);
    taints.dedup_by(|a, b| sort_key(a) == sort_key(b));
    taints
}

/// A taint in the kubelet's `--register-with-taints` syntax: `key=value:Effect`, or
/// `key:Effect` without a value (Kubernetes' `Taint.ToString`).
pub fn taint_flag_value(t: &Taint) -> String {
    match t.value.as_deref() {
        Some(v) if !v.is_empty() => format!("{}={v}:{}", t.key, t.effect),
        _ => format!("{}:{}", t.key, t.effect),
    }
}

/// `--node-labels="k=v,…"` (Go's `%q` of the sorted list), or `None` without labels.
fn node_labels_flag(input: &UserDataInput) -> Option<String> {
    let labels = kubelet_labels(&input.labels);
    (!labels.is_empty()).then(|| {
        let list: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("--node-labels={}", go_quote(&list.join(",")))
    })
}

/// `--register-with-taints="…"` for [`register_taints`] (never empty: the unregistered taint).
fn register_taints_flag(input: &UserDataInput) -> String {
    let list: Vec<String> = register_taints(input)
        .iter()
        .map(taint_flag_value)
        .collect();
    format!("--register-with-taints={}", go_quote(&list.join(",")))
}

/// Soft-eviction grace periods in Go's canonical Duration form ("1m" → "1m0s"): Karpenter
/// prints them with Duration.String for AL2 and marshals them as metav1.Duration for AL2023.
/// Values that do not parse are passed through for the kubelet to reject.
fn canonical_grace_periods(k: &KubeletConfiguration) -> Vec<(String, String)> {
    k.eviction_soft_grace_period
        .iter()
        .map(|(signal, d)| {
            let text = parse_go_duration(d.as_str())
                .map(format_go_duration)
                .unwrap_or_else(|_| d.as_str().to_string());
            (signal.clone(), text)
        })
        .collect()
}

/// Go's `%q` for the characters that can occur in kubelet flag values.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Refuses values that contain characters which would end a quoted string or line in the
/// generated document (`'` in AL2's single-quoted shell words, newlines anywhere).
fn check_safe(field: &str, value: &str, forbidden: &[char]) -> Result<(), UserDataError> {
    if let Some(c) = value
        .chars()
        .find(|c| forbidden.contains(c) || c.is_control())
    {
        return Err(UserDataError::Unsafe {
            field: field.to_string(),
            value: value.to_string(),
            reason: if c == '\'' {
                "contains a single quote"
            } else if c == '"' {
                "contains a double quote"
            } else {
                "contains a control character"
            },
        });
    }
    Ok(())
}

/// Checks labels and taints: label keys/values and taint parts end up inside quoted shell
/// words, YAML scalars and TOML strings.
fn check_labels_and_taints(input: &UserDataInput) -> Result<(), UserDataError> {
    for (k, v) in &input.labels {
        check_safe("labels", k, &['\'', '"', '\\', ',', '='])?;
        check_safe(&format!("labels[{k}]"), v, &['\'', '"', '\\', ','])?;
    }
    for t in input.taints.iter().chain(&input.startup_taints) {
        check_safe("taints", &t.key, &['\'', '"', '\\', ',', '=', ':'])?;
        if let Some(v) = &t.value {
            check_safe(
                &format!("taints[{}].value", t.key),
                v,
                &['\'', '"', '\\', ',', ':'],
            )?;
        }
        check_safe(
            &format!("taints[{}].effect", t.key),
            &t.effect,
            &['\'', '"'],
        )?;
    }
    Ok(())
}

/// Standard base64 with padding, as EC2 wants userData.
pub fn encode_base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests;

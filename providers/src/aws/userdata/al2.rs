//! AL2: the user's userData merged with Karpenter's `/etc/eks/bootstrap.sh` script into one
//! MIME archive (Karpenter's `EKS.Script`).
//!
//! The user's parts come first, so a user script (e.g. one exporting `ENABLE_PREFIX_DELEGATION`
//! for the VPC CNI) runs before the node bootstraps.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::mime::{self, CONTENT_TYPE_SHELL_SCRIPT, Part};
use super::{
    UserDataError, UserDataInput, canonical_grace_periods, check_labels_and_taints, check_safe,
    go_quote, node_labels_flag, register_taints_flag,
};

/// Renders the AL2 MIME archive.
pub fn render(input: &UserDataInput) -> Result<String, UserDataError> {
    let mut parts = user_parts(input.custom_user_data.as_deref().unwrap_or(""))?;
    parts.push(Part::new(
        CONTENT_TYPE_SHELL_SCRIPT,
        bootstrap_script(input)?,
    ));
    mime::serialize(&parts)
}

/// The user's parts: a MIME archive (starts with `MIME-Version:`) is split into its parts; any
/// other non-empty text becomes one shell-script part.
pub fn user_parts(user_data: &str) -> Result<Vec<Part>, UserDataError> {
    if user_data.is_empty() {
        Ok(Vec::new())
    } else if mime::starts_with_header(user_data, &["MIME-Version:"]) {
        mime::parse(user_data)
    } else {
        Ok(vec![Part::new(CONTENT_TYPE_SHELL_SCRIPT, user_data)])
    }
}

/// Karpenter's bootstrap script. Arguments to `bootstrap.sh` are passed without `=` (the script
/// does not parse `--flag=value`); each extra argument goes on its own continued line.
pub fn bootstrap_script(input: &UserDataInput) -> Result<String, UserDataError> {
    check_safe("cluster name", &input.cluster_name, &['\''])?;
    check_safe("cluster endpoint", &input.cluster_endpoint, &['\''])?;
    check_labels_and_taints(input)?;
    let mut s = String::from("#!/bin/bash -xe\n");
    s.push_str("exec > >(tee /var/log/user-data.log|logger -t user-data -s 2>/dev/console) 2>&1\n");
    s.push_str(&format!(
        "/etc/eks/bootstrap.sh '{}' --apiserver-endpoint '{}'",
        input.cluster_name, input.cluster_endpoint
    ));
    if let Some(ca) = &input.ca_bundle {
        check_safe("cluster CA bundle", ca, &['\''])?;
        s.push_str(&format!(" --b64-cluster-ca '{ca}'"));
    }
    let k = &input.kubelet;
    if let Some(dns) = k.cluster_dns.first() {
        check_safe("kubelet.clusterDNS", dns, &['\''])?;
        s.push_str(&format!(" \\\n--dns-cluster-ip '{dns}'"));
    }
    if k.max_pods.is_some() {
        // Otherwise bootstrap.sh sets --max-pods from its ENI table, overriding ours.
        s.push_str(" \\\n--use-max-pods false");
    }
    let args = kubelet_extra_args(input)?;
    s.push_str(&format!(" \\\n--kubelet-extra-args '{}'", args.join(" ")));
    Ok(s)
}

/// The kubelet flags Karpenter passes through `--kubelet-extra-args`, in Karpenter's order.
/// Map-valued settings are sorted by key (Karpenter iterates a Go map, so its order varies).
pub fn kubelet_extra_args(input: &UserDataInput) -> Result<Vec<String>, UserDataError> {
    let k = &input.kubelet;
    let mut args: Vec<String> = node_labels_flag(input).into_iter().collect();
    args.push(register_taints_flag(input));
    if let Some(n) = k.max_pods {
        args.push(format!("--max-pods={n}"));
    }
    if let Some(n) = k.pods_per_core {
        args.push(format!("--pods-per-core={n}"));
    }
    let joined = |name: &str, pairs: Vec<(String, String)>, sep: &str| {
        (!pairs.is_empty()).then(|| {
            let list: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}{sep}{v}")).collect();
            format!("{name}={}", go_quote(&list.join(",")))
        })
    };
    let grace = canonical_grace_periods(k);
    args.extend(joined(
        "--system-reserved",
        quantity_pairs(&k.system_reserved),
        "=",
    ));
    args.extend(joined(
        "--kube-reserved",
        quantity_pairs(&k.kube_reserved),
        "=",
    ));
    args.extend(joined(
        "--eviction-hard",
        string_pairs(&k.eviction_hard),
        "<",
    ));
    args.extend(joined(
        "--eviction-soft",
        string_pairs(&k.eviction_soft),
        "<",
    ));
    args.extend(joined("--eviction-soft-grace-period", grace, "="));
    if let Some(n) = k.eviction_max_pod_grace_period {
        args.push(format!("--eviction-max-pod-grace-period={n}"));
    }
    if let Some(n) = k.image_gc_high_threshold_percent {
        args.push(format!("--image-gc-high-threshold={n}"));
    }
    if let Some(n) = k.image_gc_low_threshold_percent {
        args.push(format!("--image-gc-low-threshold={n}"));
    }
    if let Some(b) = k.cpu_cfs_quota {
        args.push(format!("--cpu-cfs-quota={b}"));
    }
    for a in &args {
        // The whole list sits inside one single-quoted shell word.
        check_safe("kubelet", a, &['\''])?;
    }
    Ok(args)
}

fn quantity_pairs(m: &BTreeMap<String, Quantity>) -> Vec<(String, String)> {
    m.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect()
}

fn string_pairs(m: &BTreeMap<String, String>) -> Vec<(String, String)> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

//! AMI aliases (`al2023@latest`): the AMI family and the SSM parameters Karpenter reads to find
//! the EKS-optimized images, and the plan that says how a node class's AMIs are looked up.

use karpenter_core::labels;

use super::images::{ImageQueryPlan, Requirement, image_queries};
use super::{ResolveError, check_terms};
use crate::aws::nodeclass::{ALIAS_VERSION_LATEST, Alias, AmiFamily, AmiSelectorTerm};

const FIELD: &str = "spec.amiSelectorTerms";

/// The flavour of an EKS-optimized image: which instance types it serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Variant {
    /// No accelerator drivers: instances without GPUs or accelerators.
    Standard,
    /// NVIDIA drivers: instances with GPUs.
    Nvidia,
    /// AWS Neuron drivers: Inferentia/Trainium instances.
    Neuron,
}

impl Variant {
    /// The SSM path segment AL2023 uses (`standard`, `nvidia`, `neuron`).
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Standard => "standard",
            Variant::Nvidia => "nvidia",
            Variant::Neuron => "neuron",
        }
    }

    /// The instance-type requirements of the variant, as Karpenter's `Variant.Requirements`
    /// (the architecture is added from the image itself).
    pub fn requirements(self) -> Vec<Requirement> {
        match self {
            Variant::Standard => vec![
                Requirement::does_not_exist(labels::aws::INSTANCE_ACCELERATOR_COUNT),
                Requirement::does_not_exist(labels::aws::INSTANCE_GPU_COUNT),
            ],
            Variant::Nvidia => vec![Requirement::exists(labels::aws::INSTANCE_GPU_COUNT)],
            Variant::Neuron => vec![Requirement::exists(labels::aws::INSTANCE_ACCELERATOR_COUNT)],
        }
    }
}

/// One SSM parameter holding an image id, and the instance types that image serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SsmParameter {
    /// Full parameter name.
    pub name: String,
    /// One requirement set per variant the image serves (without the architecture).
    pub requirement_sets: Vec<Vec<Requirement>>,
    /// True for `latest` aliases: the value changes with each release, so the SDK layer should
    /// not cache it forever (Karpenter's `IsMutable`).
    pub mutable: bool,
}

/// What an alias resolves through: its family and the SSM parameters to read. Parameters that
/// do not exist (a variant not published for that version) are skipped, as in Karpenter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AliasQuery {
    /// Field path of the alias (`spec.amiSelectorTerms[0].alias`).
    pub field: String,
    /// The parsed alias; its family is the node class's AMI family.
    pub alias: Alias,
    /// The parameters to read.
    pub parameters: Vec<SsmParameter>,
}

/// How a node class's AMIs are found: through an alias's SSM parameters, or by
/// `DescribeImages` queries built from the selector terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AmiPlan {
    /// An alias term (exclusive with all other terms).
    Alias(AliasQuery),
    /// Ordinary selector terms.
    Terms(ImageQueryPlan),
}

/// Parses `spec.amiSelectorTerms[index].alias`, naming the field on error.
pub fn parse_alias(node_class: &str, index: usize, text: &str) -> Result<Alias, ResolveError> {
    Alias::parse(text).map_err(|reason| ResolveError::InvalidAlias {
        node_class: node_class.to_string(),
        field: alias_field(index),
        alias: text.to_string(),
        reason,
    })
}

fn alias_field(index: usize) -> String {
    format!("{FIELD}[{index}].alias")
}

/// The SSM parameters of an alias for a cluster on Kubernetes `k8s_version` (`1.30`).
/// `index` is the alias term's position, for error messages.
pub fn alias_query(
    node_class: &str,
    index: usize,
    alias: &Alias,
    k8s_version: &str,
) -> Result<AliasQuery, ResolveError> {
    let field = alias_field(index);
    if !is_major_minor(k8s_version) {
        return Err(ResolveError::InvalidKubernetesVersion {
            node_class: node_class.to_string(),
            field,
            version: k8s_version.to_string(),
        });
    }
    let latest = alias.version == ALIAS_VERSION_LATEST;
    let param = |name: String, variants: &[Variant]| SsmParameter {
        name,
        requirement_sets: variants.iter().map(|v| v.requirements()).collect(),
        mutable: latest,
    };
    let k = k8s_version;
    let v = alias.version.as_str();
    use Variant::*;
    let parameters = match alias.family {
        AmiFamily::Al2023 => {
            // x86_64 has standard, nvidia and neuron builds; arm64 standard and (newer
            // releases) nvidia. Absent parameters are skipped by the SDK layer.
            let combos = [
                ("x86_64", Standard),
                ("x86_64", Nvidia),
                ("x86_64", Neuron),
                ("arm64", Standard),
                ("arm64", Nvidia),
            ];
            combos
                .iter()
                .map(|&(arch, variant)| {
                    let leaf = if latest {
                        "recommended".to_string()
                    } else {
                        format!("amazon-eks-node-al2023-{arch}-{}-{k}-{v}", variant.as_str())
                    };
                    param(
                        format!(
                            "/aws/service/eks/optimized-ami/{k}/amazon-linux-2023/{arch}/{}/{leaf}/image_id",
                            variant.as_str()
                        ),
                        &[variant],
                    )
                })
                .collect()
        }
        AmiFamily::Al2 => {
            // The GPU image carries both the NVIDIA and the Neuron drivers.
            let combos: [(&str, &[Variant]); 3] = [
                ("", &[Standard]),
                ("-arm64", &[Standard]),
                ("-gpu", &[Neuron, Nvidia]),
            ];
            combos
                .iter()
                .map(|&(suffix, variants)| {
                    let leaf = if latest {
                        "recommended".to_string()
                    } else {
                        format!("amazon-eks{suffix}-node-{k}-{v}")
                    };
                    param(
                        format!(
                            "/aws/service/eks/optimized-ami/{k}/amazon-linux-2{suffix}/{leaf}/image_id"
                        ),
                        variants,
                    )
                })
                .collect()
        }
        AmiFamily::Bottlerocket => {
            // Bottlerocket tags releases `v1.20.3` on GitHub but its SSM paths say `1.20.3`.
            let v = v.trim_start_matches('v');
            let combos: [(&str, &str, &[Variant]); 4] = [
                ("", "x86_64", &[Standard, Neuron]),
                ("", "arm64", &[Standard, Neuron]),
                ("-nvidia", "x86_64", &[Nvidia]),
                ("-nvidia", "arm64", &[Nvidia]),
            ];
            combos
                .iter()
                .map(|&(flavour, arch, variants)| {
                    param(
                        format!(
                            "/aws/service/bottlerocket/aws-k8s-{k}{flavour}/{arch}/{v}/image_id"
                        ),
                        variants,
                    )
                })
                .collect()
        }
        AmiFamily::Windows2019 | AmiFamily::Windows2022 => {
            let year = if alias.family == AmiFamily::Windows2019 {
                "2019"
            } else {
                "2022"
            };
            let build = alias.family.windows_build().unwrap_or_default();
            vec![SsmParameter {
                name: format!(
                    "/aws/service/ami-windows-latest/Windows_Server-{year}-English-Core-EKS_Optimized-{k}/image_id"
                ),
                requirement_sets: vec![vec![
                    Requirement::is_in(labels::OS, ["windows"]),
                    Requirement::is_in(labels::WINDOWS_BUILD, [build]),
                ]],
                mutable: latest,
            }]
        }
        // `Alias::parse` never yields Custom; nothing to read for it.
        AmiFamily::Custom => Vec::new(),
    };
    Ok(AliasQuery {
        field,
        alias: alias.clone(),
        parameters,
    })
}

/// `1.30`-style versions only: the SSM paths hold exactly MAJOR.MINOR.
fn is_major_minor(v: &str) -> bool {
    let mut parts = v.split('.');
    let num =
        |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    num(parts.next()) && num(parts.next()) && parts.next().is_none()
}

/// How to look up the AMIs of `terms`: the first alias term wins (Karpenter's CEL makes an
/// alias the only term); otherwise `DescribeImages` queries for the terms.
pub fn ami_plan(
    node_class: &str,
    terms: &[AmiSelectorTerm],
    k8s_version: &str,
) -> Result<AmiPlan, ResolveError> {
    if let Some((i, text)) = terms
        .iter()
        .enumerate()
        .find_map(|(i, t)| t.alias.as_deref().map(|a| (i, a)))
    {
        let alias = parse_alias(node_class, i, text)?;
        return alias_query(node_class, i, &alias, k8s_version).map(AmiPlan::Alias);
    }
    check_terms(node_class, FIELD, terms, |t| {
        t.id.is_some()
            || t.name.is_some()
            || t.owner.is_some()
            || t.ssm_parameter.is_some()
            || !t.tags.is_empty()
    })?;
    Ok(AmiPlan::Terms(image_queries(terms)))
}

#[cfg(test)]
#[path = "amis_tests.rs"]
mod tests;

//! Pure selection logic of EC2NodeClass resolution: which subnets, security groups and AMIs a
//! node class selects, as Karpenter v1 decides it.
//!
//! Nothing here talks to AWS. A later SDK layer sends the EC2 filters built here
//! (`DescribeSubnets`, `DescribeSecurityGroups`, `DescribeImages`) and the SSM parameter names
//! (`GetParameter`), fills the plain structs ([`Subnet`], [`SecurityGroup`], [`Image`]) from the
//! answers and hands them back to the `resolve_*` functions, which re-check every item locally
//! (so a fake or an over-broad answer cannot leak through) and pick what Karpenter would pick.
//!
//! Selector semantics (Karpenter docs, "subnetSelectorTerms" and friends): terms are ORed, the
//! fields within a term are ANDed; a tag value of `*` means "the key exists"; tag values and
//! names may hold EC2 filter wildcards (`*`, `?`).

mod amis;
mod images;
mod security_groups;
mod subnets;

pub use amis::{AliasQuery, AmiPlan, SsmParameter, Variant, alias_query, ami_plan, parse_alias};
pub use images::{
    Image, ImageMatchContext, ImageQuery, ImageQueryPlan, Requirement, ResolvedImage,
    image_queries, resolve_amis, select_images, status_amis,
};
pub use security_groups::{
    SecurityGroup, resolve_security_groups, security_group_filter_sets, status_security_groups,
};
pub use subnets::{
    Subnet, ZonalSubnet, resolve_subnets, status_subnets, subnet_filter_sets, subnet_zones,
    zonal_subnets_for_launch,
};

use std::collections::BTreeMap;

/// One EC2 API filter (`Name` and `Values`); the values of one filter are ORed by EC2.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Filter {
    /// Filter name: `tag:<key>`, `tag-key`, `subnet-id`, `group-id`, `group-name`, `image-id`,
    /// `name`.
    pub name: String,
    /// Accepted values.
    pub values: Vec<String>,
}

impl Filter {
    /// A filter with the given name and values.
    pub fn new(
        name: impl Into<String>,
        values: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Filter {
            name: name.into(),
            values: values.into_iter().map(Into::into).collect(),
        }
    }
}

/// The filters of one Describe call; EC2 ANDs them. The SDK layer sends one call per set and
/// unions the answers (that is how terms get ORed).
pub type FilterSet = Vec<Filter>;

/// Whether a selector term selects an item, checked locally with EC2 filter semantics.
pub trait TermMatches<T> {
    /// True when this term selects `item`.
    fn matches(&self, item: &T) -> bool;
}

/// True when `term` selects `item` (see [`TermMatches`]); a term with no field selects nothing.
pub fn term_matches<T, M: TermMatches<T>>(term: &M, item: &T) -> bool {
    term.matches(item)
}

/// True when any of `terms` selects `item` (terms are ORed).
pub fn any_term_matches<T, M: TermMatches<T>>(terms: &[M], item: &T) -> bool {
    terms.iter().any(|t| t.matches(item))
}

/// Why a node class could not be resolved. Every variant names the node class and the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The selector terms are fine but select nothing.
    #[error("ec2nodeclass {node_class:?}: {field}: no {what} matches")]
    NoMatch {
        /// Name of the EC2NodeClass.
        node_class: String,
        /// Field path, e.g. `spec.subnetSelectorTerms`.
        field: String,
        /// What was looked for (`subnet`, `security group`, `AMI`).
        what: &'static str,
    },
    /// A term cannot be turned into a query (no selector field, unresolved SSM parameter, …).
    #[error("ec2nodeclass {node_class:?}: {field}: {message}")]
    InvalidTerm {
        /// Name of the EC2NodeClass.
        node_class: String,
        /// Field path, e.g. `spec.amiSelectorTerms[1]`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// An `alias` that does not parse (`spec.amiSelectorTerms[0].alias`).
    #[error("ec2nodeclass {node_class:?}: {field}: invalid alias {alias:?}: {reason}")]
    InvalidAlias {
        /// Name of the EC2NodeClass.
        node_class: String,
        /// Field path of the alias.
        field: String,
        /// The alias as written.
        alias: String,
        /// Karpenter's message for the mistake.
        reason: String,
    },
    /// The cluster's Kubernetes version is not `MAJOR.MINOR`, so no SSM path can be built.
    #[error(
        "ec2nodeclass {node_class:?}: {field}: kubernetes version {version:?} is not MAJOR.MINOR"
    )]
    InvalidKubernetesVersion {
        /// Name of the EC2NodeClass.
        node_class: String,
        /// Field path of the alias that needed it.
        field: String,
        /// The version given.
        version: String,
    },
}

/// Filters for a term's tags: `tag:<key>` = value, or `tag-key` = key when the value is `*`
/// (as Karpenter's `getFilterSets`, so "any value, even empty" is expressed exactly).
fn tag_filters(tags: &BTreeMap<String, String>) -> Vec<Filter> {
    tags.iter()
        .map(|(k, v)| {
            if v == "*" {
                Filter::new("tag-key", [k.as_str()])
            } else {
                Filter::new(format!("tag:{k}"), [v.as_str()])
            }
        })
        .collect()
}

/// True when every term tag is present on `tags` with a matching value (EC2 wildcard rules).
fn tags_match(term: &BTreeMap<String, String>, tags: &BTreeMap<String, String>) -> bool {
    term.iter().all(|(k, pattern)| {
        tags.get(k)
            .is_some_and(|v| pattern == "*" || glob_match(pattern, v))
    })
}

/// EC2 filter value matching: `*` matches any run of characters, `?` exactly one, everything
/// else literally and case-sensitively. (EC2's `\*` escapes are not supported; Karpenter
/// passes values through untouched and no documented selector uses them.)
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matcher with single backtrack point: linear in practice, no recursion.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Checks that there is at least one term and that each has a selector field; `has_selector`
/// says whether a term sets any field. An empty term would become an empty filter set, which
/// EC2 answers with every object in the account, so it is refused rather than sent.
fn check_terms<T>(
    node_class: &str,
    field: &str,
    terms: &[T],
    has_selector: impl Fn(&T) -> bool,
) -> Result<(), ResolveError> {
    if terms.is_empty() {
        return Err(ResolveError::InvalidTerm {
            node_class: node_class.to_string(),
            field: field.to_string(),
            message: "at least one selector term is required".to_string(),
        });
    }
    if let Some(i) = terms.iter().position(|t| !has_selector(t)) {
        return Err(ResolveError::InvalidTerm {
            node_class: node_class.to_string(),
            field: format!("{field}[{i}]"),
            message: "term selects nothing: set tags, id or another selector field".to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;

//! Security group selection: filters for `DescribeSecurityGroups` and the resolved list.

use std::collections::BTreeMap;

use super::{
    Filter, FilterSet, ResolveError, TermMatches, check_terms, glob_match, tag_filters, tags_match,
};
use crate::aws::nodeclass::{self, SecurityGroupSelectorTerm};

const FIELD: &str = "spec.securityGroupSelectorTerms";

/// A security group as `DescribeSecurityGroups` reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecurityGroup {
    /// Group id (`sg-0abc…`).
    pub id: String,
    /// Group name.
    pub name: String,
    /// The group's tags.
    pub tags: BTreeMap<String, String>,
}

/// `id`, then `name`, then tags, in Karpenter's precedence (its CEL makes `id` and `name` each
/// exclusive, and its filter builder looks at them in that order).
impl TermMatches<SecurityGroup> for SecurityGroupSelectorTerm {
    fn matches(&self, sg: &SecurityGroup) -> bool {
        if let Some(id) = &self.id {
            return *id == sg.id;
        }
        if let Some(name) = &self.name {
            return glob_match(name, &sg.name);
        }
        !self.tags.is_empty() && tags_match(&self.tags, &sg.tags)
    }
}

/// The filter sets for `DescribeSecurityGroups`, as Karpenter's `getFilterSets`: one set per
/// tag term, then one `group-id` set with every id term, then one `group-name` set with every
/// name term. Terms with no field are skipped.
pub fn security_group_filter_sets(terms: &[SecurityGroupSelectorTerm]) -> Vec<FilterSet> {
    let mut sets = Vec::new();
    let (mut ids, mut names) = (Vec::new(), Vec::new());
    for term in terms {
        if let Some(id) = &term.id {
            ids.push(id.clone());
        } else if let Some(name) = &term.name {
            names.push(name.clone());
        } else if !term.tags.is_empty() {
            sets.push(tag_filters(&term.tags));
        }
    }
    if !ids.is_empty() {
        sets.push(vec![Filter::new("group-id", ids)]);
    }
    if !names.is_empty() {
        sets.push(vec![Filter::new("group-name", names)]);
    }
    sets
}

/// Every candidate group some term selects, deduplicated and sorted by id (Karpenter's status
/// order). Errors when a term is empty or nothing matches.
pub fn resolve_security_groups(
    node_class: &str,
    terms: &[SecurityGroupSelectorTerm],
    candidates: &[SecurityGroup],
) -> Result<Vec<SecurityGroup>, ResolveError> {
    check_terms(node_class, FIELD, terms, |t| {
        t.id.is_some() || t.name.is_some() || !t.tags.is_empty()
    })?;
    let mut by_id: BTreeMap<&str, &SecurityGroup> = BTreeMap::new();
    for sg in candidates {
        if super::any_term_matches(terms, sg) {
            by_id.entry(&sg.id).or_insert(sg);
        }
    }
    if by_id.is_empty() {
        return Err(ResolveError::NoMatch {
            node_class: node_class.to_string(),
            field: FIELD.to_string(),
            what: "security group",
        });
    }
    Ok(by_id.into_values().cloned().collect())
}

/// `status.securityGroups` for resolved groups, keeping their order.
pub fn status_security_groups(groups: &[SecurityGroup]) -> Vec<nodeclass::SecurityGroup> {
    groups
        .iter()
        .map(|g| nodeclass::SecurityGroup {
            id: g.id.clone(),
            name: (!g.name.is_empty()).then(|| g.name.clone()),
        })
        .collect()
}

#[cfg(test)]
#[path = "security_groups_tests.rs"]
mod tests;

//! Subnet selection: filters for `DescribeSubnets`, the status list, and the per-zone subnet a
//! launch uses.

use std::collections::BTreeMap;

use super::{Filter, FilterSet, ResolveError, TermMatches, check_terms, tag_filters, tags_match};
use crate::aws::nodeclass::{self, SubnetSelectorTerm};

const FIELD: &str = "spec.subnetSelectorTerms";

/// A subnet as `DescribeSubnets` reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subnet {
    /// Subnet id (`subnet-0abc…`).
    pub id: String,
    /// Availability zone name (`us-east-1a`).
    pub zone: String,
    /// Availability zone id (`use1-az1`).
    pub zone_id: String,
    /// `AvailableIpAddressCount`.
    pub available_ips: u32,
    /// The subnet's tags.
    pub tags: BTreeMap<String, String>,
}

/// The subnet chosen for launches in one zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZonalSubnet {
    /// The subnet.
    pub subnet: Subnet,
    /// Its available IPs minus those reserved by in-flight launches.
    pub effective_available_ips: u32,
}

/// An id term matches that subnet only (Karpenter's CEL makes `id` exclusive and its filter
/// builder ignores the other fields of an id term); otherwise every tag must match.
impl TermMatches<Subnet> for SubnetSelectorTerm {
    fn matches(&self, subnet: &Subnet) -> bool {
        match &self.id {
            Some(id) => *id == subnet.id,
            None => !self.tags.is_empty() && tags_match(&self.tags, &subnet.tags),
        }
    }
}

/// The filter sets for `DescribeSubnets`, one call each, as Karpenter's `getFilterSets`: one set
/// per tag term, then one `subnet-id` set holding the ids of all id terms. Terms with no field
/// are skipped (an empty set would select every subnet in the account).
pub fn subnet_filter_sets(terms: &[SubnetSelectorTerm]) -> Vec<FilterSet> {
    let mut sets = Vec::new();
    let mut ids = Vec::new();
    for term in terms {
        match &term.id {
            Some(id) => ids.push(id.clone()),
            None if !term.tags.is_empty() => sets.push(tag_filters(&term.tags)),
            None => {}
        }
    }
    if !ids.is_empty() {
        sets.push(vec![Filter::new("subnet-id", ids)]);
    }
    sets
}

/// The subnets the node class selects out of `candidates` (what the Describe calls returned),
/// deduplicated by id and in Karpenter's status order: most available IPs first, then by id.
/// Errors when a term is empty or nothing matches.
pub fn resolve_subnets(
    node_class: &str,
    terms: &[SubnetSelectorTerm],
    candidates: &[Subnet],
) -> Result<Vec<Subnet>, ResolveError> {
    check_terms(node_class, FIELD, terms, |t| {
        t.id.is_some() || !t.tags.is_empty()
    })?;
    let mut by_id: BTreeMap<&str, &Subnet> = BTreeMap::new();
    for s in candidates {
        if super::any_term_matches(terms, s) {
            by_id.entry(&s.id).or_insert(s);
        }
    }
    if by_id.is_empty() {
        return Err(ResolveError::NoMatch {
            node_class: node_class.to_string(),
            field: FIELD.to_string(),
            what: "subnet",
        });
    }
    let mut out: Vec<Subnet> = by_id.into_values().cloned().collect();
    out.sort_by(|a, b| {
        b.available_ips
            .cmp(&a.available_ips)
            .then_with(|| a.id.cmp(&b.id))
    });
    Ok(out)
}

/// `status.subnets` for resolved subnets, keeping their order (see [`resolve_subnets`]).
pub fn status_subnets(subnets: &[Subnet]) -> Vec<nodeclass::Subnet> {
    subnets
        .iter()
        .map(|s| nodeclass::Subnet {
            id: s.id.clone(),
            zone: s.zone.clone(),
            zone_id: (!s.zone_id.is_empty()).then(|| s.zone_id.clone()),
        })
        .collect()
}

/// The zones the subnets offer, sorted and deduplicated.
pub fn subnet_zones(subnets: &[Subnet]) -> Vec<String> {
    let mut zones: Vec<String> = subnets.iter().map(|s| s.zone.clone()).collect();
    zones.sort();
    zones.dedup();
    zones
}

/// Per zone, the subnet a launch should use: the one with the most available IPs after
/// subtracting `in_flight` (IPs reserved by launches not yet visible in
/// `AvailableIpAddressCount`, keyed by subnet id), so parallel launches spread over subnets.
/// Ties go to the smallest subnet id so the choice does not depend on input order (Karpenter
/// keeps the later one in its list). Sorted by zone. Subnets are not dropped for having no IPs
/// left: like Karpenter, the launch is tried and EC2 reports the shortage.
pub fn zonal_subnets_for_launch(
    subnets: &[Subnet],
    in_flight: &BTreeMap<String, u32>,
) -> Vec<ZonalSubnet> {
    let mut best: BTreeMap<&str, ZonalSubnet> = BTreeMap::new();
    for s in subnets {
        let effective = s
            .available_ips
            .saturating_sub(in_flight.get(&s.id).copied().unwrap_or(0));
        let better = match best.get(s.zone.as_str()) {
            None => true,
            Some(cur) => {
                effective > cur.effective_available_ips
                    || (effective == cur.effective_available_ips && s.id < cur.subnet.id)
            }
        };
        if better {
            best.insert(
                &s.zone,
                ZonalSubnet {
                    subnet: s.clone(),
                    effective_available_ips: effective,
                },
            );
        }
    }
    best.into_values().collect()
}

#[cfg(test)]
#[path = "subnets_tests.rs"]
mod tests;

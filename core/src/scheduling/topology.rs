//! Topology groups: pod counts per domain for topology spread, pod affinity and pod
//! anti-affinity, in the shape Karpenter's `Topology` keeps them.
//!
//! Domains (zones, hostnames, capacity types, custom keys) are interned to small integers per
//! topology key, so checking a candidate node is an array lookup, not a string search.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::labels;
use crate::requirements::Requirement;
use crate::snapshot::{LabelSelector, Pod, PodAffinityTerm, TopologySpreadConstraint};

/// Interned domain values of one topology key.
#[derive(Debug, Default)]
pub(crate) struct DomainTable {
    pub key: String,
    pub names: Vec<String>,
    ids: HashMap<String, u32>,
}

impl DomainTable {
    fn new(key: &str) -> DomainTable {
        DomainTable {
            key: key.to_string(),
            ..DomainTable::default()
        }
    }

    /// The id of `name`, adding it to the universe if new.
    pub fn intern(&mut self, name: &str) -> u32 {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.to_string());
        self.ids.insert(name.to_string(), id);
        id
    }

    pub fn id(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }
}

/// What a topology group constrains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum GroupKind {
    Spread { max_skew: i32, min_domains: i32 },
    Affinity,
    AntiAffinity,
}

/// Namespaces a group counts pods in; `None` means every namespace.
pub(crate) type NamespaceSet = Option<BTreeSet<String>>;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct GroupKey {
    pub kind: GroupKind,
    pub key: String,
    pub namespaces: NamespaceSet,
    pub selector: LabelSelector,
}

/// Counts for one topology constraint shape, shared by every pod that has it.
#[derive(Debug)]
pub(crate) struct Group {
    pub kind: GroupKind,
    /// Index into [`Topology::tables`].
    pub table: usize,
    pub namespaces: NamespaceSet,
    pub selector: LabelSelector,
    /// Pods matching the selector, per domain id.
    pub counts: Vec<i32>,
    /// For anti-affinity: pods owning the constraint, per domain id (the "inverse" group that
    /// keeps matching pods away from them).
    pub owner_counts: Vec<i32>,
    pub owners: i32,
    /// Matching pods per new NodeClaim whose domain for this key is not pinned yet.
    pub claim_counts: HashMap<usize, i32>,
}

impl Group {
    pub fn selects(&self, pod: &Pod) -> bool {
        self.namespaces
            .as_ref()
            .is_none_or(|ns| ns.contains(&pod.key.namespace))
            && self.selector.matches(&pod.labels)
    }

    pub fn count(&self, domain: u32) -> i32 {
        self.counts.get(domain as usize).copied().unwrap_or(0)
    }

    pub fn owner_count(&self, domain: u32) -> i32 {
        self.owner_counts.get(domain as usize).copied().unwrap_or(0)
    }

    fn bump(v: &mut Vec<i32>, domain: u32, by: i32) {
        let i = domain as usize;
        if v.len() <= i {
            v.resize(i + 1, 0);
        }
        v[i] += by;
    }

    pub fn record(&mut self, domain: u32) {
        Group::bump(&mut self.counts, domain, 1);
    }

    pub fn record_owner(&mut self, domain: u32) {
        Group::bump(&mut self.owner_counts, domain, 1);
    }

    /// The global minimum for spread over the domains the pod may use (kube-scheduler's rule:
    /// hostname minimum is always zero, a new node can always be made; fewer eligible domains
    /// than `minDomains` means a minimum of zero).
    pub fn spread_min(&self, table: &DomainTable, pod_domains: &Requirement) -> i32 {
        let GroupKind::Spread { min_domains, .. } = self.kind else {
            return 0;
        };
        if table.key == labels::HOSTNAME {
            return 0;
        }
        let mut min = i32::MAX;
        let mut eligible = 0;
        for (id, name) in table.names.iter().enumerate() {
            if pod_domains.has(name) {
                eligible += 1;
                min = min.min(self.count(id as u32));
            }
        }
        if eligible == 0 || eligible < min_domains {
            0
        } else {
            min
        }
    }

    /// True when some domain the pod may use already has a matching pod.
    pub fn any_match(&self, table: &DomainTable, pod_domains: &Requirement) -> bool {
        table
            .names
            .iter()
            .enumerate()
            .any(|(id, name)| self.count(id as u32) > 0 && pod_domains.has(name))
            || !self.claim_counts.is_empty()
    }
}

/// All topology groups of a solve, and the domain tables they count over.
#[derive(Debug, Default)]
pub(crate) struct Topology {
    pub tables: Vec<DomainTable>,
    table_by_key: HashMap<String, usize>,
    pub groups: Vec<Group>,
    group_by_key: HashMap<GroupKey, usize>,
}

/// A pod's reference to a group, with whether it comes from a preference (relaxable).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GroupRef {
    pub group: usize,
    pub self_selecting: bool,
}

impl Topology {
    pub fn table_for(&mut self, key: &str) -> usize {
        if let Some(t) = self.table_by_key.get(key) {
            return *t;
        }
        let t = self.tables.len();
        self.tables.push(DomainTable::new(key));
        self.table_by_key.insert(key.to_string(), t);
        t
    }

    pub fn table_index(&self, key: &str) -> Option<usize> {
        self.table_by_key.get(key).copied()
    }

    fn group(&mut self, key: GroupKey) -> usize {
        if let Some(g) = self.group_by_key.get(&key) {
            return *g;
        }
        let table = self.table_for(&key.key);
        let g = self.groups.len();
        self.groups.push(Group {
            kind: key.kind,
            table,
            namespaces: key.namespaces.clone(),
            selector: key.selector.clone(),
            counts: Vec::new(),
            owner_counts: Vec::new(),
            owners: 0,
            claim_counts: HashMap::new(),
        });
        self.group_by_key.insert(key, g);
        g
    }

    /// The group of a topology spread constraint of `pod`.
    pub fn spread_group(&mut self, pod: &Pod, c: &TopologySpreadConstraint) -> GroupRef {
        let key = GroupKey {
            kind: GroupKind::Spread {
                max_skew: c.max_skew.max(1),
                min_domains: c.min_domains.unwrap_or(0),
            },
            key: c.topology_key.clone(),
            namespaces: Some(BTreeSet::from([pod.key.namespace.clone()])),
            selector: c.selector.clone(),
        };
        let group = self.group(key);
        GroupRef {
            group,
            self_selecting: self.groups[group].selects(pod),
        }
    }

    /// The groups of `pod`'s required anti-affinity terms: the ones it owns, which keep
    /// matching pods out of its domain.
    pub fn owned_anti_affinity_groups(
        &mut self,
        pod: &Pod,
        namespace_labels: &BTreeMap<String, BTreeMap<String, String>>,
    ) -> Vec<GroupRef> {
        pod.pod_anti_affinity
            .iter()
            .map(|t| self.affinity_group(pod, t, true, namespace_labels))
            .collect()
    }

    /// The group of a pod (anti-)affinity term of `pod`.
    pub fn affinity_group(
        &mut self,
        pod: &Pod,
        term: &PodAffinityTerm,
        anti: bool,
        namespace_labels: &BTreeMap<String, BTreeMap<String, String>>,
    ) -> GroupRef {
        let key = GroupKey {
            kind: if anti {
                GroupKind::AntiAffinity
            } else {
                GroupKind::Affinity
            },
            key: term.topology_key.clone(),
            namespaces: resolve_namespaces(pod, term, namespace_labels),
            selector: term.selector.clone(),
        };
        let group = self.group(key);
        GroupRef {
            group,
            self_selecting: self.groups[group].selects(pod),
        }
    }
}

/// Kubernetes' namespace rule for affinity terms: listed namespaces plus those matched by the
/// namespace selector; neither means the pod's own namespace; an empty selector means all.
fn resolve_namespaces(
    pod: &Pod,
    term: &PodAffinityTerm,
    namespace_labels: &BTreeMap<String, BTreeMap<String, String>>,
) -> NamespaceSet {
    let mut set: BTreeSet<String> = term.namespaces.iter().cloned().collect();
    match &term.namespace_selector {
        Some(sel) if *sel == LabelSelector::default() => return None,
        Some(sel) => {
            for (ns, labels) in namespace_labels {
                if sel.matches(labels) {
                    set.insert(ns.clone());
                }
            }
        }
        None if set.is_empty() => {
            set.insert(pod.key.namespace.clone());
        }
        None => {}
    }
    Some(set)
}

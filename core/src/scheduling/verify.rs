//! An independent checker of scheduling decisions.
//!
//! [`verify`] re-reads a [`Decision`] against the [`Snapshot`] it was made from and reports every
//! rule the decision breaks, written from the Kubernetes (kube-scheduler) and Karpenter
//! semantics rather than from the solver's internals, so that tests and property tests can
//! catch solver bugs. The rules checked, precisely:
//!
//! * **Accounting**: every pending pod appears exactly once: on an existing node, on a new
//!   NodeClaim, or as unschedulable (with a non-empty reason). Unknown pods, nodes, pools and
//!   instance types are reported; a new claim must have pods and at least one option.
//! * **Capacity**: for a new claim, *every* instance type option (looked up in its pool's
//!   instance types) must have allocatable ≥ Σ pod requests + `daemon_overhead` in every
//!   resource slot, and an available offering whose zone and capacity type the claim's
//!   requirements allow (the option's recorded zone/capacity type/price must be such an
//!   offering). Pods with extended resources the scheduler cannot buy must not go to new
//!   claims. For an existing node, allocatable ≥ bound pods + new pods (native slots and
//!   extended resources); nodes marked for deletion get nothing new.
//! * **Node selection**: each placed pod's `nodeSelector`, volume requirements and required
//!   node affinity (at least one OR term) hold for the node's labels. For a new claim the label
//!   a node could get on a key comes, per option, from: the offerings (zone, capacity type:
//!   the zones/capacity types of the option's available offerings the claim allows), the
//!   instance type's labels, the claim's requirements, then the pool's labels; otherwise the
//!   label is absent. A requirement holds only if it holds for *every* value the node could
//!   get, for every option. Each option's labels must also intersect the claim's
//!   requirements.
//! * **Taints**: every `NoSchedule`/`NoExecute` taint of the node (new claims: the pool's
//!   taints) is tolerated.
//! * **Required pod anti-affinity**: for every pod O with a required anti-affinity term (new
//!   or already bound) and every other pod Q the term selects (namespaces as Kubernetes
//!   resolves them), where at least one of the two is newly placed: O and Q must not be able
//!   to share a domain of the term's topology key. Domains: an existing node's label (hostname
//!   defaults to the node name); a claim's hostname is its placeholder; on other keys a claim
//!   is *pinned* when every option can only give one value (e.g. a single-valued zone
//!   requirement), otherwise it is *unpinned* over the set of values its options allow. Two
//!   pods on the same node or claim always share the domain; a pinned/pinned pair conflicts
//!   when equal; a pair involving an unpinned claim conflicts when its possible values contain
//!   the other side's value(s) — so an anti-affinity-on-zone pod on an unpinned claim is
//!   flagged whenever a selected pod could end up in the same zone. Nodes without the key
//!   have no domain and conflict with nothing.
//! * **Topology spread (`DoNotSchedule`)**: for each newly placed pod P with such a
//!   constraint, P's node/claim must have a pinned domain for the key; let `count(d)` be the
//!   final number of pods (bound + new) in P's namespace matching the selector in pinned
//!   domain `d`. The eligible domains E(P) are: for `kubernetes.io/hostname`, `{0}` if some
//!   pool can create a node for P (taints tolerated, requirements compatible) — a new empty
//!   node is always possible, so the global minimum is 0 — else the existing eligible nodes;
//!   for other keys, the domains of existing nodes (not being deleted) whose labels satisfy
//!   P's node requirements, the pinned domains of claims holding P's matching pods, and the
//!   values offered by pools P can use (through an instance type compatible with P that fits
//!   P's requests, with an available offering). With `min = min over E(P) of count` (0 when
//!   `minDomains` exceeds |E(P)|), the rule is `count(domain of P) - min ≤ maxSkew`. This is
//!   the invariant sequential placement guarantees: each placement into `d` passed
//!   `count(d) + 1 - min ≤ maxSkew` and the minimum never decreases, assuming (as for one
//!   controller's replicas) the pods matching a selector carry the same constraint and node
//!   requirements. For hostname spread with `maxSkew` 1 this means at most one matching pod
//!   per node or claim that received one.
//! * **Host ports**: no two pods on one node or claim bind conflicting host ports (same port
//!   and protocol, and the same IP or a wildcard IP), where at least one of them is new.
//! * **NodePool limits**: for each pool, Σ over its new claims of the slot-wise maximum
//!   *capacity* over the claim's options ≤ `limits - usage` in every limited slot; with a
//!   `node_limit`, the pool's nodes in the snapshot (labelled `karpenter.sh/nodepool=<name>`)
//!   plus its new claims ≤ the limit (reported as resource `nodes`).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use super::decision::{Decision, NewNodeClaim};
use crate::instance_type::InstanceType;
use crate::labels;
use crate::requirements::{Operator, Requirement, Requirements};
use crate::resources::{NUM_RESOURCES, RESOURCE_NAMES, Resources};
use crate::snapshot::{
    ExistingNode, HostPort, LabelSelector, NodePoolInput, Pod, PodAffinityTerm, PodKey, Snapshot,
    Taint, TaintEffect, WhenUnsatisfiable,
};

/// One broken rule.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Violation {
    /// A pending pod is not in the decision at all.
    MissingPod { pod: PodKey },
    /// A pod appears more than once.
    DuplicatePod { pod: PodKey, count: usize },
    /// The decision places a pod the snapshot does not have as pending.
    UnknownPod { pod: PodKey, place: String },
    /// An existing-node plan names a node the snapshot does not have.
    UnknownNode { node: String },
    /// A claim names a pool the snapshot does not have.
    UnknownPool { claim: String, pool: String },
    /// An option names a type the claim's pool does not offer.
    UnknownInstanceType {
        claim: String,
        instance_type: String,
    },
    /// A new claim carries no pods.
    EmptyClaim { claim: String },
    /// A new claim has no instance type option.
    NoOptions { claim: String },
    /// An unschedulable pod without a reason.
    EmptyReason { pod: PodKey },
    /// Requests exceed what the node (or an option of a claim) can allocate.
    OverCapacity {
        place: String,
        instance_type: Option<String>,
        resource: String,
        need: i64,
        have: i64,
    },
    /// An option has no available offering the claim's requirements allow (or its recorded
    /// offering is not one).
    NoOffering {
        claim: String,
        instance_type: String,
    },
    /// An option's labels contradict the claim's requirements.
    OptionIncompatible {
        claim: String,
        instance_type: String,
        key: String,
    },
    /// A pod was placed on a node that is being deleted.
    NodeDeleting { node: String, pod: PodKey },
    /// A pod's node selector / node affinity / volume requirement does not hold.
    NodeSelector {
        pod: PodKey,
        place: String,
        detail: String,
    },
    /// A pod does not tolerate a taint of its node.
    Taint {
        pod: PodKey,
        place: String,
        taint: String,
    },
    /// Two pods share (or may share) a domain that one's anti-affinity forbids.
    AntiAffinity {
        owner: PodKey,
        other: PodKey,
        key: String,
        domain: String,
    },
    /// A spread constraint's skew is exceeded.
    Spread {
        pod: PodKey,
        key: String,
        domain: String,
        count: usize,
        min: usize,
        max_skew: i32,
    },
    /// A pod with a spread constraint sits where the domain is unknown or missing.
    SpreadDomain {
        pod: PodKey,
        place: String,
        key: String,
        detail: String,
    },
    /// Two pods on one node bind conflicting host ports.
    HostPort {
        place: String,
        pod: PodKey,
        other: PodKey,
        port: i32,
    },
    /// New claims of a pool may exceed its limits.
    Limits {
        pool: String,
        resource: String,
        reserved: i64,
        available: i64,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Violation::*;
        match self {
            MissingPod { pod } => write!(f, "pod {pod} is neither placed nor unschedulable"),
            DuplicatePod { pod, count } => write!(f, "pod {pod} appears {count} times"),
            UnknownPod { pod, place } => write!(f, "{place} lists unknown pod {pod}"),
            UnknownNode { node } => write!(f, "plan for unknown node {node}"),
            UnknownPool { claim, pool } => write!(f, "{claim} names unknown nodepool {pool}"),
            UnknownInstanceType {
                claim,
                instance_type,
            } => write!(
                f,
                "{claim} offers instance type {instance_type} its pool does not have"
            ),
            EmptyClaim { claim } => write!(f, "{claim} has no pods"),
            NoOptions { claim } => write!(f, "{claim} has no instance type option"),
            EmptyReason { pod } => write!(f, "unschedulable pod {pod} has no reason"),
            OverCapacity {
                place,
                instance_type,
                resource,
                need,
                have,
            } => {
                write!(f, "{place}")?;
                if let Some(t) = instance_type {
                    write!(f, " option {t}")?;
                }
                write!(f, ": {resource} requested {need} > allocatable {have}")
            }
            NoOffering {
                claim,
                instance_type,
            } => write!(
                f,
                "{claim} option {instance_type} has no available offering its requirements allow"
            ),
            OptionIncompatible {
                claim,
                instance_type,
                key,
            } => write!(
                f,
                "{claim} option {instance_type} contradicts the claim's requirement on {key}"
            ),
            NodeDeleting { node, pod } => {
                write!(f, "pod {pod} placed on node {node}, which is being deleted")
            }
            NodeSelector { pod, place, detail } => {
                write!(
                    f,
                    "pod {pod} on {place}: node requirements not met: {detail}"
                )
            }
            Taint { pod, place, taint } => {
                write!(f, "pod {pod} on {place} does not tolerate taint {taint}")
            }
            AntiAffinity {
                owner,
                other,
                key,
                domain,
            } => write!(
                f,
                "pod anti-affinity of {owner} on {key}: {other} shares (or may share) domain {domain}"
            ),
            Spread {
                pod,
                key,
                domain,
                count,
                min,
                max_skew,
            } => write!(
                f,
                "topology spread of {pod} on {key}: domain {domain} has {count} matching pods, \
                 minimum is {min}, skew {} > maxSkew {max_skew}",
                count - min
            ),
            SpreadDomain {
                pod,
                place,
                key,
                detail,
            } => write!(f, "topology spread of {pod} on {key} at {place}: {detail}"),
            HostPort {
                place,
                pod,
                other,
                port,
            } => write!(
                f,
                "{place}: pods {pod} and {other} both bind host port {port}"
            ),
            Limits {
                pool,
                resource,
                reserved,
                available,
            } => write!(
                f,
                "nodepool {pool}: new claims may use {reserved} {resource}, limits leave {available}"
            ),
        }
    }
}

/// Where a pod ends up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Place {
    Node(usize),
    Claim(usize),
}

/// The value(s) a node could carry for one label key.
#[derive(Clone, Debug)]
enum LabelValue {
    Absent,
    /// One of these concrete values (non-empty).
    Values(BTreeSet<String>),
    /// Any value this (open-ended) requirement allows.
    Open(Requirement),
}

/// A node's or claim's domain for one topology key.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Domain {
    None,
    Pinned(String),
    /// One of these values; `None` when unbounded.
    Unpinned(Option<BTreeSet<String>>),
}

impl Domain {
    fn describe(&self) -> String {
        match self {
            Domain::None => "<none>".into(),
            Domain::Pinned(v) => v.clone(),
            Domain::Unpinned(Some(s)) => format!("one of {s:?}"),
            Domain::Unpinned(None) => "an unbounded set".into(),
        }
    }

    fn may_share(&self, other: &Domain) -> bool {
        match (self, other) {
            (Domain::None, _) | (_, Domain::None) => false,
            (Domain::Pinned(a), Domain::Pinned(b)) => a == b,
            (Domain::Pinned(a), Domain::Unpinned(s)) | (Domain::Unpinned(s), Domain::Pinned(a)) => {
                s.as_ref().is_none_or(|s| s.contains(a))
            }
            (Domain::Unpinned(a), Domain::Unpinned(b)) => match (a, b) {
                (Some(a), Some(b)) => a.intersection(b).next().is_some(),
                _ => true,
            },
        }
    }
}

struct Ctx<'a> {
    snap: &'a Snapshot,
    decision: &'a Decision,
    /// Pool index per claim (None when unknown).
    claim_pool: Vec<Option<usize>>,
    /// Resolved options per claim.
    claim_types: Vec<Vec<&'a InstanceType>>,
    node_index: BTreeMap<&'a str, usize>,
    /// Domains already worked out, by place and key.
    domains: RefCell<HashMap<(Place, String), Domain>>,
}

/// A pod in the final picture.
struct Entry<'a> {
    pod: &'a Pod,
    place: Place,
    new: bool,
}

/// Checks `decision` against `snapshot`; an empty result means every rule holds.
pub fn verify(snapshot: &Snapshot, decision: &Decision) -> Vec<Violation> {
    let mut out = Vec::new();
    let pending: BTreeMap<&PodKey, &Pod> = snapshot.pods.iter().map(|p| (&p.key, p)).collect();
    let node_index: BTreeMap<&str, usize> = snapshot
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();
    let mut ctx = Ctx {
        snap: snapshot,
        decision,
        claim_pool: Vec::new(),
        claim_types: Vec::new(),
        node_index,
        domains: RefCell::new(HashMap::new()),
    };

    // Accounting.
    let mut seen: BTreeMap<&PodKey, usize> = BTreeMap::new();
    let mut entries: Vec<Entry> = Vec::new();
    for plan in &decision.existing {
        let Some(&ni) = ctx.node_index.get(plan.node.as_str()) else {
            out.push(Violation::UnknownNode {
                node: plan.node.clone(),
            });
            for k in &plan.pods {
                *seen.entry(k).or_default() += 1;
            }
            continue;
        };
        for k in &plan.pods {
            *seen.entry(k).or_default() += 1;
            match pending.get(k) {
                Some(p) => entries.push(Entry {
                    pod: p,
                    place: Place::Node(ni),
                    new: true,
                }),
                None => out.push(Violation::UnknownPod {
                    pod: k.clone(),
                    place: format!("node {}", plan.node),
                }),
            }
        }
    }
    for (ci, claim) in decision.new_node_claims.iter().enumerate() {
        let name = claim_name(claim);
        let pool = snapshot
            .node_pools
            .iter()
            .position(|p| p.name == claim.node_pool);
        if pool.is_none() {
            out.push(Violation::UnknownPool {
                claim: name.clone(),
                pool: claim.node_pool.clone(),
            });
        }
        let mut types = Vec::new();
        if let Some(p) = pool {
            for o in &claim.instance_types {
                match snapshot.node_pools[p]
                    .instance_types
                    .iter()
                    .find(|t| t.name == o.name)
                {
                    Some(t) => types.push(t),
                    None => out.push(Violation::UnknownInstanceType {
                        claim: name.clone(),
                        instance_type: o.name.clone(),
                    }),
                }
            }
        }
        ctx.claim_pool.push(pool);
        ctx.claim_types.push(types);
        if claim.pods.is_empty() {
            out.push(Violation::EmptyClaim {
                claim: name.clone(),
            });
        }
        if claim.instance_types.is_empty() {
            out.push(Violation::NoOptions {
                claim: name.clone(),
            });
        }
        for k in &claim.pods {
            *seen.entry(k).or_default() += 1;
            match pending.get(k) {
                Some(p) => entries.push(Entry {
                    pod: p,
                    place: Place::Claim(ci),
                    new: true,
                }),
                None => out.push(Violation::UnknownPod {
                    pod: k.clone(),
                    place: name.clone(),
                }),
            }
        }
    }
    for u in &decision.unschedulable {
        *seen.entry(&u.pod).or_default() += 1;
        if !pending.contains_key(&u.pod) {
            out.push(Violation::UnknownPod {
                pod: u.pod.clone(),
                place: "unschedulable list".into(),
            });
        }
        if u.reason.trim().is_empty() {
            out.push(Violation::EmptyReason { pod: u.pod.clone() });
        }
    }
    for p in &snapshot.pods {
        match seen.get(&p.key).copied().unwrap_or(0) {
            0 => out.push(Violation::MissingPod { pod: p.key.clone() }),
            1 => {}
            n => out.push(Violation::DuplicatePod {
                pod: p.key.clone(),
                count: n,
            }),
        }
    }
    for (ni, node) in snapshot.nodes.iter().enumerate() {
        for pod in &node.pods {
            entries.push(Entry {
                pod,
                place: Place::Node(ni),
                new: false,
            });
        }
    }

    ctx.check_capacity(&entries, &mut out);
    ctx.check_claim_options(&mut out);
    ctx.check_node_selection(&entries, &mut out);
    ctx.check_anti_affinity(&entries, &mut out);
    ctx.check_spread(&entries, &mut out);
    ctx.check_host_ports(&entries, &mut out);
    ctx.check_limits(&mut out);
    out
}

fn claim_name(c: &NewNodeClaim) -> String {
    format!("new claim {} (nodepool {})", c.hostname, c.node_pool)
}

fn resource_name(slot: usize) -> String {
    RESOURCE_NAMES[slot].to_string()
}

/// True when a label with these possible values satisfies `req` whatever value it ends up with.
fn label_satisfies(value: &LabelValue, req: &Requirement) -> bool {
    let absent_ok = matches!(req.operator(), Operator::NotIn | Operator::DoesNotExist);
    match value {
        LabelValue::Absent => absent_ok,
        LabelValue::Values(vs) => vs.iter().all(|v| req.has(v)),
        // An open set of values (and possibly no label at all).
        LabelValue::Open(r) => r.is_complement() && r.is_subset_of(req) && absent_ok,
    }
}

/// Every requirement of `reqs` holds for the labels `lookup` gives; on failure, which one.
fn requirements_hold(
    reqs: &Requirements,
    lookup: &dyn Fn(&str) -> LabelValue,
) -> Result<(), String> {
    for (key, req) in reqs.iter() {
        let v = lookup(key);
        if !label_satisfies(&v, req) {
            let shown = match &v {
                LabelValue::Absent => "absent".to_string(),
                LabelValue::Values(vs) => format!("{vs:?}"),
                LabelValue::Open(r) => format!("{r}"),
            };
            return Err(format!("{key} {req} (node label: {shown})"));
        }
    }
    Ok(())
}

/// The pod's strict node requirements hold for a node with these labels.
fn pod_node_requirements_hold(
    pod: &Pod,
    lookup: &dyn Fn(&str) -> LabelValue,
) -> Result<(), String> {
    requirements_hold(&pod.node_selector, lookup)?;
    requirements_hold(&pod.volume_requirements, lookup)?;
    if pod.required_node_affinity.is_empty() {
        return Ok(());
    }
    let mut first_err = None;
    for term in &pod.required_node_affinity {
        match requirements_hold(term, lookup) {
            Ok(()) => return Ok(()),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(format!(
        "no required node affinity term holds (first: {})",
        first_err.unwrap_or_default()
    ))
}

fn node_label(node: &ExistingNode, key: &str) -> LabelValue {
    match node.labels.get(key) {
        Some(v) => LabelValue::Values(BTreeSet::from([v.clone()])),
        None if key == labels::HOSTNAME => LabelValue::Values(BTreeSet::from([node.name.clone()])),
        None => LabelValue::Absent,
    }
}

fn finite_or_open(r: &Requirement) -> LabelValue {
    if r.is_complement() {
        LabelValue::Open(r.clone())
    } else if r.values().is_empty() {
        LabelValue::Absent
    } else {
        LabelValue::Values(r.values().iter().filter(|v| r.has(v)).cloned().collect())
    }
}

/// The label a node of type `it` launched for `claim` (from `pool`) could carry on `key`.
fn claim_option_label(
    claim: &NewNodeClaim,
    pool: &NodePoolInput,
    it: &InstanceType,
    key: &str,
) -> LabelValue {
    if key == labels::ZONE || key == labels::CAPACITY_TYPE {
        let vals: BTreeSet<String> = allowed_offerings(it, &claim.requirements)
            .map(|o| {
                if key == labels::ZONE {
                    o.zone.clone()
                } else {
                    o.capacity_type.clone()
                }
            })
            .collect();
        return if vals.is_empty() {
            LabelValue::Absent
        } else {
            LabelValue::Values(vals)
        };
    }
    if key == labels::HOSTNAME {
        return LabelValue::Values(BTreeSet::from([claim.hostname.clone()]));
    }
    if let Some(r) = it.requirements.get(key) {
        return finite_or_open(r);
    }
    if let Some(r) = claim.requirements.get(key) {
        return finite_or_open(r);
    }
    if let Some(v) = pool.labels.get(key) {
        return LabelValue::Values(BTreeSet::from([v.clone()]));
    }
    LabelValue::Absent
}

fn allowed_offerings<'i>(
    it: &'i InstanceType,
    reqs: &'i Requirements,
) -> impl Iterator<Item = &'i crate::instance_type::Offering> {
    it.offerings.iter().filter(move |o| {
        o.available
            && reqs.get(labels::ZONE).is_none_or(|r| r.has(&o.zone))
            && reqs
                .get(labels::CAPACITY_TYPE)
                .is_none_or(|r| r.has(&o.capacity_type))
    })
}

fn effective_taints(taints: &[Taint]) -> impl Iterator<Item = &Taint> {
    taints
        .iter()
        .filter(|t| t.effect != TaintEffect::PreferNoSchedule)
}

fn tolerated(pod: &Pod, taint: &Taint) -> bool {
    pod.tolerations.iter().any(|tol| {
        let effect_ok = tol.effect.is_none_or(|e| e == taint.effect);
        let key_ok = if tol.key.is_empty() {
            tol.exists
        } else {
            tol.key == taint.key && (tol.exists || tol.value == taint.value)
        };
        effect_ok && key_ok
    })
}

fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    sel.match_labels
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
        && sel.match_expressions.iter().all(|(k, op, vals)| {
            let got = labels.get(k);
            match op {
                Operator::In => got.is_some_and(|g| vals.contains(g)),
                Operator::NotIn => got.is_none_or(|g| !vals.contains(g)),
                Operator::Exists => got.is_some(),
                Operator::DoesNotExist => got.is_none(),
                _ => false,
            }
        })
}

fn ports_conflict(a: &HostPort, b: &HostPort) -> bool {
    let any = |ip: &str| ip.is_empty() || ip == "0.0.0.0" || ip == "::";
    a.port == b.port && a.protocol == b.protocol && (a.ip == b.ip || any(&a.ip) || any(&b.ip))
}

impl<'a> Ctx<'a> {
    fn place_name(&self, place: Place) -> String {
        match place {
            Place::Node(i) => format!("node {}", self.snap.nodes[i].name),
            Place::Claim(i) => claim_name(&self.decision.new_node_claims[i]),
        }
    }

    /// True when `term` (owned by `owner`) selects `pod`, namespaces included.
    fn term_selects(&self, owner: &Pod, term: &PodAffinityTerm, pod: &Pod) -> bool {
        let ns = &pod.key.namespace;
        let ns_ok = if term.namespaces.is_empty() && term.namespace_selector.is_none() {
            *ns == owner.key.namespace
        } else {
            term.namespaces.contains(ns)
                || term.namespace_selector.as_ref().is_some_and(|sel| {
                    let empty = BTreeMap::new();
                    let labels = self.snap.namespace_labels.get(ns).unwrap_or(&empty);
                    selector_matches(sel, labels)
                })
        };
        ns_ok && selector_matches(&term.selector, &pod.labels)
    }

    fn domain(&self, place: Place, key: &str) -> Domain {
        let cache_key = (place, key.to_string());
        if let Some(d) = self.domains.borrow().get(&cache_key) {
            return d.clone();
        }
        let d = self.compute_domain(place, key);
        self.domains.borrow_mut().insert(cache_key, d.clone());
        d
    }

    fn compute_domain(&self, place: Place, key: &str) -> Domain {
        match place {
            Place::Node(i) => match node_label(&self.snap.nodes[i], key) {
                LabelValue::Values(v) => Domain::Pinned(v.into_iter().next().unwrap_or_default()),
                _ => Domain::None,
            },
            Place::Claim(ci) => {
                let claim = &self.decision.new_node_claims[ci];
                if key == labels::HOSTNAME {
                    return Domain::Pinned(claim.hostname.clone());
                }
                let Some(p) = self.claim_pool[ci] else {
                    return Domain::Unpinned(None);
                };
                let pool = &self.snap.node_pools[p];
                let mut all: BTreeSet<String> = BTreeSet::new();
                let mut absent = 0;
                let types = &self.claim_types[ci];
                for it in types {
                    match claim_option_label(claim, pool, it, key) {
                        LabelValue::Absent => absent += 1,
                        LabelValue::Values(v) => all.extend(v),
                        LabelValue::Open(_) => return Domain::Unpinned(None),
                    }
                }
                if absent == types.len() {
                    Domain::None
                } else if absent == 0 && all.len() == 1 {
                    Domain::Pinned(all.into_iter().next().unwrap_or_default())
                } else {
                    Domain::Unpinned(Some(all))
                }
            }
        }
    }

    fn check_capacity(&self, entries: &[Entry], out: &mut Vec<Violation>) {
        // Existing nodes: bound + new.
        for (ni, node) in self.snap.nodes.iter().enumerate() {
            let on: Vec<&Entry> = entries
                .iter()
                .filter(|e| e.place == Place::Node(ni))
                .collect();
            if !on.iter().any(|e| e.new) {
                continue;
            }
            if node.marked_for_deletion {
                for e in on.iter().filter(|e| e.new) {
                    out.push(Violation::NodeDeleting {
                        node: node.name.clone(),
                        pod: e.pod.key.clone(),
                    });
                }
            }
            let used = on.iter().fold(Resources::ZERO, |a, e| a + e.pod.requests);
            for slot in 0..NUM_RESOURCES {
                if used.0[slot] > node.allocatable.0[slot] {
                    out.push(Violation::OverCapacity {
                        place: self.place_name(Place::Node(ni)),
                        instance_type: None,
                        resource: resource_name(slot),
                        need: used.0[slot],
                        have: node.allocatable.0[slot],
                    });
                }
            }
            let mut other: BTreeMap<&str, i64> = BTreeMap::new();
            for e in &on {
                for (k, v) in &e.pod.other_requests {
                    *other.entry(k).or_default() += v;
                }
            }
            for (k, need) in other {
                let have = node.other_allocatable.get(k).copied().unwrap_or(0);
                if need > have {
                    out.push(Violation::OverCapacity {
                        place: self.place_name(Place::Node(ni)),
                        instance_type: None,
                        resource: k.to_string(),
                        need,
                        have,
                    });
                }
            }
        }
        // New claims: every option.
        for (ci, claim) in self.decision.new_node_claims.iter().enumerate() {
            let on: Vec<&Entry> = entries
                .iter()
                .filter(|e| e.place == Place::Claim(ci))
                .collect();
            let need = on
                .iter()
                .fold(claim.daemon_overhead, |a, e| a + e.pod.requests);
            for e in &on {
                if let Some((k, v)) = e.pod.other_requests.iter().next() {
                    out.push(Violation::OverCapacity {
                        place: claim_name(claim),
                        instance_type: None,
                        resource: k.clone(),
                        need: *v,
                        have: 0,
                    });
                }
            }
            for it in &self.claim_types[ci] {
                let alloc = it.capacity.saturating_sub(&it.overhead);
                for slot in 0..NUM_RESOURCES {
                    if need.0[slot] > alloc.0[slot] {
                        out.push(Violation::OverCapacity {
                            place: claim_name(claim),
                            instance_type: Some(it.name.clone()),
                            resource: resource_name(slot),
                            need: need.0[slot],
                            have: alloc.0[slot],
                        });
                    }
                }
            }
        }
    }

    fn check_claim_options(&self, out: &mut Vec<Violation>) {
        for (ci, claim) in self.decision.new_node_claims.iter().enumerate() {
            for it in &self.claim_types[ci] {
                let recorded = claim.instance_types.iter().find(|o| o.name == it.name);
                let ok = allowed_offerings(it, &claim.requirements).any(|o| {
                    recorded.is_none_or(|r| {
                        r.zone == o.zone && r.capacity_type == o.capacity_type && r.price == o.price
                    })
                });
                if !ok {
                    out.push(Violation::NoOffering {
                        claim: claim_name(claim),
                        instance_type: it.name.clone(),
                    });
                }
                for (key, req) in claim.requirements.iter() {
                    if key == labels::ZONE || key == labels::CAPACITY_TYPE {
                        continue;
                    }
                    if let Some(have) = it.requirements.get(key)
                        && !have.intersects(req)
                    {
                        out.push(Violation::OptionIncompatible {
                            claim: claim_name(claim),
                            instance_type: it.name.clone(),
                            key: key.clone(),
                        });
                    }
                }
            }
        }
    }

    fn check_node_selection(&self, entries: &[Entry], out: &mut Vec<Violation>) {
        for e in entries.iter().filter(|e| e.new) {
            let place = self.place_name(e.place);
            match e.place {
                Place::Node(ni) => {
                    let node = &self.snap.nodes[ni];
                    if let Err(detail) = pod_node_requirements_hold(e.pod, &|k| node_label(node, k))
                    {
                        out.push(Violation::NodeSelector {
                            pod: e.pod.key.clone(),
                            place: place.clone(),
                            detail,
                        });
                    }
                    for t in effective_taints(&node.taints) {
                        if !tolerated(e.pod, t) {
                            out.push(Violation::Taint {
                                pod: e.pod.key.clone(),
                                place: place.clone(),
                                taint: t.to_string(),
                            });
                        }
                    }
                }
                Place::Claim(ci) => {
                    let claim = &self.decision.new_node_claims[ci];
                    let Some(p) = self.claim_pool[ci] else {
                        continue;
                    };
                    let pool = &self.snap.node_pools[p];
                    for it in &self.claim_types[ci] {
                        if let Err(detail) = pod_node_requirements_hold(e.pod, &|k| {
                            claim_option_label(claim, pool, it, k)
                        }) {
                            out.push(Violation::NodeSelector {
                                pod: e.pod.key.clone(),
                                place: format!("{place} option {}", it.name),
                                detail,
                            });
                        }
                    }
                    for t in effective_taints(&pool.taints) {
                        if !tolerated(e.pod, t) {
                            out.push(Violation::Taint {
                                pod: e.pod.key.clone(),
                                place: place.clone(),
                                taint: t.to_string(),
                            });
                        }
                    }
                }
            }
        }
    }

    fn check_anti_affinity(&self, entries: &[Entry], out: &mut Vec<Violation>) {
        for owner in entries {
            for term in &owner.pod.pod_anti_affinity {
                let od = self.domain(owner.place, &term.topology_key);
                if od == Domain::None {
                    continue;
                }
                for other in entries {
                    if std::ptr::eq(other.pod, owner.pod) || !(owner.new || other.new) {
                        continue;
                    }
                    if !self.term_selects(owner.pod, term, other.pod) {
                        continue;
                    }
                    let same_place = owner.place == other.place;
                    let qd = self.domain(other.place, &term.topology_key);
                    if qd == Domain::None {
                        continue;
                    }
                    if same_place || od.may_share(&qd) {
                        out.push(Violation::AntiAffinity {
                            owner: owner.pod.key.clone(),
                            other: other.pod.key.clone(),
                            key: term.topology_key.clone(),
                            domain: if same_place {
                                format!("{} ({})", od.describe(), self.place_name(owner.place))
                            } else {
                                format!("{} / {}", od.describe(), qd.describe())
                            },
                        });
                    }
                }
            }
        }
    }

    /// Pools that could create a node for `pod`.
    fn usable_pools(&self, pod: &Pod) -> Vec<&'a NodePoolInput> {
        self.snap
            .node_pools
            .iter()
            .filter(|p| effective_taints(&p.taints).all(|t| tolerated(pod, t)))
            .filter(|p| {
                let mut reqs = pod.node_selector.clone();
                reqs.add_all(&pod.volume_requirements);
                p.requirements.intersects(&reqs).is_ok()
            })
            .collect()
    }

    /// Values of `key` the pod could get on a new node of `pool`.
    fn pool_domains(&self, pool: &NodePoolInput, pod: &Pod, key: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for it in &pool.instance_types {
            if !pod
                .requests
                .fits_in(&it.capacity.saturating_sub(&it.overhead))
            {
                continue;
            }
            let mut base = pool.requirements.clone();
            base.add_all(&pod.node_selector);
            base.add_all(&pod.volume_requirements);
            // nodeAffinityPolicy Honor (the default): a domain counts only where the pod's
            // required node affinity lets it run; its terms are ORed.
            let terms: Vec<Requirements> = if pod.required_node_affinity.is_empty() {
                vec![base]
            } else {
                pod.required_node_affinity
                    .iter()
                    .map(|term| {
                        let mut reqs = base.clone();
                        reqs.add_all(term);
                        reqs
                    })
                    .collect()
            };
            for reqs in &terms {
                let type_ok = reqs.iter().all(|(k, r)| {
                    k == labels::ZONE
                        || k == labels::CAPACITY_TYPE
                        || it.requirements.get(k).is_none_or(|have| have.intersects(r))
                });
                if !type_ok {
                    continue;
                }
                if key == labels::ZONE || key == labels::CAPACITY_TYPE {
                    for o in allowed_offerings(it, reqs) {
                        out.insert(if key == labels::ZONE {
                            o.zone.clone()
                        } else {
                            o.capacity_type.clone()
                        });
                    }
                } else if allowed_offerings(it, reqs).next().is_some() {
                    let v = it
                        .requirements
                        .get(key)
                        .or_else(|| reqs.get(key))
                        .map(finite_or_open);
                    if let Some(LabelValue::Values(vs)) = v {
                        out.extend(vs);
                    } else if let Some(v) = pool.labels.get(key) {
                        out.insert(v.clone());
                    }
                }
            }
        }
        out
    }

    fn check_spread(&self, entries: &[Entry], out: &mut Vec<Violation>) {
        for e in entries.iter().filter(|e| e.new) {
            for c in &e.pod.topology_spread {
                if c.when_unsatisfiable != WhenUnsatisfiable::DoNotSchedule {
                    continue;
                }
                let key = c.topology_key.as_str();
                let matches = |q: &Pod| {
                    q.key.namespace == e.pod.key.namespace
                        && selector_matches(&c.selector, &q.labels)
                };
                let here = match self.domain(e.place, key) {
                    Domain::Pinned(d) => d,
                    other => {
                        out.push(Violation::SpreadDomain {
                            pod: e.pod.key.clone(),
                            place: self.place_name(e.place),
                            key: key.to_string(),
                            detail: match other {
                                Domain::None => "the node has no such label".into(),
                                d => format!("domain not pinned: {}", d.describe()),
                            },
                        });
                        continue;
                    }
                };
                let mut counts: BTreeMap<String, usize> = BTreeMap::new();
                for q in entries {
                    if matches(q.pod)
                        && let Domain::Pinned(d) = self.domain(q.place, key)
                    {
                        *counts.entry(d).or_default() += 1;
                    }
                }
                let count = counts.get(&here).copied().unwrap_or(0);
                // Eligible domains.
                let mut eligible: BTreeSet<String> = BTreeSet::from([here.clone()]);
                let pools = self.usable_pools(e.pod);
                let mut min_zero = false;
                if key == labels::HOSTNAME {
                    min_zero = !pools.is_empty();
                } else {
                    for pool in &pools {
                        eligible.extend(self.pool_domains(pool, e.pod, key));
                    }
                    for q in entries.iter().filter(|q| matches(q.pod) && q.new) {
                        if let Place::Claim(_) = q.place
                            && let Domain::Pinned(d) = self.domain(q.place, key)
                        {
                            eligible.insert(d);
                        }
                    }
                }
                for node in &self.snap.nodes {
                    if node.marked_for_deletion {
                        continue;
                    }
                    if pod_node_requirements_hold(e.pod, &|k| node_label(node, k)).is_ok()
                        && let LabelValue::Values(v) = node_label(node, key)
                    {
                        eligible.extend(v);
                    }
                }
                let mut min = eligible
                    .iter()
                    .map(|d| counts.get(d).copied().unwrap_or(0))
                    .min()
                    .unwrap_or(0);
                if min_zero
                    || c.min_domains
                        .is_some_and(|m| (eligible.len() as i64) < m as i64)
                {
                    min = 0;
                }
                if count as i64 - min as i64 > c.max_skew as i64 {
                    out.push(Violation::Spread {
                        pod: e.pod.key.clone(),
                        key: key.to_string(),
                        domain: here,
                        count,
                        min,
                        max_skew: c.max_skew,
                    });
                }
            }
        }
    }

    fn check_host_ports(&self, entries: &[Entry], out: &mut Vec<Violation>) {
        let mut by_place: Vec<(Place, Vec<&Entry>)> = Vec::new();
        for e in entries.iter().filter(|e| !e.pod.host_ports.is_empty()) {
            match by_place.iter_mut().find(|(p, _)| *p == e.place) {
                Some((_, v)) => v.push(e),
                None => by_place.push((e.place, vec![e])),
            }
        }
        for (place, on) in by_place {
            for (i, a) in on.iter().enumerate() {
                for b in &on[i + 1..] {
                    if !(a.new || b.new) {
                        continue;
                    }
                    for pa in &a.pod.host_ports {
                        if b.pod.host_ports.iter().any(|pb| ports_conflict(pa, pb)) {
                            out.push(Violation::HostPort {
                                place: self.place_name(place),
                                pod: a.pod.key.clone(),
                                other: b.pod.key.clone(),
                                port: pa.port,
                            });
                        }
                    }
                }
            }
        }
    }

    fn check_limits(&self, out: &mut Vec<Violation>) {
        for (p, pool) in self.snap.node_pools.iter().enumerate() {
            let mut reserved = Resources::ZERO;
            for (ci, _) in self.decision.new_node_claims.iter().enumerate() {
                if self.claim_pool[ci] != Some(p) {
                    continue;
                }
                let max = self.claim_types[ci]
                    .iter()
                    .fold(Resources::ZERO, |m, it| m.slot_max(&it.capacity));
                reserved += max;
            }
            if let Some(limit) = pool.node_limit {
                let existing = self
                    .snap
                    .nodes
                    .iter()
                    .filter(|n| n.labels.get(labels::NODE_POOL) == Some(&pool.name))
                    .count();
                let new = self.claim_pool.iter().filter(|c| **c == Some(p)).count();
                if existing + new > limit {
                    out.push(Violation::Limits {
                        pool: pool.name.clone(),
                        resource: crate::resources::NODES.to_string(),
                        reserved: new as i64,
                        available: limit.saturating_sub(existing) as i64,
                    });
                }
            }
            for slot in 0..NUM_RESOURCES {
                if pool.limits.0[slot] == i64::MAX {
                    continue;
                }
                let available = pool.limits.0[slot].saturating_sub(pool.usage.0[slot]);
                if reserved.0[slot] > available {
                    out.push(Violation::Limits {
                        pool: pool.name.clone(),
                        resource: resource_name(slot),
                        reserved: reserved.0[slot],
                        available,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{benchmark_instance_types, diverse_pods, snapshot_with};
    use crate::requirements::Requirement;
    use crate::resources::{CPU, MEMORY, PODS};
    use crate::scheduling::decision::{ExistingNodePlan, InstanceTypeOption, Unschedulable};
    use crate::scheduling::{SolveOptions, solve};
    use crate::snapshot::{ExistingNode, TopologySpreadConstraint};

    fn pod(name: &str, cpu: i64) -> Pod {
        Pod::new(
            "default",
            name,
            Resources::from_pairs(&[(CPU, cpu), (MEMORY, 256 << 20), (PODS, 1)]),
        )
    }

    fn app(p: &mut Pod, app: &str) -> LabelSelector {
        p.labels.insert("app".into(), app.into());
        LabelSelector {
            match_labels: BTreeMap::from([("app".to_string(), app.to_string())]),
            match_expressions: vec![],
        }
    }

    /// A hand-made claim over the named types of pool "default".
    fn claim(
        snap: &Snapshot,
        host: &str,
        reqs: Requirements,
        types: &[&str],
        pods: &[&str],
    ) -> NewNodeClaim {
        let pool = &snap.node_pools[0];
        let instance_types = types
            .iter()
            .map(|n| {
                let it = pool.instance_types.iter().find(|t| t.name == *n).unwrap();
                let o = allowed_offerings(it, &reqs)
                    .min_by(|a, b| a.price.total_cmp(&b.price))
                    .unwrap();
                InstanceTypeOption {
                    name: it.name.clone(),
                    zone: o.zone.clone(),
                    capacity_type: o.capacity_type.clone(),
                    price: o.price,
                }
            })
            .collect();
        NewNodeClaim {
            node_pool: pool.name.clone(),
            hostname: host.into(),
            requirements: reqs,
            instance_types,
            pods: pods
                .iter()
                .map(|n| PodKey {
                    namespace: "default".into(),
                    name: n.to_string(),
                })
                .collect(),
            pod_requests: Resources::ZERO,
            daemon_overhead: Resources::ZERO,
            labels: BTreeMap::new(),
            taints: vec![],
        }
    }

    fn zone(z: &str) -> Requirements {
        let mut r = Requirements::new();
        r.add(labels::ZONE, Requirement::single(z));
        r
    }

    fn has(v: &[Violation], pred: impl Fn(&Violation) -> bool) -> bool {
        v.iter().any(pred)
    }

    fn existing_node(name: &str, cpu: i64, zone: &str) -> ExistingNode {
        ExistingNode {
            name: name.into(),
            labels: BTreeMap::from([
                (labels::HOSTNAME.to_string(), name.to_string()),
                (labels::ZONE.to_string(), zone.to_string()),
                (labels::ARCH.to_string(), "amd64".to_string()),
            ]),
            taints: vec![],
            allocatable: Resources::from_pairs(&[(CPU, cpu), (MEMORY, 8 << 30), (PODS, 110)]),
            other_allocatable: BTreeMap::new(),
            pods: vec![],
            in_flight: false,
            marked_for_deletion: false,
        }
    }

    #[test]
    fn solver_output_on_diverse_pods_passes() {
        let snap = snapshot_with(diverse_pods(300, 7), benchmark_instance_types(40));
        let d = solve(&snap, &SolveOptions::default());
        let v = verify(&snap, &d);
        assert!(
            v.is_empty(),
            "{}",
            v.iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    #[test]
    fn accounting_violations() {
        let snap = snapshot_with(
            vec![pod("a", 100), pod("b", 100)],
            benchmark_instance_types(4),
        );
        let mut d = Decision::default();
        d.new_node_claims.push(claim(
            &snap,
            "h1",
            Requirements::new(),
            &["fake-it-1"],
            &["a", "x"],
        ));
        d.unschedulable.push(Unschedulable {
            pod: PodKey {
                namespace: "default".into(),
                name: "a".into(),
            },
            reason: " ".into(),
        });
        d.existing.push(ExistingNodePlan {
            node: "ghost".into(),
            pods: vec![],
        });
        let v = verify(&snap, &d);
        assert!(has(
            &v,
            |x| matches!(x, Violation::MissingPod { pod } if pod.name == "b")
        ));
        assert!(has(
            &v,
            |x| matches!(x, Violation::DuplicatePod { pod, count: 2 } if pod.name == "a")
        ));
        assert!(has(
            &v,
            |x| matches!(x, Violation::UnknownPod { pod, .. } if pod.name == "x")
        ));
        assert!(has(&v, |x| matches!(x, Violation::EmptyReason { .. })));
        assert!(has(&v, |x| matches!(x, Violation::UnknownNode { .. })));
        let mut d2 = Decision::default();
        let mut c = claim(&snap, "h2", Requirements::new(), &["fake-it-1"], &[]);
        c.instance_types.clear();
        c.node_pool = "nope".into();
        d2.new_node_claims.push(c);
        let v = verify(&snap, &d2);
        assert!(has(&v, |x| matches!(x, Violation::EmptyClaim { .. })));
        assert!(has(&v, |x| matches!(x, Violation::NoOptions { .. })));
        assert!(has(&v, |x| matches!(x, Violation::UnknownPool { .. })));
        for x in &v {
            assert!(!x.to_string().is_empty());
        }
    }

    #[test]
    fn every_option_must_fit_and_have_an_offering() {
        let mut snap = snapshot_with(vec![pod("a", 1500)], benchmark_instance_types(4));
        let mut d = Decision::default();
        let mut c = claim(
            &snap,
            "h1",
            zone("test-zone-1"),
            &["fake-it-0", "fake-it-1"],
            &["a"],
        );
        c.daemon_overhead = Resources::from_pairs(&[(CPU, 100)]);
        d.new_node_claims.push(c);
        // fake-it-0 has 1 vCPU: too small. Then make fake-it-1 unavailable in zone 1.
        for o in &mut snap.node_pools[0].instance_types[1].offerings {
            if o.zone == "test-zone-1" {
                o.available = false;
            }
        }
        let v = verify(&snap, &d);
        assert!(has(
            &v,
            |x| matches!(x, Violation::OverCapacity { instance_type: Some(t), resource, need: 1600, .. } if t == "fake-it-0" && resource == "cpu")
        ));
        assert!(!has(
            &v,
            |x| matches!(x, Violation::OverCapacity { instance_type: Some(t), .. } if t == "fake-it-1")
        ));
        assert!(has(
            &v,
            |x| matches!(x, Violation::NoOffering { instance_type, .. } if instance_type == "fake-it-1")
        ));
        let mut bad = d.clone();
        bad.new_node_claims[0]
            .instance_types
            .push(InstanceTypeOption {
                name: "m5.huge".into(),
                zone: "z".into(),
                capacity_type: "spot".into(),
                price: 1.0,
            });
        assert!(has(&verify(&snap, &bad), |x| matches!(
            x,
            Violation::UnknownInstanceType { .. }
        )));
        let mut arm = Requirements::new();
        arm.add(labels::ARCH, Requirement::single("arm64"));
        bad.new_node_claims[0].requirements = arm;
        assert!(has(&verify(&snap, &bad), |x| matches!(
            x,
            Violation::OptionIncompatible { .. }
        )));
    }

    #[test]
    fn existing_node_capacity_and_deletion() {
        let mut snap = snapshot_with(vec![pod("a", 500)], benchmark_instance_types(4));
        let mut n = existing_node("n1", 1000, "test-zone-1");
        n.pods.push(pod("bound", 800));
        snap.nodes.push(n);
        let d = Decision {
            existing: vec![ExistingNodePlan {
                node: "n1".into(),
                pods: vec![snap.pods[0].key.clone()],
            }],
            ..Decision::default()
        };
        let v = verify(&snap, &d);
        assert!(has(&v, |x| matches!(
            x,
            Violation::OverCapacity {
                need: 1300,
                have: 1000,
                ..
            }
        )));
        snap.nodes[0].pods.clear();
        assert!(verify(&snap, &d).is_empty());
        snap.nodes[0].marked_for_deletion = true;
        assert!(has(&verify(&snap, &d), |x| matches!(
            x,
            Violation::NodeDeleting { .. }
        )));
        snap.nodes[0].marked_for_deletion = false;
        snap.pods[0]
            .other_requests
            .insert("example.com/fpga".into(), 1);
        assert!(has(
            &verify(&snap, &d),
            |x| matches!(x, Violation::OverCapacity { resource, .. } if resource == "example.com/fpga")
        ));
    }

    #[test]
    fn node_selector_and_affinity() {
        let mut p = pod("a", 100);
        p.node_selector
            .add(labels::ARCH, Requirement::single("arm64"));
        let mut snap = snapshot_with(vec![p], benchmark_instance_types(4));
        snap.nodes.push(existing_node("n1", 4000, "test-zone-1"));
        let on_node = Decision {
            existing: vec![ExistingNodePlan {
                node: "n1".into(),
                pods: vec![snap.pods[0].key.clone()],
            }],
            ..Decision::default()
        };
        assert!(has(&verify(&snap, &on_node), |x| matches!(
            x,
            Violation::NodeSelector { .. }
        )));
        let mut on_claim = Decision::default();
        on_claim.new_node_claims.push(claim(
            &snap,
            "h1",
            Requirements::new(),
            &["fake-it-0"],
            &["a"],
        ));
        assert!(has(&verify(&snap, &on_claim), |x| matches!(
            x,
            Violation::NodeSelector { .. }
        )));
        // Required node affinity: one OR term must hold; zone In [zone-2] on an unpinned claim
        // does not hold (the node may land in zone 1 or 3).
        snap.pods[0].node_selector = Requirements::new();
        snap.pods[0].required_node_affinity = vec![zone("test-zone-9"), zone("test-zone-2")];
        assert!(has(&verify(&snap, &on_claim), |x| matches!(
            x,
            Violation::NodeSelector { .. }
        )));
        on_claim.new_node_claims[0] =
            claim(&snap, "h1", zone("test-zone-2"), &["fake-it-0"], &["a"]);
        assert!(
            verify(&snap, &on_claim).is_empty(),
            "{:?}",
            verify(&snap, &on_claim)
        );
    }

    #[test]
    fn taints_must_be_tolerated() {
        let mut snap = snapshot_with(vec![pod("a", 100)], benchmark_instance_types(4));
        let taint = Taint {
            key: "gpu".into(),
            value: "true".into(),
            effect: TaintEffect::NoSchedule,
        };
        snap.node_pools[0].taints.push(taint.clone());
        let mut d = Decision::default();
        d.new_node_claims.push(claim(
            &snap,
            "h1",
            Requirements::new(),
            &["fake-it-0"],
            &["a"],
        ));
        assert!(has(&verify(&snap, &d), |x| matches!(
            x,
            Violation::Taint { .. }
        )));
        snap.pods[0].tolerations.push(crate::snapshot::Toleration {
            key: "gpu".into(),
            exists: true,
            value: String::new(),
            effect: None,
        });
        assert!(verify(&snap, &d).is_empty());
        let mut n = existing_node("n1", 4000, "test-zone-1");
        n.taints.push(Taint {
            key: "other".into(),
            value: String::new(),
            effect: TaintEffect::NoExecute,
        });
        snap.nodes.push(n);
        let d = Decision {
            existing: vec![ExistingNodePlan {
                node: "n1".into(),
                pods: vec![snap.pods[0].key.clone()],
            }],
            ..Decision::default()
        };
        assert!(has(
            &verify(&snap, &d),
            |x| matches!(x, Violation::Taint { taint, .. } if taint == "other:NoExecute")
        ));
    }

    fn anti(name: &str, key: &str) -> Pod {
        let mut p = pod(name, 100);
        let selector = app(&mut p, "anti");
        p.pod_anti_affinity.push(PodAffinityTerm {
            topology_key: key.into(),
            selector,
            namespaces: vec![],
            namespace_selector: None,
        });
        p
    }

    #[test]
    fn hostname_anti_affinity() {
        let snap = snapshot_with(
            vec![anti("a", labels::HOSTNAME), anti("b", labels::HOSTNAME)],
            benchmark_instance_types(4),
        );
        let mut d = Decision::default();
        d.new_node_claims.push(claim(
            &snap,
            "h1",
            Requirements::new(),
            &["fake-it-1"],
            &["a", "b"],
        ));
        assert!(has(&verify(&snap, &d), |x| matches!(
            x,
            Violation::AntiAffinity { .. }
        )));
        let mut ok = Decision::default();
        ok.new_node_claims.push(claim(
            &snap,
            "h1",
            Requirements::new(),
            &["fake-it-1"],
            &["a"],
        ));
        ok.new_node_claims.push(claim(
            &snap,
            "h2",
            Requirements::new(),
            &["fake-it-1"],
            &["b"],
        ));
        assert!(verify(&snap, &ok).is_empty());
        // An existing pod's anti-affinity repels a new matching pod on its node.
        let mut snap2 = snapshot_with(
            vec![anti("b", labels::HOSTNAME)],
            benchmark_instance_types(4),
        );
        let mut n = existing_node("n1", 4000, "test-zone-1");
        n.pods.push(anti("a", labels::HOSTNAME));
        snap2.nodes.push(n);
        let d = Decision {
            existing: vec![ExistingNodePlan {
                node: "n1".into(),
                pods: vec![snap2.pods[0].key.clone()],
            }],
            ..Decision::default()
        };
        assert!(has(&verify(&snap2, &d), |x| matches!(
            x,
            Violation::AntiAffinity { .. }
        )));
    }

    #[test]
    fn zone_anti_affinity_needs_pinned_distinct_zones() {
        let snap = snapshot_with(
            vec![anti("a", labels::ZONE), anti("b", labels::ZONE)],
            benchmark_instance_types(4),
        );
        let two = |ra: Requirements, rb: Requirements| {
            let mut d = Decision::default();
            d.new_node_claims
                .push(claim(&snap, "h1", ra, &["fake-it-0"], &["a"]));
            d.new_node_claims
                .push(claim(&snap, "h2", rb, &["fake-it-0"], &["b"]));
            d
        };
        let same = two(zone("test-zone-1"), zone("test-zone-1"));
        assert!(has(&verify(&snap, &same), |x| matches!(
            x,
            Violation::AntiAffinity { .. }
        )));
        let unpinned = two(zone("test-zone-1"), Requirements::new());
        assert!(has(&verify(&snap, &unpinned), |x| matches!(
            x,
            Violation::AntiAffinity { .. }
        )));
        let distinct = two(zone("test-zone-1"), zone("test-zone-2"));
        assert!(verify(&snap, &distinct).is_empty());
    }

    fn spread(name: &str, key: &str, a: &str) -> Pod {
        let mut p = pod(name, 100);
        let selector = app(&mut p, a);
        p.topology_spread.push(TopologySpreadConstraint {
            max_skew: 1,
            topology_key: key.into(),
            when_unsatisfiable: WhenUnsatisfiable::DoNotSchedule,
            selector,
            min_domains: None,
        });
        p
    }

    #[test]
    fn hostname_spread_allows_max_skew_per_node() {
        let snap = snapshot_with(
            vec![
                spread("a", labels::HOSTNAME, "h"),
                spread("b", labels::HOSTNAME, "h"),
            ],
            benchmark_instance_types(4),
        );
        let mut d = Decision::default();
        d.new_node_claims.push(claim(
            &snap,
            "h1",
            Requirements::new(),
            &["fake-it-1"],
            &["a", "b"],
        ));
        assert!(has(&verify(&snap, &d), |x| matches!(
            x,
            Violation::Spread {
                count: 2,
                min: 0,
                ..
            }
        )));
    }

    #[test]
    fn zone_spread_skew_and_pinning() {
        let pods: Vec<Pod> = (0..3)
            .map(|i| spread(&format!("p{i}"), labels::ZONE, "z"))
            .collect();
        let snap = snapshot_with(pods, benchmark_instance_types(4));
        let mut d = Decision::default();
        d.new_node_claims.push(claim(
            &snap,
            "h1",
            zone("test-zone-1"),
            &["fake-it-1"],
            &["p0", "p1"],
        ));
        d.new_node_claims.push(claim(
            &snap,
            "h2",
            zone("test-zone-2"),
            &["fake-it-1"],
            &["p2"],
        ));
        // Zone 3 is offered and empty: zone 1 holds 2, min 0, skew 2 > 1.
        assert!(has(&verify(&snap, &d), |x| matches!(
            x,
            Violation::Spread {
                count: 2,
                min: 0,
                ..
            }
        )));
        let mut ok = Decision::default();
        for (i, z) in ["test-zone-1", "test-zone-2", "test-zone-3"]
            .iter()
            .enumerate()
        {
            let name = format!("p{i}");
            ok.new_node_claims.push(claim(
                &snap,
                &format!("h{i}"),
                zone(z),
                &["fake-it-1"],
                &[&name],
            ));
        }
        assert!(verify(&snap, &ok).is_empty(), "{:?}", verify(&snap, &ok));
        ok.new_node_claims[2].requirements = Requirements::new();
        assert!(has(&verify(&snap, &ok), |x| matches!(
            x,
            Violation::SpreadDomain { .. }
        )));
    }

    #[test]
    fn host_ports_must_be_unique_per_node() {
        let mut a = pod("a", 100);
        let mut b = pod("b", 100);
        for p in [&mut a, &mut b] {
            p.host_ports.push(HostPort {
                ip: String::new(),
                port: 8080,
                protocol: "TCP".into(),
            });
        }
        let snap = snapshot_with(vec![a, b], benchmark_instance_types(4));
        let mut d = Decision::default();
        d.new_node_claims.push(claim(
            &snap,
            "h1",
            Requirements::new(),
            &["fake-it-1"],
            &["a", "b"],
        ));
        assert!(has(&verify(&snap, &d), |x| matches!(
            x,
            Violation::HostPort { port: 8080, .. }
        )));
    }

    #[test]
    fn pool_limits_count_the_largest_option() {
        let mut snap = snapshot_with(
            vec![pod("a", 100), pod("b", 100)],
            benchmark_instance_types(4),
        );
        snap.node_pools[0].limits = Resources::UNLIMITED;
        snap.node_pools[0].limits.0[CPU] = 4000;
        snap.node_pools[0].usage.0[CPU] = 1000;
        let mut d = Decision::default();
        d.new_node_claims.push(claim(
            &snap,
            "h1",
            Requirements::new(),
            &["fake-it-0", "fake-it-1"],
            &["a"],
        ));
        d.new_node_claims.push(claim(
            &snap,
            "h2",
            Requirements::new(),
            &["fake-it-0"],
            &["b"],
        ));
        // 2 vCPU (largest option) + 1 vCPU = 3 vCPU ≤ 4 - 1: fine.
        assert!(verify(&snap, &d).is_empty());
        d.new_node_claims[1].instance_types =
            claim(&snap, "h2", Requirements::new(), &["fake-it-1"], &["b"]).instance_types;
        assert!(has(&verify(&snap, &d), |x| matches!(
            x,
            Violation::Limits {
                reserved: 4000,
                available: 3000,
                ..
            }
        )));
    }

    #[test]
    fn node_limit_counts_the_pools_existing_nodes() {
        let mut snap = snapshot_with(
            vec![pod("a", 100), pod("b", 100)],
            benchmark_instance_types(4),
        );
        snap.node_pools[0].node_limit = Some(2);
        let mut mine = existing_node("n1", 1000, "z");
        mine.labels
            .insert(labels::NODE_POOL.into(), "default".into());
        snap.nodes = vec![mine, existing_node("other", 1000, "z")];
        let mut d = Decision::default();
        d.new_node_claims.push(claim(
            &snap,
            "h1",
            Requirements::new(),
            &["fake-it-0"],
            &["a"],
        ));
        d.unschedulable.push(Unschedulable {
            pod: PodKey {
                namespace: "default".into(),
                name: "b".into(),
            },
            reason: "node limit".into(),
        });
        // 1 existing (n1; "other" has no pool label) + 1 new = 2: fine.
        assert_eq!(verify(&snap, &d), vec![]);
        d.unschedulable.clear();
        d.new_node_claims.push(claim(
            &snap,
            "h2",
            Requirements::new(),
            &["fake-it-0"],
            &["b"],
        ));
        assert!(has(&verify(&snap, &d), |x| matches!(
            x,
            Violation::Limits {
                resource,
                reserved: 2,
                available: 1,
                ..
            } if resource == "nodes"
        )));
    }
}

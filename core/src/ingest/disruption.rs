//! Kubernetes objects → the facts disruption planning reads ([`DisruptionInput`]): per node its
//! NodeClaim (or what the NodeClaim would say, from the Node and its NodePool, when none is
//! given), per pod its priority, deletion cost, owner and `do-not-disrupt`, PDBs with what they
//! allow, and each NodePool's disruption settings. Offline, drift is computed where it can be
//! (the NodePool hash annotations, requirements, instance types) and read from the NodeClaim's
//! `Drifted` condition otherwise.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1 as k8s;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use super::IngestError;
use super::convert::{label_selector_from_k8s, object_name, requirement};
use super::manifests::Manifest;
use super::pod::is_terminal;
use crate::api::{self, NodeClaim, NodePool};
use crate::disruption::{
    ClaimFacts, DisruptionInput, DisruptionOptions, Drift, NodeFacts, PdbFacts, PodFacts,
    PoolDisruption,
};
use crate::labels;
use crate::requirements::{Operator, Requirements};
use crate::snapshot::{PodKey, Snapshot};

/// Annotation (USD per hour, e.g. `"0.05"`) on a NodePool: the least a consolidation of its
/// nodes must save. Beyond Karpenter (core#2388, core#1440).
pub const MIN_SAVINGS_ANNOTATION: &str = "karpenter-rs.io/min-consolidation-savings";
/// Karpenter's NodePool template hash, on the NodePool and copied to its NodeClaims.
pub const NODEPOOL_HASH_ANNOTATION: &str = "karpenter.sh/nodepool-hash";
/// Version of the hash algorithm; hashes of different versions are not compared.
pub const NODEPOOL_HASH_VERSION_ANNOTATION: &str = "karpenter.sh/nodepool-hash-version";
/// Pod annotation that orders ReplicaSet scale-down, and Karpenter's disruption cost.
pub const POD_DELETION_COST_ANNOTATION: &str = "controller.kubernetes.io/pod-deletion-cost";

/// A NodePool's disruption settings. `default_min_savings` applies when the pool has no
/// [`MIN_SAVINGS_ANNOTATION`].
pub fn pool_disruption(
    np: &NodePool,
    default_min_savings: f64,
) -> Result<PoolDisruption, IngestError> {
    let object = object_name("NodePool", &np.metadata, false);
    let d = &np.spec.disruption;
    let consolidate_after = d.consolidate_after.parse().map_err(|e| {
        IngestError::new(&object, "spec.disruption.consolidateAfter", e.to_string())
    })?;
    let min_savings = match np
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(MIN_SAVINGS_ANNOTATION))
    {
        Some(v) => v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| {
                IngestError::new(
                    &object,
                    format!("metadata.annotations[{MIN_SAVINGS_ANNOTATION}]"),
                    format!("{v:?} is not a non-negative amount of USD per hour"),
                )
            })?,
        None => default_min_savings,
    };
    Ok(PoolDisruption {
        policy: d.consolidation_policy,
        consolidate_after,
        budgets: d.budgets.clone(),
        min_savings_per_hour: min_savings,
    })
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

/// A pod's disruption facts.
pub fn pod_facts(pod: &k8s::Pod) -> PodFacts {
    let meta = &pod.metadata;
    let owner_kind = meta.owner_references.as_deref().and_then(|refs| {
        refs.iter()
            .find(|r| r.controller == Some(true))
            .or_else(|| refs.first())
            .map(|r| r.kind.clone())
    });
    // A mirror pod is owned by its Node, or carries the mirror annotation.
    let owner_kind = if annotation(meta, "kubernetes.io/config.mirror").is_some() {
        Some("Node".to_owned())
    } else {
        owner_kind
    };
    let spec = pod.spec.as_ref();
    let tolerates_disruption = spec.and_then(|s| s.tolerations.as_ref()).is_some_and(|ts| {
        ts.iter().any(|t| {
            let effect_ok = t
                .effect
                .as_deref()
                .is_none_or(|e| e.is_empty() || e == "NoSchedule");
            let key = t.key.as_deref().unwrap_or("");
            let exists = t.operator.as_deref() == Some("Exists");
            effect_ok && ((key.is_empty() && exists) || key == labels::DISRUPTED_TAINT)
        })
    });
    let ready = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_none_or(|c| c.status == "True");
    PodFacts {
        priority: spec.and_then(|s| s.priority),
        deletion_cost: annotation(meta, POD_DELETION_COST_ANNOTATION)
            .and_then(|v| v.trim().parse().ok()),
        owner_kind,
        do_not_disrupt: annotation(meta, labels::DO_NOT_DISRUPT) == Some("true"),
        terminal: is_terminal(pod),
        terminating: meta.deletion_timestamp.is_some(),
        tolerates_disruption,
        ready,
    }
}

fn int_or_percent(v: &IntOrString, total: i32, round_up: bool) -> Option<i32> {
    match v {
        IntOrString::Int(i) => Some(*i),
        IntOrString::String(s) => {
            let pct: u64 = s.trim().strip_suffix('%')?.parse().ok()?;
            let scaled = u64::try_from(total).unwrap_or(0) * pct;
            Some(if round_up {
                scaled.div_ceil(100)
            } else {
                scaled / 100
            } as i32)
        }
    }
}

/// A PDB's facts. Without `status` (manifests written by hand) the allowed disruptions are
/// computed as the disruption controller would, from the `pods` it selects.
pub fn pdb_facts(pdb: &PodDisruptionBudget, pods: &[&k8s::Pod]) -> Result<PdbFacts, IngestError> {
    let object = object_name("PodDisruptionBudget", &pdb.metadata, true);
    let namespace = pdb
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let spec = pdb.spec.clone().unwrap_or_default();
    let selector = label_selector_from_k8s(&object, "spec.selector", spec.selector.as_ref())?;
    let selected: Vec<&&k8s::Pod> = pods
        .iter()
        .filter(|p| p.metadata.namespace.as_deref().unwrap_or("default") == namespace)
        .filter(|p| selector.matches(p.metadata.labels.as_ref().unwrap_or(&BTreeMap::new())))
        .filter(|p| !is_terminal(p) && p.metadata.deletion_timestamp.is_none())
        .collect();
    let expected = selected.len() as i32;
    let healthy = selected.iter().filter(|p| pod_facts(p).ready).count() as i32;
    let zero = |v: &IntOrString| {
        matches!(v, IntOrString::Int(0)) || matches!(v, IntOrString::String(s) if s.trim() == "0%")
    };
    let fully_blocking = spec.max_unavailable.as_ref().is_some_and(zero)
        || matches!(&spec.min_available, Some(IntOrString::String(s)) if s.trim() == "100%");
    let computed = if let Some(max) = &spec.max_unavailable {
        let max = int_or_percent(max, expected, true).ok_or_else(|| {
            IngestError::new(
                &object,
                "spec.maxUnavailable",
                "not an integer or a percentage",
            )
        })?;
        (healthy - (expected - max)).max(0)
    } else if let Some(min) = &spec.min_available {
        let min = int_or_percent(min, expected, true).ok_or_else(|| {
            IngestError::new(
                &object,
                "spec.minAvailable",
                "not an integer or a percentage",
            )
        })?;
        (healthy - min).max(0)
    } else {
        (healthy - expected).max(0)
    };
    let disruptions_allowed = pdb
        .status
        .as_ref()
        .map_or(computed, |s| s.disruptions_allowed);
    Ok(PdbFacts {
        name: pdb.metadata.name.clone().unwrap_or_default(),
        namespace,
        selector,
        disruptions_allowed,
        fully_blocking,
        always_allow_unhealthy: spec.unhealthy_pod_eviction_policy.as_deref()
            == Some("AlwaysAllow"),
    })
}

fn condition<'a>(claim: &'a NodeClaim, type_: &str) -> Option<&'a Condition> {
    claim.status.as_ref()?.condition(type_)
}

/// Requirements drift: the node's labels must satisfy every requirement of the pool's
/// template (a missing label drifts unless the operator is `NotIn` or `DoesNotExist`).
pub fn requirements_drift(node_labels: &BTreeMap<String, String>, np: &NodePool) -> bool {
    let object = object_name("NodePool", &np.metadata, false);
    let mut reqs = Requirements::new();
    for r in &np.spec.template.spec.requirements {
        if let Ok(req) = requirement(&object, "", r.operator.as_str(), &r.values, true) {
            reqs.add(&r.key, req);
        }
    }
    reqs.iter().any(|(key, req)| match node_labels.get(key) {
        None => !matches!(req.operator(), Operator::NotIn | Operator::DoesNotExist),
        Some(v) => !req.has(v),
    })
}

/// Everything [`node_facts`] reads about one node.
pub struct NodeInputs<'a> {
    /// The Node.
    pub node: &'a k8s::Node,
    /// Its NodeClaim, when known.
    pub claim: Option<&'a NodeClaim>,
    /// Its NodePool, when it exists.
    pub pool: Option<&'a NodePool>,
    /// The instance type names the pool may launch (for `InstanceTypeNotFound` drift).
    pub pool_types: Option<Vec<&'a str>>,
    /// The plan's time (the creation time of objects that have none).
    pub now: Timestamp,
}

fn duration_of(d: &api::NillableDuration) -> Option<Duration> {
    d.parse().ok().flatten()
}

/// A node's disruption facts. A node is managed when it carries `karpenter.sh/nodepool`;
/// without a NodeClaim, the claim's facts come from the Node and its NodePool's template.
pub fn node_facts(inp: &NodeInputs<'_>) -> NodeFacts {
    let node = inp.node;
    let empty = BTreeMap::new();
    let node_labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_none_or(|c| c.status == "True");
    let Some(pool_name) = node_labels.get(labels::NODE_POOL).or_else(|| {
        inp.claim
            .and_then(|c| c.metadata.labels.as_ref())
            .and_then(|l| l.get(labels::NODE_POOL))
    }) else {
        return NodeFacts {
            claim: None,
            initialized: true,
            ready,
            deleting: node.metadata.deletion_timestamp.is_some(),
            instance_terminating: false,
            nominated_until: None,
            do_not_disrupt: annotation(&node.metadata, labels::DO_NOT_DISRUPT) == Some("true"),
        };
    };
    let created = inp
        .claim
        .and_then(|c| c.metadata.creation_timestamp.as_ref())
        .or(node.metadata.creation_timestamp.as_ref())
        .map_or(inp.now, |t| t.0);
    let initialized = node_labels
        .get(labels::NODE_INITIALIZED)
        .map(String::as_str)
        == Some("true");
    let initialized_at = match inp.claim.and_then(|c| condition(c, "Initialized")) {
        Some(c) if c.status == "True" => Some(c.last_transition_time.0),
        _ if initialized => Some(created),
        _ => None,
    };
    let (expire_after, termination_grace_period) = match (inp.claim, inp.pool) {
        (Some(c), _) => (
            duration_of(&c.spec.expire_after),
            c.spec
                .termination_grace_period
                .as_ref()
                .and_then(|d| d.parse().ok()),
        ),
        (None, Some(p)) => (
            duration_of(&p.spec.template.spec.expire_after),
            p.spec
                .template
                .spec
                .termination_grace_period
                .as_ref()
                .and_then(|d| d.parse().ok()),
        ),
        (None, None) => (None, None),
    };
    let drifted = drift(inp, node_labels);
    let instance_terminating = inp
        .claim
        .and_then(|c| condition(c, "InstanceTerminating"))
        .is_some_and(|c| c.status == "True");
    let claim_deleting = inp
        .claim
        .is_some_and(|c| c.metadata.deletion_timestamp.is_some())
        || instance_terminating;
    let claim_name = inp
        .claim
        .and_then(|c| c.metadata.name.clone())
        .unwrap_or_else(|| node.metadata.name.clone().unwrap_or_default());
    // Karpenter reads a registered node's annotations from the Node, not its NodeClaim.
    let do_not_disrupt = annotation(&node.metadata, labels::DO_NOT_DISRUPT) == Some("true");
    NodeFacts {
        claim: Some(ClaimFacts {
            name: claim_name,
            node_pool: pool_name.clone(),
            created,
            initialized_at,
            last_pod_event: inp
                .claim
                .and_then(|c| c.status.as_ref())
                .and_then(|s| s.last_pod_event_time.as_ref())
                .map(|t| t.0),
            drifted,
            expire_after,
            termination_grace_period,
            instance_type: node_labels.get(labels::INSTANCE_TYPE).cloned(),
            zone: node_labels.get(labels::ZONE).cloned(),
            capacity_type: node_labels.get(labels::CAPACITY_TYPE).cloned(),
        }),
        initialized,
        ready,
        deleting: node.metadata.deletion_timestamp.is_some() || claim_deleting,
        instance_terminating,
        nominated_until: None,
        do_not_disrupt,
    }
}

/// The first drift found, in Karpenter's order: the NodeClaim's own `Drifted` condition (the
/// controller's verdict, which includes what only the cloud knows: AMI, subnets, security
/// groups), then static NodePool drift, requirements, instance type.
fn drift(inp: &NodeInputs<'_>, node_labels: &BTreeMap<String, String>) -> Option<Drift> {
    if let Some(c) = inp.claim.and_then(|c| condition(c, "Drifted"))
        && c.status == "True"
    {
        return Some(Drift {
            reason: c.reason.clone(),
            since: c.last_transition_time.0,
        });
    }
    let pool = inp.pool?;
    let since = inp.now;
    if let Some(claim) = inp.claim {
        fn hash(m: &ObjectMeta) -> Option<(&str, &str)> {
            Some((
                annotation(m, NODEPOOL_HASH_ANNOTATION)?,
                annotation(m, NODEPOOL_HASH_VERSION_ANNOTATION)?,
            ))
        }
        if let (Some((ph, pv)), Some((ch, cv))) = (hash(&pool.metadata), hash(&claim.metadata))
            && pv == cv
            && ph != ch
        {
            return Some(Drift {
                reason: "NodePoolDrifted".into(),
                since,
            });
        }
    }
    if requirements_drift(node_labels, pool) {
        return Some(Drift {
            reason: "RequirementsDrifted".into(),
            since,
        });
    }
    if let Some(types) = &inp.pool_types {
        let found = node_labels
            .get(labels::INSTANCE_TYPE)
            .is_some_and(|t| types.contains(&t.as_str()));
        if !found {
            return Some(Drift {
                reason: "InstanceTypeNotFound".into(),
                since,
            });
        }
    }
    None
}

/// The cluster objects disruption reads besides the scheduling snapshot: from manifests
/// ([`disruption_input`]) or from the controller's cluster model.
#[derive(Clone, Debug, Default)]
pub struct DisruptionObjects<'a> {
    /// Every Node.
    pub nodes: Vec<&'a k8s::Node>,
    /// Every NodeClaim.
    pub claims: Vec<&'a NodeClaim>,
    /// Every Pod (unbound ones are ignored).
    pub pods: Vec<&'a k8s::Pod>,
    /// Every PodDisruptionBudget.
    pub pdbs: Vec<&'a PodDisruptionBudget>,
}

/// Builds the disruption input from manifests and the snapshot `build_snapshot` made of them.
/// NodeClaims are matched to Nodes by `status.nodeName`, then by provider id. Every problem
/// found is returned.
pub fn disruption_input(
    manifests: &[Manifest],
    snapshot: &Snapshot,
    node_pools: &[NodePool],
    now: Timestamp,
    options: DisruptionOptions,
    default_min_savings: f64,
) -> Result<DisruptionInput, Vec<IngestError>> {
    let mut objects = DisruptionObjects::default();
    for m in manifests {
        match m {
            Manifest::Node(n) => objects.nodes.push(n.as_ref()),
            Manifest::NodeClaim(c) => objects.claims.push(c.as_ref()),
            Manifest::Pod(p) => objects.pods.push(p.as_ref()),
            Manifest::PodDisruptionBudget(b) => objects.pdbs.push(b.as_ref()),
            _ => {}
        }
    }
    disruption_input_from(
        &objects,
        snapshot,
        node_pools,
        now,
        options,
        default_min_savings,
    )
}

/// [`disruption_input`] over objects already sorted by kind.
pub fn disruption_input_from(
    objects: &DisruptionObjects<'_>,
    snapshot: &Snapshot,
    node_pools: &[NodePool],
    now: Timestamp,
    options: DisruptionOptions,
    default_min_savings: f64,
) -> Result<DisruptionInput, Vec<IngestError>> {
    let mut errors = Vec::new();
    let DisruptionObjects {
        nodes,
        claims,
        pods,
        pdbs,
    } = objects;
    let mut pools = BTreeMap::new();
    for np in node_pools {
        match pool_disruption(np, default_min_savings) {
            Ok(p) => {
                pools.insert(np.metadata.name.clone().unwrap_or_default(), p);
            }
            Err(e) => errors.push(e),
        }
    }
    // First claim wins on both keys, as a search in list order would.
    let mut by_node_name: BTreeMap<&str, &NodeClaim> = BTreeMap::new();
    let mut by_provider_id: BTreeMap<&str, &NodeClaim> = BTreeMap::new();
    for c in claims {
        let status = c.status.as_ref();
        if let Some(n) = status.and_then(|s| s.node_name.as_deref()) {
            by_node_name.entry(n).or_insert(c);
        }
        if let Some(id) = status.and_then(|s| s.provider_id.as_deref()) {
            by_provider_id.entry(id).or_insert(c);
        }
    }
    // The instance types each pool may launch, for InstanceTypeNotFound drift: once per pool.
    let types_by_pool: BTreeMap<&str, Vec<&str>> = snapshot
        .node_pools
        .iter()
        .map(|np| {
            let types = np
                .instance_types
                .iter()
                .filter(|t| t.requirements.intersects(&np.requirements).is_ok())
                .map(|t| t.name.as_str())
                .collect();
            (np.name.as_str(), types)
        })
        .collect();
    let mut node_facts_map = BTreeMap::new();
    for node in nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        let provider_id = node.spec.as_ref().and_then(|s| s.provider_id.as_deref());
        let claim = by_node_name
            .get(name.as_str())
            .or_else(|| provider_id.and_then(|id| by_provider_id.get(id)))
            .copied();
        let pool_name = node
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(labels::NODE_POOL))
            .cloned();
        let pool = pool_name.as_deref().and_then(|p| {
            node_pools
                .iter()
                .find(|np| np.metadata.name.as_deref() == Some(p))
        });
        let pool_types = pool_name
            .as_deref()
            .and_then(|p| types_by_pool.get(p).cloned());
        node_facts_map.insert(
            name,
            node_facts(&NodeInputs {
                node,
                claim,
                pool,
                pool_types,
                now,
            }),
        );
    }
    let bound: Vec<&k8s::Pod> = pods
        .iter()
        .copied()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some())
        .collect();
    let mut pod_facts_map = BTreeMap::new();
    for p in &bound {
        let key = PodKey {
            namespace: p
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            name: p.metadata.name.clone().unwrap_or_default(),
        };
        pod_facts_map.insert(key, pod_facts(p));
    }
    let mut pdb_list = Vec::new();
    for b in pdbs {
        match pdb_facts(b, &bound) {
            Ok(f) => pdb_list.push(f),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(DisruptionInput {
        snapshot: snapshot.clone(),
        nodes: node_facts_map,
        pods: pod_facts_map,
        pdbs: pdb_list,
        pools,
        now,
        options,
    })
}

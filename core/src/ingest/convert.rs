//! Conversions shared by the pod, node and NodePool ingesters: quantities, taints,
//! tolerations, label selectors and node selector terms.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1 as k8s;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;

use super::IngestError;
use crate::requirements::{Operator, Requirement, Requirements};
use crate::resources::{self, Resources};
use crate::snapshot::{LabelSelector, Taint, TaintEffect, Toleration};

/// Label key of the selector expression that stands for a null Kubernetes selector.
///
/// Kubernetes reads a missing `labelSelector` in pod affinity and topology spread as "matches
/// no pods", while our [`LabelSelector::default`] matches everything; `key In []` never
/// matches, so it encodes "nothing" without a new variant.
pub const MATCH_NOTHING_KEY: &str = "karpenter.sh/null-selector";

/// Amounts of resources: the natively tracked slots plus everything else by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Amounts {
    pub native: Resources,
    pub other: BTreeMap<String, i64>,
}

impl Amounts {
    pub fn add(&mut self, rhs: &Amounts) {
        self.native += rhs.native;
        for (k, v) in &rhs.other {
            let e = self.other.entry(k.clone()).or_insert(0);
            *e = e.saturating_add(*v);
        }
    }

    pub fn max_with(&mut self, rhs: &Amounts) {
        self.native = self.native.slot_max(&rhs.native);
        for (k, v) in &rhs.other {
            let e = self.other.entry(k.clone()).or_insert(0);
            *e = (*e).max(*v);
        }
    }

    pub fn set(&mut self, name: &str, amount: i64) {
        match resources::slot(name) {
            Some(slot) => self.native.0[slot] = amount,
            None => {
                self.other.insert(name.to_string(), amount);
            }
        }
    }
}

/// Parses one quantity of resource `name`, naming `field` in the error.
pub(crate) fn quantity(
    object: &str,
    field: &str,
    name: &str,
    q: &Quantity,
) -> Result<i64, IngestError> {
    resources::parse_for_resource(name, &q.0)
        .map_err(|e| IngestError::new(object, field, e.to_string()))
}

/// Parses a resource list (`{cpu: 100m, memory: 1Gi, example.com/foo: 1}`) at `field`.
pub(crate) fn amounts(
    object: &str,
    field: &str,
    list: &BTreeMap<String, Quantity>,
) -> Result<Amounts, IngestError> {
    let mut out = Amounts::default();
    for (name, q) in list {
        let amount = quantity(object, &format!("{field}.{name}"), name, q)?;
        out.set(name, amount);
    }
    Ok(out)
}

/// Converts a Kubernetes taint.
pub fn taint_from_k8s(object: &str, field: &str, t: &k8s::Taint) -> Result<Taint, IngestError> {
    let effect = TaintEffect::parse(&t.effect).ok_or_else(|| {
        IngestError::new(
            object,
            format!("{field}.effect"),
            format!(
                "unknown taint effect {:?} (expected NoSchedule, PreferNoSchedule or NoExecute)",
                t.effect
            ),
        )
    })?;
    Ok(Taint {
        key: t.key.clone(),
        value: t.value.clone().unwrap_or_default(),
        effect,
    })
}

/// Converts a list of Kubernetes taints found at `field` (`spec.taints`).
pub fn taints_from_k8s(
    object: &str,
    field: &str,
    taints: &[k8s::Taint],
) -> Result<Vec<Taint>, IngestError> {
    taints
        .iter()
        .enumerate()
        .map(|(i, t)| taint_from_k8s(object, &format!("{field}[{i}]"), t))
        .collect()
}

/// Converts a Kubernetes toleration. The operator defaults to `Equal`; an empty effect
/// tolerates every effect.
pub fn toleration_from_k8s(
    object: &str,
    field: &str,
    t: &k8s::Toleration,
) -> Result<Toleration, IngestError> {
    let exists = match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => false,
        other => {
            return Err(IngestError::new(
                object,
                format!("{field}.operator"),
                format!("unknown toleration operator {other:?} (expected Exists or Equal)"),
            ));
        }
    };
    let effect = match t.effect.as_deref().unwrap_or("") {
        "" => None,
        e => Some(TaintEffect::parse(e).ok_or_else(|| {
            IngestError::new(
                object,
                format!("{field}.effect"),
                format!("unknown taint effect {e:?}"),
            )
        })?),
    };
    Ok(Toleration {
        key: t.key.clone().unwrap_or_default(),
        exists,
        value: t.value.clone().unwrap_or_default(),
        effect,
    })
}

/// A selector that matches no labels (Kubernetes' reading of a null selector).
pub fn match_nothing() -> LabelSelector {
    LabelSelector {
        match_labels: BTreeMap::new(),
        match_expressions: vec![(MATCH_NOTHING_KEY.to_string(), Operator::In, Vec::new())],
    }
}

/// Converts a label selector (`matchLabels` + `matchExpressions` with In, NotIn, Exists,
/// DoesNotExist). Pass `None` only where Kubernetes reads a null selector as "nothing".
pub fn label_selector_from_k8s(
    object: &str,
    field: &str,
    sel: Option<&meta::LabelSelector>,
) -> Result<LabelSelector, IngestError> {
    let Some(sel) = sel else {
        return Ok(match_nothing());
    };
    let mut out = LabelSelector {
        match_labels: sel.match_labels.clone().unwrap_or_default(),
        match_expressions: Vec::new(),
    };
    for (i, e) in sel.match_expressions.iter().flatten().enumerate() {
        let at = format!("{field}.matchExpressions[{i}]");
        let op = match e.operator.as_str() {
            "In" => Operator::In,
            "NotIn" => Operator::NotIn,
            "Exists" => Operator::Exists,
            "DoesNotExist" => Operator::DoesNotExist,
            other => {
                return Err(IngestError::new(
                    object,
                    format!("{at}.operator"),
                    format!(
                        "unknown label selector operator {other:?} (expected In, NotIn, Exists \
                         or DoesNotExist)"
                    ),
                ));
            }
        };
        let values = e.values.clone().unwrap_or_default();
        out.match_expressions.push((e.key.clone(), op, values));
    }
    Ok(out)
}

/// Converts one node selector requirement (`key`, `operator`, `values`). `karpenter` allows
/// Karpenter's `Gte`/`Lte` on top of the Kubernetes operators.
pub(crate) fn requirement(
    object: &str,
    field: &str,
    operator: &str,
    values: &[String],
    karpenter: bool,
) -> Result<Requirement, IngestError> {
    let op = Operator::parse(operator)
        .filter(|op| karpenter || !matches!(op, Operator::Gte | Operator::Lte))
        .ok_or_else(|| {
            IngestError::new(
                object,
                format!("{field}.operator"),
                format!("unknown node selector operator {operator:?}"),
            )
        })?;
    Requirement::new(op, values).map_err(|e| IngestError::new(object, field, e.to_string()))
}

/// Converts a node selector term (AND of its expressions).
///
/// `matchFields` may only name `metadata.name` in Kubernetes; it becomes a requirement on
/// `kubernetes.io/hostname`, which equals the node name on EKS and on nodes Karpenter creates.
/// An empty term yields empty requirements (Karpenter reads it as "anything", although
/// kube-scheduler would match no node).
pub(crate) fn node_selector_term(
    object: &str,
    field: &str,
    term: &k8s::NodeSelectorTerm,
) -> Result<Requirements, IngestError> {
    let mut out = Requirements::new();
    for (i, e) in term.match_expressions.iter().flatten().enumerate() {
        let at = format!("{field}.matchExpressions[{i}]");
        let values = e.values.clone().unwrap_or_default();
        out.add(
            &e.key,
            requirement(object, &at, &e.operator, &values, false)?,
        );
    }
    for (i, e) in term.match_fields.iter().flatten().enumerate() {
        let at = format!("{field}.matchFields[{i}]");
        if e.key != "metadata.name" {
            return Err(IngestError::new(
                object,
                format!("{at}.key"),
                format!("unsupported field {:?} (only metadata.name is)", e.key),
            ));
        }
        let values = e.values.clone().unwrap_or_default();
        let req = requirement(object, &at, &e.operator, &values, false)?;
        out.add(crate::labels::HOSTNAME, req);
    }
    Ok(out)
}

/// `Kind/namespace/name` for namespaced objects (namespace `default` when unset), `Kind/name`
/// for cluster-scoped ones.
pub(crate) fn object_name(kind: &str, meta: &meta::ObjectMeta, namespaced: bool) -> String {
    let name = meta
        .name
        .as_deref()
        .or(meta.generate_name.as_deref())
        .unwrap_or("<unnamed>");
    if namespaced {
        format!("{kind}/{}/{name}", namespace_of(meta))
    } else {
        format!("{kind}/{name}")
    }
}

/// The namespace of a namespaced object, `default` when unset (as `kubectl apply` does).
pub(crate) fn namespace_of(meta: &meta::ObjectMeta) -> String {
    match meta.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => ns.to_string(),
        _ => "default".to_string(),
    }
}

//! Validation of NodePools and NodeClaims, mirroring Karpenter's CRD schema (patterns and CEL
//! `x-kubernetes-validations`) and its admission-time checks, so a manifest the API server
//! would reject is rejected here too, with every problem reported at once.
//!
//! Provider-specific rules (e.g. the AWS CRD's restriction of the `karpenter.k8s.aws` label
//! domain) are not included; providers layer those on.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use k8s_openapi::api::core::v1::Taint;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::duration::{GoDuration, NillableDuration};
use super::nodeclaim::{
    NodeClaim, NodeClassReference, NodeSelectorOperator, NodeSelectorRequirementWithMinValues,
};
use super::nodepool::{Budget, NodePool};

/// One problem found in an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationError {
    /// `Kind/name` of the object, e.g. `NodePool/default`.
    pub object: String,
    /// JSON path of the offending field, e.g. `spec.template.spec.requirements[2].values`.
    pub field: String,
    /// What is wrong, in Karpenter's words where it has them.
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.object, self.field, self.message)
    }
}

impl std::error::Error for ValidationError {}

/// Label keys under `kubernetes.io` that NodePools may use (the CRD's allow-list).
const ALLOWED_KUBERNETES_IO_KEYS: &[&str] = &[
    "beta.kubernetes.io/instance-type",
    "failure-domain.beta.kubernetes.io/region",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/arch",
    "failure-domain.beta.kubernetes.io/zone",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "node.kubernetes.io/instance-type",
    "kubernetes.io/arch",
    "kubernetes.io/os",
    "node.kubernetes.io/windows-build",
];

const NODE_POOL_LABEL: &str = "karpenter.sh/nodepool";
const MAX_REQUIREMENTS: usize = 100;
const MAX_LABELS: usize = 100;
const MAX_BUDGETS: usize = 50;

/// Why `key` may not be used as a NodePool/NodeClaim requirement key, per the CRD's CEL rules;
/// `None` if allowed. `karpenter.sh/nodepool` is allowed here (NodeClaims carry it); NodePools
/// reject it separately. Template labels have fewer rules
/// ([`restricted_template_label_error`]).
///
/// Restricted: `kubernetes.io/hostname`, the `kubernetes.io` domain except well-known labels
/// and `*node.kubernetes.io` / `*node-restriction.kubernetes.io`, the `k8s.io` domain except
/// `*kops.k8s.io`, and the `karpenter.sh` domain except `karpenter.sh/capacity-type`.
pub fn restricted_label_error(key: &str) -> Option<&'static str> {
    if let Some(e) = restricted_template_label_error(key) {
        return Some(e);
    }
    let domain = label_domain(key);
    if domain.ends_with("kubernetes.io")
        && !ALLOWED_KUBERNETES_IO_KEYS.contains(&key)
        && !domain.ends_with("node.kubernetes.io")
        && !domain.ends_with("node-restriction.kubernetes.io")
    {
        return Some("label domain \"kubernetes.io\" is restricted");
    }
    if domain.ends_with("k8s.io") && !domain.ends_with("kops.k8s.io") {
        return Some("label domain \"k8s.io\" is restricted");
    }
    None
}

/// Why `key` may not be a NodePool template label, per the CRD's CEL rules; `None` if allowed
/// (`karpenter.sh/nodepool` is allowed here; NodePools reject it separately).
///
/// Karpenter v1.10 dropped the `kubernetes.io` and `k8s.io` domain rules for template labels
/// (kubernetes-sigs/karpenter#2586): Karpenter sets them on the Node itself. Still restricted:
/// `kubernetes.io/hostname`, and the `karpenter.sh` domain except `karpenter.sh/capacity-type`.
/// Requirement keys keep every rule ([`restricted_label_error`]).
pub fn restricted_template_label_error(key: &str) -> Option<&'static str> {
    if key == "kubernetes.io/hostname" {
        return Some("label \"kubernetes.io/hostname\" is restricted");
    }
    if label_domain(key).ends_with("karpenter.sh")
        && key != "karpenter.sh/capacity-type"
        && key != NODE_POOL_LABEL
    {
        return Some("label domain \"karpenter.sh\" is restricted");
    }
    None
}

/// CEL: `self.find("^([^/]+)")` — the part before the first '/', or the whole key.
fn label_domain(key: &str) -> &str {
    key.split('/').next().unwrap_or(key)
}

fn is_label_name(s: &str) -> bool {
    // ([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

/// Kubernetes' `IsQualifiedName`: an optional DNS-subdomain prefix and `/`, then a name of at
/// most 63 alphanumerics, `-`, `_`, `.` starting and ending alphanumeric.
pub fn qualified_name_error(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if name.contains('/') {
        return Some(format!("{key:?} must have at most one '/'"));
    }
    if let Some(p) = prefix
        && !is_dns1123_subdomain(p)
    {
        return Some(format!("prefix {p:?} must be a lowercase DNS subdomain"));
    }
    if name.len() > 63 {
        return Some(format!(
            "name part of {key:?} must be no more than 63 characters"
        ));
    }
    if !is_label_name(name) {
        return Some(format!(
            "name part of {key:?} must consist of alphanumerics, '-', '_' or '.', \
             and start and end with an alphanumeric"
        ));
    }
    None
}

/// Kubernetes' `IsValidLabelValue`: empty, or at most 63 characters shaped like a label name.
pub fn label_value_error(value: &str) -> Option<String> {
    if value.is_empty() {
        None
    } else if value.len() > 63 {
        Some(format!(
            "label value {value:?} must be no more than 63 characters"
        ))
    } else if !is_label_name(value) {
        Some(format!(
            "label value {value:?} must consist of alphanumerics, '-', '_' or '.', \
             and start and end with an alphanumeric"
        ))
    } else {
        None
    }
}

/// Skips `[0-9]+(\.[0-9]*)?|\.[0-9]+` at the start of `s`, returning the rest.
fn skip_decimal(s: &str) -> Option<&str> {
    let int = s.bytes().take_while(u8::is_ascii_digit).count();
    let rest = &s[int..];
    match rest.strip_prefix('.') {
        Some(frac) => {
            let n = frac.bytes().take_while(u8::is_ascii_digit).count();
            (int > 0 || n > 0).then(|| &frac[n..])
        }
        None => (int > 0).then_some(rest),
    }
}

/// Checks the shape of a resource quantity (`"1000"`, `"1.5Gi"`, `"100m"`, `"1e3"`) as the CRD
/// pattern does; negative quantities are rejected since no Karpenter field allows them.
pub fn quantity_error(q: &str) -> Option<&'static str> {
    let (negative, unsigned) = match q.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, q.strip_prefix('+').unwrap_or(q)),
    };
    let valid = skip_decimal(unsigned).is_some_and(|suffix| {
        matches!(
            suffix,
            "" | "Ki"
                | "Mi"
                | "Gi"
                | "Ti"
                | "Pi"
                | "Ei"
                | "n"
                | "u"
                | "m"
                | "k"
                | "M"
                | "G"
                | "T"
                | "P"
                | "E"
        ) || suffix
            .strip_prefix(['e', 'E'])
            .map(|exp| exp.strip_prefix(['+', '-']).unwrap_or(exp))
            .and_then(skip_decimal)
            == Some("")
    });
    if !valid {
        Some("must be a quantity like 1000, 1.5, 100m or 1000Gi")
    } else if negative {
        Some("must not be negative")
    } else {
        None
    }
}

/// `^([0-9]+(s|m|h))+$`, the CRD pattern for Karpenter durations (units s, m, h only).
fn is_smh_duration(s: &str) -> bool {
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || !matches!(rest.as_bytes().get(digits), Some(b's' | b'm' | b'h')) {
            return false;
        }
        rest = &rest[digits + 1..];
    }
    !s.is_empty()
}

/// `^((([0-9]+(h|m))|([0-9]+h[0-9]+m))(0s)?)$`, the CRD pattern for budget durations.
fn is_budget_duration(s: &str) -> bool {
    let s = s.strip_suffix("0s").unwrap_or(s);
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|c| c.is_ascii_digit());
    match s.split_once('h') {
        Some((h, "")) => digits(h),
        Some((h, m)) => digits(h) && m.strip_suffix('m').is_some_and(digits),
        None => s.strip_suffix('m').is_some_and(digits),
    }
}

/// Shape of a budget schedule: a descriptor (`@daily`, ...) or five cron fields.
fn is_cron_schedule(s: &str) -> bool {
    if let Some(descriptor) = s.strip_prefix('@') {
        return matches!(
            descriptor,
            "annually" | "yearly" | "monthly" | "weekly" | "daily" | "midnight" | "hourly"
        );
    }
    let fields: Vec<&str> = s.split_whitespace().collect();
    fields.len() == 5
        && fields.iter().all(|f| {
            f.bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'*' | b'/' | b',' | b'-' | b'?'))
        })
}

/// Collects errors for one object.
struct Collector {
    object: String,
    errors: Vec<ValidationError>,
}

impl Collector {
    fn new(kind: &str, name: Option<&str>) -> Self {
        Collector {
            object: format!("{kind}/{}", name.unwrap_or_default()),
            errors: Vec::new(),
        }
    }

    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ValidationError {
            object: self.object.clone(),
            field: field.into(),
            message: message.into(),
        });
    }

    fn finish(self) -> Result<(), Vec<ValidationError>> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.errors)
        }
    }

    fn requirements(&mut self, reqs: &[NodeSelectorRequirementWithMinValues], base: &str) {
        if reqs.len() > MAX_REQUIREMENTS {
            self.push(base, format!("must have at most {MAX_REQUIREMENTS} items"));
        }
        for (i, r) in reqs.iter().enumerate() {
            let p = format!("{base}[{i}]");
            if let Some(e) = qualified_name_error(&r.key) {
                self.push(format!("{p}.key"), e);
            } else if let Some(e) = restricted_label_error(&r.key) {
                self.push(format!("{p}.key"), e);
            }
            for (j, v) in r.values.iter().enumerate() {
                if let Some(e) = label_value_error(v) {
                    self.push(format!("{p}.values[{j}]"), e);
                }
            }
            match r.operator {
                NodeSelectorOperator::In if r.values.is_empty() => self.push(
                    format!("{p}.values"),
                    "requirements with operator 'In' must have a value defined",
                ),
                NodeSelectorOperator::Exists | NodeSelectorOperator::DoesNotExist
                    if !r.values.is_empty() =>
                {
                    self.push(
                        format!("{p}.values"),
                        format!(
                            "requirements with operator '{}' must not have values",
                            r.operator
                        ),
                    )
                }
                op if op.is_comparison()
                    && !(r.values.len() == 1
                        && r.values[0].parse::<i64>().is_ok_and(|v| v >= 0)) =>
                {
                    self.push(
                        format!("{p}.values"),
                        "requirements operator 'Gt', 'Lt', 'Gte', or 'Lte' must have a single \
                         positive integer value",
                    )
                }
                _ => {}
            }
            if let Some(m) = r.min_values {
                if !(1..=50).contains(&m) {
                    self.push(format!("{p}.minValues"), "must be between 1 and 50");
                } else if r.operator == NodeSelectorOperator::In && r.values.len() < m as usize {
                    self.push(
                        format!("{p}.minValues"),
                        "requirements with 'minValues' must have at least that many values \
                         specified in the 'values' field",
                    );
                }
            }
        }
    }

    fn taints(&mut self, taints: &[Taint], startup: &[Taint], base: &str) {
        let mut seen = HashSet::new();
        let lists = [("taints", taints), ("startupTaints", startup)];
        for (name, list) in lists {
            for (i, t) in list.iter().enumerate() {
                let p = format!("{base}.{name}[{i}]");
                if t.key.is_empty() {
                    self.push(format!("{p}.key"), "taint key must not be empty");
                } else if let Some(e) = qualified_name_error(&t.key) {
                    self.push(format!("{p}.key"), e);
                }
                if let Some(v) = t.value.as_deref().filter(|v| !v.is_empty())
                    && let Some(e) = qualified_name_error(v)
                {
                    self.push(format!("{p}.value"), e);
                }
                if !matches!(
                    t.effect.as_str(),
                    "NoSchedule" | "PreferNoSchedule" | "NoExecute"
                ) {
                    self.push(
                        format!("{p}.effect"),
                        format!(
                            "unsupported taint effect {:?}; valid effects are NoSchedule, \
                             PreferNoSchedule and NoExecute",
                            t.effect
                        ),
                    );
                }
                if !seen.insert((t.key.as_str(), t.effect.as_str())) {
                    self.push(
                        p,
                        format!("duplicate taint Key/Effect pair {}={}", t.key, t.effect),
                    );
                }
            }
        }
    }

    fn node_class_ref(&mut self, r: &NodeClassReference, base: &str) {
        for (field, value) in [("group", &r.group), ("kind", &r.kind), ("name", &r.name)] {
            if value.is_empty() {
                self.push(
                    format!("{base}.{field}"),
                    format!("{field} may not be empty"),
                );
            }
        }
        if r.group.contains('/') {
            self.push(
                format!("{base}.group"),
                "group must not contain '/' (no version)",
            );
        }
    }

    fn nillable_duration(&mut self, d: &NillableDuration, field: &str) {
        if d.is_never() {
            return;
        }
        if !is_smh_duration(d.as_str()) {
            self.push(
                field,
                format!("{:?} must be a duration like 720h or 1h30m, or Never", d.0),
            );
        } else if let Err(e) = d.parse() {
            self.push(field, e.to_string());
        }
    }

    fn go_duration(&mut self, d: &GoDuration, field: &str) {
        if !is_smh_duration(d.as_str()) {
            self.push(
                field,
                format!("{:?} must be a duration like 48h or 1h30m", d.0),
            );
        } else if let Err(e) = d.parse() {
            self.push(field, e.to_string());
        }
    }

    fn quantities(&mut self, map: &BTreeMap<String, Quantity>, base: &str) {
        for (k, q) in map {
            if let Some(e) = quantity_error(&q.0) {
                self.push(format!("{base}[{k}]"), format!("{:?} {e}", q.0));
            }
        }
    }

    fn budgets(&mut self, budgets: &[Budget], base: &str) {
        if budgets.len() > MAX_BUDGETS {
            self.push(base, format!("must have at most {MAX_BUDGETS} items"));
        }
        for (i, b) in budgets.iter().enumerate() {
            let p = format!("{base}[{i}]");
            let nodes_ok = match b.nodes.strip_suffix('%') {
                Some(pct) => {
                    (1..=3).contains(&pct.len())
                        && pct.bytes().all(|c| c.is_ascii_digit())
                        && (pct.len() < 3 || pct == "100")
                }
                None => !b.nodes.is_empty() && b.nodes.bytes().all(|c| c.is_ascii_digit()),
            };
            if !nodes_ok {
                self.push(
                    format!("{p}.nodes"),
                    format!("{:?} must be a node count or a percentage 0%-100%", b.nodes),
                );
            }
            if let Some(s) = &b.schedule
                && !is_cron_schedule(s)
            {
                self.push(
                    format!("{p}.schedule"),
                    format!("{s:?} must be a 5-field cron expression or @yearly, @monthly, ..."),
                );
            }
            if let Some(d) = &b.duration {
                if !is_budget_duration(d.as_str()) {
                    self.push(
                        format!("{p}.duration"),
                        format!(
                            "{:?} must be hours and/or minutes, like 8h, 30m or 1h30m",
                            d.0
                        ),
                    );
                } else if let Err(e) = d.parse() {
                    self.push(format!("{p}.duration"), e.to_string());
                }
            }
            if b.schedule.is_some() != b.duration.is_some() {
                self.push(p, "'schedule' must be set with 'duration'");
            }
        }
    }
}

/// Validates a v1 NodePool; `Err` holds every problem found.
pub fn validate_node_pool(np: &NodePool) -> Result<(), Vec<ValidationError>> {
    let mut c = Collector::new("NodePool", np.metadata.name.as_deref());
    let template = &np.spec.template;
    let labels = &template.metadata.labels;
    if labels.len() > MAX_LABELS {
        c.push(
            "spec.template.metadata.labels",
            format!("must have at most {MAX_LABELS} labels"),
        );
    }
    for (key, value) in labels {
        let p = format!("spec.template.metadata.labels[{key}]");
        if key == NODE_POOL_LABEL {
            c.push(&p, "label \"karpenter.sh/nodepool\" is restricted");
        } else if let Some(e) = qualified_name_error(key) {
            c.push(&p, e);
        } else if let Some(e) = restricted_template_label_error(key) {
            c.push(&p, e);
        }
        if let Some(e) = label_value_error(value) {
            c.push(&p, e);
        }
    }
    let spec = &template.spec;
    let base = "spec.template.spec.requirements";
    c.requirements(&spec.requirements, base);
    for (i, r) in spec.requirements.iter().enumerate() {
        if r.key == NODE_POOL_LABEL {
            c.push(
                format!("{base}[{i}].key"),
                "label \"karpenter.sh/nodepool\" is restricted",
            );
        }
    }
    c.taints(&spec.taints, &spec.startup_taints, "spec.template.spec");
    c.node_class_ref(&spec.node_class_ref, "spec.template.spec.nodeClassRef");
    c.nillable_duration(&spec.expire_after, "spec.template.spec.expireAfter");
    if let Some(tgp) = &spec.termination_grace_period {
        c.go_duration(tgp, "spec.template.spec.terminationGracePeriod");
    }
    let disruption = &np.spec.disruption;
    c.nillable_duration(
        &disruption.consolidate_after,
        "spec.disruption.consolidateAfter",
    );
    c.budgets(&disruption.budgets, "spec.disruption.budgets");
    if let Some(limits) = &np.spec.limits {
        c.quantities(limits, "spec.limits");
    }
    if let Some(w) = np.spec.weight
        && !(1..=100).contains(&w)
    {
        c.push("spec.weight", format!("{w} must be between 1 and 100"));
    }
    c.finish()
}

/// Validates a v1 NodeClaim with the same requirement, taint and duration rules as NodePools
/// (`karpenter.sh/nodepool` is allowed: Karpenter adds it to every NodeClaim).
pub fn validate_node_claim(nc: &NodeClaim) -> Result<(), Vec<ValidationError>> {
    let mut c = Collector::new("NodeClaim", nc.metadata.name.as_deref());
    let spec = &nc.spec;
    c.requirements(&spec.requirements, "spec.requirements");
    c.taints(&spec.taints, &spec.startup_taints, "spec");
    c.node_class_ref(&spec.node_class_ref, "spec.nodeClassRef");
    c.nillable_duration(&spec.expire_after, "spec.expireAfter");
    if let Some(tgp) = &spec.termination_grace_period {
        c.go_duration(tgp, "spec.terminationGracePeriod");
    }
    c.quantities(&spec.resources.requests, "spec.resources.requests");
    c.finish()
}

#[cfg(test)]
#[path = "validation_tests.rs"]
mod tests;

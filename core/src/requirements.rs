//! The requirements algebra: sets of allowed values per label key, as Karpenter models them.
//!
//! A [`Requirement`] is either a finite set of values (`In`, `DoesNotExist` = empty set) or the
//! complement of one (`NotIn`, `Exists` = complement of nothing), optionally bounded by integer
//! `Gt`/`Lt` limits, plus the `minValues` flexibility a NodePool may ask for. Intersecting the
//! requirements of a NodePool, a pod and an instance type tells whether they can meet.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::labels;

/// A node selector operator, including Karpenter's `Gte`/`Lte`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operator {
    /// The label's value is one of the values.
    In,
    /// The label is absent or its value is none of the values.
    NotIn,
    /// The label is present.
    Exists,
    /// The label is absent.
    DoesNotExist,
    /// The label's value is an integer greater than the single value.
    Gt,
    /// The label's value is an integer less than the single value.
    Lt,
    /// Greater than or equal.
    Gte,
    /// Less than or equal.
    Lte,
}

impl Operator {
    /// Parses the operator as written in a manifest.
    pub fn parse(s: &str) -> Option<Operator> {
        Some(match s {
            "In" => Operator::In,
            "NotIn" => Operator::NotIn,
            "Exists" => Operator::Exists,
            "DoesNotExist" => Operator::DoesNotExist,
            "Gt" => Operator::Gt,
            "Lt" => Operator::Lt,
            "Gte" => Operator::Gte,
            "Lte" => Operator::Lte,
            _ => return None,
        })
    }

    /// The manifest spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Operator::In => "In",
            Operator::NotIn => "NotIn",
            Operator::Exists => "Exists",
            Operator::DoesNotExist => "DoesNotExist",
            Operator::Gt => "Gt",
            Operator::Lt => "Lt",
            Operator::Gte => "Gte",
            Operator::Lte => "Lte",
        }
    }
}

/// A requirement that could not be built from its manifest form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequirementError {
    /// The operator is not one Kubernetes or Karpenter knows.
    #[error("unknown operator {0:?}")]
    UnknownOperator(String),
    /// `Gt`/`Lt`/`Gte`/`Lte` need exactly one integer value.
    #[error("operator {operator} needs exactly one integer value, got {values:?}")]
    NotOneInteger {
        /// The operator.
        operator: &'static str,
        /// The values given.
        values: Vec<String>,
    },
    /// `Exists`/`DoesNotExist` take no values.
    #[error("operator {0} takes no values")]
    UnexpectedValues(&'static str),
}

/// Allowed values for one label key.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Requirement {
    complement: bool,
    values: BTreeSet<String>,
    greater_than: Option<i64>,
    less_than: Option<i64>,
    /// At least this many distinct values must stay possible (instance-type flexibility).
    pub min_values: Option<usize>,
}

impl Requirement {
    /// Builds a requirement from an operator and its values.
    pub fn new<S: AsRef<str>>(op: Operator, values: &[S]) -> Result<Requirement, RequirementError> {
        let set: BTreeSet<String> = values.iter().map(|v| v.as_ref().to_string()).collect();
        let one_int = |op: Operator| -> Result<i64, RequirementError> {
            if let [only] = values
                && let Ok(n) = only.as_ref().trim().parse::<i64>()
            {
                return Ok(n);
            }
            Err(RequirementError::NotOneInteger {
                operator: op.as_str(),
                values: values.iter().map(|v| v.as_ref().to_string()).collect(),
            })
        };
        let mut r = Requirement {
            complement: false,
            values: BTreeSet::new(),
            greater_than: None,
            less_than: None,
            min_values: None,
        };
        match op {
            Operator::In => r.values = set,
            Operator::NotIn => {
                r.complement = true;
                r.values = set;
            }
            Operator::Exists | Operator::DoesNotExist => {
                if !values.is_empty() {
                    return Err(RequirementError::UnexpectedValues(op.as_str()));
                }
                r.complement = op == Operator::Exists;
            }
            Operator::Gt => {
                r.complement = true;
                r.greater_than = Some(one_int(op)?);
            }
            Operator::Gte => {
                r.complement = true;
                r.greater_than = Some(one_int(op)?.saturating_sub(1));
            }
            Operator::Lt => {
                r.complement = true;
                r.less_than = Some(one_int(op)?);
            }
            Operator::Lte => {
                r.complement = true;
                r.less_than = Some(one_int(op)?.saturating_add(1));
            }
        }
        Ok(r)
    }

    /// `In` the given values.
    pub fn is_in<S: AsRef<str>>(values: &[S]) -> Requirement {
        Requirement::new(Operator::In, values).expect("In accepts any values")
    }

    /// `In` a single value.
    pub fn single(value: &str) -> Requirement {
        Requirement::is_in(&[value])
    }

    /// Any value (`Exists`).
    pub fn exists() -> Requirement {
        Requirement {
            complement: true,
            values: BTreeSet::new(),
            greater_than: None,
            less_than: None,
            min_values: None,
        }
    }

    /// No value (`DoesNotExist`).
    pub fn does_not_exist() -> Requirement {
        Requirement {
            complement: false,
            values: BTreeSet::new(),
            greater_than: None,
            less_than: None,
            min_values: None,
        }
    }

    /// True when this is the complement of a finite set (NotIn/Exists/Gt/Lt).
    pub fn is_complement(&self) -> bool {
        self.complement
    }

    /// The operator that best describes the set, as Karpenter reports it.
    pub fn operator(&self) -> Operator {
        if self.complement {
            if self.values.is_empty() && self.greater_than.is_none() && self.less_than.is_none() {
                Operator::Exists
            } else if self.values.is_empty() && self.less_than.is_none() {
                Operator::Gt
            } else if self.values.is_empty() && self.greater_than.is_none() {
                Operator::Lt
            } else {
                Operator::NotIn
            }
        } else if self.values.is_empty() {
            Operator::DoesNotExist
        } else {
            Operator::In
        }
    }

    /// The finite values (for `In`), or the excluded ones (for `NotIn`).
    pub fn values(&self) -> &BTreeSet<String> {
        &self.values
    }

    /// The exclusive lower bound, if any.
    pub fn greater_than(&self) -> Option<i64> {
        self.greater_than
    }

    /// The exclusive upper bound, if any.
    pub fn less_than(&self) -> Option<i64> {
        self.less_than
    }

    fn within_bounds(&self, value: &str) -> bool {
        if self.greater_than.is_none() && self.less_than.is_none() {
            return true;
        }
        let Ok(n) = value.parse::<i64>() else {
            return false;
        };
        self.greater_than.is_none_or(|gt| n > gt) && self.less_than.is_none_or(|lt| n < lt)
    }

    /// True when `value` is allowed.
    pub fn has(&self, value: &str) -> bool {
        if self.complement {
            !self.values.contains(value) && self.within_bounds(value)
        } else {
            self.values.contains(value) && self.within_bounds(value)
        }
    }

    /// True when no value at all is allowed (an empty `In`, or crossed bounds).
    pub fn is_empty(&self) -> bool {
        !self.complement && self.values.is_empty()
    }

    /// Number of allowed values, `usize::MAX` for unbounded sets.
    pub fn len(&self) -> usize {
        if self.complement {
            usize::MAX - self.values.len()
        } else {
            self.values.len()
        }
    }

    /// The set of values allowed by both requirements (Karpenter's `Intersection`).
    pub fn intersection(&self, other: &Requirement) -> Requirement {
        let complement = self.complement && other.complement;
        let greater_than = max_opt(self.greater_than, other.greater_than);
        let less_than = min_opt(self.less_than, other.less_than);
        let min_values = max_opt(self.min_values, other.min_values);
        if let (Some(gt), Some(lt)) = (greater_than, less_than)
            && gt.saturating_add(1) >= lt
        {
            let mut r = Requirement::does_not_exist();
            r.min_values = min_values;
            return r;
        }
        let mut values: BTreeSet<String> = match (self.complement, other.complement) {
            (true, true) => self.values.union(&other.values).cloned().collect(),
            (true, false) => other.values.difference(&self.values).cloned().collect(),
            (false, true) => self.values.difference(&other.values).cloned().collect(),
            (false, false) => self.values.intersection(&other.values).cloned().collect(),
        };
        let bounds = Requirement {
            complement: true,
            values: BTreeSet::new(),
            greater_than,
            less_than,
            min_values: None,
        };
        if !complement {
            values.retain(|v| bounds.within_bounds(v));
        }
        Requirement {
            complement,
            values,
            greater_than: if complement { greater_than } else { None },
            less_than: if complement { less_than } else { None },
            min_values,
        }
    }

    /// True when some value is allowed by both.
    pub fn intersects(&self, other: &Requirement) -> bool {
        // Fast paths for the common cases avoid building the intersection.
        match (self.complement, other.complement) {
            (false, false) => {
                let (small, big) = if self.values.len() <= other.values.len() {
                    (self, other)
                } else {
                    (other, self)
                };
                small
                    .values
                    .iter()
                    .any(|v| big.has(v) && small.within_bounds(v))
            }
            (false, true) => self
                .values
                .iter()
                .any(|v| other.has(v) && self.within_bounds(v)),
            (true, false) => other
                .values
                .iter()
                .any(|v| self.has(v) && other.within_bounds(v)),
            (true, true) => !self.intersection(other).is_empty_bounded(),
        }
    }

    fn is_empty_bounded(&self) -> bool {
        if !self.complement {
            return self.values.is_empty();
        }
        match (self.greater_than, self.less_than) {
            (Some(gt), Some(lt)) => {
                let span = (lt as i128) - (gt as i128) - 1;
                if span <= 0 {
                    return true;
                }
                if span > self.values.len() as i128 {
                    return false;
                }
                ((gt + 1)..lt).all(|n| self.values.contains(&n.to_string()))
            }
            _ => false,
        }
    }

    /// True when every value allowed by `self` is allowed by `other` too. Used to skip work
    /// when adding a constraint that changes nothing.
    pub fn is_subset_of(&self, other: &Requirement) -> bool {
        &self.intersection(other) == self
    }

    /// One allowed value, preferring the smallest of a finite set (deterministic).
    pub fn any_value(&self) -> Option<String> {
        if self.complement {
            None
        } else {
            self.values.iter().next().cloned()
        }
    }
}

fn max_opt<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

fn min_opt<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

impl fmt::Debug for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// Prints the requirement the way a manifest would say it (`In [a b]`, `Exists`, `Gt 4`,
/// `Gt 2 Lt 8`, `NotIn [x] Gt 2`).
impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |vals: &BTreeSet<String>| vals.iter().cloned().collect::<Vec<_>>().join(" ");
        let bounded = self.greater_than.is_some() || self.less_than.is_some();
        let mut parts: Vec<String> = Vec::new();
        if self.complement {
            if !self.values.is_empty() {
                parts.push(format!("NotIn [{}]", join(&self.values)));
            } else if !bounded {
                parts.push("Exists".to_string());
            }
        } else if self.values.is_empty() {
            parts.push("DoesNotExist".to_string());
        } else {
            parts.push(format!("In [{}]", join(&self.values)));
        }
        if let Some(gt) = self.greater_than {
            parts.push(format!("Gt {gt}"));
        }
        if let Some(lt) = self.less_than {
            parts.push(format!("Lt {lt}"));
        }
        if let Some(mv) = self.min_values {
            parts.push(format!("(minValues {mv})"));
        }
        f.write_str(&parts.join(" "))
    }
}

/// Requirements on several label keys; a key that is absent is unconstrained.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Requirements {
    by_key: BTreeMap<String, Requirement>,
}

/// Why two sets of requirements cannot meet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incompatibility {
    /// The label key at fault.
    pub key: String,
    /// A readable explanation.
    pub message: String,
}

impl fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Requirements {
    /// No constraints.
    pub fn new() -> Requirements {
        Requirements::default()
    }

    /// Requirements that a node with exactly these labels satisfies: each label `In` its value
    /// (deprecated keys folded into their stable ones, as [`Requirements::add`] does).
    pub fn from_labels<'a, I: IntoIterator<Item = (&'a String, &'a String)>>(labels: I) -> Self {
        let mut out = Requirements::new();
        for (k, v) in labels {
            out.add(k, Requirement::single(v));
        }
        out
    }

    /// Adds a requirement, intersecting with any existing one on the same key.
    ///
    /// A deprecated key (`beta.kubernetes.io/arch`, …) is stored under its stable key
    /// ([`labels::normalize`]), as Karpenter's `NewRequirement` does, so pods, NodePools and
    /// nodes that spell a label differently still meet on one key. Lookups ([`Self::get`],
    /// [`Self::has_key`], [`Self::remove`]) take the key as stored, like Karpenter's `Get`.
    pub fn add(&mut self, key: &str, req: Requirement) {
        let key = labels::normalize(key);
        match self.by_key.get_mut(key) {
            Some(existing) => *existing = existing.intersection(&req),
            None => {
                self.by_key.insert(key.to_string(), req);
            }
        }
    }

    /// Intersects every requirement of `other` into `self`.
    pub fn add_all(&mut self, other: &Requirements) {
        for (k, r) in &other.by_key {
            self.add(k, r.clone());
        }
    }

    /// The requirement on `key`, if constrained.
    pub fn get(&self, key: &str) -> Option<&Requirement> {
        self.by_key.get(key)
    }

    /// The requirement on `key`, or `Exists`-like "anything" when unconstrained.
    pub fn get_or_any(&self, key: &str) -> Requirement {
        self.by_key
            .get(key)
            .cloned()
            .unwrap_or_else(Requirement::exists)
    }

    /// True when `key` is constrained.
    pub fn has_key(&self, key: &str) -> bool {
        self.by_key.contains_key(key)
    }

    /// Removes the constraint on `key`.
    pub fn remove(&mut self, key: &str) -> Option<Requirement> {
        self.by_key.remove(key)
    }

    /// Iterates over (key, requirement) in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Requirement)> {
        self.by_key.iter()
    }

    /// Number of constrained keys.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// True when nothing is constrained.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Karpenter's `Intersects`: every key constrained by both must share a value, except that
    /// two "negative" requirements (NotIn/DoesNotExist) never conflict.
    pub fn intersects(&self, other: &Requirements) -> Result<(), Incompatibility> {
        let (small, big) = if self.len() <= other.len() {
            (self, other)
        } else {
            (other, self)
        };
        for (key, a) in &small.by_key {
            let Some(b) = big.by_key.get(key) else {
                continue;
            };
            if a.intersects(b) {
                continue;
            }
            let negative =
                |r: &Requirement| matches!(r.operator(), Operator::NotIn | Operator::DoesNotExist);
            if negative(a) && negative(b) {
                continue;
            }
            let (mine, theirs) = if std::ptr::eq(small, self) {
                (a, b)
            } else {
                (b, a)
            };
            return Err(Incompatibility {
                key: key.clone(),
                message: format!("{key} {mine} does not intersect {key} {theirs}"),
            });
        }
        Ok(())
    }

    /// Karpenter's `Compatible`: `incoming` must intersect `self`, and a key that `incoming`
    /// requires to exist must be defined by `self` unless it is well known (values for
    /// well-known keys come from instance types and offerings).
    pub fn compatible(&self, incoming: &Requirements) -> Result<(), Incompatibility> {
        self.compatible_with(incoming, true)
    }

    /// Like [`Requirements::compatible`], but with `allow_well_known_undefined = false` every
    /// positively required key must be defined (used for existing nodes, whose labels are
    /// final).
    pub fn compatible_with(
        &self,
        incoming: &Requirements,
        allow_well_known_undefined: bool,
    ) -> Result<(), Incompatibility> {
        for (key, req) in &incoming.by_key {
            if self.by_key.contains_key(key) {
                continue;
            }
            if matches!(req.operator(), Operator::NotIn | Operator::DoesNotExist) {
                continue;
            }
            if allow_well_known_undefined && labels::is_well_known(key) {
                continue;
            }
            return Err(Incompatibility {
                key: key.clone(),
                message: format!("label {key:?} does not have known values"),
            });
        }
        self.intersects(incoming)
    }

    /// Requirements allowed by both (keys of either side, intersected where shared).
    pub fn intersection(&self, other: &Requirements) -> Requirements {
        let mut out = self.clone();
        out.add_all(other);
        out
    }

    /// Labels that are fixed to a single value, as a node created under these requirements
    /// would carry them.
    pub fn single_valued_labels(&self) -> BTreeMap<String, String> {
        self.by_key
            .iter()
            .filter(|(_, r)| !r.complement && r.values.len() == 1)
            .map(|(k, r)| {
                (
                    k.clone(),
                    r.values.iter().next().cloned().unwrap_or_default(),
                )
            })
            .collect()
    }
}

impl fmt::Debug for Requirements {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// One `key op values` clause per line-free segment, separated by `, `.
impl fmt::Display for Requirements {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (k, r) in &self.by_key {
            if !first {
                write!(f, ", ")?;
            }
            first = false;
            write!(f, "{k} {r}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(op: Operator, vals: &[&str]) -> Requirement {
        Requirement::new(op, vals).unwrap()
    }

    #[test]
    fn in_and_not_in() {
        let a = req(Operator::In, &["a", "b", "c"]);
        let b = req(Operator::NotIn, &["b"]);
        let i = a.intersection(&b);
        assert_eq!(i.operator(), Operator::In);
        assert_eq!(
            i.values().iter().cloned().collect::<Vec<_>>(),
            vec!["a", "c"]
        );
        assert!(i.has("a") && !i.has("b"));
    }

    #[test]
    fn exists_and_does_not_exist() {
        let e = Requirement::exists();
        let d = Requirement::does_not_exist();
        assert!(e.intersection(&d).is_empty());
        assert!(e.has("anything"));
        assert!(!d.has("anything"));
        assert_eq!(e.operator(), Operator::Exists);
        assert_eq!(d.operator(), Operator::DoesNotExist);
    }

    #[test]
    fn numeric_bounds() {
        let gt = req(Operator::Gt, &["4"]);
        let lte = req(Operator::Lte, &["16"]);
        let both = gt.intersection(&lte);
        assert!(both.has("5") && both.has("16"));
        assert!(!both.has("4") && !both.has("17") && !both.has("x"));
        let cpus = req(Operator::In, &["2", "4", "8", "32"]);
        let i = cpus.intersection(&both);
        assert_eq!(i.values().iter().cloned().collect::<Vec<_>>(), vec!["8"]);
        let crossed = req(Operator::Gt, &["10"]).intersection(&req(Operator::Lt, &["11"]));
        assert!(crossed.is_empty());
        assert!(Requirement::new(Operator::Gt, &["x"]).is_err());
        assert!(Requirement::new(Operator::Gt, &["1", "2"]).is_err());
        assert!(Requirement::new(Operator::Exists, &["1"]).is_err());
    }

    #[test]
    fn min_values_carry_through_intersection() {
        let mut a = req(Operator::In, &["m5.large", "c5.large", "r5.large"]);
        a.min_values = Some(2);
        let b = req(Operator::NotIn, &["r5.large"]);
        assert_eq!(a.intersection(&b).min_values, Some(2));
    }

    #[test]
    fn compatible_checks_undefined_custom_labels() {
        let mut pool = Requirements::new();
        pool.add(labels::ARCH, Requirement::single("amd64"));
        let mut pod = Requirements::new();
        pod.add("team", Requirement::single("a"));
        let err = pool.compatible(&pod).unwrap_err();
        assert_eq!(err.key, "team");
        // Well-known keys may be undefined on the pool.
        let mut pod2 = Requirements::new();
        pod2.add(labels::ZONE, Requirement::single("us-east-1a"));
        assert!(pool.compatible(&pod2).is_ok());
        // NotIn on an undefined key is fine.
        let mut pod3 = Requirements::new();
        pod3.add("team", req(Operator::NotIn, &["b"]));
        assert!(pool.compatible(&pod3).is_ok());
        // Conflicting values are not.
        let mut pod4 = Requirements::new();
        pod4.add(labels::ARCH, Requirement::single("arm64"));
        let err = pool.compatible(&pod4).unwrap_err();
        assert!(err.message.contains("does not intersect"), "{err}");
    }

    #[test]
    fn negative_requirements_never_conflict() {
        let mut a = Requirements::new();
        a.add("k", req(Operator::NotIn, &["x"]));
        let mut b = Requirements::new();
        b.add("k", Requirement::does_not_exist());
        assert!(a.intersects(&b).is_ok());
    }

    #[test]
    fn deprecated_keys_are_read_as_stable_keys() {
        let mut pod = Requirements::new();
        pod.add("beta.kubernetes.io/arch", Requirement::single("arm64"));
        pod.add(
            "failure-domain.beta.kubernetes.io/zone",
            req(Operator::In, &["a", "b"]),
        );
        pod.add(labels::ZONE, req(Operator::NotIn, &["a"]));
        assert_eq!(
            pod.to_string(),
            "kubernetes.io/arch In [arm64], topology.kubernetes.io/zone In [b]"
        );
        assert!(
            pod.get("beta.kubernetes.io/arch").is_none(),
            "stored as stable"
        );
        // Node labels in both spellings fold into one requirement.
        let both = BTreeMap::from([
            ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
            (labels::OS.to_string(), "linux".to_string()),
            (
                "beta.kubernetes.io/instance-type".to_string(),
                "m5.large".to_string(),
            ),
        ]);
        let node = Requirements::from_labels(&both);
        assert_eq!(
            node.to_string(),
            "kubernetes.io/os In [linux], node.kubernetes.io/instance-type In [m5.large]"
        );
        let mut wants = Requirements::new();
        wants.add("beta.kubernetes.io/os", Requirement::single("linux"));
        assert!(node.compatible_with(&wants, false).is_ok());
        // Other keys are untouched.
        assert_eq!(
            labels::normalize("example.com/beta.kubernetes.io/arch"),
            "example.com/beta.kubernetes.io/arch"
        );
    }

    #[test]
    fn display_reads_like_a_manifest() {
        let mut r = Requirements::new();
        r.add(
            labels::ZONE,
            req(Operator::In, &["us-east-1a", "us-east-1b"]),
        );
        r.add("cpu", req(Operator::Gt, &["3"]));
        assert_eq!(
            r.to_string(),
            "cpu Gt 3, topology.kubernetes.io/zone In [us-east-1a us-east-1b]"
        );
    }
}

//! Image selection: `DescribeImages` queries for selector terms, and the choice among the images
//! found (newest per requirement set, non-deprecated preferred).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::NodeSelectorRequirement;
use karpenter_core::labels;

use super::amis::AmiPlan;
use super::{Filter, ResolveError, TermMatches, glob_match, tag_filters, tags_match};
use crate::aws::nodeclass::{self, AmiSelectorTerm};

const FIELD: &str = "spec.amiSelectorTerms";

/// An image as `DescribeImages` reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Image {
    /// Image id (`ami-0abc…`).
    pub id: String,
    /// Image name.
    pub name: String,
    /// EC2 architecture (`x86_64`, `arm64`; others are ignored).
    pub architecture: String,
    /// `CreationDate`, RFC 3339 (`2024-10-24T12:00:00.000Z`).
    pub creation_date: String,
    /// Owner account id.
    pub owner: String,
    /// `ImageOwnerAlias` (`amazon`, `aws-marketplace`), if any.
    pub owner_alias: Option<String>,
    /// True when the deprecation time has passed (the SDK layer decides against its clock).
    pub deprecated: bool,
    /// The image's tags.
    pub tags: BTreeMap<String, String>,
}

/// One node-selector requirement an image places on instance types.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Requirement {
    /// Label key.
    pub key: String,
    /// `In`, `Exists` or `DoesNotExist`.
    pub operator: String,
    /// Values for `In`.
    pub values: Vec<String>,
}

impl Requirement {
    /// `key Exists`.
    pub fn exists(key: &str) -> Self {
        Requirement {
            key: key.to_string(),
            operator: "Exists".to_string(),
            values: Vec::new(),
        }
    }

    /// `key DoesNotExist`.
    pub fn does_not_exist(key: &str) -> Self {
        Requirement {
            key: key.to_string(),
            operator: "DoesNotExist".to_string(),
            values: Vec::new(),
        }
    }

    /// `key In values`.
    pub fn is_in<'a>(key: &str, values: impl IntoIterator<Item = &'a str>) -> Self {
        Requirement {
            key: key.to_string(),
            operator: "In".to_string(),
            values: values.into_iter().map(str::to_string).collect(),
        }
    }

    /// The Kubernetes form, for `status.amis[].requirements`.
    pub fn to_node_selector(&self) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: self.key.clone(),
            operator: self.operator.clone(),
            values: (!self.values.is_empty()).then(|| self.values.clone()),
        }
    }
}

/// One `DescribeImages` call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageQuery {
    /// Filters, ANDed by EC2.
    pub filters: Vec<Filter>,
    /// The `Owners` parameter (account ids or `self`, `amazon`, …); empty means any owner.
    pub owners: Vec<String>,
}

/// The `DescribeImages` calls for ordinary selector terms.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageQueryPlan {
    /// One query per name/owner/tag term.
    pub queries: Vec<ImageQuery>,
    /// Ids from `id` terms, sent together as one `image-id` query.
    pub image_ids: Vec<String>,
    /// `(field, parameter)` of `ssmParameter` terms: the SDK layer reads each and adds the
    /// value to the `image-id` query (see [`ImageQueryPlan::describe_queries`]).
    pub ssm_parameters: Vec<(String, String)>,
}

impl ImageQueryPlan {
    /// The queries to send once the `ssmParameter` terms are read (`ssm_values`: name → image
    /// id). A parameter without a value is an error, as in Karpenter.
    pub fn describe_queries(
        &self,
        node_class: &str,
        ssm_values: &BTreeMap<String, String>,
    ) -> Result<Vec<ImageQuery>, ResolveError> {
        let mut ids = self.image_ids.clone();
        for (field, name) in &self.ssm_parameters {
            let id = ssm_values
                .get(name)
                .ok_or_else(|| ResolveError::InvalidTerm {
                    node_class: node_class.to_string(),
                    field: field.clone(),
                    message: format!("SSM parameter {name:?} has no value"),
                })?;
            ids.push(id.clone());
        }
        let mut queries = self.queries.clone();
        if !ids.is_empty() {
            queries.push(ImageQuery {
                filters: vec![Filter::new("image-id", ids)],
                owners: Vec::new(),
            });
        }
        Ok(queries)
    }
}

/// The `DescribeImages` plan for non-alias terms, as Karpenter's `DescribeImageQueries`: one
/// query per term with a `name` filter, `tag:`/`tag-key` filters and the term's owner; a name
/// without an owner is limited to `self` and `amazon` so that publicly shared look-alikes are
/// not picked up. Id terms are merged into one `image-id` query at the end. Alias and empty
/// terms are skipped.
pub fn image_queries(terms: &[AmiSelectorTerm]) -> ImageQueryPlan {
    let mut plan = ImageQueryPlan::default();
    for (i, term) in terms.iter().enumerate() {
        if term.alias.is_some() {
            continue;
        }
        if let Some(id) = &term.id {
            plan.image_ids.push(id.clone());
        } else if let Some(p) = &term.ssm_parameter {
            plan.ssm_parameters
                .push((format!("{FIELD}[{i}].ssmParameter"), p.clone()));
        } else if term.name.is_some() || term.owner.is_some() || !term.tags.is_empty() {
            let mut filters = Vec::new();
            if let Some(name) = &term.name {
                filters.push(Filter::new("name", [name.as_str()]));
            }
            filters.extend(tag_filters(&term.tags));
            plan.queries.push(ImageQuery {
                filters,
                owners: default_owners(term),
            });
        }
    }
    plan
}

fn default_owners(term: &AmiSelectorTerm) -> Vec<String> {
    match (&term.owner, &term.name) {
        (Some(o), _) => vec![o.clone()],
        (None, Some(_)) => vec!["self".to_string(), "amazon".to_string()],
        (None, None) => Vec::new(),
    }
}

/// What a local image check needs beyond the term: the account (`self` owner) and the values
/// of `ssmParameter` terms.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageMatchContext {
    /// The caller's account id; when unknown, `self` accepts any owner (EC2 already checked).
    pub account_id: Option<String>,
    /// SSM parameter name → image id.
    pub ssm_values: BTreeMap<String, String>,
}

impl ImageMatchContext {
    /// True when `term` selects `image`. Alias terms select nothing here (see
    /// [`resolve_amis`]).
    pub fn matches(&self, term: &AmiSelectorTerm, image: &Image) -> bool {
        if term.alias.is_some() {
            return false;
        }
        if let Some(id) = &term.id {
            return *id == image.id;
        }
        if let Some(p) = &term.ssm_parameter {
            return self.ssm_values.get(p) == Some(&image.id);
        }
        if term.name.is_none() && term.owner.is_none() && term.tags.is_empty() {
            return false;
        }
        let owners = default_owners(term);
        term.name
            .as_ref()
            .is_none_or(|n| glob_match(n, &image.name))
            && (owners.is_empty() || owners.iter().any(|o| self.owner_matches(o, image)))
            && tags_match(&term.tags, &image.tags)
    }

    fn owner_matches(&self, owner: &str, image: &Image) -> bool {
        owner == image.owner
            || image.owner_alias.as_deref() == Some(owner)
            || (owner == "self" && self.account_id.as_ref().is_none_or(|a| *a == image.owner))
    }
}

/// Checks with an unknown account and no SSM values (see [`ImageMatchContext`]).
impl TermMatches<Image> for AmiSelectorTerm {
    fn matches(&self, image: &Image) -> bool {
        ImageMatchContext::default().matches(self, image)
    }
}

/// An image chosen for a set of instance-type requirements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedImage {
    /// Image id.
    pub id: String,
    /// Image name.
    pub name: String,
    /// Creation date as EC2 reported it.
    pub creation_date: String,
    /// True when deprecated (only chosen when nothing else serves the requirements).
    pub deprecated: bool,
    /// The requirements it serves, sorted (architecture included).
    pub requirements: Vec<Requirement>,
}

/// Picks one image per requirement set, as Karpenter's `getAMIs`: each candidate comes with
/// the requirement sets it serves (without the architecture, which is added from the image;
/// images of other architectures than `x86_64`/`arm64` are ignored). Per set, a non-deprecated
/// image beats a deprecated one, then the newest creation date (whole seconds) wins, then the
/// greater name, then the smaller id. The result is ordered newest first, then by id
/// (Karpenter's `AMIs.Sort`).
pub fn select_images<'a>(
    candidates: impl IntoIterator<Item = (&'a Image, Vec<Vec<Requirement>>)>,
) -> Vec<ResolvedImage> {
    let mut best: BTreeMap<Vec<Requirement>, (&Image, i64)> = BTreeMap::new();
    for (image, sets) in candidates {
        let Some(arch) = kube_arch(&image.architecture) else {
            continue;
        };
        let created = creation_seconds(&image.creation_date);
        for mut reqs in sets {
            reqs.push(Requirement::is_in(labels::ARCH, [arch]));
            reqs.sort();
            let replace = match best.get(&reqs) {
                None => true,
                Some(&(cur, cur_created)) => {
                    better(image, created, cur, cur_created) == Ordering::Greater
                }
            };
            if replace {
                best.insert(reqs, (image, created));
            }
        }
    }
    let mut out: Vec<(i64, ResolvedImage)> = best
        .into_iter()
        .map(|(requirements, (image, created))| {
            let resolved = ResolvedImage {
                id: image.id.clone(),
                name: image.name.clone(),
                creation_date: image.creation_date.clone(),
                deprecated: image.deprecated,
                requirements,
            };
            (created, resolved)
        })
        .collect();
    out.sort_by(|(ca, a), (cb, b)| {
        cb.cmp(ca)
            .then_with(|| a.id.cmp(&b.id))
            .then_with(|| a.requirements.cmp(&b.requirements))
    });
    out.into_iter().map(|(_, r)| r).collect()
}

fn better(a: &Image, a_created: i64, b: &Image, b_created: i64) -> Ordering {
    (!a.deprecated)
        .cmp(&!b.deprecated)
        .then(a_created.cmp(&b_created))
        .then_with(|| a.name.cmp(&b.name))
        .then_with(|| b.id.cmp(&a.id))
}

/// EC2 → Kubernetes architecture names (Karpenter's `AWSToKubeArchitectures`).
fn kube_arch(ec2: &str) -> Option<&'static str> {
    match ec2 {
        "x86_64" => Some("amd64"),
        "arm64" => Some("arm64"),
        _ => None,
    }
}

/// Seconds since the epoch of an RFC 3339 time; unparsable dates sort as oldest (Karpenter
/// ignores the parse error and gets the zero time).
fn creation_seconds(s: &str) -> i64 {
    parse_rfc3339(s).unwrap_or(i64::MIN)
}

fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = &frac[digits..];
    }
    let offset = match rest.as_bytes() {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let oh: i64 = rest[1..3].parse().ok()?;
            let om: i64 = rest[4..6].parse().ok()?;
            let o = oh * 3600 + om * 60;
            if *sign == b'+' { o } else { -o }
        }
        _ => return None,
    };
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The AMIs of a node class, from what the SDK layer fetched for `plan`: `ssm_values` (SSM
/// parameter name → image id; missing parameters are skipped for aliases) and `images` (the
/// `DescribeImages` answers). For an alias, each image serves the requirement sets of the
/// parameters that named it; for terms, every matching image serves its architecture. Errors
/// when nothing is left.
pub fn resolve_amis(
    node_class: &str,
    plan: &AmiPlan,
    terms: &[AmiSelectorTerm],
    ssm_values: &BTreeMap<String, String>,
    images: &[Image],
    account_id: Option<&str>,
) -> Result<Vec<ResolvedImage>, ResolveError> {
    let mut unique: BTreeMap<&str, &Image> = BTreeMap::new();
    for image in images {
        unique.entry(&image.id).or_insert(image);
    }
    let (selected, field) = match plan {
        AmiPlan::Alias(query) => {
            let mut sets_by_id: BTreeMap<&str, Vec<Vec<Requirement>>> = BTreeMap::new();
            for p in &query.parameters {
                if let Some(id) = ssm_values.get(&p.name) {
                    let sets = sets_by_id.entry(id).or_default();
                    for s in &p.requirement_sets {
                        if !sets.contains(s) {
                            sets.push(s.clone());
                        }
                    }
                }
            }
            let candidates = unique
                .values()
                .filter_map(|i| sets_by_id.get(i.id.as_str()).map(|s| (*i, s.clone())));
            (select_images(candidates), query.field.clone())
        }
        AmiPlan::Terms(_) => {
            let ctx = ImageMatchContext {
                account_id: account_id.map(str::to_string),
                ssm_values: ssm_values.clone(),
            };
            let candidates = unique
                .values()
                .filter(|i| terms.iter().any(|t| ctx.matches(t, i)))
                .map(|i| (*i, vec![Vec::new()]));
            (select_images(candidates), FIELD.to_string())
        }
    };
    if selected.is_empty() {
        return Err(ResolveError::NoMatch {
            node_class: node_class.to_string(),
            field,
            what: "AMI",
        });
    }
    Ok(selected)
}

/// `status.amis` for resolved images, keeping their order; requirements sorted by key.
pub fn status_amis(images: &[ResolvedImage]) -> Vec<nodeclass::Ami> {
    images
        .iter()
        .map(|i| nodeclass::Ami {
            id: i.id.clone(),
            name: (!i.name.is_empty()).then(|| i.name.clone()),
            deprecated: i.deprecated,
            requirements: i
                .requirements
                .iter()
                .map(Requirement::to_node_selector)
                .collect(),
        })
        .collect()
}

#[cfg(test)]
#[path = "images_tests.rs"]
mod tests;

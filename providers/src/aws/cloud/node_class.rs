//! Node class resolution: subnets, security groups, AMIs and the instance profile, the
//! EC2NodeClass status with its conditions, and the per-node-class cache launches use.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use super::iam::{ensure_instance_profile, instance_profile_name, instance_profile_tags};
use super::{
    AwsCloudProvider, INSTANCE_PROFILE_TTL_SECS, NOT_READY_RESOLUTION_TTL_SECS,
    RESOLUTION_TTL_SECS, SUBNETS_TTL_SECS, call_error,
};
use crate::aws::ec2api::Ec2Error;
use crate::aws::nodeclass::{
    EC2NodeClass, EC2NodeClassSpec, EC2NodeClassStatus, SecurityGroupSelectorTerm,
    SubnetSelectorTerm,
};
use crate::aws::resolve::{
    AmiPlan, Filter, Image, ImageQuery, ResolveError, ResolvedImage, SecurityGroup, Subnet,
    ami_plan, resolve_amis, resolve_security_groups, resolve_subnets, security_group_filter_sets,
    status_amis, status_security_groups, status_subnets, subnet_filter_sets,
};
use crate::provider::ProviderError;

/// The EC2NodeClass's overall readiness condition (True when all the others are).
pub const CONDITION_READY: &str = "Ready";
/// Subnets resolved.
pub const CONDITION_SUBNETS_READY: &str = "SubnetsReady";
/// Security groups resolved.
pub const CONDITION_SECURITY_GROUPS_READY: &str = "SecurityGroupsReady";
/// AMIs resolved.
pub const CONDITION_AMIS_READY: &str = "AMIsReady";
/// Instance profile in place.
pub const CONDITION_INSTANCE_PROFILE_READY: &str = "InstanceProfileReady";

/// What a node class resolved to, and when.
#[derive(Clone, Debug)]
pub(crate) struct Resolution {
    /// The spec this was resolved from.
    pub spec: EC2NodeClassSpec,
    /// `metadata.generation` it was resolved at.
    pub generation: Option<i64>,
    /// When the whole resolution ran.
    pub resolved_at: i64,
    /// Resolved subnets (most free IPs first).
    pub subnets: Vec<Subnet>,
    /// When the subnets were last described.
    pub subnets_at: i64,
    /// Resolved security groups.
    pub security_groups: Vec<SecurityGroup>,
    /// Resolved AMIs, newest first.
    pub amis: Vec<ResolvedImage>,
    /// Instance profile name.
    pub instance_profile: Option<String>,
    /// The status to publish.
    pub status: EC2NodeClassStatus,
    /// Why it is not ready (`None` when ready).
    pub not_ready: Option<String>,
}

impl Resolution {
    fn matches(&self, nc: &EC2NodeClass) -> bool {
        self.spec == nc.spec && self.generation == nc.metadata.generation
    }
}

/// One field's outcome: the value, or `(reason, message)` for its condition.
type FieldResult<T> = Result<T, (&'static str, String)>;

fn from_resolve<T>(r: Result<T, ResolveError>, not_found: &'static str) -> FieldResult<T> {
    r.map_err(|e| {
        let reason = match e {
            ResolveError::NoMatch { .. } => not_found,
            _ => "InvalidSelector",
        };
        (reason, e.to_string())
    })
}

fn name_of(nc: &EC2NodeClass) -> String {
    nc.metadata.name.clone().unwrap_or_default()
}

impl AwsCloudProvider {
    /// Resolves the node class's subnets, security groups, AMIs and instance profile (creating
    /// the managed profile for `spec.role` when missing) and returns the status to publish:
    /// the resolved lists plus `SubnetsReady`, `SecurityGroupsReady`, `AMIsReady`,
    /// `InstanceProfileReady` and `Ready` conditions (False with a reason and a message
    /// naming the node class and field when something selects nothing or is invalid).
    /// Conditions keep their `lastTransitionTime` when their status did not change. The
    /// resolution is cached for launches. Failed API calls are errors (the status is left
    /// alone), except IAM refusals, which make `InstanceProfileReady` False.
    pub async fn resolve_node_class(
        &self,
        nc: &EC2NodeClass,
    ) -> Result<EC2NodeClassStatus, ProviderError> {
        Ok(self.resolve_fresh(nc).await?.status.clone())
    }

    /// The cached resolution when it is for this spec and fresh enough, else a new one.
    pub(crate) async fn resolution(
        &self,
        nc: &EC2NodeClass,
    ) -> Result<Arc<Resolution>, ProviderError> {
        let now = self.now();
        let cached = self.state().resolutions.get(&name_of(nc)).cloned();
        if let Some(r) = cached {
            let ttl = if r.not_ready.is_none() {
                RESOLUTION_TTL_SECS
            } else {
                NOT_READY_RESOLUTION_TTL_SECS
            };
            if r.matches(nc) && now - r.resolved_at < ttl {
                return Ok(r);
            }
        }
        self.resolve_fresh(nc).await
    }

    /// [`AwsCloudProvider::resolution`], refusing one that is not ready.
    pub(crate) async fn ready_resolution(
        &self,
        nc: &EC2NodeClass,
    ) -> Result<Arc<Resolution>, ProviderError> {
        let r = self.resolution(nc).await?;
        match &r.not_ready {
            None => Ok(r),
            Some(reason) => Err(ProviderError::NodeClassNotReady {
                node_class: name_of(nc),
                reason: reason.clone(),
            }),
        }
    }

    /// The resolution with subnets described again when the cached answer is older than
    /// [`SUBNETS_TTL_SECS`]; a fresh answer resets the in-flight IP counts of its subnets.
    pub(crate) async fn with_fresh_subnets(
        &self,
        nc: &EC2NodeClass,
        r: Arc<Resolution>,
    ) -> Result<Arc<Resolution>, ProviderError> {
        let now = self.now();
        if now - r.subnets_at < SUBNETS_TTL_SECS {
            return Ok(r);
        }
        let name = name_of(nc);
        let terms = &nc.spec.subnet_selector_terms;
        let candidates = self.describe_subnets(&name, terms).await?;
        let Ok(subnets) = resolve_subnets(&name, terms, &candidates) else {
            // Nothing matches any more: launch with what we had; the status loop reports it.
            return Ok(r);
        };
        let mut fresh = (*r).clone();
        fresh.subnets = subnets;
        fresh.subnets_at = now;
        let fresh = Arc::new(fresh);
        let mut state = self.state();
        for s in &fresh.subnets {
            state.in_flight_ips.remove(&s.id);
        }
        state.resolutions.insert(name, fresh.clone());
        Ok(fresh)
    }

    async fn resolve_fresh(&self, nc: &EC2NodeClass) -> Result<Arc<Resolution>, ProviderError> {
        let name = name_of(nc);
        let now = self.now();
        let spec = &nc.spec;

        let candidates = self
            .describe_subnets(&name, &spec.subnet_selector_terms)
            .await?;
        let subnets = from_resolve(
            resolve_subnets(&name, &spec.subnet_selector_terms, &candidates),
            "SubnetsNotFound",
        );
        let candidates = self
            .describe_security_groups(&name, &spec.security_group_selector_terms)
            .await?;
        let groups = from_resolve(
            resolve_security_groups(&name, &spec.security_group_selector_terms, &candidates),
            "SecurityGroupsNotFound",
        );
        let amis = from_resolve(self.resolve_images(nc, &name, now).await?, "AMINotFound");
        let profile = self.resolve_instance_profile(nc, &name, now).await?;

        let previous = nc
            .status
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default();
        let generation = nc.metadata.generation;
        let cond = |type_: &str, r: Result<(), &(&'static str, String)>| {
            condition(type_, r, generation, now, previous)
        };
        let parts = [
            (CONDITION_SUBNETS_READY, subnets.as_ref().map(|_| ()).err()),
            (
                CONDITION_SECURITY_GROUPS_READY,
                groups.as_ref().map(|_| ()).err(),
            ),
            (CONDITION_AMIS_READY, amis.as_ref().map(|_| ()).err()),
            (
                CONDITION_INSTANCE_PROFILE_READY,
                profile.as_ref().map(|_| ()).err(),
            ),
        ];
        let mut conditions: Vec<Condition> = parts
            .iter()
            .map(|(t, e)| cond(t, e.map_or(Ok(()), Err)))
            .collect();
        let failures: Vec<String> = parts
            .iter()
            .filter_map(|(t, e)| e.map(|(_, m)| format!("{t}=False: {m}")))
            .collect();
        let not_ready = (!failures.is_empty()).then(|| failures.join("; "));
        let ready_err = not_ready
            .as_ref()
            .map(|m| ("UnhealthyDependents", m.clone()));
        conditions.insert(
            0,
            cond(CONDITION_READY, ready_err.as_ref().map_or(Ok(()), Err)),
        );

        let subnets = subnets.unwrap_or_default();
        let security_groups = groups.unwrap_or_default();
        let amis = amis.unwrap_or_default();
        let instance_profile = profile.ok();
        let status = EC2NodeClassStatus {
            subnets: status_subnets(&subnets),
            security_groups: status_security_groups(&security_groups),
            amis: status_amis(&amis),
            instance_profile: instance_profile.clone(),
            conditions,
        };
        let r = Arc::new(Resolution {
            spec: spec.clone(),
            generation,
            resolved_at: now,
            subnets,
            subnets_at: now,
            security_groups,
            amis,
            instance_profile,
            status,
            not_ready,
        });
        let mut state = self.state();
        for s in &r.subnets {
            state.in_flight_ips.remove(&s.id);
        }
        state.resolutions.insert(name, r.clone());
        Ok(r)
    }

    /// One `DescribeSubnets` per filter set, answers unioned.
    pub(crate) async fn describe_subnets(
        &self,
        name: &str,
        terms: &[SubnetSelectorTerm],
    ) -> Result<Vec<Subnet>, ProviderError> {
        let mut out = Vec::new();
        for set in subnet_filter_sets(terms) {
            let found = self.ec2.describe_subnets(&set).await.map_err(|e| {
                call_error(
                    &format!("ec2nodeclass {name:?}: spec.subnetSelectorTerms"),
                    e,
                )
            })?;
            out.extend(found);
        }
        Ok(out)
    }

    async fn describe_security_groups(
        &self,
        name: &str,
        terms: &[SecurityGroupSelectorTerm],
    ) -> Result<Vec<SecurityGroup>, ProviderError> {
        let mut out = Vec::new();
        for set in security_group_filter_sets(terms) {
            let found = self.ec2.describe_security_groups(&set).await.map_err(|e| {
                call_error(
                    &format!("ec2nodeclass {name:?}: spec.securityGroupSelectorTerms"),
                    e,
                )
            })?;
            out.extend(found);
        }
        Ok(out)
    }

    /// AMIs: an alias reads its SSM parameters, then `DescribeImages` of those ids; terms read
    /// their `ssmParameter`s and run the plan's queries. The inner result is the selection
    /// outcome, the outer one the API calls'.
    async fn resolve_images(
        &self,
        nc: &EC2NodeClass,
        name: &str,
        now: i64,
    ) -> Result<Result<Vec<ResolvedImage>, ResolveError>, ProviderError> {
        let terms = &nc.spec.ami_selector_terms;
        let plan = match ami_plan(name, terms, &self.config.cluster.kubernetes_version) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let context = format!("ec2nodeclass {name:?}: spec.amiSelectorTerms");
        let names: Vec<String> = match &plan {
            AmiPlan::Alias(q) => q.parameters.iter().map(|p| p.name.clone()).collect(),
            AmiPlan::Terms(p) => p.ssm_parameters.iter().map(|(_, n)| n.clone()).collect(),
        };
        let ssm_values: BTreeMap<String, String> = if names.is_empty() {
            BTreeMap::new()
        } else {
            self.ssm
                .get_parameters(&names)
                .await
                .map_err(|e| call_error(&context, e))?
        };
        let queries = match &plan {
            AmiPlan::Alias(_) => {
                let mut ids: Vec<String> = ssm_values.values().cloned().collect();
                ids.sort();
                ids.dedup();
                if ids.is_empty() {
                    Vec::new()
                } else {
                    vec![ImageQuery {
                        filters: vec![Filter::new("image-id", ids)],
                        owners: Vec::new(),
                    }]
                }
            }
            AmiPlan::Terms(p) => match p.describe_queries(name, &ssm_values) {
                Ok(q) => q,
                Err(e) => return Ok(Err(e)),
            },
        };
        let mut images: Vec<Image> = Vec::new();
        for q in &queries {
            let found = self
                .ec2
                .describe_images(q, now)
                .await
                .map_err(|e| call_error(&context, e))?;
            images.extend(found);
        }
        Ok(resolve_amis(name, &plan, terms, &ssm_values, &images, None))
    }

    /// `spec.instanceProfile` as is; for `spec.role`, the managed profile (created and given
    /// the role when needed, then trusted for [`INSTANCE_PROFILE_TTL_SECS`]).
    async fn resolve_instance_profile(
        &self,
        nc: &EC2NodeClass,
        name: &str,
        now: i64,
    ) -> Result<FieldResult<String>, ProviderError> {
        if let Some(p) = &nc.spec.instance_profile {
            return Ok(Ok(p.clone()));
        }
        let Some(role) = &nc.spec.role else {
            return Ok(Err((
                "InstanceProfileNotFound",
                format!(
                    "ec2nodeclass {name:?}: spec.role: neither spec.role nor spec.instanceProfile is set"
                ),
            )));
        };
        let cluster = &self.config.cluster;
        let profile = instance_profile_name(&cluster.name, &cluster.region, name);
        let key = (profile.clone(), role.clone());
        let checked = self.state().instance_profiles.get(&key).copied();
        if checked.is_some_and(|t| now - t < INSTANCE_PROFILE_TTL_SECS) {
            return Ok(Ok(profile));
        }
        let tags = instance_profile_tags(&cluster.name, &cluster.region, name);
        match ensure_instance_profile(self.iam.as_ref(), &profile, role, &tags).await {
            Ok(p) => {
                self.state().instance_profiles.insert(key, now);
                Ok(Ok(p))
            }
            Err(Ec2Error::Api { code, message, .. }) => Ok(Err((
                "InstanceProfileCreationFailed",
                format!(
                    "ec2nodeclass {name:?}: spec.role: instance profile {profile:?} for role {role:?}: {code}: {message}"
                ),
            ))),
            Err(e) => Err(call_error(&format!("ec2nodeclass {name:?}: spec.role"), e)),
        }
    }
}

/// A status condition; keeps the previous `lastTransitionTime` when the status is unchanged.
fn condition(
    type_: &str,
    result: Result<(), &(&'static str, String)>,
    generation: Option<i64>,
    now: i64,
    previous: &[Condition],
) -> Condition {
    let (status, reason, message) = match result {
        Ok(()) => ("True", type_.to_owned(), String::new()),
        Err((reason, message)) => ("False", (*reason).to_owned(), message.clone()),
    };
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| Time(Timestamp::from_second(now).unwrap_or(Timestamp::UNIX_EPOCH)));
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason,
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

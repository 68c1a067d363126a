//! Launching one instance per NodeClaim with an instant EC2 fleet, as Karpenter does.
//!
//! [`plan_fleet`] is pure: it turns a claim, its candidate instance types (with offerings), the
//! node class's launch templates and subnets into the `CreateFleet` request Karpenter sends
//! (`Type=instant`, target capacity 1, spot `price-capacity-optimized` / on-demand
//! `lowest-price`, one launch template config per template, at most [`MAX_OVERRIDES`]
//! overrides, cheapest first, and the instance/volume/fleet tags). [`interpret_outcome`] is
//! pure too: it maps the answer to a [`LaunchedInstance`] or a [`ProviderError`], and lists
//! the offerings to mark unavailable. [`launch`] glues both to an [`Ec2Api`].

mod unavailable;

pub use unavailable::{UNAVAILABLE_OFFERINGS_TTL_SECS, UnavailableOfferings};

use std::collections::{BTreeMap, BTreeSet};

use karpenter_core::instance_type::InstanceType;
use karpenter_core::labels;
use karpenter_core::resources::Resources;

use super::ec2api::{
    CapacityType, CreateFleetRequest, Ec2Api, Ec2Error, FleetLaunchTemplateConfig, FleetOutcome,
    FleetOverride, FleetTagSpecification,
};
use crate::provider::aws_provider_id;
use crate::provider::{LaunchedInstance, NodeClaimRequest, OfferingKey, ProviderError};

/// Most overrides one fleet request carries (Karpenter's `MaxInstanceTypes` is 60).
pub const MAX_OVERRIDES: usize = 60;
/// Spot allocation strategy Karpenter uses.
pub const SPOT_ALLOCATION_STRATEGY: &str = "price-capacity-optimized";
/// On-demand allocation strategy Karpenter uses.
pub const ON_DEMAND_ALLOCATION_STRATEGY: &str = "lowest-price";
/// Fleet `Errors` codes that mean "no capacity for this offering" (Karpenter's
/// `unfulfillableCapacityErrorCodes`): the offering is marked unavailable and another tried.
pub const ICE_ERROR_CODES: &[&str] = &[
    "InsufficientInstanceCapacity",
    "MaxSpotInstanceCountExceeded",
    "VcpuLimitExceeded",
    "UnfulfillableCapacity",
    "Unsupported",
    "InsufficientFreeAddressesInSubnet",
    "ReservationCapacityExceeded",
];
/// The error after which Karpenter stops trying spot for a while: the account cannot create
/// the EC2 Spot service-linked role.
pub const SPOT_ROLE_ERROR_CODE: &str = "AuthFailure.ServiceLinkedRoleCreationNotPermitted";
/// Tag naming the node class on everything Karpenter creates.
pub const NODE_CLASS_TAG: &str = "karpenter.k8s.aws/ec2nodeclass";
/// Tag naming the NodeClaim.
pub const NODE_CLAIM_TAG: &str = "karpenter.sh/nodeclaim";
/// Tag EKS uses for the cluster name.
pub const EKS_CLUSTER_NAME_TAG: &str = "eks:eks-cluster-name";

/// True when a fleet error code means the offering had no capacity.
pub fn is_ice_code(code: &str) -> bool {
    ICE_ERROR_CODES.contains(&code)
}

/// A launch template the fleet may use and the instance types it launches (Karpenter makes one
/// per image/architecture, so each instance type belongs to the template with its image).
#[derive(Clone, Debug, PartialEq)]
pub struct FleetLaunchTemplate {
    /// Launch template name.
    pub name: String,
    /// The image the template boots (`ami-…`), reported on the launched instance.
    pub image_id: String,
    /// Names of the instance types this template launches.
    pub instance_types: Vec<String>,
}

/// Everything [`plan_fleet`] needs besides the claim.
#[derive(Clone, Copy, Debug)]
pub struct FleetPlanInput<'a> {
    /// EKS cluster name (for the `kubernetes.io/cluster/<name>` and `eks:` tags).
    pub cluster_name: &'a str,
    /// Candidate instance types with their offerings; the claim's `instance_type_options`, when
    /// non-empty, narrows them.
    pub instance_types: &'a [InstanceType],
    /// The node class's launch templates.
    pub launch_templates: &'a [FleetLaunchTemplate],
    /// Subnet to use per zone (zone → subnet id), e.g. from `zonal_subnets_for_launch`.
    pub subnets: &'a BTreeMap<String, String>,
    /// The node class's `tags`.
    pub user_tags: &'a BTreeMap<String, String>,
    /// The node class's `context`, if any.
    pub context: Option<&'a str>,
    /// Offerings recently refused by EC2.
    pub unavailable: &'a UnavailableOfferings,
    /// Current time, seconds since the Unix epoch.
    pub now: i64,
}

/// A planned fleet request plus what is needed to read its answer.
#[derive(Clone, Debug, PartialEq)]
pub struct FleetPlan {
    /// The request to send.
    pub request: CreateFleetRequest,
    /// Image per launch template name.
    pub images: BTreeMap<String, String>,
    /// Capacity per instance type name.
    pub capacities: BTreeMap<String, Resources>,
}

/// A fleet answer with an instance, plus offerings to mark unavailable (some overrides may
/// have failed before one succeeded).
#[derive(Clone, Debug, PartialEq)]
pub struct FleetLaunch {
    /// The launched instance.
    pub instance: LaunchedInstance,
    /// Offerings EC2 reported without capacity.
    pub unavailable: Vec<OfferingKey>,
}

/// The tags Karpenter puts on the instance, its volumes and the fleet: the node class's tags,
/// then its own, which win on conflicts (users cannot hijack ownership tags). The claim's own
/// tag (`karpenter.sh/nodeclaim`) is not among them: it would make every claim's request
/// unique and stop the batcher merging identical launches; it is put on the instance right
/// after the launch, as Karpenter tags after launch.
pub fn fleet_tags(
    claim: &NodeClaimRequest,
    cluster_name: &str,
    user_tags: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut tags = user_tags.clone();
    // Set by Karpenter alone, after the launch: a user's value would misdirect adoption.
    tags.remove(NODE_CLAIM_TAG);
    tags.extend([
        (labels::NODE_POOL.to_owned(), claim.node_pool.clone()),
        (NODE_CLASS_TAG.to_owned(), claim.node_class.clone()),
        (
            format!("kubernetes.io/cluster/{cluster_name}"),
            "owned".to_owned(),
        ),
        (EKS_CLUSTER_NAME_TAG.to_owned(), cluster_name.to_owned()),
    ]);
    tags
}

/// One usable offering, before grouping into launch template configs.
struct Candidate<'a> {
    template: usize,
    instance_type: &'a str,
    zone: &'a str,
    price: f64,
}

/// Builds the `CreateFleet` request for a claim.
///
/// Capacity type: spot when the claim allows spot and some usable spot offering exists,
/// otherwise on-demand when allowed (Karpenter prefers spot). Usable offerings are available,
/// not in the unavailable cache, allowed by the claim's zone and capacity-type requirements,
/// and in a zone with a subnet. Fails with [`ProviderError::NodeClassNotReady`] without
/// subnets or launch templates, and [`ProviderError::InsufficientCapacity`] (no offerings)
/// when nothing is usable.
pub fn plan_fleet(
    claim: &NodeClaimRequest,
    input: &FleetPlanInput<'_>,
) -> Result<FleetPlan, ProviderError> {
    let not_ready = |reason: &str| ProviderError::NodeClassNotReady {
        node_class: claim.node_class.clone(),
        reason: reason.to_owned(),
    };
    if input.subnets.is_empty() {
        return Err(not_ready("no subnets resolved"));
    }
    if input.launch_templates.is_empty() {
        return Err(not_ready("no launch templates"));
    }
    let wanted: BTreeSet<&str> = claim
        .instance_type_options
        .iter()
        .map(String::as_str)
        .collect();
    let types: BTreeMap<&str, &InstanceType> = input
        .instance_types
        .iter()
        .filter(|it| wanted.is_empty() || wanted.contains(it.name.as_str()))
        .map(|it| (it.name.as_str(), it))
        .collect();

    let usable = |capacity_type: CapacityType| -> Vec<Candidate<'_>> {
        let mut out = Vec::new();
        for (t, template) in input.launch_templates.iter().enumerate() {
            for name in &template.instance_types {
                let Some(it) = types.get(name.as_str()) else {
                    continue;
                };
                for o in &it.offerings {
                    let ok = o.available
                        && o.capacity_type == capacity_type.as_str()
                        && o.compatible(&claim.requirements)
                        && input.subnets.contains_key(&o.zone)
                        && !input.unavailable.is_unavailable(
                            &it.name,
                            &o.zone,
                            &o.capacity_type,
                            input.now,
                        );
                    if ok {
                        out.push(Candidate {
                            template: t,
                            instance_type: &it.name,
                            zone: &o.zone,
                            price: o.price,
                        });
                    }
                }
            }
        }
        out
    };
    let allowed = |ct: CapacityType| {
        claim
            .requirements
            .get(labels::CAPACITY_TYPE)
            .is_none_or(|r| r.has(ct.as_str()))
    };
    let mut chosen = None;
    for ct in [CapacityType::Spot, CapacityType::OnDemand] {
        if allowed(ct) {
            let c = usable(ct);
            if !c.is_empty() {
                chosen = Some((ct, c));
                break;
            }
        }
    }
    let Some((capacity_type, mut candidates)) = chosen else {
        return Err(ProviderError::InsufficientCapacity {
            offerings: Vec::new(),
            message: format!(
                "no available offering for nodeclaim {} among {} instance types",
                claim.name,
                types.len()
            ),
        });
    };
    candidates.sort_by(|a, b| {
        a.price
            .total_cmp(&b.price)
            .then_with(|| a.instance_type.cmp(b.instance_type))
            .then_with(|| a.zone.cmp(b.zone))
            .then_with(|| a.template.cmp(&b.template))
    });
    candidates.truncate(MAX_OVERRIDES);

    let mut configs: Vec<FleetLaunchTemplateConfig> = Vec::new();
    for (t, template) in input.launch_templates.iter().enumerate() {
        let overrides: Vec<FleetOverride> = candidates
            .iter()
            .filter(|c| c.template == t)
            .map(|c| FleetOverride {
                instance_type: c.instance_type.to_owned(),
                subnet_id: input.subnets[c.zone].clone(),
                availability_zone: c.zone.to_owned(),
                priority: None,
            })
            .collect();
        if !overrides.is_empty() {
            configs.push(FleetLaunchTemplateConfig {
                launch_template_name: template.name.clone(),
                version: "$Latest".to_owned(),
                overrides,
            });
        }
    }
    let tags = fleet_tags(claim, input.cluster_name, input.user_tags);
    let tag_specifications = ["instance", "volume", "fleet"]
        .into_iter()
        .map(|resource_type| FleetTagSpecification {
            resource_type: resource_type.to_owned(),
            tags: tags.clone(),
        })
        .collect();
    Ok(FleetPlan {
        request: CreateFleetRequest {
            capacity_type,
            target_capacity: 1,
            launch_template_configs: configs,
            spot_allocation_strategy: SPOT_ALLOCATION_STRATEGY.to_owned(),
            on_demand_allocation_strategy: ON_DEMAND_ALLOCATION_STRATEGY.to_owned(),
            tag_specifications,
            context: input.context.map(str::to_owned),
        },
        images: input
            .launch_templates
            .iter()
            .map(|t| (t.name.clone(), t.image_id.clone()))
            .collect(),
        capacities: types
            .values()
            .map(|it| (it.name.clone(), it.capacity))
            .collect(),
    })
}

/// The offerings a fleet answer reports without capacity: `(type, zone, capacity type)` of
/// every ICE error that names its override; the capacity type defaults to the request's.
pub fn ice_offerings(outcome: &FleetOutcome, requested: CapacityType) -> Vec<OfferingKey> {
    let mut seen = BTreeSet::new();
    outcome
        .errors
        .iter()
        .filter(|e| is_ice_code(&e.code))
        .filter_map(|e| {
            let ct = e.capacity_type.unwrap_or(requested).as_str().to_owned();
            Some((
                e.source.instance_type.clone()?,
                e.source.availability_zone.clone()?,
                ct,
            ))
        })
        .filter(|k| seen.insert(k.clone()))
        .collect()
}

/// Reads a fleet answer: the first launched instance wins; with none, all-ICE errors become
/// [`ProviderError::InsufficientCapacity`], all-throttling-or-ICE errors
/// [`ProviderError::Throttled`], anything else [`ProviderError::Create`] (Karpenter's
/// `combineFleetErrors`).
pub fn interpret_outcome(
    claim: &NodeClaimRequest,
    plan: &FleetPlan,
    outcome: &FleetOutcome,
    now: i64,
) -> Result<FleetLaunch, ProviderError> {
    let requested = plan.request.capacity_type;
    let unavailable = ice_offerings(outcome, requested);
    let launched = outcome
        .instances
        .iter()
        .find_map(|i| i.instance_ids.first().map(|id| (i, id)));
    if let Some((i, id)) = launched {
        let instance_type = i.instance_type.clone().unwrap_or_default();
        let zone = i.availability_zone.clone().unwrap_or_default();
        let capacity_type = i.capacity_type.unwrap_or(requested).as_str().to_owned();
        let mut node_labels = claim.labels.clone();
        node_labels.extend([
            (labels::INSTANCE_TYPE.to_owned(), instance_type.clone()),
            (labels::ZONE.to_owned(), zone.clone()),
            (labels::CAPACITY_TYPE.to_owned(), capacity_type.clone()),
            (labels::NODE_POOL.to_owned(), claim.node_pool.clone()),
        ]);
        let image_id = i
            .source
            .launch_template_name
            .as_ref()
            .and_then(|t| plan.images.get(t))
            .cloned()
            .unwrap_or_default();
        return Ok(FleetLaunch {
            instance: LaunchedInstance {
                provider_id: aws_provider_id(&zone, id),
                capacity: plan
                    .capacities
                    .get(&instance_type)
                    .copied()
                    .unwrap_or_default(),
                instance_type,
                zone,
                capacity_type,
                image_id,
                labels: node_labels,
                launch_time_unix: now,
                node_claim: Some(claim.name.clone()),
                node_pool: Some(claim.node_pool.clone()),
            },
            unavailable,
        });
    }
    let messages: BTreeSet<String> = outcome
        .errors
        .iter()
        .map(|e| format!("{}: {}", e.code, e.message))
        .collect();
    let message = if messages.is_empty() {
        "CreateFleet launched no instance and reported no error".to_owned()
    } else {
        messages.into_iter().collect::<Vec<_>>().join("; ")
    };
    let throttled = |c: &str| super::ec2api::THROTTLING_CODES.contains(&c);
    if outcome.errors.iter().all(|e| is_ice_code(&e.code)) {
        Err(ProviderError::InsufficientCapacity {
            offerings: unavailable,
            message,
        })
    } else if outcome
        .errors
        .iter()
        .all(|e| is_ice_code(&e.code) || throttled(&e.code))
    {
        Err(ProviderError::Throttled {
            operation: "CreateFleet".to_owned(),
        })
    } else {
        Err(ProviderError::Create {
            reason: format!("with fleet error(s), {message}"),
        })
    }
}

/// Maps a failed `CreateFleet` call: throttling is retryable, an API error is final, a
/// transport failure is [`ProviderError::Other`] (retryable).
pub fn map_call_error(err: Ec2Error) -> ProviderError {
    match err {
        Ec2Error::Throttled { operation, .. } => ProviderError::Throttled { operation },
        Ec2Error::Api { code, message, .. } => ProviderError::Create {
            reason: format!("{code}: {message}"),
        },
        Ec2Error::Transport { .. } => ProviderError::Other(err.to_string()),
    }
}

/// Sends the planned fleet, records capacity failures in `unavailable` (before judging the
/// answer, so a later attempt skips them even when this one launched), and returns the
/// instance.
pub async fn launch(
    api: &dyn Ec2Api,
    claim: &NodeClaimRequest,
    plan: &FleetPlan,
    unavailable: &mut UnavailableOfferings,
    now: i64,
) -> Result<LaunchedInstance, ProviderError> {
    let outcome = api
        .create_fleet(&plan.request)
        .await
        .map_err(map_call_error)?;
    for key in ice_offerings(&outcome, plan.request.capacity_type) {
        unavailable.mark_unavailable(key, now);
    }
    if outcome
        .errors
        .iter()
        .any(|e| e.code == SPOT_ROLE_ERROR_CODE)
    {
        unavailable.mark_capacity_type_unavailable(CapacityType::Spot.as_str(), now);
    }
    interpret_outcome(claim, plan, &outcome, now).map(|l| l.instance)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod sdk_tests;

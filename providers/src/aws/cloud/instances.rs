//! Instances: launching one for a claim (launch templates + instant fleet), terminating,
//! describing, listing, and judging drift against the node class's resolution.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use karpenter_core::instance_type::InstanceType;
use karpenter_core::labels;

use super::instance_type_provider::{TypeData, TypeEntry, catalog_entry};
use super::launch_templates::{TEMPLATE_NOT_FOUND_CODES, TemplateSpec};
use super::{AwsCloudProvider, call_error};
use crate::aws::catalog::Catalog;
use crate::aws::ec2api::{CapacityType, Ec2Error, Instance, InstanceQuery};
use crate::aws::fleet::{
    FleetLaunchTemplate, FleetPlanInput, MAX_OVERRIDES, NODE_CLAIM_TAG, NODE_CLASS_TAG,
    SPOT_ROLE_ERROR_CODE, ice_offerings, interpret_outcome, map_call_error, plan_fleet,
};
use crate::aws::instance_types::{InstanceTypeSettings, instance_type, max_pods};
use crate::aws::resolve::{Filter, zonal_subnets_for_launch};
use crate::provider::{
    DriftReason, Found, LaunchedInstance, NodeClaimRequest, NodePoolRef, ProviderError,
    aws_provider_id, launched_for, parse_provider_id,
};

/// EC2's error code for an unknown instance id.
pub const INSTANCE_NOT_FOUND_CODE: &str = "InvalidInstanceID.NotFound";
/// Instance states [`CloudProvider::list`](crate::provider::CloudProvider::list) asks for.
pub const LISTED_STATES: &[&str] = &["pending", "running", "stopping", "stopped", "shutting-down"];

/// One launch template group: an image and a max-pods value, and its instance types.
struct Group {
    image: usize,
    max_pods: i64,
    types: Vec<String>,
}

fn not_found(provider_id: &str) -> ProviderError {
    ProviderError::NotFound {
        provider_id: provider_id.to_owned(),
    }
}

impl AwsCloudProvider {
    /// `create`: see the module docs of [`crate::aws::cloud`].
    pub(crate) async fn launch(
        &self,
        claim: &NodeClaimRequest,
    ) -> Result<LaunchedInstance, ProviderError> {
        let pool = NodePoolRef {
            name: claim.node_pool.clone(),
            node_class: claim.node_class.clone(),
        };
        let nc = self.node_class(&pool)?;
        let r = self.ready_resolution(&nc).await?;
        let r = self.with_fresh_subnets(&nc, r).await?;
        let data = self.type_data().await?;
        let all = self.build_instance_types(&nc, &r, &data);
        let candidates = candidates(claim, &all);
        if candidates.is_empty() {
            return Err(ProviderError::InsufficientCapacity {
                offerings: Vec::new(),
                message: format!(
                    "none of the instance types of nodeclaim {} ({}) is offered and served by an AMI of ec2nodeclass {:?}",
                    claim.name,
                    claim.instance_type_options.join(", "),
                    claim.node_class
                ),
            });
        }
        let settings = self.settings_for(&nc, Some(&r));
        let mut groups: Vec<Group> = Vec::new();
        for c in &candidates {
            let pods = max_pods(&c.entry, &settings);
            match groups
                .iter_mut()
                .find(|g| g.image == c.image && g.max_pods == pods)
            {
                Some(g) => g.types.push(c.entry.name.clone()),
                None => groups.push(Group {
                    image: c.image,
                    max_pods: pods,
                    types: vec![c.entry.name.clone()],
                }),
            }
        }
        // Placeholder names first: the capacity type (a userData label) is only known once
        // the fleet is planned; the real, content-hashed names replace them below.
        let placeholders: Vec<FleetLaunchTemplate> = groups
            .iter()
            .enumerate()
            .map(|(i, g)| FleetLaunchTemplate {
                name: format!("group-{i}"),
                image_id: r
                    .amis
                    .get(g.image)
                    .map(|a| a.id.clone())
                    .unwrap_or_default(),
                instance_types: g.types.clone(),
            })
            .collect();
        let types: Vec<InstanceType> = candidates.iter().map(|c| c.instance_type.clone()).collect();

        for attempt in 0..2 {
            let now = self.now();
            let (subnets, mut plan) = {
                let state = self.state();
                let subnets: BTreeMap<String, String> =
                    zonal_subnets_for_launch(&r.subnets, &state.in_flight_ips)
                        .into_iter()
                        .map(|z| (z.subnet.zone, z.subnet.id))
                        .collect();
                let plan = plan_fleet(
                    claim,
                    &FleetPlanInput {
                        cluster_name: &self.config.cluster.name,
                        instance_types: &types,
                        launch_templates: &placeholders,
                        subnets: &subnets,
                        user_tags: &nc.spec.tags,
                        context: nc.spec.context.as_deref(),
                        unavailable: &state.unavailable,
                        now,
                    },
                )?;
                (subnets, plan)
            };
            let mut requests = Vec::new();
            for config in &mut plan.request.launch_template_configs {
                let Some(i) = placeholders
                    .iter()
                    .position(|p| p.name == config.launch_template_name)
                else {
                    continue;
                };
                let g = &groups[i];
                let req = self.template_request(&TemplateSpec {
                    nc: &nc,
                    resolution: &r,
                    claim,
                    capacity_type: plan.request.capacity_type,
                    image_id: &placeholders[i].image_id,
                    max_pods: g.max_pods,
                })?;
                plan.images.insert(req.name.clone(), req.image_id.clone());
                config.launch_template_name = req.name.clone();
                requests.push(req);
            }
            self.ensure_launch_templates(&requests).await?;
            let outcome = self.ec2.create_fleet(&plan.request).await;
            let template_missing = match &outcome {
                Err(Ec2Error::Api { code, .. }) => {
                    TEMPLATE_NOT_FOUND_CODES.contains(&code.as_str())
                }
                Ok(o) => {
                    o.instances.is_empty()
                        && o.errors
                            .iter()
                            .any(|e| TEMPLATE_NOT_FOUND_CODES.contains(&e.code.as_str()))
                }
                Err(_) => false,
            };
            if template_missing && attempt == 0 {
                tracing::info!(nodeclaim = %claim.name, "launch template not found; recreating");
                self.forget_launch_templates(requests.iter().map(|r| r.name.as_str()));
                continue;
            }
            let outcome = outcome.map_err(map_call_error)?;
            {
                let mut state = self.state();
                for key in ice_offerings(&outcome, plan.request.capacity_type) {
                    state.unavailable.mark_unavailable(key, now);
                }
                if outcome
                    .errors
                    .iter()
                    .any(|e| e.code == SPOT_ROLE_ERROR_CODE)
                {
                    state
                        .unavailable
                        .mark_capacity_type_unavailable(CapacityType::Spot.as_str(), now);
                }
            }
            let mut launched = interpret_outcome(claim, &plan, &outcome, now)?.instance;
            if let Some(subnet) = subnets.get(&launched.zone) {
                *self
                    .state()
                    .in_flight_ips
                    .entry(subnet.clone())
                    .or_insert(0) += 1;
            }
            let mut node_labels = types
                .iter()
                .find(|t| t.name == launched.instance_type)
                .map(|t| t.requirements.single_valued_labels())
                .unwrap_or_default();
            node_labels.insert(
                labels::aws::EC2_NODE_CLASS.to_owned(),
                claim.node_class.clone(),
            );
            if let Some(zone_id) = r
                .subnets
                .iter()
                .find(|s| s.zone == launched.zone && !s.zone_id.is_empty())
                .map(|s| s.zone_id.clone())
            {
                node_labels.insert(labels::aws::ZONE_ID.to_owned(), zone_id);
            }
            node_labels.extend(std::mem::take(&mut launched.labels));
            launched.labels = node_labels;
            // The fleet request carries no claim tag (so identical claims' requests merge);
            // the claim's tag goes on its instance now. If this fails the claim still records
            // the provider id, and a lost launch is found again by `find_launched`.
            let tags = BTreeMap::from([(NODE_CLAIM_TAG.to_owned(), claim.name.clone())]);
            let id = launched.instance_id().to_owned();
            match self.ec2.create_tags(std::slice::from_ref(&id), &tags).await {
                Ok(()) => launched.node_claim = Some(claim.name.clone()),
                Err(e) => {
                    tracing::warn!(nodeclaim = %claim.name, instance = %id, error = %e, "tagging the launched instance for its nodeclaim failed")
                }
            }
            return Ok(launched);
        }
        Err(ProviderError::Create {
            reason: format!(
                "nodeclaim {}: CreateFleet did not find the launch templates just created",
                claim.name
            ),
        })
    }

    /// Describes one instance; missing or `terminated` is [`ProviderError::NotFound`].
    async fn describe_one(&self, provider_id: &str) -> Result<Instance, ProviderError> {
        let (_, id) = parse_provider_id(provider_id).ok_or_else(|| not_found(provider_id))?;
        let found = match self
            .ec2
            .describe_instances(&InstanceQuery::Ids(vec![id.to_owned()]))
            .await
        {
            Ok(found) => found,
            Err(Ec2Error::Api { code, .. }) if code == INSTANCE_NOT_FOUND_CODE => {
                return Err(not_found(provider_id));
            }
            Err(e) => return Err(call_error(&format!("describing {provider_id}"), e)),
        };
        found
            .into_iter()
            .find(|i| i.id == id && i.state != "terminated")
            .ok_or_else(|| not_found(provider_id))
    }

    /// `delete`: an instance that is gone, `terminated` or already `shutting-down` is
    /// `NotFound` (as Karpenter: once EC2 reports shutting-down, termination is done waiting).
    pub(crate) async fn terminate(&self, provider_id: &str) -> Result<(), ProviderError> {
        let instance = self.describe_one(provider_id).await?;
        if instance.state == "shutting-down" {
            return Err(not_found(provider_id));
        }
        match self
            .ec2
            .terminate_instances(std::slice::from_ref(&instance.id))
            .await
        {
            Ok(states) => {
                if states
                    .iter()
                    .any(|s| s.id == instance.id && s.current_state == "terminated")
                {
                    Err(not_found(provider_id))
                } else {
                    Ok(())
                }
            }
            Err(Ec2Error::Api { code, .. }) if code == INSTANCE_NOT_FOUND_CODE => {
                Err(not_found(provider_id))
            }
            Err(e) => Err(call_error(&format!("terminating {provider_id}"), e)),
        }
    }

    /// `find_launched`: this cluster's instances of the claim's pool, the one tagged for the
    /// claim, else an adoptable one tagged for it now. The adoption is reserved in memory
    /// before the tag is written (no lock is held across the call), so concurrent claims pick
    /// different instances.
    pub(crate) async fn find_launched_instance(
        &self,
        claim: &NodeClaimRequest,
        launched_after_unix: i64,
    ) -> Result<Option<LaunchedInstance>, ProviderError> {
        let instances = self.list_instances().await?;
        loop {
            let taken = self.state().adopting.clone();
            let found = launched_for(claim, &instances, launched_after_unix, &taken);
            let mut instance = match found {
                None => return Ok(None),
                Some(Found::Tagged(i)) => return Ok(Some(i)),
                Some(Found::Untagged(i)) => i,
            };
            let id = instance.instance_id().to_owned();
            if !self.state().adopting.insert(id.clone()) {
                continue;
            }
            let tags = BTreeMap::from([(NODE_CLAIM_TAG.to_owned(), claim.name.clone())]);
            let tagged = self.ec2.create_tags(std::slice::from_ref(&id), &tags).await;
            if let Err(e) = tagged {
                self.state().adopting.remove(&id);
                return Err(call_error(&format!("tagging {id} for {}", claim.name), e));
            }
            tracing::info!(nodeclaim = %claim.name, instance = %id, "adopted an instance launched for a claim whose launch outcome was lost");
            instance.node_claim = Some(claim.name.clone());
            return Ok(Some(instance));
        }
    }

    /// `get`.
    pub(crate) async fn get_instance(
        &self,
        provider_id: &str,
    ) -> Result<LaunchedInstance, ProviderError> {
        let instance = self.describe_one(provider_id).await?;
        let data = self.type_data().await.ok();
        let mut settings = HashMap::new();
        Ok(self.to_launched(&instance, data.as_deref(), &mut settings))
    }

    /// `list`: this cluster's Karpenter instances that are not terminated. Selected as Karpenter
    /// selects them, by the `karpenter.sh/nodepool` and `kubernetes.io/cluster/<name>` tag keys:
    /// instances Karpenter 0.3x launched have no `eks:eks-cluster-name` tag, and a list that
    /// missed them would have garbage collection delete their claims after an upgrade.
    pub(crate) async fn list_instances(&self) -> Result<Vec<LaunchedInstance>, ProviderError> {
        let filters = vec![
            Filter::new("tag-key", [labels::NODE_POOL]),
            Filter::new(
                "tag-key",
                [format!(
                    "kubernetes.io/cluster/{}",
                    self.config.cluster.name
                )],
            ),
            Filter::new("instance-state-name", LISTED_STATES.iter().copied()),
        ];
        let found = self
            .ec2
            .describe_instances(&InstanceQuery::Filters(filters))
            .await
            .map_err(|e| call_error("listing instances", e))?;
        let data = self.type_data().await.ok();
        let mut settings = HashMap::new();
        Ok(found
            .iter()
            .filter(|i| i.state != "terminated")
            .map(|i| self.to_launched(i, data.as_deref(), &mut settings))
            .collect())
    }

    /// The provider's view of a described instance: capacity and labels of its type (shaped
    /// by its node class when known), owner from its tags.
    fn to_launched(
        &self,
        i: &Instance,
        data: Option<&TypeData>,
        settings_cache: &mut HashMap<(String, String), InstanceTypeSettings>,
    ) -> LaunchedInstance {
        let node_pool = i.tags.get(labels::NODE_POOL).cloned();
        let node_class = i.tags.get(NODE_CLASS_TAG).cloned();
        let key = (
            node_pool.clone().unwrap_or_default(),
            node_class.clone().unwrap_or_default(),
        );
        let settings = settings_cache.entry(key).or_insert_with(|| {
            let nc = match (&node_pool, &node_class) {
                (Some(p), Some(c)) => self.node_classes.node_class_for(&NodePoolRef {
                    name: p.clone(),
                    node_class: c.clone(),
                }),
                _ => None,
            };
            match nc {
                Some(nc) => self.settings_for(&nc, None),
                None => InstanceTypeSettings {
                    vm_memory_overhead_percent: self.config.vm_memory_overhead_percent,
                    reserved_enis: self.config.reserved_enis,
                    ..InstanceTypeSettings::default()
                },
            }
        });
        let it = data.and_then(|d| {
            let info = d.infos.get(&i.instance_type)?;
            let price = Catalog::embedded()
                .get(&info.name)
                .map_or(0.0, |e| e.on_demand_price);
            Some(instance_type(
                &catalog_entry(info, d.zones.get(&info.name), price),
                settings,
            ))
        });
        let mut node_labels = it
            .as_ref()
            .map(|t| t.requirements.single_valued_labels())
            .unwrap_or_default();
        node_labels.extend([
            (labels::INSTANCE_TYPE.to_owned(), i.instance_type.clone()),
            (labels::ZONE.to_owned(), i.zone.clone()),
            (
                labels::CAPACITY_TYPE.to_owned(),
                i.capacity_type.as_str().to_owned(),
            ),
        ]);
        if let Some(p) = &node_pool {
            node_labels.insert(labels::NODE_POOL.to_owned(), p.clone());
        }
        if let Some(c) = &node_class {
            node_labels.insert(labels::aws::EC2_NODE_CLASS.to_owned(), c.clone());
        }
        LaunchedInstance {
            provider_id: aws_provider_id(&i.zone, &i.id),
            instance_type: i.instance_type.clone(),
            zone: i.zone.clone(),
            capacity_type: i.capacity_type.as_str().to_owned(),
            image_id: i.image_id.clone(),
            capacity: it.map(|t| t.capacity).unwrap_or_default(),
            labels: node_labels,
            launch_time_unix: i.launch_time_unix,
            node_claim: i.tags.get(NODE_CLAIM_TAG).cloned(),
            node_pool,
        }
    }

    /// `is_drifted`: the instance's AMI, subnet and security groups against the node class's
    /// resolution. Instances without a node class tag are never drifted.
    pub(crate) async fn drift(
        &self,
        instance: &LaunchedInstance,
    ) -> Result<Option<DriftReason>, ProviderError> {
        let i = self.describe_one(&instance.provider_id).await?;
        let Some(class) = i.tags.get(NODE_CLASS_TAG).cloned() else {
            return Ok(None);
        };
        let pool = i
            .tags
            .get(labels::NODE_POOL)
            .cloned()
            .or_else(|| instance.node_pool.clone())
            .unwrap_or_default();
        let nc = self.node_class(&NodePoolRef {
            name: pool,
            node_class: class,
        })?;
        let r = self.ready_resolution(&nc).await?;
        // A fact EC2 did not report (an empty image id or security group list; every VPC
        // instance has both) is unknown, not changed: drifting on it would roll every node.
        if !i.image_id.is_empty() && !r.amis.iter().any(|a| a.id == i.image_id) {
            let ids: Vec<&str> = r.amis.iter().map(|a| a.id.as_str()).collect();
            return Ok(Some(DriftReason::Ami(format!(
                "instance image {} is not among the resolved AMIs [{}]",
                i.image_id,
                ids.join(", ")
            ))));
        }
        if let Some(subnet) = &i.subnet_id
            && !r.subnets.iter().any(|s| s.id == *subnet)
        {
            let ids: Vec<&str> = r.subnets.iter().map(|s| s.id.as_str()).collect();
            return Ok(Some(DriftReason::Subnet(format!(
                "instance subnet {subnet} is not among the resolved subnets [{}]",
                ids.join(", ")
            ))));
        }
        let have: BTreeSet<&str> = i.security_group_ids.iter().map(String::as_str).collect();
        let want: BTreeSet<&str> = r.security_groups.iter().map(|g| g.id.as_str()).collect();
        if !have.is_empty() && have != want {
            return Ok(Some(DriftReason::SecurityGroup(format!(
                "instance security groups [{}] differ from the resolved [{}]",
                have.into_iter().collect::<Vec<_>>().join(", "),
                want.into_iter().collect::<Vec<_>>().join(", ")
            ))));
        }
        Ok(None)
    }
}

/// The claim's instance type options that exist (in the claim's order); with no options, every
/// type compatible with the claim's requirements, cheapest first, at most [`MAX_OVERRIDES`].
fn candidates<'a>(claim: &NodeClaimRequest, all: &'a [TypeEntry]) -> Vec<&'a TypeEntry> {
    if claim.instance_type_options.is_empty() {
        let mut c: Vec<(&TypeEntry, f64)> = all
            .iter()
            .filter_map(|t| {
                let it = &t.instance_type;
                let o = it.cheapest_offering(&claim.requirements)?;
                it.compatible(&claim.requirements).then_some((t, o.price))
            })
            .collect();
        c.sort_by(|a, b| a.1.total_cmp(&b.1));
        c.truncate(MAX_OVERRIDES);
        return c.into_iter().map(|(t, _)| t).collect();
    }
    let by_name: HashMap<&str, &TypeEntry> = all
        .iter()
        .map(|t| (t.instance_type.name.as_str(), t))
        .collect();
    let mut seen = BTreeSet::new();
    claim
        .instance_type_options
        .iter()
        .filter(|n| seen.insert(n.as_str()))
        .filter_map(|n| by_name.get(n.as_str()).copied())
        .collect()
}

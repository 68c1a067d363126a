//! Hand-written in-memory fakes of [`Ec2Api`], [`SsmApi`], [`IamApi`] and [`PricingApi`] for
//! the provider's tests: they answer from plain data, apply EC2 filters the way EC2 does, and
//! record calls.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::iam::{IamApi, InstanceProfile};
use crate::aws::ec2api::{
    CreateFleetRequest, Ec2Api, Ec2Error, FleetError, FleetInstance, FleetOutcome,
    FleetOverrideRef, Instance, InstanceQuery, InstanceTypeInfo, LaunchTemplateRequest,
    LaunchTemplateSummary, SpotPrice, TerminatedInstance,
};
use crate::aws::pricing::PricingApi;
use crate::aws::resolve::{Filter, Image, ImageQuery, SecurityGroup, Subnet, glob_match};
use crate::aws::ssm::SsmApi;

/// True when every filter matches: `tag:<k>` and `tag-key` against `tags`, anything else
/// against the named attribute in `attrs`. Unknown filter names match nothing, so a test
/// notices a misspelt filter.
pub fn filters_match(
    filters: &[Filter],
    tags: &BTreeMap<String, String>,
    attrs: &[(&str, &str)],
) -> bool {
    filters.iter().all(|f| {
        if let Some(key) = f.name.strip_prefix("tag:") {
            tags.get(key)
                .is_some_and(|v| f.values.iter().any(|p| glob_match(p, v)))
        } else if f.name == "tag-key" {
            f.values.iter().any(|k| tags.contains_key(k))
        } else {
            attrs
                .iter()
                .filter(|(n, _)| *n == f.name)
                .any(|(_, v)| f.values.iter().any(|p| glob_match(p, v)))
        }
    })
}

fn api_error(operation: &str, code: &str, message: &str) -> Ec2Error {
    Ec2Error::Api {
        operation: operation.to_owned(),
        code: code.to_owned(),
        message: message.to_owned(),
    }
}

/// What [`FakeEc2`] holds and records.
#[derive(Default)]
pub struct Ec2State {
    /// Subnets `DescribeSubnets` answers from.
    pub subnets: Vec<Subnet>,
    /// Security groups.
    pub security_groups: Vec<SecurityGroup>,
    /// Images.
    pub images: Vec<Image>,
    /// `DescribeInstanceTypes` answer.
    pub instance_types: Vec<InstanceTypeInfo>,
    /// When set, `DescribeInstanceTypes` answers only once it gets a permit (a call that
    /// hangs until the test lets it go).
    pub instance_types_gate: Option<Arc<tokio::sync::Semaphore>>,
    /// When set, `CreateFleet` launches its instance (visible to `DescribeInstances`) but
    /// answers only once it gets a permit: a launch in flight.
    pub fleet_gate: Option<Arc<tokio::sync::Semaphore>>,
    /// `DescribeInstanceTypeOfferings` answer.
    pub offerings: Vec<(String, String)>,
    /// `DescribeSpotPriceHistory` answer.
    pub spot_prices: Vec<SpotPrice>,
    /// Instances by id.
    pub instances: BTreeMap<String, Instance>,
    /// Launch templates by name.
    pub launch_templates: BTreeMap<String, LaunchTemplateRequest>,
    /// `(instance type, zone)` pairs without capacity: fleet overrides for them fail with
    /// `InsufficientInstanceCapacity`.
    pub ice: BTreeSet<(String, String)>,
    /// Error codes the next `CreateFleet` calls report for every override instead of
    /// launching, one call each, first first.
    pub next_fleet_errors: Vec<String>,
    /// Operation names in call order.
    pub calls: Vec<String>,
    /// Every `CreateFleet` request.
    pub fleet_requests: Vec<CreateFleetRequest>,
    /// Every `CreateLaunchTemplate` request (including refused duplicates).
    pub template_requests: Vec<LaunchTemplateRequest>,
    /// Filters of every `DescribeSubnets` call.
    pub subnet_queries: Vec<Vec<Filter>>,
    /// Every `DescribeInstances` query.
    pub instance_queries: Vec<InstanceQuery>,
    /// Every `DescribeImages` query.
    pub image_queries: Vec<ImageQuery>,
    next_id: u32,
}

/// An in-memory [`Ec2Api`].
#[derive(Default)]
pub struct FakeEc2 {
    /// Data and records; tests edit and read it directly.
    pub state: Mutex<Ec2State>,
}

impl FakeEc2 {
    /// Runs `f` on the state.
    pub fn with<R>(&self, f: impl FnOnce(&mut Ec2State) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    /// How many times `operation` was called.
    pub fn count(&self, operation: &str) -> usize {
        self.with(|s| s.calls.iter().filter(|c| *c == operation).count())
    }

    fn record(&self, operation: &str) {
        self.with(|s| s.calls.push(operation.to_owned()));
    }

    /// CreateFleet's effect: launches the first override that can be launched and records
    /// the request; also the gate the answer waits on.
    fn launch_fleet(
        &self,
        request: &CreateFleetRequest,
    ) -> (FleetOutcome, Option<Arc<tokio::sync::Semaphore>>) {
        let mut s = self.state.lock().unwrap();
        s.calls.push("CreateFleet".into());
        s.fleet_requests.push(request.clone());
        let mut outcome = FleetOutcome {
            fleet_id: Some(format!("fleet-{}", s.fleet_requests.len())),
            ..FleetOutcome::default()
        };
        let template_error =
            (!s.next_fleet_errors.is_empty()).then(|| s.next_fleet_errors.remove(0));
        for config in &request.launch_template_configs {
            for o in &config.overrides {
                let source = FleetOverrideRef {
                    launch_template_name: Some(config.launch_template_name.clone()),
                    instance_type: Some(o.instance_type.clone()),
                    availability_zone: Some(o.availability_zone.clone()),
                    subnet_id: Some(o.subnet_id.clone()),
                };
                let template = s
                    .launch_templates
                    .get(&config.launch_template_name)
                    .cloned();
                let code = match (&template_error, &template) {
                    (Some(code), _) => Some(code.clone()),
                    (None, None) => Some("InvalidLaunchTemplateName.NotFoundException".into()),
                    (None, Some(_))
                        if s.ice
                            .contains(&(o.instance_type.clone(), o.availability_zone.clone())) =>
                    {
                        Some("InsufficientInstanceCapacity".into())
                    }
                    _ => None,
                };
                if let Some(code) = code {
                    outcome.errors.push(FleetError {
                        message: format!("{code} for {}", o.instance_type),
                        code,
                        capacity_type: Some(request.capacity_type),
                        source,
                    });
                    continue;
                }
                if !outcome.instances.is_empty() {
                    continue;
                }
                let Some(template) = template else { continue };
                s.next_id += 1;
                let n = s.next_id;
                let id = format!("i-{n:017x}");
                let tags = request
                    .tag_specifications
                    .iter()
                    .find(|t| t.resource_type == "instance")
                    .map(|t| t.tags.clone())
                    .unwrap_or_default();
                s.instances.insert(
                    id.clone(),
                    Instance {
                        id: id.clone(),
                        instance_type: o.instance_type.clone(),
                        zone: o.availability_zone.clone(),
                        capacity_type: request.capacity_type,
                        image_id: template.image_id.clone(),
                        state: "pending".into(),
                        launch_time_unix: 1_700_000_000,
                        subnet_id: Some(o.subnet_id.clone()),
                        security_group_ids: template.security_group_ids.clone(),
                        private_dns_name: Some(format!("ip-10-0-0-{n}.ec2.internal")),
                        tags,
                    },
                );
                outcome.instances.push(FleetInstance {
                    instance_ids: vec![id],
                    instance_type: Some(o.instance_type.clone()),
                    availability_zone: Some(o.availability_zone.clone()),
                    capacity_type: Some(request.capacity_type),
                    source,
                });
            }
        }
        (outcome, s.fleet_gate.clone())
    }
}

#[async_trait]
impl Ec2Api for FakeEc2 {
    async fn create_fleet(&self, request: &CreateFleetRequest) -> Result<FleetOutcome, Ec2Error> {
        let (outcome, gate) = self.launch_fleet(request);
        if let Some(gate) = gate {
            let _permit = gate.acquire().await;
        }
        Ok(outcome)
    }

    async fn describe_subnets(&self, filters: &[Filter]) -> Result<Vec<Subnet>, Ec2Error> {
        self.record("DescribeSubnets");
        self.with(|s| {
            s.subnet_queries.push(filters.to_vec());
            Ok(s.subnets
                .iter()
                .filter(|n| {
                    filters_match(
                        filters,
                        &n.tags,
                        &[("subnet-id", &n.id), ("availability-zone", &n.zone)],
                    )
                })
                .cloned()
                .collect())
        })
    }

    async fn describe_security_groups(
        &self,
        filters: &[Filter],
    ) -> Result<Vec<SecurityGroup>, Ec2Error> {
        self.record("DescribeSecurityGroups");
        self.with(|s| {
            Ok(s.security_groups
                .iter()
                .filter(|g| {
                    filters_match(
                        filters,
                        &g.tags,
                        &[("group-id", &g.id), ("group-name", &g.name)],
                    )
                })
                .cloned()
                .collect())
        })
    }

    async fn describe_images(
        &self,
        query: &ImageQuery,
        _now_unix: i64,
    ) -> Result<Vec<Image>, Ec2Error> {
        self.record("DescribeImages");
        self.with(|s| {
            s.image_queries.push(query.clone());
            Ok(s.images
                .iter()
                .filter(|i| {
                    filters_match(
                        &query.filters,
                        &i.tags,
                        &[("image-id", &i.id), ("name", &i.name)],
                    ) && (query.owners.is_empty()
                        || query.owners.iter().any(|o| {
                            *o == i.owner || i.owner_alias.as_ref() == Some(o) || o == "self"
                        }))
                })
                .cloned()
                .collect())
        })
    }

    async fn describe_instance_types(&self) -> Result<Vec<InstanceTypeInfo>, Ec2Error> {
        self.record("DescribeInstanceTypes");
        let gate = self.with(|s| s.instance_types_gate.clone());
        if let Some(gate) = gate {
            // The state's lock is not held here, like a real call's.
            let _permit = gate.acquire().await;
        }
        self.with(|s| Ok(s.instance_types.clone()))
    }

    async fn describe_instance_type_offerings(&self) -> Result<Vec<(String, String)>, Ec2Error> {
        self.record("DescribeInstanceTypeOfferings");
        self.with(|s| Ok(s.offerings.clone()))
    }

    async fn describe_spot_price_history(
        &self,
        _start_unix: i64,
    ) -> Result<Vec<SpotPrice>, Ec2Error> {
        self.record("DescribeSpotPriceHistory");
        self.with(|s| Ok(s.spot_prices.clone()))
    }

    async fn describe_instances(&self, query: &InstanceQuery) -> Result<Vec<Instance>, Ec2Error> {
        self.record("DescribeInstances");
        self.with(|s| {
            s.instance_queries.push(query.clone());
            match query {
                InstanceQuery::Ids(ids) => {
                    let mut out = Vec::new();
                    for id in ids {
                        match s.instances.get(id) {
                            Some(i) => out.push(i.clone()),
                            None => {
                                return Err(api_error(
                                    "DescribeInstances",
                                    "InvalidInstanceID.NotFound",
                                    &format!("The instance ID '{id}' does not exist"),
                                ));
                            }
                        }
                    }
                    Ok(out)
                }
                InstanceQuery::Filters(filters) => Ok(s
                    .instances
                    .values()
                    .filter(|i| {
                        filters_match(filters, &i.tags, &[("instance-state-name", &i.state)])
                    })
                    .cloned()
                    .collect()),
            }
        })
    }

    async fn terminate_instances(
        &self,
        instance_ids: &[String],
    ) -> Result<Vec<TerminatedInstance>, Ec2Error> {
        self.record("TerminateInstances");
        self.with(|s| {
            let mut out = Vec::new();
            for id in instance_ids {
                let Some(i) = s.instances.get_mut(id) else {
                    return Err(api_error(
                        "TerminateInstances",
                        "InvalidInstanceID.NotFound",
                        &format!("The instance ID '{id}' does not exist"),
                    ));
                };
                i.state = if i.state == "terminated" || i.state == "shutting-down" {
                    "terminated".into()
                } else {
                    "shutting-down".into()
                };
                out.push(TerminatedInstance {
                    id: id.clone(),
                    current_state: i.state.clone(),
                });
            }
            Ok(out)
        })
    }

    async fn create_launch_template(
        &self,
        request: &LaunchTemplateRequest,
    ) -> Result<String, Ec2Error> {
        self.record("CreateLaunchTemplate");
        self.with(|s| {
            s.template_requests.push(request.clone());
            if s.launch_templates.contains_key(&request.name) {
                return Err(api_error(
                    "CreateLaunchTemplate",
                    "InvalidLaunchTemplateName.AlreadyExistsException",
                    "Launch template name already in use.",
                ));
            }
            s.launch_templates
                .insert(request.name.clone(), request.clone());
            Ok(format!("lt-{:017x}", s.launch_templates.len()))
        })
    }

    async fn describe_launch_templates(
        &self,
        filters: &[Filter],
    ) -> Result<Vec<LaunchTemplateSummary>, Ec2Error> {
        self.record("DescribeLaunchTemplates");
        self.with(|s| {
            Ok(s.launch_templates
                .values()
                .filter(|t| filters_match(filters, &t.tags, &[("launch-template-name", &t.name)]))
                .map(|t| LaunchTemplateSummary {
                    id: format!("lt-{}", t.name.len()),
                    name: t.name.clone(),
                    tags: t.tags.clone(),
                })
                .collect())
        })
    }

    async fn delete_launch_template(&self, name: &str) -> Result<(), Ec2Error> {
        self.record("DeleteLaunchTemplate");
        self.with(|s| {
            s.launch_templates.remove(name).map(|_| ()).ok_or_else(|| {
                api_error(
                    "DeleteLaunchTemplate",
                    "InvalidLaunchTemplateName.NotFoundException",
                    "not found",
                )
            })
        })
    }

    async fn create_tags(
        &self,
        resource_ids: &[String],
        tags: &BTreeMap<String, String>,
    ) -> Result<(), Ec2Error> {
        self.record("CreateTags");
        self.with(|s| {
            for id in resource_ids {
                let Some(i) = s.instances.get_mut(id) else {
                    return Err(api_error(
                        "CreateTags",
                        "InvalidInstanceID.NotFound",
                        &format!("The instance ID '{id}' does not exist"),
                    ));
                };
                i.tags.extend(tags.clone());
            }
            Ok(())
        })
    }
}

/// An in-memory [`SsmApi`]: parameters by name, and the names asked for.
#[derive(Default)]
pub struct FakeSsm {
    /// Parameter values by name.
    pub parameters: Mutex<BTreeMap<String, String>>,
    /// Names of every `GetParameters` call.
    pub requests: Mutex<Vec<Vec<String>>>,
}

#[async_trait]
impl SsmApi for FakeSsm {
    async fn get_parameters(&self, names: &[String]) -> Result<BTreeMap<String, String>, Ec2Error> {
        self.requests.lock().unwrap().push(names.to_vec());
        let params = self.parameters.lock().unwrap();
        Ok(names
            .iter()
            .filter_map(|n| params.get(n).map(|v| (n.clone(), v.clone())))
            .collect())
    }
}

#[derive(Default)]
struct IamState {
    profiles: BTreeMap<String, (Vec<String>, BTreeMap<String, String>)>,
    calls: Vec<String>,
}

/// An in-memory [`IamApi`].
#[derive(Default)]
pub struct FakeIam {
    state: Mutex<IamState>,
}

impl FakeIam {
    /// Calls so far, as `Operation args…`.
    pub fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    /// Forgets the recorded calls.
    pub fn clear_calls(&self) {
        self.state.lock().unwrap().calls.clear();
    }

    /// The tags a profile was created with.
    pub fn profile_tags(&self, name: &str) -> Option<BTreeMap<String, String>> {
        let s = self.state.lock().unwrap();
        s.profiles.get(name).map(|(_, t)| t.clone())
    }

    /// The roles of a profile.
    pub fn roles(&self, name: &str) -> Option<Vec<String>> {
        let s = self.state.lock().unwrap();
        s.profiles.get(name).map(|(r, _)| r.clone())
    }
}

#[async_trait]
impl IamApi for FakeIam {
    async fn get_instance_profile(&self, name: &str) -> Result<Option<InstanceProfile>, Ec2Error> {
        let mut s = self.state.lock().unwrap();
        s.calls.push(format!("GetInstanceProfile {name}"));
        Ok(s.profiles.get(name).map(|(roles, _)| InstanceProfile {
            name: name.to_owned(),
            roles: roles.clone(),
        }))
    }

    async fn create_instance_profile(
        &self,
        name: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), Ec2Error> {
        let mut s = self.state.lock().unwrap();
        s.calls.push(format!("CreateInstanceProfile {name}"));
        s.profiles
            .entry(name.to_owned())
            .or_insert_with(|| (Vec::new(), tags.clone()));
        Ok(())
    }

    async fn add_role_to_instance_profile(
        &self,
        profile: &str,
        role: &str,
    ) -> Result<(), Ec2Error> {
        let mut s = self.state.lock().unwrap();
        s.calls
            .push(format!("AddRoleToInstanceProfile {profile} {role}"));
        let Some((roles, _)) = s.profiles.get_mut(profile) else {
            return Err(api_error(
                "AddRoleToInstanceProfile",
                "NoSuchEntity",
                profile,
            ));
        };
        if !roles.is_empty() {
            return Err(api_error(
                "AddRoleToInstanceProfile",
                "LimitExceeded",
                profile,
            ));
        }
        roles.push(role.to_owned());
        Ok(())
    }

    async fn remove_role_from_instance_profile(
        &self,
        profile: &str,
        role: &str,
    ) -> Result<(), Ec2Error> {
        let mut s = self.state.lock().unwrap();
        s.calls
            .push(format!("RemoveRoleFromInstanceProfile {profile} {role}"));
        if let Some((roles, _)) = s.profiles.get_mut(profile) {
            roles.retain(|r| r != role);
        }
        Ok(())
    }
}

/// An in-memory [`PricingApi`]: on-demand prices by instance type, or a failure standing for
/// an unreachable API; records the region of every call.
#[derive(Default)]
pub struct FakePricing {
    /// The answer: USD per hour by instance type.
    pub prices: Mutex<HashMap<String, f64>>,
    /// When set, every call fails with it instead.
    pub error: Mutex<Option<Ec2Error>>,
    /// The region of every call.
    pub regions: Mutex<Vec<String>>,
}

impl FakePricing {
    /// A fake answering `prices`.
    pub fn answering(prices: &[(&str, f64)]) -> Self {
        let fake = FakePricing::default();
        fake.set_prices(prices);
        fake
    }

    /// Replaces the answer.
    pub fn set_prices(&self, prices: &[(&str, f64)]) {
        *self.prices.lock().unwrap() = prices.iter().map(|(t, p)| (t.to_string(), *p)).collect();
    }

    /// Makes every call fail as an unreachable endpoint does; `false` answers again.
    pub fn set_unreachable(&self, unreachable: bool) {
        *self.error.lock().unwrap() = unreachable.then(|| Ec2Error::Transport {
            operation: "GetProducts".into(),
            message: "dispatch failure: connection refused".into(),
        });
    }

    /// How many calls were made.
    pub fn calls(&self) -> usize {
        self.regions.lock().unwrap().len()
    }
}

#[async_trait]
impl PricingApi for FakePricing {
    async fn on_demand_prices(&self, region: &str) -> Result<HashMap<String, f64>, Ec2Error> {
        self.regions.lock().unwrap().push(region.to_owned());
        if let Some(e) = self.error.lock().unwrap().clone() {
            return Err(e);
        }
        Ok(self.prices.lock().unwrap().clone())
    }
}

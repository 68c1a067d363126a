//! An in-memory [`CloudProvider`] for core and controller tests: deterministic instance ids,
//! a record of every call, and injectable failures (one-off create errors, capacity errors per
//! offering, drift).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use karpenter_core::instance_type::{InstanceType, Offering};
use karpenter_core::labels;

use crate::aws::catalog::Catalog;
use crate::aws::instance_types::{InstanceTypeSettings, catalog_instance_types};
use crate::provider::{
    CloudProvider, DriftReason, LaunchedInstance, NodeClaimRequest, NodePoolRef, OfferingKey,
    ProviderError, aws_provider_id,
};

/// Instance types [`FakeCloudProvider::new`] offers: a small realistic mix (burstable, general
/// purpose, compute, memory, Graviton, GPU) from the embedded catalog.
pub const DEFAULT_INSTANCE_TYPES: &[&str] = &[
    "t3.medium",
    "t3.large",
    "m5.large",
    "m5.xlarge",
    "m5.2xlarge",
    "c5.large",
    "c5.xlarge",
    "r5.large",
    "m6g.large",
    "m6g.xlarge",
    "g5.xlarge",
];

/// The image id fake instances report.
pub const FAKE_IMAGE_ID: &str = "ami-00000000000000001";

/// The launch time of the first fake instance (2023-11-14T22:13:20Z); see
/// [`FakeCloudProvider::set_now`].
pub const FAKE_EPOCH: i64 = 1_700_000_000;

/// One recorded call.
#[derive(Clone, Debug, PartialEq)]
pub enum Call {
    /// `create(claim)`.
    Create {
        /// The request as given (boxed: it is much larger than the other variants).
        claim: Box<NodeClaimRequest>,
    },
    /// `delete(provider_id)`.
    Delete {
        /// The provider id as given.
        id: String,
    },
    /// `get(provider_id)`.
    Get {
        /// The provider id as given.
        id: String,
    },
    /// `list()`.
    List,
    /// `instance_types(node_pool)`.
    InstanceTypes {
        /// The NodePool as given.
        node_pool: NodePoolRef,
    },
    /// `mark_unavailable(offering)`.
    MarkUnavailable {
        /// The offering as given.
        offering: OfferingKey,
    },
    /// `is_drifted(instance)`.
    IsDrifted {
        /// The instance's provider id.
        id: String,
    },
    /// `find_launched(claim, launched_after_unix)`.
    FindLaunched {
        /// The claim's name.
        claim: String,
    },
}

#[derive(Default)]
struct State {
    instance_types: Vec<InstanceType>,
    instances: BTreeMap<String, LaunchedInstance>,
    next_id: u64,
    now: i64,
    calls: Vec<Call>,
    create_errors: VecDeque<ProviderError>,
    /// Offerings that fail with InsufficientCapacity when launched.
    no_capacity: BTreeSet<OfferingKey>,
    /// Offerings a create found without capacity; reported unavailable, like Karpenter's
    /// unavailable-offerings cache.
    seen_unavailable: BTreeSet<OfferingKey>,
    drifted: BTreeMap<String, DriftReason>,
}

impl State {
    fn sorted_instances(&self) -> Vec<LaunchedInstance> {
        let mut out: Vec<LaunchedInstance> = self.instances.values().cloned().collect();
        out.sort_by(|a, b| a.instance_id().cmp(b.instance_id()));
        out
    }
}

/// An in-memory cloud provider. Cheap to share (`Arc<FakeCloudProvider>`); all methods take
/// `&self`.
pub struct FakeCloudProvider {
    state: Mutex<State>,
}

impl Default for FakeCloudProvider {
    fn default() -> Self {
        FakeCloudProvider::new()
    }
}

fn key(instance_type: &str, zone: &str, capacity_type: &str) -> OfferingKey {
    (
        instance_type.to_string(),
        zone.to_string(),
        capacity_type.to_string(),
    )
}

/// Rank of a capacity type in Karpenter's launch preference: reserved, then spot, then
/// on-demand (spot is used whenever the claim allows it and spot capacity exists).
fn capacity_type_rank(capacity_type: &str) -> u8 {
    match capacity_type {
        "reserved" => 0,
        labels::CAPACITY_SPOT => 1,
        _ => 2,
    }
}

impl FakeCloudProvider {
    /// A provider offering [`DEFAULT_INSTANCE_TYPES`], computed from the embedded catalog with
    /// default settings (AL2023, no kubelet overrides).
    pub fn new() -> FakeCloudProvider {
        let all = catalog_instance_types(Catalog::embedded(), &InstanceTypeSettings::default());
        let types = all
            .into_iter()
            .filter(|it| DEFAULT_INSTANCE_TYPES.contains(&it.name.as_str()))
            .collect();
        FakeCloudProvider::with_instance_types(types)
    }

    /// A provider offering exactly these instance types.
    pub fn with_instance_types(instance_types: Vec<InstanceType>) -> FakeCloudProvider {
        FakeCloudProvider {
            state: Mutex::new(State {
                instance_types,
                now: FAKE_EPOCH,
                ..State::default()
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not hide the state from the others.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Replaces the offered instance types.
    pub fn set_instance_types(&self, instance_types: Vec<InstanceType>) {
        self.state().instance_types = instance_types;
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// Forgets the recorded calls.
    pub fn clear_calls(&self) {
        self.state().calls.clear();
    }

    /// The next `create` fails with `error` (queued: several calls fail several creates).
    pub fn fail_next_create(&self, error: ProviderError) {
        self.state().create_errors.push_back(error);
    }

    /// Launching this offering fails with InsufficientCapacity; once a create has hit it,
    /// `instance_types` reports it unavailable.
    pub fn insufficient_capacity_for(&self, instance_type: &str, zone: &str, capacity_type: &str) {
        self.state()
            .no_capacity
            .insert(key(instance_type, zone, capacity_type));
    }

    /// Capacity is back everywhere.
    pub fn clear_insufficient_capacity(&self) {
        let mut s = self.state();
        s.no_capacity.clear();
        s.seen_unavailable.clear();
    }

    /// `is_drifted` reports `reason` for this instance.
    pub fn set_drifted(&self, provider_id: &str, reason: DriftReason) {
        self.state().drifted.insert(provider_id.to_string(), reason);
    }

    /// Launch time given to the next instances (seconds since the epoch).
    pub fn set_now(&self, unix: i64) {
        self.state().now = unix;
    }

    /// Adds an instance as if it had been launched earlier (e.g. to test garbage collection).
    pub fn insert_instance(&self, instance: LaunchedInstance) {
        self.state()
            .instances
            .insert(instance.provider_id.clone(), instance);
    }

    /// The instances currently running, in launch order (by instance id).
    pub fn instances(&self) -> Vec<LaunchedInstance> {
        self.state().sorted_instances()
    }

    fn launch(
        state: &mut State,
        claim: &NodeClaimRequest,
    ) -> Result<LaunchedInstance, ProviderError> {
        let allowed: Option<BTreeSet<&str>> =
            (!claim.instance_type_options.is_empty()).then(|| {
                claim
                    .instance_type_options
                    .iter()
                    .map(String::as_str)
                    .collect()
            });
        // Candidates in launch preference: capacity type, then price, then the scheduler's
        // order of options, then zone.
        let mut candidates: Vec<(u8, f64, usize, &InstanceType, &Offering)> = Vec::new();
        for it in &state.instance_types {
            if allowed
                .as_ref()
                .is_some_and(|a| !a.contains(it.name.as_str()))
            {
                continue;
            }
            if it.requirements.intersects(&claim.requirements).is_err()
                || !claim.requests.fits_in(&it.allocatable())
            {
                continue;
            }
            let order = claim
                .instance_type_options
                .iter()
                .position(|n| *n == it.name)
                .unwrap_or(0);
            for o in &it.offerings {
                let k = key(&it.name, &o.zone, &o.capacity_type);
                if o.available
                    && o.compatible(&claim.requirements)
                    && !state.seen_unavailable.contains(&k)
                {
                    candidates.push((capacity_type_rank(&o.capacity_type), o.price, order, it, o));
                }
            }
        }
        candidates.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then(a.1.total_cmp(&b.1))
                .then(a.2.cmp(&b.2))
                .then_with(|| a.4.zone.cmp(&b.4.zone))
        });
        let mut exhausted = Vec::new();
        let mut chosen = None;
        for (_, _, _, it, o) in candidates {
            let k = key(&it.name, &o.zone, &o.capacity_type);
            if state.no_capacity.contains(&k) {
                exhausted.push(k);
            } else {
                chosen = Some((it.clone(), o.clone()));
                break;
            }
        }
        state.seen_unavailable.extend(exhausted.iter().cloned());
        let Some((it, offering)) = chosen else {
            let message = if exhausted.is_empty() {
                format!(
                    "no instance type option of {} has an available compatible offering",
                    claim.name
                )
            } else {
                format!(
                    "all {} compatible offerings of {} are out of capacity",
                    exhausted.len(),
                    claim.name
                )
            };
            return Err(ProviderError::InsufficientCapacity {
                offerings: exhausted,
                message,
            });
        };

        state.next_id += 1;
        let instance_id = format!("i-{:08}", state.next_id);
        let mut node_labels = it.requirements.single_valued_labels();
        node_labels.insert(labels::ZONE.to_string(), offering.zone.clone());
        node_labels.insert(
            labels::CAPACITY_TYPE.to_string(),
            offering.capacity_type.clone(),
        );
        node_labels.insert(labels::NODE_POOL.to_string(), claim.node_pool.clone());
        node_labels.insert(
            labels::aws::EC2_NODE_CLASS.to_string(),
            claim.node_class.clone(),
        );
        node_labels.extend(claim.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        let instance = LaunchedInstance {
            provider_id: aws_provider_id(&offering.zone, &instance_id),
            instance_type: it.name.clone(),
            zone: offering.zone.clone(),
            capacity_type: offering.capacity_type.clone(),
            image_id: FAKE_IMAGE_ID.to_string(),
            capacity: it.capacity,
            labels: node_labels,
            launch_time_unix: state.now,
            node_claim: Some(claim.name.clone()),
            node_pool: Some(claim.node_pool.clone()),
        };
        state
            .instances
            .insert(instance.provider_id.clone(), instance.clone());
        Ok(instance)
    }
}

#[async_trait]
impl CloudProvider for FakeCloudProvider {
    fn name(&self) -> &str {
        "fake"
    }

    /// Launches the preferred offering among the claim's options: instance types whose labels
    /// intersect the claim's requirements and whose allocatable fits its requests; offerings
    /// that are available, in an allowed zone and capacity type; spot before on-demand, then
    /// cheapest. Offerings marked with [`FakeCloudProvider::insufficient_capacity_for`] are
    /// skipped (and remembered as unavailable); if nothing is left the create fails with
    /// InsufficientCapacity listing them.
    async fn create(&self, claim: &NodeClaimRequest) -> Result<LaunchedInstance, ProviderError> {
        let mut state = self.state();
        state.calls.push(Call::Create {
            claim: Box::new(claim.clone()),
        });
        if let Some(err) = state.create_errors.pop_front() {
            return Err(err);
        }
        FakeCloudProvider::launch(&mut state, claim)
    }

    async fn delete(&self, provider_id: &str) -> Result<(), ProviderError> {
        let mut state = self.state();
        state.calls.push(Call::Delete {
            id: provider_id.to_string(),
        });
        state.drifted.remove(provider_id);
        match state.instances.remove(provider_id) {
            Some(_) => Ok(()),
            None => Err(ProviderError::NotFound {
                provider_id: provider_id.to_string(),
            }),
        }
    }

    async fn get(&self, provider_id: &str) -> Result<LaunchedInstance, ProviderError> {
        let mut state = self.state();
        state.calls.push(Call::Get {
            id: provider_id.to_string(),
        });
        state
            .instances
            .get(provider_id)
            .cloned()
            .ok_or_else(|| ProviderError::NotFound {
                provider_id: provider_id.to_string(),
            })
    }

    async fn list(&self) -> Result<Vec<LaunchedInstance>, ProviderError> {
        let mut state = self.state();
        state.calls.push(Call::List);
        Ok(state.sorted_instances())
    }

    /// The configured instance types, with offerings a create found out of capacity marked
    /// unavailable.
    async fn instance_types(
        &self,
        node_pool: &NodePoolRef,
    ) -> Result<Vec<InstanceType>, ProviderError> {
        let mut state = self.state();
        state.calls.push(Call::InstanceTypes {
            node_pool: node_pool.clone(),
        });
        let mut types = state.instance_types.clone();
        for it in &mut types {
            for o in &mut it.offerings {
                if state
                    .seen_unavailable
                    .contains(&key(&it.name, &o.zone, &o.capacity_type))
                {
                    o.available = false;
                }
            }
        }
        Ok(types)
    }

    async fn is_drifted(
        &self,
        instance: &LaunchedInstance,
    ) -> Result<Option<DriftReason>, ProviderError> {
        let mut state = self.state();
        let id = &instance.provider_id;
        state.calls.push(Call::IsDrifted { id: id.clone() });
        if let Some(reason) = state.drifted.get(id) {
            return Ok(Some(reason.clone()));
        }
        if state.instances.contains_key(id) {
            Ok(None)
        } else {
            Err(ProviderError::NotFound {
                provider_id: id.clone(),
            })
        }
    }

    /// Reported unavailable by `instance_types` (until
    /// [`FakeCloudProvider::clear_insufficient_capacity`]), as after a capacity error.
    fn mark_unavailable(&self, offering: &OfferingKey) {
        let mut state = self.state();
        state.calls.push(Call::MarkUnavailable {
            offering: offering.clone(),
        });
        state.seen_unavailable.insert(offering.clone());
    }

    /// The instance tagged for the claim, or an adoptable one (then tagged for it).
    async fn find_launched(
        &self,
        claim: &NodeClaimRequest,
        launched_after_unix: i64,
    ) -> Result<Option<LaunchedInstance>, ProviderError> {
        let mut state = self.state();
        state.calls.push(Call::FindLaunched {
            claim: claim.name.clone(),
        });
        let instances = state.sorted_instances();
        let found = crate::provider::launched_for(
            claim,
            &instances,
            launched_after_unix,
            &Default::default(),
        );
        Ok(match found {
            None => None,
            Some(crate::provider::Found::Tagged(i)) => Some(i),
            Some(crate::provider::Found::Untagged(mut i)) => {
                i.node_claim = Some(claim.name.clone());
                state.instances.insert(i.provider_id.clone(), i.clone());
                Some(i)
            }
        })
    }
}

#[cfg(test)]
mod tests;

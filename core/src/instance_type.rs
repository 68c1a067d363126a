//! Instance types as the scheduler sees them: label requirements, capacity, overhead and
//! priced offerings per zone and capacity type.

use crate::labels;
use crate::requirements::{Requirement, Requirements};
use crate::resources::Resources;

/// Where and how an instance type can be bought, and for how much.
#[derive(Clone, Debug, PartialEq)]
pub struct Offering {
    /// Availability zone, e.g. `us-east-1a`.
    pub zone: String,
    /// `spot` or `on-demand`.
    pub capacity_type: String,
    /// USD per hour.
    pub price: f64,
    /// False while the provider has seen capacity errors for it (InsufficientInstanceCapacity).
    pub available: bool,
}

impl Offering {
    /// True when the offering's zone and capacity type are allowed by `reqs`.
    pub fn compatible(&self, reqs: &Requirements) -> bool {
        reqs.get(labels::ZONE).is_none_or(|r| r.has(&self.zone))
            && reqs
                .get(labels::CAPACITY_TYPE)
                .is_none_or(|r| r.has(&self.capacity_type))
    }
}

/// One instance type a NodePool may launch.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceType {
    /// e.g. `m5.large`.
    pub name: String,
    /// The labels a node of this type carries (instance type, arch, os, family, cpu, …), as
    /// single-value requirements. Zone and capacity type come from [`InstanceType::offerings`].
    pub requirements: Requirements,
    /// Raw capacity (vCPU, memory, pods = maxPods, GPUs, …).
    pub capacity: Resources,
    /// What the kubelet, system daemons, eviction threshold and hypervisor take off the top.
    pub overhead: Resources,
    /// Purchase options.
    pub offerings: Vec<Offering>,
}

impl InstanceType {
    /// Capacity minus overhead: what pods can request.
    pub fn allocatable(&self) -> Resources {
        self.capacity.saturating_sub(&self.overhead)
    }

    /// The cheapest available offering allowed by `reqs`.
    pub fn cheapest_offering(&self, reqs: &Requirements) -> Option<&Offering> {
        self.cheapest_offering_in(reqs.get(labels::ZONE), reqs.get(labels::CAPACITY_TYPE))
            .map(|(_, o)| o)
    }

    /// The cheapest available offering (and its index) in the allowed zones and capacity
    /// types (`None` allows all); ties go to the zone, then capacity type, by name. Callers
    /// pricing many types against the same requirements look the two up once.
    pub fn cheapest_offering_in(
        &self,
        zones: Option<&Requirement>,
        capacity_types: Option<&Requirement>,
    ) -> Option<(usize, &Offering)> {
        self.offerings
            .iter()
            .enumerate()
            .filter(|(_, o)| {
                o.available
                    && zones.is_none_or(|r| r.has(&o.zone))
                    && capacity_types.is_none_or(|r| r.has(&o.capacity_type))
            })
            .min_by(|(_, a), (_, b)| {
                a.price
                    .total_cmp(&b.price)
                    .then_with(|| a.zone.cmp(&b.zone))
                    .then_with(|| a.capacity_type.cmp(&b.capacity_type))
            })
    }

    /// True when a node of this type can carry `reqs`: the labels intersect and an available
    /// offering is in an allowed zone and capacity type.
    pub fn compatible(&self, reqs: &Requirements) -> bool {
        self.requirements.intersects(reqs).is_ok() && self.cheapest_offering(reqs).is_some()
    }
}

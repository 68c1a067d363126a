//! A NodeClaim being assembled by the solver: its requirements, the instance types that still
//! fit everything placed on it, and the resources those pods use.

use super::pools::PoolData;
use crate::requirements::Requirements;
use crate::resources::Resources;
use crate::snapshot::{HostPort, Pod};

/// A new node under construction.
#[derive(Debug)]
pub(crate) struct Claim {
    pub pool: usize,
    pub hostname: String,
    /// Domain id of `hostname` in the hostname topology table, when one exists.
    pub host_domain: Option<u32>,
    pub reqs: Requirements,
    /// Ids of pod requirement sets already intersected into `reqs` (a fast "nothing changes").
    pub applied: Vec<u32>,
    /// Indices into the pool's types that fit everything so far, cheapest first.
    pub types: Vec<u32>,
    /// Slot-wise maximum allocatable over `types`: a cheap upper bound for rejecting pods.
    pub max_alloc: Resources,
    /// Slot-wise maximum capacity over `types`: what the claim reserves against pool limits.
    pub max_capacity: Resources,
    /// Pod requests plus DaemonSet overhead.
    pub requests: Resources,
    pub pods: Vec<usize>,
    pub host_ports: Vec<HostPort>,
}

/// What adding one pod changes on a claim (computed by the checks, applied on commit).
#[derive(Debug, Clone)]
pub(crate) struct ClaimUpdate {
    pub reqs: Option<Requirements>,
    pub types: Vec<u32>,
    pub max_alloc: Resources,
    pub max_capacity: Resources,
    /// (topology table, domain) the claim is now pinned to.
    pub pins: Vec<(usize, u32)>,
}

impl Claim {
    /// An empty claim over the pool's types that fit its remaining limits.
    pub fn new(
        pool_index: usize,
        pool: &PoolData,
        hostname: String,
        host_domain: Option<u32>,
    ) -> Claim {
        let types: Vec<u32> = (0..pool.types.len() as u32)
            .filter(|&i| pool.types[i as usize].capacity.fits_in(&pool.remaining))
            .collect();
        let (max_alloc, max_capacity) = maxima(pool, &types);
        Claim {
            pool: pool_index,
            hostname,
            host_domain,
            reqs: pool.input.requirements.clone(),
            applied: Vec::new(),
            types,
            max_alloc,
            max_capacity,
            requests: pool.daemon_overhead,
            pods: Vec::new(),
            host_ports: Vec::new(),
        }
    }

    /// Commits a checked update.
    pub fn apply(&mut self, pod: &Pod, pod_index: usize, req_id: u32, update: ClaimUpdate) {
        if let Some(r) = update.reqs {
            self.reqs = r;
        }
        if !self.applied.contains(&req_id) {
            self.applied.push(req_id);
        }
        self.types = update.types;
        self.max_alloc = update.max_alloc;
        self.max_capacity = update.max_capacity;
        self.requests += pod.requests;
        self.pods.push(pod_index);
        self.host_ports.extend(pod.host_ports.iter().cloned());
    }
}

/// Slot-wise maxima of allocatable and capacity over `types`.
pub(crate) fn maxima(pool: &PoolData, types: &[u32]) -> (Resources, Resources) {
    let mut alloc = Resources::ZERO;
    let mut cap = Resources::ZERO;
    for &t in types {
        let info = &pool.types[t as usize];
        alloc = alloc.slot_max(&info.allocatable);
        cap = cap.slot_max(&info.capacity);
    }
    (alloc, cap)
}

//! The unavailable-offerings cache: offerings EC2 recently had no capacity for.

use std::collections::BTreeMap;

use crate::provider::OfferingKey;

/// How long an offering stays unavailable after a capacity error (Karpenter's
/// `UnavailableOfferingsTTL`, 3 minutes), in seconds.
pub const UNAVAILABLE_OFFERINGS_TTL_SECS: i64 = 180;

/// Offerings (`(instance type, zone, capacity type)`) EC2 recently refused for lack of
/// capacity, and whole capacity types that cannot launch at all, each with an expiry time.
///
/// Pure: every method takes the current time (seconds since the Unix epoch) instead of reading
/// a clock, so tests control time and the provider wraps it in whatever lock it needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnavailableOfferings {
    ttl_secs: i64,
    offerings: BTreeMap<OfferingKey, i64>,
    capacity_types: BTreeMap<String, i64>,
}

impl Default for UnavailableOfferings {
    fn default() -> Self {
        UnavailableOfferings::new()
    }
}

impl UnavailableOfferings {
    /// An empty cache with Karpenter's 3 minute TTL.
    pub fn new() -> Self {
        UnavailableOfferings::with_ttl(UNAVAILABLE_OFFERINGS_TTL_SECS)
    }

    /// An empty cache whose entries live `ttl_secs` seconds.
    pub fn with_ttl(ttl_secs: i64) -> Self {
        UnavailableOfferings {
            ttl_secs,
            offerings: BTreeMap::new(),
            capacity_types: BTreeMap::new(),
        }
    }

    /// Marks one offering unavailable until `now + ttl`; marking again extends the expiry.
    pub fn mark_unavailable(&mut self, key: OfferingKey, now: i64) {
        self.offerings.insert(key, now + self.ttl_secs);
    }

    /// Marks every offering of a capacity type unavailable until `now + ttl` (Karpenter does
    /// this for spot when the account cannot create the spot service-linked role).
    pub fn mark_capacity_type_unavailable(&mut self, capacity_type: &str, now: i64) {
        self.capacity_types
            .insert(capacity_type.to_owned(), now + self.ttl_secs);
    }

    /// True while the offering, or its whole capacity type, is marked and not yet expired.
    pub fn is_unavailable(
        &self,
        instance_type: &str,
        zone: &str,
        capacity_type: &str,
        now: i64,
    ) -> bool {
        let live = |expiry: Option<&i64>| expiry.is_some_and(|&e| e > now);
        live(self.capacity_types.get(capacity_type))
            || live(self.offerings.get(&(
                instance_type.to_owned(),
                zone.to_owned(),
                capacity_type.to_owned(),
            )))
    }

    /// Drops expired entries (lookups already ignore them; this only bounds memory).
    pub fn evict_expired(&mut self, now: i64) {
        self.offerings.retain(|_, &mut e| e > now);
        self.capacity_types.retain(|_, &mut e| e > now);
    }

    /// Number of entries (offerings and capacity types), expired or not.
    pub fn len(&self) -> usize {
        self.offerings.len() + self.capacity_types.len()
    }

    /// True when the cache holds no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

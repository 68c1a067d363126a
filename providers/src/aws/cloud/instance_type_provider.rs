//! Instance types from EC2's Describe answers (cached), on-demand prices (the Pricing API's
//! over the embedded catalog's) and spot price history, shaped by a node class.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use karpenter_core::instance_type::InstanceType;
use karpenter_core::labels;
use karpenter_core::requirements::{Operator, Requirement, Requirements};
use tokio::sync::watch;

use super::node_class::Resolution;
use super::{AwsCloudProvider, INSTANCE_TYPES_TTL_SECS, call_error};
use crate::aws::catalog::CatalogEntry;
use crate::aws::ec2api::InstanceTypeInfo;
use crate::aws::instance_types::{InstanceTypeSettings, instance_type};
use crate::aws::nodeclass::EC2NodeClass;
use crate::aws::pricing::OnDemandPrices;
use crate::aws::resolve::ResolvedImage;
use crate::provider::ProviderError;

/// The region's instance-type facts, as last described.
#[derive(Debug, Default)]
pub(crate) struct TypeData {
    /// When they were fetched.
    pub fetched_at: i64,
    /// `DescribeInstanceTypes`, by name.
    pub infos: BTreeMap<String, InstanceTypeInfo>,
    /// `DescribeInstanceTypeOfferings`: type → zones.
    pub zones: BTreeMap<String, BTreeSet<String>>,
    /// Latest spot price per `(type, zone)`.
    pub spot: BTreeMap<(String, String), f64>,
}

/// The cached Describe answers and whether someone is fetching new ones.
#[derive(Debug, Default)]
pub(crate) struct TypeDataSlot {
    /// The last answers.
    data: Option<Arc<TypeData>>,
    /// While a refresh runs: sees its sender dropped when the refresh ends, however it ends.
    refreshing: Option<watch::Receiver<()>>,
}

/// Ends a refresh of [`TypeDataSlot`] when dropped (also when the refreshing future is
/// cancelled): clears the in-flight mark, then wakes the callers waiting for it.
struct RefreshGuard<'a> {
    slot: &'a Mutex<TypeDataSlot>,
    _done: watch::Sender<()>,
}

impl Drop for RefreshGuard<'_> {
    fn drop(&mut self) {
        lock(self.slot).refreshing = None;
    }
}

/// Clears a flag when dropped, however the future holding it ends.
struct ClearOnDrop<'a>(&'a AtomicBool);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Locks `m`, recovering from poisoning (the slot stays consistent between statements).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An instance type with the facts it was built from and the image that serves it.
#[derive(Clone, Debug)]
pub(crate) struct TypeEntry {
    /// The catalog-shaped facts.
    pub entry: CatalogEntry,
    /// The scheduler's view.
    pub instance_type: InstanceType,
    /// Index into the resolution's AMIs of the image that serves the type.
    pub image: usize,
}

/// A [`CatalogEntry`] from EC2's description, the offered zones and an on-demand price.
pub(crate) fn catalog_entry(
    info: &InstanceTypeInfo,
    zones: Option<&BTreeSet<String>>,
    on_demand_price: f64,
) -> CatalogEntry {
    CatalogEntry {
        name: info.name.clone(),
        vcpu: info.vcpu,
        memory_mib: info.memory_mib,
        architectures: info.architectures.clone(),
        processor_manufacturer: info.processor_manufacturer.clone(),
        hypervisor: info.hypervisor.clone(),
        bare_metal: info.bare_metal,
        burstable: info.burstable,
        current_generation: info.current_generation,
        max_network_interfaces: info.max_network_interfaces,
        ipv4_per_interface: info.ipv4_per_interface,
        efa_supported: info.efa_supported,
        gpus: info.gpus.clone(),
        local_nvme_gb: info.local_nvme_gb,
        network_performance: info.network_performance.clone(),
        spot_supported: info.spot_supported,
        zones: zones
            .map(|z| z.iter().cloned().collect())
            .unwrap_or_default(),
        on_demand_price,
    }
}

/// The first image (in the resolution's order: newest first) whose requirements the instance
/// type satisfies, as Karpenter's `MapToInstanceTypes`. Instance types carry no accelerator
/// labels here, so a missing `instance-accelerator-count` counts as "none" (a Neuron image
/// does not serve a plain instance type).
pub fn image_for_instance_type<'a>(
    it: &InstanceType,
    images: &'a [ResolvedImage],
) -> Option<(usize, &'a ResolvedImage)> {
    let mut reqs = it.requirements.clone();
    if !reqs.has_key(labels::aws::INSTANCE_ACCELERATOR_COUNT) {
        reqs.add(
            labels::aws::INSTANCE_ACCELERATOR_COUNT,
            Requirement::does_not_exist(),
        );
    }
    images.iter().enumerate().find(|(_, image)| {
        let mut wanted = Requirements::new();
        for r in &image.requirements {
            let Some(op) = Operator::parse(&r.operator) else {
                return false;
            };
            let Ok(req) = Requirement::new(op, &r.values) else {
                return false;
            };
            wanted.add(&r.key, req);
        }
        reqs.compatible(&wanted).is_ok()
    })
}

impl AwsCloudProvider {
    /// The Describe answers, fetched again when older than [`INSTANCE_TYPES_TTL_SECS`].
    /// One caller refreshes at a time, without holding a lock across the calls: while it does,
    /// the others get the previous answers, or wait for it when there are none yet. When a
    /// refresh fails and older answers exist, those are served (and the failure logged); a
    /// failed spot price read only loses the spot prices (spot offerings then use the default
    /// discount). On-demand prices are refreshed first when due
    /// ([`refresh_on_demand_prices`](Self::refresh_on_demand_prices)).
    pub(crate) async fn type_data(&self) -> Result<Arc<TypeData>, ProviderError> {
        self.refresh_on_demand_prices().await;
        let refresh = loop {
            let mut in_flight = {
                let mut slot = lock(&self.type_data);
                if let Some(d) = slot.data.as_ref()
                    && (self.now() - d.fetched_at < INSTANCE_TYPES_TTL_SECS
                        || slot.refreshing.is_some())
                {
                    return Ok(d.clone());
                }
                match &slot.refreshing {
                    Some(done) => done.clone(),
                    None => {
                        let (tx, rx) = watch::channel(());
                        slot.refreshing = Some(rx);
                        break RefreshGuard {
                            slot: &self.type_data,
                            _done: tx,
                        };
                    }
                }
            };
            // Nothing to serve yet: wait for the refresh under way to end, then look again.
            let _ = in_flight.changed().await;
        };
        let fetched = self.fetch_type_data(self.now()).await;
        let result = {
            let mut slot = lock(&self.type_data);
            match fetched {
                Ok(d) => {
                    let d = Arc::new(d);
                    slot.data = Some(d.clone());
                    Ok(d)
                }
                Err(e) => match slot.data.as_ref() {
                    Some(old) => {
                        tracing::warn!(error = %e, "refreshing instance types failed; serving the previous answer");
                        Ok(old.clone())
                    }
                    None => Err(e),
                },
            }
        };
        // After the slot's lock is released: the guard takes it to clear the mark.
        drop(refresh);
        result
    }

    /// The current on-demand prices (a cheap snapshot).
    pub(crate) fn on_demand_prices(&self) -> OnDemandPrices {
        self.prices
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Asks the Pricing API for on-demand prices when one is configured, the VPC is not
    /// isolated and the prices are due
    /// ([`PRICING_TTL_SECS`](crate::aws::pricing::PRICING_TTL_SECS) after the last answer,
    /// [`PRICING_RETRY_SECS`](crate::aws::pricing::PRICING_RETRY_SECS) after a failure).
    /// A failure keeps the previous prices (the embedded catalog's until a first answer) and
    /// is logged by the price book. While another caller is refreshing, this returns at once
    /// and the current prices are used.
    pub(crate) async fn refresh_on_demand_prices(&self) {
        let Some(api) = self.pricing.as_ref().filter(|_| !self.config.isolated_vpc) else {
            return;
        };
        let now = self.now();
        if !self.on_demand_prices().needs_refresh(now) {
            return;
        }
        if self.price_refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let _refreshing = ClearOnDrop(&self.price_refreshing);
        // Read again under the guard: a refresh may have finished since.
        let mut book = self.on_demand_prices();
        // Errors are logged by `refresh`; the book then holds the previous prices.
        let _ = book
            .refresh(api.as_ref(), &self.config.cluster.region, now)
            .await;
        *self.prices.lock().unwrap_or_else(PoisonError::into_inner) = book;
    }

    async fn fetch_type_data(&self, now: i64) -> Result<TypeData, ProviderError> {
        let infos = self
            .ec2
            .describe_instance_types()
            .await
            .map_err(|e| call_error("instance types", e))?;
        let offerings = self
            .ec2
            .describe_instance_type_offerings()
            .await
            .map_err(|e| call_error("instance type offerings", e))?;
        let mut zones: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (t, z) in offerings {
            zones.entry(t).or_default().insert(z);
        }
        let mut latest: BTreeMap<(String, String), (i64, f64)> = BTreeMap::new();
        match self.ec2.describe_spot_price_history(now).await {
            Ok(prices) => {
                for p in prices {
                    if !p.price.is_finite() || p.price <= 0.0 {
                        continue;
                    }
                    let e = latest
                        .entry((p.instance_type, p.zone))
                        .or_insert((p.timestamp_unix, p.price));
                    if p.timestamp_unix > e.0 {
                        *e = (p.timestamp_unix, p.price);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading spot prices failed; using the default spot discount");
            }
        }
        Ok(TypeData {
            fetched_at: now,
            infos: infos.into_iter().map(|i| (i.name.clone(), i)).collect(),
            zones,
            spot: latest.into_iter().map(|(k, (_, p))| (k, p)).collect(),
        })
    }

    /// Settings for a node class: its kubelet, family and disks, the provider's overheads and
    /// the resolved subnets' zones.
    pub(crate) fn settings_for(
        &self,
        nc: &EC2NodeClass,
        resolution: Option<&Resolution>,
    ) -> InstanceTypeSettings {
        let mut s = InstanceTypeSettings::for_node_class(nc);
        s.vm_memory_overhead_percent = self.config.vm_memory_overhead_percent;
        s.reserved_enis = self.config.reserved_enis;
        if let Some(r) = resolution {
            s.zones = Some(r.subnets.iter().map(|s| s.zone.clone()).collect());
        }
        s
    }

    /// Every priced instance type some resolved AMI serves, sorted by name, with the current
    /// on-demand prices ([`on_demand_prices`](Self::on_demand_prices)), real spot prices
    /// where known and unavailable offerings marked.
    pub(crate) fn build_instance_types(
        &self,
        nc: &EC2NodeClass,
        resolution: &Resolution,
        data: &TypeData,
    ) -> Vec<TypeEntry> {
        let settings = self.settings_for(nc, Some(resolution));
        let prices = self.on_demand_prices();
        let now = self.now();
        // A copy, so the lock is not held while ~800 types are computed.
        let unavailable = self.state().unavailable.clone();
        let mut out = Vec::new();
        for info in data.infos.values() {
            let Some(price) = prices.price(&info.name) else {
                continue;
            };
            let entry = catalog_entry(info, data.zones.get(&info.name), price);
            let mut it = instance_type(&entry, &settings);
            let Some((image, _)) = image_for_instance_type(&it, &resolution.amis) else {
                continue;
            };
            for o in &mut it.offerings {
                if o.capacity_type == labels::CAPACITY_SPOT
                    && let Some(p) = data.spot.get(&(it.name.clone(), o.zone.clone()))
                {
                    o.price = *p;
                }
                if unavailable.is_unavailable(&it.name, &o.zone, &o.capacity_type, now) {
                    o.available = false;
                }
            }
            out.push(TypeEntry {
                entry,
                instance_type: it,
                image,
            });
        }
        out
    }
}

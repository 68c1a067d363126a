//! [`MeteredCloudProvider`]: Karpenter's cloud provider metrics decorator. Every call records
//! `karpenter_cloudprovider_duration_seconds` and, when it fails,
//! `karpenter_cloudprovider_errors_total`.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use karpenter_core::instance_type::InstanceType;
use karpenter_providers::{
    CloudProvider, DriftReason, LaunchedInstance, NodeClaimRequest, NodePoolRef, OfferingKey,
    ProviderError,
};

use super::Metrics;

/// The `error` label of a provider error: the [`ProviderError`] variant's name.
pub fn error_label(error: &ProviderError) -> &'static str {
    match error {
        ProviderError::NotFound { .. } => "NotFound",
        ProviderError::InsufficientCapacity { .. } => "InsufficientCapacity",
        ProviderError::NodeClassNotReady { .. } => "NodeClassNotReady",
        ProviderError::Create { .. } => "Create",
        ProviderError::Throttled { .. } => "Throttled",
        ProviderError::Other(_) => "Other",
    }
}

/// Wraps a [`CloudProvider`] and meters every call, labeled with the controller that owns this
/// wrapper, Karpenter's method name (`Create`, `Delete`, `Get`, `List`, `GetInstanceTypes`,
/// `IsDrifted`) and the inner provider's name.
pub struct MeteredCloudProvider<P> {
    inner: P,
    metrics: Arc<Metrics>,
    controller: String,
}

impl<P: CloudProvider> MeteredCloudProvider<P> {
    /// Meters `inner` into `metrics` under the `controller` label (e.g. `provisioner`).
    pub fn new(inner: P, metrics: Arc<Metrics>, controller: impl Into<String>) -> Self {
        Self {
            inner,
            metrics,
            controller: controller.into(),
        }
    }

    /// The wrapped provider.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// Runs one call and records its duration (success or not) and its error, if any.
    async fn measure<T>(
        &self,
        method: &'static str,
        call: impl Future<Output = Result<T, ProviderError>>,
    ) -> Result<T, ProviderError> {
        let start = Instant::now();
        let result = call.await;
        let provider = self.inner.name();
        self.metrics.observe_cloudprovider_call(
            &self.controller,
            method,
            provider,
            start.elapsed(),
        );
        if let Err(e) = &result {
            self.metrics
                .cloudprovider_error(&self.controller, method, provider, error_label(e));
        }
        result
    }
}

#[async_trait]
impl<P: CloudProvider> CloudProvider for MeteredCloudProvider<P> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn create(&self, claim: &NodeClaimRequest) -> Result<LaunchedInstance, ProviderError> {
        self.measure("Create", self.inner.create(claim)).await
    }

    async fn delete(&self, provider_id: &str) -> Result<(), ProviderError> {
        self.measure("Delete", self.inner.delete(provider_id)).await
    }

    async fn get(&self, provider_id: &str) -> Result<LaunchedInstance, ProviderError> {
        self.measure("Get", self.inner.get(provider_id)).await
    }

    async fn list(&self) -> Result<Vec<LaunchedInstance>, ProviderError> {
        self.measure("List", self.inner.list()).await
    }

    async fn instance_types(
        &self,
        node_pool: &NodePoolRef,
    ) -> Result<Vec<InstanceType>, ProviderError> {
        self.measure("GetInstanceTypes", self.inner.instance_types(node_pool))
            .await
    }

    async fn is_drifted(
        &self,
        instance: &LaunchedInstance,
    ) -> Result<Option<DriftReason>, ProviderError> {
        self.measure("IsDrifted", self.inner.is_drifted(instance))
            .await
    }

    fn mark_unavailable(&self, offering: &OfferingKey) {
        self.inner.mark_unavailable(offering)
    }

    async fn find_launched(
        &self,
        claim: &NodeClaimRequest,
        launched_after_unix: i64,
    ) -> Result<Option<LaunchedInstance>, ProviderError> {
        self.measure(
            "FindLaunched",
            self.inner.find_launched(claim, launched_after_unix),
        )
        .await
    }
}

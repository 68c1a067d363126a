//! [`BatchingEc2`]: an [`Ec2Api`] that batches `CreateFleet`, `DescribeInstances` by ids and
//! `TerminateInstances` over another one, as Karpenter's `pkg/batcher` does.
//!
//! - `CreateFleet`: requests equal but for their target capacity become one request for the
//!   summed capacity; the launched instances are dealt out in arrival order, each caller
//!   getting as many as it asked for, and every caller sees the fleet's errors (a caller left
//!   short gets an insufficient-capacity error when the fleet reported none). A failed call
//!   fails every caller alike.
//! - `DescribeInstances` with [`InstanceQuery::Ids`]: one call for the union of the ids; each
//!   caller gets its own instances. When the merged call fails (one terminated id makes EC2
//!   answer `InvalidInstanceID.NotFound` for all) or misses some of a caller's ids, that caller
//!   is described on its own. Filter queries are not batched.
//! - `TerminateInstances`: one call for the union of the ids, each caller getting its own state
//!   changes, with the same per-caller retry.
//!
//! Every other method goes straight to the wrapped API.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::fleet::{FleetExecutor, fleet_key};
use super::instances::{DescribeExecutor, TerminateExecutor};
use super::{BatchError, BatchOptions, Batcher};
use crate::aws::ec2api::{
    CreateFleetRequest, Ec2Api, Ec2Error, FleetOutcome, Instance, InstanceQuery, InstanceTypeInfo,
    LaunchTemplateRequest, LaunchTemplateSummary, SpotPrice, TerminatedInstance,
};
use crate::aws::resolve::{Filter, Image, ImageQuery, SecurityGroup, Subnet};

/// The windows of the three batched calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchWindows {
    /// `CreateFleet`; `max_items` counts instances (target capacity).
    pub create_fleet: BatchOptions,
    /// `DescribeInstances` by ids; `max_items` counts ids.
    pub describe_instances: BatchOptions,
    /// `TerminateInstances`; `max_items` counts ids.
    pub terminate_instances: BatchOptions,
}

impl Default for BatchWindows {
    /// Karpenter's: `CreateFleet` idle 35 ms, max 1 s, 1000 instances; `DescribeInstances`
    /// and `TerminateInstances` idle 100 ms, max 1 s, 500 ids.
    fn default() -> Self {
        BatchWindows {
            create_fleet: BatchOptions {
                idle: Duration::from_millis(35),
                max_wait: Duration::from_secs(1),
                max_items: 1_000,
            },
            describe_instances: BatchOptions {
                idle: Duration::from_millis(100),
                max_wait: Duration::from_secs(1),
                max_items: 500,
            },
            terminate_instances: BatchOptions {
                idle: Duration::from_millis(100),
                max_wait: Duration::from_secs(1),
                max_items: 500,
            },
        }
    }
}

type FleetBatcher = Batcher<String, CreateFleetRequest, Result<FleetOutcome, Ec2Error>>;
type DescribeBatcher = Batcher<(), Vec<String>, Result<Vec<Instance>, Ec2Error>>;
type TerminateBatcher = Batcher<(), Vec<String>, Result<Vec<TerminatedInstance>, Ec2Error>>;

/// An [`Ec2Api`] that batches `CreateFleet`, `DescribeInstances` by ids and
/// `TerminateInstances` over `T` (see the [module docs](self)). Calls must be made within a
/// Tokio runtime.
pub struct BatchingEc2<T: ?Sized = dyn Ec2Api> {
    inner: Arc<T>,
    fleets: FleetBatcher,
    describes: DescribeBatcher,
    terminates: TerminateBatcher,
}

impl<T: Ec2Api + ?Sized + 'static> BatchingEc2<T> {
    /// Batches calls to `inner` with `windows`.
    pub fn new(inner: Arc<T>, windows: BatchWindows) -> Self {
        BatchingEc2 {
            fleets: Batcher::new(
                "create_fleet",
                windows.create_fleet,
                Arc::new(FleetExecutor {
                    api: Arc::clone(&inner),
                }),
            ),
            describes: Batcher::new(
                "describe_instances",
                windows.describe_instances,
                Arc::new(DescribeExecutor {
                    api: Arc::clone(&inner),
                }),
            ),
            terminates: Batcher::new(
                "terminate_instances",
                windows.terminate_instances,
                Arc::new(TerminateExecutor {
                    api: Arc::clone(&inner),
                }),
            ),
            inner,
        }
    }

    /// The wrapped API.
    pub fn inner(&self) -> &Arc<T> {
        &self.inner
    }
}

/// A batch that gave no answer, as the transport-level failure of `operation` (retryable).
fn batch_failed(operation: &str, err: BatchError) -> Ec2Error {
    Ec2Error::Transport {
        operation: operation.to_owned(),
        message: err.to_string(),
    }
}

#[async_trait]
impl<T: Ec2Api + ?Sized + 'static> Ec2Api for BatchingEc2<T> {
    async fn create_fleet(&self, request: &CreateFleetRequest) -> Result<FleetOutcome, Ec2Error> {
        // Nothing to add up: let EC2 judge a request for no capacity.
        let Ok(weight @ 1..) = usize::try_from(request.target_capacity) else {
            return self.inner.create_fleet(request).await;
        };
        self.fleets
            .add(fleet_key(request), request.clone(), weight)
            .await
            .unwrap_or_else(|e| Err(batch_failed("CreateFleet", e)))
    }

    async fn describe_subnets(&self, filters: &[Filter]) -> Result<Vec<Subnet>, Ec2Error> {
        self.inner.describe_subnets(filters).await
    }

    async fn describe_security_groups(
        &self,
        filters: &[Filter],
    ) -> Result<Vec<SecurityGroup>, Ec2Error> {
        self.inner.describe_security_groups(filters).await
    }

    async fn describe_images(
        &self,
        query: &ImageQuery,
        now_unix: i64,
    ) -> Result<Vec<Image>, Ec2Error> {
        self.inner.describe_images(query, now_unix).await
    }

    async fn describe_instance_types(&self) -> Result<Vec<InstanceTypeInfo>, Ec2Error> {
        self.inner.describe_instance_types().await
    }

    async fn describe_instance_type_offerings(&self) -> Result<Vec<(String, String)>, Ec2Error> {
        self.inner.describe_instance_type_offerings().await
    }

    async fn describe_spot_price_history(
        &self,
        start_unix: i64,
    ) -> Result<Vec<SpotPrice>, Ec2Error> {
        self.inner.describe_spot_price_history(start_unix).await
    }

    async fn describe_instances(&self, query: &InstanceQuery) -> Result<Vec<Instance>, Ec2Error> {
        match query {
            // Without ids the call describes by filters (or everything): not mergeable.
            InstanceQuery::Ids(ids) if !ids.is_empty() => self
                .describes
                .add((), ids.clone(), ids.len())
                .await
                .unwrap_or_else(|e| Err(batch_failed("DescribeInstances", e))),
            _ => self.inner.describe_instances(query).await,
        }
    }

    async fn terminate_instances(
        &self,
        instance_ids: &[String],
    ) -> Result<Vec<TerminatedInstance>, Ec2Error> {
        if instance_ids.is_empty() {
            return self.inner.terminate_instances(instance_ids).await;
        }
        self.terminates
            .add((), instance_ids.to_vec(), instance_ids.len())
            .await
            .unwrap_or_else(|e| Err(batch_failed("TerminateInstances", e)))
    }

    async fn create_launch_template(
        &self,
        request: &LaunchTemplateRequest,
    ) -> Result<String, Ec2Error> {
        self.inner.create_launch_template(request).await
    }

    async fn describe_launch_templates(
        &self,
        filters: &[Filter],
    ) -> Result<Vec<LaunchTemplateSummary>, Ec2Error> {
        self.inner.describe_launch_templates(filters).await
    }

    async fn delete_launch_template(&self, name: &str) -> Result<(), Ec2Error> {
        self.inner.delete_launch_template(name).await
    }

    async fn create_tags(
        &self,
        resource_ids: &[String],
        tags: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), Ec2Error> {
        self.inner.create_tags(resource_ids, tags).await
    }
}

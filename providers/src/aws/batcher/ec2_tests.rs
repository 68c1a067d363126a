//! Tests of [`BatchingEc2`]'s `CreateFleet` batching, over [`CountingEc2`] (the in-memory
//! [`FakeEc2`] plus a fleet that honours the target capacity, and call records).

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{BatchWindows, BatchingEc2, SHORTFALL_ERROR_CODE};
use crate::aws::cloud::fake_apis::FakeEc2;
use crate::aws::ec2api::{
    CapacityType, CreateFleetRequest, Ec2Api, Ec2Error, FleetError, FleetInstance,
    FleetLaunchTemplateConfig, FleetOutcome, FleetOverride, FleetOverrideRef, Instance,
    InstanceQuery, InstanceTypeInfo, LaunchTemplateRequest, LaunchTemplateSummary, SpotPrice,
    TerminatedInstance,
};
use crate::aws::resolve::{Filter, Image, ImageQuery, SecurityGroup, Subnet};

/// [`FakeEc2`] with a `CreateFleet` that launches up to the target capacity, and records.
#[derive(Default)]
pub(super) struct CountingEc2 {
    /// Answers everything but `CreateFleet`.
    pub fake: FakeEc2,
    /// Every `CreateFleet` request.
    pub fleet_requests: Mutex<Vec<CreateFleetRequest>>,
    /// Launch at most this many instances per fleet.
    pub fleet_limit: Mutex<Option<usize>>,
    /// Errors every fleet reports.
    pub fleet_errors: Mutex<Vec<FleetError>>,
    /// Fail every `CreateFleet` call with this.
    pub fleet_failure: Mutex<Option<Ec2Error>>,
    /// Ids of every `TerminateInstances` call.
    pub terminate_requests: Mutex<Vec<Vec<String>>>,
    /// Panic in `DescribeInstances`.
    pub panic_on_describe: AtomicBool,
}

impl CountingEc2 {
    /// The `DescribeInstances` queries so far.
    pub fn describe_queries(&self) -> Vec<InstanceQuery> {
        self.fake.with(|s| s.instance_queries.clone())
    }

    /// Adds running instances with these ids.
    pub fn seed(&self, ids: &[&str]) {
        self.fake.with(|s| {
            for id in ids {
                s.instances.insert((*id).to_owned(), instance(id));
            }
        });
    }
}

/// A running instance.
pub(super) fn instance(id: &str) -> Instance {
    Instance {
        id: id.to_owned(),
        instance_type: "m5.large".into(),
        zone: "us-east-1a".into(),
        capacity_type: CapacityType::OnDemand,
        image_id: "ami-1".into(),
        state: "running".into(),
        launch_time_unix: 1_700_000_000,
        subnet_id: Some("subnet-a".into()),
        security_group_ids: vec![],
        private_dns_name: None,
        tags: Default::default(),
    }
}

/// `BatchingEc2` over a fresh [`CountingEc2`] with Karpenter's windows, or with `max_items`
/// for describe and terminate when given.
pub(super) fn batching(
    max_ids: Option<usize>,
) -> (Arc<CountingEc2>, Arc<BatchingEc2<CountingEc2>>) {
    let api = Arc::new(CountingEc2::default());
    let mut windows = BatchWindows::default();
    if let Some(max) = max_ids {
        windows.describe_instances.max_items = max;
        windows.terminate_instances.max_items = max;
    }
    (api.clone(), Arc::new(BatchingEc2::new(api, windows)))
}

/// Runs `call` on `ec2` once per input, concurrently, each in its own task started in input
/// order, and returns the answers in input order.
pub(super) async fn concurrently<I, R, F, Fut>(
    ec2: &Arc<BatchingEc2<CountingEc2>>,
    inputs: Vec<I>,
    call: F,
) -> Vec<R>
where
    I: Send + 'static,
    R: Send + 'static,
    F: Fn(Arc<BatchingEc2<CountingEc2>>, I) -> Fut,
    Fut: Future<Output = R> + Send + 'static,
{
    let handles: Vec<_> = inputs
        .into_iter()
        .map(|input| tokio::spawn(call(ec2.clone(), input)))
        .collect();
    let mut answers = Vec::new();
    for h in handles {
        answers.push(h.await.expect("caller task"));
    }
    answers
}

#[async_trait]
impl Ec2Api for CountingEc2 {
    async fn create_fleet(&self, request: &CreateFleetRequest) -> Result<FleetOutcome, Ec2Error> {
        let call = {
            let mut requests = self.fleet_requests.lock().unwrap();
            requests.push(request.clone());
            requests.len()
        };
        if let Some(e) = self.fleet_failure.lock().unwrap().clone() {
            return Err(e);
        }
        let wanted = usize::try_from(request.target_capacity).unwrap_or(0);
        let n = self
            .fleet_limit
            .lock()
            .unwrap()
            .map_or(wanted, |l| l.min(wanted));
        let ids: Vec<String> = (0..n).map(|k| format!("i-{call}-{k}")).collect();
        // Two entries (as for two overrides), so splitting multi-id entries is exercised.
        let (a, b) = ids.split_at(n / 2);
        let instances = [a, b]
            .into_iter()
            .filter(|ids| !ids.is_empty())
            .map(|ids| FleetInstance {
                instance_ids: ids.to_vec(),
                instance_type: Some("m5.large".into()),
                availability_zone: Some("us-east-1a".into()),
                capacity_type: Some(request.capacity_type),
                source: FleetOverrideRef::default(),
            })
            .collect();
        Ok(FleetOutcome {
            fleet_id: Some(format!("fleet-{call}")),
            instances,
            errors: self.fleet_errors.lock().unwrap().clone(),
        })
    }

    async fn describe_subnets(&self, filters: &[Filter]) -> Result<Vec<Subnet>, Ec2Error> {
        self.fake.describe_subnets(filters).await
    }

    async fn describe_security_groups(
        &self,
        filters: &[Filter],
    ) -> Result<Vec<SecurityGroup>, Ec2Error> {
        self.fake.describe_security_groups(filters).await
    }

    async fn describe_images(&self, query: &ImageQuery, now: i64) -> Result<Vec<Image>, Ec2Error> {
        self.fake.describe_images(query, now).await
    }

    async fn describe_instance_types(&self) -> Result<Vec<InstanceTypeInfo>, Ec2Error> {
        self.fake.describe_instance_types().await
    }

    async fn describe_instance_type_offerings(&self) -> Result<Vec<(String, String)>, Ec2Error> {
        self.fake.describe_instance_type_offerings().await
    }

    async fn describe_spot_price_history(&self, start: i64) -> Result<Vec<SpotPrice>, Ec2Error> {
        self.fake.describe_spot_price_history(start).await
    }

    async fn describe_instances(&self, query: &InstanceQuery) -> Result<Vec<Instance>, Ec2Error> {
        assert!(
            !self.panic_on_describe.load(Ordering::SeqCst),
            "DescribeInstances panics on request"
        );
        self.fake.describe_instances(query).await
    }

    async fn terminate_instances(
        &self,
        ids: &[String],
    ) -> Result<Vec<TerminatedInstance>, Ec2Error> {
        self.terminate_requests.lock().unwrap().push(ids.to_vec());
        self.fake.terminate_instances(ids).await
    }

    async fn create_launch_template(&self, r: &LaunchTemplateRequest) -> Result<String, Ec2Error> {
        self.fake.create_launch_template(r).await
    }

    async fn describe_launch_templates(
        &self,
        filters: &[Filter],
    ) -> Result<Vec<LaunchTemplateSummary>, Ec2Error> {
        self.fake.describe_launch_templates(filters).await
    }

    async fn delete_launch_template(&self, name: &str) -> Result<(), Ec2Error> {
        self.fake.delete_launch_template(name).await
    }

    async fn create_tags(
        &self,
        ids: &[String],
        tags: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), Ec2Error> {
        self.fake.create_tags(ids, tags).await
    }
}

fn fleet_request(capacity_type: CapacityType, target_capacity: i32) -> CreateFleetRequest {
    CreateFleetRequest {
        capacity_type,
        target_capacity,
        launch_template_configs: vec![FleetLaunchTemplateConfig {
            launch_template_name: "karpenter.k8s.aws/1".into(),
            version: "$Latest".into(),
            overrides: vec![FleetOverride {
                instance_type: "m5.large".into(),
                subnet_id: "subnet-a".into(),
                availability_zone: "us-east-1a".into(),
                priority: Some(1.0),
            }],
        }],
        spot_allocation_strategy: "price-capacity-optimized".into(),
        on_demand_allocation_strategy: "lowest-price".into(),
        tag_specifications: vec![],
        context: None,
    }
}

async fn launch_all(
    ec2: &Arc<BatchingEc2<CountingEc2>>,
    requests: Vec<CreateFleetRequest>,
) -> Vec<Result<FleetOutcome, Ec2Error>> {
    concurrently(
        ec2,
        requests,
        |ec2, r| async move { ec2.create_fleet(&r).await },
    )
    .await
}

fn ids_of(outcome: &FleetOutcome) -> Vec<String> {
    outcome
        .instances
        .iter()
        .flat_map(|i| i.instance_ids.clone())
        .collect()
}

fn ice(instance_type: &str) -> FleetError {
    FleetError {
        code: "InsufficientInstanceCapacity".into(),
        message: "no capacity".into(),
        capacity_type: Some(CapacityType::OnDemand),
        source: FleetOverrideRef {
            instance_type: Some(instance_type.into()),
            ..Default::default()
        },
    }
}

#[tokio::test(start_paused = true)]
async fn identical_fleet_requests_merge_into_one_call_and_each_caller_gets_one_instance() {
    let (api, ec2) = batching(None);
    let start = Instant::now();
    let request = fleet_request(CapacityType::Spot, 1);
    let outcomes = launch_all(&ec2, vec![request.clone(); 5]).await;

    // One call, after the 35 ms idle window, for the summed capacity and otherwise unchanged.
    assert_eq!(start.elapsed(), Duration::from_millis(35));
    let sent = api.fleet_requests.lock().unwrap().clone();
    assert_eq!(
        sent,
        vec![CreateFleetRequest {
            target_capacity: 5,
            ..request
        }]
    );
    let mut all_ids = HashSet::new();
    for outcome in outcomes {
        let outcome = outcome.unwrap();
        let ids = ids_of(&outcome);
        assert_eq!(ids.len(), 1, "{outcome:?}");
        assert_eq!(outcome.instances.len(), 1);
        assert_eq!(outcome.fleet_id.as_deref(), Some("fleet-1"));
        assert!(outcome.errors.is_empty());
        all_ids.insert(ids[0].clone());
    }
    assert_eq!(all_ids.len(), 5, "every caller got a different instance");
}

#[tokio::test(start_paused = true)]
async fn different_fleet_requests_go_out_separately_and_capacities_add_up() {
    let (api, ec2) = batching(None);
    let spot = fleet_request(CapacityType::Spot, 1);
    let on_demand = fleet_request(CapacityType::OnDemand, 1);
    let spot_two = fleet_request(CapacityType::Spot, 2);
    let outcomes = launch_all(&ec2, vec![spot.clone(), on_demand.clone(), spot_two]).await;

    let mut sent: Vec<(CapacityType, i32)> = api
        .fleet_requests
        .lock()
        .unwrap()
        .iter()
        .map(|r| (r.capacity_type, r.target_capacity))
        .collect();
    sent.sort();
    assert_eq!(
        sent,
        vec![(CapacityType::Spot, 3), (CapacityType::OnDemand, 1)]
    );
    let counts: Vec<usize> = outcomes
        .iter()
        .map(|o| ids_of(o.as_ref().unwrap()).len())
        .collect();
    assert_eq!(counts, vec![1, 1, 2]);
    let spot_fleet = outcomes[0].as_ref().unwrap().fleet_id.clone();
    assert_eq!(outcomes[2].as_ref().unwrap().fleet_id, spot_fleet);
    assert_ne!(outcomes[1].as_ref().unwrap().fleet_id, spot_fleet);
}

#[tokio::test(start_paused = true)]
async fn partial_fulfilment_gives_the_callers_left_without_an_instance_the_fleet_errors() {
    let (api, ec2) = batching(None);
    *api.fleet_limit.lock().unwrap() = Some(2);
    *api.fleet_errors.lock().unwrap() = vec![ice("m5.large")];
    let outcomes = launch_all(&ec2, vec![fleet_request(CapacityType::OnDemand, 1); 4]).await;

    assert_eq!(api.fleet_requests.lock().unwrap().len(), 1);
    let outcomes: Vec<FleetOutcome> = outcomes.into_iter().map(Result::unwrap).collect();
    let launched = outcomes.iter().filter(|o| !o.instances.is_empty()).count();
    assert_eq!(launched, 2);
    for outcome in &outcomes {
        // Fleet errors reach every caller, as in Karpenter.
        assert_eq!(outcome.errors, vec![ice("m5.large")]);
    }
}

#[tokio::test(start_paused = true)]
async fn a_short_fleet_without_errors_gives_the_unlucky_callers_an_insufficient_capacity_error() {
    let (api, ec2) = batching(None);
    *api.fleet_limit.lock().unwrap() = Some(1);
    let outcomes = launch_all(&ec2, vec![fleet_request(CapacityType::Spot, 1); 3]).await;

    let outcomes: Vec<FleetOutcome> = outcomes.into_iter().map(Result::unwrap).collect();
    let (lucky, unlucky): (Vec<_>, Vec<_>) = outcomes.iter().partition(|o| !o.instances.is_empty());
    assert_eq!(lucky.len(), 1);
    assert!(lucky[0].errors.is_empty());
    assert_eq!(unlucky.len(), 2);
    for outcome in unlucky {
        let codes: Vec<&str> = outcome.errors.iter().map(|e| e.code.as_str()).collect();
        assert_eq!(codes, vec![SHORTFALL_ERROR_CODE]);
        assert!(crate::aws::fleet::is_ice_code(SHORTFALL_ERROR_CODE));
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_fleet_call_fails_every_caller_alike() {
    let (api, ec2) = batching(None);
    let throttled = Ec2Error::Throttled {
        operation: "CreateFleet".into(),
        code: "RequestLimitExceeded".into(),
        message: "slow down".into(),
    };
    *api.fleet_failure.lock().unwrap() = Some(throttled.clone());
    let outcomes = launch_all(&ec2, vec![fleet_request(CapacityType::Spot, 1); 3]).await;
    assert_eq!(api.fleet_requests.lock().unwrap().len(), 1);
    assert_eq!(outcomes, vec![Err(throttled); 3]);
}

#[tokio::test(start_paused = true)]
async fn a_withdrawn_fleet_caller_launches_nothing() {
    let (api, ec2) = batching(None);
    let request = fleet_request(CapacityType::Spot, 1);
    let callers: Vec<_> = (0..3)
        .map(|_| {
            let (ec2, request) = (ec2.clone(), request.clone());
            tokio::spawn(async move { ec2.create_fleet(&request).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1)).await;
    callers[0].abort();
    for caller in callers.into_iter().skip(1) {
        assert_eq!(ids_of(&caller.await.unwrap().unwrap()).len(), 1);
    }
    let sent = api.fleet_requests.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].target_capacity, 2);
}

#[tokio::test(start_paused = true)]
async fn a_fleet_request_for_no_capacity_goes_straight_through() {
    let (api, ec2) = batching(None);
    let start = Instant::now();
    let outcome = ec2
        .create_fleet(&fleet_request(CapacityType::Spot, 0))
        .await
        .unwrap();
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert!(outcome.instances.is_empty());
    assert_eq!(api.fleet_requests.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn other_calls_go_straight_to_the_wrapped_api() {
    let (api, ec2) = batching(None);
    let start = Instant::now();
    ec2.describe_subnets(&[]).await.unwrap();
    ec2.describe_instance_types().await.unwrap();
    ec2.delete_launch_template("missing").await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(
        api.fake.with(|s| s.calls.clone()),
        vec![
            "DescribeSubnets",
            "DescribeInstanceTypes",
            "DeleteLaunchTemplate"
        ]
    );
}

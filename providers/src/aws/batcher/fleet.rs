//! Merging `CreateFleet` requests and splitting the launched instances among their callers.

use std::sync::Arc;

use async_trait::async_trait;

use super::BatchExecutor;
use crate::aws::ec2api::{CreateFleetRequest, Ec2Api, Ec2Error, FleetError, FleetOutcome};

/// Code of the error a caller gets when the merged fleet launched fewer instances than the
/// batch asked for and EC2 said nothing about why. It is one of the insufficient-capacity
/// codes (see [`crate::aws::fleet::ICE_ERROR_CODES`]), so the caller retries like after an
/// ICE; it names no offering, so none is marked unavailable.
pub const SHORTFALL_ERROR_CODE: &str = "UnfulfillableCapacity";

/// The batching key of a fleet request: everything but the target capacity.
///
/// Requests carry `f64` priorities, so they are neither `Eq` nor `Hash`; their `Debug` form is
/// a complete and deterministic rendering (tags are `BTreeMap`s), so equal keys mean requests
/// that differ at most in capacity.
pub(super) fn fleet_key(request: &CreateFleetRequest) -> String {
    let mut normalized = request.clone();
    normalized.target_capacity = 0;
    format!("{normalized:?}")
}

/// Runs a batch of fleet requests that differ only in target capacity as one request for the
/// summed capacity.
pub(super) struct FleetExecutor<T: ?Sized> {
    pub(super) api: Arc<T>,
}

#[async_trait]
impl<T> BatchExecutor<CreateFleetRequest, Result<FleetOutcome, Ec2Error>> for FleetExecutor<T>
where
    T: Ec2Api + ?Sized + 'static,
{
    async fn execute(
        &self,
        inputs: Vec<CreateFleetRequest>,
    ) -> Vec<Result<FleetOutcome, Ec2Error>> {
        let Some(first) = inputs.first() else {
            return Vec::new();
        };
        // A lone request goes out unchanged: nothing to merge or split.
        if inputs.len() == 1 {
            return vec![self.api.create_fleet(first).await];
        }
        let wants: Vec<i32> = inputs.iter().map(|r| r.target_capacity).collect();
        let Some(total) = wants.iter().try_fold(0i32, |sum, w| sum.checked_add(*w)) else {
            let err = Ec2Error::Transport {
                operation: "CreateFleet".to_owned(),
                message: "batched target capacity overflows".to_owned(),
            };
            return vec![Err(err); inputs.len()];
        };
        let mut request = first.clone();
        request.target_capacity = total;
        match self.api.create_fleet(&request).await {
            Ok(outcome) => split_outcome(outcome, &wants, &request)
                .into_iter()
                .map(Ok)
                .collect(),
            // The call failed as a whole: every caller shares its error.
            Err(e) => vec![Err(e); inputs.len()],
        }
    }
}

/// Splits a merged fleet's answer: caller `k` gets the next `wants[k]` launched instances (one
/// id per entry), every caller gets the fleet id and the fleet's errors, and a caller left
/// short also gets a [`SHORTFALL_ERROR_CODE`] error when the fleet reported none.
pub(super) fn split_outcome(
    outcome: FleetOutcome,
    wants: &[i32],
    request: &CreateFleetRequest,
) -> Vec<FleetOutcome> {
    let launched_total: usize = outcome.instances.iter().map(|i| i.instance_ids.len()).sum();
    let asked_total: i64 = wants.iter().map(|w| i64::from(*w)).sum();
    let shortfall = FleetError {
        code: SHORTFALL_ERROR_CODE.to_owned(),
        message: format!(
            "CreateFleet launched {launched_total} of the {asked_total} instances requested \
             by the batch"
        ),
        capacity_type: Some(request.capacity_type),
        source: Default::default(),
    };
    // One entry per id, so instances can be dealt out one by one.
    let mut singles = outcome.instances.into_iter().flat_map(|entry| {
        let ids = entry.instance_ids.clone();
        ids.into_iter().map(move |id| {
            let mut single = entry.clone();
            single.instance_ids = vec![id];
            single
        })
    });
    let mut split = Vec::with_capacity(wants.len());
    for want in wants {
        let want = usize::try_from(*want).unwrap_or(0);
        let instances: Vec<_> = singles.by_ref().take(want).collect();
        let mut errors = outcome.errors.clone();
        if instances.len() < want && errors.is_empty() {
            errors.push(shortfall.clone());
        }
        split.push(FleetOutcome {
            fleet_id: outcome.fleet_id.clone(),
            instances,
            errors,
        });
    }
    let extra: Vec<String> = singles.flat_map(|i| i.instance_ids).collect();
    if !extra.is_empty() {
        // Nobody asked for these; garbage collection of unowned instances reaps them.
        tracing::warn!(
            fleet_id = ?outcome.fleet_id,
            instance_ids = ?extra,
            "CreateFleet launched more instances than the batch requested"
        );
    }
    split
}

//! The pure decision of the NodePool status controller: read and validate a NodePool body and
//! turn the result into its `ValidationSucceeded` and `Ready` conditions.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use karpenter_core::api::nodepool::CONDITION_VALIDATION_SUCCEEDED;
use karpenter_core::api::validate_node_pool;
use kube_client::api::DynamicObject;

use crate::controllers::conditions::fill_empty_messages;
use crate::model::objects::read_node_pool;

/// The roll-up condition (`kubectl get nodepools` shows it).
pub const READY: &str = "Ready";

/// Reason of both conditions, and of the Warning event, when the pool is not valid.
pub const VALIDATION_FAILED: &str = "ValidationFailed";

/// The condition types this controller writes; any other condition on the pool is kept as is.
pub const OWNED: [&str; 2] = [CONDITION_VALIDATION_SUCCEEDED, READY];

/// What the controller decided for one NodePool.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolStatus {
    /// Every problem found, each naming the field where it can; empty when the pool is valid.
    pub problems: Vec<String>,
    /// The whole `status.conditions` list to store: the pool's other conditions kept, the
    /// [`OWNED`] ones set.
    pub conditions: Vec<Condition>,
    /// True when `conditions` differs from what is stored (a status write is due).
    pub changed: bool,
}

impl PoolStatus {
    /// The problems as one sentence, for the condition message, the event and the log.
    pub fn message(&self) -> String {
        self.problems.join("; ")
    }
}

/// Decides the status of the NodePool `obj` at time `now`. A body that does not read (as
/// [`read_node_pool`] reports) or a pool that fails [`validate_node_pool`] gets
/// `ValidationSucceeded=False` and `Ready=False` with every problem in the message; a valid
/// pool gets both `True`. A condition whose status did not change keeps its
/// `lastTransitionTime`, so a resync is not a flap.
pub fn decide(obj: &DynamicObject, now: Timestamp) -> PoolStatus {
    let problems = match read_node_pool(obj) {
        Err(e) => vec![e.message],
        Ok(view) => match validate_node_pool(&view.node_pool) {
            Ok(()) => Vec::new(),
            Err(errs) => errs
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect(),
        },
    };
    let generation = obj.metadata.generation;
    let (status, validation_reason, ready_reason) = if problems.is_empty() {
        ("True", CONDITION_VALIDATION_SUCCEEDED, READY)
    } else {
        ("False", VALIDATION_FAILED, VALIDATION_FAILED)
    };
    let condition = |type_: &str, reason: &str| Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message: problems.join("; "),
        last_transition_time: Time(now),
        observed_generation: generation,
    };
    let mut desired = vec![
        condition(CONDITION_VALIDATION_SUCCEEDED, validation_reason),
        condition(READY, ready_reason),
    ];
    // The v1.20 API server rejects an empty message (see `fill_empty_messages`).
    fill_empty_messages(&mut desired);

    let stored = stored_conditions(obj);
    let mut conditions = stored.clone().unwrap_or_default();
    for mut want in desired {
        match conditions.iter_mut().find(|c| c.type_ == want.type_) {
            Some(have) => {
                if have.status == want.status {
                    want.last_transition_time = have.last_transition_time.clone();
                }
                *have = want;
            }
            None => conditions.push(want),
        }
    }
    let changed = stored.as_ref() != Some(&conditions);
    PoolStatus {
        problems,
        conditions,
        changed,
    }
}

/// `status.conditions` as stored; `None` when there are none or they do not decode (then the
/// controller writes its own and drops the unreadable list).
fn stored_conditions(obj: &DynamicObject) -> Option<Vec<Condition>> {
    let value = obj.data.get("status")?.get("conditions")?;
    serde_json::from_value(value.clone()).ok()
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;

//! Merging `DescribeInstances` (by ids) and `TerminateInstances` calls, with Karpenter's
//! per-caller fallback when the merged call fails or leaves a caller's ids out.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;

use super::BatchExecutor;
use crate::aws::ec2api::{Ec2Api, Ec2Error, Instance, InstanceQuery, TerminatedInstance};

/// Every id of every caller, once, in first-seen order.
fn union(inputs: &[Vec<String>]) -> Vec<String> {
    let mut seen = HashSet::new();
    inputs
        .iter()
        .flatten()
        .filter(|id| seen.insert(id.as_str()))
        .cloned()
        .collect()
}

fn instance_id(i: &Instance) -> &str {
    &i.id
}

fn terminated_id(t: &TerminatedInstance) -> &str {
    &t.id
}

/// Answers each caller from the merged call's `items` (those whose id it asked for), or, when
/// the merged call failed or did not cover all of a caller's ids, with a call of its own: one
/// missing or bad id then fails only the caller that asked for it.
async fn answer_each<R, F, Fut>(
    operation: &'static str,
    inputs: Vec<Vec<String>>,
    merged: Result<Vec<R>, Ec2Error>,
    id_of: fn(&R) -> &str,
    alone: F,
) -> Vec<Result<Vec<R>, Ec2Error>>
where
    R: Clone + Send + 'static,
    F: Fn(Vec<String>) -> Fut,
    Fut: Future<Output = Result<Vec<R>, Ec2Error>> + Send + 'static,
{
    let merged = match merged {
        Ok(items) => Some(items),
        Err(e) => {
            tracing::debug!(operation, error = %e, "batched call failed; retrying per caller");
            None
        }
    };
    let mut answers: Vec<Option<Result<Vec<R>, Ec2Error>>> = Vec::with_capacity(inputs.len());
    let mut retries = Vec::new();
    for (k, ids) in inputs.into_iter().enumerate() {
        let mine = merged.as_ref().and_then(|items| {
            let mine: Vec<R> = items
                .iter()
                .filter(|r| ids.iter().any(|id| id == id_of(r)))
                .cloned()
                .collect();
            let covered = ids.iter().all(|id| mine.iter().any(|r| id_of(r) == id));
            covered.then_some(mine)
        });
        match mine {
            Some(mine) => answers.push(Some(Ok(mine))),
            None => {
                answers.push(None);
                // Spawned so the retries run concurrently and a panic in one stays in it.
                retries.push((k, tokio::spawn(alone(ids))));
            }
        }
    }
    for (k, retry) in retries {
        let answer = retry.await.unwrap_or_else(|e| {
            Err(Ec2Error::Transport {
                operation: operation.to_owned(),
                message: format!("per-caller retry did not finish: {e}"),
            })
        });
        answers[k] = Some(answer);
    }
    answers
        .into_iter()
        .map(|a| {
            a.unwrap_or_else(|| {
                Err(Ec2Error::Transport {
                    operation: operation.to_owned(),
                    message: "no answer for this caller".to_owned(),
                })
            })
        })
        .collect()
}

/// Runs a batch of `DescribeInstances` by ids as one call for the union of the ids.
pub(super) struct DescribeExecutor<T: ?Sized> {
    pub(super) api: Arc<T>,
}

#[async_trait]
impl<T> BatchExecutor<Vec<String>, Result<Vec<Instance>, Ec2Error>> for DescribeExecutor<T>
where
    T: Ec2Api + ?Sized + 'static,
{
    async fn execute(&self, inputs: Vec<Vec<String>>) -> Vec<Result<Vec<Instance>, Ec2Error>> {
        if let [ids] = inputs.as_slice() {
            // A lone caller gets exactly what its own call would answer.
            return vec![
                self.api
                    .describe_instances(&InstanceQuery::Ids(ids.clone()))
                    .await,
            ];
        }
        let merged = self
            .api
            .describe_instances(&InstanceQuery::Ids(union(&inputs)))
            .await;
        let api = Arc::clone(&self.api);
        answer_each(
            "DescribeInstances",
            inputs,
            merged,
            instance_id,
            move |ids| {
                let api = Arc::clone(&api);
                async move { api.describe_instances(&InstanceQuery::Ids(ids)).await }
            },
        )
        .await
    }
}

/// Runs a batch of `TerminateInstances` as one call for the union of the ids.
pub(super) struct TerminateExecutor<T: ?Sized> {
    pub(super) api: Arc<T>,
}

#[async_trait]
impl<T> BatchExecutor<Vec<String>, Result<Vec<TerminatedInstance>, Ec2Error>>
    for TerminateExecutor<T>
where
    T: Ec2Api + ?Sized + 'static,
{
    async fn execute(
        &self,
        inputs: Vec<Vec<String>>,
    ) -> Vec<Result<Vec<TerminatedInstance>, Ec2Error>> {
        if let [ids] = inputs.as_slice() {
            return vec![self.api.terminate_instances(ids).await];
        }
        let merged = self.api.terminate_instances(&union(&inputs)).await;
        let api = Arc::clone(&self.api);
        answer_each(
            "TerminateInstances",
            inputs,
            merged,
            terminated_id,
            move |ids| {
                let api = Arc::clone(&api);
                async move { api.terminate_instances(&ids).await }
            },
        )
        .await
    }
}

//! Batching of EC2 calls, as Karpenter's `pkg/batcher` does it.
//!
//! [`Batcher`] is the generic part: callers [`add`](Batcher::add) an input under a key; inputs
//! with equal keys wait together in a bucket until no input has arrived for the idle window,
//! the bucket has been open for the max window, or the bucket holds `max_items` worth of
//! inputs. The bucket is then handed to a [`BatchExecutor`], which makes one call for all of
//! them and answers each caller with its own slice of the result.
//!
//! [`BatchingEc2`] wraps an [`Ec2Api`](super::ec2api::Ec2Api) and batches `CreateFleet`,
//! `DescribeInstances` by ids and `TerminateInstances` with it (see [`ec2`] for how each call
//! is merged and split).
//!
//! No task runs between batches: the first input of a bucket spawns the task that watches its
//! windows and runs it, so a batcher can be built outside a runtime and costs nothing idle.

pub mod ec2;
mod fleet;
mod instances;

pub use ec2::{BatchWindows, BatchingEc2};
pub use fleet::SHORTFALL_ERROR_CODE;

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// When a bucket of waiting inputs is run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchOptions {
    /// Run the bucket once no input has joined it for this long.
    pub idle: Duration,
    /// Run the bucket at the latest this long after its first input, however busy it is.
    pub max_wait: Duration,
    /// Run the bucket as soon as the weights of its inputs add up to this; an input that would
    /// take a bucket past it starts a new bucket instead (so a batch only exceeds it when a
    /// single input does). At least 1.
    pub max_items: usize,
}

/// Why a caller of [`Batcher::add`] got no answer from the batch call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The executor panicked while running the batch.
    #[error("{batcher} batch call panicked")]
    Panicked {
        /// Name of the batcher.
        batcher: &'static str,
    },
    /// The executor returned fewer answers than the batch had inputs.
    #[error("{batcher} batch call returned no answer for this input")]
    Unanswered {
        /// Name of the batcher.
        batcher: &'static str,
    },
    /// The batch was dropped before it answered (the runtime is shutting down).
    #[error("{batcher} batch was cancelled before it answered")]
    Cancelled {
        /// Name of the batcher.
        batcher: &'static str,
    },
}

/// Runs one batch: one answer per input, in input order.
#[async_trait]
pub trait BatchExecutor<I, O>: Send + Sync {
    /// Makes the batched call for `inputs` and splits its result. Answers missing at the end
    /// of the returned vector become [`BatchError::Unanswered`] for their callers.
    async fn execute(&self, inputs: Vec<I>) -> Vec<O>;
}

/// One waiting caller.
struct Waiter<I, O> {
    input: I,
    reply: oneshot::Sender<Result<O, BatchError>>,
}

/// The inputs waiting under one key.
struct Bucket<I, O> {
    /// Tells this bucket from a later one under the same key, so a watcher whose bucket was
    /// already run (because it filled up) leaves the next one alone.
    id: u64,
    waiters: Vec<Waiter<I, O>>,
    weight: usize,
    opened: Instant,
    last_join: Instant,
}

struct Buckets<K, I, O> {
    next_id: u64,
    by_key: HashMap<K, Bucket<I, O>>,
}

struct Shared<K, I, O> {
    name: &'static str,
    options: BatchOptions,
    executor: Arc<dyn BatchExecutor<I, O>>,
    buckets: Mutex<Buckets<K, I, O>>,
}

impl<K, I, O> Shared<K, I, O> {
    /// The buckets; a panic elsewhere cannot leave them half-updated (every critical section
    /// only moves whole values), so a poisoned lock is still usable.
    fn buckets(&self) -> MutexGuard<'_, Buckets<K, I, O>> {
        self.buckets.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Groups inputs with equal keys into one executor call. Cheap to clone (shared state).
pub struct Batcher<K, I, O> {
    shared: Arc<Shared<K, I, O>>,
}

impl<K, I, O> Clone for Batcher<K, I, O> {
    fn clone(&self) -> Self {
        Batcher {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K, I, O> Batcher<K, I, O>
where
    K: Hash + Eq + Clone + Send + 'static,
    I: Send + 'static,
    O: Send + 'static,
{
    /// A batcher called `name` (used in errors) running its batches with `executor`.
    pub fn new(
        name: &'static str,
        options: BatchOptions,
        executor: Arc<dyn BatchExecutor<I, O>>,
    ) -> Self {
        let options = BatchOptions {
            max_items: options.max_items.max(1),
            ..options
        };
        Batcher {
            shared: Arc::new(Shared {
                name,
                options,
                executor,
                buckets: Mutex::new(Buckets {
                    next_id: 0,
                    by_key: HashMap::new(),
                }),
            }),
        }
    }

    /// The batcher's name.
    pub fn name(&self) -> &'static str {
        self.shared.name
    }

    /// Adds `input` (counting `weight` towards `max_items`) to the bucket of `key` and waits
    /// for its answer. Must be called within a Tokio runtime. Dropping the future withdraws
    /// the input if its batch has not started yet.
    pub async fn add(&self, key: K, input: I, weight: usize) -> Result<O, BatchError> {
        let (reply, answer) = oneshot::channel();
        let mut full = Vec::new();
        let mut watch = None;
        {
            let mut buckets = self.shared.buckets();
            let max = self.shared.options.max_items;
            // An input that does not fit closes the bucket it would overflow.
            if buckets
                .by_key
                .get(&key)
                .is_some_and(|b| b.weight + weight > max)
                && let Some(b) = buckets.by_key.remove(&key)
            {
                full.push(b.waiters);
            }
            let now = Instant::now();
            let next_id = buckets.next_id;
            let bucket = buckets.by_key.entry(key.clone()).or_insert_with(|| {
                watch = Some(next_id);
                Bucket {
                    id: next_id,
                    waiters: Vec::new(),
                    weight: 0,
                    opened: now,
                    last_join: now,
                }
            });
            bucket.waiters.push(Waiter { input, reply });
            bucket.weight += weight;
            bucket.last_join = now;
            let filled = bucket.weight >= max;
            if watch.is_some() {
                buckets.next_id += 1;
            }
            if filled && let Some(b) = buckets.by_key.remove(&key) {
                full.push(b.waiters);
                watch = None;
            }
        }
        for waiters in full {
            tokio::spawn(run(self.shared.name, self.shared.executor.clone(), waiters));
        }
        if let Some(id) = watch {
            tokio::spawn(watch_bucket(self.shared.clone(), key, id));
        }
        answer.await.unwrap_or(Err(BatchError::Cancelled {
            batcher: self.shared.name,
        }))
    }
}

/// Waits out the windows of bucket `id` under `key` and runs it, unless it was run (full)
/// before.
async fn watch_bucket<K, I, O>(shared: Arc<Shared<K, I, O>>, key: K, id: u64)
where
    K: Hash + Eq + Send + 'static,
    I: Send + 'static,
    O: Send + 'static,
{
    let waiters = loop {
        let deadline = {
            let mut buckets = shared.buckets();
            let Some(bucket) = buckets.by_key.get(&key).filter(|b| b.id == id) else {
                return;
            };
            // Every join pushes the idle deadline out; the max deadline never moves.
            let deadline = (bucket.last_join + shared.options.idle)
                .min(bucket.opened + shared.options.max_wait);
            if Instant::now() >= deadline {
                match buckets.by_key.remove(&key) {
                    Some(bucket) => break bucket.waiters,
                    None => return,
                }
            }
            deadline
        };
        tokio::time::sleep_until(deadline).await;
    };
    run(shared.name, shared.executor.clone(), waiters).await;
}

/// Runs one batch and answers its callers.
async fn run<I, O>(
    name: &'static str,
    executor: Arc<dyn BatchExecutor<I, O>>,
    waiters: Vec<Waiter<I, O>>,
) where
    I: Send + 'static,
    O: Send + 'static,
{
    // A caller that gave up is left out: nobody would receive what is made for it (for
    // CreateFleet, an instance nobody tracks).
    let (inputs, replies): (Vec<I>, Vec<_>) = waiters
        .into_iter()
        .filter(|w| !w.reply.is_closed())
        .map(|w| (w.input, w.reply))
        .unzip();
    if inputs.is_empty() {
        return;
    }
    // The executor runs in its own task so that a panic in it is caught here and reported to
    // every caller instead of leaving them waiting.
    let call = tokio::spawn(async move { executor.execute(inputs).await });
    match call.await {
        Ok(outputs) => {
            let mut outputs = outputs.into_iter();
            for reply in replies {
                let answer = outputs
                    .next()
                    .ok_or(BatchError::Unanswered { batcher: name });
                // The caller may have gone meanwhile; its answer is dropped.
                let _ = reply.send(answer);
            }
        }
        Err(e) => {
            let err = if e.is_panic() {
                BatchError::Panicked { batcher: name }
            } else {
                BatchError::Cancelled { batcher: name }
            };
            for reply in replies {
                let _ = reply.send(Err(err.clone()));
            }
        }
    }
}

#[cfg(test)]
mod ec2_tests;
#[cfg(test)]
mod ec2_tests_instances;
#[cfg(test)]
mod tests;

//! Tests of the generic [`Batcher`]: windows, keys, sizes, withdrawn callers and failing
//! executors. Time is paused, so every window is exact and no test waits for real.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{BatchError, BatchExecutor, BatchOptions, Batcher};

/// An input that makes [`Recorder`] panic.
const PANIC: u32 = 999;

/// Answers `input * 10` and records each batch with the time it ran.
struct Recorder {
    start: Instant,
    batches: Mutex<Vec<(Duration, Vec<u32>)>>,
    /// Answer only this many inputs per batch.
    answer_at_most: usize,
}

impl Recorder {
    fn new() -> Arc<Self> {
        Arc::new(Recorder {
            start: Instant::now(),
            batches: Mutex::new(Vec::new()),
            answer_at_most: usize::MAX,
        })
    }

    fn batches(&self) -> Vec<(Duration, Vec<u32>)> {
        self.batches.lock().unwrap().clone()
    }
}

#[async_trait]
impl BatchExecutor<u32, u32> for Recorder {
    async fn execute(&self, inputs: Vec<u32>) -> Vec<u32> {
        self.batches
            .lock()
            .unwrap()
            .push((self.start.elapsed(), inputs.clone()));
        assert!(!inputs.contains(&PANIC), "executor panics on request");
        inputs
            .iter()
            .take(self.answer_at_most)
            .map(|i| i * 10)
            .collect()
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn options(max_items: usize) -> BatchOptions {
    BatchOptions {
        idle: ms(100),
        max_wait: ms(1000),
        max_items,
    }
}

fn batcher(rec: &Arc<Recorder>, max_items: usize) -> Batcher<&'static str, u32, u32> {
    Batcher::new("test", options(max_items), rec.clone())
}

/// Lets spawned tasks run up to their next wait. The clock is paused and only moves when every
/// task waits, so this is deterministic, not a race.
async fn settle() {
    tokio::time::sleep(ms(1)).await;
}

#[tokio::test(start_paused = true)]
async fn a_lone_input_runs_after_the_idle_window() {
    let rec = Recorder::new();
    let b = batcher(&rec, 100);
    assert_eq!(b.add("k", 7, 1).await, Ok(70));
    assert_eq!(rec.batches(), vec![(ms(100), vec![7])]);
}

#[tokio::test(start_paused = true)]
async fn inputs_joining_within_the_idle_window_share_a_batch() {
    let rec = Recorder::new();
    let b = batcher(&rec, 100);
    let mut handles = Vec::new();
    // Joins at 0, 50 and 120 ms: each within 100 ms of the previous one.
    for (at, input) in [(0, 1), (50, 2), (120, 3)] {
        let b = b.clone();
        handles.push(tokio::spawn(async move {
            tokio::time::sleep(ms(at)).await;
            b.add("k", input, 1).await
        }));
    }
    let mut answers = Vec::new();
    for h in handles {
        answers.push(h.await.unwrap());
    }
    assert_eq!(answers, vec![Ok(10), Ok(20), Ok(30)]);
    assert_eq!(rec.batches(), vec![(ms(220), vec![1, 2, 3])]);
}

#[tokio::test(start_paused = true)]
async fn different_keys_run_in_different_batches() {
    let rec = Recorder::new();
    let b = batcher(&rec, 100);
    let (a, c) = tokio::join!(b.add("a", 1, 1), b.add("c", 2, 1));
    assert_eq!((a, c), (Ok(10), Ok(20)));
    let mut batches = rec.batches();
    batches.sort();
    assert_eq!(batches, vec![(ms(100), vec![1]), (ms(100), vec![2])]);
}

#[tokio::test(start_paused = true)]
async fn the_max_window_runs_a_bucket_that_keeps_receiving_inputs() {
    let rec = Recorder::new();
    let b = batcher(&rec, 100);
    let mut handles = Vec::new();
    // One input every 60 ms never lets the 100 ms idle window pass.
    for input in 0..20 {
        let b = b.clone();
        handles.push(tokio::spawn(async move { b.add("k", input, 1).await }));
        tokio::time::sleep(ms(60)).await;
    }
    for (input, h) in (0..).zip(handles) {
        assert_eq!(h.await.unwrap(), Ok(input * 10));
    }
    // Inputs at 0..=960 ms run at the 1 s mark; those at 1020, 1080 and 1140 ms form a new
    // bucket that goes idle at 1240 ms.
    assert_eq!(
        rec.batches(),
        vec![(ms(1000), (0..17).collect()), (ms(1240), vec![17, 18, 19])]
    );
}

#[tokio::test(start_paused = true)]
async fn a_full_bucket_runs_at_once_and_an_input_that_does_not_fit_starts_a_new_one() {
    let rec = Recorder::new();
    let b = batcher(&rec, 3);
    let mut handles = Vec::new();
    for (input, weight) in [(1, 2), (2, 2), (3, 1)] {
        let b = b.clone();
        handles.push(tokio::spawn(async move { b.add("k", input, weight).await }));
        settle().await;
    }
    for h in handles {
        assert!(h.await.unwrap().is_ok());
    }
    // Input 2 (weight 2) does not fit next to input 1 (weight 2): input 1 runs alone as 2
    // arrives at 1 ms; input 3 fills the new bucket to 3 at 2 ms, without waiting.
    assert_eq!(rec.batches(), vec![(ms(1), vec![1]), (ms(2), vec![2, 3])]);
}

#[tokio::test(start_paused = true)]
async fn an_input_heavier_than_max_items_runs_alone_at_once() {
    let rec = Recorder::new();
    let b = batcher(&rec, 3);
    assert_eq!(b.add("k", 5, 10).await, Ok(50));
    assert_eq!(rec.batches(), vec![(ms(0), vec![5])]);
}

#[tokio::test(start_paused = true)]
async fn a_withdrawn_caller_is_left_out_of_the_batch() {
    let rec = Recorder::new();
    let b = batcher(&rec, 100);
    let gone = tokio::spawn({
        let b = b.clone();
        async move { b.add("k", 1, 1).await }
    });
    let stays = tokio::spawn({
        let b = b.clone();
        async move { b.add("k", 2, 1).await }
    });
    settle().await;
    gone.abort();
    assert_eq!(stays.await.unwrap(), Ok(20));
    assert_eq!(rec.batches(), vec![(ms(100), vec![2])]);
}

#[tokio::test(start_paused = true)]
async fn a_bucket_of_withdrawn_callers_runs_nothing() {
    let rec = Recorder::new();
    let b = batcher(&rec, 100);
    let gone = tokio::spawn({
        let b = b.clone();
        async move { b.add("k", 1, 1).await }
    });
    settle().await;
    gone.abort();
    tokio::time::sleep(ms(2000)).await;
    assert_eq!(rec.batches(), vec![]);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_executor_fails_its_callers_and_the_batcher_keeps_working() {
    let rec = Recorder::new();
    let b = batcher(&rec, 100);
    let (a, c) = tokio::join!(b.add("k", PANIC, 1), b.add("k", 2, 1));
    let err = BatchError::Panicked { batcher: "test" };
    assert_eq!((a, c), (Err(err.clone()), Err(err)));
    assert_eq!(b.add("k", 3, 1).await, Ok(30));
}

#[tokio::test(start_paused = true)]
async fn callers_past_the_executors_answers_get_unanswered() {
    let rec = Arc::new(Recorder {
        answer_at_most: 1,
        ..Arc::into_inner(Recorder::new()).unwrap()
    });
    let b = batcher(&rec, 100);
    let (a, c) = tokio::join!(b.add("k", 1, 1), b.add("k", 2, 1));
    assert_eq!(a, Ok(10));
    assert_eq!(c, Err(BatchError::Unanswered { batcher: "test" }));
}

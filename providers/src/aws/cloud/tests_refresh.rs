//! The instance-type cache's refresh holds no lock across the Describe calls: a caller with
//! answers is never held back by a refresh under way (one that hangs, say), callers without
//! answers wait for that refresh instead of starting their own, and a cancelled refresh
//! leaves the way free for the next.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::INSTANCE_TYPES_TTL_SECS;
use super::tests::Fixture;

/// Polls `fut` until it stops making progress (it then waits on the gate) and checks it did
/// not finish.
async fn stall<F: Future>(fut: std::pin::Pin<&mut F>) {
    tokio::select! {
        biased;
        _ = fut => panic!("expected the call to hang on the gate"),
        _ = tokio::time::sleep(Duration::from_millis(1)) => {}
    }
}

/// Makes `DescribeInstanceTypes` hang until the returned gate gets permits.
fn hang_describe(f: &Fixture) -> Arc<Semaphore> {
    let gate = Arc::new(Semaphore::new(0));
    f.ec2.with(|s| s.instance_types_gate = Some(gate.clone()));
    gate
}

#[tokio::test(start_paused = true)]
async fn a_hanging_refresh_does_not_hold_back_callers_that_have_answers() {
    let f = Fixture::new();
    let first = f.provider.type_data().await.unwrap();
    f.advance(INSTANCE_TYPES_TTL_SECS + 1);
    let gate = hang_describe(&f);

    let mut refreshing = pin!(f.provider.type_data());
    stall(refreshing.as_mut()).await;
    assert_eq!(f.ec2.count("DescribeInstanceTypes"), 2);

    // Another reconcile meanwhile gets the previous answers at once, and asks EC2 nothing.
    let other = tokio::time::timeout(Duration::from_secs(5), f.provider.type_data())
        .await
        .expect("a caller with answers was held back by the refresh under way")
        .unwrap();
    assert!(Arc::ptr_eq(&other, &first));
    assert_eq!(f.ec2.count("DescribeInstanceTypes"), 2);

    gate.add_permits(1);
    let refreshed = refreshing.await.unwrap();
    assert!(!Arc::ptr_eq(&refreshed, &first));
    assert!(refreshed.fetched_at > first.fetched_at);
    let cached = f.provider.type_data().await.unwrap();
    assert!(Arc::ptr_eq(&cached, &refreshed));
}

#[tokio::test(start_paused = true)]
async fn callers_without_answers_wait_for_the_refresh_under_way() {
    let f = Fixture::new();
    let gate = hang_describe(&f);
    let mut first = pin!(f.provider.type_data());
    stall(first.as_mut()).await;
    let mut second = pin!(f.provider.type_data());
    stall(second.as_mut()).await;
    // The second caller waits for the first's answer instead of asking EC2 again.
    assert_eq!(f.ec2.count("DescribeInstanceTypes"), 1);
    gate.add_permits(1);
    let (a, b) = tokio::join!(first, second);
    assert!(Arc::ptr_eq(&a.unwrap(), &b.unwrap()));
    assert_eq!(f.ec2.count("DescribeInstanceTypes"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_refresh_frees_the_way_for_the_next() {
    let f = Fixture::new();
    let gate = hang_describe(&f);
    {
        // Boxed so that dropping it drops the future (a `pin!` one lives to the scope's end).
        let mut cancelled = Box::pin(f.provider.type_data());
        stall(cancelled.as_mut()).await;
        let mut waiting = pin!(f.provider.type_data());
        stall(waiting.as_mut()).await;
        // Dropping the refresher (a reconcile cancelled mid-call) wakes the waiter, which
        // takes the refresh over.
        drop(cancelled);
        gate.add_permits(1);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the waiter took the refresh over")
            .unwrap();
    }
    assert_eq!(f.ec2.count("DescribeInstanceTypes"), 2);
    assert!(f.provider.type_data().await.is_ok());
    assert_eq!(f.ec2.count("DescribeInstanceTypes"), 2);
}

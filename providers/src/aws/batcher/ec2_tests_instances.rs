//! Tests of [`BatchingEc2`](super::BatchingEc2)'s `DescribeInstances` and
//! `TerminateInstances` batching.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::ec2_tests::{batching, concurrently};
use crate::aws::cloud::INSTANCE_NOT_FOUND_CODE;
use crate::aws::ec2api::{Ec2Api, Ec2Error, InstanceQuery};
use crate::aws::resolve::Filter;

fn ids(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

fn id_set(query: &InstanceQuery) -> BTreeSet<String> {
    match query {
        InstanceQuery::Ids(ids) => ids.iter().cloned().collect(),
        InstanceQuery::Filters(_) => panic!("expected an ids query, got {query:?}"),
    }
}

fn is_not_found(e: &Ec2Error) -> bool {
    matches!(e, Ec2Error::Api { code, .. } if code == INSTANCE_NOT_FOUND_CODE)
}

#[tokio::test(start_paused = true)]
async fn describes_by_id_merge_and_each_caller_sees_only_its_instances() {
    let (api, ec2) = batching(None);
    api.seed(&["i-1", "i-2", "i-3", "i-4"]);
    let start = Instant::now();
    let callers = vec![
        ids(&["i-1"]),
        ids(&["i-2", "i-3"]),
        ids(&["i-4"]),
        ids(&["i-1"]),
    ];
    let answers = concurrently(&ec2, callers.clone(), |ec2, ids| async move {
        ec2.describe_instances(&InstanceQuery::Ids(ids)).await
    })
    .await;

    assert_eq!(start.elapsed(), Duration::from_millis(100));
    let queries = api.describe_queries();
    assert_eq!(queries.len(), 1, "{queries:?}");
    assert_eq!(
        id_set(&queries[0]),
        ["i-1", "i-2", "i-3", "i-4"].map(String::from).into()
    );
    // The merged call asks for each id once.
    assert_eq!(
        match &queries[0] {
            InstanceQuery::Ids(ids) => ids.len(),
            InstanceQuery::Filters(_) => 0,
        },
        4
    );
    for (asked, answer) in callers.iter().zip(answers) {
        let got: Vec<String> = answer.unwrap().into_iter().map(|i| i.id).collect();
        assert_eq!(&got, asked);
    }
}

#[tokio::test(start_paused = true)]
async fn a_not_found_on_the_merged_describe_falls_back_to_each_caller() {
    let (api, ec2) = batching(None);
    api.seed(&["i-1", "i-2"]);
    let callers = vec![ids(&["i-1"]), ids(&["i-gone"]), ids(&["i-2"])];
    let answers = concurrently(&ec2, callers, |ec2, ids| async move {
        ec2.describe_instances(&InstanceQuery::Ids(ids)).await
    })
    .await;

    assert_eq!(answers[0].as_ref().unwrap()[0].id, "i-1");
    assert!(
        is_not_found(answers[1].as_ref().unwrap_err()),
        "{answers:?}"
    );
    assert_eq!(answers[2].as_ref().unwrap()[0].id, "i-2");
    // The merged call, then one call per caller.
    let queries: Vec<BTreeSet<String>> = api.describe_queries().iter().map(id_set).collect();
    assert_eq!(queries.len(), 4, "{queries:?}");
    assert_eq!(queries[0].len(), 3);
    let singles: BTreeSet<String> = queries[1..].iter().flatten().cloned().collect();
    assert_eq!(singles, ["i-1", "i-2", "i-gone"].map(String::from).into());
}

#[tokio::test(start_paused = true)]
async fn a_lone_describe_is_sent_once_even_when_it_fails() {
    let (api, ec2) = batching(None);
    let err = ec2
        .describe_instances(&InstanceQuery::Ids(ids(&["i-gone"])))
        .await
        .unwrap_err();
    assert!(is_not_found(&err));
    assert_eq!(api.describe_queries().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn filter_describes_go_straight_through_unbatched() {
    let (api, ec2) = batching(None);
    api.seed(&["i-1"]);
    let start = Instant::now();
    let query = InstanceQuery::Filters(vec![Filter::new("instance-state-name", ["running"])]);
    let answers = concurrently(&ec2, vec![query.clone(), query], |ec2, q| async move {
        ec2.describe_instances(&q).await
    })
    .await;
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(api.describe_queries().len(), 2);
    for answer in answers {
        assert_eq!(answer.unwrap().len(), 1);
    }
}

#[tokio::test(start_paused = true)]
async fn the_max_window_sends_describes_while_calls_keep_arriving() {
    let (api, ec2) = batching(None);
    let all: Vec<String> = (0..20).map(|k| format!("i-{k}")).collect();
    api.seed(&all.iter().map(String::as_str).collect::<Vec<_>>());
    let start = Instant::now();
    let mut callers = Vec::new();
    // One call every 60 ms never lets the 100 ms idle window pass.
    for id in &all {
        let (ec2, id) = (ec2.clone(), id.clone());
        callers.push(tokio::spawn(async move {
            let found = ec2.describe_instances(&InstanceQuery::Ids(vec![id])).await;
            (found, Instant::now())
        }));
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    let mut answered_at = Vec::new();
    for (id, caller) in all.iter().zip(callers) {
        let (found, at) = caller.await.unwrap();
        assert_eq!(&found.unwrap()[0].id, id);
        answered_at.push(at - start);
    }
    // Calls made at 0..=960 ms are answered at the 1 s mark, by one call.
    assert!(
        answered_at[..17]
            .iter()
            .all(|t| *t == Duration::from_secs(1))
    );
    let sizes: Vec<usize> = api
        .describe_queries()
        .iter()
        .map(|q| id_set(q).len())
        .collect();
    assert_eq!(sizes, vec![17, 3]);
}

#[tokio::test(start_paused = true)]
async fn describes_past_the_max_batch_size_are_split() {
    let (api, ec2) = batching(Some(3));
    let all: Vec<String> = (0..7).map(|k| format!("i-{k}")).collect();
    api.seed(&all.iter().map(String::as_str).collect::<Vec<_>>());
    let callers: Vec<Vec<String>> = all.iter().map(|id| vec![id.clone()]).collect();
    let answers = concurrently(&ec2, callers, |ec2, ids| async move {
        ec2.describe_instances(&InstanceQuery::Ids(ids)).await
    })
    .await;
    assert!(
        answers
            .iter()
            .all(|a| a.as_ref().is_ok_and(|v| v.len() == 1))
    );
    let sizes: Vec<usize> = api
        .describe_queries()
        .iter()
        .map(|q| id_set(q).len())
        .collect();
    assert_eq!(sizes, vec![3, 3, 1]);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_describe_fails_its_callers_instead_of_hanging() {
    let (api, ec2) = batching(None);
    api.seed(&["i-1", "i-2"]);
    api.panic_on_describe.store(true, Ordering::SeqCst);
    let callers = vec![ids(&["i-1"]), ids(&["i-2"])];
    let answers = concurrently(&ec2, callers.clone(), |ec2, ids| async move {
        ec2.describe_instances(&InstanceQuery::Ids(ids)).await
    })
    .await;
    for answer in answers {
        assert!(
            matches!(&answer, Err(Ec2Error::Transport { operation, .. }) if operation == "DescribeInstances"),
            "{answer:?}"
        );
    }
    api.panic_on_describe.store(false, Ordering::SeqCst);
    let answers = concurrently(&ec2, callers, |ec2, ids| async move {
        ec2.describe_instances(&InstanceQuery::Ids(ids)).await
    })
    .await;
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
}

#[tokio::test(start_paused = true)]
async fn terminates_merge_and_each_caller_gets_its_own_state_changes() {
    let (api, ec2) = batching(None);
    api.seed(&["i-1", "i-2", "i-3"]);
    let callers = vec![ids(&["i-1"]), ids(&["i-2", "i-3"])];
    let answers = concurrently(&ec2, callers.clone(), |ec2, ids| async move {
        ec2.terminate_instances(&ids).await
    })
    .await;

    let mut requests = api.terminate_requests.lock().unwrap().clone();
    requests.iter_mut().for_each(|r| r.sort());
    assert_eq!(requests, vec![ids(&["i-1", "i-2", "i-3"])]);
    for (asked, answer) in callers.iter().zip(answers) {
        let changes = answer.unwrap();
        let got: Vec<&str> = changes.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(got, asked.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(changes.iter().all(|c| c.current_state == "shutting-down"));
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_merged_terminate_is_retried_per_caller() {
    let (api, ec2) = batching(None);
    api.seed(&["i-1", "i-2"]);
    let callers = vec![ids(&["i-1"]), ids(&["i-bad"]), ids(&["i-2"])];
    let answers = concurrently(&ec2, callers, |ec2, ids| async move {
        ec2.terminate_instances(&ids).await
    })
    .await;

    assert_eq!(answers[0].as_ref().unwrap()[0].id, "i-1");
    assert!(
        is_not_found(answers[1].as_ref().unwrap_err()),
        "{answers:?}"
    );
    assert_eq!(answers[2].as_ref().unwrap()[0].id, "i-2");
    let requests = api.terminate_requests.lock().unwrap().clone();
    let mut merged = requests[0].clone();
    merged.sort();
    assert_eq!(merged, ids(&["i-1", "i-2", "i-bad"]));
    let mut singles = requests[1..].to_vec();
    singles.sort();
    assert_eq!(singles, vec![ids(&["i-1"]), ids(&["i-2"]), ids(&["i-bad"])]);
}

#[tokio::test(start_paused = true)]
async fn terminates_past_the_max_batch_size_are_split() {
    let (api, ec2) = batching(Some(2));
    api.seed(&["i-1", "i-2", "i-3"]);
    let callers = vec![ids(&["i-1"]), ids(&["i-2"]), ids(&["i-3"])];
    let answers = concurrently(&ec2, callers, |ec2, ids| async move {
        ec2.terminate_instances(&ids).await
    })
    .await;
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    let sizes: Vec<usize> = api
        .terminate_requests
        .lock()
        .unwrap()
        .iter()
        .map(Vec::len)
        .collect();
    assert_eq!(sizes, vec![2, 1]);
}

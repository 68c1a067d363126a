//! `SdkSqs` against `aws-smithy-mocks`: the parameters Karpenter sends, what is read from the
//! answers, and how errors are classified.

use std::sync::{Arc, Mutex};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::ErrorMetadata;
use aws_sdk_sqs::operation::delete_message_batch::DeleteMessageBatchOutput;
use aws_sdk_sqs::operation::get_queue_url::{GetQueueUrlError, GetQueueUrlOutput};
use aws_sdk_sqs::operation::receive_message::{ReceiveMessageError, ReceiveMessageOutput};
use aws_sdk_sqs::types::error::QueueDoesNotExist;
use aws_sdk_sqs::types::{BatchResultErrorEntry, Message};
use aws_smithy_mocks::{Rule, mock};

use super::*;

fn client(rules: &[&Rule]) -> SdkSqs {
    SdkSqs::new(crate::aws::sequential_mock_client!(aws_sdk_sqs, rules))
}

const URL: &str = "https://sqs.us-east-1.amazonaws.com/111122223333/prod";

#[tokio::test]
async fn queue_url_asks_by_name() {
    let asked = Arc::new(Mutex::new(String::new()));
    let sink = asked.clone();
    let rule = mock!(Client::get_queue_url)
        .match_requests(move |input| {
            *sink.lock().unwrap() = input.queue_name().unwrap_or_default().to_owned();
            true
        })
        .then_output(|| GetQueueUrlOutput::builder().queue_url(URL).build());
    assert_eq!(client(&[&rule]).queue_url("prod").await.unwrap(), URL);
    assert_eq!(*asked.lock().unwrap(), "prod");
}

#[tokio::test]
async fn a_missing_queue_is_classified_so_the_loop_can_resolve_again() {
    let rule = mock!(Client::get_queue_url).then_error(|| {
        GetQueueUrlError::QueueDoesNotExist(
            QueueDoesNotExist::builder()
                .message("The specified queue does not exist.")
                .meta(
                    ErrorMetadata::builder()
                        .code("AWS.SimpleQueueService.NonExistentQueue")
                        .message("The specified queue does not exist.")
                        .build(),
                )
                .build(),
        )
    });
    let err = client(&[&rule]).queue_url("gone").await.unwrap_err();
    assert!(matches!(err, SqsError::QueueMissing { .. }), "{err:?}");
    assert_eq!(err.label(), "queue_missing");
}

#[tokio::test]
async fn an_answer_without_a_url_is_an_error_naming_the_queue() {
    let rule = mock!(Client::get_queue_url).then_output(|| GetQueueUrlOutput::builder().build());
    let err = client(&[&rule]).queue_url("prod").await.unwrap_err();
    assert!(err.to_string().contains("\"prod\""), "{err}");
}

#[tokio::test]
async fn receive_long_polls_for_ten_messages_hidden_twenty_seconds() {
    let seen = Arc::new(Mutex::new(None));
    let sink = seen.clone();
    let rule = mock!(Client::receive_message)
        .match_requests(move |input| {
            *sink.lock().unwrap() = Some((
                input.queue_url().map(str::to_owned),
                input.max_number_of_messages(),
                input.wait_time_seconds(),
                input.visibility_timeout(),
                input.message_system_attribute_names().to_vec(),
                input.message_attribute_names().to_vec(),
            ));
            true
        })
        .then_output(|| {
            ReceiveMessageOutput::builder()
                .messages(
                    Message::builder()
                        .message_id("m-1")
                        .receipt_handle("rh-1")
                        .body("{\"version\":\"0\"}")
                        .attributes(MessageSystemAttributeName::SentTimestamp, "1715677923000")
                        .build(),
                )
                .messages(
                    Message::builder()
                        .message_id("m-2")
                        .receipt_handle("rh-2")
                        .build(),
                )
                .messages(
                    Message::builder()
                        .message_id("m-3")
                        .body("no handle")
                        .build(),
                )
                .build()
        });
    let got = client(&[&rule]).receive(URL).await.unwrap();
    assert_eq!(
        got,
        [
            QueueMessage {
                message_id: "m-1".into(),
                receipt_handle: "rh-1".into(),
                body: "{\"version\":\"0\"}".into(),
                sent_at_ms: Some(1_715_677_923_000),
            },
            QueueMessage {
                message_id: "m-2".into(),
                receipt_handle: "rh-2".into(),
                body: String::new(),
                sent_at_ms: None,
            },
        ],
        "a message without a receipt handle is dropped"
    );
    let (url, max, wait, visibility, system, attributes) = seen.lock().unwrap().clone().unwrap();
    assert_eq!(url.as_deref(), Some(URL));
    assert_eq!(
        (max, wait, visibility),
        (Some(10), Some(20), Some(20)),
        "Karpenter's parameters"
    );
    assert_eq!(system, [MessageSystemAttributeName::SentTimestamp]);
    assert_eq!(attributes, ["All"]);
}

#[tokio::test]
async fn an_empty_poll_is_an_empty_list() {
    let rule =
        mock!(Client::receive_message).then_output(|| ReceiveMessageOutput::builder().build());
    assert!(client(&[&rule]).receive(URL).await.unwrap().is_empty());
}

fn receive_failing(code: &'static str) -> Rule {
    mock!(Client::receive_message).then_error(move || {
        ReceiveMessageError::generic(ErrorMetadata::builder().code(code).message("no").build())
    })
}

#[tokio::test]
async fn receive_errors_are_classified() {
    for (code, label) in [
        ("AWS.SimpleQueueService.NonExistentQueue", "queue_missing"),
        ("QueueDoesNotExist", "queue_missing"),
        ("AccessDenied", "access_denied"),
        ("ThrottlingException", "throttled"),
        ("KmsAccessDenied", "api"),
    ] {
        let rule = receive_failing(code);
        let err = client(&[&rule]).receive(URL).await.unwrap_err();
        assert_eq!(err.label(), label, "{code}: {err}");
    }
}

#[tokio::test]
async fn an_unreadable_answer_is_a_transport_error() {
    let rule = mock!(Client::receive_message).then_http_response(|| {
        HttpResponse::new(
            502.try_into().expect("a valid status"),
            "<html>bad gateway</html>".into(),
        )
    });
    let err = client(&[&rule]).receive(URL).await.unwrap_err();
    assert!(
        matches!(&err, SqsError::Transport { operation, .. } if operation == "ReceiveMessage"),
        "{err:?}"
    );
}

/// `(id, receipt handle)` of one `DeleteMessageBatch` call.
type Entries = Vec<(String, String)>;

#[tokio::test]
async fn deletes_go_ten_per_batch_call_and_refused_handles_come_back() {
    let seen: Arc<Mutex<Vec<Entries>>> = Arc::default();
    let sink = seen.clone();
    let record =
        move |input: &aws_sdk_sqs::operation::delete_message_batch::DeleteMessageBatchInput| {
            sink.lock().unwrap().push(
                input
                    .entries()
                    .iter()
                    .map(|e| (e.id().to_owned(), e.receipt_handle().to_owned()))
                    .collect(),
            );
            input.queue_url() == Some(URL)
        };
    let first = mock!(Client::delete_message_batch)
        .match_requests(record.clone())
        .then_output(|| {
            DeleteMessageBatchOutput::builder()
                .set_successful(Some(vec![]))
                .failed(
                    BatchResultErrorEntry::builder()
                        .id("3")
                        .code("ReceiptHandleIsInvalid")
                        .sender_fault(true)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap()
        });
    let second = mock!(Client::delete_message_batch)
        .match_requests(record)
        .then_output(|| {
            DeleteMessageBatchOutput::builder()
                .set_successful(Some(vec![]))
                .set_failed(Some(vec![]))
                .build()
                .unwrap()
        });
    let handles: Vec<String> = (0..12).map(|i| format!("rh-{i}")).collect();
    let refused = client(&[&first, &second])
        .delete(URL, &handles)
        .await
        .unwrap();
    assert_eq!(
        refused,
        [("rh-3".to_owned(), "ReceiptHandleIsInvalid".to_owned())]
    );
    let calls = seen.lock().unwrap().clone();
    assert_eq!(calls.iter().map(Vec::len).collect::<Vec<_>>(), [10, 2]);
    assert_eq!(
        calls[1],
        [
            ("0".to_owned(), "rh-10".to_owned()),
            ("1".to_owned(), "rh-11".to_owned())
        ]
    );
}

#[tokio::test]
async fn nothing_to_delete_makes_no_call() {
    assert!(client(&[]).delete(URL, &[]).await.unwrap().is_empty());
}

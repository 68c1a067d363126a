//! [`SqsApi`] over the AWS SDK, with Karpenter's `ReceiveMessage` parameters.

use async_trait::async_trait;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};

use super::sqs::{MAX_MESSAGES, QueueMessage, SqsApi, SqsError, VISIBILITY_TIMEOUT, WAIT_TIME};

/// [`SqsApi`] over [`aws_sdk_sqs::Client`]. The client's operation timeout must exceed
/// [`WAIT_TIME`]: a long poll that finds nothing answers after 20 s.
#[derive(Clone, Debug)]
pub struct SdkSqs {
    client: aws_sdk_sqs::Client,
}

impl SdkSqs {
    /// Wraps an SDK client.
    pub fn new(client: aws_sdk_sqs::Client) -> Self {
        SdkSqs { client }
    }
}

/// An SDK error as an [`SqsError`]: a service answer by its code, anything else as transport.
fn classify<E, R>(operation: &str, err: SdkError<E, R>) -> SqsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match (&err, err.code()) {
        (SdkError::ServiceError(_), Some(code)) => {
            SqsError::from_code(operation, code, err.message().unwrap_or_default())
        }
        _ => SqsError::Transport {
            operation: operation.to_owned(),
            detail: DisplayErrorContext(&err).to_string(),
        },
    }
}

#[async_trait]
impl SqsApi for SdkSqs {
    async fn queue_url(&self, name: &str) -> Result<String, SqsError> {
        let out = self
            .client
            .get_queue_url()
            .queue_name(name)
            .send()
            .await
            .map_err(|e| classify("GetQueueUrl", e))?;
        out.queue_url
            .filter(|url| !url.is_empty())
            .ok_or_else(|| SqsError::Transport {
                operation: "GetQueueUrl".into(),
                detail: format!("the answer for queue {name:?} has no QueueUrl"),
            })
    }

    async fn receive(&self, queue_url: &str) -> Result<Vec<QueueMessage>, SqsError> {
        let out = self
            .client
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(MAX_MESSAGES)
            .wait_time_seconds(WAIT_TIME.as_secs() as i32)
            .visibility_timeout(VISIBILITY_TIMEOUT.as_secs() as i32)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| classify("ReceiveMessage", e))?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            // A message without a receipt handle cannot be deleted, nor handled exactly once:
            // SQS always sends one, so this only guards against a broken answer.
            .filter_map(|m| {
                let sent_at_ms = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
                    .and_then(|t| t.parse().ok());
                Some(QueueMessage {
                    message_id: m.message_id.unwrap_or_default(),
                    receipt_handle: m.receipt_handle.filter(|h| !h.is_empty())?,
                    body: m.body.unwrap_or_default(),
                    sent_at_ms,
                })
            })
            .collect())
    }

    /// One `DeleteMessageBatch` per [`MAX_MESSAGES`] handles (one call per received batch
    /// instead of ten), entries identified by their index.
    async fn delete(
        &self,
        queue_url: &str,
        receipt_handles: &[String],
    ) -> Result<Vec<(String, String)>, SqsError> {
        let mut refused = Vec::new();
        for chunk in receipt_handles.chunks(MAX_MESSAGES as usize) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, handle)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(handle)
                        .build()
                        .map_err(|e| SqsError::Transport {
                            operation: "DeleteMessageBatch".into(),
                            detail: e.to_string(),
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .client
                .delete_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| classify("DeleteMessageBatch", e))?;
            for failed in out.failed() {
                let handle = failed
                    .id()
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| chunk.get(i))
                    .cloned()
                    .unwrap_or_else(|| failed.id().to_owned());
                refused.push((handle, failed.code().to_owned()));
            }
        }
        Ok(refused)
    }
}

#[cfg(test)]
#[path = "sqs_sdk_tests.rs"]
mod tests;

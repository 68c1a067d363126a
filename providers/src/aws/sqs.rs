//! The slice of SQS the interruption controller uses: find the queue, long-poll it, delete what
//! was handled. [`SdkSqs`](super::sqs_sdk::SdkSqs) implements it over the AWS SDK.

use std::time::Duration;

use async_trait::async_trait;

/// Most messages one `ReceiveMessage` returns (SQS's limit, and Karpenter's setting).
pub const MAX_MESSAGES: i32 = 10;
/// How long `ReceiveMessage` waits for a message (long polling; SQS's maximum).
pub const WAIT_TIME: Duration = Duration::from_secs(20);
/// How long a received message stays invisible to other receivers: a message whose handling
/// failed comes back after this long.
pub const VISIBILITY_TIMEOUT: Duration = Duration::from_secs(20);

/// One received message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueMessage {
    /// SQS's id of the message.
    pub message_id: String,
    /// What deletes it.
    pub receipt_handle: String,
    /// The body (an EventBridge event as JSON); empty when SQS sent none.
    pub body: String,
    /// When SQS received it (`SentTimestamp`), milliseconds since the Unix epoch.
    pub sent_at_ms: Option<i64>,
}

/// An SQS call that failed, classified by what the caller does about it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SqsError {
    /// The queue does not exist (wrong name, or deleted): resolve the name again later.
    #[error("{operation}: queue does not exist ({code}: {message})")]
    QueueMissing {
        /// The SQS operation.
        operation: String,
        /// SQS's error code.
        code: String,
        /// SQS's message.
        message: String,
    },
    /// The role may not make the call (IAM or the queue policy).
    #[error("{operation}: access denied ({code}: {message})")]
    AccessDenied {
        /// The SQS operation.
        operation: String,
        /// SQS's error code.
        code: String,
        /// SQS's message.
        message: String,
    },
    /// SQS asked us to slow down (after the SDK's own retries).
    #[error("{operation}: throttled ({code}: {message})")]
    Throttled {
        /// The SQS operation.
        operation: String,
        /// SQS's error code.
        code: String,
        /// SQS's message.
        message: String,
    },
    /// Any other answer from SQS.
    #[error("{operation}: {code}: {message}")]
    Api {
        /// The SQS operation.
        operation: String,
        /// SQS's error code.
        code: String,
        /// SQS's message.
        message: String,
    },
    /// No answer: connection refused, timeout, a body that does not decode.
    #[error("{operation}: {detail}")]
    Transport {
        /// The SQS operation.
        operation: String,
        /// What went wrong.
        detail: String,
    },
}

impl SqsError {
    /// Classifies an SQS error code (JSON protocol names and the query protocol's
    /// `AWS.SimpleQueueService.*` names alike).
    pub fn from_code(operation: &str, code: &str, message: &str) -> SqsError {
        let (operation, c, message) = (operation.to_owned(), code.to_owned(), message.to_owned());
        match code {
            "QueueDoesNotExist" | "AWS.SimpleQueueService.NonExistentQueue" => {
                SqsError::QueueMissing {
                    operation,
                    code: c,
                    message,
                }
            }
            "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" => {
                SqsError::AccessDenied {
                    operation,
                    code: c,
                    message,
                }
            }
            "Throttling" | "ThrottlingException" | "RequestThrottled" | "ThrottledException" => {
                SqsError::Throttled {
                    operation,
                    code: c,
                    message,
                }
            }
            _ => SqsError::Api {
                operation,
                code: c,
                message,
            },
        }
    }

    /// A short label for metrics and logs: `queue_missing`, `access_denied`, `throttled`,
    /// `api`, `transport`.
    pub fn label(&self) -> &'static str {
        match self {
            SqsError::QueueMissing { .. } => "queue_missing",
            SqsError::AccessDenied { .. } => "access_denied",
            SqsError::Throttled { .. } => "throttled",
            SqsError::Api { .. } => "api",
            SqsError::Transport { .. } => "transport",
        }
    }
}

/// The SQS calls of the interruption controller.
#[async_trait]
pub trait SqsApi: Send + Sync {
    /// The URL of the queue called `name` (`GetQueueUrl`).
    async fn queue_url(&self, name: &str) -> Result<String, SqsError>;

    /// Up to [`MAX_MESSAGES`] messages, waiting up to [`WAIT_TIME`] for the first, each hidden
    /// for [`VISIBILITY_TIMEOUT`] (`ReceiveMessage`). An empty list when none came.
    async fn receive(&self, queue_url: &str) -> Result<Vec<QueueMessage>, SqsError>;

    /// Deletes handled messages by receipt handle (`DeleteMessageBatch`, at most
    /// [`MAX_MESSAGES`] a call; IAM authorizes it as `sqs:DeleteMessage`). Returns the handles
    /// SQS refused, with its error code; an `Err` means none was deleted.
    async fn delete(
        &self,
        queue_url: &str,
        receipt_handles: &[String],
    ) -> Result<Vec<(String, String)>, SqsError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_of_both_protocols_classify_alike() {
        for code in [
            "QueueDoesNotExist",
            "AWS.SimpleQueueService.NonExistentQueue",
        ] {
            assert_eq!(SqsError::from_code("X", code, "m").label(), "queue_missing");
        }
        assert_eq!(
            SqsError::from_code("X", "AccessDenied", "m").label(),
            "access_denied"
        );
        assert_eq!(
            SqsError::from_code("X", "ThrottlingException", "m").label(),
            "throttled"
        );
        let other = SqsError::from_code("ReceiveMessage", "InvalidAddress", "bad url");
        assert_eq!(other.label(), "api");
        assert_eq!(other.to_string(), "ReceiveMessage: InvalidAddress: bad url");
    }
}

//! The error every ingest step reports: which object, which field, what is wrong.

use std::fmt;

/// A Kubernetes object (or manifest document) that could not be turned into scheduler input.
///
/// Displays as `Pod/default/web-0: spec.containers[0].resources.requests.cpu: invalid quantity
/// "abc": unknown suffix`, so a user can find the offending line without a debugger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestError {
    /// `Kind/namespace/name` (or `Kind/name` for cluster-scoped objects, or a file and
    /// document position for manifests that could not be read at all).
    pub object: String,
    /// JSON-path-like location of the offending field; empty when the whole object is at fault.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl IngestError {
    /// Builds an error.
    pub fn new(
        object: impl Into<String>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> IngestError {
        IngestError {
            object: object.into(),
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for IngestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.object, self.message)
        } else {
            write!(f, "{}: {}: {}", self.object, self.field, self.message)
        }
    }
}

impl std::error::Error for IngestError {}

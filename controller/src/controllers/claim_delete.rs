//! Deleting a NodeClaim: the one way every controller does it.
//!
//! A claim is deleted by name, but names can be reused (a claim re-created under the name of
//! one that just went), so a writer that decided on a particular object sends its UID as a
//! precondition: the API server then refuses (409) to delete any other object. Either way
//! "gone already" is not an error: the claim the decision was about no longer exists.

use karpenter_core::api::NodeClaim;
use kube_client::Client;
use kube_client::api::{Api, DeleteParams, Preconditions};

/// What a delete call found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimDeleted {
    /// The delete was accepted (the claim now has a deletion timestamp, or is gone).
    Now,
    /// The claim was gone already, or the name now belongs to another object (UID mismatch).
    AlreadyGone,
}

/// Deletes the NodeClaim `name`; with `uid`, only while it is still that object.
pub async fn delete_node_claim(
    client: &Client,
    name: &str,
    uid: Option<&str>,
) -> Result<ClaimDeleted, kube_client::Error> {
    let api: Api<NodeClaim> = Api::all(client.clone());
    let params = DeleteParams {
        preconditions: uid.map(|uid| Preconditions {
            uid: Some(uid.to_owned()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(ClaimDeleted::Now),
        Err(kube_client::Error::Api(e)) if e.code == 404 || (uid.is_some() && e.code == 409) => {
            Ok(ClaimDeleted::AlreadyGone)
        }
        Err(e) => Err(e),
    }
}

/// [`delete_node_claim`] for a claim object read from the API (its own UID as precondition).
pub async fn delete_this_node_claim(
    client: &Client,
    claim: &NodeClaim,
) -> Result<ClaimDeleted, kube_client::Error> {
    let name = claim.metadata.name.as_deref().unwrap_or_default();
    delete_node_claim(client, name, claim.metadata.uid.as_deref()).await
}

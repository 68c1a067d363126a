//! Claim migration: the NodeClaims Karpenter 0.3x wrote are rewritten as v1, once.
//!
//! After an upgrade from Karpenter 0.36 every node it launched has a NodeClaim with a v1beta1
//! body (`nodeClassRef.apiVersion`, `spec.kubelet`, no `expireAfter`). Our CRDs serve both
//! versions without a conversion webhook, so the API server hands that body out unchanged and
//! validates every write against the schema of the version written through: the v1 schema
//! requires `nodeClassRef.group`, so no status or finalizer patch through v1 would be accepted.
//! NodeClaims are the controller's own objects, so it converts them (as Karpenter v1.0's
//! conversion webhook does on each read) and replaces each one through v1, conditional on its
//! `resourceVersion`. Until then the model reads them converted in memory, never expiring.
//! NodePools and EC2NodeClasses are the user's and are never rewritten.

use std::time::Duration;

use karpenter_core::api::NodeClaim;
use kube_client::Client;
use kube_client::api::{Api, DynamicObject, ListParams, PostParams};

use crate::model::ClusterState;
use crate::model::objects::{node_claim_resource, node_claim_resource_v1beta1};

mod decide;

pub use decide::{Migration, migrations};

/// How often a cluster with nothing left to migrate is checked again (an old Karpenter replica
/// may still write v1beta1 claims during a rollout).
const RECHECK: Duration = Duration::from_secs(600);
/// First retry after a round that left claims behind; doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(2);
const RETRY_MAX: Duration = Duration::from_secs(120);

/// What one round did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Round {
    /// Claims rewritten as v1.
    pub migrated: Vec<String>,
    /// Claims still v1beta1 (conversion or write failed), with why.
    pub left: Vec<(String, String)>,
}

/// Migrates until nothing is left, then re-checks every [`RECHECK`].
pub async fn run(client: Client, state: ClusterState) {
    let mut retry = RETRY_FIRST;
    loop {
        let wait = match migrate_once(&client, &state).await {
            Ok(round) if round.left.is_empty() => {
                retry = RETRY_FIRST;
                RECHECK
            }
            Ok(round) => {
                for (name, why) in &round.left {
                    tracing::warn!(nodeclaim = %name, error = %why, "v1beta1 NodeClaim not migrated yet");
                }
                next_retry(&mut retry)
            }
            Err(e) => {
                tracing::warn!(error = %e, "listing NodeClaims to migrate failed");
                next_retry(&mut retry)
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// The wait before the next retry; doubles the one after it.
fn next_retry(retry: &mut Duration) -> Duration {
    let wait = *retry;
    *retry = (wait * 2).min(RETRY_MAX);
    wait
}

/// One round: lists the claims as served and replaces every v1beta1 one with its v1 form.
pub async fn migrate_once(
    client: &Client,
    state: &ClusterState,
) -> Result<Round, kube_client::Error> {
    let raw: Api<DynamicObject> = Api::all_with(client.clone(), &node_claim_resource());
    let claims = raw.list(&ListParams::default()).await?.items;
    let (pools, _) = state.pools();
    let api: Api<NodeClaim> = Api::all(client.clone());
    let mut round = Round::default();
    let raw_v1beta1: Api<DynamicObject> =
        Api::all_with(client.clone(), &node_claim_resource_v1beta1());
    for Migration {
        name,
        status_first,
        outcome,
    } in migrations(&claims, &pools)
    {
        let mut claim = match outcome {
            Ok(c) => c,
            Err(why) => {
                round.left.push((name, why));
                continue;
            }
        };
        if let Some(first) = status_first {
            match raw_v1beta1
                .replace_status(&name, &PostParams::default(), &first)
                .await
            {
                // The spec write must be conditional on this version now.
                Ok(written) => claim.metadata.resource_version = written.metadata.resource_version,
                Err(kube_client::Error::Api(e)) if e.code == 404 => continue,
                Err(e) => {
                    round
                        .left
                        .push((name, format!("completing its conditions: {e}")));
                    continue;
                }
            }
        }
        match api.replace(&name, &PostParams::default(), &claim).await {
            Ok(_) => {
                tracing::info!(
                    nodeclaim = %name,
                    expire_after = %claim.spec.expire_after.as_str(),
                    "rewrote Karpenter 0.3x's v1beta1 NodeClaim as v1"
                );
                round.migrated.push(name);
            }
            // Gone meanwhile: nothing to migrate.
            Err(kube_client::Error::Api(e)) if e.code == 404 => {}
            Err(e) => round.left.push((name, e.to_string())),
        }
    }
    Ok(round)
}

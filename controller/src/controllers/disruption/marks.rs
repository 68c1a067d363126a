//! The marks a command puts on its candidates and takes off again: the disrupted taint on the
//! Node and the `DisruptionReason` condition on the NodeClaim, each written with a retry on
//! conflict.

use k8s_openapi::api::core::v1::Node;
use karpenter_core::api::NodeClaim;
use kube_client::api::{Api, Patch, PatchParams};
use serde_json::Value;

use super::DisruptionContext;
use super::decide::{DISRUPTION_REASON, mark_patch, unmark_patch};
use crate::controllers::conditions::{guarded_status_patch, is_conflict, upsert_condition};

/// Guarded writes retried this often on a conflict.
const WRITE_ATTEMPTS: usize = 3;

/// Patches the Node `name` with what `f` computes from its latest version, retrying on a
/// conflict; `Ok` when there was nothing to do or the Node is gone.
async fn patch_node(
    ctx: &DisruptionContext,
    name: &str,
    f: impl Fn(&Node) -> Option<Value>,
) -> Result<(), kube_client::Error> {
    let api: Api<Node> = Api::all(ctx.client.clone());
    for attempt in 1..=WRITE_ATTEMPTS {
        let Some(node) = api.get_opt(name).await? else {
            return Ok(());
        };
        let Some(patch) = f(&node) else {
            return Ok(());
        };
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if is_conflict(&e) && attempt < WRITE_ATTEMPTS => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sets (`Some(reason)`) or clears (`None`) the claim's `DisruptionReason` condition.
async fn set_reason(
    ctx: &DisruptionContext,
    name: &str,
    reason: Option<(&str, &str)>,
) -> Result<(), kube_client::Error> {
    let api: Api<NodeClaim> = Api::all(ctx.client.clone());
    for attempt in 1..=WRITE_ATTEMPTS {
        let Some(claim) = api.get_opt(name).await? else {
            return Ok(());
        };
        let mut status = claim.status.clone().unwrap_or_default();
        let changed = match reason {
            Some((reason, message)) => upsert_condition(
                &mut status,
                DISRUPTION_REASON,
                "True",
                reason,
                message,
                &claim,
            ),
            None => {
                let before = status.conditions.len();
                status.conditions.retain(|c| c.type_ != DISRUPTION_REASON);
                status.conditions.len() != before
            }
        };
        if !changed {
            return Ok(());
        }
        match api
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(guarded_status_patch(&claim.metadata, &status)),
            )
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if is_conflict(&e) && attempt < WRITE_ATTEMPTS => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Taints the candidates and sets their `DisruptionReason`.
pub(super) async fn mark(
    ctx: &DisruptionContext,
    nodes: &[String],
    claims: &[String],
    reason: &str,
    message: &str,
) -> Result<(), kube_client::Error> {
    for n in nodes {
        patch_node(ctx, n, mark_patch).await?;
    }
    for c in claims {
        set_reason(ctx, c, Some((reason, message))).await?;
    }
    Ok(())
}

/// Untaints the nodes (unless they are being deleted: termination owns the taint then) and
/// clears the claims' `DisruptionReason`. Failures are logged; the next pass's cleanup
/// retries.
pub(super) async fn unmark(ctx: &DisruptionContext, nodes: &[String], claims: &[String]) {
    for n in nodes {
        let deleting_claim = |node: &Node| {
            let name = node.metadata.name.as_deref();
            ctx.state
                .node_claims
                .find(|c| c.status.as_ref().and_then(|s| s.node_name.as_deref()) == name)
                .is_some_and(|c| c.metadata.deletion_timestamp.is_some())
        };
        let r = patch_node(ctx, n, |node| {
            if node.metadata.deletion_timestamp.is_some() || deleting_claim(node) {
                None
            } else {
                unmark_patch(node)
            }
        })
        .await;
        if let Err(e) = r {
            tracing::warn!(node = %n, error = %e, "could not remove the disrupted taint");
        }
    }
    for c in claims {
        if let Err(e) = set_reason(ctx, c, None).await {
            tracing::warn!(nodeclaim = %c, error = %e, "could not clear DisruptionReason");
        }
    }
}

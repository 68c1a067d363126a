//! NodeClaim disruption status through the real controller: changing a NodePool template
//! label drifts the pool's existing claims (`Drifted=True`, reason `NodePoolDrifted`), because
//! the claim keeps the template hash it was made with. Needs the e2e bed.

use std::time::Duration;

use karpenter_e2e::controller::{ControllerProcess, install_crds};
use karpenter_e2e::harness::*;
use karpenter_e2e::scenario::*;
use kube_client::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changing_a_template_label_drifts_the_pools_claims() {
    karpenter_e2e::install_crypto_provider();
    let _serial = serial().await;
    run("drift", |ctx| async move {
        install_crds(&ctx.kube).await;
        let pool = pool_name(&ctx, "drift");
        let controller = ControllerProcess::start(&ctx.env, "claim-drift", &[]);
        let _sim = ctx.start_sim(ctx.sim_config_for_tag("karpenter.sh/nodepool", &pool));
        apply_staging(&ctx, &pool, json!([])).await;
        create_deployment(&ctx, "one", 1, "500m", "256Mi").await;
        let claim = eventually(
            "a launched nodeclaim carrying the pool's hash",
            Duration::from_secs(120),
            || async {
                claims_of(&ctx, &pool).await.into_iter().find(|c| {
                    c.status.as_ref().is_some_and(|s| s.is_true("Launched"))
                        && c.metadata
                            .annotations
                            .as_ref()
                            .is_some_and(|a| a.contains_key("karpenter.sh/nodepool-hash"))
                })
            },
        )
        .await;
        let drifted = |c: &karpenter_core::api::NodeClaim| {
            c.status
                .as_ref()
                .and_then(|s| s.condition("Drifted"))
                .filter(|d| d.status == "True")
                .map(|d| d.reason.clone())
        };
        assert_eq!(drifted(&claim), None, "a fresh claim is not drifted");

        let pools: Api<DynamicObject> = Api::all_with(
            ctx.kube.clone(),
            &resource("karpenter.sh", "v1beta1", "NodePool"),
        );
        let patch =
            json!({"spec": {"template": {"metadata": {"labels": {"drift-test": "changed"}}}}});
        pools
            .patch(&pool, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .expect("patch the pool's template labels");

        let name = claim.metadata.name.clone().expect("claim name");
        let reason = eventually("the claim drifted", Duration::from_secs(60), || async {
            claims_of(&ctx, &pool)
                .await
                .into_iter()
                .find(|c| c.metadata.name.as_deref() == Some(name.as_str()))
                .and_then(|c| drifted(&c))
        })
        .await;
        assert_eq!(reason, "NodePoolDrifted");
        controller.assert_no_panic();
        teardown(&ctx, &pool).await;
    })
    .await;
}

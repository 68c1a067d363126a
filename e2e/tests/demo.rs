//! The live demo (`cargo xtask demo --live`) in short: the same code scales a Deployment up and
//! down on the seed's staging pool, and the fleet grows, then shrinks to a cheaper one. Needs
//! the e2e bed.

use karpenter_e2e::harness::*;
use karpenter_e2e::scenario::serial;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_live_demo_launches_then_consolidates() {
    karpenter_e2e::install_crypto_provider();
    let _serial = serial().await;
    run("demo", |ctx| async move {
        let mut out = Vec::new();
        let steps = karpenter_e2e::demo::run(&ctx, &[12, 2], &mut out).await;
        let printed = String::from_utf8(out).unwrap();
        eprint!("{printed}");
        assert_eq!(steps.len(), 2, "{printed}");
        let (up, down) = (&steps[0], &steps[1]);
        // 12 × 900m does not fit one node of ≤ 8 vCPUs.
        assert!(up.nodes.len() >= 2, "{printed}");
        assert!(down.nodes.len() < up.nodes.len(), "{printed}");
        assert!(down.price_per_hour < up.price_per_hour, "{printed}");
        assert_eq!(
            printed.lines().filter(|l| l.starts_with("web = ")).count(),
            2,
            "{printed}"
        );
    })
    .await;
}

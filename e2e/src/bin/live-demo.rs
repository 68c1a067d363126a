//! `live-demo`: the live demo on a running e2e bed (`cargo xtask demo --live` brings the bed up,
//! runs this and tears the bed down). Scales a Deployment on the seed's staging pool through
//! the sizes given as arguments (default 10 40 5 0) and prints the fleet and its $/h after
//! each step.

use karpenter_e2e::harness::{Ctx, run};

fn main() -> anyhow::Result<()> {
    let sizes: Vec<i32> = std::env::args()
        .skip(1)
        .map(|a| a.parse().map_err(|e| anyhow::anyhow!("size {a:?}: {e}")))
        .collect::<anyhow::Result<_>>()?;
    let sizes = if sizes.is_empty() {
        vec![10, 40, 5, 0]
    } else {
        sizes
    };
    karpenter_e2e::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        run("demo", |ctx: std::sync::Arc<Ctx>| async move {
            let mut out = std::io::stdout();
            karpenter_e2e::demo::run(&ctx, &sizes, &mut out).await;
        })
        .await;
    });
    Ok(())
}

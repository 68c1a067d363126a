//! `AwsCloudProvider`'s on-demand prices over a fake Pricing API: live prices over the
//! embedded catalog's, fallbacks, the 12-hour refresh and `isolated_vpc`.

use std::sync::Arc;

use karpenter_core::instance_type::InstanceType;
use karpenter_core::labels;

use super::fake_apis::FakePricing;
use super::tests::{Fixture, claim, pool};
use super::*;
use crate::aws::pricing::{PRICING_RETRY_SECS, PRICING_TTL_SECS};
use crate::provider::CloudProvider;

/// The standard fixture, its provider reading prices from `pricing`.
fn priced(pricing: &Arc<FakePricing>, isolated_vpc: bool) -> Fixture {
    let mut f = Fixture::new();
    let mut config = f.provider.config().clone();
    config.isolated_vpc = isolated_vpc;
    f.provider = AwsCloudProvider::new(
        f.ec2.clone(),
        f.ssm.clone(),
        f.iam.clone(),
        f.classes.clone(),
        config,
    )
    .with_pricing(pricing.clone());
    f
}

/// The price of `name`'s offering in `zone` for `capacity_type`.
fn price(types: &[InstanceType], name: &str, zone: &str, capacity_type: &str) -> f64 {
    types
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", names(types)))
        .offerings
        .iter()
        .find(|o| o.zone == zone && o.capacity_type == capacity_type)
        .unwrap_or_else(|| panic!("no {zone} {capacity_type} offering of {name}"))
        .price
}

fn names(types: &[InstanceType]) -> Vec<&str> {
    types.iter().map(|t| t.name.as_str()).collect()
}

/// The type of the cheapest available on-demand offering.
fn cheapest_on_demand(types: &[InstanceType]) -> &str {
    types
        .iter()
        .flat_map(|t| t.offerings.iter().map(move |o| (t.name.as_str(), o)))
        .filter(|(_, o)| o.available && o.capacity_type == labels::CAPACITY_ON_DEMAND)
        .min_by(|a, b| a.1.price.total_cmp(&b.1.price))
        .map(|(name, _)| name)
        .expect("some on-demand offering")
}

#[tokio::test]
async fn a_live_price_overrides_the_static_one_and_changes_the_cheapest_offering() {
    // Static prices: m6g.large (0.077) is the cheapest, c5.large (0.085) beats m5.large.
    let f = Fixture::new();
    let types = f.provider.instance_types(&pool()).await.unwrap();
    assert_eq!(cheapest_on_demand(&types), "m6g.large");
    let got = f
        .provider
        .create(&claim(&["m5.large", "c5.large"], &["on-demand"]))
        .await
        .unwrap();
    assert_eq!(got.instance_type, "c5.large");

    let pricing = Arc::new(FakePricing::answering(&[("m5.large", 0.04)]));
    let f = priced(&pricing, false);
    let types = f.provider.instance_types(&pool()).await.unwrap();
    assert_eq!(price(&types, "m5.large", "us-east-1a", "on-demand"), 0.04);
    assert_eq!(cheapest_on_demand(&types), "m5.large");
    // Spot prices without history are derived from the live on-demand price.
    let spot_b = price(&types, "m5.large", "us-east-1b", "spot");
    assert!((spot_b - 0.04 * 0.4).abs() < 1e-9, "{spot_b}");
    // The cluster's region was asked for.
    assert_eq!(*pricing.regions.lock().unwrap(), ["us-east-1"]);
    // The launch follows: m5.large is now the cheaper of the two.
    let got = f
        .provider
        .create(&claim(&["m5.large", "c5.large"], &["on-demand"]))
        .await
        .unwrap();
    assert_eq!(got.instance_type, "m5.large");
    let fleet = f.ec2.with(|s| s.fleet_requests.last().unwrap().clone());
    let first = &fleet.launch_template_configs[0].overrides[0];
    assert_eq!(first.instance_type, "m5.large");
    assert_eq!(pricing.calls(), 1, "fetched once for both calls");
}

#[tokio::test]
async fn an_unreachable_api_keeps_static_prices_and_is_retried_later() {
    let pricing = Arc::new(FakePricing::answering(&[("m5.large", 0.04)]));
    pricing.set_unreachable(true);
    let f = priced(&pricing, false);
    let types = f.provider.instance_types(&pool()).await.unwrap();
    assert_eq!(
        names(&types),
        ["c5.large", "g5.xlarge", "m5.large", "m6g.large"]
    );
    assert_eq!(price(&types, "m5.large", "us-east-1a", "on-demand"), 0.096);
    assert_eq!(price(&types, "c5.large", "us-east-1a", "on-demand"), 0.085);
    assert_eq!(pricing.calls(), 1);

    // Not asked again at once, only after the retry interval; then the live price applies.
    pricing.set_unreachable(false);
    f.advance(PRICING_RETRY_SECS - 1);
    let types = f.provider.instance_types(&pool()).await.unwrap();
    assert_eq!(price(&types, "m5.large", "us-east-1a", "on-demand"), 0.096);
    assert_eq!(pricing.calls(), 1);
    f.advance(1);
    let types = f.provider.instance_types(&pool()).await.unwrap();
    assert_eq!(pricing.calls(), 2);
    assert_eq!(price(&types, "m5.large", "us-east-1a", "on-demand"), 0.04);

    // A later failure keeps the last good live price, not the static one.
    pricing.set_unreachable(true);
    f.advance(PRICING_TTL_SECS);
    let types = f.provider.instance_types(&pool()).await.unwrap();
    assert_eq!(pricing.calls(), 3);
    assert_eq!(price(&types, "m5.large", "us-east-1a", "on-demand"), 0.04);
}

#[tokio::test]
async fn a_type_the_api_does_not_price_keeps_its_static_price() {
    // zz9.large has no catalog price: only the API's price makes it offered.
    let pricing = Arc::new(FakePricing::answering(&[
        ("m5.large", 0.1),
        ("zz9.large", 0.02),
    ]));
    let f = priced(&pricing, false);
    let types = f.provider.instance_types(&pool()).await.unwrap();
    assert_eq!(
        names(&types),
        [
            "c5.large",
            "g5.xlarge",
            "m5.large",
            "m6g.large",
            "zz9.large"
        ]
    );
    assert_eq!(price(&types, "m5.large", "us-east-1a", "on-demand"), 0.1);
    assert_eq!(price(&types, "c5.large", "us-east-1a", "on-demand"), 0.085);
    assert_eq!(price(&types, "g5.xlarge", "us-east-1b", "on-demand"), 1.006);
    assert_eq!(price(&types, "zz9.large", "us-east-1a", "on-demand"), 0.02);
}

#[tokio::test]
async fn prices_are_fetched_again_after_the_ttl_and_not_before() {
    let pricing = Arc::new(FakePricing::answering(&[("m5.large", 0.04)]));
    let f = priced(&pricing, false);
    f.provider.instance_types(&pool()).await.unwrap();
    assert_eq!(pricing.calls(), 1);

    pricing.set_prices(&[("m5.large", 0.05)]);
    // Past the instance types' TTL (they are described again) but within the prices'.
    f.advance(PRICING_TTL_SECS - 1);
    let types = f.provider.instance_types(&pool()).await.unwrap();
    assert_eq!(f.ec2.count("DescribeInstanceTypes"), 2);
    assert_eq!(pricing.calls(), 1);
    assert_eq!(price(&types, "m5.large", "us-east-1a", "on-demand"), 0.04);

    f.advance(1);
    let types = f.provider.instance_types(&pool()).await.unwrap();
    assert_eq!(pricing.calls(), 2);
    assert_eq!(price(&types, "m5.large", "us-east-1a", "on-demand"), 0.05);
}

#[tokio::test]
async fn an_isolated_vpc_never_calls_the_pricing_api() {
    let pricing = Arc::new(FakePricing::answering(&[("m5.large", 0.04)]));
    let f = priced(&pricing, true);
    let types = f.provider.instance_types(&pool()).await.unwrap();
    assert_eq!(price(&types, "m5.large", "us-east-1a", "on-demand"), 0.096);
    f.advance(PRICING_TTL_SECS);
    f.provider.instance_types(&pool()).await.unwrap();
    assert_eq!(pricing.calls(), 0);
}

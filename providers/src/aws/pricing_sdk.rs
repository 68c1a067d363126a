//! [`PricingApi`] over the AWS SDK: `GetProducts` for EC2 with Karpenter's filters, every page.
//!
//! The Pricing API lives in a few regions only (see [`pricing_endpoint_region`]): the client
//! handed to [`SdkPricing::new`] must be configured for one of them, while the region whose
//! prices are read is the `regionCode` filter.
//!
//! [`pricing_endpoint_region`]: super::pricing::pricing_endpoint_region

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use aws_sdk_pricing::error::ProvideErrorMetadata;
use aws_sdk_pricing::types::{Filter, FilterType};

use super::ec2api::{Ec2Error, classify};
use super::pricing::{PricingApi, SERVICE_CODE, on_demand_filters, parse_price_list};

/// `MaxResults` of `GetProducts`: its maximum.
pub const GET_PRODUCTS_PAGE_SIZE: i32 = 100;

const OPERATION: &str = "GetProducts";

/// [`PricingApi`] over [`aws_sdk_pricing::Client`].
#[derive(Debug)]
pub struct SdkPricing {
    client: aws_sdk_pricing::Client,
    /// `PriceList` entries left out because they could not be read, over all calls.
    skipped: AtomicU64,
}

impl SdkPricing {
    /// Wraps an SDK client (configured for a Pricing API region).
    pub fn new(client: aws_sdk_pricing::Client) -> Self {
        SdkPricing {
            client,
            skipped: AtomicU64::new(0),
        }
    }

    /// How many `PriceList` entries were left out as unreadable since the client was made.
    pub fn skipped_entries(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }
}

/// The SDK form of [`on_demand_filters`].
fn sdk_filters(region: &str) -> Result<Vec<Filter>, Ec2Error> {
    on_demand_filters(region)
        .into_iter()
        .map(|(field, value)| {
            Filter::builder()
                .r#type(FilterType::TermMatch)
                .field(field)
                .value(value)
                .build()
                .map_err(|e| Ec2Error::Transport {
                    operation: OPERATION.to_owned(),
                    message: format!("building filter {field}: {e}"),
                })
        })
        .collect()
}

#[async_trait]
impl PricingApi for SdkPricing {
    /// Follows `NextToken` through every page; an error on any page fails the whole call (no
    /// partial price list). Entries [`parse_price_list`] rejects are skipped, counted in
    /// [`SdkPricing::skipped_entries`] and reported in one warning per call; when an entry
    /// repeats an instance type, the later one wins.
    async fn on_demand_prices(&self, region: &str) -> Result<HashMap<String, f64>, Ec2Error> {
        let mut items = self
            .client
            .get_products()
            .service_code(SERVICE_CODE)
            .set_filters(Some(sdk_filters(region)?))
            .into_paginator()
            .page_size(GET_PRODUCTS_PAGE_SIZE)
            .items()
            .send();
        let mut prices = HashMap::new();
        let mut skipped = 0u64;
        let mut first_error = None;
        while let Some(item) = items.next().await {
            let item = item.map_err(|e| classify(OPERATION, e.code(), e.message(), &e))?;
            match parse_price_list(&item) {
                Ok(Some((instance_type, price))) => {
                    prices.insert(instance_type, price);
                }
                Ok(None) => {}
                Err(e) => {
                    skipped += 1;
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(error) = first_error {
            self.skipped.fetch_add(skipped, Ordering::Relaxed);
            tracing::warn!(
                %error,
                skipped,
                priced = prices.len(),
                region,
                "skipped unreadable GetProducts price list entries"
            );
        }
        Ok(prices)
    }
}

#[cfg(test)]
mod tests {
    //! `SdkPricing` against `aws-smithy-mocks`: the request sent, pages, bad entries, errors.

    use std::sync::{Arc, Mutex};

    use aws_sdk_pricing::Client;
    use aws_sdk_pricing::config::http::HttpResponse;

    use aws_sdk_pricing::error::ErrorMetadata;
    use aws_sdk_pricing::operation::get_products::{
        GetProductsError, GetProductsInput, GetProductsOutput,
    };
    use aws_smithy_mocks::{Rule, mock};

    use super::*;

    /// A client answering from `rules` in order; retries off so one rule answers one call.
    fn client(rules: &[&Rule]) -> SdkPricing {
        SdkPricing::new(crate::aws::sequential_mock_client!(aws_sdk_pricing, rules))
    }

    type Seen = Arc<Mutex<Vec<GetProductsInput>>>;

    /// A rule recording its request and answering `page`.
    fn page(seen: &Seen, page: GetProductsOutput) -> Rule {
        let sink = seen.clone();
        mock!(Client::get_products)
            .match_requests(move |input| {
                sink.lock().unwrap().push(input.clone());
                true
            })
            .then_output(move || page.clone())
    }

    /// A price list entry as the Pricing API sends it (the parts that are read).
    fn entry(instance_type: &str, usd: &str) -> String {
        format!(
            r#"{{"product":{{"productFamily":"Compute Instance","attributes":{{"instanceType":"{instance_type}"}}}},"terms":{{"OnDemand":{{"SKU.T":{{"priceDimensions":{{"SKU.T.D":{{"unit":"Hrs","pricePerUnit":{{"USD":"{usd}"}}}}}}}}}}}}}}"#
        )
    }

    #[tokio::test]
    async fn sends_karpenters_filters_and_merges_every_page() {
        let seen = Seen::default();
        let p1 = GetProductsOutput::builder()
            .price_list(entry("m5.large", "0.0960000000"))
            .price_list(entry("c5.large", "0.0850000000"))
            .next_token("page-2")
            .build();
        let p2 = GetProductsOutput::builder()
            .price_list(entry("m6g.large", "0.0770000000"))
            .price_list(entry("x9.free", "0.0000000000"))
            .build();
        let (r1, r2) = (page(&seen, p1), page(&seen, p2));
        let api = client(&[&r1, &r2]);
        let got = api.on_demand_prices("eu-west-1").await.unwrap();

        assert_eq!(
            got,
            HashMap::from([
                ("m5.large".to_owned(), 0.096),
                ("c5.large".to_owned(), 0.085),
                ("m6g.large".to_owned(), 0.077),
            ])
        );
        assert_eq!(api.skipped_entries(), 0);
        let inputs = seen.lock().unwrap().clone();
        assert_eq!(inputs.len(), 2);
        assert_eq!(
            inputs
                .iter()
                .map(GetProductsInput::next_token)
                .collect::<Vec<_>>(),
            [None, Some("page-2")]
        );
        for input in &inputs {
            assert_eq!(input.service_code(), Some("AmazonEC2"));
            assert_eq!(input.max_results(), Some(100));
            let filters: Vec<(&str, &str, &str)> = input
                .filters()
                .iter()
                .map(|f| (f.r#type().as_str(), f.field(), f.value()))
                .collect();
            assert_eq!(
                filters,
                [
                    ("TERM_MATCH", "regionCode", "eu-west-1"),
                    ("TERM_MATCH", "serviceCode", "AmazonEC2"),
                    ("TERM_MATCH", "preInstalledSw", "NA"),
                    ("TERM_MATCH", "operatingSystem", "Linux"),
                    ("TERM_MATCH", "capacitystatus", "Used"),
                    ("TERM_MATCH", "marketoption", "OnDemand"),
                    ("TERM_MATCH", "tenancy", "Shared"),
                ]
            );
        }
    }

    #[tokio::test]
    async fn unreadable_entries_are_skipped_and_counted() {
        let seen = Seen::default();
        let p1 = GetProductsOutput::builder()
            .price_list("{truncated")
            .price_list(entry("m5.large", "0.096"))
            .price_list(r#"{"product":{"attributes":{}},"terms":{"OnDemand":{}}}"#)
            .build();
        let r = page(&seen, p1);
        let api = client(&[&r]);
        let got = api.on_demand_prices("us-east-1").await.unwrap();
        assert_eq!(got, HashMap::from([("m5.large".to_owned(), 0.096)]));
        assert_eq!(api.skipped_entries(), 2);
        // The count adds up over calls.
        let r = page(
            &seen,
            GetProductsOutput::builder().price_list("null").build(),
        );
        let api2 = client(&[&r]);
        assert!(api2.on_demand_prices("us-east-1").await.unwrap().is_empty());
        assert_eq!(api2.skipped_entries(), 1);
    }

    fn failing(code: &'static str) -> Rule {
        mock!(Client::get_products).then_error(move || {
            GetProductsError::generic(
                ErrorMetadata::builder()
                    .code(code)
                    .message("no luck")
                    .build(),
            )
        })
    }

    #[tokio::test]
    async fn errors_map_to_throttled_and_api() {
        let r = failing("ThrottlingException");
        let err = client(&[&r])
            .on_demand_prices("us-east-1")
            .await
            .unwrap_err();
        assert_eq!(
            err,
            Ec2Error::Throttled {
                operation: "GetProducts".into(),
                code: "ThrottlingException".into(),
                message: "no luck".into(),
            }
        );
        let r = failing("AccessDeniedException");
        let err = client(&[&r])
            .on_demand_prices("us-east-1")
            .await
            .unwrap_err();
        assert_eq!(
            err,
            Ec2Error::Api {
                operation: "GetProducts".into(),
                code: "AccessDeniedException".into(),
                message: "no luck".into(),
            }
        );
    }

    #[tokio::test]
    async fn an_answer_without_an_error_code_is_a_transport_failure() {
        let r = mock!(Client::get_products).then_http_response(|| {
            HttpResponse::new(
                502.try_into().expect("a valid status"),
                "<html>Bad Gateway</html>".into(),
            )
        });
        let err = client(&[&r])
            .on_demand_prices("us-east-1")
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Ec2Error::Transport { operation, .. } if operation == "GetProducts"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_failing_second_page_fails_the_call() {
        let seen = Seen::default();
        let ok = page(
            &seen,
            GetProductsOutput::builder()
                .price_list(entry("m5.large", "0.096"))
                .next_token("t2")
                .build(),
        );
        let bad = failing("ServiceUnavailableException");
        let err = client(&[&ok, &bad])
            .on_demand_prices("us-east-1")
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Ec2Error::Api { code, .. } if code == "ServiceUnavailableException"),
            "{err:?}"
        );
        assert_eq!(ok.num_calls(), 1);
        assert_eq!(bad.num_calls(), 1);
    }
}

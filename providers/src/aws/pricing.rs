//! On-demand prices from the AWS Pricing API when it answers, the embedded catalog's otherwise.
//!
//! As in Karpenter, the Pricing API's `GetProducts` is asked for the region's Linux, shared
//! tenancy, on-demand EC2 products ([`on_demand_filters`]); every `PriceList` entry is a JSON
//! document of its own, read by [`parse_price_list`]. [`OnDemandPrices`] keeps the last good
//! answer with its fetch time and prices every instance type from it, falling back to the
//! embedded catalog ([`Catalog::embedded`]) for types the API did not price and whenever the
//! API has never answered. It is refreshed every [`PRICING_TTL_SECS`] (12 hours); a failed
//! refresh keeps the previous prices and is tried again after [`PRICING_RETRY_SECS`].

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::catalog::Catalog;
use super::ec2api::Ec2Error;

/// How long a successful `GetProducts` answer is used before it is fetched again (Karpenter's
/// pricing controller runs every 12 hours).
pub const PRICING_TTL_SECS: i64 = 12 * 60 * 60;
/// How long after a failed refresh the Pricing API is tried again.
pub const PRICING_RETRY_SECS: i64 = 5 * 60;
/// The `ServiceCode` of EC2's products.
pub const SERVICE_CODE: &str = "AmazonEC2";
/// The currency prices are read in.
pub const CURRENCY: &str = "USD";

/// The `GetProducts` filters (all `TERM_MATCH`, as `(field, value)`) selecting `region`'s
/// Linux on-demand instance products without pre-installed software on shared tenancy:
/// Karpenter's set.
pub fn on_demand_filters(region: &str) -> Vec<(&'static str, String)> {
    [
        ("regionCode", region),
        ("serviceCode", SERVICE_CODE),
        ("preInstalledSw", "NA"),
        ("operatingSystem", "Linux"),
        ("capacitystatus", "Used"),
        ("marketoption", "OnDemand"),
        ("tenancy", "Shared"),
    ]
    .into_iter()
    .map(|(field, value)| (field, value.to_owned()))
    .collect()
}

/// The region whose Pricing API endpoint prices `region`'s instances in USD: `ap-south-1` for
/// Asia Pacific, `eu-central-1` for Europe, `us-east-1` for everything else in the commercial
/// partition. `None` where there is no such endpoint: GovCloud (no Pricing API) and China
/// (priced in CNY); those regions keep the embedded prices.
pub fn pricing_endpoint_region(region: &str) -> Option<&'static str> {
    if region.starts_with("us-gov-") || region.starts_with("cn-") {
        None
    } else if region.starts_with("ap-") {
        Some("ap-south-1")
    } else if region.starts_with("eu-") {
        Some("eu-central-1")
    } else {
        Some("us-east-1")
    }
}

/// The slice of the Pricing API the AWS provider reads.
#[async_trait]
pub trait PricingApi: Send + Sync {
    /// On-demand prices in USD per hour by instance type for `region` (e.g. `us-east-1`),
    /// read from every page of `GetProducts` with [`on_demand_filters`]. Entries that cannot
    /// be read are left out (and reported by the implementation); the call fails only when
    /// the API does.
    async fn on_demand_prices(&self, region: &str) -> Result<HashMap<String, f64>, Ec2Error>;
}

/// Why on-demand prices could not be read.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PricingError {
    /// A `PriceList` entry is not a JSON object.
    #[error("price list entry is not a JSON object: {message}")]
    Json {
        /// The parser's complaint.
        message: String,
    },
    /// A field the entry must have is absent (or not of the expected JSON type).
    #[error("price list entry has no {field}")]
    MissingField {
        /// Dotted path of the field, e.g. `product.attributes.instanceType`.
        field: String,
    },
    /// A field is present but its value cannot be used.
    #[error("price list entry field {field} is {value:?}: {reason}")]
    InvalidField {
        /// Dotted path of the field.
        field: String,
        /// The value found (JSON text for non-strings).
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The Pricing API call failed.
    #[error(transparent)]
    Api(#[from] Ec2Error),
    /// The Pricing API answered, but with no usable price at all.
    #[error("GetProducts returned no on-demand prices for region {region}")]
    NoPrices {
        /// The region asked for.
        region: String,
    },
}

/// Reads one `GetProducts` `PriceList` entry: its `product.attributes.instanceType` and the
/// USD price of its `terms.OnDemand.*.priceDimensions.*.pricePerUnit.USD`.
///
/// `Ok(None)` when the entry prices nothing in USD: no dimension has a `USD` price, or every
/// such price is zero (as Karpenter, which skips zero prices). When several dimensions carry
/// a price, the highest is taken, so the result does not depend on key order. Errors name the
/// field at fault.
pub fn parse_price_list(json: &str) -> Result<Option<(String, f64)>, PricingError> {
    let doc: Value = serde_json::from_str(json).map_err(|e| PricingError::Json {
        message: e.to_string(),
    })?;
    if !doc.is_object() {
        return Err(PricingError::Json {
            message: format!("found {}", kind(&doc)),
        });
    }
    let instance_type = doc
        .pointer("/product/attributes/instanceType")
        .and_then(Value::as_str)
        .ok_or_else(|| missing("product.attributes.instanceType"))?;
    if instance_type.trim().is_empty() {
        return Err(PricingError::InvalidField {
            field: "product.attributes.instanceType".into(),
            value: instance_type.into(),
            reason: "empty",
        });
    }
    let terms = doc
        .pointer("/terms/OnDemand")
        .and_then(Value::as_object)
        .ok_or_else(|| missing("terms.OnDemand"))?;
    let mut best: Option<f64> = None;
    for (term_id, term) in terms {
        let dims = term
            .get("priceDimensions")
            .and_then(Value::as_object)
            .ok_or_else(|| missing(format!("terms.OnDemand.{term_id}.priceDimensions")))?;
        for (dim_id, dim) in dims {
            let path = format!("terms.OnDemand.{term_id}.priceDimensions.{dim_id}.pricePerUnit");
            let per_unit = dim
                .get("pricePerUnit")
                .and_then(Value::as_object)
                .ok_or_else(|| missing(path.clone()))?;
            let Some(raw) = per_unit.get(CURRENCY) else {
                continue;
            };
            let field = format!("{path}.{CURRENCY}");
            let Some(text) = raw.as_str() else {
                return Err(PricingError::InvalidField {
                    field,
                    value: raw.to_string(),
                    reason: "not a string",
                });
            };
            let price: f64 = text
                .trim()
                .parse()
                .map_err(|_| PricingError::InvalidField {
                    field: field.clone(),
                    value: text.into(),
                    reason: "not a number",
                })?;
            if !price.is_finite() || price < 0.0 {
                return Err(PricingError::InvalidField {
                    field,
                    value: text.into(),
                    reason: "not a finite non-negative price",
                });
            }
            if price > 0.0 && best.is_none_or(|b| price > b) {
                best = Some(price);
            }
        }
    }
    Ok(best.map(|p| (instance_type.to_owned(), p)))
}

fn missing(field: impl Into<String>) -> PricingError {
    PricingError::MissingField {
        field: field.into(),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// What a call to [`OnDemandPrices::refresh`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refreshed {
    /// The prices were not due: nothing was called.
    Fresh,
    /// The API answered; this many instance types now have a live price.
    Updated {
        /// Instance types with a live price after the update.
        priced: usize,
    },
}

/// The price book: on-demand prices from the Pricing API's last good answer, with the
/// embedded catalog's for everything else. Cloning is cheap (the live prices are shared).
#[derive(Clone, Debug, Default)]
pub struct OnDemandPrices {
    /// Instance type → USD per hour, merged over every good answer so far.
    live: Arc<HashMap<String, f64>>,
    /// When the last good answer arrived (seconds since the Unix epoch).
    fetched_at: Option<i64>,
    /// When the API was last called, successfully or not.
    attempted_at: Option<i64>,
    /// Failed refreshes since the last good one.
    failures: u32,
}

impl OnDemandPrices {
    /// A book with only the embedded catalog's prices.
    pub fn new() -> Self {
        OnDemandPrices::default()
    }

    /// The on-demand price of `instance_type` in USD per hour: the Pricing API's when it
    /// priced the type, else the embedded catalog's, else `None`.
    pub fn price(&self, instance_type: &str) -> Option<f64> {
        self.live_price(instance_type).or_else(|| {
            Catalog::embedded()
                .get(instance_type)
                .map(|e| e.on_demand_price)
        })
    }

    /// The Pricing API's price of `instance_type`, if it priced it.
    pub fn live_price(&self, instance_type: &str) -> Option<f64> {
        self.live.get(instance_type).copied()
    }

    /// How many instance types have a live price.
    pub fn live_count(&self) -> usize {
        self.live.len()
    }

    /// When the Pricing API last answered, if it ever did.
    pub fn fetched_at(&self) -> Option<i64> {
        self.fetched_at
    }

    /// Failed refreshes since the last good one.
    pub fn consecutive_failures(&self) -> u32 {
        self.failures
    }

    /// Whether [`refresh`](Self::refresh) would call the API at `now`: never tried, or the
    /// last good answer is [`PRICING_TTL_SECS`] old and the last attempt (when it failed)
    /// [`PRICING_RETRY_SECS`] old.
    pub fn needs_refresh(&self, now: i64) -> bool {
        let Some(attempted) = self.attempted_at else {
            return true;
        };
        match self.fetched_at {
            Some(ok) if ok >= attempted => now - ok >= PRICING_TTL_SECS,
            // The last attempt failed.
            _ => now - attempted >= PRICING_RETRY_SECS,
        }
    }

    /// Fetches `region`'s prices from `api` when [due](Self::needs_refresh) at `now`. The
    /// answer is merged over the previous live prices (a type missing from one answer keeps
    /// its last live price, as in Karpenter). On failure, including an answer without a
    /// single price, the prices stay as they were, one warning is logged and the error
    /// returned.
    pub async fn refresh(
        &mut self,
        api: &dyn PricingApi,
        region: &str,
        now: i64,
    ) -> Result<Refreshed, PricingError> {
        if !self.needs_refresh(now) {
            return Ok(Refreshed::Fresh);
        }
        self.attempted_at = Some(now);
        let answer = match api.on_demand_prices(region).await {
            Ok(p) if p.is_empty() => Err(PricingError::NoPrices {
                region: region.to_owned(),
            }),
            Ok(p) => Ok(p),
            Err(e) => Err(PricingError::Api(e)),
        };
        match answer {
            Ok(prices) => {
                let mut merged = (*self.live).clone();
                merged.extend(prices);
                self.live = Arc::new(merged);
                self.fetched_at = Some(now);
                self.failures = 0;
                tracing::debug!(
                    region,
                    instance_types = self.live.len(),
                    "updated on-demand prices from the pricing API"
                );
                Ok(Refreshed::Updated {
                    priced: self.live.len(),
                })
            }
            Err(e) => {
                self.failures += 1;
                tracing::warn!(
                    error = %e,
                    region,
                    consecutive_failures = self.failures,
                    live_prices = self.live.len(),
                    retry_in_secs = PRICING_RETRY_SECS,
                    "refreshing on-demand prices failed; keeping the previous prices (static ones where none were fetched)"
                );
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The parser against real-shaped and broken entries, and the book's TTL and fallbacks
    //! over a scripted [`PricingApi`].

    use std::sync::Mutex;

    use super::*;

    /// A `GetProducts` entry shaped like the real ones (trimmed to what is read, plus some
    /// noise that is not).
    fn entry(instance_type: &str, usd: &str) -> String {
        serde_json::json!({
            "product": {
                "productFamily": "Compute Instance",
                "attributes": {"instanceType": instance_type, "regionCode": "us-east-1"},
                "sku": "ABC"
            },
            "serviceCode": "AmazonEC2",
            "terms": {"OnDemand": {"ABC.JRTCKXETXF": {
                "priceDimensions": {"ABC.JRTCKXETXF.6YS6EN2CT7": {
                    "unit": "Hrs",
                    "pricePerUnit": {"USD": usd}
                }},
                "sku": "ABC"
            }}}
        })
        .to_string()
    }

    #[test]
    fn a_real_shaped_entry_gives_its_type_and_usd_price() {
        assert_eq!(
            parse_price_list(&entry("m5.large", "0.0960000000")).unwrap(),
            Some(("m5.large".to_owned(), 0.096))
        );
    }

    #[test]
    fn zero_or_non_usd_prices_price_nothing() {
        assert_eq!(
            parse_price_list(&entry("m5.large", "0.0000000000")).unwrap(),
            None
        );
        let cny = entry("m5.large", "1").replace("\"USD\"", "\"CNY\"");
        assert_eq!(parse_price_list(&cny).unwrap(), None);
    }

    #[test]
    fn the_highest_of_several_dimensions_is_taken() {
        let doc = serde_json::json!({
            "product": {"attributes": {"instanceType": "c5.large"}},
            "terms": {"OnDemand": {
                "T1": {"priceDimensions": {"D1": {"pricePerUnit": {"USD": "0.05"}}}},
                "T2": {"priceDimensions": {
                    "D2": {"pricePerUnit": {"USD": "0.085"}},
                    "D3": {"pricePerUnit": {"USD": "0"}}
                }}
            }}
        });
        assert_eq!(
            parse_price_list(&doc.to_string()).unwrap(),
            Some(("c5.large".to_owned(), 0.085))
        );
    }

    #[test]
    fn errors_name_the_field_at_fault() {
        let err = |json: &str| parse_price_list(json).unwrap_err();
        assert!(matches!(err("{not json"), PricingError::Json { .. }));
        assert_eq!(
            err("[1]"),
            PricingError::Json {
                message: "found an array".into()
            }
        );
        assert_eq!(
            err(r#"{"product":{"attributes":{}},"terms":{"OnDemand":{}}}"#),
            PricingError::MissingField {
                field: "product.attributes.instanceType".into()
            }
        );
        assert_eq!(
            err(r#"{"product":{"attributes":{"instanceType":"m5.large"}},"terms":{}}"#),
            PricingError::MissingField {
                field: "terms.OnDemand".into()
            }
        );
        assert_eq!(
            err(&entry("m5.large", "cheap")),
            PricingError::InvalidField {
                field: "terms.OnDemand.ABC.JRTCKXETXF.priceDimensions.ABC.JRTCKXETXF.6YS6EN2CT7.pricePerUnit.USD".into(),
                value: "cheap".into(),
                reason: "not a number",
            }
        );
        for bad in ["-0.1", "NaN", "inf"] {
            let e = err(&entry("m5.large", bad));
            assert!(
                matches!(&e, PricingError::InvalidField { value, .. } if value == bad),
                "{e:?}"
            );
        }
        let e = err(&entry("", "0.1"));
        assert!(
            e.to_string().contains("product.attributes.instanceType"),
            "{e}"
        );
        let numeric = entry("m5.large", "0.1").replace("\"0.1\"", "0.1");
        assert!(
            err(&numeric).to_string().contains("pricePerUnit.USD"),
            "{}",
            err(&numeric)
        );
    }

    #[test]
    fn filters_are_karpenters_and_endpoints_follow_the_partition() {
        let f = on_demand_filters("eu-west-1");
        assert_eq!(f[0], ("regionCode", "eu-west-1".to_owned()));
        assert!(f.contains(&("tenancy", "Shared".to_owned())));
        assert_eq!(f.len(), 7);
        assert_eq!(pricing_endpoint_region("us-west-2"), Some("us-east-1"));
        assert_eq!(
            pricing_endpoint_region("ap-southeast-1"),
            Some("ap-south-1")
        );
        assert_eq!(pricing_endpoint_region("eu-west-1"), Some("eu-central-1"));
        assert_eq!(pricing_endpoint_region("us-gov-west-1"), None);
        assert_eq!(pricing_endpoint_region("cn-north-1"), None);
    }

    /// Answers from a script, one answer per call; the last answer repeats.
    struct Scripted(
        Mutex<Vec<Result<HashMap<String, f64>, Ec2Error>>>,
        Mutex<u32>,
    );

    impl Scripted {
        fn new(answers: Vec<Result<HashMap<String, f64>, Ec2Error>>) -> Self {
            Scripted(Mutex::new(answers), Mutex::new(0))
        }
        fn calls(&self) -> u32 {
            *self.1.lock().unwrap()
        }
    }

    #[async_trait]
    impl PricingApi for Scripted {
        async fn on_demand_prices(&self, region: &str) -> Result<HashMap<String, f64>, Ec2Error> {
            assert_eq!(region, "us-east-1");
            *self.1.lock().unwrap() += 1;
            let mut answers = self.0.lock().unwrap();
            if answers.len() > 1 {
                answers.remove(0)
            } else {
                answers[0].clone()
            }
        }
    }

    fn prices(pairs: &[(&str, f64)]) -> HashMap<String, f64> {
        pairs.iter().map(|(t, p)| (t.to_string(), *p)).collect()
    }

    fn down() -> Ec2Error {
        Ec2Error::Transport {
            operation: "GetProducts".into(),
            message: "connection refused".into(),
        }
    }

    #[test]
    fn a_new_book_prices_from_the_catalog() {
        let book = OnDemandPrices::new();
        assert_eq!(book.price("m5.large"), Some(0.096));
        assert_eq!(book.live_price("m5.large"), None);
        assert_eq!(book.price("zz9.large"), None);
        assert!(book.needs_refresh(0));
    }

    #[tokio::test]
    async fn live_prices_win_merge_and_survive_failures_until_the_ttl() {
        let api = Scripted::new(vec![
            Ok(prices(&[("m5.large", 0.5), ("zz9.large", 0.2)])),
            Err(down()),
            Ok(prices(&[("m5.large", 0.6)])),
        ]);
        let mut book = OnDemandPrices::new();
        let got = book.refresh(&api, "us-east-1", 100).await.unwrap();
        assert_eq!(got, Refreshed::Updated { priced: 2 });
        assert_eq!(book.price("m5.large"), Some(0.5));
        assert_eq!(book.price("zz9.large"), Some(0.2));
        assert_eq!(book.price("c5.large"), Some(0.085), "unpriced: static");
        assert_eq!(book.fetched_at(), Some(100));

        let before_ttl = 100 + PRICING_TTL_SECS - 1;
        assert_eq!(
            book.refresh(&api, "us-east-1", before_ttl).await,
            Ok(Refreshed::Fresh)
        );
        assert_eq!(api.calls(), 1);

        let at_ttl = 100 + PRICING_TTL_SECS;
        let err = book.refresh(&api, "us-east-1", at_ttl).await.unwrap_err();
        assert_eq!(err, PricingError::Api(down()));
        assert_eq!(book.price("m5.large"), Some(0.5), "last good price kept");
        assert_eq!(book.consecutive_failures(), 1);
        // A failure is retried after the retry interval, not at once.
        let soon = at_ttl + PRICING_RETRY_SECS - 1;
        assert_eq!(
            book.refresh(&api, "us-east-1", soon).await,
            Ok(Refreshed::Fresh)
        );
        assert_eq!(api.calls(), 2);

        let retry = at_ttl + PRICING_RETRY_SECS;
        let got = book.refresh(&api, "us-east-1", retry).await.unwrap();
        assert_eq!(got, Refreshed::Updated { priced: 2 });
        assert_eq!(book.price("m5.large"), Some(0.6));
        assert_eq!(
            book.price("zz9.large"),
            Some(0.2),
            "kept from the earlier answer"
        );
        assert_eq!(book.consecutive_failures(), 0);
        assert_eq!(api.calls(), 3);
    }

    #[tokio::test]
    async fn an_unreachable_or_empty_api_keeps_static_prices() {
        let api = Scripted::new(vec![Err(down())]);
        let mut book = OnDemandPrices::new();
        assert!(book.refresh(&api, "us-east-1", 0).await.is_err());
        assert_eq!(book.price("m5.large"), Some(0.096));
        assert_eq!(book.fetched_at(), None);

        let api = Scripted::new(vec![Ok(HashMap::new())]);
        let mut book = OnDemandPrices::new();
        assert_eq!(
            book.refresh(&api, "us-east-1", 0).await,
            Err(PricingError::NoPrices {
                region: "us-east-1".into()
            })
        );
        assert_eq!(book.live_count(), 0);
        assert_eq!(book.price("m5.large"), Some(0.096));
    }
}

//! [`SsmApi`] over the AWS SDK: `GetParameters` in chunks of at most 10 names, SSM's limit.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use aws_sdk_ssm::error::ProvideErrorMetadata;

use super::ec2api::{Ec2Error, classify};
use super::ssm::SsmApi;

/// Most names `GetParameters` accepts in one call.
pub const GET_PARAMETERS_CHUNK: usize = 10;

/// [`SsmApi`] over [`aws_sdk_ssm::Client`].
#[derive(Clone, Debug)]
pub struct SdkSsm {
    client: aws_sdk_ssm::Client,
}

impl SdkSsm {
    /// Wraps an SDK client.
    pub fn new(client: aws_sdk_ssm::Client) -> Self {
        SdkSsm { client }
    }
}

#[async_trait]
impl SsmApi for SdkSsm {
    /// Names are deduplicated and sent sorted, [`GET_PARAMETERS_CHUNK`] per call, one call after
    /// the other; the first failing call fails the whole lookup. `InvalidParameters` (names
    /// that do not exist) are left out of the map, as are answers without a name or value.
    async fn get_parameters(&self, names: &[String]) -> Result<BTreeMap<String, String>, Ec2Error> {
        let unique: Vec<String> = names
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut values = BTreeMap::new();
        for chunk in unique.chunks(GET_PARAMETERS_CHUNK) {
            let out = self
                .client
                .get_parameters()
                .set_names(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| classify("GetParameters", e.code(), e.message(), &e))?;
            for p in out.parameters() {
                if let (Some(name), Some(value)) = (p.name(), p.value()) {
                    values.insert(name.to_owned(), value.to_owned());
                }
            }
        }
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    //! `SdkSsm` against `aws-smithy-mocks`: chunking, the names sent, and error mapping.

    use std::sync::{Arc, Mutex};

    use aws_sdk_ssm::Client;

    use aws_sdk_ssm::error::ErrorMetadata;
    use aws_sdk_ssm::operation::get_parameters::{GetParametersError, GetParametersOutput};
    use aws_sdk_ssm::types::Parameter;
    use aws_smithy_mocks::{Rule, mock};

    use super::*;

    /// A client answering from `rules` in order; retries off so one rule answers one call.
    fn client(rules: &[&Rule]) -> SdkSsm {
        SdkSsm::new(crate::aws::sequential_mock_client!(aws_sdk_ssm, rules))
    }

    type Seen = Arc<Mutex<Vec<Vec<String>>>>;

    /// A rule recording the names it was asked for and answering every name but the invalid
    /// ones with `ami-<last path segment>`.
    fn answering(seen: &Seen, invalid: &'static [&'static str]) -> Rule {
        let sink = seen.clone();
        mock!(Client::get_parameters)
            .match_requests(move |input| {
                sink.lock().unwrap().push(input.names().to_vec());
                true
            })
            .then_compute_output(move |input| {
                let mut out = GetParametersOutput::builder();
                for name in input.names() {
                    if invalid.contains(&name.as_str()) {
                        out = out.invalid_parameters(name);
                    } else {
                        let id = name.rsplit('/').next().unwrap_or_default();
                        out = out.parameters(
                            Parameter::builder()
                                .name(name)
                                .value(format!("ami-{id}"))
                                .build(),
                        );
                    }
                }
                out.build()
            })
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("/aws/service/p{i:02}")).collect()
    }

    #[tokio::test]
    async fn splits_into_chunks_of_ten_and_drops_invalid_names() {
        let seen = Seen::default();
        let (r1, r2, r3) = (
            answering(&seen, &[]),
            answering(&seen, &["/aws/service/p13"]),
            answering(&seen, &[]),
        );
        let api = client(&[&r1, &r2, &r3]);
        let mut asked = names(23);
        asked.push("/aws/service/p05".to_owned()); // a duplicate is asked for once
        let got = api.get_parameters(&asked).await.unwrap();

        let calls = seen.lock().unwrap().clone();
        assert_eq!(calls.iter().map(Vec::len).collect::<Vec<_>>(), [10, 10, 3]);
        assert_eq!(calls[0], names(10));
        assert_eq!(calls[2], names(23)[20..]);
        assert_eq!(got.len(), 22);
        assert_eq!(got["/aws/service/p00"], "ami-p00");
        assert_eq!(got["/aws/service/p22"], "ami-p22");
        assert!(!got.contains_key("/aws/service/p13"));
    }

    #[tokio::test]
    async fn no_names_make_no_call() {
        let api = client(&[]);
        assert!(api.get_parameters(&[]).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn answers_without_value_are_skipped() {
        let rule = mock!(Client::get_parameters).then_output(|| {
            GetParametersOutput::builder()
                .parameters(Parameter::builder().name("/a").build())
                .parameters(Parameter::builder().value("ami-orphan").build())
                .parameters(Parameter::builder().name("/b").value("ami-b").build())
                .build()
        });
        let got = client(&[&rule])
            .get_parameters(&["/a".into(), "/b".into()])
            .await
            .unwrap();
        assert_eq!(got, BTreeMap::from([("/b".into(), "ami-b".into())]));
    }

    fn failing(code: &'static str) -> Rule {
        mock!(Client::get_parameters).then_error(move || {
            GetParametersError::generic(
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
        let err = client(&[&r]).get_parameters(&names(1)).await.unwrap_err();
        assert_eq!(
            err,
            Ec2Error::Throttled {
                operation: "GetParameters".into(),
                code: "ThrottlingException".into(),
                message: "no luck".into(),
            }
        );
        let r = failing("AccessDeniedException");
        let err = client(&[&r]).get_parameters(&names(1)).await.unwrap_err();
        assert_eq!(
            err,
            Ec2Error::Api {
                operation: "GetParameters".into(),
                code: "AccessDeniedException".into(),
                message: "no luck".into(),
            }
        );
    }

    #[tokio::test]
    async fn a_failing_second_chunk_fails_the_lookup() {
        let seen = Seen::default();
        let ok = answering(&seen, &[]);
        let bad = failing("ThrottlingException");
        let err = client(&[&ok, &bad])
            .get_parameters(&names(12))
            .await
            .unwrap_err();
        assert!(matches!(err, Ec2Error::Throttled { .. }));
        assert_eq!(ok.num_calls(), 1);
        assert_eq!(bad.num_calls(), 1);
    }
}

//! `SdkEks` against `aws-smithy-mocks` (the request sent, the answer read, error mapping from
//! EKS's wire errors), and the pure choice of the endpoint nodes join.

use std::sync::{Arc, Mutex};

use aws_sdk_eks::Client;
use aws_sdk_eks::config::http::HttpResponse;
use aws_sdk_eks::operation::describe_cluster::DescribeClusterOutput;
use aws_sdk_eks::types::{Certificate, Cluster, ClusterStatus};
use aws_smithy_mocks::{Rule, mock};

use super::*;

fn client(rules: &[&Rule]) -> SdkEks {
    SdkEks::new(crate::aws::sequential_mock_client!(aws_sdk_eks, rules))
}

/// An EKS error as it comes over the wire (restJson1: the code in `x-amzn-errortype`).
fn wire_error(status: u16, code: &'static str, message: &'static str) -> Rule {
    mock!(Client::describe_cluster).then_http_response(move || {
        let mut response = HttpResponse::new(
            status.try_into().expect("a valid status"),
            format!(r#"{{"message":"{message}"}}"#).into(),
        );
        response.headers_mut().insert("x-amzn-errortype", code);
        response
            .headers_mut()
            .insert("content-type", "application/json");
        response
    })
}

#[tokio::test]
async fn describe_cluster_asks_for_the_named_cluster_and_reads_endpoint_ca_and_status() {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let sink = asked.clone();
    let rule = mock!(Client::describe_cluster)
        .match_requests(move |input| {
            sink.lock().unwrap().push(input.name().map(str::to_owned));
            true
        })
        .then_output(|| {
            DescribeClusterOutput::builder()
                .cluster(
                    Cluster::builder()
                        .name("prod")
                        .endpoint("https://ABCD.gr7.us-east-1.eks.amazonaws.com")
                        .certificate_authority(Certificate::builder().data("LS0tQ0E=").build())
                        .status(ClusterStatus::Active)
                        .build(),
                )
                .build()
        });
    let got = client(&[&rule]).describe_cluster("prod").await.unwrap();
    assert_eq!(*asked.lock().unwrap(), [Some("prod".to_owned())]);
    assert_eq!(
        got,
        DescribedCluster {
            endpoint: Some("https://ABCD.gr7.us-east-1.eks.amazonaws.com".into()),
            ca_bundle: Some("LS0tQ0E=".into()),
            status: Some("ACTIVE".into()),
        }
    );
}

#[tokio::test]
async fn a_wire_answer_is_deserialized() {
    let rule = mock!(Client::describe_cluster).then_http_response(|| {
        let mut response = HttpResponse::new(
            200.try_into().expect("a valid status"),
            r#"{"cluster":{"name":"prod","status":"CREATING","certificateAuthority":{}}}"#.into(),
        );
        response
            .headers_mut()
            .insert("content-type", "application/json");
        response
    });
    let got = client(&[&rule]).describe_cluster("prod").await.unwrap();
    assert_eq!(
        got,
        DescribedCluster {
            endpoint: None,
            ca_bundle: None,
            status: Some("CREATING".into()),
        }
    );
}

#[tokio::test]
async fn access_denied_and_resource_not_found_map_to_api_errors_with_their_codes() {
    let denied = wire_error(
        403,
        "AccessDeniedException",
        "User is not authorized to perform: eks:DescribeCluster",
    );
    let missing = wire_error(
        404,
        "ResourceNotFoundException",
        "No cluster found for name: prod.",
    );
    let eks = client(&[&denied, &missing]);
    assert_eq!(
        eks.describe_cluster("prod").await.unwrap_err(),
        Ec2Error::Api {
            operation: "DescribeCluster".into(),
            code: "AccessDeniedException".into(),
            message: "User is not authorized to perform: eks:DescribeCluster".into(),
        }
    );
    assert_eq!(
        eks.describe_cluster("prod").await.unwrap_err(),
        Ec2Error::Api {
            operation: "DescribeCluster".into(),
            code: "ResourceNotFoundException".into(),
            message: "No cluster found for name: prod.".into(),
        }
    );
}

#[tokio::test]
async fn throttling_and_codeless_answers_map_to_throttled_and_transport() {
    let throttled = wire_error(429, "ThrottlingException", "Rate exceeded");
    let gateway = mock!(Client::describe_cluster).then_http_response(|| {
        HttpResponse::new(
            502.try_into().expect("a valid status"),
            "<html>Bad Gateway</html>".into(),
        )
    });
    let eks = client(&[&throttled, &gateway]);
    assert!(matches!(
        eks.describe_cluster("prod").await.unwrap_err(),
        Ec2Error::Throttled { code, .. } if code == "ThrottlingException"
    ));
    assert!(matches!(
        eks.describe_cluster("prod").await.unwrap_err(),
        Ec2Error::Transport { operation, .. } if operation == "DescribeCluster"
    ));
}

const IN_CLUSTER_URL: &str = "https://10.100.0.1";
const EKS_URL: &str = "https://ABCD.gr7.us-east-1.eks.amazonaws.com";

fn described(endpoint: Option<&str>, ca: Option<&str>) -> DescribedCluster {
    DescribedCluster {
        endpoint: endpoint.map(str::to_owned),
        ca_bundle: ca.map(str::to_owned),
        status: Some("ACTIVE".into()),
    }
}

fn denied() -> Ec2Error {
    Ec2Error::Api {
        operation: "DescribeCluster".into(),
        code: "AccessDeniedException".into(),
        message: "not authorized".into(),
    }
}

#[test]
fn the_setting_wins_and_describe_cluster_is_not_needed() {
    let got = resolve_cluster_endpoint(
        Some("https://api.example.com/"),
        IN_CLUSTER_URL,
        Some("S0NB"),
        true,
        None,
    )
    .unwrap();
    assert_eq!(
        got,
        ClusterEndpoint {
            endpoint: "https://api.example.com".into(),
            ca_bundle: Some("S0NB".into()),
        }
    );
}

#[test]
fn unset_uses_describe_cluster_never_the_in_cluster_address() {
    let got = resolve_cluster_endpoint(
        None,
        IN_CLUSTER_URL,
        Some("S0NB"),
        true,
        Some(Ok(described(Some(EKS_URL), Some("RUtT")))),
    )
    .unwrap();
    // The kubeconfig's CA is kept when it has one.
    assert_eq!(
        got,
        ClusterEndpoint {
            endpoint: EKS_URL.into(),
            ca_bundle: Some("S0NB".into()),
        }
    );
    // Without one, DescribeCluster's CA is taken.
    let got = resolve_cluster_endpoint(
        None,
        IN_CLUSTER_URL,
        None,
        true,
        Some(Ok(described(Some(EKS_URL), Some("RUtT")))),
    )
    .unwrap();
    assert_eq!(got.ca_bundle.as_deref(), Some("RUtT"));
}

#[test]
fn a_failed_describe_cluster_refuses_naming_cluster_endpoint_and_the_failure() {
    let err = resolve_cluster_endpoint(None, IN_CLUSTER_URL, None, true, Some(Err(denied())))
        .unwrap_err();
    assert_eq!(
        err,
        EndpointError::DescribeFailed {
            error: denied(),
            kubeconfig_url: IN_CLUSTER_URL.into(),
            in_cluster: true,
        }
    );
    let text = err.to_string();
    for part in [
        "CLUSTER_ENDPOINT",
        "AccessDeniedException",
        "eks:DescribeCluster",
        "in-cluster Service address",
        IN_CLUSTER_URL,
    ] {
        assert!(text.contains(part), "{part:?} missing from {text:?}");
    }
    // Out of a cluster too: the kubeconfig's URL is no fallback.
    let err = resolve_cluster_endpoint(
        None,
        "https://127.0.0.1:6443",
        None,
        false,
        Some(Err(denied())),
    )
    .unwrap_err();
    assert!(matches!(
        err,
        EndpointError::DescribeFailed {
            in_cluster: false,
            ..
        }
    ));
    assert!(err.to_string().contains("CLUSTER_ENDPOINT"), "{err}");
}

#[test]
fn a_cluster_without_an_endpoint_yet_refuses_with_its_status() {
    for endpoint in [None, Some("")] {
        let mut creating = described(endpoint, Some("RUtT"));
        creating.status = Some("CREATING".into());
        let err = resolve_cluster_endpoint(None, IN_CLUSTER_URL, None, true, Some(Ok(creating)))
            .unwrap_err();
        assert_eq!(
            err,
            EndpointError::NoEndpoint {
                status: Some("CREATING".into()),
                kubeconfig_url: IN_CLUSTER_URL.into(),
                in_cluster: true,
            }
        );
        let text = err.to_string();
        assert!(
            text.contains("CLUSTER_ENDPOINT") && text.contains("CREATING"),
            "{text}"
        );
    }
}

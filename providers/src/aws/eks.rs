//! The slice of EKS the controller calls (`DescribeCluster`, for the API server endpoint and CA
//! nodes join) behind a trait, and the pure choice of that endpoint.
//!
//! Karpenter resolves the endpoint the same way: `CLUSTER_ENDPOINT` if set, else
//! `DescribeCluster(CLUSTER_NAME).cluster.endpoint`, and it refuses to start when that fails.
//! The kubeconfig's URL is never a fallback: in a pod it is the `kubernetes` Service address
//! (e.g. `https://10.100.0.1`), which a node that has not joined yet cannot reach.

use async_trait::async_trait;
use aws_sdk_eks::error::ProvideErrorMetadata;

use crate::aws::ec2api::{Ec2Error, classify};

/// What `DescribeCluster` says about the cluster's API server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DescribedCluster {
    /// `cluster.endpoint`, e.g. `https://ABCD.gr7.us-east-1.eks.amazonaws.com`; EKS leaves it
    /// out while the cluster is being created.
    pub endpoint: Option<String>,
    /// `cluster.certificateAuthority.data`: base64 of the PEM CA bundle.
    pub ca_bundle: Option<String>,
    /// `cluster.status`, e.g. `ACTIVE`, `CREATING`.
    pub status: Option<String>,
}

/// The EKS operations the controller uses. Errors reuse [`Ec2Error`] (throttling / API error
/// with a code / transport), like [`IamApi`](crate::aws::cloud::IamApi).
#[async_trait]
pub trait EksApi: Send + Sync {
    /// `DescribeCluster` of cluster `name`.
    async fn describe_cluster(&self, name: &str) -> Result<DescribedCluster, Ec2Error>;
}

/// [`EksApi`] over the AWS SDK.
#[derive(Clone, Debug)]
pub struct SdkEks {
    client: aws_sdk_eks::Client,
}

impl SdkEks {
    /// Wraps an SDK client.
    pub fn new(client: aws_sdk_eks::Client) -> Self {
        SdkEks { client }
    }
}

#[async_trait]
impl EksApi for SdkEks {
    async fn describe_cluster(&self, name: &str) -> Result<DescribedCluster, Ec2Error> {
        let out = self
            .client
            .describe_cluster()
            .name(name)
            .send()
            .await
            .map_err(|e| classify("DescribeCluster", e.code(), e.message(), &e))?;
        let Some(cluster) = out.cluster() else {
            return Ok(DescribedCluster::default());
        };
        Ok(DescribedCluster {
            endpoint: cluster.endpoint().map(str::to_owned),
            ca_bundle: cluster
                .certificate_authority()
                .and_then(|c| c.data())
                .map(str::to_owned),
            status: cluster.status().map(|s| s.as_str().to_owned()),
        })
    }
}

/// The API server nodes join: its URL and, when known, its CA (base64 of the PEM bundle).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterEndpoint {
    /// `https://…`, without a trailing slash.
    pub endpoint: String,
    /// Base64 of the PEM CA bundle.
    pub ca_bundle: Option<String>,
}

/// Why no endpoint for nodes could be chosen.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum EndpointError {
    /// `DescribeCluster` failed (not allowed, no such cluster, no answer).
    #[error(
        "CLUSTER_ENDPOINT is not set and EKS DescribeCluster failed ({error}); set CLUSTER_ENDPOINT \
         to the API server URL nodes join, or allow eks:DescribeCluster on the cluster. {}",
        not_the_kubeconfig(kubeconfig_url, *in_cluster)
    )]
    DescribeFailed {
        /// The failure.
        error: Ec2Error,
        /// The kubeconfig's URL, which was not used.
        kubeconfig_url: String,
        /// Whether the controller runs in a pod (the URL is then the in-cluster Service).
        in_cluster: bool,
    },
    /// `DescribeCluster` answered without an endpoint (the cluster is still being created).
    #[error(
        "CLUSTER_ENDPOINT is not set and EKS DescribeCluster returned no endpoint (cluster status \
         {}); set CLUSTER_ENDPOINT or wait until the cluster is ACTIVE. {}",
        status.as_deref().unwrap_or("unknown"),
        not_the_kubeconfig(kubeconfig_url, *in_cluster)
    )]
    NoEndpoint {
        /// `cluster.status`, when EKS said.
        status: Option<String>,
        /// The kubeconfig's URL, which was not used.
        kubeconfig_url: String,
        /// Whether the controller runs in a pod.
        in_cluster: bool,
    },
}

/// Why the kubeconfig's URL is not a fallback, for the error message.
fn not_the_kubeconfig(url: &str, in_cluster: bool) -> String {
    if in_cluster {
        format!(
            "The kubeconfig's {url} is the in-cluster Service address, which nodes cannot reach."
        )
    } else {
        format!("The kubeconfig's {url} is not used: nothing says nodes can reach it.")
    }
}

/// Chooses the endpoint nodes join: `setting` (`CLUSTER_ENDPOINT`) when given, else the one
/// `DescribeCluster` answered (`described`, `None` when it was not called). The CA bundle is the
/// kubeconfig's (`kubeconfig_ca`), else DescribeCluster's. `kubeconfig_url` and `in_cluster`
/// only explain the error: the kubeconfig's URL is never used, as Karpenter never uses it.
pub fn resolve_cluster_endpoint(
    setting: Option<&str>,
    kubeconfig_url: &str,
    kubeconfig_ca: Option<&str>,
    in_cluster: bool,
    described: Option<Result<DescribedCluster, Ec2Error>>,
) -> Result<ClusterEndpoint, EndpointError> {
    let trimmed = |url: &str| url.trim_end_matches('/').to_owned();
    let described = match described {
        None => None,
        Some(Ok(d)) => Some(d),
        Some(Err(error)) if setting.is_none() => {
            return Err(EndpointError::DescribeFailed {
                error,
                kubeconfig_url: kubeconfig_url.to_owned(),
                in_cluster,
            });
        }
        // The setting wins; a failed lookup only loses its CA.
        Some(Err(_)) => None,
    };
    let ca_bundle = kubeconfig_ca
        .map(str::to_owned)
        .or_else(|| described.as_ref().and_then(|d| d.ca_bundle.clone()))
        .filter(|ca| !ca.is_empty());
    if let Some(url) = setting {
        return Ok(ClusterEndpoint {
            endpoint: trimmed(url),
            ca_bundle,
        });
    }
    match described {
        Some(DescribedCluster {
            endpoint: Some(url),
            ..
        }) if !url.is_empty() => Ok(ClusterEndpoint {
            endpoint: trimmed(&url),
            ca_bundle,
        }),
        other => Err(EndpointError::NoEndpoint {
            status: other.and_then(|d| d.status),
            kubeconfig_url: kubeconfig_url.to_owned(),
            in_cluster,
        }),
    }
}

#[cfg(test)]
#[path = "eks_tests.rs"]
mod tests;

//! The slice of SSM the AWS provider reads: the public EKS/Bottlerocket AMI parameters that AMI
//! aliases (`al2023@latest`) and `ssmParameter` selector terms resolve through.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::ec2api::Ec2Error;

/// `GetParameters` over plain strings.
#[async_trait]
pub trait SsmApi: Send + Sync {
    /// Values of the parameters that exist, by name. Names SSM reports as invalid (not found)
    /// are simply absent from the map; at most 10 names go in one call, so the implementation
    /// splits longer lists.
    async fn get_parameters(&self, names: &[String]) -> Result<BTreeMap<String, String>, Ec2Error>;
}

//! [`SdkEc2`](super::SdkEc2)'s calls besides `CreateFleet`: plain structs in, SDK builders out,
//! SDK outputs back to plain structs, every page read.
//!
//! Describe calls go through the SDK paginators (`.into_paginator().items().send()`), which
//! follow `NextToken` until EC2 stops sending one; an error on any page fails the whole call
//! rather than returning a partial list. Conversions live in `sdk_convert.rs`.

use aws_sdk_ec2::Client;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::primitives::DateTime;
use aws_sdk_ec2::types as sdk;

use super::{
    Ec2Error, Instance, InstanceQuery, InstanceTypeInfo, LaunchTemplateRequest,
    LaunchTemplateSummary, SpotPrice, TerminatedInstance, classify,
};
use crate::aws::resolve::{Filter, Image, ImageQuery, SecurityGroup, Subnet};

#[path = "sdk_convert.rs"]
mod convert;

/// `MaxResults` of `DescribeImages`, `DescribeInstanceTypeOfferings` and
/// `DescribeSpotPriceHistory`: their maximum, so a region takes few calls.
const PAGE_SIZE: i32 = 1000;
/// `MaxResults` of `DescribeInstanceTypes` (its maximum is 100).
const INSTANCE_TYPES_PAGE_SIZE: i32 = 100;
/// The only product Karpenter launches.
const SPOT_PRODUCT: &str = "Linux/UNIX";

/// Maps an SDK error of `operation` with the shared [`classify`].
fn api_error<E: ProvideErrorMetadata + std::fmt::Debug>(
    operation: &'static str,
) -> impl Fn(E) -> Ec2Error {
    move |e| classify(operation, e.code(), e.message(), &e)
}

fn filters(f: &[Filter]) -> Option<Vec<sdk::Filter>> {
    // No filters means no `Filters` parameter at all (EC2 refuses an empty list).
    (!f.is_empty()).then(|| convert::to_sdk_filters(f))
}

pub(super) async fn describe_subnets(c: &Client, f: &[Filter]) -> Result<Vec<Subnet>, Ec2Error> {
    let items = c
        .describe_subnets()
        .set_filters(filters(f))
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(api_error("DescribeSubnets"))?;
    Ok(items.iter().filter_map(convert::subnet).collect())
}

pub(super) async fn describe_security_groups(
    c: &Client,
    f: &[Filter],
) -> Result<Vec<SecurityGroup>, Ec2Error> {
    let items = c
        .describe_security_groups()
        .set_filters(filters(f))
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(api_error("DescribeSecurityGroups"))?;
    Ok(items.iter().filter_map(convert::security_group).collect())
}

/// `IncludeDeprecated=true` as in Karpenter: deprecated images are still candidates (the
/// resolver prefers non-deprecated ones and marks them). A query with neither filters nor
/// owners is not sent: it would list every public image in the region.
pub(super) async fn describe_images(
    c: &Client,
    q: &ImageQuery,
    now: i64,
) -> Result<Vec<Image>, Ec2Error> {
    if q.filters.is_empty() && q.owners.is_empty() {
        return Ok(Vec::new());
    }
    let owners = (!q.owners.is_empty()).then(|| q.owners.clone());
    let items = c
        .describe_images()
        .set_owners(owners)
        .set_filters(filters(&q.filters))
        .include_deprecated(true)
        .into_paginator()
        .page_size(PAGE_SIZE)
        .items()
        .send()
        .try_collect()
        .await
        .map_err(api_error("DescribeImages"))?;
    Ok(items
        .iter()
        .filter_map(|i| convert::image(i, now))
        .collect())
}

pub(super) async fn describe_instance_types(c: &Client) -> Result<Vec<InstanceTypeInfo>, Ec2Error> {
    let items = c
        .describe_instance_types()
        .into_paginator()
        .page_size(INSTANCE_TYPES_PAGE_SIZE)
        .items()
        .send()
        .try_collect()
        .await
        .map_err(api_error("DescribeInstanceTypes"))?;
    Ok(items.iter().filter_map(convert::instance_type).collect())
}

pub(super) async fn describe_instance_type_offerings(
    c: &Client,
) -> Result<Vec<(String, String)>, Ec2Error> {
    let items = c
        .describe_instance_type_offerings()
        .location_type(sdk::LocationType::AvailabilityZone)
        .into_paginator()
        .page_size(PAGE_SIZE)
        .items()
        .send()
        .try_collect()
        .await
        .map_err(api_error("DescribeInstanceTypeOfferings"))?;
    Ok(items.iter().filter_map(convert::offering).collect())
}

/// Without `EndTime` EC2 returns the price in effect at `StartTime` and every change since.
pub(super) async fn describe_spot_price_history(
    c: &Client,
    start: i64,
) -> Result<Vec<SpotPrice>, Ec2Error> {
    let items = c
        .describe_spot_price_history()
        .product_descriptions(SPOT_PRODUCT)
        .start_time(DateTime::from_secs(start))
        .into_paginator()
        .page_size(PAGE_SIZE)
        .items()
        .send()
        .try_collect()
        .await
        .map_err(api_error("DescribeSpotPriceHistory"))?;
    Ok(items.iter().filter_map(convert::spot_price).collect())
}

/// An empty id list is answered locally with no instances: sent as is, EC2 would describe
/// every instance of the account.
pub(super) async fn describe_instances(
    c: &Client,
    q: &InstanceQuery,
) -> Result<Vec<Instance>, Ec2Error> {
    let call = match q {
        InstanceQuery::Ids(ids) if ids.is_empty() => return Ok(Vec::new()),
        InstanceQuery::Ids(ids) => c.describe_instances().set_instance_ids(Some(ids.clone())),
        InstanceQuery::Filters(f) => c.describe_instances().set_filters(filters(f)),
    };
    let reservations = call
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(api_error("DescribeInstances"))?;
    Ok(reservations
        .iter()
        .flat_map(|r| r.instances())
        .filter_map(convert::instance)
        .collect())
}

/// An empty id list is answered locally (EC2 would refuse it).
pub(super) async fn terminate_instances(
    c: &Client,
    ids: &[String],
) -> Result<Vec<TerminatedInstance>, Ec2Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let out = c
        .terminate_instances()
        .set_instance_ids(Some(ids.to_vec()))
        .send()
        .await
        .map_err(api_error("TerminateInstances"))?;
    Ok(out
        .terminating_instances()
        .iter()
        .filter_map(convert::terminated)
        .collect())
}

/// Returns `LaunchTemplate.LaunchTemplateId`; an answer without one is a
/// [`Ec2Error::Transport`] (the template may exist, but the caller cannot name it by id).
pub(super) async fn create_launch_template(
    c: &Client,
    r: &LaunchTemplateRequest,
) -> Result<String, Ec2Error> {
    const OPERATION: &str = "CreateLaunchTemplate";
    let out = c
        .create_launch_template()
        .launch_template_name(&r.name)
        .launch_template_data(convert::launch_template_data(r))
        .set_tag_specifications(convert::launch_template_tags(&r.tags).map(|t| vec![t]))
        .send()
        .await
        .map_err(api_error(OPERATION))?;
    out.launch_template()
        .and_then(|t| t.launch_template_id())
        .map(str::to_owned)
        .ok_or_else(|| Ec2Error::Transport {
            operation: OPERATION.to_owned(),
            message: format!("response has no LaunchTemplateId (template {:?})", r.name),
        })
}

pub(super) async fn describe_launch_templates(
    c: &Client,
    f: &[Filter],
) -> Result<Vec<LaunchTemplateSummary>, Ec2Error> {
    let items = c
        .describe_launch_templates()
        .set_filters(filters(f))
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(api_error("DescribeLaunchTemplates"))?;
    Ok(items.iter().filter_map(convert::launch_template).collect())
}

pub(super) async fn delete_launch_template(c: &Client, name: &str) -> Result<(), Ec2Error> {
    c.delete_launch_template()
        .launch_template_name(name)
        .send()
        .await
        .map_err(api_error("DeleteLaunchTemplate"))?;
    Ok(())
}

pub(super) async fn create_tags(
    c: &Client,
    resource_ids: &[String],
    tags: &std::collections::BTreeMap<String, String>,
) -> Result<(), Ec2Error> {
    let mut call = c.create_tags().set_resources(Some(resource_ids.to_vec()));
    for (k, v) in tags {
        call = call.tags(aws_sdk_ec2::types::Tag::builder().key(k).value(v).build());
    }
    call.send().await.map_err(api_error("CreateTags"))?;
    Ok(())
}

#[cfg(test)]
#[path = "sdk_impl_tests.rs"]
mod tests;

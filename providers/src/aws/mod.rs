//! AWS provider: EC2NodeClass API types, the embedded instance-type catalog and the pure maths
//! that turns EC2 instance-type facts into schedulable instance types.

pub mod batcher;
pub mod catalog;
pub mod cloud;
pub mod ec2api;
pub mod fleet;
pub mod instance_types;
pub mod nodeclass;
pub mod pricing;
pub mod pricing_sdk;
pub mod resolve;
pub mod ssm;
pub mod ssm_sdk;
pub mod userdata;

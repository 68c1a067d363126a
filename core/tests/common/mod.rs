//! Shared by the scenario tests: a fixed EC2-like instance type catalog and loading a scenario
//! file into a snapshot.

#![allow(dead_code)]

use std::path::Path;

use k8s_openapi::jiff::Timestamp;
use karpenter_core::api;
use karpenter_core::disruption::{DisruptionInput, DisruptionOptions};
use karpenter_core::ingest::disruption::disruption_input;
use karpenter_core::ingest::{Manifest, SnapshotBuild, build_snapshot, parse_manifests};
use karpenter_core::instance_type::{InstanceType, Offering};
use karpenter_core::labels::{self, aws};
use karpenter_core::requirements::{Requirement, Requirements};
use karpenter_core::resources::{CPU, EPHEMERAL_STORAGE, MEMORY, NVIDIA_GPU, PODS, Resources};
use karpenter_core::snapshot::Snapshot;

const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];
const GIB: i64 = 1 << 30;
const MIB: i64 = 1 << 20;
/// Spot offerings cost this share of on-demand.
const SPOT_DISCOUNT: f64 = 0.4;

/// One EC2 instance type: name, arch, vCPU, memory GiB, max pods (ENI limit), on-demand $/h
/// (us-east-1 list price), NVIDIA GPUs.
pub struct Ec2 {
    pub name: &'static str,
    pub arch: &'static str,
    pub vcpu: i64,
    pub mem_gib: i64,
    pub max_pods: i64,
    pub price: f64,
    pub gpus: i64,
}

pub const TYPES: &[Ec2] = &[
    Ec2 {
        name: "t3.medium",
        arch: "amd64",
        vcpu: 2,
        mem_gib: 4,
        max_pods: 17,
        price: 0.0416,
        gpus: 0,
    },
    Ec2 {
        name: "t3.large",
        arch: "amd64",
        vcpu: 2,
        mem_gib: 8,
        max_pods: 35,
        price: 0.0832,
        gpus: 0,
    },
    Ec2 {
        name: "m5.large",
        arch: "amd64",
        vcpu: 2,
        mem_gib: 8,
        max_pods: 29,
        price: 0.096,
        gpus: 0,
    },
    Ec2 {
        name: "m5.xlarge",
        arch: "amd64",
        vcpu: 4,
        mem_gib: 16,
        max_pods: 58,
        price: 0.192,
        gpus: 0,
    },
    Ec2 {
        name: "m5.2xlarge",
        arch: "amd64",
        vcpu: 8,
        mem_gib: 32,
        max_pods: 58,
        price: 0.384,
        gpus: 0,
    },
    Ec2 {
        name: "m5.4xlarge",
        arch: "amd64",
        vcpu: 16,
        mem_gib: 64,
        max_pods: 234,
        price: 0.768,
        gpus: 0,
    },
    Ec2 {
        name: "c5.large",
        arch: "amd64",
        vcpu: 2,
        mem_gib: 4,
        max_pods: 29,
        price: 0.085,
        gpus: 0,
    },
    Ec2 {
        name: "c5.xlarge",
        arch: "amd64",
        vcpu: 4,
        mem_gib: 8,
        max_pods: 58,
        price: 0.17,
        gpus: 0,
    },
    Ec2 {
        name: "c5.2xlarge",
        arch: "amd64",
        vcpu: 8,
        mem_gib: 16,
        max_pods: 58,
        price: 0.34,
        gpus: 0,
    },
    Ec2 {
        name: "r5.large",
        arch: "amd64",
        vcpu: 2,
        mem_gib: 16,
        max_pods: 29,
        price: 0.126,
        gpus: 0,
    },
    Ec2 {
        name: "r5.xlarge",
        arch: "amd64",
        vcpu: 4,
        mem_gib: 32,
        max_pods: 58,
        price: 0.252,
        gpus: 0,
    },
    Ec2 {
        name: "m6g.large",
        arch: "arm64",
        vcpu: 2,
        mem_gib: 8,
        max_pods: 29,
        price: 0.077,
        gpus: 0,
    },
    Ec2 {
        name: "m6g.xlarge",
        arch: "arm64",
        vcpu: 4,
        mem_gib: 16,
        max_pods: 58,
        price: 0.154,
        gpus: 0,
    },
    Ec2 {
        name: "g5.xlarge",
        arch: "amd64",
        vcpu: 4,
        mem_gib: 16,
        max_pods: 58,
        price: 1.006,
        gpus: 1,
    },
];

/// More amd64 types at their us-east-1 on-demand prices, for scenarios that need a wider
/// catalog than [`TYPES`] (spot-to-spot's 15 cheaper types): [`ec2_instance_types_extended`].
pub const EXTRA_TYPES: &[Ec2] = &[
    Ec2 {
        name: "t3a.medium",
        arch: "amd64",
        vcpu: 2,
        mem_gib: 4,
        max_pods: 17,
        price: 0.0376,
        gpus: 0,
    },
    Ec2 {
        name: "t3a.large",
        arch: "amd64",
        vcpu: 2,
        mem_gib: 8,
        max_pods: 35,
        price: 0.0752,
        gpus: 0,
    },
    Ec2 {
        name: "t3a.xlarge",
        arch: "amd64",
        vcpu: 4,
        mem_gib: 16,
        max_pods: 58,
        price: 0.1504,
        gpus: 0,
    },
    Ec2 {
        name: "t3.xlarge",
        arch: "amd64",
        vcpu: 4,
        mem_gib: 16,
        max_pods: 58,
        price: 0.1664,
        gpus: 0,
    },
    Ec2 {
        name: "c5a.large",
        arch: "amd64",
        vcpu: 2,
        mem_gib: 4,
        max_pods: 29,
        price: 0.077,
        gpus: 0,
    },
    Ec2 {
        name: "c5a.xlarge",
        arch: "amd64",
        vcpu: 4,
        mem_gib: 8,
        max_pods: 58,
        price: 0.154,
        gpus: 0,
    },
    Ec2 {
        name: "c6i.large",
        arch: "amd64",
        vcpu: 2,
        mem_gib: 4,
        max_pods: 29,
        price: 0.085,
        gpus: 0,
    },
    Ec2 {
        name: "c6i.xlarge",
        arch: "amd64",
        vcpu: 4,
        mem_gib: 8,
        max_pods: 58,
        price: 0.17,
        gpus: 0,
    },
    Ec2 {
        name: "m5a.large",
        arch: "amd64",
        vcpu: 2,
        mem_gib: 8,
        max_pods: 29,
        price: 0.086,
        gpus: 0,
    },
    Ec2 {
        name: "m5a.xlarge",
        arch: "amd64",
        vcpu: 4,
        mem_gib: 16,
        max_pods: 58,
        price: 0.172,
        gpus: 0,
    },
    Ec2 {
        name: "m6i.large",
        arch: "amd64",
        vcpu: 2,
        mem_gib: 8,
        max_pods: 29,
        price: 0.096,
        gpus: 0,
    },
    Ec2 {
        name: "r5a.large",
        arch: "amd64",
        vcpu: 2,
        mem_gib: 16,
        max_pods: 29,
        price: 0.113,
        gpus: 0,
    },
];

/// The fixed instance type set every pool gets: on-demand and spot (40% of on-demand) in three
/// zones, 80m CPU / 600Mi memory / 2Gi storage of overhead, a 20Gi root volume.
pub fn ec2_instance_types() -> Vec<InstanceType> {
    instance_types_of(TYPES.iter())
}

/// [`TYPES`] and [`EXTRA_TYPES`], priced and shaped like [`ec2_instance_types`].
pub fn ec2_instance_types_extended() -> Vec<InstanceType> {
    instance_types_of(TYPES.iter().chain(EXTRA_TYPES))
}

fn instance_types_of<'a>(types: impl Iterator<Item = &'a Ec2>) -> Vec<InstanceType> {
    types
        .map(|t| {
            let (family, size) = t.name.split_once('.').expect("family.size");
            let category = &family[..1];
            let generation: String = family.chars().filter(char::is_ascii_digit).collect();
            let mut reqs = Requirements::new();
            let mut label = |k: &str, v: &str| reqs.add(k, Requirement::single(v));
            label(labels::INSTANCE_TYPE, t.name);
            label(labels::ARCH, t.arch);
            label(labels::OS, "linux");
            label(aws::INSTANCE_CATEGORY, category);
            label(aws::INSTANCE_FAMILY, family);
            label(aws::INSTANCE_GENERATION, &generation);
            label(aws::INSTANCE_SIZE, size);
            label(aws::INSTANCE_CPU, &t.vcpu.to_string());
            label(aws::INSTANCE_MEMORY, &(t.mem_gib * 1024).to_string());
            if t.gpus > 0 {
                label(aws::INSTANCE_GPU_COUNT, &t.gpus.to_string());
                label(aws::INSTANCE_GPU_NAME, "a10g");
                label(aws::INSTANCE_GPU_MANUFACTURER, "nvidia");
            }
            let mut offerings = Vec::new();
            for (capacity_type, price) in [
                (labels::CAPACITY_ON_DEMAND, t.price),
                (labels::CAPACITY_SPOT, t.price * SPOT_DISCOUNT),
            ] {
                for zone in ZONES {
                    offerings.push(Offering {
                        zone: zone.to_string(),
                        capacity_type: capacity_type.to_string(),
                        price,
                        available: true,
                    });
                }
            }
            InstanceType {
                name: t.name.to_string(),
                requirements: reqs,
                capacity: Resources::from_pairs(&[
                    (CPU, t.vcpu * 1000),
                    (MEMORY, t.mem_gib * GIB),
                    (EPHEMERAL_STORAGE, 20 * GIB),
                    (PODS, t.max_pods),
                    (NVIDIA_GPU, t.gpus),
                ]),
                overhead: Resources::from_pairs(&[
                    (CPU, 80),
                    (MEMORY, 600 * MIB),
                    (EPHEMERAL_STORAGE, 2 * GIB),
                ]),
                offerings,
            }
        })
        .collect()
}

/// Builds the snapshot of one scenario file. v1beta1 pools' `kubelet.maxPods` is applied to the
/// pool's instance types, as the AWS provider does with the node class' kubelet settings.
pub fn load(path: &Path) -> Snapshot {
    load_all(path).1.snapshot
}

/// The scenario's manifests and the snapshot built from them.
pub fn load_all(path: &Path) -> (Vec<Manifest>, SnapshotBuild) {
    load_all_with(path, ec2_instance_types)
}

/// [`load_all`] with another catalog (e.g. [`ec2_instance_types_extended`]).
pub fn load_all_with(
    path: &Path,
    catalog: fn() -> Vec<InstanceType>,
) -> (Vec<Manifest>, SnapshotBuild) {
    let text = std::fs::read_to_string(path).expect("read scenario");
    let manifests = parse_manifests(&text, &path.display().to_string())
        .unwrap_or_else(|e| panic!("{}: parse errors: {e:?}", path.display()));
    let types_for = |_: &api::NodePool| catalog();
    let mut build = build_snapshot(&manifests, &types_for)
        .unwrap_or_else(|e| panic!("{}: ingest errors: {e:?}", path.display()));
    for pool in &mut build.snapshot.node_pools {
        if let Some(max_pods) = build.kubelet.get(&pool.name).and_then(|k| k.max_pods) {
            for it in &mut pool.instance_types {
                it.capacity.0[PODS] = i64::from(max_pods);
            }
        }
    }
    (manifests, build)
}

/// The disruption scenarios' default clock.
pub const DEFAULT_NOW: &str = "2026-12-07T12:00:00Z";

/// The value of a `# key: value` directive in a scenario file's comments.
pub fn directive<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .filter_map(|l| l.strip_prefix('#'))
        .filter_map(|l| l.trim().strip_prefix(key))
        .map(str::trim)
        .next()
}

/// A disruption scenario file's input, with its directives (`now`, `spot-to-spot`, `catalog`,
/// `replace-with-several`, `multi-node-cap`) applied.
pub fn disruption_input_of(path: &Path) -> DisruptionInput {
    let text = std::fs::read_to_string(path).expect("read scenario");
    let now: Timestamp = directive(&text, "now:")
        .unwrap_or(DEFAULT_NOW)
        .parse()
        .expect("now: RFC 3339");
    let options = DisruptionOptions {
        spot_to_spot: directive(&text, "spot-to-spot:") == Some("true"),
        replace_with_several: directive(&text, "replace-with-several:") == Some("true"),
        multi_node_cap: match directive(&text, "multi-node-cap:") {
            None => DisruptionOptions::default().multi_node_cap,
            Some("none") => None,
            Some(n) => Some(n.parse().expect("multi-node-cap: a count or none")),
        },
        ..DisruptionOptions::default()
    };
    let catalog = match directive(&text, "catalog:") {
        None | Some("default") => ec2_instance_types,
        Some("extended") => ec2_instance_types_extended,
        Some(other) => panic!("{}: unknown catalog {other:?}", path.display()),
    };
    let (manifests, build) = load_all_with(path, catalog);
    disruption_input(
        &manifests,
        &build.snapshot,
        &build.node_pools,
        now,
        options,
        0.0,
    )
    .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()))
}

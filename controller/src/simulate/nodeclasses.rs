//! NodePool → EC2NodeClass → instance types.
//!
//! Each NodePool's instance types are the catalog's, shaped by the EC2NodeClass its
//! `nodeClassRef` names ([`InstanceTypeSettings::for_node_class`]). A v1beta1 node class is
//! converted to v1 with the kubelet settings of the v1beta1 NodePool that uses it (v1 moved
//! them from the pool to the class), so `maxPods: 110` on a Karpenter 0.3x pool applies. A
//! v1beta1 pool's kubelet also wins over a v1 class's, as Karpenter v1's compatibility
//! annotation does.

use std::collections::BTreeMap;

use karpenter_core::api::{self, KubeletConfiguration};
use karpenter_core::ingest::Manifest;
use karpenter_core::instance_type::InstanceType;
use karpenter_providers::aws::catalog::Catalog;
use karpenter_providers::aws::instance_types::{InstanceTypeSettings, catalog_instance_types};
use karpenter_providers::aws::nodeclass::{EC2NodeClass, GROUP, v1beta1, validate_ec2_node_class};

/// A NodePool as the header describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolInfo {
    /// NodePool name.
    pub name: String,
    /// Name of its EC2NodeClass.
    pub node_class: String,
    /// AMI family in effect.
    pub ami_family: String,
    /// `maxPods` in effect, if set.
    pub max_pods: Option<i32>,
    /// Instance types compatible with the pool's requirements (filled in after the build).
    pub matching_types: usize,
}

/// A node class as written.
enum NodeClassDoc {
    V1(Box<EC2NodeClass>),
    V1beta1(Box<v1beta1::EC2NodeClass>),
}

impl NodeClassDoc {
    /// The v1 form, with a v1beta1 pool's kubelet settings (when given) in effect.
    fn to_v1(&self, pool_kubelet: Option<KubeletConfiguration>) -> EC2NodeClass {
        match self {
            NodeClassDoc::V1(nc) => {
                let mut nc = (**nc).clone();
                if let Some(k) = pool_kubelet.filter(|k| !k.is_empty()) {
                    nc.spec.kubelet = Some(k);
                }
                nc
            }
            NodeClassDoc::V1beta1(nc) => v1beta1::convert_to_v1(nc, pool_kubelet),
        }
    }
}

/// Reads the EC2NodeClass manifests by name; problems (unknown versions, bad fields, a name
/// defined twice) go to `problems`.
fn read_node_classes(
    manifests: &[Manifest],
    problems: &mut Vec<String>,
) -> BTreeMap<String, NodeClassDoc> {
    let mut out = BTreeMap::new();
    for m in manifests {
        let Manifest::EC2NodeClass(value) = m else {
            continue;
        };
        let name = value["metadata"]["name"].as_str().unwrap_or_default();
        let object = format!("EC2NodeClass/{name}");
        let api_version = value["apiVersion"].as_str().unwrap_or_default();
        let doc = match api_version.strip_prefix(GROUP).unwrap_or_default() {
            "/v1" => serde_json::from_value(value.clone()).map(|nc| NodeClassDoc::V1(Box::new(nc))),
            "/v1beta1" => {
                serde_json::from_value(value.clone()).map(|nc| NodeClassDoc::V1beta1(Box::new(nc)))
            }
            _ => {
                problems.push(format!(
                    "{object}: apiVersion: {api_version:?} is not supported \
                     (use {GROUP}/v1 or {GROUP}/v1beta1)"
                ));
                continue;
            }
        };
        match doc {
            Ok(doc) => {
                if out.insert(name.to_string(), doc).is_some() {
                    problems.push(format!("{object}: metadata.name: defined twice"));
                }
            }
            Err(e) => problems.push(format!("{object}: spec: {e}")),
        }
    }
    out
}

/// Name, nodeClassRef and v1beta1 kubelet of every NodePool, in manifest order. Pools that
/// cannot be converted are left to `build_snapshot`, which reports them.
fn node_pools(
    manifests: &[Manifest],
) -> Vec<(
    String,
    api::NodeClassReference,
    Option<KubeletConfiguration>,
)> {
    manifests
        .iter()
        .filter_map(|m| match m {
            Manifest::NodePoolV1(np) => Some((
                np.metadata.name.clone().unwrap_or_default(),
                np.spec.template.spec.node_class_ref.clone(),
                None,
            )),
            Manifest::NodePoolV1beta1(old) => api::convert_to_v1(old).ok().map(|c| {
                (
                    c.node_pool.metadata.name.clone().unwrap_or_default(),
                    c.node_pool.spec.template.spec.node_class_ref.clone(),
                    c.kubelet,
                )
            }),
            _ => None,
        })
        .collect()
}

fn push_unique(problems: &mut Vec<String>, p: String) {
    if !problems.contains(&p) {
        problems.push(p);
    }
}

/// Every pool's description and instance types (keyed by pool name). Missing or invalid node
/// classes and unsupported `nodeClassRef` kinds go to `problems`, naming the pool or class
/// and the field.
pub(super) fn pool_instance_types(
    manifests: &[Manifest],
    catalog: &Catalog,
    problems: &mut Vec<String>,
) -> (Vec<PoolInfo>, BTreeMap<String, Vec<InstanceType>>) {
    let classes = read_node_classes(manifests, problems);
    let pools = node_pools(manifests);

    // Every class on its own (unreferenced ones too), then as each pool uses it.
    let mut reported = Vec::new();
    for doc in classes.values() {
        if let Err(errs) = validate_ec2_node_class(&doc.to_v1(None)) {
            reported.extend(errs.iter().map(ToString::to_string));
        }
    }
    for p in &reported {
        push_unique(problems, p.clone());
    }

    let mut infos = Vec::new();
    let mut types = BTreeMap::new();
    for (pool, class_ref, kubelet) in pools {
        let field = "spec.template.spec.nodeClassRef";
        if !class_ref.kind.is_empty() && class_ref.kind != "EC2NodeClass" {
            problems.push(format!(
                "NodePool/{pool}: {field}.kind: {:?} is not supported (only EC2NodeClass)",
                class_ref.kind
            ));
            continue;
        }
        let Some(doc) = classes.get(&class_ref.name) else {
            let known: Vec<&str> = classes.keys().map(String::as_str).collect();
            problems.push(format!(
                "NodePool/{pool}: {field}.name: EC2NodeClass {:?} is not in the manifests ({})",
                class_ref.name,
                if known.is_empty() {
                    "there are no EC2NodeClasses".to_string()
                } else {
                    format!("found: {}", known.join(", "))
                }
            ));
            continue;
        };
        let nc = doc.to_v1(kubelet);
        if let Err(errs) = validate_ec2_node_class(&nc) {
            for e in errs.iter().map(ToString::to_string) {
                if !reported.contains(&e) {
                    push_unique(
                        problems,
                        format!("{e} (with the kubelet of NodePool/{pool})"),
                    );
                }
            }
            continue;
        }
        let settings = InstanceTypeSettings::for_node_class(&nc);
        infos.push(PoolInfo {
            name: pool.clone(),
            node_class: class_ref.name.clone(),
            ami_family: nc.ami_family().to_string(),
            max_pods: settings.kubelet.as_ref().and_then(|k| k.max_pods),
            matching_types: 0,
        });
        types.insert(pool, catalog_instance_types(catalog, &settings));
    }
    (infos, types)
}

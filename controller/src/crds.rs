//! `karpenter crds`: the CustomResourceDefinitions, generated from the Rust API types.
//!
//! One CRD per kind, with Karpenter's file names. Each serves two versions (v1 stored, v1beta1
//! served and deprecated), so applying them over Karpenter 0.36's v1beta1 CRDs is accepted (the
//! API server refuses a CRD that drops a version still in `status.storedVersions`) and the
//! objects 0.36 wrote stay readable. The output targets Kubernetes 1.20
//! (apiextensions.k8s.io/v1 without CEL), so `x-kubernetes-validations` are stripped; the
//! controller runs the same checks in process (`karpenter_core::api::validate_node_pool`).
//! The checked-in copies live in `crds/` and are refreshed by `cargo xtask crds`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionVersion,
};
use karpenter_core::api as core_api;
use karpenter_providers::aws::nodeclass as aws_api;
use kube_client::CustomResourceExt;
use serde_json::{Map, Value};

/// The command that regenerates the checked-in `crds/` folder.
pub const REGENERATE_COMMAND: &str = "cargo xtask crds";

/// Options of `karpenter crds`.
#[derive(clap::Args, Debug)]
pub struct CrdsArgs {
    /// Write one YAML file per CRD into this directory (created if missing) instead of printing
    /// every CRD to stdout as one multi-document stream.
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
}

/// One generated CRD: its file name (Karpenter's) and its YAML text, header included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrdFile {
    /// File name, e.g. `karpenter.sh_nodepools.yaml`.
    pub file_name: &'static str,
    /// The full file contents.
    pub yaml: String,
}

/// Generates every CRD, in a fixed order with stable key order, ready to write.
pub fn generate() -> Vec<CrdFile> {
    let node_pool = merge_versions(
        core_api::NodePool::crd(),
        core_api::v1beta1::NodePool::crd(),
        "karpenter.sh/v1beta1 NodePool is deprecated; migrate to karpenter.sh/v1",
    );
    let ec2_node_class = merge_versions(
        aws_api::EC2NodeClass::crd(),
        aws_api::v1beta1::EC2NodeClass::crd(),
        "karpenter.k8s.aws/v1beta1 EC2NodeClass is deprecated; migrate to karpenter.k8s.aws/v1",
    );
    let node_claim = merge_versions(
        core_api::NodeClaim::crd(),
        core_api::v1beta1::NodeClaim::crd(),
        "karpenter.sh/v1beta1 NodeClaim is deprecated; the controller rewrites its NodeClaims to karpenter.sh/v1",
    );
    vec![
        render("karpenter.sh_nodepools.yaml", &node_pool),
        render("karpenter.sh_nodeclaims.yaml", &node_claim),
        render("karpenter.k8s.aws_ec2nodeclasses.yaml", &ec2_node_class),
    ]
}

/// Runs `karpenter crds`: writes the files or prints them.
pub fn main(args: &CrdsArgs) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &CrdsArgs) -> anyhow::Result<()> {
    let files = generate();
    match &args.output_dir {
        Some(dir) => write_all(dir, &files),
        None => {
            let docs: Vec<&str> = files.iter().map(|f| f.yaml.as_str()).collect();
            print!("{}", docs.join("---\n"));
            Ok(())
        }
    }
}

fn write_all(dir: &Path, files: &[CrdFile]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for f in files {
        let path = dir.join(f.file_name);
        std::fs::write(&path, &f.yaml).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Folds the v1beta1 CRD's version into the v1 CRD: both served, v1 the storage version.
///
/// There is no conversion webhook yet, so the CRD keeps the default `None` strategy, under which
/// the API server converts only by relabelling `apiVersion`. The controller therefore reads
/// either version and converts v1beta1 objects in process.
fn merge_versions(
    mut v1: CustomResourceDefinition,
    legacy: CustomResourceDefinition,
    deprecation_warning: &str,
) -> CustomResourceDefinition {
    assert_eq!(
        v1.spec.names.kind, legacy.spec.names.kind,
        "merging versions of different kinds"
    );
    for v in &mut v1.spec.versions {
        v.served = true;
        v.storage = true;
        // v1beta1 objects are stored as they are, under the v1 label; without this the API
        // server prunes their v1beta1-only fields (the seed's `spec.template.spec.kubelet`,
        // `spec.disruption.expireAfter`) against the v1 schema, and the controller could never
        // convert them. Known fields are still validated.
        let spec = v
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            .and_then(|s| s.properties.as_mut())
            .and_then(|p| p.get_mut("spec"));
        if let Some(spec) = spec {
            preserve_unknown_objects(spec);
        }
    }
    let legacy_versions =
        legacy
            .spec
            .versions
            .into_iter()
            .map(|v| CustomResourceDefinitionVersion {
                served: true,
                storage: false,
                deprecated: Some(true),
                deprecation_warning: Some(deprecation_warning.to_string()),
                ..v
            });
    v1.spec.versions.extend(legacy_versions);
    v1
}

/// Marks `schema` and every object schema below it as keeping unknown fields (pruning applies
/// per object node, so marking only the top would still prune nested v1beta1-only fields).
fn preserve_unknown_objects(
    schema: &mut k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps,
) {
    if schema.properties.is_some() {
        schema.x_kubernetes_preserve_unknown_fields = Some(true);
    }
    for child in schema.properties.iter_mut().flat_map(|p| p.values_mut()) {
        preserve_unknown_objects(child);
    }
    if let Some(k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrArray::Schema(items)) =
        schema.items.as_mut()
    {
        preserve_unknown_objects(items);
    }
}

/// Serialises a CRD with the generated-file header, stripping what Kubernetes 1.20 rejects.
fn render(file_name: &'static str, crd: &CustomResourceDefinition) -> CrdFile {
    let mut value = serde_json::to_value(crd).expect("a CRD serialises to JSON");
    strip_cel(&mut value);
    let value = sorted(value);
    let body = serde_yaml::to_string(&value).expect("JSON values serialise to YAML");
    CrdFile {
        file_name,
        yaml: format!("{}{body}", header(crd)),
    }
}

fn header(crd: &CustomResourceDefinition) -> String {
    let mut h = format!(
        "# Generated by `{REGENERATE_COMMAND}` (`karpenter crds`) from the Rust API types. Do not edit.\n\
         # Targets Kubernetes >= 1.20: CEL rules (x-kubernetes-validations) are left out and the\n\
         # controller enforces them in process.\n",
    );
    if crd.spec.versions.len() > 1 {
        h.push_str(
            "#\n\
             # Versions: v1 is served and stored; v1beta1 is served and deprecated. There is no\n\
             # conversion webhook yet (conversion strategy None): the API server only relabels\n\
             # apiVersion and never moves or renames fields. A v1beta1 object is stored with its\n\
             # v1beta1 shape under a v1 label (e.g. spec.disruption.expireAfter stays there); the\n\
             # v1 schema keeps unknown fields in every object under spec so they are not pruned.\n\
             # The controller reads both versions and converts v1beta1 objects in process; a\n\
             # conversion webhook is a later step. Prefer writing v1.\n",
        );
    }
    h
}

/// Removes `x-kubernetes-validations` (CEL, Kubernetes >= 1.25) from every schema node.
fn strip_cel(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.remove("x-kubernetes-validations");
            map.values_mut().for_each(strip_cel);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_cel),
        _ => {}
    }
}

/// Rebuilds every object with its keys in sorted order, whether or not serde_json preserves
/// insertion order in this build (a feature another crate may switch on).
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, sorted(v)))
                    .collect::<Map<_, _>>(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

//! The checked-in `crds/` files (and the chart's copy in `charts/karpenter/crds/`) are exactly
//! what the Rust types generate, and they are CRDs a Kubernetes 1.20 API server accepts
//! (structural schemas, no CEL).

use std::path::PathBuf;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionVersion, JSONSchemaProps,
};

use karpenter::crds;

/// The two checked-in copies: the repository's and the Helm chart's.
fn crds_dirs() -> [PathBuf; 2] {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("controller/ has a parent")
        .to_path_buf();
    [root.join("crds"), root.join("charts/karpenter/crds")]
}

fn parse(file: &crds::CrdFile) -> CustomResourceDefinition {
    serde_yaml::from_str(&file.yaml)
        .unwrap_or_else(|e| panic!("{} is not a CustomResourceDefinition: {e}", file.file_name))
}

#[test]
fn checked_in_crds_are_up_to_date() {
    let generated = crds::generate();
    let mut stale = Vec::new();
    for dir in crds_dirs() {
        for file in &generated {
            let path = dir.join(file.file_name);
            match std::fs::read_to_string(&path) {
                Ok(on_disk) if on_disk == file.yaml => {}
                Ok(_) => stale.push(format!("{} differs", path.display())),
                Err(e) => stale.push(format!("{} unreadable: {e}", path.display())),
            }
        }
        // A file nobody generates any more would linger in kubectl apply -f crds/.
        let expected: Vec<&str> = generated.iter().map(|f| f.file_name).collect();
        for entry in std::fs::read_dir(&dir).expect("the CRD directory exists") {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if !expected.contains(&name.as_str()) {
                stale.push(format!("{}/{name} is not generated", dir.display()));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "the CRDs in crds/ are stale; run `{}`:\n  {}",
        crds::REGENERATE_COMMAND,
        stale.join("\n  ")
    );
}

#[test]
fn crds_parse_and_name_karpenters_files() {
    let names: Vec<(String, String)> = crds::generate()
        .iter()
        .map(|f| (f.file_name.to_string(), parse(f).metadata.name.unwrap()))
        .collect();
    assert_eq!(
        names,
        [
            ("karpenter.sh_nodepools.yaml", "nodepools.karpenter.sh"),
            ("karpenter.sh_nodeclaims.yaml", "nodeclaims.karpenter.sh"),
            (
                "karpenter.k8s.aws_ec2nodeclasses.yaml",
                "ec2nodeclasses.karpenter.k8s.aws"
            ),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
}

fn property<'a>(schema: &'a JSONSchemaProps, path: &str) -> &'a JSONSchemaProps {
    path.split('.').fold(schema, |s, key| {
        let s = match s.type_.as_deref() {
            Some("array") => match &s.items {
                Some(k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrArray::Schema(items)) => items,
                other => panic!("array without a single items schema before {key}: {other:?}"),
            },
            _ => s,
        };
        s.properties
            .as_ref()
            .and_then(|p| p.get(key))
            .unwrap_or_else(|| panic!("no property {key} on the way to {path}"))
    })
}

fn version<'a>(
    crd: &'a CustomResourceDefinition,
    name: &str,
) -> &'a CustomResourceDefinitionVersion {
    crd.spec
        .versions
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no version {name}"))
}

fn version_schema<'a>(crd: &'a CustomResourceDefinition, name: &str) -> &'a JSONSchemaProps {
    version(crd, name)
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .unwrap_or_else(|| panic!("version {name} has no schema"))
}

#[test]
fn node_pool_v1_schema_has_requirements_and_budgets() {
    let crd = parse(&crds::generate()[0]);
    let v1 = version(&crd, "v1");
    assert!(v1.served && v1.storage);
    let schema = version_schema(&crd, "v1");
    let requirements = property(schema, "spec.template.spec.requirements");
    assert_eq!(requirements.type_.as_deref(), Some("array"));
    let budgets = property(schema, "spec.disruption.budgets");
    assert_eq!(budgets.type_.as_deref(), Some("array"));
    property(schema, "spec.disruption.budgets.nodes");

    let v1beta1 = version(&crd, "v1beta1");
    assert!(v1beta1.served && !v1beta1.storage && v1beta1.deprecated == Some(true));
}

/// Walks a schema as JSON, collecting what a 1.20 API server would reject.
fn structural_problems(node: &serde_json::Value, path: &str, out: &mut Vec<String>) {
    let Some(obj) = node.as_object() else { return };
    if obj.contains_key("x-kubernetes-validations") {
        out.push(format!(
            "{path}: CEL (x-kubernetes-validations) needs Kubernetes 1.25+"
        ));
    }
    let typed = obj.contains_key("type")
        || obj.get("x-kubernetes-int-or-string") == Some(&serde_json::Value::Bool(true))
        || obj.get("x-kubernetes-preserve-unknown-fields") == Some(&serde_json::Value::Bool(true));
    if !typed {
        out.push(format!("{path}: no type"));
    }
    for junctor in ["allOf", "anyOf", "oneOf", "not"] {
        if obj.contains_key(junctor) {
            out.push(format!("{path}: {junctor} (keep schemas free of junctors)"));
        }
    }
    if obj.contains_key("properties") && obj.contains_key("additionalProperties") {
        out.push(format!("{path}: both properties and additionalProperties"));
    }
    if let Some(props) = obj.get("properties").and_then(|p| p.as_object()) {
        for (k, v) in props {
            structural_problems(v, &format!("{path}.{k}"), out);
        }
    }
    for child in ["items", "additionalProperties"] {
        if let Some(v) = obj.get(child) {
            structural_problems(v, &format!("{path}.{child}"), out);
        }
    }
}

#[test]
fn schemas_are_structural_and_cel_free() {
    let mut problems = Vec::new();
    for file in crds::generate() {
        let crd = parse(&file);
        for v in &crd.spec.versions {
            let schema =
                serde_json::to_value(&v.schema.as_ref().unwrap().open_api_v3_schema).unwrap();
            let path = format!("{}/{}", file.file_name, v.name);
            structural_problems(&schema, &path, &mut problems);
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn stored_v1_schema_keeps_v1beta1_only_fields() {
    // The seed's v1beta1 NodePool sets spec.template.spec.kubelet, which v1 lacks; the stored
    // (v1) schema must not prune it, at any depth.
    let crd = parse(&crds::generate()[0]);
    let v1 = version_schema(&crd, "v1");
    let spec = property(v1, "spec");
    let template_spec = property(v1, "spec.template.spec");
    assert_eq!(spec.x_kubernetes_preserve_unknown_fields, Some(true));
    assert_eq!(
        template_spec.x_kubernetes_preserve_unknown_fields,
        Some(true)
    );
    assert!(
        !template_spec
            .properties
            .as_ref()
            .unwrap()
            .contains_key("kubelet"),
        "v1 has no kubelet block; if it gains one this test needs a new example"
    );
    // The served-only v1beta1 schema is left as generated.
    let legacy = version_schema(&crd, "v1beta1");
    assert_eq!(
        property(legacy, "spec").x_kubernetes_preserve_unknown_fields,
        None
    );
}

#[test]
fn every_crd_stores_v1_and_serves_v1beta1() {
    // Karpenter 0.36's CRDs have `status.storedVersions: [v1beta1]`; the API server refuses an
    // update that stops serving a stored version, so every CRD must keep serving v1beta1.
    for file in crds::generate() {
        let crd = parse(&file);
        let versions: Vec<(&str, bool, bool, Option<bool>)> = crd
            .spec
            .versions
            .iter()
            .map(|v| (v.name.as_str(), v.served, v.storage, v.deprecated))
            .collect();
        assert_eq!(
            versions,
            [
                ("v1", true, true, None),
                ("v1beta1", true, false, Some(true))
            ],
            "{}",
            file.file_name
        );
        // Only the header comment may mention CEL.
        let body = file.yaml.lines().filter(|l| !l.starts_with('#'));
        assert!(
            !body
                .into_iter()
                .any(|l| l.contains("x-kubernetes-validations")),
            "{}",
            file.file_name
        );
    }
}

#[test]
fn generation_is_deterministic() {
    assert_eq!(crds::generate(), crds::generate());
}

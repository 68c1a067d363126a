use super::*;

fn alias(text: &str) -> Alias {
    Alias::parse(text).unwrap()
}

fn names(q: &AliasQuery) -> Vec<&str> {
    q.parameters.iter().map(|p| p.name.as_str()).collect()
}

fn alias_term(text: &str) -> AmiSelectorTerm {
    AmiSelectorTerm {
        alias: Some(text.into()),
        ..Default::default()
    }
}

#[test]
fn al2023_latest_reads_recommended_parameters() {
    let q = alias_query("nc", 0, &alias("al2023@latest"), "1.30").unwrap();
    assert_eq!(q.alias.family, AmiFamily::Al2023);
    assert_eq!(
        names(&q),
        [
            "/aws/service/eks/optimized-ami/1.30/amazon-linux-2023/x86_64/standard/recommended/image_id",
            "/aws/service/eks/optimized-ami/1.30/amazon-linux-2023/x86_64/nvidia/recommended/image_id",
            "/aws/service/eks/optimized-ami/1.30/amazon-linux-2023/x86_64/neuron/recommended/image_id",
            "/aws/service/eks/optimized-ami/1.30/amazon-linux-2023/arm64/standard/recommended/image_id",
            "/aws/service/eks/optimized-ami/1.30/amazon-linux-2023/arm64/nvidia/recommended/image_id",
        ]
    );
    assert!(q.parameters.iter().all(|p| p.mutable));
    assert_eq!(q.field, "spec.amiSelectorTerms[0].alias");
}

#[test]
fn al2023_pinned_version_names_the_release() {
    let q = alias_query("nc", 0, &alias("al2023@v20241024"), "1.31").unwrap();
    assert_eq!(
        q.parameters[0].name,
        "/aws/service/eks/optimized-ami/1.31/amazon-linux-2023/x86_64/standard/\
         amazon-eks-node-al2023-x86_64-standard-1.31-v20241024/image_id"
    );
    assert_eq!(
        q.parameters[3].name,
        "/aws/service/eks/optimized-ami/1.31/amazon-linux-2023/arm64/standard/\
         amazon-eks-node-al2023-arm64-standard-1.31-v20241024/image_id"
    );
    assert!(q.parameters.iter().all(|p| !p.mutable));
}

#[test]
fn al2_parameters_and_variants() {
    let q = alias_query("nc", 0, &alias("al2@latest"), "1.29").unwrap();
    assert_eq!(
        names(&q),
        [
            "/aws/service/eks/optimized-ami/1.29/amazon-linux-2/recommended/image_id",
            "/aws/service/eks/optimized-ami/1.29/amazon-linux-2-arm64/recommended/image_id",
            "/aws/service/eks/optimized-ami/1.29/amazon-linux-2-gpu/recommended/image_id",
        ]
    );
    assert_eq!(
        q.parameters[2].requirement_sets,
        vec![
            Variant::Neuron.requirements(),
            Variant::Nvidia.requirements()
        ]
    );
    let q = alias_query("nc", 0, &alias("al2@v20240807"), "1.29").unwrap();
    assert_eq!(
        names(&q),
        [
            "/aws/service/eks/optimized-ami/1.29/amazon-linux-2/amazon-eks-node-1.29-v20240807/image_id",
            "/aws/service/eks/optimized-ami/1.29/amazon-linux-2-arm64/amazon-eks-arm64-node-1.29-v20240807/image_id",
            "/aws/service/eks/optimized-ami/1.29/amazon-linux-2-gpu/amazon-eks-gpu-node-1.29-v20240807/image_id",
        ]
    );
}

#[test]
fn bottlerocket_parameters_trim_the_v() {
    let q = alias_query("nc", 0, &alias("bottlerocket@latest"), "1.30").unwrap();
    assert_eq!(
        names(&q),
        [
            "/aws/service/bottlerocket/aws-k8s-1.30/x86_64/latest/image_id",
            "/aws/service/bottlerocket/aws-k8s-1.30/arm64/latest/image_id",
            "/aws/service/bottlerocket/aws-k8s-1.30-nvidia/x86_64/latest/image_id",
            "/aws/service/bottlerocket/aws-k8s-1.30-nvidia/arm64/latest/image_id",
        ]
    );
    let pinned = alias_query("nc", 0, &alias("bottlerocket@v1.20.3"), "1.30").unwrap();
    let bare = alias_query("nc", 0, &alias("bottlerocket@1.20.3"), "1.30").unwrap();
    assert_eq!(names(&pinned), names(&bare));
    assert_eq!(
        pinned.parameters[0].name,
        "/aws/service/bottlerocket/aws-k8s-1.30/x86_64/1.20.3/image_id"
    );
}

#[test]
fn windows_parameter_and_requirements() {
    let q = alias_query("nc", 0, &alias("windows2022@latest"), "1.30").unwrap();
    assert_eq!(
        names(&q),
        [
            "/aws/service/ami-windows-latest/Windows_Server-2022-English-Core-EKS_Optimized-1.30/image_id"
        ]
    );
    assert_eq!(
        q.parameters[0].requirement_sets,
        vec![vec![
            Requirement::is_in(labels::OS, ["windows"]),
            Requirement::is_in(labels::WINDOWS_BUILD, ["10.0.20348"]),
        ]]
    );
    let q = alias_query("nc", 0, &alias("windows2019@latest"), "1.30").unwrap();
    assert!(
        q.parameters[0]
            .name
            .contains("Windows_Server-2019-English-Core")
    );
}

#[test]
fn variant_requirements() {
    let std = Variant::Standard.requirements();
    assert!(std.iter().all(|r| r.operator == "DoesNotExist"));
    assert_eq!(std.len(), 2);
    assert_eq!(
        Variant::Nvidia.requirements(),
        vec![Requirement::exists(labels::aws::INSTANCE_GPU_COUNT)]
    );
    assert_eq!(
        Variant::Neuron.requirements(),
        vec![Requirement::exists(labels::aws::INSTANCE_ACCELERATOR_COUNT)]
    );
}

#[test]
fn bad_aliases_name_the_field() {
    let e = parse_alias("default", 0, "al2023").unwrap_err();
    assert_eq!(
        e.to_string(),
        "ec2nodeclass \"default\": spec.amiSelectorTerms[0].alias: invalid alias \"al2023\": \
         'alias' is improperly formatted, must match the format 'family@version'"
    );
    let e = parse_alias("default", 2, "ubuntu@latest").unwrap_err();
    assert!(
        e.to_string().contains("spec.amiSelectorTerms[2].alias"),
        "{e}"
    );
    assert!(e.to_string().contains("family is not supported"), "{e}");
    let e = parse_alias("default", 0, "windows2022@v1").unwrap_err();
    assert!(
        e.to_string().contains("may only specify version 'latest'"),
        "{e}"
    );
}

#[test]
fn kubernetes_version_must_be_major_minor() {
    for bad in ["", "1", "1.30.2", "v1.30", "1.x", "1."] {
        let e = alias_query("nc", 0, &alias("al2023@latest"), bad).unwrap_err();
        assert!(
            matches!(e, ResolveError::InvalidKubernetesVersion { .. }),
            "{bad}: {e}"
        );
    }
    assert!(is_major_minor("1.30") && is_major_minor("2.0"));
}

#[test]
fn plan_prefers_alias_and_checks_terms() {
    let terms = [
        AmiSelectorTerm {
            id: Some("ami-1".into()),
            ..Default::default()
        },
        alias_term("al2@latest"),
    ];
    match ami_plan("nc", &terms, "1.30").unwrap() {
        AmiPlan::Alias(q) => {
            assert_eq!(q.alias.family, AmiFamily::Al2);
            assert_eq!(q.field, "spec.amiSelectorTerms[1].alias");
        }
        other => panic!("{other:?}"),
    }
    let e = ami_plan("nc", &[alias_term("nope")], "1.30").unwrap_err();
    assert!(
        e.to_string().contains("spec.amiSelectorTerms[0].alias"),
        "{e}"
    );
    match ami_plan("nc", &terms[..1], "1.30").unwrap() {
        AmiPlan::Terms(p) => assert_eq!(p.image_ids, ["ami-1"]),
        other => panic!("{other:?}"),
    }
    let e = ami_plan("nc", &[AmiSelectorTerm::default()], "1.30").unwrap_err();
    assert!(e.to_string().contains("spec.amiSelectorTerms[0]"), "{e}");
    let e = ami_plan("nc", &[], "1.30").unwrap_err();
    assert!(e.to_string().contains("at least one"), "{e}");
}

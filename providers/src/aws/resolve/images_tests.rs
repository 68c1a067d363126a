use super::*;
use crate::aws::nodeclass::Alias;
use crate::aws::resolve::{alias_query, term_matches};

fn image(id: &str, name: &str, arch: &str, created: &str) -> Image {
    Image {
        id: id.into(),
        name: name.into(),
        architecture: arch.into(),
        creation_date: created.into(),
        owner: "111122223333".into(),
        ..Default::default()
    }
}

fn ids(images: &[ResolvedImage]) -> Vec<&str> {
    images.iter().map(|i| i.id.as_str()).collect()
}

fn arch_only(images: &[Image]) -> Vec<(&Image, Vec<Vec<Requirement>>)> {
    images.iter().map(|i| (i, vec![Vec::new()])).collect()
}

#[test]
fn queries_follow_karpenter() {
    let terms = [
        AmiSelectorTerm {
            name: Some("my-ami-*".into()),
            ..Default::default()
        },
        AmiSelectorTerm {
            id: Some("ami-1".into()),
            ..Default::default()
        },
        AmiSelectorTerm {
            tags: BTreeMap::from([("team".into(), "a".into()), ("golden".into(), "*".into())]),
            owner: Some("123456789012".into()),
            ..Default::default()
        },
        AmiSelectorTerm {
            ssm_parameter: Some("/my/ami".into()),
            ..Default::default()
        },
        AmiSelectorTerm {
            id: Some("ami-2".into()),
            ..Default::default()
        },
    ];
    let plan = image_queries(&terms);
    assert_eq!(
        plan.queries,
        vec![
            ImageQuery {
                filters: vec![Filter::new("name", ["my-ami-*"])],
                owners: vec!["self".into(), "amazon".into()],
            },
            ImageQuery {
                filters: vec![
                    Filter::new("tag-key", ["golden"]),
                    Filter::new("tag:team", ["a"]),
                ],
                owners: vec!["123456789012".into()],
            },
        ]
    );
    let ssm = BTreeMap::from([("/my/ami".to_string(), "ami-3".to_string())]);
    let queries = plan.describe_queries("nc", &ssm).unwrap();
    assert_eq!(
        queries.last().unwrap().filters,
        vec![Filter::new("image-id", ["ami-1", "ami-2", "ami-3"])]
    );
    let e = plan.describe_queries("nc", &BTreeMap::new()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "ec2nodeclass \"nc\": spec.amiSelectorTerms[3].ssmParameter: SSM parameter \"/my/ami\" has no value"
    );
}

#[test]
fn term_matching_checks_name_owner_and_tags() {
    let mut img = image("ami-1", "my-ami-2024", "x86_64", "2024-01-01T00:00:00Z");
    img.tags.insert("team".into(), "a".into());
    let name = |n: &str| AmiSelectorTerm {
        name: Some(n.into()),
        ..Default::default()
    };
    // A name alone only accepts self/amazon: with an unknown account, `self` accepts any owner.
    assert!(term_matches(&name("my-ami-*"), &img));
    let ctx = ImageMatchContext {
        account_id: Some("999999999999".into()),
        ..Default::default()
    };
    assert!(
        !ctx.matches(&name("my-ami-*"), &img),
        "shared AMI from another account"
    );
    img.owner_alias = Some("amazon".into());
    assert!(ctx.matches(&name("my-ami-*"), &img));
    let owned = AmiSelectorTerm {
        owner: Some("111122223333".into()),
        tags: BTreeMap::from([("team".into(), "a".into())]),
        ..Default::default()
    };
    assert!(ctx.matches(&owned, &img));
    let other = AmiSelectorTerm {
        owner: Some("444455556666".into()),
        ..owned.clone()
    };
    assert!(!ctx.matches(&other, &img));
    assert!(!term_matches(&AmiSelectorTerm::default(), &img));
    let alias = AmiSelectorTerm {
        alias: Some("al2023@latest".into()),
        ..Default::default()
    };
    assert!(!term_matches(&alias, &img));
    let ssm = AmiSelectorTerm {
        ssm_parameter: Some("/p".into()),
        ..Default::default()
    };
    let ctx = ImageMatchContext {
        ssm_values: BTreeMap::from([("/p".to_string(), "ami-1".to_string())]),
        ..Default::default()
    };
    assert!(ctx.matches(&ssm, &img));
    assert!(!term_matches(&ssm, &img));
}

#[test]
fn newest_per_architecture_and_sorted() {
    let images = [
        image("ami-old", "a", "x86_64", "2024-01-01T00:00:00Z"),
        image("ami-new", "b", "x86_64", "2024-06-01T00:00:00.000Z"),
        image("ami-arm", "c", "arm64", "2024-03-01T00:00:00Z"),
        image("ami-mac", "d", "x86_64_mac", "2025-01-01T00:00:00Z"),
        image("ami-i386", "e", "i386", "2025-01-01T00:00:00Z"),
    ];
    let got = select_images(arch_only(&images));
    assert_eq!(ids(&got), ["ami-new", "ami-arm"]);
    assert_eq!(
        got[1].requirements,
        vec![Requirement::is_in(labels::ARCH, ["arm64"])]
    );
    let status = status_amis(&got);
    assert_eq!(status[0].requirements[0].key, labels::ARCH);
    assert_eq!(
        status[0].requirements[0].values,
        Some(vec!["amd64".to_string()])
    );
    assert_eq!(status[0].name.as_deref(), Some("b"));
}

#[test]
fn same_creation_time_picks_greater_name_regardless_of_order() {
    let a = image("ami-a", "img-2024-a", "x86_64", "2024-01-01T00:00:00Z");
    let b = image("ami-b", "img-2024-b", "x86_64", "2024-01-01T00:00:00.500Z");
    let one = select_images(arch_only(&[a.clone(), b.clone()]));
    let two = select_images(arch_only(&[b, a]));
    assert_eq!(one, two);
    assert_eq!(ids(&one), ["ami-b"], "sub-second differences are ignored");
}

#[test]
fn deprecated_only_when_nothing_else() {
    let mut newest = image("ami-dep", "n", "x86_64", "2024-06-01T00:00:00Z");
    newest.deprecated = true;
    let older = image("ami-ok", "o", "x86_64", "2024-01-01T00:00:00Z");
    let mut arm = image("ami-arm-dep", "a", "arm64", "2024-01-01T00:00:00Z");
    arm.deprecated = true;
    let got = select_images(arch_only(&[newest, older, arm]));
    // Same creation date: ordered by id.
    assert_eq!(ids(&got), ["ami-arm-dep", "ami-ok"]);
    assert!(got[0].deprecated && !got[1].deprecated);
}

#[test]
fn output_order_is_newest_first_then_id() {
    let images = [
        image("ami-2", "x", "x86_64", "2024-01-01T00:00:00Z"),
        image("ami-1", "y", "arm64", "2024-01-01T00:00:00Z"),
        image("ami-3", "z", "arm64", "garbage"),
    ];
    let got = select_images(
        images
            .iter()
            .map(|i| (i, vec![Vec::new(), vec![Requirement::exists("gpu")]])),
    );
    assert_eq!(ids(&got), ["ami-1", "ami-1", "ami-2", "ami-2"]);
    let bad = select_images(arch_only(&images[2..]));
    assert_eq!(ids(&bad), ["ami-3"], "an unparsable date still resolves");
}

#[test]
fn rfc3339_parsing() {
    assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(
        parse_rfc3339("2024-10-24T12:00:00.000Z"),
        Some(1_729_771_200)
    );
    assert_eq!(
        parse_rfc3339("2024-10-24T14:00:00+02:00"),
        parse_rfc3339("2024-10-24T12:00:00Z")
    );
    assert_eq!(parse_rfc3339("2000-03-01T00:00:00Z"), Some(951_868_800));
    for bad in [
        "",
        "2024-10-24",
        "2024-13-01T00:00:00Z",
        "2024-10-24T12:00:00",
        "2024-10-24T12:00:00.Z",
    ] {
        assert_eq!(parse_rfc3339(bad), None, "{bad}");
    }
}

#[test]
fn resolve_terms_rechecks_locally() {
    let terms = [AmiSelectorTerm {
        name: Some("golden-*".into()),
        owner: Some("111122223333".into()),
        ..Default::default()
    }];
    let plan = AmiPlan::Terms(image_queries(&terms));
    let images = [
        image("ami-1", "golden-1", "x86_64", "2024-01-01T00:00:00Z"),
        image("ami-2", "golden-2", "x86_64", "2024-02-01T00:00:00Z"),
        image("ami-9", "other", "x86_64", "2025-01-01T00:00:00Z"),
        image("ami-2", "golden-2", "x86_64", "2024-02-01T00:00:00Z"),
    ];
    let got = resolve_amis("nc", &plan, &terms, &BTreeMap::new(), &images, None).unwrap();
    assert_eq!(ids(&got), ["ami-2"]);
    let e = resolve_amis("nc", &plan, &terms, &BTreeMap::new(), &images[2..3], None).unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"ec2nodeclass "nc": spec.amiSelectorTerms: no AMI matches"#
    );
}

#[test]
fn resolve_alias_uses_parameter_variants() {
    let alias = Alias::parse("al2023@latest").unwrap();
    let query = alias_query("nc", 0, &alias, "1.30").unwrap();
    let p = |i: usize| query.parameters[i].name.clone();
    // The x86 nvidia parameter is missing: skipped, as in Karpenter.
    let ssm = BTreeMap::from([
        (p(0), "ami-std".to_string()),
        (p(2), "ami-neuron".to_string()),
        (p(3), "ami-arm".to_string()),
    ]);
    let images = [
        image("ami-std", "std", "x86_64", "2024-10-24T00:00:00Z"),
        image("ami-neuron", "neuron", "x86_64", "2024-10-24T00:00:00Z"),
        image("ami-arm", "arm", "arm64", "2024-10-24T00:00:00Z"),
        image("ami-stray", "stray", "x86_64", "2025-10-24T00:00:00Z"),
    ];
    let plan = AmiPlan::Alias(query.clone());
    let got = resolve_amis("nc", &plan, &[], &ssm, &images, None).unwrap();
    assert_eq!(ids(&got), ["ami-arm", "ami-neuron", "ami-std"]);
    let neuron = &got[1];
    assert!(neuron.requirements.contains(&Requirement::exists(
        labels::aws::INSTANCE_ACCELERATOR_COUNT
    )));
    assert!(
        neuron
            .requirements
            .contains(&Requirement::is_in(labels::ARCH, ["amd64"]))
    );
    assert_eq!(got[2].requirements.len(), 3, "arch + two DoesNotExist");
    let e = resolve_amis("nc", &plan, &[], &BTreeMap::new(), &images, None).unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"ec2nodeclass "nc": spec.amiSelectorTerms[0].alias: no AMI matches"#
    );
}

#[test]
fn one_image_from_several_parameters_serves_each_variant() {
    let alias = Alias::parse("al2@latest").unwrap();
    let query = alias_query("nc", 0, &alias, "1.30").unwrap();
    let ssm = BTreeMap::from([(query.parameters[2].name.clone(), "ami-gpu".to_string())]);
    let images = [image("ami-gpu", "gpu", "x86_64", "2024-10-24T00:00:00Z")];
    let got = resolve_amis("nc", &AmiPlan::Alias(query), &[], &ssm, &images, None).unwrap();
    assert_eq!(ids(&got), ["ami-gpu", "ami-gpu"]);
}

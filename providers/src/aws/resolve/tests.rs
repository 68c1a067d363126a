use super::*;

fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn glob_matches_like_ec2_filters() {
    assert!(glob_match("abc", "abc"));
    assert!(!glob_match("abc", "abd"));
    assert!(!glob_match("abc", "ABC"), "case-sensitive");
    assert!(glob_match("*", ""));
    assert!(glob_match("*Public*", "my-Public-subnet"));
    assert!(!glob_match("*Public*", "my-public-subnet"));
    assert!(glob_match(
        "amazon-eks-node-1.30-*",
        "amazon-eks-node-1.30-v20240807"
    ));
    assert!(glob_match("a?c", "abc"));
    assert!(!glob_match("a?c", "ac"));
    assert!(glob_match("a*b*c", "aXbYbZc"));
    assert!(!glob_match("a*b*c", "aXbYbZ"));
    assert!(glob_match("**", "x"));
}

#[test]
fn star_tag_value_becomes_tag_key_filter() {
    let f = tag_filters(&tags(&[
        ("karpenter.sh/discovery", "dev"),
        ("private", "*"),
    ]));
    assert_eq!(
        f,
        vec![
            Filter::new("tag:karpenter.sh/discovery", ["dev"]),
            Filter::new("tag-key", ["private"]),
        ]
    );
}

#[test]
fn tag_matching_requires_every_key() {
    let have = tags(&[("a", "1"), ("b", "")]);
    assert!(tags_match(&tags(&[("a", "1")]), &have));
    assert!(
        tags_match(&tags(&[("a", "1"), ("b", "*")]), &have),
        "* matches empty"
    );
    assert!(!tags_match(&tags(&[("a", "1"), ("c", "*")]), &have));
    assert!(!tags_match(&tags(&[("a", "2")]), &have));
    assert!(tags_match(&tags(&[]), &have));
}

#[test]
fn error_messages_name_node_class_and_field() {
    let e = ResolveError::NoMatch {
        node_class: "default".into(),
        field: "spec.subnetSelectorTerms".into(),
        what: "subnet",
    };
    assert_eq!(
        e.to_string(),
        r#"ec2nodeclass "default": spec.subnetSelectorTerms: no subnet matches"#
    );
}

#[test]
fn check_terms_rejects_empty_lists_and_terms() {
    let e = check_terms("nc", "spec.x", &[] as &[u8], |_| true).unwrap_err();
    assert!(e.to_string().contains("at least one selector term"), "{e}");
    let e = check_terms("nc", "spec.x", &[1u8, 0], |t| *t != 0).unwrap_err();
    assert!(
        e.to_string()
            .starts_with(r#"ec2nodeclass "nc": spec.x[1]: "#),
        "{e}"
    );
    check_terms("nc", "spec.x", &[1u8], |t| *t != 0).unwrap();
}

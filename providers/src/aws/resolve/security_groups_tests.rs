use super::*;
use crate::aws::resolve::term_matches;

fn sg(id: &str, name: &str, tags: &[(&str, &str)]) -> SecurityGroup {
    SecurityGroup {
        id: id.into(),
        name: name.into(),
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn term(id: Option<&str>, name: Option<&str>, tags: &[(&str, &str)]) -> SecurityGroupSelectorTerm {
    SecurityGroupSelectorTerm {
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        id: id.map(Into::into),
        name: name.map(Into::into),
    }
}

const DISC: (&str, &str) = ("karpenter.sh/discovery", "dev");

#[test]
fn filter_sets_follow_karpenter() {
    let terms = [
        term(Some("sg-2"), None, &[]),
        term(None, Some("eks-cluster-sg-*"), &[]),
        term(None, None, &[DISC]),
        term(Some("sg-1"), None, &[]),
        term(None, None, &[]),
    ];
    assert_eq!(
        security_group_filter_sets(&terms),
        vec![
            vec![Filter::new("tag:karpenter.sh/discovery", ["dev"])],
            vec![Filter::new("group-id", ["sg-2", "sg-1"])],
            vec![Filter::new("group-name", ["eks-cluster-sg-*"])],
        ]
    );
}

#[test]
fn term_matching() {
    let g = sg("sg-1", "eks-cluster-sg-dev-123", &[DISC]);
    assert!(term_matches(&term(Some("sg-1"), None, &[]), &g));
    assert!(!term_matches(&term(Some("sg-2"), None, &[]), &g));
    assert!(term_matches(&term(None, Some("eks-cluster-sg-*"), &[]), &g));
    assert!(!term_matches(&term(None, Some("eks-cluster-sg"), &[]), &g));
    assert!(term_matches(&term(None, None, &[DISC]), &g));
    assert!(!term_matches(
        &term(None, None, &[("karpenter.sh/discovery", "prod")]),
        &g
    ));
    assert!(!term_matches(&term(None, None, &[]), &g));
}

#[test]
fn resolve_returns_all_matches_sorted_and_deduplicated() {
    let groups = [
        sg("sg-3", "c", &[DISC]),
        sg("sg-1", "a", &[DISC]),
        sg("sg-2", "b", &[]),
        sg("sg-1", "a", &[DISC]),
        sg("sg-9", "z", &[]),
    ];
    let terms = [term(None, None, &[DISC]), term(None, Some("b"), &[])];
    let got = resolve_security_groups("default", &terms, &groups).unwrap();
    let ids: Vec<&str> = got.iter().map(|g| g.id.as_str()).collect();
    assert_eq!(ids, ["sg-1", "sg-2", "sg-3"]);
    assert_eq!(
        status_security_groups(&got)[1],
        nodeclass::SecurityGroup {
            id: "sg-2".into(),
            name: Some("b".into())
        }
    );
}

#[test]
fn resolve_errors() {
    let e = resolve_security_groups("web", &[term(Some("sg-404"), None, &[])], &[]).unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"ec2nodeclass "web": spec.securityGroupSelectorTerms: no security group matches"#
    );
    let e = resolve_security_groups("web", &[term(None, None, &[])], &[]).unwrap_err();
    assert!(
        e.to_string()
            .starts_with(r#"ec2nodeclass "web": spec.securityGroupSelectorTerms[0]: "#),
        "{e}"
    );
}

#[test]
fn status_omits_empty_names() {
    assert_eq!(status_security_groups(&[sg("sg-1", "", &[])])[0].name, None);
}

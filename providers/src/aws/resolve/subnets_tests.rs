use super::*;
use crate::aws::resolve::term_matches;

fn subnet(id: &str, zone: &str, ips: u32, tags: &[(&str, &str)]) -> Subnet {
    Subnet {
        id: id.into(),
        zone: zone.into(),
        zone_id: format!("use1-{}", &zone[zone.len() - 1..]),
        available_ips: ips,
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn tag_term(pairs: &[(&str, &str)]) -> SubnetSelectorTerm {
    SubnetSelectorTerm {
        tags: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        id: None,
    }
}

fn id_term(id: &str) -> SubnetSelectorTerm {
    SubnetSelectorTerm {
        tags: BTreeMap::new(),
        id: Some(id.into()),
    }
}

const DISC: (&str, &str) = ("karpenter.sh/discovery", "dev");

#[test]
fn filter_sets_follow_karpenter() {
    let terms = [
        tag_term(&[DISC, ("Name", "*private*")]),
        id_term("subnet-1"),
        tag_term(&[("public", "*")]),
        id_term("subnet-2"),
    ];
    assert_eq!(
        subnet_filter_sets(&terms),
        vec![
            vec![
                Filter::new("tag:Name", ["*private*"]),
                Filter::new("tag:karpenter.sh/discovery", ["dev"]),
            ],
            vec![Filter::new("tag-key", ["public"])],
            vec![Filter::new("subnet-id", ["subnet-1", "subnet-2"])],
        ]
    );
}

#[test]
fn empty_terms_produce_no_filter_set() {
    assert!(subnet_filter_sets(&[tag_term(&[])]).is_empty());
}

#[test]
fn term_matching_ands_fields() {
    let s = subnet(
        "subnet-1",
        "us-east-1a",
        10,
        &[DISC, ("Name", "dev-private-a")],
    );
    assert!(term_matches(&tag_term(&[DISC]), &s));
    assert!(term_matches(&tag_term(&[DISC, ("Name", "*private*")]), &s));
    assert!(!term_matches(&tag_term(&[DISC, ("Name", "*public*")]), &s));
    assert!(term_matches(&tag_term(&[("Name", "*")]), &s));
    assert!(term_matches(&id_term("subnet-1"), &s));
    assert!(!term_matches(&id_term("subnet-2"), &s));
    assert!(
        !term_matches(&tag_term(&[]), &s),
        "an empty term selects nothing"
    );
}

#[test]
fn resolve_ors_terms_dedups_and_orders_like_status() {
    let subnets = [
        subnet("subnet-c", "us-east-1b", 50, &[DISC]),
        subnet("subnet-a", "us-east-1a", 50, &[DISC]),
        subnet("subnet-b", "us-east-1a", 100, &[]),
        subnet("subnet-x", "us-east-1c", 500, &[("other", "x")]),
        subnet("subnet-a", "us-east-1a", 50, &[DISC]),
    ];
    let got = resolve_subnets(
        "default",
        &[tag_term(&[DISC]), id_term("subnet-b")],
        &subnets,
    )
    .unwrap();
    let ids: Vec<&str> = got.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["subnet-b", "subnet-a", "subnet-c"]);
    assert_eq!(subnet_zones(&got), ["us-east-1a", "us-east-1b"]);
    let status = status_subnets(&got);
    assert_eq!(
        status[0],
        nodeclass::Subnet {
            id: "subnet-b".into(),
            zone: "us-east-1a".into(),
            zone_id: Some("use1-a".into()),
        }
    );
}

#[test]
fn resolve_errors_name_the_field() {
    let subnets = [subnet("subnet-a", "us-east-1a", 1, &[])];
    let e = resolve_subnets("default", &[tag_term(&[DISC])], &subnets).unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"ec2nodeclass "default": spec.subnetSelectorTerms: no subnet matches"#
    );
    let e =
        resolve_subnets("default", &[id_term("subnet-a"), tag_term(&[])], &subnets).unwrap_err();
    assert!(
        e.to_string()
            .starts_with(r#"ec2nodeclass "default": spec.subnetSelectorTerms[1]: "#),
        "{e}"
    );
    let e = resolve_subnets("default", &[], &subnets).unwrap_err();
    assert!(e.to_string().contains("at least one"), "{e}");
}

#[test]
fn status_subnets_omit_empty_zone_id() {
    let mut s = subnet("subnet-a", "us-east-1a", 1, &[]);
    s.zone_id.clear();
    assert_eq!(status_subnets(&[s])[0].zone_id, None);
}

#[test]
fn launch_picks_most_available_ips_per_zone() {
    let subnets = [
        subnet("subnet-a1", "us-east-1a", 10, &[]),
        subnet("subnet-a2", "us-east-1a", 30, &[]),
        subnet("subnet-b1", "us-east-1b", 5, &[]),
    ];
    let got = zonal_subnets_for_launch(&subnets, &BTreeMap::new());
    let picked: Vec<(&str, &str, u32)> = got
        .iter()
        .map(|z| {
            (
                z.subnet.zone.as_str(),
                z.subnet.id.as_str(),
                z.effective_available_ips,
            )
        })
        .collect();
    assert_eq!(
        picked,
        [
            ("us-east-1a", "subnet-a2", 30),
            ("us-east-1b", "subnet-b1", 5)
        ]
    );
}

#[test]
fn in_flight_launches_spread_over_subnets() {
    let subnets = [
        subnet("subnet-a1", "us-east-1a", 10, &[]),
        subnet("subnet-a2", "us-east-1a", 30, &[]),
    ];
    let in_flight = BTreeMap::from([("subnet-a2".to_string(), 25u32)]);
    let got = zonal_subnets_for_launch(&subnets, &in_flight);
    assert_eq!(got[0].subnet.id, "subnet-a1");
    assert_eq!(got[0].effective_available_ips, 10);
    // More in flight than available saturates at zero rather than wrapping.
    let in_flight = BTreeMap::from([("subnet-a1".to_string(), 99u32), ("subnet-a2".into(), 99)]);
    let got = zonal_subnets_for_launch(&subnets, &in_flight);
    assert_eq!(got[0].effective_available_ips, 0);
    assert_eq!(got[0].subnet.id, "subnet-a1", "tie goes to the smaller id");
}

#[test]
fn launch_ties_are_independent_of_input_order() {
    let a = subnet("subnet-a", "us-east-1a", 7, &[]);
    let b = subnet("subnet-b", "us-east-1a", 7, &[]);
    let none = BTreeMap::new();
    let one = zonal_subnets_for_launch(&[a.clone(), b.clone()], &none);
    let two = zonal_subnets_for_launch(&[b, a], &none);
    assert_eq!(one, two);
    assert_eq!(one[0].subnet.id, "subnet-a");
}

#[test]
fn launch_output_is_sorted_by_zone() {
    let subnets = [
        subnet("subnet-3", "us-east-1c", 1, &[]),
        subnet("subnet-1", "us-east-1a", 1, &[]),
        subnet("subnet-2", "us-east-1b", 1, &[]),
    ];
    let zones: Vec<String> = zonal_subnets_for_launch(&subnets, &BTreeMap::new())
        .into_iter()
        .map(|z| z.subnet.zone)
        .collect();
    assert_eq!(zones, ["us-east-1a", "us-east-1b", "us-east-1c"]);
    assert!(zonal_subnets_for_launch(&[], &BTreeMap::new()).is_empty());
}

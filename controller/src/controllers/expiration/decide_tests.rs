use super::*;

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(second).expect("valid time")
}

fn claim(expire_after: &str, deleting: bool) -> NodeClaim {
    let deletion = if deleting {
        format!(", deletionTimestamp: '{}'", at(2_000))
    } else {
        String::new()
    };
    serde_yaml::from_str(&format!(
        r#"
apiVersion: karpenter.sh/v1
kind: NodeClaim
metadata: {{name: c, uid: u1, creationTimestamp: '{}'{deletion}}}
spec:
  nodeClassRef: {{group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}}
  requirements: []
  expireAfter: {expire_after}
"#,
        at(1_000)
    ))
    .expect("test claim parses")
}

#[test]
fn a_claim_expires_at_creation_plus_expire_after() {
    let c = claim("1m", false);
    assert_eq!(decide(&c, at(1_059)), Expiration::At(at(1_060)));
    assert_eq!(decide(&c, at(1_060)), Expiration::Delete);
    assert_eq!(decide(&c, at(9_999)), Expiration::Delete);
}

#[test]
fn never_and_deleting_claims_are_left_alone() {
    assert_eq!(
        decide(&claim("Never", false), at(200_000_000_000)),
        Expiration::Never
    );
    assert_eq!(decide(&claim("1m", true), at(9_999)), Expiration::Never);
}

#[test]
fn an_expired_claim_is_counted_once_however_often_it_is_reconciled() {
    let counted = Counted::default();
    let c = claim("1m", false);
    let mut count = 0;
    for _ in 0..3 {
        if decide(&c, at(2_000)) == Expiration::Delete && counted.first("u1") {
            count += 1;
        }
    }
    assert_eq!(count, 1);
    assert!(counted.first("u2"), "another claim counts on its own");
}

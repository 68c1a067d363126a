use super::*;

fn claim(annotations: &str, drifted: bool) -> NodeClaim {
    let status = if drifted {
        "status: {conditions: [{type: Drifted, status: 'True', reason: NodePoolDrifted, message: m, lastTransitionTime: '2026-01-01T00:00:00Z'}]}"
    } else {
        ""
    };
    serde_yaml::from_str(&format!(
        r#"
apiVersion: karpenter.sh/v1
kind: NodeClaim
metadata: {{name: c, annotations: {{{annotations}}}}}
spec:
  nodeClassRef: {{group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}}
  requirements: []
{status}
"#
    ))
    .expect("test claim parses")
}

fn pool_stamp() -> Stamp {
    Stamp::node_pool("111".into())
}

fn class_stamp() -> Stamp {
    Stamp::node_class("222".into())
}

#[test]
fn an_object_is_patched_only_when_its_annotations_differ() {
    let stamp = pool_stamp();
    let patch = object_patch(None, NODE_POOL_KEYS, &stamp).expect("no annotations: patch");
    assert_eq!(
        patch["metadata"]["annotations"][NODE_POOL_HASH_ANNOTATION_KEY],
        "111"
    );
    assert_eq!(
        patch["metadata"]["annotations"][NODE_POOL_HASH_VERSION_ANNOTATION_KEY],
        NODE_POOL_HASH_VERSION
    );
    let mut current = BTreeMap::new();
    current.insert(NODE_POOL_HASH_ANNOTATION_KEY.to_owned(), "111".to_owned());
    current.insert(
        NODE_POOL_HASH_VERSION_ANNOTATION_KEY.to_owned(),
        NODE_POOL_HASH_VERSION.to_owned(),
    );
    assert_eq!(object_patch(Some(&current), NODE_POOL_KEYS, &stamp), None);
    current.insert(
        NODE_POOL_HASH_VERSION_ANNOTATION_KEY.to_owned(),
        "v3".to_owned(),
    );
    assert!(object_patch(Some(&current), NODE_POOL_KEYS, &stamp).is_some());
}

#[test]
fn a_new_claim_gets_both_hashes() {
    let patch =
        claim_patch(&claim("", false), Some(&pool_stamp()), Some(&class_stamp())).expect("patch");
    let a = &patch["metadata"]["annotations"];
    assert_eq!(a[NODE_POOL_HASH_ANNOTATION_KEY], "111");
    assert_eq!(a[nodeclass::HASH_ANNOTATION_KEY], "222");
    assert_eq!(
        a[nodeclass::HASH_VERSION_ANNOTATION_KEY],
        nodeclass::HASH_VERSION
    );
}

#[test]
fn a_claim_of_another_hash_version_is_rewritten_unless_drifted() {
    let old = "karpenter.sh/nodepool-hash: '9', karpenter.sh/nodepool-hash-version: v3";
    let patch = claim_patch(&claim(old, false), Some(&pool_stamp()), None).expect("patch");
    let a = &patch["metadata"]["annotations"];
    assert_eq!(a[NODE_POOL_HASH_ANNOTATION_KEY], "111");
    assert_eq!(
        a[NODE_POOL_HASH_VERSION_ANNOTATION_KEY],
        NODE_POOL_HASH_VERSION
    );
    assert!(a.get(nodeclass::HASH_ANNOTATION_KEY).is_none());

    assert_eq!(
        claim_patch(&claim(old, true), Some(&pool_stamp()), None),
        None
    );
}

#[test]
fn a_claim_of_the_current_version_keeps_its_hash_even_when_it_differs() {
    let same_version = format!(
        "karpenter.sh/nodepool-hash: '9', karpenter.sh/nodepool-hash-version: {NODE_POOL_HASH_VERSION}"
    );
    assert_eq!(
        claim_patch(&claim(&same_version, false), Some(&pool_stamp()), None),
        None,
        "a differing hash of the same version is drift"
    );
    assert_eq!(claim_patch(&claim("", false), None, None), None);
}

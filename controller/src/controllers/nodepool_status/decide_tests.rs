use super::*;

fn pool(spec_extra: &str, status: &str) -> DynamicObject {
    serde_yaml::from_str(&format!(
        r#"
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {{name: default, generation: 4}}
spec:
  template:
    spec:
      nodeClassRef: {{group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}}
      requirements: []
{spec_extra}
{status}
"#
    ))
    .expect("test NodePool parses")
}

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(second).expect("valid time")
}

fn get<'a>(s: &'a PoolStatus, type_: &str) -> &'a Condition {
    s.conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {:?}", s.conditions))
}

#[test]
fn a_valid_pool_is_ready_with_messages_filled() {
    let s = decide(&pool("", ""), at(1_000));
    assert!(s.problems.is_empty());
    assert!(s.changed, "a pool without status needs a write");
    for type_ in OWNED {
        let c = get(&s, type_);
        assert_eq!(c.status, "True", "{type_}");
        assert!(!c.message.is_empty(), "v1.20 rejects an empty message");
        assert_eq!(c.observed_generation, Some(4));
        assert_eq!(c.last_transition_time, Time(at(1_000)));
    }
    assert_eq!(get(&s, READY).reason, "Ready");
    assert_eq!(
        get(&s, CONDITION_VALIDATION_SUCCEEDED).reason,
        "ValidationSucceeded"
    );
}

#[test]
fn a_pool_failing_validation_is_not_ready_and_the_message_names_the_field() {
    let s = decide(&pool("  weight: 500", ""), at(1_000));
    assert_eq!(s.problems.len(), 1, "{:?}", s.problems);
    for type_ in OWNED {
        let c = get(&s, type_);
        assert_eq!(c.status, "False", "{type_}");
        assert_eq!(c.reason, VALIDATION_FAILED);
        assert!(
            c.message.contains("spec.weight") && c.message.contains("between 1 and 100"),
            "{}",
            c.message
        );
    }
    assert_eq!(s.message(), get(&s, READY).message);
}

#[test]
fn a_pool_that_does_not_read_is_not_ready_with_the_read_error() {
    let mut obj = pool("", "");
    obj.data["spec"]["template"]["spec"]["requirements"] = serde_json::json!(5);
    let s = decide(&obj, at(1_000));
    let ready = get(&s, READY);
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason, VALIDATION_FAILED);
    assert!(ready.message.contains("sequence"), "{}", ready.message);
}

const STORED_READY: &str = r#"
status:
  resources: {nodes: "2"}
  conditions:
    - {type: NodeClassReady, status: "True", reason: Ready, message: Ready, lastTransitionTime: "1970-01-01T00:01:40Z"}
    - {type: ValidationSucceeded, status: "True", reason: ValidationSucceeded, message: ValidationSucceeded, lastTransitionTime: "1970-01-01T00:01:40Z", observedGeneration: 4}
    - {type: Ready, status: "True", reason: Ready, message: Ready, lastTransitionTime: "1970-01-01T00:01:40Z", observedGeneration: 4}
"#;

#[test]
fn an_unchanged_pool_needs_no_write_and_keeps_its_transition_times() {
    let s = decide(&pool("", STORED_READY), at(5_000));
    assert!(!s.changed, "{:?}", s.conditions);
    assert_eq!(get(&s, READY).last_transition_time, Time(at(100)));
    assert_eq!(s.conditions.len(), 3, "another writer's condition is kept");
}

#[test]
fn a_pool_turning_invalid_gets_a_fresh_transition_time_and_keeps_other_conditions() {
    let s = decide(&pool("  weight: 0", STORED_READY), at(5_000));
    assert!(s.changed);
    let ready = get(&s, READY);
    assert_eq!(ready.status, "False");
    assert_eq!(ready.last_transition_time, Time(at(5_000)));
    let other = get(&s, "NodeClassReady");
    assert_eq!(other.status, "True");
    assert_eq!(other.last_transition_time, Time(at(100)));
    assert_eq!(s.conditions[0].type_, "NodeClassReady", "order kept");
}

#[test]
fn a_new_generation_is_a_write_even_when_the_status_holds() {
    let mut obj = pool("", STORED_READY);
    obj.metadata.generation = Some(5);
    let s = decide(&obj, at(5_000));
    assert!(s.changed);
    assert_eq!(get(&s, READY).observed_generation, Some(5));
    assert_eq!(get(&s, READY).last_transition_time, Time(at(100)));
}

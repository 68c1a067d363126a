//! The parser against the event shapes AWS documents, the edge cases Karpenter's tests pin, and
//! property tests: no input panics, and every input is classified.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

fn event(source: &str, detail_type: &str, detail: Value) -> Value {
    json!({
        "version": "0",
        "id": "7c3f0e2a-1b9d-4c55-9a1e-2f6d8b0c4e11",
        "detail-type": detail_type,
        "source": source,
        "account": "111122223333",
        "time": "2024-05-14T09:12:03Z",
        "region": "us-east-1",
        "resources": ["arn:aws:ec2:us-east-1b:instance/i-0a1b2c3d4e5f60718"],
        "detail": detail,
    })
}

fn parse_value(v: &Value) -> Result<InterruptionMessage, ParseError> {
    parse(&v.to_string())
}

fn kind_and_ids(v: &Value) -> (InterruptionKind, Vec<String>) {
    let m = parse_value(v).unwrap();
    (m.kind, m.instance_ids)
}

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn spot() -> Value {
    event(
        "aws.ec2",
        "EC2 Spot Instance Interruption Warning",
        json!({"instance-id": "i-0a1b2c3d4e5f60718", "instance-action": "terminate"}),
    )
}

fn health(service: &str, category: &str) -> Value {
    event(
        "aws.health",
        "AWS Health Event",
        json!({
            "service": service,
            "eventTypeCode": "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED",
            "eventTypeCategory": category,
            "startTime": "Tue, 21 May 2024 08:00:00 GMT",
            "affectedEntities": [
                {"entityValue": "i-0a1b2c3d4e5f60718"},
                {"entityValue": "i-0f9e8d7c6b5a40312"},
            ],
        }),
    )
}

fn state_change(state: &str) -> Value {
    event(
        "aws.ec2",
        "EC2 Instance State-change Notification",
        json!({"instance-id": "i-0f9e8d7c6b5a40312", "state": state}),
    )
}

#[test]
fn spot_interruption_warning_names_its_instance_and_time() {
    let m = parse_value(&spot()).unwrap();
    assert_eq!(m.kind, InterruptionKind::SpotInterrupted);
    assert_eq!(m.instance_ids, ids(&["i-0a1b2c3d4e5f60718"]));
    assert_eq!(m.id, "7c3f0e2a-1b9d-4c55-9a1e-2f6d8b0c4e11");
    assert_eq!(
        m.time,
        Some("2024-05-14T09:12:03Z".parse::<Timestamp>().unwrap())
    );
}

#[test]
fn rebalance_and_capacity_reservation_warnings() {
    let detail = json!({"instance-id": "i-0c1d2e3f4a5b60789", "instance-action": "terminate"});
    assert_eq!(
        kind_and_ids(&event(
            "aws.ec2",
            "EC2 Instance Rebalance Recommendation",
            detail.clone()
        )),
        (
            InterruptionKind::RebalanceRecommendation,
            ids(&["i-0c1d2e3f4a5b60789"])
        )
    );
    assert_eq!(
        kind_and_ids(&event(
            "aws.ec2",
            "EC2 Capacity Reservation Instance Interruption Warning",
            detail
        )),
        (
            InterruptionKind::CapacityReservationInterrupted,
            ids(&["i-0c1d2e3f4a5b60789"])
        )
    );
}

#[test]
fn state_changes_act_on_stopping_and_terminating_states_only() {
    let id = ids(&["i-0f9e8d7c6b5a40312"]);
    for (state, kind) in [
        ("stopping", InterruptionKind::InstanceStopped),
        ("stopped", InterruptionKind::InstanceStopped),
        ("STOPPED", InterruptionKind::InstanceStopped),
        ("shutting-down", InterruptionKind::InstanceTerminated),
        ("terminated", InterruptionKind::InstanceTerminated),
    ] {
        assert_eq!(
            kind_and_ids(&state_change(state)),
            (kind, id.clone()),
            "{state}"
        );
    }
    for state in ["pending", "running", ""] {
        assert_eq!(
            kind_and_ids(&state_change(state)),
            (InterruptionKind::NoOp, vec![]),
            "{state}"
        );
    }
}

#[test]
fn health_events_act_on_ec2_scheduled_changes_for_every_entity() {
    assert_eq!(
        kind_and_ids(&health("EC2", "scheduledChange")),
        (
            InterruptionKind::ScheduledChange,
            ids(&["i-0a1b2c3d4e5f60718", "i-0f9e8d7c6b5a40312"])
        )
    );
    for (service, category) in [
        ("RDS", "scheduledChange"),
        ("EC2", "issue"),
        ("EC2", "accountNotification"),
        ("ec2", "scheduledChange"),
        ("EC2", "ScheduledChange"),
    ] {
        assert_eq!(
            kind_and_ids(&health(service, category)).0,
            InterruptionKind::NoOp,
            "{service}/{category}"
        );
    }
}

#[test]
fn other_events_versions_and_sources_are_no_ops() {
    let mut v1 = spot();
    v1["version"] = json!("1");
    let mut other_source = spot();
    other_source["source"] = json!("aws.autoscaling");
    let launch = event(
        "aws.autoscaling",
        "EC2 Instance Launch Successful",
        json!({}),
    );
    for v in [v1, other_source, launch, json!({})] {
        let m = parse_value(&v).unwrap();
        assert_eq!(m.kind, InterruptionKind::NoOp, "{v}");
        assert!(m.instance_ids.is_empty());
    }
    assert_eq!(parse("").unwrap().kind, InterruptionKind::NoOp);
}

#[test]
fn bodies_that_are_not_events_are_errors() {
    for body in ["not json", "[1,2]", "42", "\"x\"", "{", "{\"version\": 0}"] {
        assert!(
            matches!(parse(body), Err(ParseError::NotAnEvent(_))),
            "{body}: {:?}",
            parse(body)
        );
    }
}

#[test]
fn a_time_that_is_not_rfc_3339_is_an_error() {
    let mut v = spot();
    v["time"] = json!("14/05/2024 09:12");
    assert_eq!(
        parse_value(&v),
        Err(ParseError::BadTime("14/05/2024 09:12".into()))
    );
}

#[test]
fn a_detail_of_the_wrong_shape_is_an_error_naming_the_event() {
    let mut v = spot();
    v["detail"] = json!({"instance-id": 42});
    let err = parse_value(&v).unwrap_err();
    assert!(
        matches!(&err, ParseError::BadDetail { detail_type, .. } if detail_type == "EC2 Spot Instance Interruption Warning"),
        "{err:?}"
    );
    assert!(err.to_string().contains("field `detail`"), "{err}");
    let mut h = health("EC2", "scheduledChange");
    h["detail"]["affectedEntities"] = json!("i-1");
    assert!(matches!(parse_value(&h), Err(ParseError::BadDetail { .. })));
}

#[test]
fn a_missing_detail_or_instance_id_names_no_instance() {
    let mut v = spot();
    v.as_object_mut().unwrap().remove("detail");
    let m = parse_value(&v).unwrap();
    assert_eq!(m.kind, InterruptionKind::SpotInterrupted);
    assert!(m.instance_ids.is_empty());
    let mut h = health("EC2", "scheduledChange");
    h["detail"]["affectedEntities"] = json!([{"entityValue": ""}, {}, {"entityValue": "i-9"}]);
    assert_eq!(parse_value(&h).unwrap().instance_ids, ids(&["i-9"]));
}

#[test]
fn kinds_carry_karpenter_v1_names() {
    let names: Vec<&str> = InterruptionKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "spot_interrupted",
            "rebalance_recommendation",
            "instance_stopped",
            "instance_terminated",
            "scheduled_change",
            "capacity_reservation_interrupted",
            "no_op",
        ]
    );
}

/// Every well-formed event the parser knows, for mutation.
fn known_events() -> Vec<Value> {
    vec![
        spot(),
        state_change("terminated"),
        health("EC2", "scheduledChange"),
        event(
            "aws.ec2",
            "EC2 Instance Rebalance Recommendation",
            json!({"instance-id": "i-1"}),
        ),
    ]
}

/// JSON values of every type, to put where a field of another type belongs.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(".{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every path to a value in `v` (object keys only; arrays by index).
fn paths(v: &Value, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let mut p = prefix.clone();
                p.push(k.clone());
                out.push(p.clone());
                paths(child, p, out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                let mut p = prefix.clone();
                p.push(i.to_string());
                out.push(p.clone());
                paths(child, p, out);
            }
        }
        _ => {}
    }
}

fn set_path(v: &mut Value, path: &[String], new: Value) {
    let mut at = v;
    for key in path {
        at = match at {
            Value::Object(m) => m.get_mut(key).expect("path exists"),
            Value::Array(items) => &mut items[key.parse::<usize>().expect("index")],
            _ => unreachable!("paths only lead through containers"),
        };
    }
    *at = new;
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Arbitrary bytes (read as the SDK hands bodies over: lossy UTF-8) never panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let body = String::from_utf8_lossy(&bytes);
        let _ = parse(&body);
    }

    /// Every prefix of a known event is either an error or (the empty prefix) a no-op.
    #[test]
    fn truncated_events_are_errors(which in 0usize..4, cut in 0usize..1000) {
        let body = known_events()[which].to_string();
        let cut = cut % body.len();
        // Cut on a character boundary: the bodies are ASCII, but be safe.
        let prefix: String = body.chars().take(cut).collect();
        match parse(&prefix) {
            Ok(m) => prop_assert!(prefix.is_empty() && m.kind == InterruptionKind::NoOp),
            Err(ParseError::NotAnEvent(_)) => {}
            Err(other) => prop_assert!(false, "a truncated body is not JSON: {other:?}"),
        }
    }

    /// Any field of a known event replaced by a value of any type: no panic, and the result
    /// is an error or a message whose instance ids are non-empty strings.
    #[test]
    fn mistyped_fields_are_classified(which in 0usize..4, pick in any::<prop::sample::Index>(), new in any_json()) {
        let mut v = known_events()[which].clone();
        let mut all = Vec::new();
        paths(&v, Vec::new(), &mut all);
        let path = pick.get(&all).clone();
        set_path(&mut v, &path, new);
        if let Ok(m) = parse(&v.to_string()) {
            prop_assert!(m.instance_ids.iter().all(|id| !id.is_empty()));
            if m.kind == InterruptionKind::NoOp {
                prop_assert!(m.instance_ids.is_empty());
            }
        }
    }
}

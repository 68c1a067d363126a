use std::sync::Mutex;

use karpenter_core::requirements::Requirements;
use karpenter_core::resources::Resources;
use karpenter_core::scheduling::{InstanceTypeOption, Unschedulable};
use kube_client::api::DynamicObject;

use super::*;
use crate::model::objects::read_node_pool;
use crate::model::snapshot::pod_key;

/// Records every write; refuses the creates of the pools in `refuse`.
#[derive(Default)]
struct FakeWrites {
    refuse: Vec<&'static str>,
    creates: Mutex<Vec<String>>,
    events: Mutex<Vec<(String, EventType, String, String)>>,
}

#[async_trait]
impl PassWrites for FakeWrites {
    async fn create_claim(&self, claim: &NodeClaim) -> Result<String, String> {
        let pool = claim.metadata.generate_name.clone().unwrap_or_default();
        let pool = pool.trim_end_matches('-').to_owned();
        self.creates.lock().unwrap().push(pool.clone());
        if self.refuse.contains(&pool.as_str()) {
            return Err("admission webhook denied the request: quota exceeded".into());
        }
        Ok(format!("{pool}-abcde"))
    }

    async fn pod_event(&self, pod: &Pod, type_: EventType, reason: &str, note: String) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        self.events
            .lock()
            .unwrap()
            .push((name, type_, reason.to_owned(), note));
    }
}

fn pool(name: &str) -> PoolView {
    let obj: DynamicObject = serde_yaml::from_str(&format!(
        r#"
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {{name: {name}}}
spec:
  template:
    spec:
      nodeClassRef: {{group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}}
      requirements: []
"#
    ))
    .expect("pool parses");
    read_node_pool(&obj).expect("pool reads")
}

fn pod(name: &str) -> Arc<Pod> {
    Arc::new(
        serde_yaml::from_str(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: shop}}\nspec: {{containers: []}}\n"
        ))
        .expect("pod parses"),
    )
}

fn new_claim(pool: &str, pod: &Pod) -> NewNodeClaim {
    NewNodeClaim {
        node_pool: pool.to_owned(),
        hostname: format!("{pool}-placeholder"),
        requirements: Requirements::new(),
        instance_types: vec![InstanceTypeOption {
            name: "m5.large".into(),
            zone: "us-east-1a".into(),
            capacity_type: "on-demand".into(),
            price: 0.096,
        }],
        pods: vec![pod_key(pod)],
        pod_requests: Resources::default(),
        daemon_overhead: Resources::default(),
        labels: BTreeMap::new(),
        taints: Vec::new(),
    }
}

#[tokio::test]
async fn a_refused_create_does_not_stop_the_claims_after_it() {
    let pools = vec![pool("a"), pool("b"), pool("c")];
    let pods = [pod("web-a"), pod("web-b"), pod("web-c"), pod("huge")];
    let pods_by_key: BTreeMap<_, &Arc<Pod>> = pods.iter().map(|p| (pod_key(p), p)).collect();
    let decision = Decision {
        new_node_claims: vec![
            new_claim("a", &pods[0]),
            new_claim("b", &pods[1]),
            new_claim("c", &pods[2]),
        ],
        unschedulable: vec![Unschedulable {
            pod: pod_key(&pods[3]),
            reason: "no instance type fits".into(),
        }],
        ..Decision::default()
    };
    let writes = FakeWrites {
        refuse: vec!["b"],
        ..FakeWrites::default()
    };
    let mut outcome = PassOutcome::default();
    apply_decision(
        &writes,
        &decision,
        &pools,
        &pods_by_key,
        &Metrics::new(),
        &mut outcome,
    )
    .await;

    assert_eq!(*writes.creates.lock().unwrap(), ["a", "b", "c"]);
    assert_eq!(outcome.created, ["a-abcde", "c-abcde"]);
    assert_eq!(outcome.failed.len(), 1);
    assert_eq!(outcome.failed[0].0, "b");
    assert!(outcome.failed[0].1.contains("quota exceeded"));
    assert_eq!(outcome.unschedulable, 1);

    let events = writes.events.lock().unwrap();
    let about = |pod: &str| -> Vec<(EventType, String, String)> {
        events
            .iter()
            .filter(|e| e.0 == pod)
            .map(|e| (e.1, e.2.clone(), e.3.clone()))
            .collect()
    };
    assert_eq!(
        about("web-a"),
        [(
            EventType::Normal,
            "Nominated".to_owned(),
            "Pod should schedule on: nodeclaim/a-abcde".to_owned()
        )]
    );
    let refused = about("web-b");
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].0, EventType::Warning);
    assert_eq!(refused[0].1, FAILED_SCHEDULING);
    assert!(
        refused[0].2.contains("NodePool/b") && refused[0].2.contains("quota exceeded"),
        "{}",
        refused[0].2
    );
    assert_eq!(about("web-c")[0].1, "Nominated");
    assert_eq!(about("huge")[0].1, FAILED_SCHEDULING);
}

//! Shared pieces of the e2e tests: a per-test context on the bed (unique id, clients, instance
//! launch and cleanup) and polling helpers. Tests fail loudly when the bed is missing.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_ec2::types::{Filter, InstanceType, ResourceType, Tag, TagSpecification};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube_client::api::{DeleteParams, ListParams};
use kube_client::{Api, Client, ResourceExt};

use crate::env::TestEnv;
use crate::node_sim::userdata::encode_base64;
use crate::node_sim::{NodeSimulator, SimConfig, SimHandle, kube_client_from};

/// Node label (from userData) that ties a node to the test that launched it.
pub const TEST_LABEL: &str = "e2e.karpenter-rs/test";
/// Instance tag that ties an instance to the test that launched it.
pub const TEST_TAG: &str = "e2e-node-sim";
/// How long a test waits for one step of the bed.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// One test's view of the bed.
pub struct Ctx {
    /// The bed.
    pub env: TestEnv,
    /// Admin client of the control plane.
    pub kube: Client,
    /// EC2 client of the fake account (straight to moto).
    pub ec2: aws_sdk_ec2::Client,
    /// Unique per test run: instance tag, node label, namespace.
    pub id: String,
}

impl Ctx {
    /// Loads the bed (panics when it is missing) and makes a unique id for this test.
    pub async fn new(test: &str) -> Arc<Ctx> {
        let env = TestEnv::require();
        let kube = kube_client_from(&env.cluster.kubeconfig)
            .await
            .expect("kube client from the bed's kubeconfig");
        let ec2 = crate::node_sim::ec2_client_for(&env.aws.endpoint, &env.aws.region).await;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let id = format!("ns-{test}-{}-{:x}", std::process::id(), nanos & 0xfffff);
        Arc::new(Ctx { env, kube, ec2, id })
    }

    /// A simulator that only sees this test's instances.
    pub fn sim_config(&self) -> SimConfig {
        let mut c = SimConfig::new(&self.env.aws.cluster_name)
            .with_filter(format!("tag:{TEST_TAG}"), vec![self.id.clone()]);
        c.poll_interval = Duration::from_millis(500);
        c.node.region = Some(self.env.aws.region.clone());
        c
    }

    /// A simulator that sees the instances tagged `key=value` (e.g. the controller's
    /// `karpenter.sh/nodepool=<pool>`).
    pub fn sim_config_for_tag(&self, key: &str, value: &str) -> SimConfig {
        let mut c = SimConfig::new(&self.env.aws.cluster_name)
            .with_filter(format!("tag:{key}"), vec![value.to_owned()]);
        c.poll_interval = Duration::from_millis(500);
        c.node.region = Some(self.env.aws.region.clone());
        c
    }

    /// Starts a node simulator with `config`.
    pub fn start_sim(&self, config: SimConfig) -> SimHandle {
        NodeSimulator::start(self.kube.clone(), self.ec2.clone(), config)
    }

    /// An EKS AL2 x86_64 image the bed seeded (root device /dev/xvda).
    pub async fn image_id(&self) -> String {
        let name = Filter::builder()
            .name("name")
            .values("amazon-eks-node-1.*")
            .build();
        let out = self.ec2.describe_images().filters(name).send().await;
        let out = out.expect("DescribeImages");
        let image = out.images().first().and_then(|i| i.image_id());
        image.expect("the bed seeds EKS AL2 images").to_string()
    }

    /// Publishes a new AMI release behind the SSM `parameter` in the fake account (what EKS
    /// does with each node image release); returns the new image id.
    pub async fn release_ami(&self, parameter: &str) -> String {
        use http_body_util::{BodyExt, Full};
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Full<bytes::Bytes>>();
        let body = serde_json::json!({ "parameter": parameter }).to_string();
        let request = hyper::Request::post(format!(
            "{}/moto-api/karpenter/release-ami",
            self.env.aws.endpoint
        ))
        .header("content-type", "application/json")
        .body(Full::new(bytes::Bytes::from(body)))
        .expect("request");
        let response = client
            .request(request)
            .await
            .expect("the fake AWS endpoint answers");
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            status.is_success(),
            "release-ami refused ({status}): {text}"
        );
        let reply: serde_json::Value = serde_json::from_str(&text).expect("JSON reply");
        reply["image_id"].as_str().expect("image_id").to_owned()
    }

    /// RunInstances into the first seeded subnet, tagged for the cluster and this test, with
    /// AL2 userData setting maxPods and the test's node labels.
    pub async fn launch(&self, count: i32, instance_type: &str) -> Vec<String> {
        let script = format!(
            "#!/bin/bash\n/etc/eks/bootstrap.sh '{}' --kubelet-extra-args \
             '--max-pods=110 --node-labels=karpenter.sh/nodepool=default,{TEST_LABEL}={}'\n",
            self.env.aws.cluster_name, self.id
        );
        let cluster_tag = format!("kubernetes.io/cluster/{}", self.env.aws.cluster_name);
        self.run_instances(
            count,
            instance_type,
            &[(&cluster_tag, "owned")],
            Some(&script),
        )
        .await
    }

    /// RunInstances of `count` × `instance_type` into the first seeded subnet with `tags` (and
    /// this test's [`TEST_TAG`], so cleanup finds them) and `user_data` (plain text); the ids.
    /// What another launcher (a crashed controller, Karpenter 0.36) would have left.
    pub async fn run_instances(
        &self,
        count: i32,
        instance_type: &str,
        tags: &[(&str, &str)],
        user_data: Option<&str>,
    ) -> Vec<String> {
        let image = self.image_id().await;
        self.run_instances_of(&image, count, instance_type, tags, user_data)
            .await
    }

    /// The security groups the bed's node classes select (`karpenter.sh/discovery=<cluster>`).
    pub async fn discovered_security_groups(&self) -> Vec<String> {
        let tag = Filter::builder()
            .name("tag:karpenter.sh/discovery")
            .values(&self.env.aws.cluster_name)
            .build();
        let out = self
            .ec2
            .describe_security_groups()
            .filters(tag)
            .send()
            .await;
        let out = out.expect("DescribeSecurityGroups");
        out.security_groups()
            .iter()
            .filter_map(|g| g.group_id().map(str::to_string))
            .collect()
    }

    /// [`Ctx::run_instances`] with the image `image`, in the security groups the bed's node
    /// classes select (as a node launched from one would be).
    pub async fn run_instances_of(
        &self,
        image: &str,
        count: i32,
        instance_type: &str,
        tags: &[(&str, &str)],
        user_data: Option<&str>,
    ) -> Vec<String> {
        let mut spec = TagSpecification::builder().resource_type(ResourceType::Instance);
        for (key, value) in tags {
            spec = spec.tags(tag(key, value));
        }
        let spec = spec.tags(tag(TEST_TAG, &self.id)).build();
        let out = self
            .ec2
            .run_instances()
            .image_id(image)
            .set_security_group_ids(Some(self.discovered_security_groups().await))
            .instance_type(InstanceType::from(instance_type))
            .subnet_id(&self.env.aws.subnets[0].id)
            .min_count(count)
            .max_count(count)
            .set_user_data(user_data.map(|u| encode_base64(u.as_bytes())))
            .tag_specifications(spec)
            .send()
            .await
            .expect("RunInstances");
        out.instances()
            .iter()
            .map(|i| i.instance_id().expect("instance id").to_string())
            .collect()
    }

    /// Terminates instances.
    pub async fn terminate(&self, ids: &[String]) {
        self.ec2
            .terminate_instances()
            .set_instance_ids(Some(ids.to_vec()))
            .send()
            .await
            .expect("TerminateInstances");
    }

    /// This test's nodes, by the label its userData gives them.
    pub async fn nodes(&self) -> Vec<Node> {
        let api: Api<Node> = Api::all(self.kube.clone());
        let lp = ListParams::default().labels(&format!("{TEST_LABEL}={}", self.id));
        api.list(&lp).await.expect("list nodes").items
    }

    /// This test's node of an instance, by providerID.
    pub async fn node_of(&self, instance_id: &str) -> Option<Node> {
        let suffix = format!("/{instance_id}");
        self.nodes().await.into_iter().find(|n| {
            n.spec
                .as_ref()
                .and_then(|s| s.provider_id.as_deref())
                .is_some_and(|p| p.ends_with(&suffix))
        })
    }

    /// Best-effort removal of everything the test made, in an order that lets pods finish.
    pub async fn cleanup(&self) {
        let namespaces: Api<Namespace> = Api::all(self.kube.clone());
        let _ = namespaces.delete(&self.id, &DeleteParams::default()).await;
        let out = self
            .ec2
            .describe_instances()
            .filters(
                Filter::builder()
                    .name(format!("tag:{TEST_TAG}"))
                    .values(&self.id)
                    .build(),
            )
            .send()
            .await;
        let ids: Vec<String> = out
            .map(|o| {
                o.reservations()
                    .iter()
                    .flat_map(|r| r.instances())
                    .filter_map(|i| i.instance_id().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if !ids.is_empty() {
            let _ = self
                .ec2
                .terminate_instances()
                .set_instance_ids(Some(ids))
                .send()
                .await;
        }
        let api: Api<Node> = Api::all(self.kube.clone());
        for n in self.nodes().await {
            let _ = api.delete(&n.name_any(), &DeleteParams::default()).await;
        }
    }

    /// Waits until the instance's node is Ready and untainted by the control plane.
    pub async fn wait_ready(&self, instance_id: &str) -> Node {
        eventually(
            "Ready node without the not-ready taint",
            DEADLINE,
            || async { self.node_of(instance_id).await.filter(fully_ready) },
        )
        .await
    }

    pub async fn wait_node_gone(&self, instance_id: &str) {
        eventually("node deleted", DEADLINE, || async {
            self.node_of(instance_id).await.is_none().then_some(())
        })
        .await
    }
}

/// An EC2 tag.
pub fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

/// Runs a test body, then cleans up whether it passed or panicked.
pub async fn run<F, Fut>(test: &str, body: F)
where
    F: FnOnce(Arc<Ctx>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let ctx = Ctx::new(test).await;
    let result = tokio::spawn(body(ctx.clone())).await;
    ctx.cleanup().await;
    if let Err(e) = result {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("test task failed: {e}"),
        }
    }
}

/// Polls `check` every 200 ms until it gives `Some`, or panics naming `what` at the deadline.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Like [`eventually`], for checks that can say why they are not done yet: polls `check`
/// every 200 ms until it gives `Ok`, or panics at the deadline naming `what` and the last
/// reason, so a timeout in CI shows the state it was stuck in.
pub async fn eventually_why<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let why = match check().await {
            Ok(v) => return v,
            Err(why) => why,
        };
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; last seen: {why}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Status of a node condition.
pub fn condition(node: &Node, type_: &str) -> Option<String> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
}

/// True when the node has the taint.
pub fn has_taint(node: &Node, key: &str, effect: &str) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|ts| ts.iter().any(|t| t.key == key && t.effect == effect))
}

/// Ready=True and the control plane has lifted the not-ready taint.
pub fn fully_ready(node: &Node) -> bool {
    condition(node, "Ready").as_deref() == Some("True")
        && !has_taint(node, "node.kubernetes.io/not-ready", "NoSchedule")
}

/// Running, Ready and with an IP.
pub fn pod_running_ready(p: &Pod) -> bool {
    let s = p.status.as_ref();
    s.and_then(|s| s.phase.as_deref()) == Some("Running")
        && s.and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        && s.and_then(|s| s.pod_ip.as_deref()).is_some()
}

/// One HTTP/1.0 request over a plain socket (no client library needed): the status and the
/// body. `form` is sent as an `application/x-www-form-urlencoded` body.
pub async fn http_request(
    address: &str,
    method: &str,
    path: &str,
    form: &str,
) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {address}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_owned()))
}

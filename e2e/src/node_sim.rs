//! Simulated kubelets: a Node per running fake-EC2 instance (design.md §5), our KWOK.
//!
//! Fake EC2 instances never boot, so [`NodeSimulator`] plays their kubelets against the real
//! control plane:
//!
//! - it polls EC2 (`DescribeInstances` with [`SimConfig::instance_filters`], by default
//!   `tag-key = kubernetes.io/cluster/<cluster>`) and, a join delay after an instance is first
//!   seen running, registers its Node (see [`node::build_node`]: providerID, well-known labels,
//!   userData labels/taints/maxPods, capacity from `DescribeInstanceTypes`) with the
//!   `node.kubernetes.io/not-ready:NoSchedule` taint and Ready=False;
//! - then reports Ready=True and keeps the node fresh: a `coordination.k8s.io/v1` Lease in
//!   `kube-node-lease` renewed every 10 s and a status heartbeat. The not-ready taint is left
//!   to the control plane: v1.20's node lifecycle controller (`doNoScheduleTaintingPass`) maps
//!   the Ready condition to that taint on every node update and removes it once Ready is True,
//!   exactly as for a real kubelet;
//! - marks pods bound to its nodes Running/Ready and deletes terminating ones with grace period
//!   0 (what a kubelet does once containers stop), so evictions and drains complete;
//! - deletes the Node when the instance is shutting down, terminated or gone. A Node deleted by
//!   someone else while its instance runs is not re-registered (a kubelet would not either).
//!
//! Knobs (join delay, never join, NotReady) change at run time through [`SimHandle`].

mod ec2;
mod keeper;
pub mod node;
mod pods;
mod runtime;
pub mod userdata;

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

pub use node::{InstanceInfo, InstanceTypeInfo, NodeOptions, ReadyStatus};
pub use userdata::{AmiFamily, KubeletSettings};

/// Why the simulator (or one of its calls) failed.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// An EC2 call failed.
    #[error("EC2 {operation} failed: {message}")]
    Ec2 {
        /// The API operation, e.g. `DescribeInstances`.
        operation: &'static str,
        /// The AWS error code, when there is one.
        code: Option<String>,
        /// The full error text.
        message: String,
    },
    /// A Kubernetes API call failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube_client::Error),
    /// Cloud data the simulator cannot make a node of.
    #[error("instance {instance_id}: {reason}")]
    Instance {
        /// The instance.
        instance_id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A knob named an instance or node the simulator has not registered.
    #[error("no simulated node for {0:?}")]
    UnknownNode(String),
    /// The kubeconfig could not be loaded.
    #[error("kubeconfig {path}: {message}")]
    Config {
        /// The kubeconfig file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A simulator task panicked or could not be joined.
    #[error("simulator task failed: {0}")]
    Task(String),
}

/// How a node should look when told to go NotReady.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotReady {
    /// The kubelet posts Ready=False (runtime or network trouble); its lease stays fresh.
    False,
    /// The kubelet is silent: Ready=Unknown is posted once (as the node lifecycle controller
    /// would after its grace period) and the lease is no longer renewed.
    Unknown,
}

/// Settings of a simulator. [`SimConfig::new`] gives the defaults.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Cluster name (for the default instance filter).
    pub cluster_name: String,
    /// `DescribeInstances` filters (name, values) selecting the cluster's instances. Default:
    /// `tag-key = kubernetes.io/cluster/<cluster_name>`. Tests add their own tag to keep
    /// simulators apart.
    pub instance_filters: Vec<(String, Vec<String>)>,
    /// How often EC2 is polled (default 1 s).
    pub poll_interval: Duration,
    /// Time from an instance first seen running to its Node registering (default 0).
    pub join_delay: Duration,
    /// Time from registration (Ready=False) to Ready=True (default 0).
    pub ready_delay: Duration,
    /// Lease `leaseDurationSeconds` (default 40, as the kubelet).
    pub lease_duration_seconds: i32,
    /// How often the lease is renewed (default 10 s, as the kubelet).
    pub lease_renew_interval: Duration,
    /// How often an unchanged node status is re-posted with a new heartbeat (default 60 s).
    pub status_update_interval: Duration,
    /// How often every known pod is re-checked, to retry failed updates (default 15 s).
    pub pod_resync_interval: Duration,
    /// Pod IPs come from per-node blocks carved from this address (default 100.64.0.0).
    pub pod_cidr_base: Ipv4Addr,
    /// Prefix length of each node's block (default 22: 1022 pod IPs, 4096 nodes in 100.64/10).
    pub pod_cidr_prefix_len: u8,
    /// Concurrent API calls per batch (default 16).
    pub concurrency: usize,
    /// What shapes every node (kubelet version, memory overhead, region…).
    pub node: NodeOptions,
}

impl SimConfig {
    /// Defaults for a cluster.
    pub fn new(cluster_name: impl Into<String>) -> Self {
        let cluster_name = cluster_name.into();
        SimConfig {
            instance_filters: vec![(
                "tag-key".into(),
                vec![format!("kubernetes.io/cluster/{cluster_name}")],
            )],
            cluster_name,
            poll_interval: Duration::from_secs(1),
            join_delay: Duration::ZERO,
            ready_delay: Duration::ZERO,
            lease_duration_seconds: 40,
            lease_renew_interval: Duration::from_secs(10),
            status_update_interval: Duration::from_secs(60),
            pod_resync_interval: Duration::from_secs(15),
            pod_cidr_base: Ipv4Addr::new(100, 64, 0, 0),
            pod_cidr_prefix_len: 22,
            concurrency: 16,
            node: NodeOptions::default(),
        }
    }

    /// Adds a `DescribeInstances` filter (all filters must match).
    pub fn with_filter(mut self, name: impl Into<String>, values: Vec<String>) -> Self {
        self.instance_filters.push((name.into(), values));
        self
    }
}

/// A node the simulator registered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimNode {
    /// The EC2 instance.
    pub instance_id: String,
    /// The Node's name.
    pub node_name: String,
    /// `aws:///<zone>/<id>`.
    pub provider_id: String,
    /// The instance type.
    pub instance_type: String,
    /// The Ready status last posted.
    pub reported: ReadyStatus,
    /// Whether a NotReady knob is set for it.
    pub not_ready: Option<NotReady>,
    /// The Node was deleted by someone else while the instance runs; the simulator leaves it.
    pub deleted_externally: bool,
}

/// Run-time knobs.
#[derive(Clone, Debug, Default)]
pub(crate) struct Knobs {
    pub join_delay: Duration,
    pub instance_join_delay: HashMap<String, Duration>,
    pub never_join_instances: HashSet<String>,
    pub never_join_types: HashSet<String>,
}

/// State shared by the simulator's tasks and its handle.
pub(crate) struct Shared {
    pub config: SimConfig,
    pub kube: kube_client::Client,
    pub ec2: ec2::Ec2,
    pub state: Mutex<runtime::State>,
    /// Wakes the node keeper (a knob changed or a node registered).
    pub wake_keeper: Notify,
    /// Node names whose pods should be looked at again (became Ready).
    pub pod_resync: mpsc::UnboundedSender<String>,
}

impl Shared {
    /// Locks the state; a poisoned lock (a panicked task) still gives the data.
    pub fn lock(&self) -> MutexGuard<'_, runtime::State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Starts simulators.
pub struct NodeSimulator;

impl NodeSimulator {
    /// Spawns the simulator's tasks (EC2 poller, node keeper, pod worker) on the current tokio
    /// runtime and returns their handle.
    pub fn start(
        kube: kube_client::Client,
        ec2: aws_sdk_ec2::Client,
        config: SimConfig,
    ) -> SimHandle {
        let (resync_tx, resync_rx) = mpsc::unbounded_channel();
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let state = runtime::State::new(Knobs {
            join_delay: config.join_delay,
            ..Knobs::default()
        });
        let shared = Arc::new(Shared {
            config,
            kube,
            ec2: ec2::Ec2::new(ec2),
            state: Mutex::new(state),
            wake_keeper: Notify::new(),
            pod_resync: resync_tx,
        });
        let tasks = vec![
            tokio::spawn(runtime::run_poller(shared.clone(), shutdown_rx.clone())),
            tokio::spawn(keeper::run_keeper(shared.clone(), shutdown_rx.clone())),
            tokio::spawn(pods::run(shared.clone(), shutdown_rx, resync_rx)),
        ];
        SimHandle {
            shared,
            shutdown: shutdown_tx,
            tasks,
        }
    }
}

/// Controls a running simulator. Dropping it stops the simulator too (without waiting).
pub struct SimHandle {
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl SimHandle {
    /// The nodes registered so far (sorted by node name).
    pub fn nodes(&self) -> Vec<SimNode> {
        let mut out = self.shared.lock().sim_nodes();
        out.sort_by(|a, b| a.node_name.cmp(&b.node_name));
        out
    }

    /// The node registered for an instance, if any.
    pub fn node_for_instance(&self, instance_id: &str) -> Option<SimNode> {
        self.nodes()
            .into_iter()
            .find(|n| n.instance_id == instance_id)
    }

    /// Sets the join delay of instances without their own.
    pub fn set_join_delay(&self, delay: Duration) {
        self.shared.lock().knobs.join_delay = delay;
    }

    /// Sets (or with `None` clears) one instance's join delay.
    pub fn set_instance_join_delay(&self, instance_id: &str, delay: Option<Duration>) {
        let mut state = self.shared.lock();
        match delay {
            Some(d) => state
                .knobs
                .instance_join_delay
                .insert(instance_id.into(), d),
            None => state.knobs.instance_join_delay.remove(instance_id),
        };
    }

    /// The instance never registers a Node (until [`SimHandle::allow_join_instance`]).
    pub fn never_join_instance(&self, instance_id: &str) {
        let mut state = self.shared.lock();
        state.knobs.never_join_instances.insert(instance_id.into());
    }

    /// Undoes [`SimHandle::never_join_instance`].
    pub fn allow_join_instance(&self, instance_id: &str) {
        self.shared
            .lock()
            .knobs
            .never_join_instances
            .remove(instance_id);
    }

    /// Instances of this type never register Nodes.
    pub fn never_join_instance_type(&self, instance_type: &str) {
        let mut state = self.shared.lock();
        state.knobs.never_join_types.insert(instance_type.into());
    }

    /// Undoes [`SimHandle::never_join_instance_type`].
    pub fn allow_join_instance_type(&self, instance_type: &str) {
        let mut state = self.shared.lock();
        state.knobs.never_join_types.remove(instance_type);
    }

    /// Makes a node (by instance id or node name) NotReady: it stops renewing its lease (with
    /// [`NotReady::Unknown`]) and stops running pods until [`SimHandle::set_ready`].
    pub fn set_not_ready(&self, instance_or_node: &str, how: NotReady) -> Result<(), SimError> {
        self.shared.lock().set_wanted(instance_or_node, Some(how))?;
        self.shared.wake_keeper.notify_one();
        Ok(())
    }

    /// Brings a node back to Ready (lease renewed, Ready=True, pods looked at again).
    pub fn set_ready(&self, instance_or_node: &str) -> Result<(), SimError> {
        self.shared.lock().set_wanted(instance_or_node, None)?;
        self.shared.wake_keeper.notify_one();
        Ok(())
    }

    /// Stops the simulator's tasks and waits for them. Registered Nodes stay (like kubelets
    /// that were killed); terminate their instances first to have them removed.
    pub async fn shutdown(mut self) -> Result<(), SimError> {
        self.shutdown.send_replace(true);
        let mut result = Ok(());
        for task in std::mem::take(&mut self.tasks) {
            if let Err(e) = task.await {
                result = Err(SimError::Task(e.to_string()));
            }
        }
        result
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

/// A kube client from a kubeconfig file.
pub async fn kube_client_from(kubeconfig: &Path) -> Result<kube_client::Client, SimError> {
    use kube_client::config::{KubeConfigOptions, Kubeconfig};
    let err = |message: String| SimError::Config {
        path: kubeconfig.to_owned(),
        message,
    };
    let file = Kubeconfig::read_from(kubeconfig).map_err(|e| err(e.to_string()))?;
    let config = kube_client::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .map_err(|e| err(e.to_string()))?;
    crate::install_crypto_provider();
    kube_client::Client::try_from(config).map_err(|e| err(e.to_string()))
}

/// A kube client over plain HTTP, e.g. to a `kubectl proxy` on localhost (which adds the
/// credentials and TLS). Needs no rustls crypto provider.
pub fn kube_client_plain_http(url: &str) -> Result<kube_client::Client, SimError> {
    use kube_client::client::{Body, ClientBuilder, ConfigExt};
    let err = |message: String| SimError::Config {
        path: PathBuf::from(url),
        message,
    };
    let uri = url.parse::<hyper::Uri>().map_err(|e| err(e.to_string()))?;
    let config = kube_client::Config::new(uri);
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Body>();
    Ok(ClientBuilder::new(http, config.default_namespace.clone())
        .with_layer(&config.base_uri_layer())
        .build())
}

/// An EC2 client for a fake endpoint (static dummy credentials).
pub async fn ec2_client_for(endpoint: &str, region: &str) -> aws_sdk_ec2::Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
            "testing", "testing", None, None, "node-sim",
        ))
        .load()
        .await;
    aws_sdk_ec2::Client::new(&config)
}

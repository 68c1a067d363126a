//! The EC2 poller (registers and deletes Nodes) and the state it shares with the node keeper
//! and the pod worker.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use kube_client::Api;
use kube_client::api::{DeleteParams, PostParams};
use tokio::sync::watch;

use super::node::{self, INSTANCE_ANNOTATION, InstanceInfo, NodeInputs, ReadyStatus};
use super::{Knobs, NotReady, Shared, SimConfig, SimError, SimNode, userdata};

/// Where kubelets keep their Leases.
pub(crate) const LEASE_NAMESPACE: &str = "kube-node-lease";

/// What the simulator knows about one instance.
pub(crate) struct Tracked {
    /// When it was first seen running (join delays count from here).
    pub first_seen_running: Option<Instant>,
    pub info: InstanceInfo,
    pub node: Option<NodeEntry>,
    /// No join attempt before this (after a failure).
    pub retry_at: Option<Instant>,
    /// The last join failure, logged once per distinct message.
    pub last_error: Option<String>,
}

/// A registered node.
pub(crate) struct NodeEntry {
    pub name: String,
    pub uid: String,
    pub provider_id: String,
    pub host_ip: Option<String>,
    /// Index of the node's pod CIDR block.
    pub cidr_index: Option<u32>,
    /// Ready=True is not posted before this.
    pub ready_after: Instant,
    pub not_ready: Option<NotReady>,
    /// The instance is stopping/stopped: its kubelet is silent.
    pub stopped: bool,
    /// Someone else deleted the Node; the simulator leaves it alone.
    pub gone: bool,
    pub reported: ReadyStatus,
    pub reported_since: Timestamp,
    pub last_status: Instant,
    pub last_lease: Option<Instant>,
    /// Pod IPs handed out: offset in the node's block → pod uid.
    pub pod_ips: BTreeMap<u32, String>,
    pub ip_cursor: u32,
}

impl NodeEntry {
    /// The Ready status the kubelet should be posting now.
    pub fn target(&self, now: Instant) -> ReadyStatus {
        match (self.not_ready, self.stopped) {
            (Some(NotReady::Unknown), _) | (_, true) => ReadyStatus::Unknown,
            (Some(NotReady::False), _) => ReadyStatus::False,
            (None, false) if now < self.ready_after => ReadyStatus::False,
            (None, false) => ReadyStatus::True,
        }
    }

    /// Whether the kubelet is alive enough to renew its lease.
    pub fn renews_lease(&self) -> bool {
        !self.gone && !self.stopped && self.not_ready != Some(NotReady::Unknown)
    }

    /// Whether pods on this node are run (and deleted) by the simulator.
    pub fn runs_pods(&self, now: Instant) -> bool {
        !self.gone && self.target(now) == ReadyStatus::True
    }
}

/// Everything the poller, keeper and pod worker share.
pub(crate) struct State {
    pub knobs: Knobs,
    pub instances: HashMap<String, Tracked>,
    /// Node name → instance id.
    pub by_node: HashMap<String, String>,
}

impl State {
    pub fn new(knobs: Knobs) -> Self {
        State {
            knobs,
            instances: HashMap::new(),
            by_node: HashMap::new(),
        }
    }

    pub fn sim_nodes(&self) -> Vec<SimNode> {
        self.instances
            .values()
            .filter_map(|t| {
                let n = t.node.as_ref()?;
                Some(SimNode {
                    instance_id: t.info.instance_id.clone(),
                    node_name: n.name.clone(),
                    provider_id: n.provider_id.clone(),
                    instance_type: t.info.instance_type.clone(),
                    reported: n.reported,
                    not_ready: n.not_ready,
                    deleted_externally: n.gone,
                })
            })
            .collect()
    }

    /// The registered node of an instance id or node name.
    pub fn entry_mut(&mut self, instance_or_node: &str) -> Option<&mut NodeEntry> {
        let id = match self.by_node.get(instance_or_node) {
            Some(id) => id.clone(),
            None => instance_or_node.to_string(),
        };
        self.instances.get_mut(&id)?.node.as_mut()
    }

    pub fn node_by_name_mut(&mut self, node_name: &str) -> Option<&mut NodeEntry> {
        let id = self.by_node.get(node_name)?.clone();
        self.instances.get_mut(&id)?.node.as_mut()
    }

    pub fn set_wanted(
        &mut self,
        instance_or_node: &str,
        how: Option<NotReady>,
    ) -> Result<(), SimError> {
        let entry = self
            .entry_mut(instance_or_node)
            .ok_or_else(|| SimError::UnknownNode(instance_or_node.to_string()))?;
        entry.not_ready = how;
        Ok(())
    }

    fn join_due(&self, t: &Tracked, now: Instant) -> bool {
        let Some(seen) = t.first_seen_running else {
            return false;
        };
        let k = &self.knobs;
        let id = &t.info.instance_id;
        let delay = k
            .instance_join_delay
            .get(id)
            .copied()
            .unwrap_or(k.join_delay);
        t.node.is_none()
            && !k.never_join_instances.contains(id)
            && !k.never_join_types.contains(&t.info.instance_type)
            && now >= seen + delay
            && t.retry_at.is_none_or(|r| now >= r)
    }

    fn free_cidr_index(&self) -> u32 {
        let used: std::collections::HashSet<u32> = self
            .instances
            .values()
            .filter_map(|t| t.node.as_ref()?.cidr_index)
            .collect();
        (0..).find(|i| !used.contains(i)).unwrap_or(0)
    }
}

/// The pod CIDR of block `index`.
pub(crate) fn pod_cidr(config: &SimConfig, index: u32) -> (Ipv4Addr, u8) {
    let prefix = config.pod_cidr_prefix_len.clamp(8, 30);
    let base = u32::from(config.pod_cidr_base);
    let addr = base.wrapping_add(index.wrapping_mul(1u32 << (32 - prefix)));
    (Ipv4Addr::from(addr), prefix)
}

/// Polls EC2 every poll interval until shutdown.
pub(crate) async fn run_poller(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    if let Err(e) = sweep_orphans(&shared).await {
        tracing::warn!(error = %e, "node-sim: could not sweep orphaned nodes");
    }
    loop {
        poll_once(&shared).await;
        tokio::select! {
            _ = tokio::time::sleep(shared.config.poll_interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Deletes Nodes a previous simulator registered whose instances are gone.
async fn sweep_orphans(shared: &Shared) -> Result<(), SimError> {
    let nodes: Api<Node> = Api::all(shared.kube.clone());
    let list = nodes.list(&Default::default()).await?;
    let owned: Vec<(String, String)> = list
        .items
        .iter()
        .filter_map(|n| {
            let id = n.metadata.annotations.as_ref()?.get(INSTANCE_ANNOTATION)?;
            Some((n.metadata.name.clone()?, id.clone()))
        })
        .collect();
    if owned.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = owned.iter().map(|(_, id)| id.clone()).collect();
    let states = shared.ec2.instance_states(&ids).await?;
    for (name, id) in owned {
        let alive = states
            .get(&id)
            .is_some_and(|s| !matches!(s.as_str(), "shutting-down" | "terminated"));
        if !alive {
            tracing::info!(node = %name, instance = %id, "node-sim: deleting orphaned node");
            delete_node(shared, &name).await?;
        }
    }
    Ok(())
}

async fn poll_once(shared: &Arc<Shared>) {
    let (instances, unreadable) = match shared
        .ec2
        .list_instances(&shared.config.instance_filters)
        .await
    {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "node-sim: DescribeInstances failed");
            return;
        }
    };
    let now = Instant::now();
    let (joins, deletes) = {
        let mut state = shared.lock();
        let mut seen = std::collections::HashSet::new();
        for info in instances {
            seen.insert(info.instance_id.clone());
            let running = info.state == "running";
            let t = state
                .instances
                .entry(info.instance_id.clone())
                .or_insert_with(|| Tracked {
                    first_seen_running: None,
                    info: info.clone(),
                    node: None,
                    retry_at: None,
                    last_error: None,
                });
            if running && t.first_seen_running.is_none() {
                t.first_seen_running = Some(now);
            }
            if let Some(n) = t.node.as_mut() {
                let stopped = matches!(info.state.as_str(), "stopping" | "stopped");
                if n.stopped != stopped {
                    n.stopped = stopped;
                    shared.wake_keeper.notify_one();
                }
            }
            t.info = info;
        }
        // Instances we could not read are neither joined nor treated as gone.
        seen.extend(unreadable);
        let gone: Vec<String> = state
            .instances
            .keys()
            .filter(|id| !seen.contains(*id))
            .cloned()
            .collect();
        let mut deletes = Vec::new();
        for id in gone {
            match state.instances.get(&id).and_then(|t| t.node.as_ref()) {
                Some(n) => deletes.push((id, n.name.clone())),
                None => {
                    state.instances.remove(&id);
                }
            }
        }
        let joins: Vec<InstanceInfo> = state
            .instances
            .values()
            .filter(|t| t.info.state == "running" && state.join_due(t, now))
            .map(|t| t.info.clone())
            .collect();
        (joins, deletes)
    };
    let concurrency = shared.config.concurrency.max(1);
    stream::iter(joins)
        .for_each_concurrent(concurrency, |info| async move {
            let id = info.instance_id.clone();
            let result = join(shared, info).await;
            let mut state = shared.lock();
            let Some(t) = state.instances.get_mut(&id) else {
                return;
            };
            match result {
                Ok(()) => t.last_error = None,
                Err(e) => {
                    let msg = e.to_string();
                    if t.last_error.as_deref() != Some(msg.as_str()) {
                        tracing::warn!(instance = %id, error = %msg, "node-sim: cannot register node (will retry)");
                    }
                    t.last_error = Some(msg);
                    t.retry_at = Some(Instant::now() + Duration::from_secs(5));
                }
            }
        })
        .await;
    stream::iter(deletes)
        .for_each_concurrent(concurrency, |(id, name)| async move {
            match delete_node(shared, &name).await {
                Ok(()) => {
                    tracing::info!(node = %name, instance = %id, "node-sim: instance gone, node deleted");
                    let mut state = shared.lock();
                    state.instances.remove(&id);
                    if state.by_node.get(&name) == Some(&id) {
                        state.by_node.remove(&name);
                    }
                }
                Err(e) => tracing::warn!(node = %name, error = %e, "node-sim: cannot delete node (will retry)"),
            }
        })
        .await;
}

/// Registers (or adopts) the Node of a running instance.
async fn join(shared: &Arc<Shared>, info: InstanceInfo) -> Result<(), SimError> {
    let ty = shared.ec2.instance_type(&info.instance_type).await?;
    let kubelet = match shared.ec2.user_data(&info).await? {
        Some(b64) => userdata::parse_base64(&b64),
        None => userdata::KubeletSettings::default(),
    };
    for p in &kubelet.problems {
        tracing::warn!(instance = %info.instance_id, problem = %p, "node-sim: userData");
    }
    let ephemeral_bytes = match shared.ec2.root_volume_bytes(&info).await {
        Ok(v) => v,
        Err(e) => {
            tracing::debug!(error = %e, "node-sim: root volume size unknown");
            None
        }
    };
    let cidr_index = shared.lock().free_cidr_index();
    let (addr, prefix) = pod_cidr(&shared.config, cidr_index);
    let now = Timestamp::now();
    let desired = node::build_node(
        &info,
        &ty,
        &NodeInputs {
            kubelet: &kubelet,
            ephemeral_bytes,
            pod_cidr: Some(format!("{addr}/{prefix}")),
            now,
        },
        &shared.config.node,
    );
    let name = info.node_name();
    let api: Api<Node> = Api::all(shared.kube.clone());
    let (created, adopted) = match api.create(&PostParams::default(), &desired).await {
        Ok(n) => (n, false),
        Err(kube_client::Error::Api(s)) if s.is_already_exists() => {
            let existing = api.get(&name).await?;
            let ours = existing
                .spec
                .as_ref()
                .and_then(|s| s.provider_id.as_deref())
                == Some(info.provider_id().as_str());
            if !ours {
                return Err(SimError::Instance {
                    instance_id: info.instance_id.clone(),
                    reason: format!("node name {name} is taken by another node"),
                });
            }
            (existing, true)
        }
        Err(e) => return Err(e.into()),
    };
    let reported = if adopted {
        ready_status_of(&created).unwrap_or(ReadyStatus::False)
    } else {
        ReadyStatus::False
    };
    let cidr_index = if adopted {
        // Keep the block the node already has.
        created
            .spec
            .as_ref()
            .and_then(|s| s.pod_cidr.as_deref())
            .and_then(|c| cidr_index_of(shared, c))
    } else {
        Some(cidr_index)
    };
    let entry = NodeEntry {
        name: name.clone(),
        uid: created.metadata.uid.clone().unwrap_or_default(),
        provider_id: info.provider_id(),
        host_ip: info.private_ip.clone().filter(|ip| !ip.is_empty()),
        cidr_index,
        ready_after: Instant::now() + shared.config.ready_delay,
        not_ready: None,
        stopped: false,
        gone: false,
        reported,
        reported_since: now,
        last_status: Instant::now(),
        last_lease: None,
        pod_ips: BTreeMap::new(),
        ip_cursor: 0,
    };
    tracing::info!(node = %name, instance = %info.instance_id, adopted, "node-sim: node registered");
    {
        let mut state = shared.lock();
        state.by_node.insert(name.clone(), info.instance_id.clone());
        if let Some(t) = state.instances.get_mut(&info.instance_id) {
            t.node = Some(entry);
        }
    }
    shared.wake_keeper.notify_one();
    let _ = shared.pod_resync.send(name);
    Ok(())
}

fn ready_status_of(node: &Node) -> Option<ReadyStatus> {
    let c = node
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    Some(match c.status.as_str() {
        "True" => ReadyStatus::True,
        "False" => ReadyStatus::False,
        _ => ReadyStatus::Unknown,
    })
}

fn cidr_index_of(shared: &Shared, cidr: &str) -> Option<u32> {
    let addr: Ipv4Addr = cidr.split('/').next()?.parse().ok()?;
    let prefix = shared.config.pod_cidr_prefix_len.clamp(8, 30);
    let offset = u32::from(addr).checked_sub(u32::from(shared.config.pod_cidr_base))?;
    Some(offset >> (32 - prefix))
}

/// Deletes a Node and its Lease (not found counts as done).
async fn delete_node(shared: &Shared, name: &str) -> Result<(), SimError> {
    let nodes: Api<Node> = Api::all(shared.kube.clone());
    ignore_not_found(
        nodes
            .delete(name, &DeleteParams::default())
            .await
            .map(|_| ()),
    )?;
    let leases: Api<Lease> = Api::namespaced(shared.kube.clone(), LEASE_NAMESPACE);
    ignore_not_found(
        leases
            .delete(name, &DeleteParams::default())
            .await
            .map(|_| ()),
    )
}

fn ignore_not_found(r: Result<(), kube_client::Error>) -> Result<(), SimError> {
    match r {
        Err(kube_client::Error::Api(s)) if s.is_not_found() => Ok(()),
        other => other.map_err(SimError::from),
    }
}

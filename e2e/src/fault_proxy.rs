//! Fault-injecting HTTP proxy in front of moto: insufficient capacity (ICE), throttling and slow
//! responses, which moto never produces by itself. Test-bed only, never shipped.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use karpenter_e2e::fault_proxy::FaultProxy;
//! let aws = karpenter_e2e::env::require_aws();
//! let proxy = FaultProxy::start(&aws.endpoint)?;
//! proxy.ice("m5.large", "us-east-1a"); // CreateFleet/RunInstances get no m5.large there
//! proxy.throttle("DescribeInstances", 2); // the next two calls get RequestLimitExceeded
//! // point aws-sdk clients at `proxy.endpoint()` (`endpoint_url`), run the code under test, then
//! // assert on `proxy.calls()`.
//! # Ok(()) }
//! ```
//!
//! The proxy runs on its own thread and Tokio runtime, so it works from sync and async tests
//! alike and outlives the runtime of whoever started it; it stops when dropped.

mod handler;
mod query;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The upstream is not an `http://host:port` URL.
    #[error("upstream {0:?} is not an http://host:port URL")]
    InvalidUpstream(String),
    /// Binding the listener or starting the proxy's thread failed.
    #[error("starting the fault proxy: {0}")]
    Io(#[from] std::io::Error),
}

/// One request the proxy handled, in the order the proxy answered them (before any delay).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// Signing name of the service (`ec2`, `sqs`, `ssm`…), from the `Authorization` header.
    pub service: String,
    /// Operation: EC2 Query `Action=`, or the operation of a JSON `X-Amz-Target`
    /// (`AmazonSQS.ReceiveMessage` → `ReceiveMessage`); `METHOD /path` for anything else.
    pub action: String,
    /// What the proxy did with it.
    pub outcome: Outcome,
}

/// What the proxy did with a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Forwarded to moto, which answered `status`; `iced` CreateFleet overrides were removed
    /// first (and reported in the response's `errorSet`).
    Forwarded {
        /// moto's HTTP status.
        status: u16,
        /// Overrides removed because of ICE rules.
        iced: usize,
    },
    /// Answered with a throttling error without calling moto.
    Throttled,
    /// Answered with insufficient capacity without calling moto: a RunInstances for an ICE'd
    /// pair, or a CreateFleet whose every override was ICE'd.
    InsufficientCapacity,
    /// moto could not be reached (answered 502).
    UpstreamFailed(String),
}

/// Fault rules; all empty means "forward everything unchanged".
#[derive(Default)]
struct Rules {
    /// `(instance type, zone)` pairs without capacity.
    ice: HashSet<(String, String)>,
    /// Calls of an action still to throttle.
    throttle: HashMap<String, u32>,
    /// How long to hold the responses of an action.
    delay: HashMap<String, Duration>,
}

struct Shared {
    upstream: Uri,
    client: Client<HttpConnector, Full<Bytes>>,
    rules: Mutex<Rules>,
    calls: Mutex<Vec<Call>>,
    /// Subnet id → zone, learned from moto (subnets never move).
    zones: Mutex<HashMap<String, String>>,
}

/// Locks, ignoring poisoning: a panicking test thread must not hide the records from others.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running proxy. Cheap to query and change from any thread; stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy on `127.0.0.1:<free port>` forwarding to `upstream` (moto's URL, e.g.
    /// [`AwsInfo::endpoint`](crate::env::AwsInfo::endpoint)).
    pub fn start(upstream: &str) -> Result<FaultProxy, Error> {
        let invalid = || Error::InvalidUpstream(upstream.to_owned());
        let uri: Uri = upstream.parse().map_err(|_| invalid())?;
        if uri.scheme_str() != Some("http") || uri.authority().is_none() {
            return Err(invalid());
        }
        let upstream = Uri::builder()
            .scheme("http")
            .authority(uri.authority().cloned().ok_or_else(invalid)?)
            .path_and_query("/")
            .build()
            .map_err(|_| invalid())?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            client: Client::builder(TokioExecutor::new()).build_http(),
            rules: Mutex::default(),
            calls: Mutex::default(),
            zones: Mutex::default(),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let serving = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("fault-proxy-{}", addr.port()))
            .spawn(move || runtime.block_on(serve(listener, serving, stopped)))?;
        Ok(FaultProxy {
            addr,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The URL to give aws-sdk clients as `endpoint_url`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// No capacity for `instance_type` in `zone` (e.g. `us-east-1a`) until [`clear`](Self::clear)
    /// or [`restore`](Self::restore): CreateFleet overrides for the pair are dropped and reported
    /// as `InsufficientInstanceCapacity` in the response's `errorSet`; RunInstances for it fails
    /// with `InsufficientInstanceCapacity` (HTTP 500, as EC2 answers).
    pub fn ice(&self, instance_type: &str, zone: &str) {
        lock(&self.shared.rules)
            .ice
            .insert((instance_type.to_owned(), zone.to_owned()));
    }

    /// Capacity for `instance_type` in `zone` is back.
    pub fn restore(&self, instance_type: &str, zone: &str) {
        lock(&self.shared.rules)
            .ice
            .remove(&(instance_type.to_owned(), zone.to_owned()));
    }

    /// The next `times` calls of `action` (e.g. `CreateFleet`, `ReceiveMessage`) are throttled:
    /// EC2's `RequestLimitExceeded` (HTTP 503, Query XML) or, for JSON protocols, a 400 with a
    /// throttling error type. The SDKs retry these themselves.
    pub fn throttle(&self, action: &str, times: u32) {
        *lock(&self.shared.rules)
            .throttle
            .entry(action.to_owned())
            .or_default() += times;
    }

    /// Holds every response to `action` for `duration` (after moto has handled the request, so
    /// the call takes effect even when the client times out, as on a slow AWS).
    pub fn delay(&self, action: &str, duration: Duration) {
        lock(&self.shared.rules)
            .delay
            .insert(action.to_owned(), duration);
    }

    /// The requests handled so far, in the order they were answered (a delayed response counts
    /// when its delay starts).
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.shared.calls).clone()
    }

    /// How many calls of `action` were handled so far.
    pub fn count(&self, action: &str) -> usize {
        lock(&self.shared.calls)
            .iter()
            .filter(|c| c.action == action)
            .count()
    }

    /// Removes every rule and record.
    pub fn clear(&self) {
        *lock(&self.shared.rules) = Rules::default();
        lock(&self.shared.calls).clear();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => return tracing::error!("fault proxy cannot listen: {e}"),
    };
    loop {
        let stream = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("fault proxy accept: {e}");
                    continue;
                }
            },
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req| handler::handle(shared.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_upstreams() {
        assert!(matches!(
            FaultProxy::start("https://x:1"),
            Err(Error::InvalidUpstream(_))
        ));
        assert!(matches!(
            FaultProxy::start("not a url"),
            Err(Error::InvalidUpstream(_))
        ));
    }

    #[test]
    fn rules_change_and_clear_without_a_runtime() {
        let proxy = FaultProxy::start("http://127.0.0.1:9").unwrap();
        assert!(proxy.endpoint().starts_with("http://127.0.0.1:"));
        proxy.ice("m5.large", "us-east-1a");
        proxy.throttle("CreateFleet", 2);
        proxy.throttle("CreateFleet", 1);
        proxy.delay("DescribeInstances", Duration::from_millis(5));
        {
            let rules = lock(&proxy.shared.rules);
            assert_eq!(rules.throttle["CreateFleet"], 3);
            assert!(
                rules
                    .ice
                    .contains(&("m5.large".into(), "us-east-1a".into()))
            );
        }
        proxy.restore("m5.large", "us-east-1a");
        assert!(lock(&proxy.shared.rules).ice.is_empty());
        proxy.clear();
        assert!(lock(&proxy.shared.rules).throttle.is_empty());
        assert!(proxy.calls().is_empty());
    }
}

//! The controller's HTTP endpoints, on hyper 1: `/metrics` on the metrics port (8080) and the
//! kubelet probes `/healthz` and `/readyz` on the health port (8081), as Karpenter serves them.
//!
//! `/metrics` answers in the Prometheus text format 0.0.4
//! ([`crate::runtime::metrics::CONTENT_TYPE`]), as Karpenter does. `/healthz` answers 200 as long as the
//! runtime serves requests at all (a wedged runtime fails the probe by not answering);
//! `/readyz` answers 200 once [`Health::set_ready`] was called (caches synced) and 503 with the
//! reason before that or after [`Health::set_not_ready`]. Both answer 500 after
//! [`Health::set_unhealthy`] (a supervised task ended; the process is exiting). Other paths are 404, other methods
//! than GET/HEAD 405.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::runtime::metrics::{self, Metrics};

/// Readiness of the controller, shared between whatever decides it (cache sync) and the
/// `/readyz` handler. Clones share the state. Starts not ready.
#[derive(Clone, Debug)]
pub struct Health {
    inner: Arc<HealthState>,
}

#[derive(Debug)]
struct HealthState {
    ready: AtomicBool,
    /// False once a task that must not end has ended: `/healthz` answers 500.
    healthy: AtomicBool,
    /// Why the controller is not ready; shown by `/readyz` with its 503.
    reason: Mutex<String>,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl Health {
    /// Not ready, reason "starting".
    pub fn new() -> Self {
        Self {
            inner: Arc::new(HealthState {
                ready: AtomicBool::new(false),
                healthy: AtomicBool::new(true),
                reason: Mutex::new("starting".to_string()),
            }),
        }
    }

    /// `/readyz` answers 200 from now on.
    pub fn set_ready(&self) {
        self.inner.ready.store(true, Ordering::SeqCst);
    }

    /// `/readyz` answers 503 with `reason` from now on.
    pub fn set_not_ready(&self, reason: impl Into<String>) {
        *self.reason() = reason.into();
        self.inner.ready.store(false, Ordering::SeqCst);
    }

    /// `/healthz` (and `/readyz`) answer 500 from now on, with `reason`: the process is about
    /// to exit because something that must not end ended.
    pub fn set_unhealthy(&self, reason: impl Into<String>) {
        *self.reason() = reason.into();
        self.inner.ready.store(false, Ordering::SeqCst);
        self.inner.healthy.store(false, Ordering::SeqCst);
    }

    /// Whether `/healthz` answers 200.
    pub fn is_healthy(&self) -> bool {
        self.inner.healthy.load(Ordering::SeqCst)
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::SeqCst)
    }

    fn reason(&self) -> std::sync::MutexGuard<'_, String> {
        // A handler that panicked while holding the lock must not take readiness down with it.
        self.inner.reason.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// 405 for anything but GET and HEAD (probes and scrapes only read).
fn reject_method<B>(req: &Request<B>) -> Option<Response<Full<Bytes>>> {
    (req.method() != Method::GET && req.method() != Method::HEAD)
        .then(|| text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"))
}

/// The metrics listener's routes.
pub fn metrics_response<B>(metrics: &Metrics, req: &Request<B>) -> Response<Full<Bytes>> {
    if req.uri().path() != "/metrics" {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    if let Some(resp) = reject_method(req) {
        return resp;
    }
    let mut resp = text(StatusCode::OK, metrics.encode());
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(metrics::CONTENT_TYPE),
    );
    resp
}

/// The health listener's routes.
pub fn health_response<B>(health: &Health, req: &Request<B>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if path != "/healthz" && path != "/readyz" {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    if let Some(resp) = reject_method(req) {
        return resp;
    }
    if !health.is_healthy() {
        let reason = health.reason().clone();
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("unhealthy: {reason}\n"),
        );
    }
    if path == "/healthz" || health.is_ready() {
        return text(StatusCode::OK, "ok\n");
    }
    let reason = health.reason().clone();
    text(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("not ready: {reason}\n"),
    )
}

/// Serves `/metrics` on `listener` until `shutdown` completes.
pub async fn serve_metrics(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    serve(
        listener,
        move |req| metrics_response(&metrics, &req),
        shutdown,
    )
    .await
}

/// Serves `/healthz` and `/readyz` on `listener` until `shutdown` completes.
pub async fn serve_health(
    listener: TcpListener,
    health: Health,
    shutdown: impl Future<Output = ()>,
) {
    serve(
        listener,
        move |req| health_response(&health, &req),
        shutdown,
    )
    .await
}

/// Accepts HTTP/1 connections and answers each request with `handler` until `shutdown`
/// completes; then stops accepting and lets open connections finish their current request.
async fn serve<H>(listener: TcpListener, handler: H, shutdown: impl Future<Output = ()>)
where
    H: Fn(Request<Incoming>) -> Response<Full<Bytes>> + Clone + Send + Sync + 'static,
{
    // Dropped (or set) when the accept loop ends: tells open keep-alive connections to close.
    let (stop_tx, stop_rx) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Usually out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %e, "accepting a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let handler = handler.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let resp = handler(req);
                async move { Ok::<_, Infallible>(resp) }
            });
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "serving a connection");
                    }
                }
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    drop(stop_tx);
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use tokio::sync::oneshot;

    use super::*;

    type TestClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

    fn client() -> TestClient {
        Client::builder(TokioExecutor::new()).build_http()
    }

    /// GET `url`: status, content type and body.
    async fn get(client: &TestClient, url: &str) -> (StatusCode, String, String) {
        let resp = client.get(url.parse().unwrap()).await.expect("request");
        let status = resp.status();
        let ct = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, ct, String::from_utf8_lossy(&body).into_owned())
    }

    async fn bind() -> (TcpListener, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().unwrap());
        (listener, base)
    }

    #[tokio::test]
    async fn metrics_endpoint_serves_the_text_format() {
        let (listener, base) = bind().await;
        let metrics = Arc::new(Metrics::new());
        metrics.nodeclaim_created("default", "provisioned");
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(serve_metrics(listener, metrics.clone(), async {
            let _ = stopped.await;
        }));
        let c = client();

        let (status, ct, body) = get(&c, &format!("{base}/metrics")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8");
        assert!(
            body.contains(
                "karpenter_nodeclaims_created_total{reason=\"provisioned\",nodepool=\"default\"} 1"
            ),
            "{body}"
        );
        // Each scrape encodes the current values.
        metrics.nodeclaim_created("default", "provisioned");
        let (_, _, body) = get(&c, &format!("{base}/metrics")).await;
        assert!(body.contains("nodepool=\"default\"} 2"), "{body}");

        let (status, _, _) = get(&c, &format!("{base}/healthz")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        let post = Request::post(format!("{base}/metrics"))
            .body(Empty::new())
            .unwrap();
        let resp = c.request(post).await.expect("POST");
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);

        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("server stops on shutdown")
            .expect("server task");
    }

    #[tokio::test]
    async fn readiness_flips_and_liveness_stays_up() {
        let (listener, base) = bind().await;
        let health = Health::new();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(serve_health(listener, health.clone(), async {
            let _ = stopped.await;
        }));
        let c = client();

        let (status, _, body) = get(&c, &format!("{base}/readyz")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, "not ready: starting\n");
        let (status, _, body) = get(&c, &format!("{base}/healthz")).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok\n"));

        health.set_ready();
        let (status, _, body) = get(&c, &format!("{base}/readyz")).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok\n"));

        health.set_not_ready("caches not synced");
        let (status, _, body) = get(&c, &format!("{base}/readyz")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, "not ready: caches not synced\n");
        let (status, _, _) = get(&c, &format!("{base}/healthz")).await;
        assert_eq!(status, StatusCode::OK);

        let (status, _, _) = get(&c, &format!("{base}/metrics")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _, _) = get(&c, &format!("{base}/")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // A supervised task ended: both probes fail, liveness included.
        health.set_ready();
        health.set_unhealthy("provisioner panicked: boom");
        let (status, _, body) = get(&c, &format!("{base}/healthz")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body, "unhealthy: provisioner panicked: boom\n");
        let (status, _, _) = get(&c, &format!("{base}/readyz")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);

        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("server stops on shutdown")
            .expect("server task");
        // Stopped: new connections are refused (a fresh client, so no pooled connection).
        let refused = client()
            .get(format!("{base}/healthz").parse().unwrap())
            .await;
        assert!(refused.is_err());
    }
}

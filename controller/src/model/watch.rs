//! One watch per kind: a kube-runtime watcher feeding a reflector store that every controller
//! reads, a broadcast of changed objects that controllers subscribe to instead of opening
//! watches of their own, and per-kind watch health for metrics and readiness.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use kube_client::Resource;
use kube_client::api::{Api, DynamicObject};
use kube_client::runtime::reflector::{Store, store::Writer};
use kube_client::runtime::watcher::{self, Event};
use kube_client::runtime::{WatchStreamExt, reflector};
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, broadcast};

use crate::runtime::metrics::Metrics;
use crate::runtime::supervisor::Supervisor;

/// How many changes a slow subscriber may fall behind before it misses some (it then relies
/// on its periodic full resync).
const CHANGE_BUFFER: usize = 4096;

/// A watched kind: its store and the broadcast of its changes.
#[derive(Clone)]
pub struct Watched<K: Resource + 'static>
where
    K::DynamicType: Eq + Hash + Clone,
{
    /// Every object, as of the last event.
    pub store: Store<K>,
    changes: broadcast::Sender<Arc<K>>,
    undecoded: Arc<Mutex<BTreeSet<String>>>,
}

impl<K> Watched<K>
where
    K: Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    /// Names of the objects the API server has but the store lacks because they do not decode
    /// (always empty for a typed watch). Whoever acts on the absence of an object (garbage
    /// collection) must hold back while this is not empty.
    pub fn undecoded(&self) -> BTreeSet<String> {
        self.undecoded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The objects that change from now on (added, modified or deleted). A subscriber that
    /// falls more than a few thousand changes behind skips some, with a warning.
    pub fn changes(&self) -> impl Stream<Item = Arc<K>> + Send + 'static {
        let kind = std::any::type_name::<K>();
        futures::stream::unfold(self.changes.subscribe(), move |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(obj) => return Some((obj, rx)),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(kind, missed = n, "change subscriber fell behind");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
    }
}

impl<K> std::ops::Deref for Watched<K>
where
    K: Resource + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    type Target = Store<K>;

    fn deref(&self) -> &Store<K> {
        &self.store
    }
}

/// Per-kind watch health: a kind whose watch keeps failing makes the controller unready
/// (its decisions would rest on a stale view) and counts in
/// `karpenter_cluster_state_watch_errors_total`.
#[derive(Clone, Default)]
pub struct WatchHealth {
    failing: Arc<Mutex<BTreeMap<String, (Instant, String)>>>,
}

impl WatchHealth {
    fn failed(&self, kind: &str, error: String) {
        let mut failing = self.lock();
        let since = failing
            .get(kind)
            .map_or_else(Instant::now, |(since, _)| *since);
        failing.insert(kind.to_owned(), (since, error));
    }

    fn recovered(&self, kind: &str) {
        let mut failing = self.lock();
        if failing.remove(kind).is_some() {
            tracing::info!(kind, "watch recovered");
        }
    }

    /// Kinds whose watch has been failing for longer than `grace`, with the last error.
    pub fn failing_longer_than(&self, grace: Duration) -> Vec<(String, String)> {
        self.lock()
            .iter()
            .filter(|(_, (since, _))| since.elapsed() > grace)
            .map(|(kind, (_, error))| (kind.clone(), error.clone()))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (Instant, String)>> {
        self.failing.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What every watch shares: where it reports.
#[derive(Clone)]
pub struct WatchContext {
    /// Metrics (watch errors).
    pub metrics: Arc<Metrics>,
    /// Health (readiness).
    pub health: WatchHealth,
}

impl WatchContext {
    fn report<T>(&self, kind: &str, result: &Result<T, watcher::Error>) {
        match result {
            Ok(_) => self.health.recovered(kind),
            Err(e) => {
                tracing::warn!(kind, error = %e, "watch error; retrying");
                self.metrics.termination.watch_error(kind);
                self.health.failed(kind, e.to_string());
            }
        }
    }
}

/// Spawns a typed watch of `api` and returns its store and changes. The watch restarts with
/// backoff on errors, so a flaky API server never ends it.
pub fn watch<K>(
    api: Api<K>,
    dyntype: K::DynamicType,
    notify: Option<Arc<Notify>>,
    ctx: &WatchContext,
    tasks: &mut Supervisor,
) -> Watched<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Clone + Eq + Hash + Send + Sync + 'static,
{
    let kind = K::kind(&dyntype).into_owned();
    let writer: Writer<K> = Writer::new(dyntype);
    let store = writer.as_reader();
    let (changes, _) = broadcast::channel(CHANGE_BUFFER);
    let tx = changes.clone();
    let ctx = ctx.clone();
    let stream = reflector::reflector(writer, watcher::watcher(api, watcher::Config::default()))
        .default_backoff();
    tasks.spawn(format!("watch {kind}"), async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            ctx.report(&kind, &event);
            if let Ok(event) = event {
                publish(&event, &tx, notify.as_deref());
            }
        }
    });
    Watched {
        store,
        changes,
        undecoded: Default::default(),
    }
}

/// Spawns an untyped watch of a custom resource whose objects are decoded one by one: an
/// object that does not decode (e.g. a `v1beta1` NodeClaim left by Karpenter 0.36 that
/// `decode` cannot convert) is left out with a warning naming it, instead of failing the whole
/// list and holding every decision back. `placeholder` builds the stand-in used to drop such
/// an object from the store when it is deleted.
pub fn watch_decoded<K>(
    api: Api<DynamicObject>,
    decode: fn(&DynamicObject) -> Result<K, String>,
    placeholder: fn(&DynamicObject) -> K,
    notify: Option<Arc<Notify>>,
    ctx: &WatchContext,
    tasks: &mut Supervisor,
) -> Watched<K>
where
    K: Resource<DynamicType = ()> + Clone + Debug + Send + Sync + 'static,
{
    let kind = K::kind(&()).into_owned();
    let mut writer: Writer<K> = Writer::new(());
    let store = writer.as_reader();
    let (changes, _) = broadcast::channel(CHANGE_BUFFER);
    let tx = changes.clone();
    let ctx = ctx.clone();
    let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
    let undecoded: Arc<Mutex<BTreeSet<String>>> = Default::default();
    let mut failures = DecodeFailures::new(undecoded.clone());
    tasks.spawn(format!("watch {kind}"), async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            ctx.report(&kind, &event);
            let Ok(event) = event else { continue };
            let mut read = |o: &DynamicObject| {
                let name = o.metadata.name.as_deref().unwrap_or_default();
                match decode(o) {
                    Ok(k) => {
                        failures.note(name, true);
                        Some(k)
                    }
                    Err(e) => {
                        tracing::warn!(kind = %kind, error = %e, "object left out of the cluster model");
                        failures.note(name, false);
                        None
                    }
                }
            };
            let decoded = match &event {
                Event::Apply(o) => read(o).map(Event::Apply),
                Event::InitApply(o) => read(o).map(Event::InitApply),
                Event::Delete(o) => {
                    failures.note(o.metadata.name.as_deref().unwrap_or_default(), true);
                    Some(Event::Delete(decode(o).unwrap_or_else(|_| placeholder(o))))
                }
                Event::Init => {
                    failures.relist_started();
                    Some(Event::Init)
                }
                Event::InitDone => {
                    failures.relist_done();
                    Some(Event::InitDone)
                }
            };
            if let Some(event) = decoded {
                writer.apply_watcher_event(&event);
                publish(&event, &tx, notify.as_deref());
            }
        }
    });
    Watched {
        store,
        changes,
        undecoded,
    }
}

/// The names of the objects of an untyped watch that do not decode, kept as the store keeps
/// objects: during a (re)list the names are gathered apart and swapped in at its end.
struct DecodeFailures {
    live: Arc<Mutex<BTreeSet<String>>>,
    relisting: Option<BTreeSet<String>>,
}

impl DecodeFailures {
    fn new(live: Arc<Mutex<BTreeSet<String>>>) -> Self {
        DecodeFailures {
            live,
            relisting: None,
        }
    }

    /// Object `name` was read (`ok`: it decoded) or deleted (`ok` too: nothing is missing).
    fn note(&mut self, name: &str, ok: bool) {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let set = self.relisting.as_mut().unwrap_or(&mut live);
        if ok {
            set.remove(name);
        } else {
            set.insert(name.to_owned());
        }
    }

    fn relist_started(&mut self) {
        self.relisting = Some(BTreeSet::new());
    }

    fn relist_done(&mut self) {
        if let Some(names) = self.relisting.take() {
            *self.live.lock().unwrap_or_else(|e| e.into_inner()) = names;
        }
    }
}

fn publish<K>(event: &Event<K>, tx: &broadcast::Sender<Arc<K>>, notify: Option<&Notify>)
where
    K: Clone,
{
    if let Event::Apply(o) | Event::Delete(o) | Event::InitApply(o) = event {
        // No subscriber yet is fine: the store has it, and subscribers resync at start.
        let _ = tx.send(Arc::new(o.clone()));
    }
    if let Some(n) = notify {
        n.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(live: &Arc<Mutex<BTreeSet<String>>>) -> Vec<String> {
        live.lock().unwrap().iter().cloned().collect()
    }

    #[test]
    fn an_object_that_does_not_decode_is_missing_until_it_decodes_or_goes() {
        let live = Arc::new(Mutex::new(BTreeSet::new()));
        let mut f = DecodeFailures::new(live.clone());
        f.note("a", false);
        f.note("b", false);
        assert_eq!(names(&live), ["a", "b"]);
        f.note("a", true); // fixed
        f.note("b", true); // deleted
        assert!(names(&live).is_empty());
    }

    #[test]
    fn a_relist_replaces_the_names_only_when_it_is_done() {
        let live = Arc::new(Mutex::new(BTreeSet::new()));
        let mut f = DecodeFailures::new(live.clone());
        f.note("gone-meanwhile", false);
        f.relist_started();
        f.note("still-bad", false);
        // Until the relist ends the earlier view holds (as the store's objects do).
        assert_eq!(names(&live), ["gone-meanwhile"]);
        f.relist_done();
        assert_eq!(names(&live), ["still-bad"]);
    }
}

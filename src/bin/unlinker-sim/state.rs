//! The simulator's memory: which links exist, what was received, and the request log.
//!
//! Everything here sits behind short-held locks (one per vendor for links and per-key counters,
//! atomics for the vendor counters) so the server stays fast on loopback; no lock is held across an
//! `.await`. Vendors change links only through [`Store::with`], which counts every removal, so a
//! vendor cannot forget to.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::ops::Bound;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde_json::{Value, json};

/// A link as the fields of its key, in key order (Auth0: user_id, provider, identity_user_id).
/// The first `owner_len` fields name the account that holds it.
pub(crate) type Link = Vec<String>;

/// The key string the client uses for a link: its fields joined with `/`.
pub(crate) fn key_of(link: &[String]) -> String {
    link.join("/")
}

/// Links of one vendor.
///
/// With `all_linked`, every link exists until it is removed once: a link springs into existence
/// the first time a request names it ([`LinkSet::see`]), so reads list what was seen (or seeded)
/// and not yet removed, and every account exists.
#[derive(Debug)]
pub(crate) struct LinkSet {
    all_linked: bool,
    owner_len: usize,
    links: BTreeSet<Link>,
    /// `all_linked` only: links removed once, which must not spring back.
    removed: HashSet<Link>,
    /// `all_linked` only: prefixes whose every link was removed at once ("remove all providers").
    cleared: HashSet<Link>,
    /// Accounts that exist (owners of seeded links); every account does with `all_linked`.
    owners: HashSet<Link>,
    /// Removals not yet counted; drained by [`Store::with`].
    just_removed: Vec<Link>,
}

impl LinkSet {
    pub(crate) fn new(all_linked: bool, owner_len: usize) -> Self {
        LinkSet {
            all_linked,
            owner_len,
            links: BTreeSet::new(),
            removed: HashSet::new(),
            cleared: HashSet::new(),
            owners: HashSet::new(),
            just_removed: Vec::new(),
        }
    }

    pub(crate) fn all_linked(&self) -> bool {
        self.all_linked
    }

    pub(crate) fn seed(&mut self, link: Link) {
        let owner = link[..self.owner_len.min(link.len())].to_vec();
        self.owners.insert(owner);
        self.links.insert(link);
    }

    /// A request named `link`: with `all_linked`, it exists from now on unless it was removed.
    pub(crate) fn see(&mut self, link: &[String]) {
        if !self.all_linked || self.links.contains(link) || self.removed.contains(link) {
            return;
        }
        if (0..link.len()).any(|n| self.cleared.contains(&link[..n])) {
            return;
        }
        self.links.insert(link.to_vec());
    }

    pub(crate) fn contains(&self, link: &[String]) -> bool {
        self.links.contains(link)
    }

    pub(crate) fn owner_exists(&self, owner: &[String]) -> bool {
        self.all_linked || self.owners.contains(owner)
    }

    /// Remove one link; `false` when it does not exist.
    pub(crate) fn remove(&mut self, link: &[String]) -> bool {
        if !self.links.remove(link) {
            return false;
        }
        if self.all_linked {
            self.removed.insert(link.to_vec());
        }
        self.just_removed.push(link.to_vec());
        true
    }

    /// Links whose fields start with `prefix`, in key order.
    pub(crate) fn list<'a>(&'a self, prefix: &'a [String]) -> impl Iterator<Item = &'a Link> + 'a {
        self.links
            .range::<[String], _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(move |link| link.starts_with(prefix))
    }

    /// Remove every link under `prefix`; returns how many were removed. With `all_linked` the
    /// links never seen under the prefix are gone too.
    pub(crate) fn remove_prefix(&mut self, prefix: &[String]) -> usize {
        let doomed: Vec<Link> = self.list(prefix).cloned().collect();
        for link in &doomed {
            self.remove(link);
        }
        if self.all_linked {
            self.cleared.insert(prefix.to_vec());
        }
        doomed.len()
    }

    /// Every link's key, sorted.
    pub(crate) fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.links.iter().map(|l| key_of(l)).collect();
        keys.sort();
        keys
    }
}

/// Per-vendor counters, readable at `/_sim/counters`.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) requests: AtomicU64,
    pub(crate) unlink_calls: AtomicU64,
    pub(crate) removed: AtomicU64,
    pub(crate) reads: AtomicU64,
    pub(crate) token_calls: AtomicU64,
    pub(crate) user_deletes: AtomicU64,
    pub(crate) rate_limited: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) slow: AtomicU64,
    pub(crate) unauthorized: AtomicU64,
}

impl Counters {
    fn all(&self) -> [(&'static str, &AtomicU64); 11] {
        [
            ("requests", &self.requests),
            ("unlink_calls", &self.unlink_calls),
            ("removed", &self.removed),
            ("reads", &self.reads),
            ("token_calls", &self.token_calls),
            ("user_deletes", &self.user_deletes),
            ("rate_limited", &self.rate_limited),
            ("errors", &self.errors),
            ("dropped", &self.dropped),
            ("slow", &self.slow),
            ("unauthorized", &self.unauthorized),
        ]
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn to_json(&self) -> Value {
        let map: serde_json::Map<String, Value> = self
            .all()
            .into_iter()
            .map(|(name, c)| (name.to_string(), json!(c.load(Ordering::Relaxed))))
            .collect();
        Value::Object(map)
    }

    fn reset(&self) {
        for (_, c) in self.all() {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// What one key received.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub(crate) struct KeyCounts {
    pub(crate) unlink_calls: u64,
    pub(crate) removed: u64,
    pub(crate) reads: u64,
}

/// What kind of call a request is, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpKind {
    Unlink,
    Read,
    Token,
    UserDelete,
    /// Anything else the vendor's paths receive (unknown routes, wrong methods).
    Other,
}

/// A request as the counters see it, worked out by the vendor before any fault or check.
#[derive(Debug, Clone)]
pub(crate) struct Op {
    pub(crate) kind: OpKind,
    /// The key per-key counters use: the client's row key for unlinks, the named account or link
    /// for reads.
    pub(crate) key: Option<String>,
    /// The concrete link the call names, if any (see [`LinkSet::see`]).
    pub(crate) link: Option<Link>,
}

impl Op {
    pub(crate) fn new(kind: OpKind) -> Self {
        Op {
            kind,
            key: None,
            link: None,
        }
    }
    pub(crate) fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }
    pub(crate) fn link(mut self, link: Link) -> Self {
        self.link = Some(link);
        self
    }
}

/// One vendor's links and counters.
#[derive(Debug)]
pub(crate) struct Store {
    links: Mutex<LinkSet>,
    pub(crate) counters: Counters,
    keys: Mutex<HashMap<String, KeyCounts>>,
    /// `--fail-key`: unlink keys refused with the vendor's "failed" answer, changing nothing.
    failing: HashSet<String>,
}

impl Store {
    pub(crate) fn new(all_linked: bool, owner_len: usize) -> Self {
        Store {
            links: Mutex::new(LinkSet::new(all_linked, owner_len)),
            counters: Counters::default(),
            keys: Mutex::new(HashMap::new()),
            failing: HashSet::new(),
        }
    }

    /// `--fail-key`: refuse every unlink of `key`.
    pub(crate) fn fail_key(&mut self, key: String) {
        self.failing.insert(key);
    }

    /// Whether an unlink of `key` is refused (`--fail-key`).
    pub(crate) fn fails(&self, key: Option<&str>) -> bool {
        key.is_some_and(|k| self.failing.contains(k))
    }

    /// Run `f` on the links under the lock, then count what it removed (overall and per key).
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut LinkSet) -> R) -> R {
        let (result, removed) = {
            let mut links = lock(&self.links);
            let result = f(&mut links);
            (result, std::mem::take(&mut links.just_removed))
        };
        if !removed.is_empty() {
            self.counters
                .removed
                .fetch_add(removed.len() as u64, Ordering::Relaxed);
            let mut keys = lock(&self.keys);
            for link in &removed {
                keys.entry(key_of(link)).or_default().removed += 1;
            }
        }
        result
    }

    /// Count a received request and let an `all_linked` store see the link it names.
    pub(crate) fn record(&self, op: &Op) {
        Counters::bump(&self.counters.requests);
        let counter = match op.kind {
            OpKind::Unlink => Some(&self.counters.unlink_calls),
            OpKind::Read => Some(&self.counters.reads),
            OpKind::Token => Some(&self.counters.token_calls),
            OpKind::UserDelete => Some(&self.counters.user_deletes),
            OpKind::Other => None,
        };
        if let Some(counter) = counter {
            Counters::bump(counter);
        }
        if let (Some(key), OpKind::Unlink | OpKind::Read) = (&op.key, op.kind) {
            let mut keys = lock(&self.keys);
            let counts = keys.entry(key.clone()).or_default();
            if op.kind == OpKind::Unlink {
                counts.unlink_calls += 1;
            } else {
                counts.reads += 1;
            }
        }
        if let Some(link) = &op.link {
            lock(&self.links).see(link);
        }
    }

    pub(crate) fn counters_json(&self) -> Value {
        self.counters.to_json()
    }

    pub(crate) fn keys_json(&self) -> Value {
        let keys = lock(&self.keys);
        let sorted: BTreeMap<&String, &KeyCounts> = keys.iter().collect();
        serde_json::to_value(sorted).unwrap_or(Value::Null)
    }

    pub(crate) fn link_keys(&self) -> Vec<String> {
        lock(&self.links).keys()
    }

    pub(crate) fn reset_counters(&self) {
        self.counters.reset();
        lock(&self.keys).clear();
    }
}

/// One received vendor request, as `/_sim/log` shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LogEntry {
    pub(crate) at_ms: f64,
    pub(crate) vendor: &'static str,
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) query: Option<String>,
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) body: String,
    /// `None` when the connection was dropped without an answer.
    pub(crate) status: Option<u16>,
}

/// The last `capacity` vendor requests, oldest first.
#[derive(Debug)]
pub(crate) struct Log {
    capacity: usize,
    entries: Mutex<VecDeque<LogEntry>>,
}

impl Log {
    pub(crate) fn new(capacity: usize) -> Self {
        Log {
            capacity,
            entries: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
        }
    }

    pub(crate) fn push(&self, entry: LogEntry) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = lock(&self.entries);
        if entries.len() == self.capacity {
            entries.pop_front();
        }
        entries.push_back(entry);
    }

    pub(crate) fn to_json(&self) -> Value {
        let entries = lock(&self.entries);
        serde_json::to_value(&*entries).unwrap_or(Value::Null)
    }
}

/// A poisoned lock only means another request panicked mid-update; the simulator's state is still
/// usable for a test double, so carry on with it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(parts: &[&str]) -> Link {
        parts.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn seeded_links_are_removed_once() {
        let mut set = LinkSet::new(false, 1);
        set.seed(link(&["u1", "github", "1"]));
        set.seed(link(&["u1", "google", "2"]));
        set.seed(link(&["u10", "github", "3"]));
        assert!(set.owner_exists(&link(&["u1"])));
        assert!(!set.owner_exists(&link(&["u2"])));
        set.see(&link(&["u1", "apple", "9"]));
        assert!(!set.contains(&link(&["u1", "apple", "9"])));
        let listed: Vec<String> = set.list(&link(&["u1"])).map(|l| key_of(l)).collect();
        assert_eq!(listed, ["u1/github/1", "u1/google/2"]);
        assert!(set.remove(&link(&["u1", "github", "1"])));
        assert!(!set.remove(&link(&["u1", "github", "1"])));
        assert_eq!(set.keys(), ["u1/google/2", "u10/github/3"]);
        // The account outlives its links.
        assert_eq!(set.remove_prefix(&link(&["u1"])), 1);
        assert!(set.owner_exists(&link(&["u1"])));
    }

    #[test]
    fn all_linked_links_exist_until_removed_once() {
        let mut set = LinkSet::new(true, 1);
        let a = link(&["u", "github", "1"]);
        assert!(set.owner_exists(&link(&["anyone"])));
        set.see(&a);
        assert!(set.contains(&a));
        assert!(set.remove(&a));
        set.see(&a);
        assert!(!set.contains(&a), "a removed link does not spring back");
        set.see(&link(&["v", "x", "1"]));
        assert_eq!(set.remove_prefix(&link(&["v"])), 1);
        set.see(&link(&["v", "y", "2"]));
        assert!(!set.contains(&link(&["v", "y", "2"])), "cleared account");
    }

    #[test]
    fn store_counts_removals_per_key() {
        let store = Store::new(false, 1);
        store.with(|l| l.seed(link(&["u", "p", "1"])));
        store.record(&Op::new(OpKind::Unlink).key("u/p/1"));
        assert!(store.with(|l| l.remove(&link(&["u", "p", "1"]))));
        assert_eq!(
            store.keys_json(),
            json!({"u/p/1": {"unlink_calls": 1, "removed": 1, "reads": 0}})
        );
        assert_eq!(store.counters_json()["removed"], 1);
        assert_eq!(store.counters_json()["requests"], 1);
        store.reset_counters();
        assert_eq!(store.counters_json()["requests"], 0);
        assert_eq!(store.keys_json(), json!({}));
    }

    #[test]
    fn log_keeps_the_last_entries() {
        let log = Log::new(2);
        for i in 0..3 {
            log.push(LogEntry {
                at_ms: i as f64,
                vendor: "auth0",
                method: "GET".into(),
                path: format!("/{i}"),
                query: None,
                headers: BTreeMap::new(),
                body: String::new(),
                status: Some(200),
            });
        }
        let paths: Vec<Value> = log
            .to_json()
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["path"].clone())
            .collect();
        assert_eq!(paths, [json!("/1"), json!("/2")]);
    }
}

//! Host-side timing of calls into plugins: `damocles_plugin_call_duration_seconds{plugin,kind,ext_point}`.
//!
//! `ext_point` is the manifest's extension point for hooks and handlers (`OnUpdate`, `Handler`, ...) and, for
//! the objects a `Constructor` returns, the SPI method called on them (`KvStore.update`, `Store.put`, ...). The
//! handles are looked up once, when the object or hook is wrapped; a call then costs two clock reads and one
//! lock-free histogram observation. (Calls, errors and panics per plugin are the plugin's own counters, read at
//! scrape time: see [`super::scrape`].)

use std::time::{Duration, Instant};

use manager_plugin::manifest::{ExtPoint, Kind};
use prometheus::Histogram;

/// The latency histogram of one plugin at one extension point.
#[derive(Clone)]
pub struct PluginCallTimer(Histogram);

impl PluginCallTimer {
    /// The timer of `plugin` (of `kind`) at `ext_point`.
    pub fn new(plugin: &str, kind: Kind, ext_point: &str) -> PluginCallTimer {
        PluginCallTimer(super::global().plugin_call(plugin, kind.as_str(), ext_point))
    }

    /// Runs `call` and records how long it took.
    pub fn time<T>(&self, call: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let result = call();
        self.observe(started.elapsed());
        result
    }

    /// Records a call that took `took`.
    pub fn observe(&self, took: Duration) {
        self.0.observe(took.as_secs_f64());
    }
}

/// The timers of the methods of a KVStore plugin's collections.
pub struct KvCallTimers {
    /// `KvStore.get` (and `peek`).
    pub get: PluginCallTimer,
    /// `KvStore.put`.
    pub put: PluginCallTimer,
    /// `KvStore.del`.
    pub del: PluginCallTimer,
    /// `KvStore.scan`.
    pub scan: PluginCallTimer,
    /// `KvStore.view`.
    pub view: PluginCallTimer,
    /// `KvStore.update`.
    pub update: PluginCallTimer,
}

impl KvCallTimers {
    /// The timers of KVStore plugin `plugin`.
    pub fn new(plugin: &str) -> KvCallTimers {
        let timer = |method: &str| PluginCallTimer::new(plugin, Kind::KvStore, method);
        KvCallTimers {
            get: timer("KvStore.get"),
            put: timer("KvStore.put"),
            del: timer("KvStore.del"),
            scan: timer("KvStore.scan"),
            view: timer("KvStore.view"),
            update: timer("KvStore.update"),
        }
    }
}

/// The timers of the methods of a FileStore plugin's store.
pub struct StoreCallTimers {
    /// `Store.instance_info`.
    pub instance_info: PluginCallTimer,
    /// `Store.get` (opening a reader; the reads themselves are the caller's).
    pub get: PluginCallTimer,
    /// `Store.put` (the whole upload).
    pub put: PluginCallTimer,
    /// `Store.del`.
    pub del: PluginCallTimer,
    /// `Store.stat`.
    pub stat: PluginCallTimer,
}

impl StoreCallTimers {
    /// The timers of FileStore plugin `plugin`.
    pub fn new(plugin: &str) -> StoreCallTimers {
        let timer = |method: &str| PluginCallTimer::new(plugin, Kind::FileStore, method);
        StoreCallTimers {
            instance_info: timer("Store.instance_info"),
            get: timer("Store.get"),
            put: timer("Store.put"),
            del: timer("Store.del"),
            stat: timer("Store.stat"),
        }
    }
}

/// The timers of a SyncSectorState plugin's hooks.
pub struct SyncCallTimers {
    hooks: Vec<(ExtPoint, PluginCallTimer)>,
}

impl SyncCallTimers {
    /// The timers of SyncSectorState plugin `plugin`, one per hook.
    pub fn new(plugin: &str) -> SyncCallTimers {
        let hooks = Kind::SyncSectorState.ext_points();
        SyncCallTimers {
            hooks: hooks
                .iter()
                .map(|&hook| (hook, PluginCallTimer::new(plugin, Kind::SyncSectorState, hook.as_str())))
                .collect(),
        }
    }

    /// Runs `call`, the delivery of an event to `hook`, and records its time.
    pub fn time<T>(&self, hook: ExtPoint, call: impl FnOnce() -> T) -> T {
        match self.timer(hook) {
            Some(timer) => timer.time(call),
            None => call(),
        }
    }

    /// Records one call that delivered events to `hooks` in `took`: each event records an equal share of it (a
    /// process plugin takes many events per call).
    pub fn share(&self, hooks: impl ExactSizeIterator<Item = ExtPoint>, took: Duration) {
        let Some(each) = took.checked_div(hooks.len().max(1) as u32) else { return };
        for hook in hooks {
            if let Some(timer) = self.timer(hook) {
                timer.observe(each);
            }
        }
    }

    fn timer(&self, hook: ExtPoint) -> Option<&PluginCallTimer> {
        self.hooks.iter().find(|(h, _)| *h == hook).map(|(_, timer)| timer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_call_records_one_observation_per_event_each_an_equal_share() {
        let timers = SyncCallTimers::new("share-test");
        let hooks = [ExtPoint::OnInit, ExtPoint::OnUpdate, ExtPoint::OnUpdate, ExtPoint::OnUpdate];
        timers.share(hooks.into_iter(), Duration::from_millis(400));
        let histogram = |hook: &str| super::super::global().plugin_call("share-test", "SyncSectorState", hook);
        assert_eq!(histogram("OnInit").get_sample_count(), 1);
        assert_eq!(histogram("OnUpdate").get_sample_count(), 3, "the count stays the events delivered");
        let total = histogram("OnInit").get_sample_sum() + histogram("OnUpdate").get_sample_sum();
        assert!((total - 0.4).abs() < 1e-9, "the shares add up to the call: {total}");
    }
}

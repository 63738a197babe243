//! A plugin-side object (a database, a collection, a store, the JSON-RPC handler) bound to whichever generation
//! of a process plugin serves now: its handle is re-opened on a new generation before that one serves (OpenDb /
//! OpenCollection / OpenStore / RpcHandler again, with the same arguments; else at first use there), and a
//! handle of a dead generation is never sent (the dead generation's connection refuses every call with how its
//! process ended).

use std::sync::{Arc, Mutex, MutexGuard};

use manager_plugin::process::wire::{Handle, WireError};

use super::ProcessPlugin;
use super::generation::Generation;

/// Opens the object on a generation; returns its handle there.
pub type Opener = Box<dyn Fn(&Arc<Generation>) -> Result<Handle, WireError> + Send + Sync>;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One object of a process plugin, across its restarts.
pub struct Bound {
    plugin: Arc<ProcessPlugin>,
    open: Opener,
    /// The generation the handle belongs to, and the handle.
    slot: Mutex<Option<(Arc<Generation>, Handle)>>,
    /// Whether the plugin holds an object to release when this is dropped (the JSON-RPC handler has none).
    releases: bool,
}

impl Bound {
    /// Opens the object on the current generation (waiting while the plugin restarts) with `open`, which re-opens
    /// it on every later one (before that one serves: see [`ProcessPlugin::register`]).
    pub fn open(plugin: Arc<ProcessPlugin>, open: Opener, releases: bool) -> Result<Arc<Bound>, WireError> {
        let bound = Arc::new(Bound { plugin, open, slot: Mutex::new(None), releases });
        // Opened when the daemon wires the plugin: a restarting one is waited for, not left out.
        let generation = bound.plugin.wait_serving()?;
        bound.on(&generation)?;
        bound.plugin.register(&bound);
        Ok(bound)
    }

    /// The plugin.
    pub fn plugin(&self) -> &Arc<ProcessPlugin> {
        &self.plugin
    }

    /// The serving generation and the object's handle on it (opened there first if needed); fails at once while
    /// the plugin does not serve.
    pub fn get(&self) -> Result<(Arc<Generation>, Handle), WireError> {
        let generation = self.plugin.current()?;
        let handle = self.on(&generation)?;
        Ok((generation, handle))
    }

    /// The object's handle on `generation`, opened there if it is not yet.
    pub fn on(&self, generation: &Arc<Generation>) -> Result<Handle, WireError> {
        let mut slot = lock(&self.slot);
        if let Some((bound_to, handle)) = &*slot
            && Arc::ptr_eq(bound_to, generation)
        {
            return Ok(*handle);
        }
        let handle = (self.open)(generation)?;
        if let Some(previous) = &*slot {
            tracing::info!(
                plugin = %self.plugin.label(),
                from = previous.0.number,
                to = generation.number,
                "re-opened a plugin object on the restarted process"
            );
        }
        // A previous generation's handle is dropped unreleased: its process is gone (or going) with its objects.
        *slot = Some((Arc::clone(generation), handle));
        Ok(handle)
    }
}

impl Drop for Bound {
    fn drop(&mut self) {
        if let Some((generation, handle)) = lock(&self.slot).take()
            && self.releases
            && generation.ended().is_none()
        {
            generation.conn.release(handle);
        }
    }
}

//! Test fixture: the statelog example (journal `<plugins dir>/statelog.jsonl`) behind the crash trigger
//! (`crash-trigger`), checked before every hook.

use manager_plugin::PluginContext;
use manager_plugin::sync::{FinalizeEvent, ImportEvent, InitEvent, RestoreEvent, UpdateEvent};
use statelog::StateLogError;

const NAME: &str = "crashy-sync";

/// Opens the journal and remembers the plugins dir for the trigger.
pub fn init(ctx: &PluginContext) -> Result<(), StateLogError> {
    crash_trigger::init(ctx);
    statelog::init(ctx)
}

/// `OnImport`.
pub fn on_import(event: &ImportEvent) -> Result<(), StateLogError> {
    crash_trigger::check(NAME);
    statelog::on_import(event)
}

/// `OnInit`.
pub fn on_init(event: &InitEvent) -> Result<(), StateLogError> {
    crash_trigger::check(NAME);
    statelog::on_init(event)
}

/// `OnUpdate`.
pub fn on_update(event: &UpdateEvent) -> Result<(), StateLogError> {
    crash_trigger::check(NAME);
    statelog::on_update(event)
}

/// `OnFinalize`.
pub fn on_finalize(event: &FinalizeEvent) -> Result<(), StateLogError> {
    crash_trigger::check(NAME);
    statelog::on_finalize(event)
}

/// `OnRestore`.
pub fn on_restore(event: &RestoreEvent) -> Result<(), StateLogError> {
    crash_trigger::check(NAME);
    statelog::on_restore(event)
}

//! Host code that a plugin calls back from inside its guard (transaction closures, readers handed to `put`, the
//! log sink) must not unwind into the plugin: the plugin's `catch_unwind` cannot catch a host panic, so the
//! process would abort. [`catch`] stops such a panic on the host side and turns it into an error.

use std::panic::{AssertUnwindSafe, catch_unwind};

use manager_plugin::guard::{drop_payload, panic_message};

/// Runs host callback `f`; a panic becomes `Err("manager bug: <what> panicked: …")` and is logged. Dropping the
/// payload and logging run under their own catch too: nothing unwinds out of this function.
pub fn catch<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let message = format!("manager bug: {what} panicked: {}", panic_message(payload.as_ref()));
        drop_payload(payload);
        if let Err(second) = catch_unwind(AssertUnwindSafe(|| tracing::error!("{message}"))) {
            drop_payload(second);
        }
        message
    })
}

#[cfg(test)]
mod tests {
    use super::catch;

    #[test]
    fn a_panicking_callback_becomes_an_error_naming_it() {
        assert_eq!(catch("a test callback", || 7), Ok(7));
        let err = catch("a test callback", || -> u8 { panic!("boom") }).unwrap_err();
        assert_eq!(err, "manager bug: a test callback panicked: boom");
    }
}

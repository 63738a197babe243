//! The probe child's sandbox: before any byte of the plugin is read, the child denies itself every filesystem
//! write with Landlock (no rule grants any back), so the plugin's constructors, which run in the child, cannot
//! write a pass record for themselves (or anything else under the home). Files already open (its stdout pipe and
//! error file) stay usable: Landlock checks paths when they are opened.
//!
//! Where the kernel has no Landlock (before Linux 5.13, or the LSM not enabled, or a seccomp filter that hides
//! it) the child cannot be sandboxed: the parent then remembers no pass at all (see [`super::records`]).

use landlock::{ABI, AccessFs, Ruleset, RulesetAttr, RulesetStatus};

/// The first line a sandboxed probe child writes to its stdout, before any code of the plugin runs.
pub const ENFORCED_LINE: &str = "sandbox: landlock, no filesystem writes";

/// The Landlock ABI this kernel offers to this process (0: none).
pub fn kernel_abi() -> i64 {
    // SAFETY: landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION) only returns a number.
    let abi = unsafe {
        libc::syscall(libc::SYS_landlock_create_ruleset, std::ptr::null::<u8>(), 0usize, 1u32 /* VERSION */)
    };
    abi.max(0)
}

/// Denies this process (and its future children) every filesystem write: writing, truncating, creating,
/// renaming, linking and removing files anywhere. Returns the line to report, or why it could not.
pub fn deny_filesystem_writes() -> Result<&'static str, String> {
    // Every write right up to ABI 5 the kernel knows; rights of a newer ABI than the kernel's are left out
    // (best effort), and the ABI-1 rights that already forbid writing a file are always in.
    let status = Ruleset::default()
        .handle_access(AccessFs::from_write(ABI::V5))
        .and_then(|r| r.create())
        .and_then(|r| r.restrict_self())
        .map_err(|e| format!("landlock: {e}"))?;
    match status.ruleset {
        RulesetStatus::FullyEnforced | RulesetStatus::PartiallyEnforced => Ok(ENFORCED_LINE),
        RulesetStatus::NotEnforced => Err("landlock is not enforced by this kernel".into()),
    }
}

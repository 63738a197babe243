//! Process plugins: the same plugin crate, built with `plugin build --process`, runs as a child process of the
//! manager instead of being loaded into it. Its crash cannot take the manager down, and it needs no lockstep with
//! the manager's compiler: only the protocol's major version must match (`docs/plugin-protocol.md`).
//!
//! - [`wire`]: the messages (serde types carrying the SDK's own types);
//! - [`codec`]: their framing on the Unix socket (JSON Lines);
//! - [`runtime`]: the plugin side, run by the generated `main`.
//!
//! The executable carries a `.damocles_plugin` section like a `.so` does, with role [`ROLE_PROCESS_PLUGIN`] and
//! the protocol version ([`FIELD_PROTOCOL`]), so the manager reads its kind, name and protocol without running it
//! ([`process_plugin_section!`](crate::process_plugin_section)).

pub mod codec;
pub mod runtime;
mod turns;
pub mod wire;

/// The environment variable naming the protocol socket's descriptor in the child.
pub const ENV_FD: &str = "DAMOCLES_PLUGIN_FD";
/// Role of a process plugin's section.
pub const ROLE_PROCESS_PLUGIN: &str = "process-plugin";
/// Info field of a process plugin's section: `<major>.<minor>` of the protocol it speaks.
pub const FIELD_PROTOCOL: &str = "protocol";
/// The largest chunk of object bytes one message carries (reads, uploads).
pub const CHUNK: usize = 256 << 10;

/// `"<major>.<minor>"` of this SDK's protocol, for the section.
pub const PROTOCOL_TEXT: &str = "1.1";

const _: () =
    assert!(wire::PROTOCOL_MAJOR == 1 && wire::PROTOCOL_MINOR == 1, "update PROTOCOL_TEXT with the protocol version");

/// Embeds the section of a process plugin: what the manager reads before starting it (role, manifest, build time,
/// SDK version, protocol version). The fingerprint items are recorded for `plugin inspect` only: the manager does
/// not compare them for a process plugin.
#[macro_export]
macro_rules! process_plugin_section {
    (manifest: $manifest:expr, build_time: $build_time:expr, codegen_version: $codegen:expr $(,)?) => {
        $crate::__damocles_section!(
            codegen_version: $codegen,
            extra: [$crate::abi::section::Group {
                tag: $crate::abi::section::TAG_INFO,
                items: &[
                    ($crate::abi::section::FIELD_ROLE, $crate::process::ROLE_PROCESS_PLUGIN),
                    ($crate::abi::section::FIELD_MANIFEST, $manifest),
                    ($crate::abi::section::FIELD_BUILD_TIME, $build_time),
                    ($crate::abi::section::FIELD_SDK_VERSION, $crate::abi::SDK_VERSION),
                    ($crate::process::FIELD_PROTOCOL, $crate::process::PROTOCOL_TEXT),
                ],
            }]
        );
    };
}

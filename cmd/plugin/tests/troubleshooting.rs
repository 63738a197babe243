//! `docs/plugin-guide.md`'s troubleshooting section lists exactly the user-facing error messages of the loader,
//! `plugin build`, `plugin check-dep`, `plugin new`, `plugin inspect` and `plugin test`: a message added to the code without an
//! entry, or an entry whose message the code no longer prints, fails this test.
//!
//! Messages are read from the sources: the format strings of `#[error("…")]` attributes and of `write!`/`format!`
//! calls in the listed places. Only each message's first line is compared, with every `{placeholder}` written as
//! `{}`. The Chinese guide (`docs/zh/plugin-guide.md`) must list the same messages. Messages made only of placeholders and punctuation (`{path}: {source}`) wrap another message and are
//! skipped. In the guide, an entry is a heading ``#### `` <message> `` ``.
//!
//! To update after changing a message: the failure lists the missing and the stale headings, ready to paste.

use std::collections::BTreeSet;
use std::path::Path;

/// Where user-facing messages are written.
struct Source {
    /// File, relative to the workspace root.
    file: &'static str,
    /// Only the block starting at this text (up to the next line that is a lone `}`), if given.
    block: Option<&'static str>,
    /// The calls or attributes whose first string literal is a message.
    openers: &'static [&'static str],
    /// Keep only messages containing this text, if given.
    containing: Option<&'static str>,
}

const ERROR_ATTR: &[&str] = &["#[error("];

const SOURCES: &[Source] = &[
    Source { file: "manager/src/plugins/library.rs", block: None, openers: ERROR_ATTR, containing: None },
    Source { file: "manager/src/plugins/registry.rs", block: None, openers: ERROR_ATTR, containing: None },
    Source { file: "manager/src/plugins/registry/control.rs", block: None, openers: ERROR_ATTR, containing: None },
    Source {
        file: "manager/src/plugins/registry.rs",
        block: Some("pub fn why_not_ready"),
        openers: &["format!("],
        containing: None,
    },
    // Supervised process plugins: why a call finds no process, why a restart was refused.
    Source { file: "manager/src/plugins/process/supervisor.rs", block: None, openers: ERROR_ATTR, containing: None },
    Source { file: "manager/src/filestore/error.rs", block: None, openers: ERROR_ATTR, containing: Some("plugin") },
    // Why a file's bytes are refused before anything is mapped: the loader prints `{file}: {refusal}`, `plugin
    // inspect` prints `incompatible: {refusal}`.
    Source { file: "plugin-image/src/refusal.rs", block: None, openers: ERROR_ATTR, containing: None },
    // A malformed `.damocles_plugin` section, printed after `bad plugin section: `.
    Source { file: "manager-plugin/src/abi/section.rs", block: None, openers: ERROR_ATTR, containing: None },
    Source { file: "manager-plugin/src/manifest.rs", block: None, openers: ERROR_ATTR, containing: None },
    Source { file: "cmd/plugin/src/build/mod.rs", block: None, openers: ERROR_ATTR, containing: None },
    Source {
        file: "cmd/plugin/src/build/wrapper.rs",
        block: None,
        openers: &["crate_err(", "write!("],
        containing: None,
    },
    Source { file: "cmd/plugin/src/check_dep/error.rs", block: None, openers: ERROR_ATTR, containing: None },
    Source {
        file: "cmd/plugin/src/check_dep/graph.rs",
        block: Some("impl fmt::Display for GraphError"),
        openers: &["write!("],
        containing: None,
    },
    Source {
        file: "cmd/plugin/src/check_dep/fix.rs",
        block: Some("impl fmt::Display for FixOutcome"),
        openers: &["write!(", "writeln!("],
        containing: Some("check-dep --fix:"),
    },
    Source {
        file: "cmd/plugin/src/inspect.rs",
        block: Some("pub fn inspect("),
        openers: &["with_context(|| ", "anyhow::anyhow!("],
        containing: None,
    },
    Source { file: "cmd/plugin/src/test_plugin.rs", block: None, openers: ERROR_ATTR, containing: None },
    Source {
        file: "manager/src/plugins/selftest/mod.rs",
        block: Some("pub fn run("),
        openers: &["format!("],
        containing: Some("cannot"),
    },
    Source {
        file: "cmd/plugin/src/new/mod.rs",
        block: Some("pub enum NewError"),
        openers: ERROR_ATTR,
        containing: None,
    },
];

fn workspace_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// Parses the Rust string literal starting at `text[0] == '"'`; returns its value.
fn string_literal(text: &str) -> Option<String> {
    let mut chars = text.strip_prefix('"')?.chars().peekable();
    let mut out = String::new();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                '\n' => {
                    while chars.peek().is_some_and(|c| c.is_whitespace()) {
                        chars.next();
                    }
                }
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

/// The first string literal after `opener` (skipping whitespace, a `f,` formatter argument and `format!(`).
fn message_after(text: &str) -> Option<String> {
    let mut rest = text.trim_start();
    for prefix in ["f,", "format!("] {
        if let Some(after) = rest.strip_prefix(prefix) {
            rest = after.trim_start();
        }
    }
    string_literal(rest)
}

/// A message's first line with every placeholder written `{}` and whitespace collapsed; `None` for messages that
/// only wrap another (no word of 4+ letters outside placeholders) or are a continuation (start with punctuation).
fn normalize(message: &str, format_string: bool) -> Option<String> {
    let first = message.lines().next().unwrap_or("").trim();
    let text = if format_string { first.replace("{{", "\u{1}").replace("}}", "\u{2}") } else { first.to_string() };
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) if after[..close].chars().all(|c| c.is_ascii_alphanumeric() || "_.:?#".contains(c)) => {
                out.push_str("{}");
                rest = &after[close + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    let out = out.replace('\u{1}', "{").replace('\u{2}', "}").split_whitespace().collect::<Vec<_>>().join(" ");
    let words = out.replace("{}", " ");
    let has_word = words.split(|c: char| !c.is_ascii_alphabetic()).any(|w| w.len() >= 4);
    let starts_well = out.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '{' || c == '`');
    (has_word && starts_well).then_some(out)
}

fn code_messages() -> BTreeSet<String> {
    let mut messages = BTreeSet::new();
    for source in SOURCES {
        let text = std::fs::read_to_string(workspace_root().join(source.file))
            .unwrap_or_else(|e| panic!("{}: {e} (update SOURCES in this test)", source.file));
        let text = match source.block {
            Some(start) => {
                let at = text.find(start).unwrap_or_else(|| panic!("{}: no `{start}` (update SOURCES)", source.file));
                let end = text[at..].find("\n}\n").map_or(text.len(), |n| at + n);
                text[at..end].to_string()
            }
            None => text,
        };
        for opener in source.openers {
            for (at, _) in text.match_indices(opener) {
                let Some(message) = message_after(&text[at + opener.len()..]) else { continue };
                if source.containing.is_some_and(|c| !message.contains(c)) {
                    continue;
                }
                messages.extend(normalize(&message, true));
            }
        }
    }
    messages
}

/// The entries of a guide's troubleshooting section (`heading`: the section's title in that language).
fn guide_entries(file: &str, heading: &str) -> BTreeSet<String> {
    let guide = std::fs::read_to_string(workspace_root().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let section = &guide[guide.find(heading).unwrap_or_else(|| panic!("{file}: no `{heading}` section"))..];
    section
        .lines()
        .filter_map(|l| l.strip_prefix("#### `` ")?.strip_suffix(" ``"))
        .filter_map(|m| normalize(m, false))
        .collect()
}

#[test]
fn the_troubleshooting_section_lists_exactly_the_messages_the_code_prints() {
    let code = code_messages();
    let guide = guide_entries("docs/plugin-guide.md", "\n## Troubleshooting");
    assert!(code.len() > 30, "the extraction found too little; check SOURCES: {code:#?}");
    let missing: Vec<String> = code.difference(&guide).map(|m| format!("#### `` {m} ``")).collect();
    let stale: Vec<String> = guide.difference(&code).map(|m| format!("#### `` {m} ``")).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "docs/plugin-guide.md troubleshooting is out of date.\nadd an entry (heading + fix) for:\n{}\nremove or \
         update (the code no longer prints it):\n{}",
        missing.join("\n"),
        stale.join("\n")
    );
}

/// The Chinese guide keeps the messages in English (as printed) and must list the same ones.
#[test]
fn the_chinese_guide_lists_the_same_messages() {
    let english = guide_entries("docs/plugin-guide.md", "\n## Troubleshooting");
    let chinese = guide_entries("docs/zh/plugin-guide.md", "\n## 常见问题排查");
    let missing: Vec<&String> = english.difference(&chinese).collect();
    let stale: Vec<&String> = chinese.difference(&english).collect();
    assert!(missing.is_empty() && stale.is_empty(), "docs/zh/plugin-guide.md: add {missing:#?}\nremove {stale:#?}");
}

#[test]
fn the_extraction_reads_format_strings_as_rustc_does() {
    assert_eq!(string_literal("\"a \\\"b\\\" c\\n  d\" rest"), Some("a \"b\" c\n  d".into()));
    assert_eq!(string_literal("\"one \\\n     two\""), Some("one two".into()));
    assert_eq!(normalize("{file}: none {name:?} `{}` {{ x }}", true), Some("{}: none {} `{}` { x }".into()));
    assert_eq!(normalize("{path}: {source}", true), None, "a wrapper");
    assert_eq!(normalize("add `x = { path = \"…\" }`", false), Some("add `x = { path = \"…\" }`".into()));
}

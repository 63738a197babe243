//! Unit tests of the counters and their JSON-RPC parsing.

use super::*;

fn counters() -> AtomicCounter {
    let (namespace, handler) = handler().unwrap();
    assert_eq!(namespace, NAMESPACE);
    handler
}

fn error(result: Result<String, RpcError>) -> RpcError {
    result.expect_err("call should fail")
}

#[test]
fn incr_returns_the_new_value_and_get_reads_it() {
    let c = counters();
    assert_eq!(c.call("Incr", r#"["a"]"#).unwrap(), "1");
    assert_eq!(c.call("Incr", r#"["a"]"#).unwrap(), "2");
    assert_eq!(c.call("Incr", r#"["b"]"#).unwrap(), "1");
    assert_eq!(c.call("Get", r#"["a"]"#).unwrap(), "2");
}

#[test]
fn a_counter_never_incremented_reads_zero() {
    assert_eq!(counters().call("Get", r#"["nobody"]"#).unwrap(), "0");
}

#[test]
fn reset_returns_null_and_sets_the_counter_back_to_zero() {
    let c = counters();
    c.call("Incr", r#"["a"]"#).unwrap();
    assert_eq!(c.call("Reset", r#"["a"]"#).unwrap(), "null");
    assert_eq!(c.call("Get", r#"["a"]"#).unwrap(), "0");
    assert_eq!(c.call("Incr", r#"["a"]"#).unwrap(), "1");
}

#[test]
fn params_may_be_an_object_with_a_name_field() {
    let c = counters();
    assert_eq!(c.call("Incr", r#"{"name": "x"}"#).unwrap(), "1");
    assert_eq!(c.call("Get", r#" ["x"] "#).unwrap(), "1");
}

#[test]
fn an_unknown_method_is_method_not_found_and_named() {
    let err = error(counters().call("Decr", r#"["a"]"#));
    assert_eq!(err.code, RpcError::METHOD_NOT_FOUND);
    assert!(err.message.contains("AtomicCounter.Decr"), "{err}");
    assert!(err.message.contains("Incr, Get, Reset"), "{err}");
}

#[test]
fn missing_or_malformed_params_are_invalid_params_naming_the_parameter() {
    let c = counters();
    for (params, says) in [
        ("", "missing parameter `name`"),
        ("null", "missing parameter `name`"),
        ("[]", "missing parameter `name`"),
        ("{}", "missing parameter `name`"),
        ("[1]", "parameter `name` must be a string"),
        (r#"{"name": null}"#, "parameter `name` must be a string"),
        (r#"["a", "b"]"#, "takes 1 parameter (`name`), got 2"),
        (r#"{"nmae": "a"}"#, "unknown parameter `nmae`"),
        ("\"a\"", "must be an array or an object"),
        ("[\"a\"", "not valid JSON"),
    ] {
        let err = error(c.call("Incr", params));
        assert_eq!(err.code, RpcError::INVALID_PARAMS, "{params}");
        assert!(err.message.contains(says), "{params}: {err}");
        assert!(err.message.starts_with("AtomicCounter.Incr: "), "{params}: {err}");
    }
    assert_eq!(c.get("a"), 0, "a failed call must not count");
}

#[test]
fn incr_at_the_maximum_fails_without_wrapping() {
    let c = counters();
    c.lock().insert("max".into(), i64::MAX);
    let err = error(c.call("Incr", r#"["max"]"#));
    assert_eq!(err.code, OVERFLOW);
    assert!(err.message.contains("\"max\""), "{err}");
    assert_eq!(c.get("max"), i64::MAX);
}

#[test]
fn the_manifest_names_handler_as_the_rpc_handler() {
    let m = manager_plugin::Manifest::parse(include_str!("../manifest.toml"), "manifest.toml").unwrap();
    assert_eq!((m.name.as_str(), m.kind), ("counter", manager_plugin::Kind::RegisterJsonRpc));
    let export = m.export_for(manager_plugin::manifest::ExtPoint::Handler).unwrap();
    assert_eq!(export.impl_path, "handler");
}

#[test]
fn handler_fits_the_generated_handler_glue() {
    let (namespace, h) = manager_plugin::glue::rpc_handler(handler).unwrap();
    assert_eq!(namespace, "AtomicCounter");
    assert_eq!(h.call("Incr", r#"["a"]"#).unwrap(), "1");
}

#[test]
fn methods_lists_the_three_methods() {
    assert_eq!(counters().methods(), ["Incr", "Get", "Reset"]);
}

#[test]
fn concurrent_increments_are_all_counted() {
    let c = counters();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..250 {
                    c.call("Incr", r#"["n"]"#).unwrap();
                }
            });
        }
    });
    assert_eq!(c.call("Get", r#"["n"]"#).unwrap(), "1000");
}

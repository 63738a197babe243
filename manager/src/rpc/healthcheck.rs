//! `/healthcheck`, served without the token as the Go manager serves it: `http.Handle("/healthcheck",
//! healthcheck.Handler())` in `damocles-manager/cmd/damocles-manager/server.go`, with `etherlabsio/healthcheck`'s
//! handler (`health.go`): any method, `Content-Type: application/json; charset=utf-8`, `200` and
//! `{"status":"OK"}` followed by a newline (Go's `json.Encoder`). Go registers no checker; here the database is
//! one: while writes are refused ([`crate::kvstore::refusal`]) the answer is that library's failure shape, `503`
//! and `{"status":"Service Unavailable","errors":{"database":"refused: identity, see the manager's log"}}`, so
//! a load balancer or supervisor sees a manager that cannot serve sectors. Only the cause's label is given (as
//! in `/metrics`), never the log's message: it names the database's address and the lease holder.

use http::StatusCode;
use jsonrpsee::server::{HttpBody, HttpResponse};
use serde_json::json;

/// The path (exactly: Go's mux pattern has no trailing slash, so it matches this path only).
pub const HEALTHCHECK_PATH: &str = "/healthcheck";

/// The answer.
pub fn answer() -> HttpResponse {
    let refused: Vec<&str> = crate::kvstore::refusal::status()
        .into_iter()
        .filter_map(|(cause, why, _)| why.map(|_| cause.label()))
        .collect();
    let (status, body) = if refused.is_empty() {
        (StatusCode::OK, json!({"status": "OK"}))
    } else {
        let why = format!("refused: {}, see the manager's log", refused.join(", "));
        (StatusCode::SERVICE_UNAVAILABLE, json!({"status": "Service Unavailable", "errors": {"database": why}}))
    };
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(HttpBody::from(format!("{body}\n")))
        .unwrap_or_else(|e| super::piece::text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

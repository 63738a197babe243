//! Who may call what. A request with the home's bearer token may do anything. Without a token, a client whose
//! address lies in `[API] TrustedNetworks` may call the worker methods ([`WORKER_METHODS`], what an unmodified
//! damocles-worker calls; it never sends a token) over HTTP `POST /rpc/v0`, and `GET` pieces. Everything else —
//! `Plugins.*`, plugin namespaces, `Venus.ImportSector`, `Venus.RestoreSector`, the other operator methods,
//! WebSocket upgrades, piece `PUT` and `/metrics` — always needs the token, from anywhere.
//!
//! JSON-RPC carries the method inside the body, so a tokenless call is buffered (at most
//! [`MAX_TOKENLESS_BODY`]) and every call in it, batches included, must name a worker method; a body that cannot
//! be read that way is refused whole. The decision is made before anything is routed.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use jsonrpsee::server::{HttpBody, HttpResponse};
use serde::Deserialize;

use super::piece;
use super::refused_peers::RefusedPeers;
use super::server::{PIECE_PREFIX, RPC_PATH};
use super::venus::WORKER_METHODS;
use crate::config::IpNetwork;

/// The largest tokenless JSON-RPC body read to find its methods (jsonrpsee's own default limit, 10 MiB).
pub const MAX_TOKENLESS_BODY: usize = 10 * 1024 * 1024;

/// The token and the trusted networks.
#[derive(Debug, Clone)]
pub struct AuthPolicy {
    token: String,
    trusted: Vec<IpNetwork>,
    /// The log of tokenless requests refused from untrusted peers (shared by clones).
    refused: Arc<RefusedPeers>,
}

impl AuthPolicy {
    /// The policy for `token` (the home's API token) and `trusted` (`[API] TrustedNetworks`).
    pub fn new(token: String, trusted: Vec<IpNetwork>) -> AuthPolicy {
        AuthPolicy { token, trusted, refused: Arc::default() }
    }

    /// Logs which networks may call the worker methods without the token.
    pub fn log_startup(&self) {
        if self.trusted.is_empty() {
            tracing::info!("no [API] TrustedNetworks: every request needs the API token");
        } else {
            let networks: Vec<String> = self.trusted.iter().map(ToString::to_string).collect();
            tracing::info!(
                trusted_networks = %networks.join(", "),
                "clients in these networks may call the worker methods and GET pieces without the API token"
            );
        }
    }

    /// Whether `peer` lies in `[API] TrustedNetworks`.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.trusted.iter().any(|network| network.contains(peer))
    }
}

/// Checks `req` from `peer`: `Ok` with the request to serve (its body buffered when it had to be read to find the
/// methods), or `Err` with the refusal (401, or 413 for an oversized tokenless body).
pub async fn authorize<B>(req: Request<B>, peer: IpAddr, policy: &AuthPolicy) -> Result<Request<HttpBody>, HttpResponse>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match credential(&req) {
        Credential::Bearer(given) if token_matches(given, &policy.token) => return Ok(req.map(HttpBody::new)),
        Credential::Bearer(_) => return Err(refuse("wrong API token in `Authorization: Bearer <token>`")),
        Credential::Malformed(problem) => {
            return Err(refuse(&format!(
                "malformed `Authorization` header: {problem}; send `Authorization: Bearer <token>` with the token \
                 from the manager's home (or, from [API] TrustedNetworks, no `Authorization` header at all)"
            )));
        }
        Credential::Absent => {}
    }
    if !policy.trusts(peer) {
        policy.refused.record(peer, req.method().as_str(), req.uri().path());
        return Err(refuse(&format!(
            "missing `Authorization: Bearer <token>` (the token is in the manager's home; {peer} is not in [API] TrustedNetworks)"
        )));
    }
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    if path.starts_with(PIECE_PREFIX) {
        return match method {
            Method::GET | Method::HEAD => Ok(req.map(HttpBody::new)),
            _ => Err(refuse(&format!(
                "{method} {path} needs `Authorization: Bearer <token>`, also from a trusted network"
            ))),
        };
    }
    if path != RPC_PATH || method != Method::POST {
        return Err(refuse(&format!(
            "{method} {path} needs `Authorization: Bearer <token>`; without it, trusted networks may only POST worker \
             methods to {RPC_PATH} and GET pieces"
        )));
    }
    let (parts, body) = req.into_parts();
    let bytes = match Limited::new(body, MAX_TOKENLESS_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            return Err(piece::text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("a JSON-RPC request without the token may be at most {MAX_TOKENLESS_BODY} bytes"),
            ));
        }
        Err(e) => return Err(piece::text(StatusCode::BAD_REQUEST, format!("reading the request body: {e}"))),
    };
    if let Err(reason) = check_methods(&bytes) {
        return Err(refuse(&reason));
    }
    Ok(Request::from_parts(parts, HttpBody::new(Full::new(bytes))))
}

/// One call as far as authorization cares. A duplicated `method` key fails to decode, so the method checked here
/// is the one jsonrpsee would run.
#[derive(Deserialize)]
struct CallMethod {
    method: String,
}

/// A body is a single call or a batch of calls.
#[derive(Deserialize)]
#[serde(untagged)]
enum Calls {
    Batch(Vec<CallMethod>),
    Single(CallMethod),
}

/// `Ok` when every call in `body` names a worker method; else why not (naming the method and the fix).
fn check_methods(body: &[u8]) -> Result<(), String> {
    let calls = match serde_json::from_slice::<Calls>(body) {
        Ok(Calls::Batch(calls)) => calls,
        Ok(Calls::Single(call)) => vec![call],
        Err(_) => {
            return Err("a JSON-RPC request without the token must be a call (or a batch of calls) whose \
                        `method` can be read; send `Authorization: Bearer <token>`"
                .to_owned());
        }
    };
    match calls.iter().find(|call| !WORKER_METHODS.contains(&call.method.as_str())) {
        Some(call) => Err(format!(
            "{} needs `Authorization: Bearer <token>`: without it, [API] TrustedNetworks may call only the \
             damocles-worker methods",
            call.method
        )),
        None => Ok(()),
    }
}

/// What a request's `Authorization` header carries.
enum Credential<'a> {
    /// No `Authorization` header.
    Absent,
    /// `Bearer <token>`: the token, trimmed (maybe empty).
    Bearer(&'a str),
    /// A header that is there but cannot be read as one bearer token: never taken for "no token".
    Malformed(&'static str),
}

fn credential<B>(req: &Request<B>) -> Credential<'_> {
    let mut values = req.headers().get_all(http::header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Credential::Absent;
    };
    if values.next().is_some() {
        return Credential::Malformed("the request has more than one `Authorization` header");
    }
    let Ok(text) = value.to_str() else {
        return Credential::Malformed(
            "it holds bytes that are not visible ASCII (non-ASCII text or control characters)",
        );
    };
    match text.strip_prefix("Bearer ") {
        Some(token) => Credential::Bearer(token.trim()),
        None => Credential::Malformed("it is not of the form `Bearer <token>`"),
    }
}

/// Constant-time comparison of the bearer token.
fn token_matches(given: &str, token: &str) -> bool {
    let (a, b) = (given.as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn refuse(reason: &str) -> HttpResponse {
    piece::text(StatusCode::UNAUTHORIZED, reason.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(trusted: &[&str]) -> AuthPolicy {
        AuthPolicy::new("s3cret".into(), trusted.iter().map(|n| n.parse().unwrap()).collect())
    }

    fn request(method: Method, path: &str, token: Option<&str>, body: &str) -> Request<Full<Bytes>> {
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            builder = builder.header("Authorization", token);
        }
        builder.body(Full::new(Bytes::from(body.to_owned()))).unwrap()
    }

    async fn status(req: Request<Full<Bytes>>, peer: &str, policy: &AuthPolicy) -> u16 {
        match authorize(req, peer.parse().unwrap(), policy).await {
            Ok(_) => 200,
            Err(resp) => resp.status().as_u16(),
        }
    }

    const PING: &str = r#"{"jsonrpc":"2.0","id":1,"method":"Venus.WorkerPing","params":[{}]}"#;
    const IMPORT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"Venus.ImportSector","params":[]}"#;

    #[tokio::test]
    async fn only_the_exact_bearer_token_authorizes_everything() {
        let p = policy(&[]);
        assert_eq!(status(request(Method::POST, RPC_PATH, Some("Bearer s3cret"), IMPORT), "8.8.8.8", &p).await, 200);
        assert_eq!(status(request(Method::POST, RPC_PATH, Some("Bearer s3cre"), PING), "8.8.8.8", &p).await, 401);
        assert_eq!(status(request(Method::POST, RPC_PATH, Some("s3cret"), PING), "8.8.8.8", &p).await, 401);
        assert_eq!(status(request(Method::POST, RPC_PATH, None, PING), "127.0.0.1", &p).await, 401);
    }

    #[tokio::test]
    async fn trusted_networks_reach_worker_methods_and_piece_reads_only() {
        let p = policy(&["10.0.0.0/8"]);
        assert_eq!(status(request(Method::POST, RPC_PATH, None, PING), "10.1.2.3", &p).await, 200);
        assert_eq!(status(request(Method::POST, RPC_PATH, None, PING), "11.1.2.3", &p).await, 401);
        assert_eq!(status(request(Method::POST, RPC_PATH, None, IMPORT), "10.1.2.3", &p).await, 401);
        let plugins = r#"{"jsonrpc":"2.0","id":1,"method":"Plugins.List"}"#;
        assert_eq!(status(request(Method::POST, RPC_PATH, None, plugins), "10.1.2.3", &p).await, 401);
        assert_eq!(status(request(Method::GET, "/piecestore/x", None, ""), "10.1.2.3", &p).await, 200);
        assert_eq!(status(request(Method::PUT, "/piecestore/x", None, "data"), "10.1.2.3", &p).await, 401);
        assert_eq!(status(request(Method::GET, RPC_PATH, None, ""), "10.1.2.3", &p).await, 401, "no WebSocket");
    }

    #[tokio::test]
    async fn a_batch_with_one_admin_call_is_refused_whole() {
        let p = policy(&["127.0.0.0/8"]);
        let batch = format!("[{PING},{IMPORT}]");
        assert_eq!(status(request(Method::POST, RPC_PATH, None, &batch), "127.0.0.1", &p).await, 401);
        assert_eq!(
            status(request(Method::POST, RPC_PATH, None, &format!("[{PING},{PING}]")), "127.0.0.1", &p).await,
            200
        );
    }

    #[tokio::test]
    async fn ambiguous_or_unreadable_bodies_are_refused() {
        let p = policy(&["127.0.0.0/8"]);
        for body in [
            r#"{"method":"Venus.WorkerPing","method":"Venus.ImportSector"}"#,
            r#"{"jsonrpc":"2.0","id":1}"#,
            "not json",
            r#"[{"method":"Venus.WorkerPing"}, 7]"#,
        ] {
            assert_eq!(status(request(Method::POST, RPC_PATH, None, body), "127.0.0.1", &p).await, 401, "{body}");
        }
    }

    /// Issue 17 item 10: a non-ASCII `Authorization` header used to count as "no token", so from a trusted
    /// network it reached the worker methods. Any header that is there but malformed is a 401 naming it.
    #[tokio::test]
    async fn a_malformed_authorization_header_is_refused_naming_it_also_from_a_trusted_network() {
        let p = policy(&["127.0.0.0/8"]);
        let with_header = |value: &[u8]| {
            Request::builder()
                .method(Method::POST)
                .uri(RPC_PATH)
                .header("Authorization", http::HeaderValue::from_bytes(value).unwrap())
                .body(Full::new(Bytes::from(PING)))
                .unwrap()
        };
        for value in
            ["Bearer s3cr\u{e9}t".as_bytes(), b"Bearer \xff\xfe", b"Basic czNjcmV0", b"s3cret", b"Bearer\ts3cret"]
        {
            let answer = authorize(with_header(value), "127.0.0.1".parse().unwrap(), &p).await;
            let body = match answer {
                Ok(_) => panic!("{value:?} was let through"),
                Err(resp) => {
                    assert_eq!(resp.status(), 401);
                    String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
                }
            };
            assert!(body.contains("malformed `Authorization` header"), "{value:?}: {body}");
        }
        let twice = Request::builder()
            .method(Method::POST)
            .uri(RPC_PATH)
            .header("Authorization", "Bearer s3cret")
            .header("Authorization", "Bearer other")
            .body(Full::new(Bytes::from(PING)))
            .unwrap();
        assert_eq!(status(twice, "127.0.0.1", &p).await, 401);
        // The well-formed cases are as before.
        assert_eq!(status(request(Method::POST, RPC_PATH, None, PING), "127.0.0.1", &p).await, 200);
        assert_eq!(status(request(Method::POST, RPC_PATH, Some("Bearer "), PING), "127.0.0.1", &p).await, 401);
    }

    #[test]
    fn refusals_name_the_method_and_the_fix() {
        let message = check_methods(IMPORT.as_bytes()).unwrap_err();
        assert!(message.contains("Venus.ImportSector") && message.contains("Bearer"), "{message}");
    }
}

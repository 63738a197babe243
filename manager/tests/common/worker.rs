//! damocles-worker as the daemon sees it: its serde types and its HTTP client, so a test sends the exact JSON an
//! unmodified worker sends and decodes every answer the way the worker does.
//!
//! The types copy damocles-worker's (`damocles-worker/src/rpc/sealer/mod.rs` in ipfs-force-community/damocles,
//! commit 4235a895; the line of each is noted) with the same serde attributes, so a key renamed, a `null` where
//! the worker wants a value, or `{}` where it wants `null` fails here as it would fail the worker. The worker's
//! `serde_repr` enums and `b64serde` byte arrays are re-created by hand (0 and wrong lengths refused).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::daemon::RunningDaemon;

/// Worker `SealProof` (`src/types.rs:23`): `Deserialize_repr` over `repr(i64)`, values 0 to 19, nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SealProof(pub i64);

impl<'de> Deserialize<'de> for SealProof {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = i64::deserialize(d)?;
        if (0..=19).contains(&value) {
            Ok(SealProof(value))
        } else {
            Err(serde::de::Error::custom(format!("invalid value: {value}, expected one of: 0..=19")))
        }
    }
}

/// `rpc/sealer/mod.rs:29`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SectorID {
    pub miner: u64,
    pub number: u64,
}

/// `rpc/sealer/mod.rs:52`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AllocateSectorSpec {
    pub allowed_miners: Option<Vec<u64>>,
    pub allowed_proof_types: Option<Vec<SealProof>>,
}

/// `rpc/sealer/mod.rs:63`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AllocatedSector {
    #[serde(rename = "ID")]
    pub id: SectorID,
    pub proof_type: SealProof,
}

/// `rpc/sealer/mod.rs:292`.
#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(rename_all = "PascalCase")]
pub struct WorkerIdentifier {
    pub instance: String,
    pub location: PathBuf,
}

/// `rpc/sealer/mod.rs:299`.
#[derive(Deserialize, Serialize, Debug)]
#[serde(rename_all = "PascalCase")]
pub struct ReportStateReq {
    pub worker: WorkerIdentifier,
    pub state_change: SectorStateChange,
    pub failure: Option<SectorFailure>,
}

/// `rpc/sealer/mod.rs:307`: the answer of `ReportState`.
#[derive(Deserialize, Serialize, Debug)]
#[serde(rename_all = "PascalCase")]
pub struct SectorState {
    pub id: SectorID,
    pub finalized: bool,
    pub abort_reason: Option<String>,
}

/// `rpc/sealer/mod.rs:315`.
#[derive(Deserialize, Serialize, Debug)]
#[serde(rename_all = "PascalCase")]
pub struct SectorStateChange {
    pub prev: String,
    pub next: String,
    pub event: String,
}

/// `rpc/sealer/mod.rs:323`.
#[derive(Deserialize, Serialize, Debug)]
#[serde(rename_all = "PascalCase")]
pub struct SectorFailure {
    pub level: String,
    pub desc: String,
}

/// `rpc/sealer/mod.rs:376`.
#[derive(Deserialize, Serialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct WorkerInfoSummary {
    pub threads: usize,
    pub empty: usize,
    pub paused: usize,
    pub running: usize,
    pub waiting: usize,
    pub errors: usize,
}

/// `rpc/sealer/mod.rs:387`.
#[derive(Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct WorkerInfo {
    pub name: String,
    pub dest: String,
    pub version: String,
    pub summary: WorkerInfoSummary,
}

/// `rpc/sealer/mod.rs:396`.
#[derive(Deserialize, Serialize, Clone, Debug)]
#[serde(rename_all = "PascalCase")]
pub struct StoreBasicInfo {
    pub name: String,
    pub path: String,
    pub meta: Option<HashMap<String, String>>,
}

/// `rpc/sealer/mod.rs:141`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AcquireDealsSpec {
    pub max_deals: Option<usize>,
    pub min_used_space: Option<usize>,
}

/// `vc_processors::b64serde::BytesArray32` (the worker's `Randomness`, `rpc/sealer/mod.rs:21`): base64 of exactly
/// 32 bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BytesArray32(pub [u8; 32]);

impl Serialize for BytesArray32 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&BASE64.encode(self.0))
    }
}

impl<'de> Deserialize<'de> for BytesArray32 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = BASE64.decode(String::deserialize(d)?).map_err(serde::de::Error::custom)?;
        let array: [u8; 32] =
            bytes.try_into().map_err(|b: Vec<u8>| serde::de::Error::custom(format!("{} bytes, not 32", b.len())))?;
        Ok(BytesArray32(array))
    }
}

/// `vc_processors::b64serde::BytesVec` (the worker's `B64Vec`, `rpc/sealer/mod.rs:23`): base64.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct B64Vec(pub Vec<u8>);

impl Serialize for B64Vec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&BASE64.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for B64Vec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        BASE64.decode(String::deserialize(d)?).map(B64Vec).map_err(serde::de::Error::custom)
    }
}

/// `rpc/sealer/mod.rs:152`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Ticket {
    pub ticket: BytesArray32,
    pub epoch: i64,
}

/// `rpc/sealer/mod.rs:252`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Seed {
    pub seed: BytesArray32,
    pub epoch: i64,
}

/// A `serde_repr` enum over `repr(u64)`: the integer, only the listed values (no 0).
macro_rules! repr_enum {
    ($name:ident { $($variant:ident = $value:literal),* $(,)? }) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name { $($variant = $value),* }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_u64(*self as u64)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                match u64::deserialize(d)? {
                    $($value => Ok($name::$variant),)*
                    other => Err(serde::de::Error::custom(format!(
                        "invalid value: {other}, expected one of: {}", stringify!($($value),*)
                    ))),
                }
            }
        }
    };
}

// `rpc/sealer/mod.rs:165`.
repr_enum!(SubmitResult { Accepted = 1, DuplicateSubmit = 2, MismatchedSubmission = 3, Rejected = 4, FilesMissed = 5 });
// `rpc/sealer/mod.rs:184`.
repr_enum!(OnChainState {
    Pending = 1,
    Packed = 2,
    Landed = 3,
    NotFound = 4,
    Failed = 5,
    PermFailed = 6,
    ShouldAbort = 7,
});

/// `rpc/sealer/mod.rs:210`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PreCommitOnChainInfo {
    pub comm_r: [u8; 32],
    pub comm_d: [u8; 32],
    pub ticket: Ticket,
}

/// `rpc/sealer/mod.rs:224`.
#[derive(Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProofOnChainInfo {
    pub proof: B64Vec,
}

/// `rpc/sealer/mod.rs:232`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SubmitPreCommitResp {
    pub res: SubmitResult,
    pub desc: Option<String>,
}

/// `rpc/sealer/mod.rs:243`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PollPreCommitStateResp {
    pub state: OnChainState,
    pub desc: Option<String>,
}

/// `rpc/sealer/mod.rs:264`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct WaitSeedResp {
    pub should_wait: bool,
    pub delay: u64,
    pub seed: Option<Seed>,
}

/// `rpc/sealer/mod.rs:273`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SubmitProofResp {
    pub res: SubmitResult,
    pub desc: Option<String>,
}

/// `rpc/sealer/mod.rs:284`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PollProofStateResp {
    pub state: OnChainState,
    pub desc: Option<String>,
}

/// `rpc/sealer/mod.rs:88`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SectorPiece {
    pub piece: PieceInfoV2,
    pub deal_info: DealInfoV2,
}

/// `rpc/sealer/mod.rs:99`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DealInfoV2 {
    #[serde(rename = "DealID")]
    pub deal_id: u64,
    #[serde(rename = "AllocationID")]
    pub allocation_id: u64,
    pub payload_size: u64,
    pub is_builtin_market: bool,
}

/// `rpc/sealer/mod.rs:124`.
#[derive(Debug, Serialize, Deserialize, Clone)]
#[serde(rename_all = "PascalCase")]
pub struct PieceInfoV2 {
    pub size: u64,
    #[serde(rename = "PieceCID")]
    pub piece_cid: Value,
}

/// `rpc/sealer/mod.rs:139`: `AcquireDeals`' answer.
pub type DealsV2 = Vec<SectorPiece>;

/// The answer to one call: HTTP status and, for 200, the JSON-RPC response.
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub text: String,
}

impl Answer {
    /// Decodes `result` into the worker's type, as jsonrpc-core-client does (`serde_json::from_value`).
    pub fn result<T: DeserializeOwned>(&self) -> T {
        assert_eq!(self.status, 200, "{}", self.text);
        assert!(self.body.get("error").is_none(), "expected a result, got {}", self.text);
        let result = self.body.get("result").cloned().unwrap_or_else(|| panic!("no result in {}", self.text));
        match serde_json::from_value(result) {
            Ok(value) => value,
            Err(e) => panic!("the worker cannot decode {} as {}: {e}", self.text, std::any::type_name::<T>()),
        }
    }

    pub fn error(&self) -> (i64, String) {
        assert_eq!(self.status, 200, "{}", self.text);
        let error = self.body.get("error").unwrap_or_else(|| panic!("expected an error, got {}", self.text));
        (error["code"].as_i64().unwrap(), error["message"].as_str().unwrap().to_owned())
    }
}

/// POSTs `body` to `/rpc/v0` from `source` (a loopback address), without a token, as the worker's HTTP client.
pub async fn post_from(source: IpAddr, port: u16, body: &str) -> Answer {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    let mut stream = socket.connect(SocketAddr::from(([127, 0, 0, 1], port))).await.unwrap();
    let head = format!(
        "POST /rpc/v0 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(60), stream.read_to_end(&mut raw)).await.unwrap().unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let status = raw.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let text = raw.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer { status, body, text }
}

pub fn call_body(method: &str, params: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","method":"{method}","params":{params},"id":0}}"#)
}

pub const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

pub async fn call(daemon: &RunningDaemon, method: &str, params: &str) -> Answer {
    post_from(LOCAL, daemon.port, &call_body(method, params)).await
}

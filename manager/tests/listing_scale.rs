//! `Venus.ListSectors` at scale against the real daemon: streamed past `[API] MaxResponseBodyBytes`, byte for
//! byte what the buffered path answers, daemon memory bounded while the answer is many times larger, a failure
//! mid-answer cut off (never a shorter list that parses), and `util sectors list` printing it all (or failing).
//!
//! The sectors are written straight into the daemon's RocksDB while it is stopped (the `sectors` collection's
//! documented layout, `sectors/keys.rs`), in big transactions: importing 50,000 sectors through the API would
//! take one synced transaction each. `LISTING_SECTORS` and `LISTING_STATE_BYTES` scale the memory test for
//! docs/reliability.md (e.g. `LISTING_SECTORS=100000 LISTING_STATE_BYTES=3700`, or `LISTING_SECTORS=1000000
//! LISTING_STATE_BYTES=0` for fresh sectors).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::time::{Duration, Instant};

use common::bounded::stop_within;
use common::daemon::{RunningDaemon, TestHome};
use manager::kvstore::RocksDb;
use manager_plugin::kv::Db;
use manager_plugin::sector::{SectorId, SectorState};
use serde_json::Value;

const MINER: u64 = 1000;

/// A sector state whose JSON is about `bytes` long (at least that of a fresh sector).
fn sector_json(number: u64, bytes: usize, finalized: bool) -> Vec<u8> {
    let mut state = SectorState::new(SectorId { miner: MINER, number }, 8);
    state.finalized = finalized;
    let bare = serde_json::to_vec(&state).unwrap().len();
    state.abort_reason = "r".repeat(bytes.saturating_sub(bare));
    serde_json::to_vec(&state).unwrap()
}

/// Writes sectors `numbers` into state `ws` (`online`/`offline`) of the home's RocksDB, `value(number)` each, in
/// transactions of 1,000. The daemon must be stopped.
fn populate(home: &TestHome, ws: &str, numbers: impl Iterator<Item = u64>, value: impl Fn(u64) -> Vec<u8>) {
    let db = RocksDb::open(&home.path().join("db")).unwrap();
    db.run().unwrap();
    let sectors = db.open_collection("sectors").unwrap();
    let numbers: Vec<u64> = numbers.collect();
    for chunk in numbers.chunks(1000) {
        sectors
            .update(&mut |txn| {
                for &number in chunk {
                    txn.put(format!("{ws}/m-{MINER}-n-{number}").as_bytes(), &value(number))?;
                }
                Ok(())
            })
            .unwrap();
    }
    db.close().unwrap();
}

/// A home whose daemon ran once (so the database has its identity), with a 1 MiB response limit.
fn home_with_small_response_limit() -> TestHome {
    let home = TestHome::init();
    home.set_config("API.MaxResponseBodyBytes", 1i64 << 20);
    assert_eq!(stop_within(home.start(), Duration::from_secs(40)), Some(0));
    home
}

/// A raw HTTP answer: status, headers, the de-chunked body, and whether the chunked body ended properly.
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
    complete: bool,
}

/// POSTs `body` to `/rpc/v0` with the token and reads the answer, de-chunking it.
fn post(daemon: &RunningDaemon, body: &str) -> Answer {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", daemon.port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let request = format!(
        "POST /rpc/v0 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        daemon.token,
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    read_answer(&mut BufReader::new(stream))
}

fn read_answer(reader: &mut impl BufRead) -> Answer {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let lower = head.to_ascii_lowercase();
    let mut body = Vec::new();
    if !lower.contains("transfer-encoding: chunked") {
        reader.read_to_end(&mut body).unwrap();
        return Answer { status, head, body, complete: true };
    }
    loop {
        let mut size_line = String::new();
        if reader.read_line(&mut size_line).unwrap_or(0) == 0 {
            return Answer { status, head, body, complete: false };
        }
        let Ok(size) = usize::from_str_radix(size_line.trim(), 16) else {
            return Answer { status, head, body, complete: false };
        };
        if size == 0 {
            return Answer { status, head, body, complete: true };
        }
        let start = body.len();
        body.resize(start + size, 0);
        let mut crlf = [0u8; 2];
        if reader.read_exact(&mut body[start..]).is_err() || reader.read_exact(&mut crlf).is_err() {
            body.truncate(start);
            return Answer { status, head, body, complete: false };
        }
    }
}

/// Runs `damocles-manager util sectors list --offline` against the home's daemon.
fn util_sectors_list(home: &TestHome) -> std::process::Output {
    std::process::Command::new(common::daemon::binary())
        .arg("--home")
        .arg(home.path())
        .args(["util", "sectors", "list", "--offline"])
        .output()
        .unwrap()
}

const LIST_OFFLINE: &str = r#"{"jsonrpc":"2.0","id":7,"method":"Venus.ListSectors","params":["offline",0]}"#;

/// The sector numbers of a parsed `ListSectors` answer, in order.
fn numbers(answer: &Value) -> Vec<u64> {
    let result = answer["result"].as_array().unwrap_or_else(|| panic!("no result array: {:.300}", answer.to_string()));
    result.iter().map(|s| s["ID"]["Number"].as_u64().expect("a sector number")).collect()
}

#[test]
fn a_listing_over_max_response_body_bytes_is_streamed_whole_in_order_and_as_the_buffered_path_writes_it() {
    let home = home_with_small_response_limit();
    let count = 4_000u64;
    // Numbers whose byte order differs from their numeric order (9 < 10 < 100 < 1000...).
    populate(&home, "offline", 1..=count, |n| sector_json(n, 4_000, true));
    populate(&home, "online", 1..=40, |n| sector_json(n, 0, false));
    let daemon = home.start();

    let answer = post(&daemon, LIST_OFFLINE);
    assert_eq!(answer.status, 200, "{}", answer.head);
    assert!(answer.complete, "the chunked answer ended properly");
    assert!(answer.head.to_ascii_lowercase().contains("transfer-encoding: chunked"), "{}", answer.head);
    assert!(answer.body.len() > 15 << 20, "{} bytes: over 15 times [API] MaxResponseBodyBytes", answer.body.len());
    let parsed: Value = serde_json::from_slice(&answer.body).expect("the whole answer parses as JSON");
    assert_eq!(parsed["id"], 7);
    assert_eq!(numbers(&parsed), (1..=count).collect::<Vec<_>>(), "every sector once, in numeric order");

    // The buffered path (a batch) still has the limit...
    let batch = post(&daemon, &format!("[{LIST_OFFLINE}]"));
    let batch: Value = serde_json::from_slice(&batch.body).unwrap();
    assert_eq!(batch[0]["error"]["code"], -32008, "{batch:.300}");
    // ...and, within it, writes exactly the bytes the stream writes.
    let online = r#"{"jsonrpc":"2.0","id":"list-1","method":"Venus.ListSectors","params":["online",null]}"#;
    let streamed = post(&daemon, online);
    let buffered = post(&daemon, &format!("[{online}]"));
    let streamed = String::from_utf8(streamed.body).unwrap();
    let buffered = String::from_utf8(buffered.body).unwrap();
    assert_eq!(format!("[{streamed}]"), buffered);
    assert_eq!(numbers(&serde_json::from_str(&streamed).unwrap()), (1..=40).collect::<Vec<_>>());

    // `util sectors list` prints the same list, as one pretty array written sector by sector.
    let out = util_sectors_list(&home);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pretty = serde_json::to_string_pretty(&parsed["result"]).unwrap() + "\n";
    assert!(out.stdout == pretty.as_bytes(), "util sectors list prints what to_string_pretty of the list would");

    // Invalid params answer as before, from jsonrpsee.
    let bad = post(&daemon, r#"{"jsonrpc":"2.0","id":1,"method":"Venus.ListSectors","params":["sideways",0]}"#);
    let bad: Value = serde_json::from_slice(&bad.body).unwrap();
    assert_eq!(bad["error"]["code"], -32602, "{bad}");
    assert!(bad["error"]["message"].as_str().unwrap().contains("online or offline"), "{bad}");
    // Without the token: refused before anything is read.
    let refused = common::daemon::raw_http(daemon.port, "POST", "/rpc/v0", None, LIST_OFFLINE.as_bytes()).unwrap();
    assert_eq!(refused.status, 401);
    assert_eq!(stop_within(daemon, Duration::from_secs(40)), Some(0));
}

#[test]
fn a_record_that_cannot_be_read_mid_listing_cuts_the_answer_off_and_one_at_the_start_is_an_error() {
    let home = home_with_small_response_limit();
    populate(
        &home,
        "offline",
        1..=2_000,
        |n| {
            if n == 1_500 { b"{not json".to_vec() } else { sector_json(n, 3_000, true) }
        },
    );
    populate(&home, "online", 1..=10, |n| if n == 1 { b"[]".to_vec() } else { sector_json(n, 0, false) });
    let daemon = home.start();

    let answer = post(&daemon, LIST_OFFLINE);
    assert_eq!(answer.status, 200);
    assert!(!answer.complete, "the connection was closed before the end of the chunked body");
    assert!(answer.body.len() > 1 << 20, "part of the list was sent first ({} bytes)", answer.body.len());
    assert!(serde_json::from_slice::<Value>(&answer.body).is_err(), "a cut-off answer never parses");
    assert!(daemon.log().contains("m-1000-n-1500"), "the daemon logs the record:\n{}", daemon.log());

    // Failing before anything was sent: an ordinary JSON-RPC error naming the record.
    let online = post(&daemon, r#"{"jsonrpc":"2.0","id":1,"method":"Venus.ListSectors","params":["online",0]}"#);
    assert!(online.complete);
    let online: Value = serde_json::from_slice(&online.body).unwrap();
    let message = online["error"]["message"].as_str().unwrap_or_else(|| panic!("an error: {online}"));
    assert!(message.contains("online/m-1000-n-1"), "{message}");

    // The CLI says the listing broke and fails.
    let out = util_sectors_list(&home);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cut off") && stderr.contains("Venus.ListSectors"), "{stderr}");
    assert_eq!(stop_within(daemon, Duration::from_secs(40)), Some(0));
}

/// Resident memory of `pid` now (VmRSS), bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        * 1024
}

#[test]
fn listing_memory_stays_bounded_while_the_answer_is_many_times_larger_and_the_client_stalls() {
    let env = |name: &str, default: u64| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let count = env("LISTING_SECTORS", 50_000);
    let state_bytes = env("LISTING_STATE_BYTES", 3_700) as usize;
    let home = home_with_small_response_limit();
    let started = Instant::now();
    populate(&home, "offline", 1..=count, |n| sector_json(n, state_bytes, true));
    eprintln!("populated {count} sectors of ~{state_bytes} bytes in {:?}", started.elapsed());
    let daemon = home.start();
    let pid = daemon.child.id();
    let baseline = daemon.peak_rss();

    // A client that sends the call and then reads nothing for a while: the daemon must wait, not buffer.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", daemon.port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
    let request = format!(
        "POST /rpc/v0 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{LIST_OFFLINE}",
        daemon.token,
        LIST_OFFLINE.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let while_stalled = rss(pid);
    let started = Instant::now();
    let mut reader = BufReader::with_capacity(1 << 20, stream);
    let answer = read_answer(&mut reader);
    let elapsed = started.elapsed();
    assert!(answer.complete);
    let parsed: Value = serde_json::from_slice(&answer.body).unwrap();
    let listed = numbers(&parsed);
    assert_eq!(listed.len() as u64, count);
    assert!(listed.iter().zip(1..).all(|(&n, expected)| n == expected), "every sector once, in order");
    let peak = daemon.peak_rss();
    let size = answer.body.len() as u64;
    drop(parsed);
    eprintln!(
        "ListSectors of {count} sectors (~{state_bytes} bytes of state each): {} MiB of JSON in {elapsed:?}; daemon \
         peak RSS {} MiB (before the call {} MiB, while the client stalled {} MiB)",
        size >> 20,
        peak >> 20,
        baseline >> 20,
        while_stalled >> 20
    );
    assert!(while_stalled < baseline + (64 << 20), "a stalled client costs little: {while_stalled} vs {baseline}");
    assert!(peak < baseline + (96 << 20), "peak {peak} vs {baseline} before, for {size} bytes of JSON");
    assert!(size > 4 * (peak - baseline.min(peak)), "the answer ({size}) is far larger than the memory it took");

    assert_eq!(stop_within(daemon, Duration::from_secs(40)), Some(0));
}

//! `Venus.ListSectors` (Go: `ListSectors(ctx, SectorWorkerState, SectorWorkerJob) ([]*SectorState, error)`):
//! every sector of one state, optionally of one job, sorted by (miner, number).
//!
//! A single call over HTTP is streamed ([`stream`]): the answer is written sector by sector as a chunked body,
//! so it is limited neither by memory nor by `[API] MaxResponseBodyBytes`; the JSON is byte for byte what the
//! buffered path answers. Inside a batch, or over WebSocket, the call is answered whole by jsonrpsee (registered
//! in `admin.rs`), within `MaxResponseBodyBytes`. [`client`] reads a streamed answer one sector at a time (for
//! `util sectors list`).

pub mod client;
pub mod stream;

use jsonrpsee::types::ErrorObjectOwned;
use manager_plugin::sector::WorkerState;

use super::super::params::{Args, INVALID_PARAMS, error};
use super::admin::worker_state;
use crate::sectors::JobFilter;

/// The method's name.
pub const METHOD: &str = "Venus.ListSectors";

/// Decodes the parameters `ws` (`"online"`/`"offline"`) and `job` (Go's `SectorWorkerJob`, 0 all … 4 unseal;
/// `null` or absent is 0).
pub fn params(mut args: Args) -> Result<(WorkerState, JobFilter), ErrorObjectOwned> {
    let ws = worker_state(&mut args, "ws")?;
    let job: Option<u8> = args.next("job")?;
    args.finish()?;
    let job = JobFilter::from_code(job.unwrap_or(0))
        .ok_or_else(|| error(INVALID_PARAMS, "invalid `job`: use 0 (all) to 4 (unseal)"))?;
    Ok((ws, job))
}

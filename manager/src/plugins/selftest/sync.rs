//! The SyncSectorState suite: every hook the plugin exports is handed a realistic event (a 32 GiB sector of miner
//! 1000 part way through sealing, built with the SDK's sector model the way the state manager builds it) and must
//! accept it. Hooks the plugin does not export are not called, as in the daemon.

use manager_plugin::manifest::ExtPoint;
use manager_plugin::sector::{
    AllocatedSector, Bytes, Cid, PreCommitInfo, ReportStateReq, SectorId, SectorState, SectorUpdate, StateChange,
    Ticket, WorkerIdentifier, WorkerState,
};
use manager_plugin::sync::{FinalizeEvent, ImportEvent, InitEvent, RestoreEvent, SectorEvent, UpdateEvent};

use super::{Context as _, Outcome, check};
use crate::plugins::registry::PluginRecord;

/// `StackedDrg32GiBV1_1`.
const PROOF_TYPE: i64 = 8;

/// `plugin test` of a SyncSectorState plugin: one check per exported hook, named after the hook.
pub(super) fn run(record: &PluginRecord) -> Vec<Outcome> {
    let hooks = match record.sync_delivery() {
        Ok(hooks) => hooks,
        Err(e) => return vec![check("hooks", || Err(e.to_string()))],
    };
    let id = SectorId { miner: 1000, number: 7 };
    let updates = sealing_updates();
    let mut sealed = SectorState::new(id, PROOF_TYPE);
    updates.iter().for_each(|u| sealed.apply(u));
    let mut finalized = sealed.clone();
    finalized.finalized = true;
    let mut outcomes = Vec::new();
    let mut deliver = |point: ExtPoint, what: &str, event: SectorEvent| {
        if hooks.exports(point) {
            outcomes.push(check(point.as_str(), || hooks.deliver(&event).ctx(what)));
        }
    };
    let allocated = vec![AllocatedSector { id, proof_type: PROOF_TYPE }];
    let init = InitEvent { sectors: allocated, worker_state: WorkerState::Online };
    deliver(ExtPoint::OnInit, "OnInit of a newly allocated sector", SectorEvent::Init(init));
    let update = UpdateEvent { sector_id: id, worker_state: WorkerState::Online, updates, state: sealed.clone() };
    deliver(ExtPoint::OnUpdate, "OnUpdate of a ticket and a PC1Done report", SectorEvent::Update(update));
    let finalize = FinalizeEvent { sector_id: id, state: finalized.clone() };
    deliver(ExtPoint::OnFinalize, "OnFinalize of a sealed sector", SectorEvent::Finalize(finalize));
    let restore = RestoreEvent { sector_id: id, state: sealed.clone() };
    deliver(ExtPoint::OnRestore, "OnRestore of a finalized sector", SectorEvent::Restore(restore));
    let mut imported = finalized;
    imported.id = SectorId { miner: 1000, number: 8 };
    imported.imported = true;
    let import = ImportEvent { worker_state: WorkerState::Offline, state: imported, overwrite: false };
    deliver(ExtPoint::OnImport, "OnImport of a sealed sector", SectorEvent::Import(import));
    outcomes
}

/// What a worker reports between allocation and pre-commit: the ticket, pre-commit info, the latest state.
fn sealing_updates() -> Vec<SectorUpdate> {
    let ticket = Ticket { ticket: Bytes((0..32).collect()), epoch: 3_456_789 };
    let cid = |value: &str| Cid { value: value.to_string() };
    vec![
        SectorUpdate::Ticket(ticket.clone()),
        SectorUpdate::Pre(PreCommitInfo {
            comm_r: cid("bagboea4b5abcbrshxgmmpaucffwp2elaofbcrvb7hmcu3653o4lsw2arlor4hn3c"),
            comm_d: cid("baga6ea4seaqao7s73y24kcutaosvacpdjgfe5pw76ooefnyqw4ynr3d2y6x2mpq"),
            ticket,
        }),
        SectorUpdate::LatestState(ReportStateReq {
            worker: WorkerIdentifier { instance: "worker-1".into(), location: "/data/sealing/s-t01000-7".into() },
            state_change: StateChange { prev: "TicketAssigned".into(), next: "PC1Done".into(), event: "Done".into() },
            failure: None,
        }),
    ]
}

//! Catching up from a member (docs/protocol.md §7.6): the receiving side's pure half of a
//! state transfer. [`RecordAssembler`] turns a stream of chunks back into records, and
//! [`Adoption`] turns a member's records into the receiver's: its data, never its roles (the
//! rule is in the module doc of `dkv_net::transfer`), up to the configuration that adds the
//! receiver. No I/O: dkv-net's transfer, the simulator's catch-up, the fuzzers and the tests
//! drive them directly.

use crate::codec::transfer::TRANSFER_CHUNK_BYTES_MAX;
use crate::codec::wal::{self, RecordError, RecordsStop};
use crate::configuration::Epoch;
use crate::record::{DecisionState, SnapshotConfiguration, SnapshotHeader, SnapshotHeaderInEpoch, TxnRecord};
use crate::{NodeId, Record, TxnId};
use std::collections::BTreeMap;
use std::collections::BTreeSet;
use thiserror::Error;

/// The largest record a transfer carries: any record a log may hold, so that every log its
/// member can recover can be transferred. It bounds what the assembler holds of a record cut
/// across chunks, which is what a recovery of the same log holds of it anyway. In practice
/// records are far smaller: a snapshot's entries record is about 1 MiB plus one entry, a
/// transaction's at most about `Limits::frame_bytes_max` (17 MiB by default); only a snapshot's
/// header, which holds the completion records and prepared transactions, can be larger.
pub const TRANSFER_RECORD_BYTES_MAX: usize = wal::RECORD_BYTES_MAX as usize;
/// Own transactions ([`Adoption`]) held aside at once, waiting for their outcome.
pub const OWN_PENDING_MAX: usize = 65_536;

/// Why the stream does not make a log this node can take.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum AdoptError {
    #[error("record {index} of the stream is damaged: {error}")]
    Damaged { index: u64, error: RecordError },
    #[error(
        "record {index} of the stream claims {bytes} bytes, more than a transfer carries ({TRANSFER_RECORD_BYTES_MAX})"
    )]
    RecordTooLarge { index: u64, bytes: usize },
    #[error("the stream ends inside a record ({bytes} bytes of it)")]
    EndsInsideRecord { bytes: usize },
    #[error("the stream ends inside its snapshot")]
    EndsInsideSnapshot,
    #[error("record {index} ({kind}) is out of place: {why}")]
    OutOfPlace { index: u64, kind: &'static str, why: &'static str },
    #[error(
        "transaction {txn}, coordinated by this node in an earlier life, is prepared at the member with no known outcome; this node cannot decide it now. Ask again once the cluster has settled it (a configuration change does)"
    )]
    OwnTransactionInDoubt { txn: TxnId },
    #[error("more than {OWN_PENDING_MAX} of this node's own transactions are in doubt at the member")]
    TooManyOwnPending,
    #[error(
        "the member's log does not reach epoch {epoch}, the configuration that adds this node (it is at {reached}); ask again once it has installed it"
    )]
    ShortOfTheJoin { epoch: Epoch, reached: Epoch },
    #[error(
        "node {node} streams a state of epoch {epoch} it was no member of, nor of the epoch before: it may lack commits; ask a member"
    )]
    SourceWasNoMember { node: NodeId, epoch: Epoch },
}

/// Reassembles the records of a stream of chunks. Holds at most the bytes of one record cut
/// across chunks plus one chunk.
#[derive(Default)]
pub struct RecordAssembler {
    /// Bytes received and not yet decoded; always starts at a record boundary.
    pending: Vec<u8>,
    /// Records decoded so far.
    decoded: u64,
    /// The most bytes `pending` ever held.
    high_water_bytes: usize,
}

impl RecordAssembler {
    /// Adds `chunk` and appends every record it completes to `records`.
    pub fn push(&mut self, chunk: &[u8], records: &mut Vec<Record>) -> Result<(), AdoptError> {
        self.pending.extend_from_slice(chunk);
        self.high_water_bytes = self.high_water_bytes.max(self.pending.len());
        let first = records.len();
        let read = wal::decode_records(&self.pending, true, records);
        self.pending.drain(..read.len);
        self.decoded += (records.len() - first) as u64;
        match read.stop {
            RecordsStop::NeedsBytes { record_bytes } if record_bytes > TRANSFER_RECORD_BYTES_MAX => {
                Err(AdoptError::RecordTooLarge { index: self.decoded, bytes: record_bytes })
            }
            RecordsStop::NeedsBytes { .. } | RecordsStop::End => {
                // A large record passed through: do not keep its size until the end.
                let keep = self.pending.len().max(TRANSFER_CHUNK_BYTES_MAX as usize);
                if self.pending.capacity() > 2 * keep {
                    self.pending.shrink_to(keep);
                }
                Ok(())
            }
            RecordsStop::Damaged(error) => Err(AdoptError::Damaged { index: self.decoded, error }),
        }
    }

    /// The stream ended: it must end on a record boundary.
    pub fn finish(&self) -> Result<(), AdoptError> {
        match self.pending.len() {
            0 => Ok(()),
            bytes => Err(AdoptError::EndsInsideRecord { bytes }),
        }
    }

    /// The most bytes held at once.
    pub fn high_water_bytes(&self) -> usize {
        self.high_water_bytes
    }

    /// Bytes held now: the start of a record cut across chunks.
    pub fn pending_bytes(&self) -> usize {
        self.pending.len()
    }
}

/// The snapshot of a log's start, for a member's log that has none yet, so that the adopted
/// log, like every transferred one, begins with a snapshot: the empty store, and the state of
/// a log's first record, which tracks no versions (a build that does says so with its boot
/// record), hence no [`Record::SnapshotVersionedEntries`].
pub fn empty_snapshot() -> [Record; 2] {
    [Record::SnapshotBegin(Box::default()), Record::SnapshotEnd { entries: 0 }]
}

/// A boot record of incarnation 0 (it names no incarnation of anyone's), setting whether
/// versions are tracked from here on.
fn boot_record(tracked: bool) -> Record {
    if tracked { Record::BootTracked { incarnation: 0 } } else { Record::Boot { incarnation: 0 } }
}

/// Where the stream is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// Nothing read yet.
    Start,
    /// Inside the stream's snapshot.
    InSnapshot,
    /// After the snapshot: the records logged since.
    AfterSnapshot,
}

/// Rewrites a member's records as node `me`'s (the rule is in the module doc of
/// `dkv_net::transfer`), one at a time, in stream order.
pub struct Adoption {
    me: NodeId,
    place: Place,
    /// The incarnation the receiver's log must reach: its own last one, and that of every
    /// transaction of its own the stream names.
    incarnation_floor: u64,
    /// This node's own transactions prepared at the member, outcome not yet seen.
    own_pending: BTreeMap<TxnId, OwnPending>,
    /// Whether versions are tracked at this point of the stream, as recovery reads it: set by
    /// boot records and by the snapshot (see `Record::BootTracked`).
    tracked: bool,
    /// The snapshot being read holds versioned entries.
    snapshot_tracked: bool,
    /// The member's decisions its snapshot had not applied: applied after the snapshot's end.
    unapplied: Vec<TxnRecord>,
    /// The member's own commit decisions (`CommitDecided`), adopted as commits this node holds
    /// (`CommitLearned`) and not yet applied: the member's `Forgotten` for one of them (finished,
    /// so durable everywhere) applies it here.
    member_decided: BTreeSet<TxnId>,
    /// Records seen, for errors.
    index: u64,
    /// The epoch whose configuration adds this node: the stream is taken up to that
    /// configuration's `Installed` record (or a snapshot of it), and not past it.
    joining: Option<Epoch>,
    /// The epoch of the member's state at this point of the stream.
    epoch: Epoch,
    /// The node streaming its log (if known), and whether it was a member of the configuration
    /// at this point of the stream: a state taken through an epoch is whole only from a member
    /// of it or of the epoch before (§7.6).
    source: Option<NodeId>,
    source_member: bool,
    /// Past the configuration that adds this node: the rest of the stream is not taken.
    done: bool,
    /// Planted flaw (canary `catch-up-skips-commits`): nothing after the snapshot is taken but
    /// the configurations (so the transactions logged since, their commits included, are not).
    skips_commits: bool,
    /// Planted flaw (canary `catch-up-held-own-in-doubt`): this node's own commits that the
    /// member's snapshot holds are taken as in doubt.
    held_own_in_doubt: bool,
}

/// One of the receiver's own transactions prepared at the member, outcome not yet seen.
struct OwnPending {
    record: TxnRecord,
    /// Whether versions were tracked when it was prepared (`None`: in the snapshot, whose
    /// tracking is known at its end).
    tracked: Option<bool>,
    /// The member holds its commit (`CommitLearned`): an install commits it unless its
    /// settlement aborts it, as `Participant::settle` does.
    held: bool,
}

impl Adoption {
    /// For node `me`, whose incarnation so far was `incarnation_floor` (0 if unknown: an
    /// emptied or new data dir).
    pub fn new(me: NodeId, incarnation_floor: u64) -> Adoption {
        Adoption {
            me,
            place: Place::Start,
            incarnation_floor,
            own_pending: BTreeMap::new(),
            tracked: false,
            snapshot_tracked: false,
            unapplied: Vec::new(),
            member_decided: BTreeSet::new(),
            index: 0,
            joining: None,
            epoch: Epoch::FIRST,
            source: None,
            source_member: false,
            done: false,
            skips_commits: false,
            held_own_in_doubt: false,
        }
    }

    /// Takes the stream only up to the configuration of `epoch`, the one that adds this node
    /// (docs/protocol.md §7.6): through its `Installed` record, or from a snapshot of that
    /// epoch on to the end or the next `Installed`. In that epoch no commit can have happened
    /// without this node's YES, so what follows its install is nothing this node lacks. The
    /// node's incarnations start above `epoch`'s share of the numbers (its earlier lives'
    /// transaction ids, which members' finished marks may still name, were all below).
    pub fn joining(mut self, epoch: Epoch) -> Adoption {
        self.joining = Some(epoch);
        self.incarnation_floor = self.incarnation_floor.max(epoch.0.saturating_mul(1 << 32));
        self
    }

    /// The stream is `source`'s log. A state taken through the configuration that adds this
    /// node is then checked to be whole: `source` was a member of that configuration (or of the
    /// snapshot's, past it), or of the one before it and installed it. A node of the epoch
    /// before holds every commit up to its end (each had every member's YES), the install
    /// settles what it left in doubt, and no commit of the epoch that adds this node can
    /// happen without this node's YES: so nothing the members hold is missing. A node outside
    /// both may lack commits of epochs it took no part in.
    pub fn streamed_by(mut self, source: NodeId) -> Adoption {
        self.source = Some(source);
        self
    }

    /// Checks that `source` was a member of the configuration `members` of epoch `epoch`
    /// taken through, or (`member_before`) of the one before.
    fn check_source(&self, epoch: Epoch, members: crate::ids::NodeSet, member_before: bool) -> Result<(), AdoptError> {
        let Some(source) = self.source else { return Ok(()) };
        if members.contains(source) || member_before {
            Ok(())
        } else {
            Err(AdoptError::SourceWasNoMember { node: source, epoch })
        }
    }

    /// Plants the flaw of canary `catch-up-skips-commits` or `catch-up-held-own-in-doubt` if
    /// `config` names it (never without the `canary` feature).
    pub fn with_canary_of(#[allow(unused_mut)] mut self, config: &crate::Config) -> Adoption {
        #[cfg(feature = "canary")]
        {
            self.skips_commits = config.canary == Some(crate::Canary::CatchUpSkipsCommits);
            self.held_own_in_doubt = config.canary == Some(crate::Canary::CatchUpHeldOwnInDoubt);
        }
        #[cfg(not(feature = "canary"))]
        let _ = config;
        self
    }

    /// Appends to `out` what the member's `record` becomes in this node's log.
    pub fn adopt(&mut self, record: Record, out: &mut Vec<Record>) -> Result<(), AdoptError> {
        let index = self.index;
        self.index += 1;
        if self.done {
            return Ok(());
        }
        if let Some(joining) = self.joining {
            match &record {
                // A snapshot past the configuration that adds this node: the node takes the
                // state through the snapshot's configuration instead, a member of it if it has
                // the node, else a node outside it, which asks to join again. Either way no
                // life of this node acted in the epochs between (the add named this life's
                // ticket, so it was chosen after this life began, and this life acts only once
                // caught up), and if the node is a member, no commit of the epoch can have
                // happened without its YES. (Seen in the simulator: a node added, then kept by
                // the next changes, was refused every member's state, as each had a snapshot
                // taken since; and one added, then removed again before it caught up, could
                // neither take the state nor install the value that added it, and stayed
                // outside, unable to take part in the agreement the others needed it for.)
                Record::SnapshotConfiguration(c) if c.configuration.epoch > joining => {
                    let found = c.configuration.epoch;
                    self.check_source(found, c.configuration.members, false)?;
                    self.joining = Some(found);
                    self.incarnation_floor = self.incarnation_floor.max(found.0.saturating_mul(1 << 32));
                    self.epoch = found;
                }
                Record::SnapshotConfiguration(c) => {
                    if c.configuration.epoch == joining {
                        // The snapshot's kept values name the configuration before it.
                        let before = c.installed.iter().find(|v| v.configuration.epoch.next() == Some(joining));
                        let member_before =
                            before.is_some_and(|v| self.source.is_some_and(|s| v.configuration.contains(s)));
                        self.check_source(joining, c.configuration.members, member_before)?;
                    }
                    self.epoch = c.configuration.epoch;
                    self.source_member = self.source.is_some_and(|s| c.configuration.contains(s));
                }
                // The next configuration after the one that adds this node: not taken, nor
                // anything after it.
                Record::Installed(_) if self.epoch >= joining => {
                    self.done = true;
                    return Ok(());
                }
                Record::Installed(value) => {
                    if value.configuration.epoch == joining {
                        self.check_source(joining, value.configuration.members, self.source_member)?;
                    }
                    self.epoch = value.configuration.epoch;
                    self.source_member = self.source.is_some_and(|s| value.configuration.contains(s));
                }
                _ => {}
            }
            let kept = matches!(record, Record::Installed(_) | Record::Boot { .. } | Record::BootTracked { .. });
            if self.skips_commits && !kept && self.place == Place::AfterSnapshot {
                return Ok(());
            }
        }
        let kind = record.kind();
        let out_of_place = |why| AdoptError::OutOfPlace { index, kind, why };
        if self.place == Place::Start {
            self.place = Place::AfterSnapshot;
            if let Record::SnapshotBegin(_) | Record::SnapshotBeginInEpoch(_) = record {
                self.place = Place::InSnapshot;
            } else {
                out.extend(empty_snapshot());
            }
        }
        match (self.place, record) {
            (Place::InSnapshot, Record::SnapshotBegin(header)) if index == 0 => {
                out.push(Record::SnapshotBegin(Box::new(self.adopt_header(*header)?)));
            }
            (Place::InSnapshot, Record::SnapshotBeginInEpoch(header)) if index == 0 => {
                out.push(Record::SnapshotBeginInEpoch(Box::new(self.adopt_header_in_epoch(*header)?)));
            }
            (Place::InSnapshot, record @ (Record::SnapshotEntries(_) | Record::SnapshotVersionedEntries(_))) => {
                self.snapshot_tracked |= matches!(record, Record::SnapshotVersionedEntries(_));
                out.push(record)
            }
            (Place::InSnapshot, record @ Record::SnapshotEnd { .. }) => {
                out.push(record);
                self.tracked = self.snapshot_tracked;
                for pending in self.own_pending.values_mut() {
                    pending.tracked.get_or_insert(self.snapshot_tracked);
                }
                for t in std::mem::take(&mut self.unapplied) {
                    let txn = t.txn;
                    out.push(Record::Prepared(t));
                    out.push(Record::Committed { txn });
                }
                self.place = Place::AfterSnapshot;
            }
            // The configuration as of the snapshot, and the value that installed it, are data;
            // the member's agreement state is its own role (a copy would clone an acceptor).
            (Place::InSnapshot, Record::SnapshotConfiguration(c)) => {
                let SnapshotConfiguration { configuration, installed, .. } = *c;
                let c = SnapshotConfiguration { configuration, installed, agreement: None };
                out.push(Record::SnapshotConfiguration(Box::new(c)));
            }
            // The member's parts in vote instances are its own, as its agreement state is.
            (Place::InSnapshot, Record::SnapshotVoteAcceptors(_)) => {}
            // Finished marks are the cluster's, as after the snapshot; those about this node's
            // own earlier transactions are its own business.
            (Place::InSnapshot, Record::SnapshotFinishedMarks(marks)) => {
                let marks: Vec<TxnId> = marks.into_iter().filter(|below| below.coordinator != self.me).collect();
                if !marks.is_empty() {
                    out.push(Record::SnapshotFinishedMarks(marks));
                }
            }
            // Pins are the member's own votes: the receiver voted on none of what it adopts.
            (Place::InSnapshot, Record::SnapshotPinned(_)) => {}
            (Place::InSnapshot, _) => return Err(out_of_place("the snapshot is not finished")),
            (
                Place::AfterSnapshot,
                Record::SnapshotConfiguration(_)
                | Record::SnapshotVoteAcceptors(_)
                | Record::SnapshotFinishedMarks(_)
                | Record::SnapshotPinned(_),
            ) => {
                return Err(out_of_place("no snapshot is open"));
            }
            // The member's parts in an agreement and in vote instances are its own, never the
            // receiver's; and so is what it says of its own log.
            (
                Place::AfterSnapshot,
                Record::Agreement(_)
                | Record::VoteAcceptor { .. }
                | Record::Unvouched
                | Record::Bootstrapped { .. }
                | Record::ChangesOff,
            ) => {}
            // The member installed the next configuration: its settlement settles what the
            // receiver holds from the stream exactly as the member's install settled it
            // (`Participant::settle`; replay applies it alike): a commit the member holds
            // commits unless the settlement aborts it, anything else aborts unless it commits
            // it. This node's own transactions that commit are its decisions, finished; the
            // others are gone. (A settlement from a cover's reports may leave out a transaction
            // prepared at members outside the cover: never a commit, which every member
            // prepared and every report names, docs/protocol.md §7.3. Waiting for a later
            // change to name it, the catch-up was refused for ever: default swarm seed 2027.)
            (Place::AfterSnapshot, Record::Installed(value)) => {
                for (txn, pending) in std::mem::take(&mut self.own_pending) {
                    let settlement = &value.settlement;
                    if settlement.commits(txn) || pending.held && !settlement.aborts(txn) {
                        out.push(Record::Decided(pending.record));
                        out.push(Record::Forgotten { txn });
                    }
                }
                self.member_decided.clear();
                out.push(Record::Installed(value));
            }
            (Place::AfterSnapshot, Record::SnapshotBegin(_) | Record::SnapshotBeginInEpoch(_)) => {
                return Err(out_of_place("a transfer carries one snapshot, at its start"));
            }
            (
                Place::AfterSnapshot,
                Record::SnapshotEntries(_) | Record::SnapshotVersionedEntries(_) | Record::SnapshotEnd { .. },
            ) => return Err(out_of_place("no snapshot is open")),
            // The member's incarnations are its own; the record stays for the build it marks.
            (Place::AfterSnapshot, Record::Boot { .. }) => {
                self.tracked = false;
                out.push(Record::Boot { incarnation: 0 });
            }
            (Place::AfterSnapshot, Record::BootTracked { .. }) => {
                self.tracked = true;
                out.push(Record::BootTracked { incarnation: 0 });
            }
            (Place::AfterSnapshot, Record::Prepared(t)) => {
                if t.txn.coordinator == self.me {
                    self.hold_own(t, Some(self.tracked), false)?;
                } else {
                    out.push(Record::Prepared(t));
                }
            }
            // A share logged in an epoch (the member's own included, docs/protocol.md §7.2): a
            // share this node holds as a participant, or one of its own earlier transactions.
            (Place::AfterSnapshot, Record::PreparedInEpoch { epoch, txn: t }) => {
                if t.txn.coordinator == self.me {
                    self.hold_own(t, Some(self.tracked), false)?;
                } else {
                    out.push(Record::PreparedInEpoch { epoch, txn: t });
                }
            }
            // The member's decision: a commit this node holds, as a participant that learned it,
            // until it is visible (a later `Committed`) or finished (a later `Forgotten`).
            (Place::AfterSnapshot, Record::CommitDecided { txn }) => {
                if txn.coordinator == self.me {
                    return Err(out_of_place("a member decided a transaction of this node's"));
                }
                self.member_decided.insert(txn);
                out.push(Record::CommitLearned { txn });
            }
            // A commit the member holds. One of this node's own stays pending: only its
            // `Committed` (applied) settles it here; without one the transfer is refused below.
            (Place::AfterSnapshot, Record::CommitLearned { txn }) => match self.own_pending.get_mut(&txn) {
                Some(pending) => pending.held = true,
                None => out.push(Record::CommitLearned { txn }),
            },
            // Finished marks about this node's own earlier transactions are its own business.
            (Place::AfterSnapshot, Record::FinishedBelow { below }) => {
                if below.coordinator != self.me {
                    out.push(Record::FinishedBelow { below });
                }
            }
            (Place::AfterSnapshot, Record::Committed { txn }) => match self.own_pending.remove(&txn) {
                // This node's own commit, learned: its decision, finished. Applied as the member
                // applied it, with versions tracked or not as when it was prepared: boot records
                // of incarnation 0 set that mode around it if it differs from the current one.
                Some(OwnPending { record: t, tracked: prepared_tracked, .. }) => {
                    let switch = prepared_tracked.filter(|&then| then != self.tracked);
                    if let Some(then) = switch {
                        out.push(boot_record(then));
                    }
                    out.push(Record::Decided(t));
                    out.push(Record::Forgotten { txn });
                    if switch.is_some() {
                        out.push(boot_record(self.tracked));
                    }
                }
                None => {
                    self.member_decided.remove(&txn);
                    out.push(Record::Committed { txn })
                }
            },
            (Place::AfterSnapshot, Record::Aborted { txn }) => {
                if self.own_pending.remove(&txn).is_none() {
                    out.push(Record::Aborted { txn });
                }
            }
            (Place::AfterSnapshot, Record::Decided(t)) => {
                if t.txn.coordinator == self.me {
                    return Err(out_of_place("a member decided a transaction of this node's"));
                }
                // The member's decision is a commit this node learned, as a participant does.
                let txn = t.txn;
                out.push(Record::Prepared(t));
                out.push(Record::Committed { txn });
            }
            // The member's coordinator is done with it: finished, so durable at every member. One
            // it had not applied yet is applied here.
            (Place::AfterSnapshot, Record::Forgotten { txn }) => {
                if self.member_decided.remove(&txn) {
                    out.push(Record::Committed { txn });
                }
            }
            (Place::Start, _) => unreachable!("the place is set above"),
        }
        Ok(())
    }

    /// The stream ended: returns the incarnation the receiver's log must name (at least), or
    /// why the state cannot be taken.
    pub fn finish(&self) -> Result<u64, AdoptError> {
        if self.place == Place::InSnapshot {
            return Err(AdoptError::EndsInsideSnapshot);
        }
        if let Some(&txn) = self.own_pending.keys().next() {
            return Err(AdoptError::OwnTransactionInDoubt { txn });
        }
        if let Some(joining) = self.joining
            && self.epoch < joining
        {
            return Err(AdoptError::ShortOfTheJoin { epoch: joining, reached: self.epoch });
        }
        Ok(self.incarnation_floor)
    }

    /// Adopts a whole log at once (the simulator's catch-up, and tests): the records the
    /// receiver's log is made of, ending with the boot record that keeps its incarnation from
    /// going back, as [`Adoption::adopt`] record by record and [`Adoption::finish`] make them.
    pub fn adopt_all(mut self, records: impl IntoIterator<Item = Record>) -> Result<Vec<Record>, AdoptError> {
        let mut out = Vec::new();
        for record in records {
            self.adopt(record, &mut out)?;
        }
        if self.is_empty() {
            out.extend(empty_snapshot());
        }
        let incarnation_floor = self.finish()?;
        out.push(Record::BootTracked { incarnation: incarnation_floor });
        Ok(out)
    }

    /// Whether nothing has been read yet.
    pub fn is_empty(&self) -> bool {
        self.place == Place::Start
    }

    fn adopt_header(&mut self, header: SnapshotHeader) -> Result<SnapshotHeader, AdoptError> {
        let SnapshotHeader { incarnation: _, completions, prepared, decisions } = header;
        let kept = self.keep_members(prepared, false)?;
        for DecisionState { decision, applied } in decisions {
            self.refuse_own_decision(&decision, "snapshot-begin")?;
            // An applied decision is in the entries and the completions already.
            if !applied {
                self.unapplied.push(decision);
            }
        }
        Ok(SnapshotHeader { incarnation: 0, completions, prepared: kept, decisions: Vec::new() })
    }

    /// As [`Adoption::adopt_header`], for a snapshot of a build with epochs: the member's own
    /// decisions not yet applied are commits this node holds until they are visible or finished.
    fn adopt_header_in_epoch(&mut self, header: SnapshotHeaderInEpoch) -> Result<SnapshotHeaderInEpoch, AdoptError> {
        let SnapshotHeaderInEpoch {
            incarnation: _,
            epoch,
            completions,
            prepared,
            commits_held,
            decisions,
            commit_memory,
        } = header;
        let kept = self.keep_members(prepared, false)?;
        // A commit the member held as of the snapshot is one it learned: of this node's own, it
        // is held as a later `CommitLearned` holds it. (Taken as in doubt, an install that did
        // not name it dropped it: a node caught up without its own commit, which the client had
        // been told of; swarm seed 10315 with long absences about every second.)
        let mut held = self.keep_members(commits_held, !self.held_own_in_doubt)?;
        for DecisionState { decision, applied } in decisions {
            self.refuse_own_decision(&decision, "snapshot-begin-in-epoch")?;
            // An applied decision is in the entries and the completions already.
            if !applied {
                self.member_decided.insert(decision.txn);
                held.push(decision);
            }
        }
        let commit_memory = commit_memory.into_iter().filter(|txn| txn.coordinator != self.me).collect();
        Ok(SnapshotHeaderInEpoch {
            incarnation: 0,
            epoch,
            completions,
            prepared: kept,
            commits_held: held,
            decisions: Vec::new(),
            commit_memory,
        })
    }

    /// The transactions of `txns` that are other nodes', kept; this node's own are pending,
    /// their commit `held` by the member or not.
    fn keep_members(&mut self, txns: Vec<TxnRecord>, held: bool) -> Result<Vec<TxnRecord>, AdoptError> {
        let mut kept = Vec::with_capacity(txns.len());
        for t in txns {
            if t.txn.coordinator == self.me {
                self.hold_own(t, None, held)?;
            } else {
                kept.push(t);
            }
        }
        Ok(kept)
    }

    /// A member's snapshot never holds a decision of this node's: only this node decides its own.
    fn refuse_own_decision(&self, decision: &TxnRecord, kind: &'static str) -> Result<(), AdoptError> {
        if decision.txn.coordinator != self.me {
            return Ok(());
        }
        let index = self.index - 1;
        Err(AdoptError::OutOfPlace { index, kind, why: "a member's snapshot holds a decision of this node's" })
    }

    fn hold_own(&mut self, t: TxnRecord, tracked: Option<bool>, held: bool) -> Result<(), AdoptError> {
        if self.own_pending.len() >= OWN_PENDING_MAX {
            return Err(AdoptError::TooManyOwnPending);
        }
        self.incarnation_floor = self.incarnation_floor.max(t.txn.incarnation);
        self.own_pending.insert(t.txn, OwnPending { record: t, tracked, held });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::configuration::{Configuration, Value};
    use crate::ids::NodeSet;

    fn installed(epoch: u64) -> Record {
        let configuration = Configuration { epoch: Epoch(epoch), members: NodeSet::first(3) };
        Record::Installed(Box::new(Value {
            configuration,
            settlement: Default::default(),
            joining: Default::default(),
        }))
    }

    fn epochs_installed(records: &[Record]) -> Vec<u64> {
        let epoch = |r: &Record| match r {
            Record::Installed(v) => Some(v.configuration.epoch.0),
            _ => None,
        };
        records.iter().filter_map(epoch).collect()
    }

    /// The stream is taken through the `Installed` record of the configuration that adds the
    /// node and not past it; a log that does not reach it is refused; the incarnation starts
    /// above every earlier life's.
    #[test]
    fn joining_takes_the_log_through_the_configuration_that_adds_the_node() {
        let me = NodeId(2);
        let member_log = || vec![installed(2), Record::Boot { incarnation: 7 }, installed(3), installed(4)];
        let adopted = Adoption::new(me, 5).joining(Epoch(3)).adopt_all(member_log()).unwrap();
        assert_eq!(epochs_installed(&adopted), vec![2, 3], "nothing after the install that adds it");
        assert_eq!(adopted.last(), Some(&Record::BootTracked { incarnation: 3 << 32 }));
        let short = Adoption::new(me, 0).joining(Epoch(5)).adopt_all(member_log());
        assert_eq!(short, Err(AdoptError::ShortOfTheJoin { epoch: Epoch(5), reached: Epoch(4) }));
        // Without `joining`, the whole stream is taken (a transfer that is no join).
        assert_eq!(epochs_installed(&Adoption::new(me, 0).adopt_all(member_log()).unwrap()), vec![2, 3, 4]);
    }

    /// A state taken through the configuration that adds the node must come from a member of
    /// it, or from a node of the configuration before that installed it; from any other node
    /// (which took no part in an epoch, so may lack its commits) it is refused.
    #[test]
    fn the_source_was_a_member_of_the_add_or_of_the_epoch_before() {
        let installed_of = |epoch: u64, members: &[u8]| {
            let members = NodeSet::from_ids(members.iter().map(|&m| NodeId(m))).unwrap();
            Record::Installed(Box::new(Value {
                configuration: Configuration { epoch: Epoch(epoch), members },
                settlement: Default::default(),
                joining: Default::default(),
            }))
        };
        let me = NodeId(0);
        // n1 was a member of epoch 2 and installed epoch 3, which swapped it for this node.
        let swapped_out = vec![installed_of(2, &[1, 2]), installed_of(3, &[0, 2])];
        let adopted = Adoption::new(me, 0).joining(Epoch(3)).streamed_by(NodeId(1)).adopt_all(swapped_out.clone());
        assert_eq!(adopted.map(|a| epochs_installed(&a)), Ok(vec![2, 3]));
        // n3 was a member of neither.
        let outside = vec![installed_of(2, &[1, 2]), installed_of(3, &[0, 2])];
        let refused = Adoption::new(me, 0).joining(Epoch(3)).streamed_by(NodeId(3)).adopt_all(outside);
        assert_eq!(refused, Err(AdoptError::SourceWasNoMember { node: NodeId(3), epoch: Epoch(3) }));
        // A member of the add itself, as always.
        let member = Adoption::new(me, 0).joining(Epoch(3)).streamed_by(NodeId(2)).adopt_all(swapped_out);
        assert!(member.is_ok());
        // A snapshot past the add, of a configuration its source was outside of: the source
        // took no part in that epoch and may lack its commits (review finding F1: a node
        // removed after the add, outside since, streamed its later snapshot).
        let snapshot_of = |epoch: u64, members: &[u8], before: &[u8]| {
            let members = NodeSet::from_ids(members.iter().map(|&m| NodeId(m))).unwrap();
            let Record::Installed(value) = installed_of(epoch - 1, before) else { unreachable!() };
            let configuration = SnapshotConfiguration {
                configuration: Configuration { epoch: Epoch(epoch), members },
                installed: vec![*value],
                agreement: None,
            };
            vec![
                Record::SnapshotBegin(Box::default()),
                Record::SnapshotConfiguration(Box::new(configuration)),
                Record::SnapshotEnd { entries: 0 },
            ]
        };
        let outside_past = Adoption::new(me, 0).joining(Epoch(3)).streamed_by(NodeId(1)).adopt_all(snapshot_of(
            7,
            &[0, 2, 3],
            &[0, 2, 3],
        ));
        assert_eq!(outside_past, Err(AdoptError::SourceWasNoMember { node: NodeId(1), epoch: Epoch(7) }));
        let member_past = Adoption::new(me, 0).joining(Epoch(3)).streamed_by(NodeId(2)).adopt_all(snapshot_of(
            7,
            &[0, 2, 3],
            &[0, 2],
        ));
        assert!(member_past.is_ok());
        // A snapshot of the add's own epoch, from a node of the epoch before (its kept values
        // name that configuration), is taken; from a node of neither, refused.
        let at_add = |source: u8| {
            Adoption::new(me, 0).joining(Epoch(3)).streamed_by(NodeId(source)).adopt_all(snapshot_of(
                3,
                &[0, 2],
                &[1, 2],
            ))
        };
        assert!(at_add(1).is_ok());
        assert_eq!(at_add(3), Err(AdoptError::SourceWasNoMember { node: NodeId(3), epoch: Epoch(3) }));
    }

    /// The member's parts in vote instances are its own: a transfer takes none, from its
    /// snapshot or after it, and refuses a snapshot's states outside a snapshot.
    #[test]
    fn a_transfer_takes_none_of_the_members_vote_states() {
        use crate::votes::{VoteAcceptor, VoteBallot, VoteInstance, VoteValue};
        let instance = VoteInstance {
            epoch: Epoch(1),
            txn: TxnId { coordinator: NodeId(1), incarnation: 1, number: 1 },
            owner: NodeId(1),
        };
        let ballot = VoteBallot::owners(NodeId(1), 1);
        let acceptor = VoteAcceptor { promised: Some(ballot), accepted: Some((ballot, VoteValue::Yes)) };
        let log = vec![
            Record::SnapshotBeginInEpoch(Box::default()),
            Record::SnapshotVoteAcceptors(vec![(instance, acceptor)]),
            Record::SnapshotVersionedEntries(Vec::new()),
            Record::SnapshotEnd { entries: 0 },
            Record::VoteAcceptor { instance, acceptor },
        ];
        let adopted = Adoption::new(NodeId(0), 0).adopt_all(log).unwrap();
        let vote_states = |r: &Record| matches!(r, Record::SnapshotVoteAcceptors(_) | Record::VoteAcceptor { .. });
        assert!(!adopted.iter().any(vote_states), "{adopted:?}");
        assert!(adopted.iter().any(|r| matches!(r, Record::SnapshotEnd { .. })));
        let stray = vec![
            Record::SnapshotBeginInEpoch(Box::default()),
            Record::SnapshotEnd { entries: 0 },
            Record::SnapshotVoteAcceptors(Vec::new()),
        ];
        assert!(matches!(Adoption::new(NodeId(0), 0).adopt_all(stray), Err(AdoptError::OutOfPlace { index: 2, .. })));
    }

    /// A commit of this node's own that the member's snapshot holds (learned, not yet applied)
    /// is this node's decision once the member's next install ends the epoch, named by its
    /// settlement or not; an own share the snapshot holds in doubt is not (swarm seed 10315 with
    /// long absences about every second: the held commit was taken as in doubt and dropped,
    /// and the node caught up without a write a client had been told committed).
    #[test]
    fn an_own_commit_held_in_the_members_snapshot_is_decided_at_its_install() {
        let own = |number: u64, key: &str| TxnRecord {
            txn: TxnId { coordinator: NodeId(0), incarnation: 1, number },
            request: crate::RequestId { client: crate::ClientId(7), seq: number },
            ops: vec![crate::TxnOp::Put { key: key.as_bytes().to_vec(), value: b"v".to_vec() }].into(),
            participants: NodeSet::first(3),
        };
        let (held, in_doubt) = (own(1, "held"), own(2, "in-doubt"));
        let header =
            SnapshotHeaderInEpoch { commits_held: vec![held.clone()], prepared: vec![in_doubt], ..Default::default() };
        let log = vec![
            Record::SnapshotBeginInEpoch(Box::new(header)),
            Record::SnapshotVersionedEntries(Vec::new()),
            Record::SnapshotEnd { entries: 0 },
            installed(2),
        ];
        let adopted = Adoption::new(NodeId(0), 0).adopt_all(log).unwrap();
        let decided: Vec<TxnId> = adopted
            .iter()
            .filter_map(|r| match r {
                Record::Decided(t) => Some(t.txn),
                _ => None,
            })
            .collect();
        assert_eq!(decided, vec![held.txn], "{adopted:?}");
    }

    /// The finished marks a snapshot carries are taken, but those about this node's own
    /// transactions, as after the snapshot.
    #[test]
    fn a_transfer_takes_the_snapshots_marks_of_other_coordinators() {
        let mark = |coordinator: u8| TxnId { coordinator: NodeId(coordinator), incarnation: 1, number: 4 };
        let log = vec![
            Record::SnapshotBeginInEpoch(Box::default()),
            Record::SnapshotFinishedMarks(vec![mark(0), mark(2)]),
            Record::SnapshotVersionedEntries(Vec::new()),
            Record::SnapshotEnd { entries: 0 },
        ];
        let adopted = Adoption::new(NodeId(0), 0).adopt_all(log).unwrap();
        let marks: Vec<_> = adopted
            .iter()
            .filter_map(|r| match r {
                Record::SnapshotFinishedMarks(m) => Some(m.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(marks, vec![vec![mark(2)]]);
    }

    /// A member's snapshot past the configuration that adds the node is taken: the node takes
    /// the state through the snapshot's configuration (and not past it), a member of it if it
    /// has the node, else a node outside it.
    #[test]
    fn a_snapshot_past_the_add_is_taken_through_its_configuration() {
        let member_log = |members: NodeSet| {
            let configuration = SnapshotConfiguration {
                configuration: Configuration { epoch: Epoch(6), members },
                installed: Vec::new(),
                agreement: None,
            };
            vec![
                Record::SnapshotBegin(Box::default()),
                Record::SnapshotConfiguration(Box::new(configuration)),
                Record::SnapshotEnd { entries: 0 },
                Record::Boot { incarnation: 7 },
                installed(7),
            ]
        };
        let kept = Adoption::new(NodeId(2), 5).joining(Epoch(4)).adopt_all(member_log(NodeSet::first(3))).unwrap();
        assert_eq!(epochs_installed(&kept), Vec::<u64>::new(), "through epoch 6, not into 7");
        assert_eq!(kept.last(), Some(&Record::BootTracked { incarnation: 6 << 32 }));
        let removed = Adoption::new(NodeId(2), 5).joining(Epoch(4)).adopt_all(member_log(NodeSet::first(2))).unwrap();
        let configuration = removed.iter().find_map(|r| match r {
            Record::SnapshotConfiguration(c) => Some(c.configuration),
            _ => None,
        });
        assert_eq!(configuration.map(|c| (c.epoch, c.contains(NodeId(2)))), Some((Epoch(6), false)), "outside epoch 6");
        assert_eq!(epochs_installed(&removed), Vec::<u64>::new(), "through epoch 6, not into 7");
        assert_eq!(removed.last(), Some(&Record::BootTracked { incarnation: 6 << 32 }));
    }
}

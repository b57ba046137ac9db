//! The lasting faults, drawn only for a protocol that tolerates a minority of members down
//! (`Params::minority_faults`): members crashed for good, long absences (back with the log
//! intact, with the data dir lost, or with the last synced record damaged), and lasting
//! partitions that cut a minority off, both ways or one way. Together they never hold more than
//! f = ⌊(N−1)/2⌋ members away at once, so a majority is always left to keep working; the brief
//! faults (crashes, partitions, pauses) come and go on top of them.
//!
//! Here too is what the liveness-during-faults check judges against: from which moment which
//! members form the majority side — up, not frozen, and connected both ways to each other, at
//! least ⌊N/2⌋ + 1 of them.

use super::{Event, World};
use crate::check::liveness::SideChange;
use crate::disk::CrashDamage;
use crate::params::{LASTING_FAULT_MAX, LASTING_FAULT_MIN};
use crate::random::{around, between, chance, index, range, unit};
use crate::trace::Tag;
use dkv_core::{Configuration, Epoch, Node};
use std::time::Duration;

/// A lasting partition: a minority cut off from the rest, or a single link cut.
pub(crate) enum Cut {
    Minority {
        /// The members cut off.
        minority: Vec<bool>,
        way: Way,
    },
    /// `a` cannot send to `b`, nor `b` to `a` unless one way (`Faults::lasting_link_cut`). Every
    /// other link works: each end still reaches the third node, which hears both, so the
    /// cluster drops one end and the third node may add it back, again and again while the
    /// cut lasts. The protocol's backoff keeps that from thrashing (docs/protocol.md §7.6).
    Link { a: usize, b: usize, one_way: bool },
}

/// Which messages a lasting partition stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Way {
    Both,
    /// The minority hears the rest but cannot answer.
    MinorityCannotSend,
    /// The minority can send but hears nothing.
    MinorityCannotHear,
}

impl Cut {
    /// Whether this cut stops a message from `from` to `to`.
    fn blocks(&self, from: usize, to: usize) -> bool {
        match self {
            Cut::Minority { minority, way } => {
                if minority[from] == minority[to] {
                    return false;
                }
                match way {
                    Way::Both => true,
                    Way::MinorityCannotSend => minority[from],
                    Way::MinorityCannotHear => minority[to],
                }
            }
            &Cut::Link { a, b, one_way } => (from, to) == (a, b) || (!one_way && (from, to) == (b, a)),
        }
    }

    /// Whether this cut holds member `i` away, for the count of members lost: the cut-off
    /// minority, or the higher-numbered end of a cut link (the end the majority side leaves
    /// out, see [`majority_side`]; the cluster may drop either).
    fn holds_away(&self, i: usize) -> bool {
        match self {
            Cut::Minority { minority, .. } => minority[i],
            &Cut::Link { a, b, .. } => i == a.max(b),
        }
    }
}

impl World {
    /// Schedules the permanent crashes and the first long absence and lasting partition.
    pub(super) fn schedule_lasting_faults(&mut self) {
        // Never n0: the end checkers judge the final state on it.
        let mut candidates: Vec<usize> = (1..self.nodes.len()).collect();
        for _ in 0..self.faults.permanent_crashes.min(self.params.minority_max()) {
            let node = candidates.swap_remove(index(&mut self.lasting, candidates.len()));
            self.nodes[node].doomed = true;
            let at = between(&mut self.lasting, Duration::from_millis(100), Duration::from_secs(3));
            self.schedule(at, Event::PermanentCrash { node });
        }
        self.note_members_lost();
        if let Some(every) = self.faults.absence_every {
            let at = around(&mut self.lasting, every);
            self.schedule(at, Event::AbsenceStart);
        }
        if let Some(every) = self.faults.lasting_partition_every {
            let at = around(&mut self.lasting, every);
            self.schedule(at, Event::LastingPartitionStart);
        }
    }

    /// Member `i` crashes, never to be restarted (it may be down already: a brief crash
    /// beforehand was not followed by a restart).
    pub(super) fn permanent_crash(&mut self, i: usize) {
        if !self.nodes[i].doomed || self.nodes[i].gone {
            return; // suppressed, or crashed at the heal already
        }
        if !self.fault_allowed(|_| format!("n{i} crashes for good")) {
            // Suppressed (by the shrinker): the member is like any other.
            self.nodes[i].doomed = false;
            return self.restart(i);
        }
        self.nodes[i].gone = true;
        self.stats.permanent_crashes += 1;
        if self.nodes[i].node.is_none() {
            return; // down already since a brief crash, and not restarted since
        }
        let survivors = range(&mut self.lasting, 0, self.nodes[i].disk.pending.len() as u64) as usize;
        self.trace.event(self.now, Tag::PermanentCrash, &[i as u64], || format!("n{i} crashes for good"));
        self.halt(i, survivors, &CrashDamage::default());
    }

    /// Members held away by lasting faults: crashed for good (or about to be), absent, back
    /// from an absence without their state and not caught up yet, cut off.
    fn members_lost(&self) -> Vec<bool> {
        (0..self.nodes.len())
            .map(|i| {
                let n = &self.nodes[i];
                n.doomed
                    || n.absent
                    || n.lacks_state
                    || n.held_out
                    || self.cut.as_ref().is_some_and(|cut| cut.holds_away(i))
            })
            .collect()
    }

    /// How many more members lasting faults may hold away.
    fn room_to_lose(&self) -> usize {
        let lost = self.members_lost().iter().filter(|l| **l).count();
        self.params.minority_max().saturating_sub(lost)
    }

    fn note_members_lost(&mut self) {
        let lost = self.members_lost().iter().filter(|l| **l).count() as u64;
        self.stats.members_lost_max = self.stats.members_lost_max.max(lost);
    }

    /// A member that is up and held away by nothing else crashes and stays down for
    /// `LASTING_FAULT_MIN..LASTING_FAULT_MAX`; schedules the next absence.
    pub(super) fn absence_start(&mut self) {
        if self.healed_at.is_some() {
            return;
        }
        if let Some(every) = self.faults.absence_every {
            let at = self.now + around(&mut self.lasting, every);
            self.schedule(at, Event::AbsenceStart);
        }
        let lost = self.members_lost();
        let candidates: Vec<usize> =
            (0..self.nodes.len()).filter(|&i| !lost[i] && self.nodes[i].node.is_some()).collect();
        if candidates.is_empty() || self.room_to_lose() == 0 {
            return;
        }
        let i = candidates[index(&mut self.lasting, candidates.len())];
        let length = between(&mut self.lasting, LASTING_FAULT_MIN, LASTING_FAULT_MAX);
        let data_lost = chance(&mut self.lasting, self.faults.absence_data_lost);
        let tail = (!data_lost && chance(&mut self.lasting, self.faults.absence_tail_damaged))
            .then(|| unit(&mut self.lasting));
        let survivors = range(&mut self.lasting, 0, self.nodes[i].disk.pending.len() as u64) as usize;
        if !self.fault_allowed(|_| format!("n{i} goes away for {:.3}s", length as f64 / 1e9)) {
            return;
        }
        let what = if data_lost {
            ", and its data dir is lost"
        } else if tail.is_some() {
            ", and a bit flips in its last synced record"
        } else {
            ""
        };
        self.trace.event(
            self.now,
            Tag::AbsenceStart,
            &[i as u64, length, u64::from(data_lost), u64::from(tail.is_some())],
            || format!("n{i} crashes and stays away for {:.3}s{what}", length as f64 / 1e9),
        );
        self.halt(i, survivors, &CrashDamage::default());
        if data_lost {
            self.nodes[i].disk.lose_everything();
            self.nodes[i].cut_synced = false;
            self.nodes[i].data_lost = true;
            self.nodes[i].init_on_restart = chance(&mut self.lasting, self.faults.absence_init_restart);
            self.nodes[i].lacks_state = true;
            self.exactly_once.forget_node(i);
            self.stats.data_dirs_lost += 1;
        }
        if let Some(bit) = tail {
            if self.nodes[i].disk.damage_last_synced(bit) {
                self.stats.tails_damaged += 1;
                self.nodes[i].lacks_state = true;
                self.nodes[i].crash_in_start = chance(&mut self.starts, self.faults.start_crash);
            }
        }
        self.nodes[i].absent = true;
        self.stats.absences += 1;
        self.note_members_lost();
        self.schedule(self.now + length, Event::AbsenceEnd { node: i });
    }

    /// The absent member `i` comes back (unless the heal brought it back already).
    pub(super) fn absence_end(&mut self, i: usize) {
        if !self.nodes[i].absent {
            return;
        }
        self.nodes[i].absent = false;
        self.trace.event(self.now, Tag::AbsenceEnd, &[i as u64], || format!("n{i} comes back"));
        self.start_node(i);
    }

    /// Cuts off one to as many members as there is room for, both ways or one way, for
    /// `LASTING_FAULT_MIN..LASTING_FAULT_MAX`; schedules the next lasting partition.
    pub(super) fn lasting_partition_start(&mut self) {
        if self.healed_at.is_some() {
            return;
        }
        if let Some(every) = self.faults.lasting_partition_every {
            let at = self.now + around(&mut self.lasting, every);
            self.schedule(at, Event::LastingPartitionStart);
        }
        let room = self.room_to_lose();
        if self.cut.is_some() || room == 0 {
            return;
        }
        let lost = self.members_lost();
        let mut candidates: Vec<usize> = (0..self.nodes.len()).filter(|&i| !lost[i]).collect();
        let size = range(&mut self.lasting, 1, room as u64) as usize;
        let mut minority = vec![false; self.nodes.len()];
        for _ in 0..size.min(candidates.len()) {
            minority[candidates.swap_remove(index(&mut self.lasting, candidates.len()))] = true;
        }
        let way = if chance(&mut self.lasting, 0.7) {
            Way::Both
        } else if chance(&mut self.lasting, 0.5) {
            Way::MinorityCannotSend
        } else {
            Way::MinorityCannotHear
        };
        let length = between(&mut self.lasting, LASTING_FAULT_MIN, LASTING_FAULT_MAX);
        if let Some((a, b, one_way)) = self.draw_lasting_link_cut(&lost) {
            return self.cut_link_for_long(a, b, one_way, length);
        }
        let members: Vec<usize> = (0..self.nodes.len()).filter(|&i| minority[i]).collect();
        if !self.fault_allowed(|_| format!("{members:?} are cut off for long ({way:?})")) {
            return;
        }
        let words = [members.len() as u64, way as u64, length];
        self.trace.event(self.now, Tag::LastingPartitionStart, &words, || {
            format!("{members:?} are cut off from the rest ({way:?}) for {:.3}s", length as f64 / 1e9)
        });
        self.cut = Some(Cut::Minority { minority, way });
        self.stats.lasting_partitions += 1;
        self.note_members_lost();
        self.schedule(self.now + length, Event::LastingPartitionEnd);
    }

    /// Whether the lasting partition starting now cuts a single link instead
    /// (`Faults::lasting_link_cut`; clusters of three nodes or more), and which: two members not
    /// held away by anything else, and whether only `a` cannot send to `b`. Drawn from a stream
    /// of its own, after the minority's draws: a run that draws no lasting link cut keeps every
    /// other draw, so the trajectory it had before they existed.
    fn draw_lasting_link_cut(&mut self, lost: &[bool]) -> Option<(usize, usize, bool)> {
        let n = self.nodes.len();
        if n < 3 || !chance(&mut self.lasting_links, self.faults.lasting_link_cut) {
            return None;
        }
        let mut candidates: Vec<usize> = (0..n).filter(|&i| !lost[i]).collect();
        if candidates.len() < 2 {
            return None;
        }
        let a = candidates.swap_remove(index(&mut self.lasting_links, candidates.len()));
        let b = candidates[index(&mut self.lasting_links, candidates.len())];
        Some((a, b, chance(&mut self.lasting_links, 0.3)))
    }

    /// Cuts the link between members `a` and `b` (only `a` to `b` if `one_way`) for `length`.
    fn cut_link_for_long(&mut self, a: usize, b: usize, one_way: bool, length: u64) {
        if !self.fault_allowed(|_| format!("the link between n{a} and n{b} is cut for long")) {
            return;
        }
        self.trace.event(self.now, Tag::LastingLinkCut, &[a as u64, b as u64, u64::from(one_way), length], || {
            let how = if one_way { format!("n{a} cannot send to n{b}") } else { "both ways".into() };
            format!(
                "the link between n{a} and n{b} is cut ({how}) for {:.3}s; every other link works",
                length as f64 / 1e9
            )
        });
        self.cut = Some(Cut::Link { a, b, one_way });
        self.stats.lasting_partitions += 1;
        self.stats.lasting_link_cuts += 1;
        self.note_members_lost();
        self.schedule(self.now + length, Event::LastingPartitionEnd);
    }

    /// A node is in `configuration`: if it is the first seen anywhere in its epoch, it was just
    /// installed. It is kept for the `thrash` checker, with its time, and a node it adds may be
    /// cut off one way within half a second (`Faults::added_cut`).
    pub(super) fn on_configuration_seen(&mut self, configuration: Configuration) {
        if !self.configurations.contains_key(&configuration.epoch) {
            self.configurations.insert(configuration.epoch, (configuration.members, self.now));
            self.maybe_cut_added(configuration);
        }
    }

    fn maybe_cut_added(&mut self, configuration: Configuration) {
        if !self.params.minority_faults || self.faults.added_cut <= 0.0 || self.healed_at.is_some() {
            return;
        }
        let Some(before) = configuration.epoch.0.checked_sub(1).and_then(|e| self.configurations.get(&Epoch(e))) else {
            return;
        };
        let Some(added) = configuration.members.difference(before.0).iter().next() else { return };
        if chance(&mut self.adds, self.faults.added_cut) {
            let at = self.now + between(&mut self.adds, Duration::ZERO, Duration::from_millis(500));
            self.schedule(at, Event::CutAdded { node: usize::from(added.0) });
        }
    }

    /// Node `i`, just added, can send but hears nothing for `LASTING_FAULT_MIN..LASTING_FAULT_MAX`,
    /// if no lasting partition is on and a member more may be lost.
    pub(super) fn cut_added(&mut self, i: usize) {
        let length = between(&mut self.adds, LASTING_FAULT_MIN, LASTING_FAULT_MAX);
        if self.healed_at.is_some() || self.cut.is_some() || self.room_to_lose() == 0 || self.members_lost()[i] {
            return;
        }
        if !self.fault_allowed(|_| format!("n{i}, just added, is cut off one way for long")) {
            return;
        }
        let way = Way::MinorityCannotHear;
        let words = [1, way as u64, length];
        self.trace.event(self.now, Tag::LastingPartitionStart, &words, || {
            format!("[{i}] are cut off from the rest ({way:?}) for {:.3}s, just after n{i}'s add", length as f64 / 1e9)
        });
        let mut minority = vec![false; self.nodes.len()];
        minority[i] = true;
        self.cut = Some(Cut::Minority { minority, way });
        self.nodes[i].held_out = true;
        self.stats.lasting_partitions += 1;
        self.stats.added_cuts += 1;
        self.note_members_lost();
        self.schedule(self.now + length, Event::LastingPartitionEnd);
    }

    pub(super) fn lasting_partition_end(&mut self) {
        // A node cut off just after its add that is still a member of the latest configuration,
        // with its state (it caught up before the cut, and the others could not remove it
        // meanwhile), is held away no more. Its own view is not enough: cut off, it may not
        // know it was removed (seen in the simulator: seed 116333 lost a third member then).
        let latest = self.configurations.keys().next_back().copied();
        for n in &mut self.nodes {
            let current =
                |node: &Node| Some(node.configuration().epoch) == latest && node.is_member() && !node.stands_outside();
            if n.held_out && n.node.as_ref().is_some_and(current) {
                n.held_out = false;
            }
        }
        if self.cut.take().is_some() {
            self.trace.event(self.now, Tag::LastingPartitionEnd, &[], || "the lasting partition ends".into());
        }
    }

    /// At the heal: the lasting partition ends and absent members come back (the heal restarts
    /// them); members crashed for good stay down, and those whose permanent crash was still to
    /// come crash now (the heal ends the faults that come and go, not the lasting loss of a
    /// member).
    /// (While the first start is still under way, a permanent crash still to come waits for
    /// its end: bootstrapping needs every node once.)
    pub(super) fn end_lasting_faults(&mut self) {
        self.lasting_partition_end();
        let first_start = self.first_start_under_way();
        for i in 0..self.nodes.len() {
            self.nodes[i].absent = false;
            if first_start && self.nodes[i].doomed && !self.nodes[i].gone {
                self.schedule(self.now + super::FIRST_START_RETRY_NANOS, Event::PermanentCrash { node: i });
            } else {
                self.permanent_crash(i);
            }
        }
    }

    /// Whether a message from node `a` reaches node `b` (no partition, brief or lasting, stops
    /// it).
    pub(super) fn reaches(&self, a: usize, b: usize) -> bool {
        !self.blocked[a][b] && !self.cut.as_ref().is_some_and(|cut| cut.blocks(a, b))
    }

    /// Writes down the majority side if it changed (runs with `Params::minority_faults`).
    pub(super) fn note_sides(&mut self) {
        if !self.params.minority_faults {
            return;
        }
        // A node back without its state takes part in nothing until it has caught up.
        let live: Vec<bool> =
            self.nodes.iter().map(|n| n.node.is_some() && !n.paused && !n.lacks_state && !n.held_out).collect();
        let side = majority_side(&live, |a, b| self.reaches(a, b));
        if self.sides.last().is_none_or(|last| last.side != side) {
            self.sides.push(SideChange { at: self.now, side });
        }
    }
}

/// The majority side of nodes that are `live` (up, not frozen) or not, where `reaches(a, b)`
/// says whether a message from `a` gets to `b`: a bit per node for the live nodes connected
/// both ways to each other, if they are a majority of all the nodes; 0 if there is none. Both
/// kinds of partition split the nodes in two, so "connected both ways" sorts the nodes into
/// groups (by their sides of each partition), and at most one group is a majority.
///
/// A single link cut (`Faults::link_cut`, `Faults::lasting_link_cut`) does not split the
/// nodes: with the link between `a` and `b` cut inside the majority group, that group without
/// `a` and that group without `b` are both connected majorities (if either is one), and this
/// takes the one it meets first, the group without the higher-numbered end. Which end the
/// cluster drops is its own choice (each end suspects the other, docs/protocol.md §7.3), and
/// under a lasting cut it may drop the lower-numbered end, which this side counts in. A request
/// sent there is still judged: it must complete within the bound all the same, as the end
/// answers "not a member" once it learns of the change, or "not serving" while it cannot, and
/// the client fails over to the next node. (Sweeps of 20,000 seeds with every lasting partition
/// a single link cut, in three- and five-node clusters, pass this.)
fn majority_side(live: &[bool], reaches: impl Fn(usize, usize) -> bool) -> u64 {
    let n = live.len();
    let live: Vec<usize> = (0..n).filter(|&i| live[i]).collect();
    let both_ways = |a: usize, b: usize| reaches(a, b) && reaches(b, a);
    for &i in &live {
        let group: Vec<usize> = live.iter().copied().filter(|&j| j == i || both_ways(i, j)).collect();
        let whole = group.iter().all(|&a| group.iter().all(|&b| a == b || both_ways(a, b)));
        if group.len() > n / 2 && whole {
            return group.iter().fold(0, |side, &j| side | 1 << j);
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(minority: &[usize], n: usize, way: Way) -> Cut {
        Cut::Minority { minority: (0..n).map(|i| minority.contains(&i)).collect(), way }
    }

    /// A lasting partition stops what its way says, between its sides only.
    #[test]
    fn a_cut_stops_messages_across_it_as_its_way_says() {
        let both = cut(&[2], 3, Way::Both);
        assert!(both.blocks(2, 0) && both.blocks(0, 2) && !both.blocks(0, 1));
        let mute = cut(&[2], 3, Way::MinorityCannotSend);
        assert!(mute.blocks(2, 0) && !mute.blocks(0, 2) && !mute.blocks(0, 1));
        let deaf = cut(&[2], 3, Way::MinorityCannotHear);
        assert!(!deaf.blocks(2, 0) && deaf.blocks(0, 2) && !deaf.blocks(1, 0));
        let link = Cut::Link { a: 2, b: 0, one_way: false };
        assert!(link.blocks(2, 0) && link.blocks(0, 2) && !link.blocks(0, 1) && !link.blocks(1, 2));
        let one_way = Cut::Link { a: 2, b: 0, one_way: true };
        assert!(one_way.blocks(2, 0) && !one_way.blocks(0, 2) && !one_way.blocks(1, 0));
        assert!(link.holds_away(2) && !link.holds_away(0) && !link.holds_away(1));
    }

    /// The majority side leaves out the members cut off either way, down or frozen; a split
    /// with no majority, or too few live members, leaves no side.
    #[test]
    fn the_majority_side_is_the_live_members_connected_both_ways() {
        let all_live = [true; 5];
        assert_eq!(majority_side(&all_live, |_, _| true), 0b11111);
        for way in [Way::Both, Way::MinorityCannotSend, Way::MinorityCannotHear] {
            let c = cut(&[1, 3], 5, way);
            assert_eq!(majority_side(&all_live, |a, b| !c.blocks(a, b)), 0b10101, "{way:?}");
        }
        // Two down, one of the rest cut off: two of five live and connected, no majority.
        let c = cut(&[0], 5, Way::Both);
        assert_eq!(majority_side(&[true, true, true, false, false], |a, b| !c.blocks(a, b)), 0);
        // An even split of four has no majority.
        let c = cut(&[0, 1], 4, Way::Both);
        assert_eq!(majority_side(&[true; 4], |a, b| !c.blocks(a, b)), 0);
        // A brief partition and a lasting one together: the side is on the majority's side of both.
        let (brief, lasting) = (cut(&[4], 5, Way::MinorityCannotHear), cut(&[0], 5, Way::Both));
        assert_eq!(majority_side(&all_live, |a, b| !brief.blocks(a, b) && !lasting.blocks(a, b)), 0b01110);
        // A single link cut, one way or both: of the two connected majorities, the one without
        // the higher-numbered end; with a lasting partition that leaves no majority without
        // one of the ends, none.
        let link = |from: usize, to: usize| move |a: usize, b: usize| (a, b) != (from, to);
        assert_eq!(majority_side(&[true; 3], link(2, 0)), 0b011);
        assert_eq!(majority_side(&all_live, link(1, 3)), 0b10111);
        let c = cut(&[4], 5, Way::Both);
        assert_eq!(majority_side(&all_live, |a, b| link(1, 3)(a, b) && !c.blocks(a, b)), 0b00111);
        let c = cut(&[3, 4], 5, Way::Both);
        assert_eq!(majority_side(&all_live, |a, b| link(0, 1)(a, b) && !c.blocks(a, b)), 0);
    }
}

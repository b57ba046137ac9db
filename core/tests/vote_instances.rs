//! Votes as consensus instances (`dkv_core::votes`, docs/protocol.md §8): every schedule of one
//! vote instance in a small cluster, explored exhaustively (depth first, every state once).
//!
//! The model: node 0 owns the instance and casts YES or NO at its own ballot, sending it to
//! every member at once while its own copy is still being logged; the other members accept,
//! and some can run recovery ballots, a bounded number per life, each at the next round
//! (promises from `copies` members, then the value `safe_value` allows, a YES only once the
//! owner promised). The epoch may be settled once, at any point, from the reports of any
//! `copies` members (`settled_value`; each reporter's freeze is its promise of a ballot above
//! every other). Messages stay in the network once sent: any can be delivered any number of
//! times, in any order, or never (loss, duplication, reordering). A member handles a request
//! and syncs what it wrote in one step, but for the owner's cast, whose copy is synced on its
//! own; a promise leaves only once its write is durable. A crash keeps the durable state only
//! and starts a new life, within a budget.
//!
//! In every reachable state it checks:
//! - *agreement*: at most one value has ever been chosen (by the counting rule, `counts`, over
//!   the acceptances ever durable), and a learner's `Tally` learns it;
//! - *a chosen YES is a share held*: whenever YES has been chosen, the owner's durable state
//!   holds a YES (its share is on its disk);
//! - *a ballot carries one value*: no two members ever hold different values at one ballot;
//! - *the settlement agrees*: nothing is chosen against the value settled, before or after,
//!   and a YES settled from the owner's report is one the owner holds;
//! - *recovery terminates*: no recovery proposes a YES without its owner's promise of one, and
//!   a recovery ballot above every other, with every member up and answering, chooses a value,
//!   and the value already chosen if there is one (until the epoch is settled).
//!
//! Each rule of the design has a planted flaw that breaks it, and the exploration finds a
//! schedule that shows it: the rules' own flaws need the `canary` feature (on in
//! `cargo test --workspace`); the driver's (a promise answered before it is durable, an own copy
//! counted before it is durable, ballots without the life, a settlement without the freeze)
//! are the model's and need nothing.

use dkv_core::NodeId;
use dkv_core::NodeSet;
use dkv_core::votes::{
    AcceptorAnswer, Flaws, Share, Tally, VoteAcceptor, VoteBallot, VoteValue, counts, safe_value, settled_value,
};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};

/// The exploration stops (and fails) past this many states rather than run for long.
const STATES_MAX: usize = 4_000_000;
/// The same for [`wider_bounds`], which is run by hand (16 bytes a state).
const WIDE_STATES_MAX: usize = 300_000_000;

/// A state's 128-bit fingerprint: the exploration keeps these, not the states (two states
/// sharing one, which would hide the second's successors, is a 2^-128 chance per pair).
fn fingerprint(state: &State) -> u128 {
    let mut low = DefaultHasher::new();
    state.hash(&mut low);
    let mut high = DefaultHasher::new();
    (0x5eed_u64, state).hash(&mut high);
    (u128::from(high.finish()) << 64) | u128::from(low.finish())
}

const OWNER: u8 = 0;

/// A message between members; it stays in the network once sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Message {
    /// Phase 2a: the owner's cast, or a recovery's proposal.
    Accept { to: u8, ballot: VoteBallot, value: VoteValue },
    /// Phase 1a.
    PromiseRequest { to: u8, ballot: VoteBallot },
    /// Phase 1b, sent once the promise is durable.
    Promise { to: u8, from: u8, ballot: VoteBallot, accepted: Option<(VoteBallot, VoteValue)> },
}

/// A recovery ballot under way at a member (lost in a crash).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Recovery {
    ballot: VoteBallot,
    promises: BTreeMap<u8, Option<(VoteBallot, VoteValue)>>,
    proposed: bool,
}

/// A member. It handles a request and syncs what it wrote in one step: a crash between the two
/// would lose a write that nothing had seen (a promise, an acceptance notice, wait for it), the
/// same as a crash before the request came. The owner's cast is the exception, and the point:
/// its vote leaves for the others while its own copy is still being written (`volatile`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Member {
    durable: VoteAcceptor,
    /// Differs from `durable` only at the owner, between its cast and the cast's sync.
    volatile: VoteAcceptor,
    life: u64,
    /// The owner cast in this life.
    cast: bool,
    recovery: Option<Recovery>,
    /// Recovery ballots started in this life.
    rounds_used: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct State {
    members: Vec<Member>,
    network: BTreeSet<Message>,
    /// Every acceptance that was ever durable: (ballot, value, member).
    held: BTreeSet<(VoteBallot, VoteValue, u8)>,
    crashes_left: u8,
    /// The epoch's settlement, if one was made: the value it gave the instance, and the members
    /// whose promises (reports) it was made from.
    settled: Option<(VoteValue, NodeSet)>,
    /// A recovery proposed a YES without its owner's promise of a YES: the owner, which holds
    /// none, will refuse it, and a recovery that always hears the owner last never ends.
    doomed_proposal: bool,
}

/// What the driver (the model) does wrong, if anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DriverFlaw {
    /// A promise leaves before its write is durable, and the member may crash before it is.
    PromiseBeforeDurable,
    /// The owner counts its own copy as held as soon as it casts, before its write is durable.
    OwnCopyBeforeDurable,
    /// Ballots leave out the life: a restarted node reuses its earlier life's ballots.
    BallotsWithoutLife,
    /// The members a settlement is made from report without promising its ballot: they go on
    /// accepting below it.
    SettleWithoutFreeze,
}

#[derive(Clone, Copy, Debug)]
struct Model {
    members: usize,
    copies: usize,
    crashes: u8,
    /// The members that may crash.
    crashable: NodeSet,
    /// The members 1..=recoverers (never the owner) may run recovery ballots.
    recoverers: usize,
    /// Recovery ballots each recoverer may start per life, each at the next round (giving up
    /// the one under way).
    rounds: u8,
    /// Whether the epoch may be settled (once, from the reports of any `copies` members).
    settlement: bool,
    flaws: Flaws,
    driver: Option<DriverFlaw>,
}

/// A step of the exploration's path: the event that led to it (none for the initial state), and
/// the successors of its state still to visit.
type Step = (Option<Event>, Vec<(Event, State)>);

/// One step of a schedule; only printed, in a violation's schedule.
#[derive(Clone, Copy, Debug)]
#[allow(dead_code)]
enum Event {
    Cast(VoteValue),
    Deliver(Message),
    /// The promise request delivered, the promise sent, and the member crashed before its
    /// write was durable (only with [`DriverFlaw::PromiseBeforeDurable`]).
    DeliverAndCrash(Message),
    SyncCast,
    Crash(u8),
    Recover(u8),
    Settle(NodeSet),
}

impl Model {
    fn new(members: usize, crashes: u8, crashable: NodeSet, recoverers: usize) -> Model {
        let copies = members / 2 + 1;
        Model {
            members,
            copies,
            crashes,
            crashable,
            recoverers,
            rounds: 1,
            settlement: false,
            flaws: Flaws::NONE,
            driver: None,
        }
    }

    fn initial(&self) -> State {
        let member = Member {
            durable: VoteAcceptor::default(),
            volatile: VoteAcceptor::default(),
            life: 1,
            cast: false,
            recovery: None,
            rounds_used: 0,
        };
        State {
            members: vec![member; self.members],
            network: BTreeSet::new(),
            held: BTreeSet::new(),
            crashes_left: self.crashes,
            settled: None,
            doomed_proposal: false,
        }
    }

    fn life(&self, life: u64) -> u64 {
        if self.driver == Some(DriverFlaw::BallotsWithoutLife) { 1 } else { life }
    }

    fn share(&self, state: &State, member: u8) -> Share {
        if member != OWNER {
            Share::NotOwner
        } else if matches!(state.members[usize::from(OWNER)].volatile.accepted, Some((_, VoteValue::Yes))) {
            Share::Held
        } else {
            Share::Lacking
        }
    }

    fn successors(&self, state: &State) -> Vec<(Event, State)> {
        let mut next = Vec::new();
        let owner = &state.members[usize::from(OWNER)];
        if !owner.cast && owner.volatile.may_cast(self.life(owner.life), self.flaws) {
            for value in [VoteValue::Yes, VoteValue::No] {
                next.push((Event::Cast(value), self.cast(state, value)));
            }
        }
        if owner.volatile != owner.durable {
            let mut after = state.clone();
            self.sync(&mut after, usize::from(OWNER));
            next.push((Event::SyncCast, after));
        }
        for message in &state.network {
            if let Some(after) = self.deliver(state, *message) {
                next.push((Event::Deliver(*message), after));
            }
            if let Message::PromiseRequest { to, .. } = message
                && self.driver == Some(DriverFlaw::PromiseBeforeDurable)
                && state.crashes_left > 0
                && self.crashable.contains(NodeId(*to))
                && let Some(mut after) = self.deliver(state, *message)
            {
                // The promise left; the write did not survive.
                after.members[usize::from(*to)] = state.members[usize::from(*to)].clone();
                after.held.clone_from(&state.held);
                self.crash(&mut after, usize::from(*to));
                next.push((Event::DeliverAndCrash(*message), after));
            }
        }
        for i in 0..self.members {
            if state.crashes_left > 0 && self.crashable.contains(NodeId(i as u8)) {
                let mut after = state.clone();
                self.crash(&mut after, i);
                next.push((Event::Crash(i as u8), after));
            }
            let member = &state.members[i];
            if (1..=self.recoverers).contains(&i) && member.rounds_used < self.rounds {
                next.push((Event::Recover(i as u8), self.recover(state, i)));
            }
        }
        if self.settlement && state.settled.is_none() {
            for bits in 0..1u64 << self.members {
                let reporters = NodeSet::from_ids((0..self.members as u8).filter(|i| bits & (1 << i) != 0).map(NodeId));
                if let Some(reporters) = reporters.filter(|r| r.len() == self.copies) {
                    next.push((Event::Settle(reporters), self.settle(state, reporters)));
                }
            }
        }
        next
    }

    /// The settlement of the epoch, from the reports of `reporters` (docs/protocol.md §7.4): each
    /// freezes, which for the instance is a promise of a ballot above every other, and reports
    /// its acceptance; the settlement gives the instance the value a recovery at that ballot
    /// would propose. An owner outside `reporters` may lack its share of a YES so settled: it is
    /// removed, or catches up, before it serves (not modelled: the check only asks that an owner
    /// among them holds it).
    fn settle(&self, state: &State, reporters: NodeSet) -> State {
        let mut s = state.clone();
        let freeze = Self::top_ballot();
        let mut promises = Vec::new();
        for member in reporters.iter() {
            let i = usize::from(member.0);
            let mut acceptor = s.members[i].volatile;
            let AcceptorAnswer::Promise { accepted } = acceptor.on_promise_request(freeze) else {
                unreachable!("nothing outbids the settlement's ballot");
            };
            if self.driver != Some(DriverFlaw::SettleWithoutFreeze) {
                s.members[i].volatile = acceptor;
            }
            self.sync(&mut s, i);
            promises.push((member, accepted));
        }
        s.settled = Some((settled_value(NodeId(OWNER), &promises, self.flaws), reporters));
        s
    }

    /// A ballot above every other: a settlement's, or the check's recovery with every member up.
    fn top_ballot() -> VoteBallot {
        VoteBallot::recovery(u64::MAX, u64::MAX, NodeId(u8::MAX))
    }

    fn cast(&self, state: &State, value: VoteValue) -> State {
        let mut s = state.clone();
        let owner = &mut s.members[usize::from(OWNER)];
        let life = self.life(owner.life);
        let ballot = owner.volatile.cast(NodeId(OWNER), life, value, self.flaws).expect("an owner that may cast");
        owner.cast = true;
        if self.driver == Some(DriverFlaw::OwnCopyBeforeDurable) {
            s.held.insert((ballot, value, OWNER));
        }
        for to in 1..self.members as u8 {
            s.network.insert(Message::Accept { to, ballot, value });
        }
        s
    }

    /// The state after `message` is delivered (and what it made the member write is durable),
    /// or `None` if it changes nothing.
    fn deliver(&self, state: &State, message: Message) -> Option<State> {
        let mut s = state.clone();
        match message {
            Message::Accept { to, ballot, value } => {
                let share = self.share(state, to);
                let member = &mut s.members[usize::from(to)];
                let before = member.volatile;
                if member.volatile.on_accept_request(ballot, value, share) != AcceptorAnswer::Accepted
                    || member.volatile == before
                {
                    return None;
                }
                self.sync(&mut s, usize::from(to));
            }
            Message::PromiseRequest { to, ballot } => {
                let member = &mut s.members[usize::from(to)];
                let before = member.volatile;
                let AcceptorAnswer::Promise { accepted } = member.volatile.on_promise_request(ballot) else {
                    return None;
                };
                let promise = Message::Promise { to: ballot.node.0, from: to, ballot, accepted };
                let changed = member.volatile != before;
                self.sync(&mut s, usize::from(to));
                if !s.network.insert(promise) && !changed {
                    return None;
                }
            }
            Message::Promise { to, from, ballot, accepted } => {
                let recovery = s.members[usize::from(to)].recovery.as_mut()?;
                if recovery.ballot != ballot || recovery.proposed || recovery.promises.contains_key(&from) {
                    return None;
                }
                recovery.promises.insert(from, accepted);
                if recovery.promises.len() >= self.copies {
                    let promises: Vec<_> = recovery.promises.iter().map(|(m, a)| (NodeId(*m), *a)).collect();
                    // None: a YES waits for the owner's promise.
                    let Some(value) = safe_value(NodeId(OWNER), &promises, self.flaws) else { return Some(s) };
                    let owners_yes =
                        promises.iter().any(|(m, a)| *m == NodeId(OWNER) && matches!(a, Some((_, VoteValue::Yes))));
                    s.doomed_proposal |= value == VoteValue::Yes && !owners_yes;
                    let recovery = s.members[usize::from(to)].recovery.as_mut().expect("running");
                    recovery.proposed = true;
                    for to in 0..self.members as u8 {
                        s.network.insert(Message::Accept { to, ballot, value });
                    }
                }
            }
        }
        Some(s)
    }

    /// Everything member `i` wrote becomes durable.
    fn sync(&self, s: &mut State, i: usize) {
        let member = &mut s.members[i];
        member.durable = member.volatile;
        if let Some((ballot, value)) = member.durable.accepted {
            s.held.insert((ballot, value, i as u8));
        }
    }

    fn crash(&self, s: &mut State, i: usize) {
        s.crashes_left -= 1;
        let member = &mut s.members[i];
        member.volatile = member.durable;
        member.life += 1;
        member.cast = false;
        member.recovery = None;
        member.rounds_used = 0;
    }

    fn recover(&self, state: &State, i: usize) -> State {
        let mut s = state.clone();
        let member = &mut s.members[i];
        member.rounds_used += 1;
        let ballot = VoteBallot::recovery(u64::from(member.rounds_used), self.life(member.life), NodeId(i as u8));
        member.recovery = Some(Recovery { ballot, promises: BTreeMap::new(), proposed: false });
        for to in 0..self.members as u8 {
            s.network.insert(Message::PromiseRequest { to, ballot });
        }
        s
    }

    /// The values chosen by the acceptances ever durable.
    fn chosen(&self, held: &BTreeSet<(VoteBallot, VoteValue, u8)>) -> BTreeSet<VoteValue> {
        let mut by_ballot: BTreeMap<(VoteBallot, VoteValue), NodeSet> = BTreeMap::new();
        for (ballot, value, member) in held {
            by_ballot.entry((*ballot, *value)).or_default().insert(NodeId(*member));
        }
        by_ballot
            .iter()
            .filter(|((ballot, value), holders)| {
                counts(NodeId(OWNER), *ballot, *value, **holders, self.copies, self.flaws)
            })
            .map(|((_, value), _)| *value)
            .collect()
    }

    fn check(&self, state: &State) -> Result<(), String> {
        if state.doomed_proposal {
            return Err("recovery terminates: a recovery proposed YES without its owner's promise of one".into());
        }
        let mut values_at = BTreeMap::new();
        for (ballot, value, _) in &state.held {
            if *values_at.entry(*ballot).or_insert(*value) != *value {
                return Err(format!("a ballot carries one value: YES and NO both held at {ballot}"));
            }
        }
        let chosen = self.chosen(&state.held);
        if chosen.len() > 1 {
            return Err("agreement: YES and NO both chosen".into());
        }
        let owner = &state.members[usize::from(OWNER)];
        if chosen.contains(&VoteValue::Yes) && !matches!(owner.durable.accepted, Some((_, VoteValue::Yes))) {
            return Err("a chosen YES is a share held: YES chosen while its owner holds no durable YES".into());
        }
        // The tally a learner keeps agrees with the omniscient count.
        let mut tally = Tally::new(NodeId(OWNER), self.copies);
        for (ballot, value, member) in &state.held {
            tally.durable(NodeId(*member), *ballot, *value);
        }
        if tally.chosen(self.flaws) != chosen.first().copied() {
            return Err(format!("the tally learns {:?}, the acceptances choose {chosen:?}", tally.chosen(self.flaws)));
        }
        match state.settled {
            // Settled: that is the instance's value, and nothing may be chosen against it.
            Some((value, reporters)) => {
                if chosen.iter().any(|c| *c != value) {
                    return Err(format!("the settlement agrees: settled {value} while {chosen:?} is chosen"));
                }
                if value == VoteValue::Yes
                    && reporters.contains(NodeId(OWNER))
                    && !matches!(owner.durable.accepted, Some((_, VoteValue::Yes)))
                {
                    return Err("the settlement agrees: settled YES from its owner's report, which holds none".into());
                }
                Ok(())
            }
            None => self.check_recovery(state, &chosen),
        }
    }

    /// A recovery ballot above every other, every member up, every write made durable first.
    fn check_recovery(&self, state: &State, chosen: &BTreeSet<VoteValue>) -> Result<(), String> {
        let ballot = Self::top_ballot();
        let mut acceptors: Vec<VoteAcceptor> = state.members.iter().map(|m| m.volatile).collect();
        let mut promises = Vec::new();
        for (i, acceptor) in acceptors.iter_mut().enumerate() {
            match acceptor.on_promise_request(ballot) {
                AcceptorAnswer::Promise { accepted } => promises.push((NodeId(i as u8), accepted)),
                other => return Err(format!("recovery terminates: member {i} answers the highest ballot {other:?}")),
            }
        }
        let Some(value) = safe_value(NodeId(OWNER), &promises, self.flaws) else {
            return Err("recovery terminates: a recovery with every member's promise waits for the owner's".into());
        };
        let mut holders = NodeSet::EMPTY;
        for (i, acceptor) in acceptors.iter_mut().enumerate() {
            let share = self.share(state, i as u8);
            if acceptor.on_accept_request(ballot, value, share) == AcceptorAnswer::Accepted {
                holders.insert(NodeId(i as u8));
            }
        }
        if !counts(NodeId(OWNER), ballot, value, holders, self.copies, self.flaws) {
            return Err(format!("recovery terminates: {value} proposed with every member up, held by {holders} only"));
        }
        if chosen.iter().any(|c| *c != value) {
            return Err(format!("agreement: a recovery with every member up chose {value} after {chosen:?}"));
        }
        Ok(())
    }

    /// Explores every reachable state, depth first; the number of states, or on a violation
    /// the schedule that reaches it.
    fn explore(&self, states_max: usize) -> Result<usize, String> {
        let initial = self.initial();
        self.check(&initial)?;
        let mut seen: HashSet<u128> = HashSet::from([fingerprint(&initial)]);
        // The path from the initial state: each step's event, and the successors still to visit.
        let mut path: Vec<Step> = vec![(None, self.successors(&initial))];
        while let Some((_, successors)) = path.last_mut() {
            let Some((event, state)) = successors.pop() else {
                path.pop();
                continue;
            };
            if !seen.insert(fingerprint(&state)) {
                continue;
            }
            if seen.len() > states_max {
                return Err(format!("more than {states_max} states: the model's bounds are too wide"));
            }
            if let Err(violation) = self.check(&state) {
                let schedule: Vec<String> =
                    path.iter().filter_map(|(e, _)| *e).chain([event]).map(|e| format!("{e:?}")).collect();
                return Err(format!("{violation}\nafter: {}", schedule.join("\n       ")));
            }
            path.push((Some(event), self.successors(&state)));
        }
        Ok(seen.len())
    }
}

fn explored(model: Model) -> usize {
    let states = model.explore(STATES_MAX).unwrap_or_else(|violation| panic!("{model:?}: {violation}"));
    println!("{model:?}: {states} states, every one safe");
    states
}

fn violation(model: Model) -> String {
    match model.explore(STATES_MAX) {
        Ok(states) => panic!("{model:?}: no violation in {states} states"),
        Err(violation) => violation,
    }
}

fn three() -> NodeSet {
    NodeSet::first(3)
}

/// Three members; one crash, of any member at any time; one recovery ballot per life.
#[test]
fn three_members_with_a_crash_and_a_recovery() {
    let states = explored(Model::new(3, 1, three(), 1));
    assert!(states > 100_000, "only {states} states");
}

/// Three members; two recovery ballots competing, no crash.
#[test]
fn three_members_with_competing_recoveries() {
    let states = explored(Model::new(3, 0, three(), 2));
    assert!(states > 100_000, "only {states} states");
}

/// Three members; a recovery that gives up and retries at the next round, no crash.
#[test]
fn three_members_with_a_recovery_retried() {
    let states = explored(Model { rounds: 2, ..Model::new(3, 0, three(), 1) });
    assert!(states > 100_000, "only {states} states");
}

/// Three members; the owner crashes twice (three lives, each may cast), one recovery ballot.
#[test]
fn three_members_with_an_owner_crashing_twice() {
    let states = explored(Model::new(3, 2, NodeSet::EMPTY.with(NodeId(OWNER)), 1));
    assert!(states > 100_000, "only {states} states");
}

/// Three members; one crash, one recovery ballot per life, and the epoch settled at any point
/// from any two members' reports.
#[test]
fn three_members_with_a_crash_a_recovery_and_a_settlement() {
    let states = explored(Model { settlement: true, ..Model::new(3, 1, three(), 1) });
    assert!(states > 100_000, "only {states} states");
}

/// Five members (three copies); one recovery ballot, no crash.
#[test]
fn five_members_with_a_recovery() {
    let states = explored(Model::new(5, 0, NodeSet::first(5), 1));
    assert!(states > 100_000, "only {states} states");
}

/// Wider bounds than the default run can afford (minutes):
/// `cargo test --release -p dkv-core --test vote_instances -- --ignored --nocapture`.
#[test]
#[ignore]
fn wider_bounds() {
    let wider = [
        Model::new(5, 1, NodeSet::EMPTY.with(NodeId(OWNER)), 1),
        Model::new(3, 2, three(), 1),
        Model { settlement: true, ..Model::new(3, 2, three(), 1) },
        Model { rounds: 2, ..Model::new(3, 0, three(), 2) },
        Model { rounds: 2, ..Model::new(3, 1, three(), 1) },
        Model::new(3, 1, three(), 2),
        Model::new(5, 1, NodeSet::first(5), 1),
    ];
    for model in wider {
        let states = model.explore(WIDE_STATES_MAX).unwrap_or_else(|violation| panic!("{model:?}: {violation}"));
        println!("{model:?}: {states} states, every one safe");
    }
}

// The driver's flaws: the model's own, so no canary build is needed.

/// A promise that leaves before it is durable, taken back by a crash: the member then accepts
/// the owner's YES below the ballot it promised, and the recovery's NO is chosen too.
#[test]
fn a_promise_before_it_is_durable_is_caught() {
    let model = Model { driver: Some(DriverFlaw::PromiseBeforeDurable), ..Model::new(3, 1, three(), 1) };
    let violation = violation(model);
    assert!(violation.starts_with("agreement"), "{violation}");
}

/// The owner's own copy counted before it is durable: a crash then loses a share that a chosen
/// YES relies on.
#[test]
fn an_own_copy_counted_before_it_is_durable_is_caught() {
    let model = Model { driver: Some(DriverFlaw::OwnCopyBeforeDurable), ..Model::new(3, 1, three(), 1) };
    let violation = violation(model);
    assert!(violation.starts_with("a chosen YES is a share held"), "{violation}");
}

/// Ballots without the life: a recovery restarted after a crash proposes again at the ballot
/// its earlier life used, with another value.
#[test]
fn ballots_without_the_life_are_caught() {
    let model = Model { driver: Some(DriverFlaw::BallotsWithoutLife), ..Model::new(3, 1, three(), 2) };
    let violation = violation(model);
    assert!(violation.starts_with("a ballot carries one value"), "{violation}");
}

/// A settlement whose reporters do not freeze: a vote accepted below it after it is made
/// chooses another value than it settled.
#[test]
fn a_settlement_without_a_freeze_is_caught() {
    let model =
        Model { settlement: true, driver: Some(DriverFlaw::SettleWithoutFreeze), ..Model::new(3, 0, three(), 1) };
    let violation = violation(model);
    assert!(violation.starts_with("the settlement agrees"), "{violation}");
}

// The rules' flaws need the canary build.

#[cfg(feature = "canary")]
fn flawed(flaw: dkv_core::votes::VoteFlaw, model: Model) -> String {
    let flaws = Flaws::plant(flaw).expect("a canary build");
    violation(Model { flaws, ..model })
}

/// A YES counted without its owner's copy: chosen while the owner's share is not on its disk.
#[cfg(feature = "canary")]
#[test]
fn canary_yes_without_owner_is_caught() {
    let violation = flawed(dkv_core::votes::VoteFlaw::YesWithoutOwner, Model::new(3, 1, three(), 1));
    assert!(violation.starts_with("a chosen YES is a share held"), "{violation}");
}

/// A NO at the owner's ballot counted without the owner's copy: the owner, restarted without
/// it, casts YES at its next life's ballot and that is chosen too.
#[cfg(feature = "canary")]
#[test]
fn canary_owners_no_without_owner_is_caught() {
    let violation = flawed(dkv_core::votes::VoteFlaw::OwnersNoWithoutOwner, Model::new(3, 1, three(), 1));
    assert!(violation.starts_with("agreement"), "{violation}");
}

/// An owner that casts again after a restart although its log holds its earlier vote.
#[cfg(feature = "canary")]
#[test]
fn canary_owner_casts_again_is_caught() {
    let violation = flawed(dkv_core::votes::VoteFlaw::OwnerCastsAgain, Model::new(3, 1, three(), 1));
    assert!(violation.starts_with("agreement"), "{violation}");
}

/// A recovery that proposes NO whatever its promises say: a chosen YES is overridden.
#[cfg(feature = "canary")]
#[test]
fn canary_recover_with_no_is_caught() {
    let violation = flawed(dkv_core::votes::VoteFlaw::RecoverWithNo, Model::new(3, 0, three(), 1));
    assert!(violation.starts_with("agreement"), "{violation}");
}

/// A recovery that proposes a YES before the owner promised: an owner that lost its share
/// refuses it, and the recovery that hears the owner last never ends.
#[cfg(feature = "canary")]
#[test]
fn canary_recover_yes_without_owner_is_caught() {
    let violation = flawed(dkv_core::votes::VoteFlaw::RecoverYesWithoutOwner, Model::new(3, 1, three(), 1));
    assert!(violation.starts_with("recovery terminates: a recovery proposed YES"), "{violation}");
}

/// A recovery that ignores the owner's word: an owner that lost its share, while another member
/// holds its YES, leaves the instance stuck.
#[cfg(feature = "canary")]
#[test]
fn canary_recover_without_owners_word_is_caught() {
    let violation = flawed(dkv_core::votes::VoteFlaw::RecoverWithoutOwnersWord, Model::new(3, 1, three(), 1));
    assert!(violation.starts_with("recovery terminates"), "{violation}");
}

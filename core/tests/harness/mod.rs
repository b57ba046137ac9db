//! A small cluster harness: real cores on virtual time over a perfect in-order network, with
//! disks that make records durable on demand and crashes that lose what was not durable.
//! The full fault-injecting simulator lives in the dkv-sim crate; this harness exists so the
//! core's own tests can drive exact scenarios step by step.
#![allow(dead_code)]

use dkv_core::{
    ClientId, Config, Input, Lsn, Message, Node, NodeId, NodeSet, Operation, Output, Record, Reply, ReplyTo, Request,
    RequestId, Time, TxnOp, compaction,
};
use std::collections::VecDeque;
use std::time::Duration;

#[derive(Default)]
pub struct Disk {
    pub durable: Vec<Record>,
    pub pending: Vec<(Lsn, Record)>,
}

/// Decides whether a message (from, to, message) is delivered.
pub type DeliveryFilter = Box<dyn FnMut(NodeId, NodeId, &Message) -> bool>;

pub struct Cluster {
    pub now: Time,
    pub configs: Vec<Config>,
    pub nodes: Vec<Option<Node>>,
    pub disks: Vec<Disk>,
    /// In flight: (from, to, message), delivered in order.
    pub network: VecDeque<(NodeId, NodeId, Message)>,
    pub replies: Vec<(ReplyTo, Reply)>,
    /// Make every persisted record durable as soon as it is emitted.
    pub auto_durable: bool,
    /// Messages for which this returns false are lost.
    pub deliver_if: DeliveryFilter,
    pub delivered: Vec<(NodeId, NodeId, Message)>,
    next_reply_to: u64,
}

pub fn put(key: &str, value: &str) -> TxnOp {
    TxnOp::Put { key: key.as_bytes().to_vec(), value: value.as_bytes().to_vec() }
}
pub fn update(key: &str, value: &str) -> TxnOp {
    TxnOp::Update { key: key.as_bytes().to_vec(), value: value.as_bytes().to_vec() }
}
pub fn delete(key: &str) -> TxnOp {
    TxnOp::Delete { key: key.as_bytes().to_vec() }
}
pub fn txn(client: u64, seq: u64, ops: Vec<TxnOp>) -> Request {
    Request { id: RequestId { client: ClientId(client), seq }, operation: Operation::Txn { ops } }
}
pub fn get(client: u64, seq: u64, key: &str) -> Request {
    Request {
        id: RequestId { client: ClientId(client), seq },
        operation: Operation::Get { key: key.as_bytes().to_vec() },
    }
}

impl Cluster {
    pub fn new(size: usize) -> Cluster {
        Cluster::with_config(size, |_| {})
    }

    /// A cluster whose records become durable only when a test says so (`make_durable`), its
    /// nodes' start records durable already: they coordinate.
    pub fn durable_by_hand(size: usize) -> Cluster {
        let mut c = Cluster::new(size);
        c.auto_durable = false;
        (0..size).for_each(|i| c.make_durable(i));
        c
    }

    pub fn with_config(size: usize, tweak: impl Fn(&mut Config)) -> Cluster {
        let members = NodeSet::first(size);
        let configs: Vec<Config> = (0..size)
            .map(|i| {
                let mut c = Config::new(NodeId(i as u8), members);
                tweak(&mut c);
                c
            })
            .collect();
        let mut cluster = Cluster {
            now: Time::from_nanos(1_000_000),
            nodes: Vec::new(),
            disks: (0..size).map(|_| Disk::default()).collect(),
            configs,
            network: VecDeque::new(),
            replies: Vec::new(),
            auto_durable: true,
            deliver_if: Box::new(|_, _, _| true),
            delivered: Vec::new(),
            next_reply_to: 0,
        };
        for i in 0..size {
            cluster.nodes.push(None);
            cluster.restart(i);
        }
        cluster
    }

    pub fn node(&self, i: usize) -> &Node {
        self.nodes[i].as_ref().expect("node is up")
    }

    /// Sends a client request to node `i`; returns the handle its reply will carry.
    pub fn request(&mut self, i: usize, request: Request) -> ReplyTo {
        let reply_to = ReplyTo(self.next_reply_to);
        self.next_reply_to += 1;
        let now = self.now;
        self.nodes[i].as_mut().expect("node is up").handle(now, Input::Request { reply_to, request });
        self.drain(i);
        reply_to
    }

    pub fn reply(&self, reply_to: ReplyTo) -> Option<&Reply> {
        self.replies.iter().find(|(to, _)| *to == reply_to).map(|(_, r)| r)
    }

    pub fn replies_to(&self, reply_to: ReplyTo) -> usize {
        self.replies.iter().filter(|(to, _)| *to == reply_to).count()
    }

    /// Drains node `i`'s outputs into the network, the replies and its disk.
    /// Every node's bookkeeping is checked here, after each input it handled.
    pub fn drain(&mut self, i: usize) {
        loop {
            let Some(node) = self.nodes[i].as_mut() else { return };
            if let Err(violation) = node.check_invariants() {
                panic!("node {i} after an input: {violation}");
            }
            let from = node.id();
            let mut persisted = false;
            while let Some(output) = node.poll_output() {
                match output {
                    Output::Send { to, message } => self.network.push_back((from, to, message)),
                    Output::Reply { to, reply } => self.replies.push((to, reply)),
                    Output::Persist { lsn, record, .. } => {
                        self.disks[i].pending.push((lsn, record));
                        persisted = true;
                    }
                    // This harness carries out no state transfer: a node added back stays outside
                    // (the simulator's catch-up is the one tested).
                    Output::CatchUp { .. } => {}
                }
            }
            if !(persisted && self.auto_durable) {
                return;
            }
            self.make_durable(i);
        }
    }

    /// Makes node `i`'s pending records durable and tells it so.
    pub fn make_durable(&mut self, i: usize) {
        let pending = std::mem::take(&mut self.disks[i].pending);
        let Some(&(last, _)) = pending.last() else { return };
        for (_, record) in pending {
            compaction::push_durable(&mut self.disks[i].durable, record);
        }
        let now = self.now;
        if let Some(node) = self.nodes[i].as_mut() {
            node.handle(now, Input::Durable { through: last });
        }
        self.drain(i);
    }

    /// Delivers one message, or if none is in flight fires the earliest timer.
    /// Returns false when there is nothing left to do.
    pub fn step(&mut self) -> bool {
        if let Some((from, to, message)) = self.network.pop_front() {
            let i = usize::from(to.0);
            if self.nodes[i].is_some() && (self.deliver_if)(from, to, &message) {
                self.delivered.push((from, to, message.clone()));
                let now = self.now;
                self.nodes[i].as_mut().unwrap().handle(now, Input::Message { from, message });
                self.drain(i);
            }
            return true;
        }
        let next = self.nodes.iter().flatten().filter_map(|n| n.deadline()).min();
        let Some(at) = next else { return false };
        self.now = self.now.max(at);
        for i in 0..self.nodes.len() {
            let now = self.now;
            if let Some(node) = self.nodes[i].as_mut() {
                if node.deadline().is_some_and(|d| d <= now) {
                    node.handle(now, Input::Timeout);
                    self.drain(i);
                }
            }
        }
        true
    }

    /// Delivers every message in flight, without advancing time.
    pub fn deliver_all(&mut self) {
        while !self.network.is_empty() {
            self.step();
        }
    }

    /// Steps until `done` holds or `max_steps` pass (bounded: a bug cannot hang the test).
    pub fn run_until(&mut self, max_steps: usize, mut done: impl FnMut(&Cluster) -> bool) -> bool {
        for _ in 0..max_steps {
            if done(self) {
                return true;
            }
            if !self.step() {
                return done(self);
            }
        }
        done(self)
    }

    /// Runs until every live node is quiescent and the network is empty.
    pub fn settle(&mut self) -> bool {
        self.run_until(100_000, |c| c.network.is_empty() && c.nodes.iter().flatten().all(|n| n.is_quiescent()))
    }

    pub fn advance(&mut self, by: Duration) {
        self.now = self.now + by;
    }

    /// Crashes node `i`: its memory and its records not yet durable are gone.
    pub fn crash(&mut self, i: usize) {
        self.nodes[i] = None;
        self.disks[i].pending.clear();
    }

    /// (Re)starts node `i` from its durable records.
    pub fn restart(&mut self, i: usize) {
        let records = self.disks[i].durable.clone();
        let node = Node::start(self.configs[i].clone(), records, self.now).expect("recovery succeeds");
        self.nodes[i] = Some(node);
        self.drain(i);
    }

    /// Node `i` loses its data dir (it must be down) and starts on the empty log as
    /// `dkv-server --init` does: bootstrapping.
    pub fn bootstrap(&mut self, i: usize) {
        assert!(self.nodes[i].is_none(), "node {i} is down");
        self.disks[i] = Disk::default();
        let node = Node::start_bootstrapping(self.configs[i].clone(), self.now).expect("an empty log starts");
        self.nodes[i] = Some(node);
        self.drain(i);
    }

    pub fn value(&self, i: usize, key: &str) -> Option<Vec<u8>> {
        self.node(i).store().get(key.as_bytes()).cloned()
    }
}

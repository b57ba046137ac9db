//! Quorums, counted against the cluster (docs/protocol.md §7.3): every node the cluster was
//! made of, member of the current configuration or not. A configuration shrinks while members
//! are away; if its quorums were its own majorities, a shrunken one would survive fewer failures
//! than the cluster, and one whose members then failed could never change again, though most of
//! the cluster's nodes were up (seen in the simulator: three nodes, one removed while cut off,
//! another crashed for good before the first was added back). Counted against the cluster, with
//! at most f = ⌊(N − 1)/2⌋ of the N nodes lost at once:
//!
//! - a commit is **visible** once its decision is durable on c members, c = ⌊N/2⌋ + 1 the size of
//!   the cluster's majority, and a member holds a **lease** only with grants from c members
//!   (itself included): **copies** that are a majority of the cluster, all members;
//! - the agreement on the next configuration needs promises and acceptances from a **majority of
//!   the cluster's nodes**, members or not: any two share a node, so an epoch has one value.
//!   A majority of the cluster shares a node with any copies, and that node is a member: its
//!   report tells the settlement of every visible commit, and its freeze ends every lease. It
//!   holds at least |members| + 1 − c members (the **cover**), which are all the settlement needs
//!   to hear from.
//!
//! With at most f = ⌊(N − 1)/2⌋ nodes lost, a majority of the cluster is up, and it has the
//! cover. When every node is a member, copies and quorums are the members' majority, as before.

use crate::ids::NodeSet;

/// The nodes of the cluster, which the configurations' members are drawn from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cluster {
    pub nodes: NodeSet,
}

impl Cluster {
    /// Whether `nodes` are more than half of the cluster's nodes (others do not count).
    pub fn is_majority(self, nodes: NodeSet) -> bool {
        2 * nodes.intersection(self.nodes).len() > self.nodes.len()
    }

    /// How many copies survive any f lost: as many as the cluster's majority, ⌊N/2⌋ + 1.
    pub fn copies(self) -> usize {
        self.nodes.len() / 2 + 1
    }

    /// Whether `nodes` hold [`Cluster::copies`] of `members`.
    pub fn has_copies(self, members: NodeSet, nodes: NodeSet) -> bool {
        nodes.intersection(members).len() >= self.copies()
    }

    /// How many of `members` any majority of the cluster holds, and any set of them that
    /// shares one with every [`Cluster::copies`]: |members| + 1 − copies, at least one.
    pub fn cover(self, members: NodeSet) -> usize {
        (members.len() + 1).saturating_sub(self.copies()).max(1)
    }

    /// Whether `nodes` hold a cover of `members`.
    pub fn covers(self, members: NodeSet, nodes: NodeSet) -> bool {
        nodes.intersection(members).len() >= self.cover(members)
    }

    /// Whether a commit among `members` is visible on every member's durable YES, before any
    /// copy of its decision is (docs/protocol.md §7.2, "Visible on every YES with changes on"): when they
    /// are the three nodes of a three-node cluster. Every cover of such a configuration is two
    /// members, so a settlement that hears neither a commit's coordinator nor of its decision
    /// hears both other members, and every YES that could have made it visible.
    pub fn visible_on_every_yes(self, members: NodeSet) -> bool {
        self.nodes.len() == 3 && members == self.nodes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NodeId;

    #[test]
    fn with_every_node_a_member_copies_are_the_members_majority() {
        for n in 1..=9 {
            let cluster = Cluster { nodes: NodeSet::first(n) };
            let majority = n / 2 + 1;
            assert!(cluster.has_copies(cluster.nodes, NodeSet::first(majority)));
            assert!(!cluster.has_copies(cluster.nodes, NodeSet::first(majority - 1)));
            // Odd: the cover is a majority too; even: half, and promises need a majority anyway.
            assert_eq!(cluster.cover(cluster.nodes), n - majority + 1, "cover of {n}");
        }
    }

    #[test]
    fn every_majority_of_the_cluster_covers_every_configuration() {
        for n in 1..=7 {
            let cluster = Cluster { nodes: NodeSet::first(n) };
            for members in 1..=(1u64 << n) - 1 {
                let members = NodeSet::from_ids((0..n as u8).filter(|i| members >> i & 1 == 1).map(NodeId));
                let members = members.expect("ids below the capacity");
                for quorum in 0..(1u64 << n) {
                    let quorum = NodeSet::from_ids((0..n as u8).filter(|i| quorum >> i & 1 == 1).map(NodeId));
                    let quorum = quorum.expect("ids below the capacity");
                    if cluster.is_majority(quorum) && members.len() >= cluster.copies() {
                        assert!(cluster.covers(members, quorum), "{n}: {quorum} of {members}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_cover_and_any_copies_share_a_member() {
        // Five nodes (f = 2, c = 3), members shrunk to three: copies need all three, a cover one.
        let cluster = Cluster { nodes: NodeSet::first(5) };
        let members = NodeSet::first(3);
        assert_eq!(cluster.cover(members), 1);
        assert!(!cluster.has_copies(members, NodeSet::first(2)));
        assert!(cluster.has_copies(members, members));
        // Seven nodes (f = 3, c = 4), five members: copies on four, a cover of two.
        let cluster = Cluster { nodes: NodeSet::first(7) };
        let members = NodeSet::first(5);
        assert_eq!(cluster.cover(members), 2);
        for size in 0..=5 {
            let copies = NodeSet::first(size);
            let cover = members.difference(copies);
            // The largest set of members sharing none with the copies is no cover.
            assert!(!cluster.has_copies(members, copies) || !cluster.covers(members, cover), "{size}");
        }
    }
}

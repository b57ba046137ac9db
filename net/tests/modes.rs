//! Every node of a cluster runs the same way, with configuration changes (`--availability`) or
//! without (docs/protocol.md §6): a node without them answers reads from memory without a lease,
//! so in a cluster whose others run with them it would serve stale values once they removed it.
//! The credentials record the cluster's mode, and a server set to run otherwise refuses to
//! start; as a last guard, a node without changes that hears a peer in a later epoch, or is
//! told of a configuration change, stops.

mod common;

use common::TestCluster;
use dkv_core::{NodeId, Outcome};
use dkv_net::security::credentials::{NodeCredentials, default_users, init_cluster_with_users};
use dkv_net::{Client, ClientConfig, ClientTransport, Server, ServerConfig, ServerError, Transport};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Credentials that record the cluster runs with changes refuse a server set to run without,
/// and the other way round; a server set as they record starts.
#[test]
fn a_server_set_otherwise_than_its_credentials_record_refuses_to_start() {
    let root = tempfile::tempdir().unwrap();
    for recorded in [true, false] {
        let credentials = root.path().join(format!("credentials-{recorded}"));
        init_cluster_with_users(&credentials, &[NodeId(0), NodeId(1)], &default_users(), Some(recorded)).unwrap();
        for running in [true, false] {
            let ports = dkv_net::testing::free_ports(3);
            let at = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
            let peers = BTreeMap::from([(NodeId(1), at(ports[2]))]);
            let dir = root.path().join(format!("node-{recorded}-{running}"));
            let mut config = ServerConfig::new(NodeId(0), at(ports[0]), at(ports[1]), peers, Transport::Tcp, dir);
            config.credentials = Some(Arc::new(NodeCredentials::load(&credentials.join("node-0")).unwrap()));
            config.timing.leases = running;
            match Server::bind(config) {
                Ok(_) => assert_eq!(recorded, running, "a server set otherwise than its credentials started"),
                Err(error @ ServerError::ModeDiffers { .. }) => {
                    assert_ne!(recorded, running, "{error}");
                    assert!(error.to_string().contains("every node of a cluster must run the same way"), "{error}");
                }
                Err(error) => panic!("recorded {recorded}, running {running}: {error}"),
            }
        }
    }
}

/// The others removed node 2 while it was down; it comes back without changes (credentials
/// that record no mode, as an older build made them, and a command line without
/// --availability). It takes itself for a member of the first epoch, so it would answer reads
/// from a copy that no longer gets the writes; at the others' first heartbeat, of a later
/// epoch, it stops with an error that names the mismatch instead.
#[test]
fn a_node_without_changes_that_hears_a_later_epoch_stops() {
    common::show_server_logs_on_failure();
    let mut cluster = TestCluster::start_with(3, Transport::Tcp, |c| c.timing.leases = true);
    cluster.stop_node(2);
    // Writes need every member's YES: one commits once the others removed node 2.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut config = ClientConfig::new(vec![cluster.addrs[0], cluster.addrs[1]], ClientTransport::Tcp);
        config.request_timeout = Duration::from_secs(2);
        if let Ok(Outcome::Committed(_)) = Client::new(config).unwrap().put("after", "1") {
            break;
        }
        assert!(Instant::now() < deadline, "node 2 was not removed within 30 s");
    }
    cluster.start_node_with(2, |c| c.timing.leases = false);
    // (Or, had it heard the value that removed it first, on installing it.)
    match cluster.wait_for_exit(2, Duration::from_secs(20)) {
        Some(Err(error @ ServerError::ModesMixed { .. })) => {
            assert!(error.to_string().contains("runs without it"), "{error}");
            if let ServerError::ModesMixed { epoch, mine, .. } = error {
                assert!(epoch > mine, "{epoch} {mine}");
            }
        }
        Some(Err(error @ ServerError::ConfigurationChangedWithoutAvailability { .. })) => {
            assert!(error.to_string().contains("runs without --availability"), "{error}");
        }
        other => panic!("node 2 should have stopped on hearing a later epoch, got {other:?}"),
    }
    // Nor does node 0 go back to running without changes: its log is past the first epoch.
    cluster.stop_node(0);
    let mut config = cluster.config(0);
    config.timing.leases = false;
    match Server::bind(config) {
        Err(error @ ServerError::RanWithAvailability { .. }) => {
            assert!(error.to_string().contains("cannot go back"), "{error}");
        }
        Err(error) => panic!("node 0 refused for another reason: {error}"),
        Ok(_) => panic!("node 0, whose log ran with changes, started without them"),
    }
}

/// Node 2 runs without changes from the start, the others with them (credentials that record
/// no mode). The others change the configuration (node 2 never heartbeats, so they remove it):
/// node 2 stops, on hearing the later epoch or on installing it, whichever comes first.
#[test]
fn a_node_without_changes_among_nodes_with_them_stops_once_they_change_the_configuration() {
    common::show_server_logs_on_failure();
    let mut cluster = TestCluster::start_with(3, Transport::Tcp, |c| c.timing.leases = c.id != NodeId(2));
    match cluster.wait_for_exit(2, Duration::from_secs(30)) {
        Some(Err(ServerError::ModesMixed { .. } | ServerError::ConfigurationChangedWithoutAvailability { .. })) => {}
        other => panic!("node 2 should have stopped once the others changed the configuration, got {other:?}"),
    }
    let mut config = ClientConfig::new(vec![cluster.addrs[0], cluster.addrs[1]], ClientTransport::Tcp);
    config.request_timeout = Duration::from_secs(20);
    assert!(matches!(Client::new(config).unwrap().put("after", "1").unwrap(), Outcome::Committed(_)));
}

//! A data dir knows whose it is: a new one records its cluster and node id, a restart as the
//! same node works, and a start as another node, with another cluster's credentials or with a
//! damaged identity file is refused with an error naming both sides; a data dir from a build
//! before identity files is adopted with its data. Single nodes on loopback, in tempdirs.

use dkv_core::{ClusterId, NodeId, Outcome};
use dkv_net::identity::{IDENTITY_FILE_NAME, IdentityError};
use dkv_net::security::credentials::{NodeCredentials, init_cluster};
use dkv_net::{Client, ClientConfig, ClientTransport, Server, ServerConfig, ServerError, Transport, WalError};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const ANY_PORT: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// A single node (no peers) `id` on `data_dir`, with the credentials in `credentials` if any.
fn config(id: u8, data_dir: &Path, credentials: Option<&Path>) -> ServerConfig {
    let mut config =
        ServerConfig::new(NodeId(id), ANY_PORT, ANY_PORT, BTreeMap::new(), Transport::Tcp, data_dir.to_path_buf());
    config.credentials = credentials.map(|dir| Arc::new(NodeCredentials::load(dir).expect("credentials load")));
    config
}

/// The credentials of node `id` of a new cluster made under `root/name`, and its cluster id.
fn new_cluster(root: &Path, name: &str, id: u8) -> (PathBuf, ClusterId) {
    let dir = root.join(name);
    let cluster = init_cluster(&dir, &[NodeId(id)]).expect("credentials are made");
    (dir.join(format!("node-{id}")), cluster)
}

/// Starts a server on `config`, runs `work` with a client of it, and stops it.
fn serve(config: ServerConfig, work: impl FnOnce(&mut Client)) {
    let server = Server::bind(config).expect("server starts");
    let mut client = Client::new(ClientConfig::new(vec![server.local_addr()], ClientTransport::Tcp)).unwrap();
    let handle = server.handle();
    let thread = std::thread::spawn(move || server.run());
    work(&mut client);
    handle.stop();
    thread.join().expect("server thread panicked").expect("server stopped cleanly");
}

fn refusal(config: ServerConfig) -> IdentityError {
    match Server::bind(config).err() {
        Some(ServerError::Wal(WalError::Identity(error))) => error,
        other => panic!("expected an identity refusal, got {other:?}"),
    }
}

fn value_of(client: &mut Client, key: &str) -> Outcome {
    client.get(key).unwrap()
}

#[test]
fn a_new_data_dir_records_its_identity_and_a_restart_as_the_same_node_works() {
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    serve(config(0, &data_dir, None), |client| {
        client.put("k", "v").unwrap();
    });
    assert!(data_dir.join(IDENTITY_FILE_NAME).is_file(), "the identity file is written");
    serve(config(0, &data_dir, None), |client| {
        assert!(matches!(value_of(client, "k"), Outcome::Value { value, .. } if value == b"v"));
    });
}

#[test]
fn a_start_as_another_node_is_refused_naming_both() {
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    serve(config(0, &data_dir, None), |_| {});
    let error = refusal(config(1, &data_dir, None));
    assert!(matches!(error, IdentityError::OtherNode { recorded: NodeId(0), given: NodeId(1), .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("with --id 0") && message.contains("this is node n1"), "{message}");
    // The refusal left the data dir as it was: node 0 still starts on it.
    serve(config(0, &data_dir, None), |_| {});
}

#[test]
fn another_clusters_credentials_are_refused_naming_both() {
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let (ours, our_cluster) = new_cluster(root.path(), "ours", 0);
    let (theirs, their_cluster) = new_cluster(root.path(), "theirs", 0);
    serve(config(0, &data_dir, Some(&ours)), |_| {});
    let error = refusal(config(0, &data_dir, Some(&theirs)));
    assert!(
        matches!(&error, IdentityError::OtherCluster { recorded, given, .. }
            if *recorded == our_cluster && *given == their_cluster),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains(&our_cluster.to_string()) && message.contains(&their_cluster.to_string()), "{message}");
    // Nor is a node without credentials (cluster 0) taken for one of that cluster, and its
    // refusal says it was started without them (not "cluster 0000000000000000's").
    let error = refusal(config(0, &data_dir, None));
    assert!(matches!(error, IdentityError::ClusterWithoutCredentials { .. }), "{error:?}");
    assert!(error.to_string().contains("without --credentials"), "{error}");
    serve(config(0, &data_dir, Some(&ours)), |_| {});
}

#[test]
fn a_damaged_identity_file_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    serve(config(0, &data_dir, None), |_| {});
    let path = data_dir.join(IDENTITY_FILE_NAME);
    let good = std::fs::read(&path).unwrap();
    let mut flipped = good.clone();
    flipped[12] ^= 1; // the node id: 0 would read as 1 without the checksum
    for damaged in [flipped, good[..good.len() - 1].to_vec(), Vec::new()] {
        std::fs::write(&path, &damaged).unwrap();
        let error = refusal(config(0, &data_dir, None));
        assert!(matches!(error, IdentityError::Damaged { .. }), "{error:?}");
    }
}

#[test]
fn a_data_dir_from_an_earlier_build_is_adopted_with_its_data() {
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    serve(config(0, &data_dir, None), |client| {
        client.put("kept", "yes").unwrap();
    });
    // An earlier build wrote the log but no identity file.
    let path = data_dir.join(IDENTITY_FILE_NAME);
    std::fs::remove_file(&path).unwrap();
    serve(config(0, &data_dir, None), |client| {
        assert!(matches!(value_of(client, "kept"), Outcome::Value { value, .. } if value == b"yes"));
    });
    assert!(path.is_file(), "the adopted dir records its identity");
    // From then on it is this node's: another id is refused.
    assert!(matches!(refusal(config(1, &data_dir, None)), IdentityError::OtherNode { .. }));
}

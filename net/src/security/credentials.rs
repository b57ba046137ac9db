//! A cluster's credentials: one certificate authority per cluster, a certificate and key per
//! member, and a secret key per pair of members for the peer datagrams of UDP mode. [`init_cluster`] makes them all
//! at once (`dkv-server init`); a node loads its own with [`NodeCredentials::load`].
//!
//! Layout of a credentials folder, as `init_cluster` writes it:
//!
//! ```text
//! DIR/ca.crt             the cluster's CA certificate (public)
//! DIR/ca.key             the CA's private key (0600): it can mint members; keep it offline
//! DIR/node-N/identity    "cluster <16 hex digits>", "node N" and "availability on|off" (how
//!                        every node of the cluster runs: see [`NodeCredentials::availability`])
//! DIR/node-N/ca.crt      a copy of the CA certificate, to verify the other members
//! DIR/node-N/node.crt    this member's certificate, naming it (see [`peer_name`])
//! DIR/node-N/node.key    its private key (0600)
//! DIR/node-N/peer.keys   "M <64 hex digits>" per other member M: the key this member shares
//!                        with M alone (0600), which seals their datagrams in UDP mode
//! DIR/node-N/users       the users and their tokens and roles (0600; see [`super::users`])
//! DIR/client/ca.crt      what a client needs to verify the nodes it talks to
//! DIR/client/identity    "cluster <16 hex digits>"
//! DIR/client/NAME.user   a user's name and token (0600), for `dkv-client --user-file`
//! DIR/client/NAME.crt    a user's client certificate (and NAME.key, 0600), for `--cert`
//! ```
//!
//! Secrets are created with mode 0600 and refused at load time if anyone but their owner may
//! read them, as ssh refuses a private key others can read. They never go on a command line
//! (only the folder's path does) and never into a log.

use super::users::{Role, TOKEN_BYTES, client_user_text, user_line};
use dkv_core::{ClusterId, NodeId};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
use rcgen::{KeyUsagePurpose, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use thiserror::Error;

const IDENTITY_FILE: &str = "identity";
const CA_CERT_FILE: &str = "ca.crt";
const CA_KEY_FILE: &str = "ca.key";
const NODE_CERT_FILE: &str = "node.crt";
const NODE_KEY_FILE: &str = "node.key";
const PEER_KEYS_FILE: &str = "peer.keys";
/// A node's users file (see [`super::users`]).
pub const USERS_FILE: &str = "users";
/// Bytes of a pair key.
pub const PAIR_KEY_BYTES: usize = crate::security::datagrams::PAIR_KEY_BYTES;

/// The name a member's certificate is issued for, and the one its peers check: a connection
/// that presents a certificate valid for this name comes from member `node` of `cluster`.
pub fn peer_name(cluster: ClusterId, node: NodeId) -> String {
    format!("node-{}.{cluster}.dkv", node.0)
}

/// The name a user's client certificate is issued for, and the one a node checks.
pub fn user_name(cluster: ClusterId, user: &str) -> String {
    format!("user-{user}.{cluster}.dkv")
}

/// The name clients check: every member's certificate is valid for it, so a client trusts any
/// member of the cluster whose CA it holds.
pub fn cluster_name(cluster: ClusterId) -> String {
    format!("{cluster}.dkv")
}

/// Why credentials could not be made or loaded. Every message says what to do.
#[derive(Debug, Error)]
pub enum CredentialsError {
    #[error(
        "{path} already exists; pick another folder, or delete it to make new credentials (every node then needs its new folder)"
    )]
    Exists { path: PathBuf },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error(
        "cannot read {path}: {source}; give the folder `dkv-server init` made for it: a node's own, DIR/node-N (dkv-server --credentials), or the clients', DIR/client (dkv-client --tls)"
    )]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} may be read by others (mode {mode:o}); it holds a secret: run `chmod 600 {path}`")]
    Exposed { path: PathBuf, mode: u32 },
    #[error("{path} is not valid: {reason}; make the credentials again with `dkv-server init`")]
    Invalid { path: PathBuf, reason: String },
    #[error(
        "{path} holds a bad availability line ({reason}); it must be one line, 'availability on' or 'availability off', the same in every node's folder: fix it by hand or with `dkv-server availability on|off FOLDER` (an older build, which cannot read it, needs the line deleted)"
    )]
    BadAvailability { path: PathBuf, reason: String },
    #[error(
        "cannot give the new {path} its owner (uid {uid}): {source}; nothing was changed. Run this as that user, or as root"
    )]
    Owner { path: PathBuf, uid: u32, source: std::io::Error },
    #[error(
        "{dir} is not a node's credentials folder (its identity file names no node); give each node's own folder, DIR/node-N, as `dkv-server init` made it"
    )]
    NotANodeFolder { dir: PathBuf },
    #[error(
        "the credentials in {dir} are node {found}'s, but this is node {expected}; give --credentials DIR/node-{}", expected.0
    )]
    WrongNode { dir: PathBuf, found: NodeId, expected: NodeId },
    #[error("cannot make a certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("no secure random numbers from the operating system: {0}")]
    Random(String),
    #[error("a cluster needs at least one node id, and ids must be distinct and below 64")]
    BadNodes,
    #[error("user names must be distinct, made of letters, digits, '-', '_' and '.', and prefixes must have no spaces")]
    BadUsers,
}

/// What one member holds: who it is, how it proves it, and whom it trusts.
pub struct NodeCredentials {
    pub cluster: ClusterId,
    pub node: NodeId,
    /// The cluster's CA certificate: the one trust anchor for peers and clients.
    pub ca: CertificateDer<'static>,
    pub certificate: CertificateDer<'static>,
    pub key: PrivateKeyDer<'static>,
    /// The key this member shares with each other member: seals their datagrams in UDP mode.
    pub peer_keys: std::collections::BTreeMap<NodeId, [u8; PAIR_KEY_BYTES]>,
    /// Whether the cluster runs with configuration changes (`dkv-server --availability`), as
    /// `dkv-server init` recorded it for every member at once; `None` in credentials made
    /// before dkv recorded it. Every node of a cluster must run the same way: a node without
    /// changes serves reads from memory without a lease, so once the others removed it, it
    /// would answer stale values (docs/protocol.md §7.5).
    pub availability: Option<bool>,
}

/// Shows who the credentials are for, never the keys: whatever prints a configuration must not
/// print a secret.
impl std::fmt::Debug for NodeCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCredentials")
            .field("cluster", &self.cluster)
            .field("node", &self.node)
            .field("key", &"(secret)")
            .field("peer_keys", &"(secret)")
            .finish_non_exhaustive()
    }
}

impl NodeCredentials {
    /// Loads the credentials `init_cluster` wrote for one member into `dir` (DIR/node-N).
    pub fn load(dir: &Path) -> Result<NodeCredentials, CredentialsError> {
        let identity = read_text(&dir.join(IDENTITY_FILE))?;
        let Identity { cluster, node, availability } = parse_identity(&dir.join(IDENTITY_FILE), &identity)?;
        let node = node.ok_or_else(|| invalid(&dir.join(IDENTITY_FILE), "it names no node"))?;
        let ca = read_certificate(&dir.join(CA_CERT_FILE))?;
        let certificate = read_certificate(&dir.join(NODE_CERT_FILE))?;
        let key_path = dir.join(NODE_KEY_FILE);
        check_private(&key_path)?;
        let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| invalid(&key_path, &e.to_string()))?;
        let peer_keys_path = dir.join(PEER_KEYS_FILE);
        check_private(&peer_keys_path)?;
        let peer_keys = parse_peer_keys(&peer_keys_path, &read_text(&peer_keys_path)?)?;
        Ok(NodeCredentials { cluster, node, ca, certificate, key, peer_keys, availability })
    }

    /// Like [`NodeCredentials::load`], and checks that they belong to node `expected`.
    pub fn load_for(dir: &Path, expected: NodeId) -> Result<NodeCredentials, CredentialsError> {
        let credentials = NodeCredentials::load(dir)?;
        if credentials.node != expected {
            return Err(CredentialsError::WrongNode { dir: dir.to_path_buf(), found: credentials.node, expected });
        }
        Ok(credentials)
    }
}

/// What a client needs to talk to a cluster over TLS: the cluster and its CA certificate, and a
/// user's client certificate if it proves who it is that way.
#[derive(Debug)]
pub struct ClientTrust {
    pub cluster: ClusterId,
    pub ca: CertificateDer<'static>,
    pub certificate: Option<ClientCertificate>,
}

/// A user's client certificate and its key.
pub struct ClientCertificate {
    pub certificate: CertificateDer<'static>,
    pub key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertificate").field("key", &"(secret)").finish_non_exhaustive()
    }
}

impl ClientCertificate {
    /// Loads `NAME.crt` and, beside it, `NAME.key` (which must be readable by its owner only).
    pub fn load(certificate: &Path) -> Result<ClientCertificate, CredentialsError> {
        let key_path = certificate.with_extension("key");
        check_private(&key_path)?;
        let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| invalid(&key_path, &e.to_string()))?;
        Ok(ClientCertificate { certificate: read_certificate(certificate)?, key })
    }
}

impl ClientTrust {
    /// Loads DIR/client (or any member's folder: it holds the same CA and cluster id).
    pub fn load(dir: &Path) -> Result<ClientTrust, CredentialsError> {
        let path = dir.join(IDENTITY_FILE);
        let cluster = parse_identity(&path, &read_text(&path)?)?.cluster;
        Ok(ClientTrust { cluster, ca: read_certificate(&dir.join(CA_CERT_FILE))?, certificate: None })
    }
}

/// A user to make: name, role, and the key prefix they are confined to (empty: none).
#[derive(Clone, Debug)]
pub struct NewUser {
    pub name: String,
    pub role: Role,
    pub prefix: String,
}

/// The one user `dkv-server init` makes when it is given none: `admin`, who may do everything.
pub fn default_users() -> Vec<NewUser> {
    vec![NewUser { name: "admin".into(), role: Role::Admin, prefix: String::new() }]
}

/// [`init_cluster_with_users`] with the [`default_users`], recording no availability (for
/// tests and tools that give each node its mode themselves).
pub fn init_cluster(dir: &Path, nodes: &[NodeId]) -> Result<ClusterId, CredentialsError> {
    init_cluster_with_users(dir, nodes, &default_users(), None)
}

/// Makes a new cluster's credentials in `dir`, which must not exist yet: a CA, and for each of
/// `nodes` a folder with its certificate, key, the cluster key and the users, and `availability`
/// (whether the cluster runs with configuration changes, when given); plus a folder for
/// clients, with a file per user. Returns the new cluster's id.
pub fn init_cluster_with_users(
    dir: &Path,
    nodes: &[NodeId],
    users: &[NewUser],
    availability: Option<bool>,
) -> Result<ClusterId, CredentialsError> {
    let distinct: std::collections::BTreeSet<u8> = nodes.iter().map(|n| n.0).collect();
    if nodes.is_empty() || distinct.len() != nodes.len() || distinct.iter().any(|&id| id >= 64) {
        return Err(CredentialsError::BadNodes);
    }
    if dir.exists() {
        return Err(CredentialsError::Exists { path: dir.to_path_buf() });
    }
    let cluster = ClusterId(u64::from_le_bytes(random_bytes()?));
    // One key per pair of members, each known to those two alone.
    let mut pair_keys = std::collections::BTreeMap::new();
    for (i, &a) in nodes.iter().enumerate() {
        for &b in &nodes[i + 1..] {
            let key: [u8; PAIR_KEY_BYTES] = random_bytes()?;
            pair_keys.insert((a.min(b), a.max(b)), key);
        }
    }
    let names: std::collections::BTreeSet<&str> = users.iter().map(|u| u.name.as_str()).collect();
    let valid_name = |n: &str| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if names.len() != users.len()
        || !users.iter().all(|u| valid_name(&u.name) && !u.prefix.contains(char::is_whitespace))
    {
        return Err(CredentialsError::BadUsers);
    }
    let mut users_file = String::from("# dkv users, written by `dkv-server init`: NAME ROLE TOKEN [PREFIX]\n");
    let mut tokens = Vec::new();
    for user in users {
        let token: [u8; TOKEN_BYTES] = random_bytes()?;
        users_file += &user_line(&user.name, user.role, &token, &user.prefix);
        tokens.push(token);
    }

    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name.push(DnType::CommonName, format!("dkv cluster {cluster} CA"));
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, &ca_key);

    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|source| CredentialsError::Write { path: parent.to_path_buf(), source })?;
    }
    create_dir(dir)?;
    write_file(&dir.join(CA_CERT_FILE), ca_cert.pem().as_bytes(), false)?;
    write_file(&dir.join(CA_KEY_FILE), ca_key.serialize_pem().as_bytes(), true)?;
    for &node in nodes {
        let node_dir = dir.join(format!("node-{}", node.0));
        create_dir(&node_dir)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, format!("dkv node {} of cluster {cluster}", node.0));
        params.subject_alt_names = vec![
            SanType::DnsName(peer_name(cluster, node).try_into()?),
            SanType::DnsName(cluster_name(cluster).try_into()?),
        ];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &issuer)?;
        let identity = Identity { cluster, node: Some(node), availability };
        write_file(&node_dir.join(IDENTITY_FILE), identity.text().as_bytes(), false)?;
        write_file(&node_dir.join(CA_CERT_FILE), ca_cert.pem().as_bytes(), false)?;
        write_file(&node_dir.join(NODE_CERT_FILE), cert.pem().as_bytes(), false)?;
        write_file(&node_dir.join(NODE_KEY_FILE), key.serialize_pem().as_bytes(), true)?;
        let mut peer_keys = String::from("# the key this member shares with each other member (UDP mode)\n");
        for (&(a, b), key) in &pair_keys {
            if a == node || b == node {
                let other = if a == node { b } else { a };
                peer_keys += &format!("{} {}\n", other.0, hex(key));
            }
        }
        write_file(&node_dir.join(PEER_KEYS_FILE), peer_keys.as_bytes(), true)?;
        write_file(&node_dir.join(USERS_FILE), users_file.as_bytes(), true)?;
    }
    let client_dir = dir.join("client");
    create_dir(&client_dir)?;
    let identity = Identity { cluster, node: None, availability: None };
    write_file(&client_dir.join(IDENTITY_FILE), identity.text().as_bytes(), false)?;
    write_file(&client_dir.join(CA_CERT_FILE), ca_cert.pem().as_bytes(), false)?;
    for (user, token) in users.iter().zip(&tokens) {
        write_file(
            &client_dir.join(format!("{}.user", user.name)),
            client_user_text(&user.name, token).as_bytes(),
            true,
        )?;
        // A client certificate too, for clients that prove who they are in the TLS handshake
        // instead of sending a token: valid for the user's name, for client authentication only.
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, format!("dkv user {} of cluster {cluster}", user.name));
        params.subject_alt_names = vec![SanType::DnsName(user_name(cluster, &user.name).try_into()?)];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &issuer)?;
        write_file(&client_dir.join(format!("{}.crt", user.name)), cert.pem().as_bytes(), false)?;
        write_file(&client_dir.join(format!("{}.key", user.name)), key.serialize_pem().as_bytes(), true)?;
    }
    Ok(cluster)
}

/// What an `identity` file says: the cluster; the node, in a member's folder; and, in a
/// member's folder made since dkv records it, whether the cluster runs with configuration
/// changes.
struct Identity {
    cluster: ClusterId,
    node: Option<NodeId>,
    availability: Option<bool>,
}

impl Identity {
    fn text(&self) -> String {
        let mut text = format!("# dkv identity, written by `dkv-server init`\ncluster {}\n", self.cluster);
        if let Some(node) = self.node {
            text += &format!("node {}\n", node.0);
        }
        if let Some(on) = self.availability {
            text += "# how every node of the cluster runs (dkv-server --availability); change it only with\n";
            text += "# every node stopped, in every node's folder: `dkv-server availability on|off FOLDER`\n";
            text += if on { "availability on\n" } else { "availability off\n" };
        }
        text
    }
}

fn parse_identity(path: &Path, text: &str) -> Result<Identity, CredentialsError> {
    let mut cluster = None;
    let mut node = None;
    let mut availability = None;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        match line.split_once(' ') {
            Some(("cluster", hex)) => {
                let id = u64::from_str_radix(hex.trim(), 16).map_err(|_| invalid(path, "the cluster id is not hex"))?;
                cluster = Some(ClusterId(id));
            }
            Some(("node", id)) => {
                let id: u8 = id.trim().parse().map_err(|_| invalid(path, "the node id is not a number"))?;
                node = Some(NodeId(id));
            }
            Some(("availability", value)) => {
                let bad = |reason: &str| CredentialsError::BadAvailability {
                    path: path.to_path_buf(),
                    reason: reason.into(),
                };
                if availability.is_some() {
                    return Err(bad("it appears twice"));
                }
                availability = Some(match value.trim() {
                    "on" => true,
                    "off" => false,
                    _ => return Err(bad("neither 'on' nor 'off'")),
                });
            }
            _ => return Err(invalid(path, &format!("unexpected line '{line}'"))),
        }
    }
    let cluster = cluster.ok_or_else(|| invalid(path, "it names no cluster"))?;
    Ok(Identity { cluster, node, availability })
}

/// The cluster and node a member's credentials folder `dir` (DIR/node-N) names, and whether it
/// records that the cluster runs with configuration changes: checked before anything is changed.
pub fn node_identity_of(dir: &Path) -> Result<(ClusterId, NodeId, Option<bool>), CredentialsError> {
    let (identity, node) = node_identity(dir)?;
    Ok((identity.cluster, node, identity.availability))
}

fn node_identity(dir: &Path) -> Result<(Identity, NodeId), CredentialsError> {
    let path = dir.join(IDENTITY_FILE);
    let not_a_node = || CredentialsError::NotANodeFolder { dir: dir.to_path_buf() };
    // The cluster's folder, as `init` made it: the CA's key, and no identity of its own.
    if !path.exists() && dir.join(CA_KEY_FILE).exists() {
        return Err(not_a_node());
    }
    let identity = parse_identity(&path, &read_text(&path)?)?;
    let node = identity.node.ok_or_else(not_a_node)?;
    Ok((identity, node))
}

/// Records in a member's credentials folder `dir` (DIR/node-N) whether its cluster runs with
/// configuration changes (`dkv-server availability on|off`). Every node of the cluster must be
/// stopped, and every node's folder changed, before any starts again: a cluster whose nodes run
/// in both ways can serve stale reads. The file is replaced whole (written aside, synced,
/// renamed, the folder synced), so a crash leaves the old one or the new one.
pub fn record_availability(dir: &Path, on: bool) -> Result<(), CredentialsError> {
    let path = dir.join(IDENTITY_FILE);
    let (mut identity, _) = node_identity(dir)?;
    identity.availability = Some(on);
    let aside = dir.join(format!("{IDENTITY_FILE}.new"));
    let io = |source| CredentialsError::Write { path: aside.clone(), source };
    let _ = fs::remove_file(&aside);
    write_file(&aside, identity.text().as_bytes(), false)?;
    // The node's user must still read it: keep the file's mode and owner, whoever runs this.
    let old = fs::metadata(&path).map_err(|source| CredentialsError::Read { path: path.clone(), source })?;
    fs::set_permissions(&aside, old.permissions()).map_err(io)?;
    use std::os::unix::fs::MetadataExt;
    if let Err(source) = std::os::unix::fs::chown(&aside, Some(old.uid()), Some(old.gid())) {
        let _ = fs::remove_file(&aside);
        return Err(CredentialsError::Owner { path, uid: old.uid(), source });
    }
    fs::rename(&aside, &path).map_err(io)?;
    fs::File::open(dir).and_then(|f| f.sync_all()).map_err(io)?;
    Ok(())
}

fn parse_peer_keys(
    path: &Path,
    text: &str,
) -> Result<std::collections::BTreeMap<NodeId, [u8; PAIR_KEY_BYTES]>, CredentialsError> {
    let mut keys = std::collections::BTreeMap::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let bad = || invalid(path, &format!("expected 'MEMBER <{} hex digits>' lines", 2 * PAIR_KEY_BYTES));
        let (member, hex_key) = line.split_once(' ').ok_or_else(bad)?;
        let member: u8 = member.parse().map_err(|_| bad())?;
        let key = super::hex::decode::<PAIR_KEY_BYTES>(hex_key).ok_or_else(bad)?;
        keys.insert(NodeId(member), key);
    }
    Ok(keys)
}

fn read_certificate(path: &Path) -> Result<CertificateDer<'static>, CredentialsError> {
    let text = read_text(path)?;
    CertificateDer::from_pem_slice(text.as_bytes()).map_err(|e| invalid(path, &e.to_string()))
}

fn read_text(path: &Path) -> Result<String, CredentialsError> {
    fs::read_to_string(path).map_err(|source| CredentialsError::Read { path: path.to_path_buf(), source })
}

/// Refuses a secret that anyone but its owner may read.
fn check_private(path: &Path) -> Result<(), CredentialsError> {
    let metadata = fs::metadata(path).map_err(|source| CredentialsError::Read { path: path.to_path_buf(), source })?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(CredentialsError::Exposed { path: path.to_path_buf(), mode });
    }
    Ok(())
}

/// Creates a new folder, readable by its owner only from the start; one that exists already
/// (or a link in its place) is an error, never reused.
fn create_dir(dir: &Path) -> Result<(), CredentialsError> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(|source| CredentialsError::Write { path: dir.to_path_buf(), source })
}

/// Writes a new file; a secret is created with mode 0600, so it is never readable by others,
/// not even for a moment.
fn write_file(path: &Path, bytes: &[u8], secret: bool) -> Result<(), CredentialsError> {
    let error = |source| CredentialsError::Write { path: path.to_path_buf(), source };
    let mode = if secret { 0o600 } else { 0o644 };
    let mut file = OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(error)?;
    file.write_all(bytes).map_err(error)?;
    file.sync_all().map_err(error)
}

fn random_bytes<const N: usize>() -> Result<[u8; N], CredentialsError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| CredentialsError::Random(e.to_string()))?;
    Ok(bytes)
}

fn hex(bytes: &[u8]) -> String {
    super::hex::encode(bytes)
}

fn invalid(path: &Path, reason: &str) -> CredentialsError {
    CredentialsError::Invalid { path: path.to_path_buf(), reason: reason.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What init writes, load reads back: the same cluster, each node its own certificate, one
    /// cluster key for all, and the client folder names the same cluster.
    #[test]
    fn init_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("creds");
        let cluster = init_cluster(&path, &[NodeId(0), NodeId(2)]).unwrap();
        let n0 = NodeCredentials::load_for(&path.join("node-0"), NodeId(0)).unwrap();
        let n2 = NodeCredentials::load(&path.join("node-2")).unwrap();
        assert_eq!((n0.cluster, n0.node, n2.cluster, n2.node), (cluster, NodeId(0), cluster, NodeId(2)));
        assert_ne!(n0.certificate, n2.certificate);
        assert_eq!(n0.peer_keys.get(&NodeId(2)), n2.peer_keys.get(&NodeId(0)), "a pair shares its key");
        assert_eq!(n0.peer_keys.len(), 1, "and holds no other pair's");
        assert_eq!(ClientTrust::load(&path.join("client")).unwrap().cluster, cluster);
        assert!(matches!(
            NodeCredentials::load_for(&path.join("node-2"), NodeId(1)),
            Err(CredentialsError::WrongNode { .. })
        ));
        assert!(matches!(init_cluster(&path, &[NodeId(0)]), Err(CredentialsError::Exists { .. })));
        let shown = format!("{n0:?}");
        assert!(shown.contains("(secret)") && !shown.contains(&hex(&n0.peer_keys[&NodeId(2)])), "{shown}");
    }

    /// How the cluster runs is recorded in every member's folder at once, read back, changed
    /// only by `record_availability` (keeping the rest of the file), and absent from credentials
    /// that never recorded it; a value that is neither on nor off is refused.
    #[test]
    fn availability_is_recorded_for_every_member_and_changed_whole() {
        let dir = tempfile::tempdir().unwrap();
        let nodes = [NodeId(0), NodeId(1), NodeId(2)];
        let on = dir.path().join("on");
        let cluster = init_cluster_with_users(&on, &nodes, &default_users(), Some(true)).unwrap();
        for node in nodes {
            let loaded = NodeCredentials::load_for(&on.join(format!("node-{}", node.0)), node).unwrap();
            assert_eq!((loaded.cluster, loaded.availability), (cluster, Some(true)));
        }
        assert_eq!(ClientTrust::load(&on.join("client")).unwrap().cluster, cluster);

        record_availability(&on.join("node-1"), false).unwrap();
        let changed = NodeCredentials::load_for(&on.join("node-1"), NodeId(1)).unwrap();
        assert_eq!((changed.cluster, changed.availability), (cluster, Some(false)));
        assert!(!on.join("node-1/identity.new").exists(), "nothing is left aside");
        assert_eq!(NodeCredentials::load(&on.join("node-0")).unwrap().availability, Some(true), "one folder only");
        assert!(matches!(record_availability(&on.join("client"), true), Err(CredentialsError::NotANodeFolder { .. })));
        assert!(matches!(record_availability(&on, true), Err(CredentialsError::NotANodeFolder { .. })));
        // The file keeps its mode (and owner), whoever changes it.
        let identity_1 = on.join("node-1/identity");
        fs::set_permissions(&identity_1, fs::Permissions::from_mode(0o600)).unwrap();
        record_availability(&on.join("node-1"), true).unwrap();
        assert_eq!(fs::metadata(&identity_1).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(NodeCredentials::load(&on.join("node-1")).unwrap().availability, Some(true));

        let never = dir.path().join("never");
        init_cluster(&never, &nodes).unwrap();
        assert_eq!(NodeCredentials::load(&never.join("node-0")).unwrap().availability, None);

        let identity = on.join("node-2/identity");
        let text = fs::read_to_string(&identity).unwrap();
        for bad in [text.replace("availability on", "availability maybe"), text.clone() + "availability off\n"] {
            fs::remove_file(&identity).unwrap();
            fs::write(&identity, bad).unwrap();
            let refused = NodeCredentials::load(&on.join("node-2"));
            assert!(matches!(refused, Err(CredentialsError::BadAvailability { .. })), "{refused:?}");
        }
    }

    /// Secrets are written 0600, and a secret others may read is refused with advice.
    #[test]
    fn secrets_are_private_and_exposed_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("creds");
        init_cluster(&path, &[NodeId(0)]).unwrap();
        for secret in ["ca.key", "node-0/node.key", "node-0/peer.keys", "node-0/users"] {
            let mode = fs::metadata(path.join(secret)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{secret}");
        }
        let key = path.join("node-0/node.key");
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        let error = NodeCredentials::load(&path.join("node-0")).err().unwrap();
        assert!(matches!(error, CredentialsError::Exposed { .. }), "{error}");
        assert!(error.to_string().contains("chmod 600"));
    }
}

//! TLS for peer links: mutual authentication with the cluster's CA, TLS 1.3 only.
//!
//! A node opening a link to peer N checks that the certificate it is shown is valid for
//! [`peer_name`]`(cluster, N)`; a node accepting a link checks that the certificate it is shown
//! was issued by the cluster's CA, then finds which member it names ([`PeerTls::identify`]).
//! From then on every frame on the link is that member's: a frame naming another sender, or
//! another cluster, is refused.

use super::credentials::{ClientTrust, NodeCredentials, cluster_name, peer_name, user_name};
use dkv_core::{ClusterId, NodeId, NodeSet};
use rustls::client::verify_server_name;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use std::sync::Arc;
use thiserror::Error;

/// Bytes of TLS records and unsent plaintext rustls may hold for one connection; the
/// connection's own output limit bounds the rest.
pub const TLS_BUFFER_BYTES_MAX: usize = 256 * 1024;

#[derive(Debug, Error)]
pub enum TlsSetupError {
    #[error("the credentials cannot be used for TLS: {0}; make them again with `dkv-server init`")]
    Rustls(#[from] rustls::Error),
    #[error(
        "the CA certificate cannot be used as a trust anchor: {0}; make the credentials again with `dkv-server init`"
    )]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// The TLS configurations of one member, for the links it opens and the ones it accepts.
pub struct PeerTls {
    cluster: ClusterId,
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
}

impl PeerTls {
    pub fn new(credentials: &NodeCredentials) -> Result<PeerTls, TlsSetupError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots.add(credentials.ca.clone())?;
        let roots = Arc::new(roots);
        let chain = vec![credentials.certificate.clone()];
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone()).build()?;
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), credentials.key.clone_key())?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, credentials.key.clone_key())?;
        Ok(PeerTls { cluster: credentials.cluster, client: Arc::new(client), server: Arc::new(server) })
    }

    pub fn cluster(&self) -> ClusterId {
        self.cluster
    }

    /// A TLS session for a link this node opens to member `to`.
    pub fn connect(&self, to: NodeId) -> rustls::Connection {
        rustls::Connection::Client(self.client_session(to))
    }

    /// [`PeerTls::connect`]'s session as a client's, for a blocking stream (a state transfer's
    /// asker: [`crate::transfer::fetch_state`]).
    pub fn client_session(&self, to: NodeId) -> ClientConnection {
        let name = ServerName::try_from(peer_name(self.cluster, to)).expect("a peer name is a valid DNS name");
        let mut session =
            ClientConnection::new(self.client.clone(), name).expect("a client session with a valid configuration");
        session.set_buffer_limit(Some(TLS_BUFFER_BYTES_MAX));
        session
    }

    /// A TLS session for a link a peer opened to this node.
    pub fn accept(&self) -> rustls::Connection {
        let mut session =
            ServerConnection::new(self.server.clone()).expect("a server session with a valid configuration");
        session.set_buffer_limit(Some(TLS_BUFFER_BYTES_MAX));
        rustls::Connection::Server(session)
    }

    /// The member of `members` that `certificate` (already verified as issued by the cluster's
    /// CA, during the handshake) names, if any.
    pub fn identify(&self, certificate: &CertificateDer<'_>, members: NodeSet) -> Option<NodeId> {
        let parsed = ParsedCertificate::try_from(certificate).ok()?;
        members.iter().find(|&node| {
            ServerName::try_from(peer_name(self.cluster, node))
                .is_ok_and(|name| verify_server_name(&parsed, &name).is_ok())
        })
    }
}

/// The TLS configuration a node serves clients with on its client port: its member
/// certificate, which is valid for [`cluster_name`], so a client that trusts the cluster's CA
/// accepts any member. A client may present a user's certificate from the cluster's CA (see
/// [`certificate_is_users`]), or none and authenticate inside with a token.
pub fn client_port_config(credentials: &NodeCredentials) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(credentials.ca.clone())?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![credentials.certificate.clone()], credentials.key.clone_key())?;
    Ok(Arc::new(config))
}

/// Whether `certificate` (verified as issued by the cluster's CA in the handshake) is `user`'s.
pub fn certificate_is_users(certificate: &CertificateDer<'_>, cluster: ClusterId, user: &str) -> bool {
    let Ok(parsed) = ParsedCertificate::try_from(certificate) else { return false };
    ServerName::try_from(user_name(cluster, user)).is_ok_and(|name| verify_server_name(&parsed, &name).is_ok())
}

/// A client's TLS session to any member of the cluster `trust` names.
pub fn client_session(trust: &ClientTrust) -> Result<ClientConnection, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(trust.ca.clone())?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots);
    let config = match &trust.certificate {
        Some(mine) => builder.with_client_auth_cert(vec![mine.certificate.clone()], mine.key.clone_key())?,
        None => builder.with_no_client_auth(),
    };
    let name = ServerName::try_from(cluster_name(trust.cluster)).expect("a cluster name is a valid DNS name");
    Ok(ClientConnection::new(Arc::new(config), name)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::credentials::init_cluster;

    /// Moves TLS records from one session to the other.
    fn pass(from: &mut rustls::Connection, to: &mut rustls::Connection) -> Result<(), rustls::Error> {
        let mut records = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut records).unwrap();
        }
        let mut slice = records.as_slice();
        while !slice.is_empty() {
            to.read_tls(&mut slice).unwrap();
            to.process_new_packets()?;
        }
        Ok(())
    }

    /// Moves TLS records both ways until the handshake had every chance to finish.
    fn handshake(a: &mut rustls::Connection, b: &mut rustls::Connection) -> Result<(), rustls::Error> {
        for _ in 0..5 {
            pass(a, b)?;
            pass(b, a)?;
        }
        Ok(())
    }

    /// Two members of one cluster complete a mutual handshake, and the acceptor learns exactly
    /// which member connected.
    #[test]
    fn members_authenticate_each_other() {
        let dir = tempfile::tempdir().unwrap();
        init_cluster(&dir.path().join("c"), &[NodeId(0), NodeId(1), NodeId(2)]).unwrap();
        let load = |n: u8| NodeCredentials::load(&dir.path().join(format!("c/node-{n}"))).unwrap();
        let (tls0, tls1) = (PeerTls::new(&load(0)).unwrap(), PeerTls::new(&load(1)).unwrap());
        let mut client = tls0.connect(NodeId(1));
        let mut server = tls1.accept();
        handshake(&mut client, &mut server).unwrap();
        assert!(!client.is_handshaking() && !server.is_handshaking());
        let certificate = &server.peer_certificates().unwrap()[0];
        assert_eq!(tls1.identify(certificate, NodeSet::first(3)), Some(NodeId(0)));
        assert_eq!(tls1.identify(certificate, NodeSet::first(3).without(NodeId(0))), None);
    }

    /// A node of another cluster cannot complete a handshake, either way round; and a node
    /// that dials member 1 refuses a server that is member 2.
    #[test]
    fn strangers_and_impostors_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        init_cluster(&dir.path().join("a"), &[NodeId(0), NodeId(1), NodeId(2)]).unwrap();
        init_cluster(&dir.path().join("b"), &[NodeId(0), NodeId(1)]).unwrap();
        let load = |c: &str, n: u8| {
            PeerTls::new(&NodeCredentials::load(&dir.path().join(format!("{c}/node-{n}"))).unwrap()).unwrap()
        };
        let (a0, a2, b1) = (load("a", 0), load("a", 2), load("b", 1));
        assert!(handshake(&mut b1.connect(NodeId(1)), &mut load("a", 1).accept()).is_err());
        assert!(handshake(&mut a0.connect(NodeId(1)), &mut b1.accept()).is_err());
        assert!(handshake(&mut a0.connect(NodeId(1)), &mut a2.accept()).is_err());
    }
}

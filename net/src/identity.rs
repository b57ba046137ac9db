//! Whose a data dir is: the cluster and the node id it was made for, recorded once in its
//! `IDENTITY` file and checked on every later start, so a node never runs on another node's or
//! another cluster's log (a wrong --data-dir, --id or --credentials).
//!
//! The file is 17 bytes, little-endian: the format version (u32), the cluster id (u64), the
//! node id (u8), then the crc32c of those 13 bytes (u32). It is written
//! once (temporary file, fsync, rename, fsync of the dir) and never rewritten.

use dkv_core::{ClusterId, NodeId};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use thiserror::Error;

pub const IDENTITY_FILE_NAME: &str = "IDENTITY";
const FORMAT_VERSION: u32 = 1;
const BODY_BYTES: usize = 4 + 8 + 1;
const FILE_BYTES: usize = BODY_BYTES + 4;

/// The cluster and node a data dir belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    pub cluster: ClusterId,
    pub node: NodeId,
}

/// What the check found, when the data dir may be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentityCheck {
    /// The file names this node of this cluster.
    Matches,
    /// A new data dir: the file was written.
    Recorded,
    /// A data dir with a log from a build before identity files: it was taken as this node's
    /// and the file written.
    Adopted,
}

/// Why a data dir was refused as this node's. Every message says what to do.
#[derive(Debug, Error)]
pub enum IdentityError {
    #[error(
        "data dir {dir} belongs to cluster {recorded}, but this node's credentials are cluster {given}'s; refusing to start rather than mix two clusters' data. Give this node its own cluster's --credentials, or the --data-dir of a node of cluster {given}"
    )]
    OtherCluster { dir: PathBuf, recorded: ClusterId, given: ClusterId },
    #[error(
        "data dir {dir} belongs to cluster {recorded}, but this node was started without --credentials, as a single node of no cluster; refusing to start rather than mix two clusters' data. Give it its cluster's --credentials (DIR/node-N from `dkv-server init`), or another --data-dir"
    )]
    ClusterWithoutCredentials { dir: PathBuf, recorded: ClusterId },
    #[error(
        "data dir {dir} belongs to node {recorded}, but this is node {given}; refusing to start rather than run on another node's log. Start node {recorded} on it with --id {}, or give node {given} its own --data-dir",
        recorded.0
    )]
    OtherNode { dir: PathBuf, recorded: NodeId, given: NodeId },
    #[error(
        "identity file {path} is damaged ({reason}); refusing to start, as it cannot tell whose this data dir is. Check that --data-dir is right and keep the dir as it is; restore the file from a backup of this node, or, only if you are sure the dir is this node's, delete the file and the node adopts the dir again"
    )]
    Damaged { path: PathBuf, reason: String },
    #[error("I/O error on identity file {path}: {source}; check that the data dir is readable and writable")]
    Io { path: PathBuf, source: io::Error },
}

/// Checks that `dir` (already locked by the caller) is `identity`'s, recording `identity` when
/// the dir has no identity file yet. `has_log`: the dir already holds log segments, so it was
/// made by an earlier build and is adopted.
pub fn check_or_record(dir: &Path, identity: Identity, has_log: bool) -> Result<IdentityCheck, IdentityError> {
    let path = dir.join(IDENTITY_FILE_NAME);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            record(dir, identity).map_err(|source| IdentityError::Io { path, source })?;
            return Ok(if has_log { IdentityCheck::Adopted } else { IdentityCheck::Recorded });
        }
        Err(source) => return Err(IdentityError::Io { path, source }),
    };
    let recorded = decode(&bytes).map_err(|reason| IdentityError::Damaged { path, reason })?;
    // A single node without credentials runs as cluster 0 (`event_loop::cluster_of`).
    if recorded.cluster != identity.cluster && identity.cluster == ClusterId(0) {
        return Err(IdentityError::ClusterWithoutCredentials { dir: dir.to_path_buf(), recorded: recorded.cluster });
    }
    if recorded.cluster != identity.cluster {
        return Err(IdentityError::OtherCluster {
            dir: dir.to_path_buf(),
            recorded: recorded.cluster,
            given: identity.cluster,
        });
    }
    if recorded.node != identity.node {
        return Err(IdentityError::OtherNode { dir: dir.to_path_buf(), recorded: recorded.node, given: identity.node });
    }
    Ok(IdentityCheck::Matches)
}

fn record(dir: &Path, identity: Identity) -> io::Result<()> {
    let temporary = dir.join(format!("{IDENTITY_FILE_NAME}.new"));
    let mut file = File::create(&temporary)?;
    file.write_all(&encode(identity))?;
    file.sync_all()?;
    fs::rename(&temporary, dir.join(IDENTITY_FILE_NAME))?;
    File::open(dir)?.sync_all()
}

fn encode(identity: Identity) -> [u8; FILE_BYTES] {
    let mut bytes = [0; FILE_BYTES];
    bytes[0..4].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes[4..12].copy_from_slice(&identity.cluster.0.to_le_bytes());
    bytes[12] = identity.node.0;
    let checksum = crc32c::crc32c(&bytes[..BODY_BYTES]);
    bytes[BODY_BYTES..].copy_from_slice(&checksum.to_le_bytes());
    bytes
}

fn decode(bytes: &[u8]) -> Result<Identity, String> {
    let Ok(bytes) = <&[u8; FILE_BYTES]>::try_from(bytes) else {
        return Err(format!("{} bytes long rather than {FILE_BYTES}", bytes.len()));
    };
    let (body, checksum) = bytes.split_at(BODY_BYTES);
    let checksum = u32::from_le_bytes(checksum.try_into().expect("4 bytes"));
    if crc32c::crc32c(body) != checksum {
        return Err("its checksum does not match".to_string());
    }
    let version = u32::from_le_bytes(body[0..4].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(format!("format version {version}, but this build reads version {FORMAT_VERSION} only"));
    }
    let cluster = ClusterId(u64::from_le_bytes(body[4..12].try_into().expect("8 bytes")));
    Ok(Identity { cluster, node: NodeId(body[12]) })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: Identity = Identity { cluster: ClusterId(0x1234_5678_9abc_def0), node: NodeId(3) };

    #[test]
    fn encoding_reads_back() {
        assert_eq!(decode(&encode(ME)), Ok(ME));
    }

    #[test]
    fn every_flipped_bit_is_caught() {
        let bytes = encode(ME);
        for bit in 0..FILE_BYTES * 8 {
            let mut damaged = bytes;
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&damaged).is_err(), "bit {bit}");
        }
        assert!(decode(&bytes[..FILE_BYTES - 1]).is_err());
        assert!(decode(&[]).is_err());
    }
}

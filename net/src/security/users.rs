//! Users: who may talk to a node as a client, and what each may do.
//!
//! `dkv-server init` makes the users (an `admin` by default, more with `--user`): each gets a
//! random 256-bit token, written to `DIR/client/NAME.user` for the client (mode 0600) and, with
//! the user's role, to every node's `users` file (mode 0600). A node started with
//! `--require-auth` serves only authenticated clients:
//! - over TCP inside TLS, a client sends its user and token once ([`Frame::Auth`]);
//! - over UDP, a client signs each request with HMAC-SHA256 under its token
//!   ([`Frame::SignedRequest`]); a node refuses a signature it has seen, or one made more than
//!   [`FRESHNESS_MS`] from its own clock.
//!
//! Roles are `read` (get), `readwrite` (get and every write) and `admin` (everything, including
//! the administration commands to come); a user may also be confined to keys starting with a
//! prefix.
//!
//! [`Frame::Auth`]: dkv_core::codec::frame::Frame::Auth
//! [`Frame::SignedRequest`]: dkv_core::codec::frame::Frame::SignedRequest

use dkv_core::{Operation, Request};
use ring::hmac;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Bytes of a user's token.
pub const TOKEN_BYTES: usize = 32;
/// How far a signed request's send time may be from the receiving node's clock.
pub const FRESHNESS_MS: u64 = 30_000;
/// Signatures remembered to refuse replays. One older than [`FRESHNESS_MS`] is forgotten (a
/// replay of it is refused as stale); this bounds the rest: past this many signed requests in
/// one freshness window, the oldest are forgotten early, and a replay of one could pass once.
const SIGNATURES_REMEMBERED_MAX: usize = 1 << 20;

/// What a user may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Read,
    ReadWrite,
    Admin,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::ReadWrite => "readwrite",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        [Role::Read, Role::ReadWrite, Role::Admin].into_iter().find(|r| r.name() == s)
    }
}

/// One user, as a node knows them.
#[derive(Clone)]
pub struct User {
    pub name: String,
    pub role: Role,
    /// Keys this user may touch start with this (empty: every key).
    pub prefix: Vec<u8>,
    key: hmac::Key,
    token: [u8; TOKEN_BYTES],
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User").field("name", &self.name).field("role", &self.role).finish_non_exhaustive()
    }
}

impl User {
    pub fn new(name: String, role: Role, prefix: Vec<u8>, token: [u8; TOKEN_BYTES]) -> User {
        User { key: hmac::Key::new(hmac::HMAC_SHA256, &token), name, role, prefix, token }
    }

    /// Why this user may not run `operation`, if they may not.
    pub fn refuses(&self, operation: &Operation) -> Option<String> {
        let (keys, writes): (Vec<&[u8]>, bool) = match operation {
            Operation::Get { key } => (vec![key.as_slice()], false),
            Operation::Txn { ops } => (ops.iter().map(|op| op.key()).collect(), ops.iter().any(|op| op.writes())),
            Operation::Scan { start, end, .. } => {
                // The whole range must lie within the prefix: it starts there and ends no later
                // than the prefix's last key.
                let prefix_end = dkv_core::prefix_end(&self.prefix);
                let within = match (end, &prefix_end) {
                    (_, None) => true,
                    (Some(end), Some(prefix_end)) => end <= prefix_end,
                    (None, Some(_)) => false,
                };
                if !within {
                    return Some(format!(
                        "user {} may only scan keys starting with '{}'; end the scan by that prefix's end",
                        self.name,
                        String::from_utf8_lossy(&self.prefix)
                    ));
                }
                (vec![start.as_slice()], false)
            }
        };
        if writes && self.role == Role::Read {
            return Some(format!("user {} may only read", self.name));
        }
        let outside = keys.into_iter().find(|key| !key.starts_with(&self.prefix))?;
        Some(format!(
            "user {} may only use keys starting with '{}', not '{}'",
            self.name,
            String::from_utf8_lossy(&self.prefix),
            String::from_utf8_lossy(outside)
        ))
    }
}

/// The bytes a signature covers.
pub fn signed_bytes(user: &str, sent_at_ms: u64, request: &Request) -> Vec<u8> {
    postcard::to_allocvec(&(user, sent_at_ms, request)).expect("encoding into a Vec cannot fail")
}

/// Signs a request as `token`'s user would (the client's side).
pub fn sign(token: &[u8; TOKEN_BYTES], user: &str, sent_at_ms: u64, request: &Request) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, token);
    hmac::sign(&key, &signed_bytes(user, sent_at_ms, request)).as_ref().to_vec()
}

/// Why a client's credentials were refused. Every message is safe to send back: none says
/// whether a user exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum AuthError {
    #[error("unknown user or wrong token")]
    BadCredentials,
    #[error("the signed request was made too long ago, or in the future; check the client's clock")]
    Stale,
    #[error("the signed request was seen before (a replay)")]
    Replayed,
}

/// The users a node knows (each named by its index once authenticated), and the signatures it
/// has seen recently.
pub struct Users {
    list: Vec<User>,
    by_name: BTreeMap<String, usize>,
    seen: BTreeMap<Vec<u8>, u64>,
    seen_order: VecDeque<Vec<u8>>,
}

impl Users {
    pub fn new(list: Vec<User>) -> Users {
        let by_name = list.iter().enumerate().map(|(i, u)| (u.name.clone(), i)).collect();
        Users { list, by_name, seen: BTreeMap::new(), seen_order: VecDeque::new() }
    }

    /// The user at `index`, as [`Users::authenticate`] and [`Users::verify_signed`] name them.
    pub fn get(&self, index: usize) -> Option<&User> {
        self.list.get(index)
    }

    /// The users, by index, with their names.
    pub fn names(&self) -> impl Iterator<Item = (usize, &str)> {
        self.list.iter().enumerate().map(|(i, u)| (i, u.name.as_str()))
    }

    /// The user whose token this is, checked in constant time.
    pub fn authenticate(&self, name: &str, token: &[u8]) -> Result<usize, AuthError> {
        let index = *self.by_name.get(name).ok_or(AuthError::BadCredentials)?;
        let user = &self.list[index];
        // Comparing MACs of both under a fixed key compares the tokens in constant time.
        let check = hmac::Key::new(hmac::HMAC_SHA256, b"dkv token comparison");
        let expected = hmac::sign(&check, &user.token);
        hmac::verify(&check, token, expected.as_ref()).map_err(|_| AuthError::BadCredentials)?;
        Ok(index)
    }

    /// The user who signed this request, if the signature holds, is fresh and was not seen
    /// before. Only a valid signature is remembered, so forgeries cannot crowd out real ones.
    pub fn verify_signed(
        &mut self,
        now_ms: u64,
        name: &str,
        sent_at_ms: u64,
        request: &Request,
        mac: &[u8],
    ) -> Result<usize, AuthError> {
        let index = *self.by_name.get(name).ok_or(AuthError::BadCredentials)?;
        let user = &self.list[index];
        hmac::verify(&user.key, &signed_bytes(name, sent_at_ms, request), mac)
            .map_err(|_| AuthError::BadCredentials)?;
        if now_ms.abs_diff(sent_at_ms) > FRESHNESS_MS {
            return Err(AuthError::Stale);
        }
        if self.seen.contains_key(mac) {
            return Err(AuthError::Replayed);
        }
        self.seen.insert(mac.to_vec(), sent_at_ms);
        self.seen_order.push_back(mac.to_vec());
        // Signatures older than the freshness window are refused as stale anyway.
        while let Some(oldest) = self.seen_order.front() {
            let expired = self.seen.get(oldest).is_none_or(|&at| now_ms.saturating_sub(at) > FRESHNESS_MS);
            if !expired && self.seen_order.len() <= SIGNATURES_REMEMBERED_MAX {
                break;
            }
            let oldest = self.seen_order.pop_front().expect("checked above");
            self.seen.remove(&oldest);
        }
        Ok(index)
    }
}

/// Why a users file could not be read or written.
#[derive(Debug, Error)]
pub enum UsersError {
    #[error("{path} may be read by others (mode {mode:o}); it holds a secret: run `chmod 600 {path}`")]
    Exposed { path: PathBuf, mode: u32 },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} line {line}: {reason}; make users with `dkv-server init --user NAME:ROLE[:PREFIX]`")]
    Invalid { path: PathBuf, line: usize, reason: String },
}

/// Reads a node's users file: `NAME ROLE TOKEN_HEX [PREFIX]` per line, `#` for comments.
pub fn load_users(path: &Path) -> Result<Vec<User>, UsersError> {
    let text = std::fs::read_to_string(path).map_err(|source| UsersError::Read { path: path.to_path_buf(), source })?;
    let mut users = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let invalid =
            |reason: &str| UsersError::Invalid { path: path.to_path_buf(), line: i + 1, reason: reason.into() };
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [name, role, token, rest @ ..] = fields.as_slice() else { return Err(invalid("too few fields")) };
        let role = Role::parse(role).ok_or_else(|| invalid("unknown role"))?;
        let token = parse_token(token).ok_or_else(|| invalid("the token is not 64 hex digits"))?;
        let prefix = match rest {
            [] => Vec::new(),
            [prefix] => prefix.as_bytes().to_vec(),
            _ => return Err(invalid("too many fields")),
        };
        users.push(User::new(name.to_string(), role, prefix, token));
    }
    Ok(users)
}

/// What a client holds to prove it is a user: `DIR/client/NAME.user` as `init` writes it.
pub struct ClientUser {
    pub name: String,
    pub token: [u8; TOKEN_BYTES],
}

impl std::fmt::Debug for ClientUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientUser").field("name", &self.name).finish_non_exhaustive()
    }
}

/// The text of a client's user file.
pub fn client_user_text(name: &str, token: &[u8; TOKEN_BYTES]) -> String {
    format!("# a dkv user, written by `dkv-server init`; keep it secret\nuser {name}\ntoken {}\n", hex(token))
}

/// Reads a client's user file (`user NAME` and `token HEX` lines), refusing one that anyone
/// but its owner may read.
pub fn load_client_user(path: &Path) -> Result<ClientUser, UsersError> {
    use std::os::unix::fs::PermissionsExt;
    let metadata = std::fs::metadata(path).map_err(|source| UsersError::Read { path: path.to_path_buf(), source })?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(UsersError::Exposed { path: path.to_path_buf(), mode });
    }
    let text = std::fs::read_to_string(path).map_err(|source| UsersError::Read { path: path.to_path_buf(), source })?;
    let (mut name, mut token) = (None, None);
    for (i, line) in text.lines().enumerate() {
        let invalid =
            |reason: &str| UsersError::Invalid { path: path.to_path_buf(), line: i + 1, reason: reason.into() };
        match line.trim().split_once(' ') {
            Some(("user", value)) => name = Some(value.trim().to_string()),
            Some(("token", value)) => {
                token = Some(parse_token(value).ok_or_else(|| invalid("the token is not 64 hex digits"))?)
            }
            _ if line.trim().is_empty() || line.trim().starts_with('#') => {}
            _ => return Err(invalid("expected 'user NAME' or 'token HEX'")),
        }
    }
    let missing =
        |what: &str| UsersError::Invalid { path: path.to_path_buf(), line: 0, reason: format!("no {what} line") };
    Ok(ClientUser { name: name.ok_or_else(|| missing("user"))?, token: token.ok_or_else(|| missing("token"))? })
}

/// A line of a node's users file.
pub fn user_line(name: &str, role: Role, token: &[u8; TOKEN_BYTES], prefix: &str) -> String {
    let mut line = format!("{name} {} {}", role.name(), hex(token));
    if !prefix.is_empty() {
        line += &format!(" {prefix}");
    }
    line + "\n"
}

pub fn parse_token(text: &str) -> Option<[u8; TOKEN_BYTES]> {
    super::hex::decode(text)
}

pub fn hex(bytes: &[u8]) -> String {
    super::hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dkv_core::{ClientId, RequestId, TxnOp};

    fn user(role: Role, prefix: &str) -> User {
        User::new("ann".into(), role, prefix.as_bytes().to_vec(), [3; TOKEN_BYTES])
    }

    fn get(key: &str) -> Operation {
        Operation::Get { key: key.as_bytes().to_vec() }
    }

    fn put(key: &str) -> Operation {
        Operation::Txn { ops: vec![TxnOp::Put { key: key.as_bytes().to_vec(), value: vec![] }] }
    }

    /// Roles and prefixes decide what a user may do, and a refusal says why.
    #[test]
    fn roles_and_prefixes_are_enforced() {
        assert_eq!(user(Role::ReadWrite, "").refuses(&put("k")), None);
        assert!(user(Role::Read, "").refuses(&put("k")).unwrap().contains("may only read"));
        assert_eq!(user(Role::Read, "").refuses(&get("k")), None);
        assert!(user(Role::Admin, "app/").refuses(&get("other")).unwrap().contains("app/"));
        assert_eq!(user(Role::ReadWrite, "app/").refuses(&put("app/x")), None);
    }

    /// A token authenticates its user only; a signed request verifies once, not when replayed,
    /// altered, stale or signed with another token.
    #[test]
    fn tokens_and_signatures_are_checked() {
        let mut users = Users::new(vec![user(Role::ReadWrite, "")]);
        assert!(users.authenticate("ann", &[3; TOKEN_BYTES]).is_ok());
        assert_eq!(users.authenticate("ann", &[4; TOKEN_BYTES]).err(), Some(AuthError::BadCredentials));
        assert_eq!(users.authenticate("bob", &[3; TOKEN_BYTES]).err(), Some(AuthError::BadCredentials));
        let request = Request { id: RequestId { client: ClientId(1), seq: 1 }, operation: get("k") };
        let mac = sign(&[3; TOKEN_BYTES], "ann", 1_000_000, &request);
        assert!(users.verify_signed(1_000_000, "ann", 1_000_000, &request, &mac).is_ok());
        assert_eq!(users.verify_signed(1_000_000, "ann", 1_000_000, &request, &mac).err(), Some(AuthError::Replayed));
        let other = Request { id: RequestId { client: ClientId(1), seq: 2 }, operation: get("k") };
        assert_eq!(
            users.verify_signed(1_000_000, "ann", 1_000_000, &other, &mac).err(),
            Some(AuthError::BadCredentials)
        );
        let late = sign(&[3; TOKEN_BYTES], "ann", 1_000_000, &other);
        assert_eq!(
            users.verify_signed(1_000_000 + FRESHNESS_MS + 1, "ann", 1_000_000, &other, &late).err(),
            Some(AuthError::Stale)
        );
        let forged = sign(&[4; TOKEN_BYTES], "ann", 1_000_000, &other);
        assert_eq!(
            users.verify_signed(1_000_000, "ann", 1_000_000, &other, &forged).err(),
            Some(AuthError::BadCredentials)
        );
    }
}

//! RESP, the Redis protocol, on the client port: redis-cli, redis-benchmark and every Redis
//! client library talk to dkv as they would to Redis.
//!
//! - [`decode`]: commands off the wire (arrays of bulk strings, inline commands), bounded.
//! - [`reply`]: replies onto the wire, RESP2 or RESP3.
//! - [`command`]: the commands dkv understands, parsed.
//! - [`glob`]: the patterns of `SCAN … MATCH` and `KEYS`.
//! - [`plan`]: each data command as dkv ops, and its reply from their results.
//! - [`session`]: one connection: commands in order, pipelining, MULTI/EXEC, WATCH, AUTH.
//! - [`cursors`]: SCAN's numeric cursors for dkv's key continuation tokens.
//! - [`introspection`]: HELLO, INFO, COMMAND and CONFIG GET answers.
//! - `connection`: a session as the event loop drives it (a [`crate::session::StreamSession`]).

pub mod command;
pub(crate) mod connection;
pub mod cursors;
pub mod decode;
pub mod glob;
pub mod introspection;
pub mod plan;
pub mod reply;
pub mod session;

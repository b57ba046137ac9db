//! RESP, the Redis protocol, on the client port: redis-cli, redis-benchmark and every Redis
//! client library talk to dkv as they would to Redis.
//!
//! - [`decode`]: commands off the wire (arrays of bulk strings, inline commands), bounded.
//! - [`reply`]: replies onto the wire, RESP2 or RESP3.
//! - [`command`]: the commands dkv understands, parsed.
//! - [`glob`]: the patterns of `SCAN … MATCH` and `KEYS`.

pub mod command;
pub mod decode;
pub mod glob;
pub mod reply;

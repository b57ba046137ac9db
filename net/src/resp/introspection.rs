//! What dkv tells Redis clients about itself: HELLO's map, INFO's text, the COMMAND table
//! (names, arities, key positions and docs, as tools read them at startup), and the few
//! CONFIG parameters redis-benchmark asks for.

use super::command::CommandQuery;
use super::reply::{Protocol, Reply};

/// The Redis version dkv answers as: clients turn features on by version, and dkv has those
/// of Redis 7.0 that it supports at all.
pub const REDIS_VERSION_COMPATIBLE: &str = "7.0.0";

/// One command dkv has: name, arity (negative: at least that many), flags, first key,
/// last key, key step (Redis's COMMAND fields), group and summary (COMMAND DOCS).
struct Spec {
    name: &'static str,
    arity: i64,
    flags: &'static [&'static str],
    keys: (i64, i64, i64),
    group: &'static str,
    summary: &'static str,
}

const fn spec(
    name: &'static str,
    arity: i64,
    flags: &'static [&'static str],
    keys: (i64, i64, i64),
    group: &'static str,
    summary: &'static str,
) -> Spec {
    Spec { name, arity, flags, keys, group, summary }
}

const W: &[&str] = &["write"];
const R: &[&str] = &["readonly", "fast"];
const C: &[&str] = &["fast", "no-auth"];
const NONE: (i64, i64, i64) = (0, 0, 0);
const ONE: (i64, i64, i64) = (1, 1, 1);
const ALL: (i64, i64, i64) = (1, -1, 1);

const COMMANDS: &[Spec] = &[
    spec("ping", -1, C, NONE, "connection", "Returns the server's liveliness response."),
    spec("echo", 2, C, NONE, "connection", "Returns the given string."),
    spec(
        "hello",
        -1,
        C,
        NONE,
        "connection",
        "Handshakes with the server, optionally authenticating and choosing RESP2 or RESP3.",
    ),
    spec("auth", -2, C, NONE, "connection", "Authenticates the connection as a dkv user (AUTH user token)."),
    spec("select", 2, C, NONE, "connection", "Selects database 0, the only one dkv has."),
    spec("quit", -1, C, NONE, "connection", "Closes the connection."),
    spec("client", -2, C, NONE, "connection", "CLIENT SETNAME, GETNAME, SETINFO and ID."),
    spec(
        "command",
        -1,
        &["loading", "stale"],
        NONE,
        "server",
        "Returns detailed information about the commands dkv supports.",
    ),
    spec("info", -1, &["loading", "stale"], NONE, "server", "Returns information about the node."),
    spec("dbsize", 1, R, NONE, "server", "Returns the number of keys on the node asked."),
    spec("config", -2, &["admin"], NONE, "server", "CONFIG GET: the few parameters clients read."),
    spec("get", 2, R, ONE, "string", "Returns the value of a key."),
    spec("set", -3, W, ONE, "string", "Sets the value of a key (NX, XX and GET; no expiry)."),
    spec("setnx", 3, W, ONE, "string", "Sets the value of a key only if it does not exist."),
    spec("getset", 3, W, ONE, "string", "Sets a key and returns its previous value."),
    spec("getdel", 2, W, ONE, "string", "Deletes a key and returns its value."),
    spec("mget", -2, R, ALL, "string", "Returns the values of keys, read atomically across the cluster."),
    spec("mset", -3, W, (1, -1, 2), "string", "Sets keys, atomically across the cluster."),
    spec("msetnx", -3, W, (1, -1, 2), "string", "Sets keys only if none of them exists, atomically."),
    spec("del", -2, W, ALL, "generic", "Deletes keys, atomically across the cluster."),
    spec("unlink", -2, W, ALL, "generic", "Deletes keys, atomically across the cluster (as DEL)."),
    spec("exists", -2, R, ALL, "generic", "Counts the keys that exist."),
    spec("incr", 2, W, ONE, "string", "Increments the integer value of a key by one."),
    spec("incrby", 3, W, ONE, "string", "Increments the integer value of a key by a number."),
    spec("decr", 2, W, ONE, "string", "Decrements the integer value of a key by one."),
    spec("decrby", 3, W, ONE, "string", "Decrements the integer value of a key by a number."),
    spec("append", 3, W, ONE, "string", "Appends to the value of a key."),
    spec("strlen", 2, R, ONE, "string", "Returns the length of a value."),
    spec("scan", -2, &["readonly"], NONE, "generic", "Iterates over keys in key order, page by page."),
    spec(
        "keys",
        2,
        &["readonly"],
        NONE,
        "generic",
        "Returns the keys matching a pattern (bounded: use SCAN for many).",
    ),
    spec("multi", 1, C, NONE, "transactions", "Starts a transaction: EXEC runs it atomically across the cluster."),
    spec("exec", 1, &[], NONE, "transactions", "Runs the queued commands as one atomic dkv transaction."),
    spec("discard", 1, C, NONE, "transactions", "Discards the queued commands."),
    spec("watch", -2, C, ALL, "transactions", "Makes the next EXEC fail if a watched key's value changes."),
    spec("unwatch", 1, C, NONE, "transactions", "Forgets the watched keys."),
];

fn info_of(spec: &Spec) -> Reply {
    let (first, last, step) = spec.keys;
    let flags = spec.flags.iter().map(|f| Reply::Simple(f)).collect();
    Reply::Array(vec![
        Reply::bulk(spec.name),
        Reply::Integer(spec.arity),
        Reply::Array(flags),
        Reply::Integer(first),
        Reply::Integer(last),
        Reply::Integer(step),
        Reply::Array(Vec::new()),
        Reply::Array(Vec::new()),
        Reply::Array(Vec::new()),
        Reply::Array(Vec::new()),
    ])
}

fn docs_of(spec: &Spec) -> Reply {
    Reply::Map(vec![
        (Reply::bulk("summary"), Reply::bulk(spec.summary)),
        (Reply::bulk("since"), Reply::bulk("1.0.0")),
        (Reply::bulk("group"), Reply::bulk(spec.group)),
    ])
}

fn find(name: &[u8]) -> Option<&'static Spec> {
    COMMANDS.iter().find(|spec| spec.name.as_bytes().eq_ignore_ascii_case(name))
}

/// The answer to a COMMAND query.
pub fn command_reply(query: &CommandQuery) -> Reply {
    match query {
        CommandQuery::All => Reply::Array(COMMANDS.iter().map(info_of).collect()),
        CommandQuery::Count => Reply::Integer(COMMANDS.len() as i64),
        CommandQuery::List => Reply::Array(COMMANDS.iter().map(|spec| Reply::bulk(spec.name)).collect()),
        CommandQuery::Info(names) if names.is_empty() => Reply::Array(COMMANDS.iter().map(info_of).collect()),
        CommandQuery::Info(names) => {
            Reply::Array(names.iter().map(|name| find(name).map_or(Reply::Null, info_of)).collect())
        }
        CommandQuery::Docs(names) => {
            let specs: Vec<&Spec> = if names.is_empty() {
                COMMANDS.iter().collect()
            } else {
                names.iter().filter_map(|n| find(n)).collect()
            };
            Reply::Map(specs.into_iter().map(|spec| (Reply::bulk(spec.name), docs_of(spec))).collect())
        }
    }
}

/// HELLO's answer: who is speaking, in which protocol.
pub fn hello_reply(protocol: Protocol, connection_id: u64) -> Reply {
    let version = match protocol {
        Protocol::Resp2 => 2,
        Protocol::Resp3 => 3,
    };
    Reply::Map(vec![
        (Reply::bulk("server"), Reply::bulk("dkv")),
        (Reply::bulk("version"), Reply::bulk(REDIS_VERSION_COMPATIBLE)),
        (Reply::bulk("proto"), Reply::Integer(version)),
        (Reply::bulk("id"), Reply::Integer(connection_id as i64)),
        (Reply::bulk("mode"), Reply::bulk("standalone")),
        (Reply::bulk("role"), Reply::bulk("master")),
        (Reply::bulk("modules"), Reply::Array(Vec::new())),
    ])
}

/// What INFO tells about the node.
pub struct NodeFacts {
    pub node_id: u8,
    pub members: usize,
    /// The node's key count; `None` for a user confined to a key prefix, who may not learn
    /// how many keys lie outside it.
    pub keys: Option<u64>,
}

/// INFO's text: the fields tools read (`redis_version`, `redis_mode`, the
/// keyspace line), and dkv's own.
pub fn info_text(facts: &NodeFacts) -> String {
    format!(
        "# Server\r\nredis_version:{REDIS_VERSION_COMPATIBLE}\r\nredis_mode:standalone\r\ndkv_version:{}\r\ndkv_node_id:{}\r\ndkv_members:{}\r\narch_bits:64\r\nmultiplexing_api:epoll\r\n\r\n# Persistence\r\naof_enabled:1\r\ndkv_durability:every write is fsynced on every member before it is acknowledged\r\n\r\n# Replication\r\nrole:master\r\nconnected_slaves:0\r\n{}",
        env!("CARGO_PKG_VERSION"),
        facts.node_id,
        facts.members,
        facts.keys.map_or(String::new(), |keys| format!("\r\n# Keyspace\r\ndb0:keys={keys},expires=0,avg_ttl=0\r\n")),
    )
}

/// CONFIG GET's answer: name and value of each parameter matched, among the few dkv reports
/// (redis-benchmark reads `save` and `appendonly` at startup).
pub fn config_get(patterns: &[Vec<u8>]) -> Reply {
    const PARAMETERS: &[(&str, &str)] =
        &[("save", ""), ("appendonly", "yes"), ("appendfsync", "always"), ("databases", "1")];
    let pairs = PARAMETERS
        .iter()
        .filter(|(name, _)| patterns.iter().any(|p| super::glob::matches(&p.to_ascii_lowercase(), name.as_bytes())))
        .map(|&(name, value)| (Reply::bulk(name), Reply::bulk(value)))
        .collect();
    Reply::Map(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command the parser takes is in the table, so COMMAND never hides one.
    #[test]
    fn table_lists_every_supported_command() {
        for spec in COMMANDS {
            let args = vec![spec.name.as_bytes().to_vec(); spec.arity.unsigned_abs() as usize];
            let parsed = super::super::command::parse(args);
            let unknown = matches!(&parsed, Err(Reply::Error(text)) if text.contains("unknown command"));
            assert!(!unknown, "{} is in the table but not parsed", spec.name);
        }
        assert_eq!(command_reply(&CommandQuery::Count), Reply::Integer(COMMANDS.len() as i64));
    }

    /// redis-benchmark needs `save` and `appendonly` as name/value pairs.
    #[test]
    fn config_get_answers_what_redis_benchmark_asks() {
        let mut out = Vec::new();
        config_get(&[b"save".to_vec()]).encode(Protocol::Resp2, &mut out);
        assert_eq!(out, b"*2\r\n$4\r\nsave\r\n$0\r\n\r\n");
        assert_eq!(config_get(&[b"nothing".to_vec()]), Reply::Map(Vec::new()));
    }
}

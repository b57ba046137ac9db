//! The Redis commands dkv understands, parsed from a command's arguments into what they ask
//! for, with Redis's own error messages for wrong arities, bad options and bad numbers, and
//! dkv's where it differs (no expiry, one database, commands it does not have).

use super::reply::Reply;

pub type Bytes = Vec<u8>;

/// A command, its arguments checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Ping(Option<Bytes>),
    Echo(Bytes),
    /// `HELLO [protover [AUTH user password] [SETNAME name]]`.
    Hello {
        protocol: Option<i64>,
        auth: Option<(Bytes, Bytes)>,
    },
    /// `AUTH [user] password`.
    Auth {
        user: Option<Bytes>,
        password: Bytes,
    },
    Select(i64),
    Quit,
    /// `COMMAND`, `COMMAND COUNT`, `COMMAND DOCS [name…]`, `COMMAND INFO [name…]`,
    /// `COMMAND LIST`.
    CommandInfo(CommandQuery),
    Info,
    DbSize,
    /// `CONFIG GET parameter…`: the few parameters clients read at startup.
    ConfigGet(Vec<Bytes>),
    /// `CLIENT SETNAME`, `CLIENT SETINFO`, `CLIENT GETNAME`, `CLIENT ID`: what client
    /// libraries send at connect time.
    Client(ClientCall),
    Data(DataCommand),
    Multi,
    Exec,
    Discard,
    Watch(Vec<Bytes>),
    Unwatch,
    /// `SCAN cursor [MATCH pattern] [COUNT count]`.
    Scan {
        cursor: Bytes,
        pattern: Option<Bytes>,
        count: Option<u32>,
    },
    Keys(Bytes),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandQuery {
    All,
    Count,
    Docs(Vec<Bytes>),
    Info(Vec<Bytes>),
    List,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientCall {
    SetName(Bytes),
    GetName,
    SetInfo,
    Id,
}

/// A command that reads or writes keys: it becomes one dkv request (or one part of an EXEC).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataCommand {
    Get(Bytes),
    Set {
        key: Bytes,
        value: Bytes,
        only: Option<SetOnly>,
        get: bool,
    },
    SetNx {
        key: Bytes,
        value: Bytes,
    },
    GetSet {
        key: Bytes,
        value: Bytes,
    },
    GetDel(Bytes),
    MGet(Vec<Bytes>),
    MSet(Vec<(Bytes, Bytes)>),
    MSetNx(Vec<(Bytes, Bytes)>),
    /// DEL and UNLINK: dkv frees memory at once either way.
    Del(Vec<Bytes>),
    Exists(Vec<Bytes>),
    /// INCR, INCRBY, DECR, DECRBY.
    IncrBy {
        key: Bytes,
        by: i64,
    },
    Append {
        key: Bytes,
        value: Bytes,
    },
    Strlen(Bytes),
}

impl DataCommand {
    /// The command's name, as Redis users know it.
    pub fn name(&self) -> &'static str {
        match self {
            DataCommand::Get(_) => "GET",
            DataCommand::Set { .. } => "SET",
            DataCommand::SetNx { .. } => "SETNX",
            DataCommand::GetSet { .. } => "GETSET",
            DataCommand::GetDel(_) => "GETDEL",
            DataCommand::MGet(_) => "MGET",
            DataCommand::MSet(_) => "MSET",
            DataCommand::MSetNx(_) => "MSETNX",
            DataCommand::Del(_) => "DEL",
            DataCommand::Exists(_) => "EXISTS",
            DataCommand::IncrBy { by: 1, .. } => "INCR",
            DataCommand::IncrBy { by: -1, .. } => "DECR",
            DataCommand::IncrBy { .. } => "INCRBY",
            DataCommand::Append { .. } => "APPEND",
            DataCommand::Strlen(_) => "STRLEN",
        }
    }
}

/// SET's NX (only if absent) and XX (only if present).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetOnly {
    Absent,
    Present,
}

/// The message Redis gives for a number it cannot take.
pub const NOT_AN_INTEGER: &str = "value is not an integer or out of range";

fn wrong_arity(name: &str) -> Reply {
    Reply::err(format!("wrong number of arguments for '{}' command", name.to_ascii_lowercase()))
}

fn syntax_error() -> Reply {
    Reply::err("syntax error")
}

fn no_expiry(option: &str) -> Reply {
    Reply::err(format!(
        "dkv keeps every key until it is deleted: it has no expiry, so SET's {option} option is not supported"
    ))
}

fn integer(arg: &[u8]) -> Result<i64, Reply> {
    std::str::from_utf8(arg).ok().and_then(|s| s.parse().ok()).ok_or_else(|| Reply::err(NOT_AN_INTEGER))
}

/// Parses a command's arguments (its name first, any case). `Err` is the reply to give
/// instead of running it.
pub fn parse(args: Vec<Bytes>) -> Result<Command, Reply> {
    let mut args = args.into_iter();
    let Some(name) = args.next() else { return Err(Reply::err("empty command")) };
    let name_text = String::from_utf8_lossy(&name).to_ascii_uppercase();
    let rest: Vec<Bytes> = args.collect();
    let n = rest.len();
    let arity = |ok: bool| if ok { Ok(()) } else { Err(wrong_arity(&name_text)) };
    let single_key = |rest: Vec<Bytes>| rest.into_iter().next().expect("arity checked");
    let data = |command: DataCommand| Ok(Command::Data(command));
    match name_text.as_str() {
        "PING" => {
            arity(n <= 1)?;
            Ok(Command::Ping(rest.into_iter().next()))
        }
        "ECHO" => {
            arity(n == 1)?;
            Ok(Command::Echo(single_key(rest)))
        }
        "HELLO" => parse_hello(rest),
        "AUTH" => match n {
            1 => Ok(Command::Auth { user: None, password: single_key(rest) }),
            2 => {
                let mut rest = rest.into_iter();
                let user = rest.next();
                Ok(Command::Auth { user, password: rest.next().expect("two arguments") })
            }
            _ => Err(wrong_arity(&name_text)),
        },
        "SELECT" => {
            arity(n == 1)?;
            Ok(Command::Select(integer(&rest[0])?))
        }
        "QUIT" => Ok(Command::Quit),
        "COMMAND" => parse_command_query(rest),
        "INFO" => Ok(Command::Info),
        "DBSIZE" => {
            arity(n == 0)?;
            Ok(Command::DbSize)
        }
        "CONFIG" => {
            let sub = rest.first().map(|s| String::from_utf8_lossy(s).to_ascii_uppercase());
            match sub.as_deref() {
                Some("GET") if n >= 2 => Ok(Command::ConfigGet(rest[1..].to_vec())),
                Some("GET") => Err(wrong_arity("config|get")),
                _ => Err(Reply::err(
                    "dkv's configuration is set when a node starts (dkv-server flags); CONFIG only has GET",
                )),
            }
        }
        "CLIENT" => {
            let sub = rest.first().map(|s| String::from_utf8_lossy(s).to_ascii_uppercase());
            match sub.as_deref() {
                Some("SETNAME") if n == 2 => Ok(Command::Client(ClientCall::SetName(rest[1].clone()))),
                Some("GETNAME") if n == 1 => Ok(Command::Client(ClientCall::GetName)),
                Some("SETINFO") if n == 3 => Ok(Command::Client(ClientCall::SetInfo)),
                Some("ID") if n == 1 => Ok(Command::Client(ClientCall::Id)),
                Some(sub @ ("SETNAME" | "GETNAME" | "SETINFO" | "ID")) => {
                    Err(wrong_arity(&format!("client|{}", sub.to_ascii_lowercase())))
                }
                _ => Err(Reply::err("dkv supports CLIENT SETNAME, GETNAME, SETINFO and ID only")),
            }
        }
        "GET" => {
            arity(n == 1)?;
            data(DataCommand::Get(single_key(rest)))
        }
        "SET" => parse_set(rest),
        "SETNX" => {
            arity(n == 2)?;
            let [key, value] = two(rest);
            data(DataCommand::SetNx { key, value })
        }
        "GETSET" => {
            arity(n == 2)?;
            let [key, value] = two(rest);
            data(DataCommand::GetSet { key, value })
        }
        "GETDEL" => {
            arity(n == 1)?;
            data(DataCommand::GetDel(single_key(rest)))
        }
        "MGET" => {
            arity(n >= 1)?;
            data(DataCommand::MGet(rest))
        }
        "MSET" | "MSETNX" => {
            arity(n >= 2 && n.is_multiple_of(2))?;
            let mut pairs = Vec::with_capacity(n / 2);
            let mut rest = rest.into_iter();
            while let (Some(key), Some(value)) = (rest.next(), rest.next()) {
                pairs.push((key, value));
            }
            data(if name_text == "MSET" { DataCommand::MSet(pairs) } else { DataCommand::MSetNx(pairs) })
        }
        "DEL" | "UNLINK" => {
            arity(n >= 1)?;
            data(DataCommand::Del(rest))
        }
        "EXISTS" => {
            arity(n >= 1)?;
            data(DataCommand::Exists(rest))
        }
        "INCR" | "DECR" => {
            arity(n == 1)?;
            let by = if name_text == "INCR" { 1 } else { -1 };
            data(DataCommand::IncrBy { key: single_key(rest), by })
        }
        "INCRBY" | "DECRBY" => {
            arity(n == 2)?;
            let by = integer(&rest[1])?;
            let by = if name_text == "INCRBY" {
                by
            } else {
                by.checked_neg().ok_or_else(|| Reply::err("decrement would overflow"))?
            };
            let [key, _] = two(rest);
            data(DataCommand::IncrBy { key, by })
        }
        "APPEND" => {
            arity(n == 2)?;
            let [key, value] = two(rest);
            data(DataCommand::Append { key, value })
        }
        "STRLEN" => {
            arity(n == 1)?;
            data(DataCommand::Strlen(single_key(rest)))
        }
        "MULTI" => {
            arity(n == 0)?;
            Ok(Command::Multi)
        }
        "EXEC" => {
            arity(n == 0)?;
            Ok(Command::Exec)
        }
        "DISCARD" => {
            arity(n == 0)?;
            Ok(Command::Discard)
        }
        "WATCH" => {
            arity(n >= 1)?;
            Ok(Command::Watch(rest))
        }
        "UNWATCH" => {
            arity(n == 0)?;
            Ok(Command::Unwatch)
        }
        "SCAN" => parse_scan(rest),
        "KEYS" => {
            arity(n == 1)?;
            Ok(Command::Keys(single_key(rest)))
        }
        "SETEX" | "PSETEX" | "EXPIRE" | "PEXPIRE" | "EXPIREAT" | "PEXPIREAT" | "TTL" | "PTTL" | "PERSIST" | "GETEX"
        | "EXPIRETIME" | "PEXPIRETIME" => Err(Reply::err(format!(
            "dkv keeps every key until it is deleted: it has no expiry, so it does not support '{name_text}'"
        ))),
        _ => Err(Reply::err(format!(
            "unknown command '{}', dkv does not support it",
            String::from_utf8_lossy(&name).chars().take(128).collect::<String>()
        ))),
    }
}

/// The two arguments of a command whose arity was checked to be two.
fn two(rest: Vec<Bytes>) -> [Bytes; 2] {
    let mut rest = rest.into_iter();
    let first = rest.next().expect("arity checked");
    let second = rest.next().expect("arity checked");
    [first, second]
}

fn parse_hello(rest: Vec<Bytes>) -> Result<Command, Reply> {
    let mut rest = rest.into_iter();
    let Some(version) = rest.next() else { return Ok(Command::Hello { protocol: None, auth: None }) };
    let protocol = integer(&version).map_err(|_| Reply::err("Protocol version is not an integer or out of range"))?;
    let mut auth = None;
    while let Some(option) = rest.next() {
        match String::from_utf8_lossy(&option).to_ascii_uppercase().as_str() {
            "AUTH" => match (rest.next(), rest.next()) {
                (Some(user), Some(password)) => auth = Some((user, password)),
                _ => return Err(syntax_error()),
            },
            "SETNAME" => {
                rest.next().ok_or_else(syntax_error)?;
            }
            _ => return Err(syntax_error()),
        }
    }
    Ok(Command::Hello { protocol: Some(protocol), auth })
}

fn parse_command_query(rest: Vec<Bytes>) -> Result<Command, Reply> {
    let Some(sub) = rest.first() else { return Ok(Command::CommandInfo(CommandQuery::All)) };
    let names = rest[1..].to_vec();
    let query = match String::from_utf8_lossy(sub).to_ascii_uppercase().as_str() {
        "COUNT" => CommandQuery::Count,
        "DOCS" => CommandQuery::Docs(names),
        "INFO" => CommandQuery::Info(names),
        "LIST" => CommandQuery::List,
        _ => return Err(Reply::err("dkv supports COMMAND, COMMAND COUNT, DOCS, INFO and LIST")),
    };
    Ok(Command::CommandInfo(query))
}

fn parse_set(rest: Vec<Bytes>) -> Result<Command, Reply> {
    if rest.len() < 2 {
        return Err(wrong_arity("set"));
    }
    let mut rest = rest.into_iter();
    let key = rest.next().expect("checked");
    let value = rest.next().expect("checked");
    let (mut only, mut get) = (None, false);
    for option in rest {
        match String::from_utf8_lossy(&option).to_ascii_uppercase().as_str() {
            "NX" if only.is_none() => only = Some(SetOnly::Absent),
            "XX" if only.is_none() => only = Some(SetOnly::Present),
            "GET" => get = true,
            expiry @ ("EX" | "PX" | "EXAT" | "PXAT" | "KEEPTTL") => return Err(no_expiry(expiry)),
            _ => return Err(syntax_error()),
        }
    }
    if get && only == Some(SetOnly::Absent) {
        // Were the key present, the old value would have to come back from a transaction that
        // did not run: one atomic dkv transaction cannot both fail its condition and read.
        return Err(Reply::err(
            "dkv does not support SET with both NX and GET; use SET … GET with XX, or GET then SET NX",
        ));
    }
    Ok(Command::Data(DataCommand::Set { key, value, only, get }))
}

fn parse_scan(rest: Vec<Bytes>) -> Result<Command, Reply> {
    let mut rest = rest.into_iter();
    let Some(cursor) = rest.next() else { return Err(wrong_arity("scan")) };
    let (mut pattern, mut count) = (None, None);
    while let Some(option) = rest.next() {
        match String::from_utf8_lossy(&option).to_ascii_uppercase().as_str() {
            "MATCH" => pattern = Some(rest.next().ok_or_else(syntax_error)?),
            "COUNT" => {
                let n = integer(&rest.next().ok_or_else(syntax_error)?)?;
                if n < 1 {
                    return Err(syntax_error());
                }
                count = Some(u32::try_from(n).unwrap_or(u32::MAX));
            }
            "TYPE" => {
                // Every dkv value is a string.
                let kind = rest.next().ok_or_else(syntax_error)?;
                if !kind.eq_ignore_ascii_case(b"string") {
                    return Err(Reply::err("dkv holds strings only: SCAN's TYPE can only be 'string'"));
                }
            }
            _ => return Err(syntax_error()),
        }
    }
    Ok(Command::Scan { cursor, pattern, count })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_words(line: &str) -> Result<Command, Reply> {
        parse(line.split(' ').map(|w| w.as_bytes().to_vec()).collect())
    }

    fn b(s: &str) -> Bytes {
        s.as_bytes().to_vec()
    }

    /// Names are case-blind and options parse into what they ask for.
    #[test]
    fn commands_parse_into_what_they_ask() {
        assert_eq!(parse_words("get k"), Ok(Command::Data(DataCommand::Get(b("k")))));
        assert_eq!(
            parse_words("SET k v xx GET"),
            Ok(Command::Data(DataCommand::Set { key: b("k"), value: b("v"), only: Some(SetOnly::Present), get: true }))
        );
        assert_eq!(
            parse_words("MSET a 1 b 2"),
            Ok(Command::Data(DataCommand::MSet(vec![(b("a"), b("1")), (b("b"), b("2"))])))
        );
        assert_eq!(parse_words("DECRBY n 5"), Ok(Command::Data(DataCommand::IncrBy { key: b("n"), by: -5 })));
        assert_eq!(
            parse_words("SCAN 0 MATCH user:* COUNT 100"),
            Ok(Command::Scan { cursor: b("0"), pattern: Some(b("user:*")), count: Some(100) })
        );
        assert_eq!(
            parse_words("HELLO 3 AUTH alice secret"),
            Ok(Command::Hello { protocol: Some(3), auth: Some((b("alice"), b("secret"))) })
        );
        assert_eq!(parse_words("AUTH secret"), Ok(Command::Auth { user: None, password: b("secret") }));
    }

    /// Errors are Redis's words, or dkv's where it does less than Redis.
    #[test]
    fn errors_say_what_redis_says_or_what_dkv_lacks() {
        let error = |line: &str| match parse_words(line) {
            Err(Reply::Error(text)) => text,
            other => panic!("{line}: {other:?}"),
        };
        assert_eq!(error("GET"), "ERR wrong number of arguments for 'get' command");
        assert_eq!(error("MSET a 1 b"), "ERR wrong number of arguments for 'mset' command");
        assert_eq!(error("INCRBY n x"), "ERR value is not an integer or out of range");
        assert_eq!(error("DECRBY n -9223372036854775808"), "ERR decrement would overflow");
        assert_eq!(error("SET k v NX XX"), "ERR syntax error");
        assert!(error("SET k v EX 10").contains("no expiry"), "{}", error("SET k v EX 10"));
        assert!(error("EXPIRE k 10").contains("no expiry"));
        assert_eq!(error("FLUSHALL"), "ERR unknown command 'FLUSHALL', dkv does not support it");
        assert!(error("SET k v NX GET").contains("NX and GET"));
    }
}

//! What dkv answers Redis clients: RESP values, encoded for the protocol version the
//! connection chose with HELLO (RESP2 by default, RESP3 after `HELLO 3`).

/// The protocol version a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Resp2,
    Resp3,
}

/// One reply, in the shapes Redis replies take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`: a short status without CR or LF.
    Simple(&'static str),
    /// `-ERR …`: the message starts with its code (`ERR`, `NOAUTH`, `BUSY`, …).
    Error(String),
    Integer(i64),
    Bulk(Vec<u8>),
    /// No value: `$-1` in RESP2, `_` in RESP3.
    Null,
    /// No array (EXEC after a WATCH failed): `*-1` in RESP2, `_` in RESP3.
    NullArray,
    Array(Vec<Reply>),
    /// A map in RESP3 (`%`), a flat array of keys and values in RESP2.
    Map(Vec<(Reply, Reply)>),
}

impl Reply {
    pub fn ok() -> Reply {
        Reply::Simple("OK")
    }

    /// An error with Redis's generic `ERR` code.
    pub fn err(message: impl std::fmt::Display) -> Reply {
        Reply::Error(format!("ERR {message}"))
    }

    pub fn bulk(bytes: impl Into<Vec<u8>>) -> Reply {
        Reply::Bulk(bytes.into())
    }

    /// A bulk string, or null for nothing.
    pub fn bulk_or_null(value: Option<Vec<u8>>) -> Reply {
        value.map_or(Reply::Null, Reply::Bulk)
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    /// Appends the encoding of this reply to `out`.
    pub fn encode(&self, protocol: Protocol, out: &mut Vec<u8>) {
        match self {
            Reply::Simple(text) => line(out, b'+', text.as_bytes()),
            // An error's text is one line: any CR or LF in a message becomes a space.
            Reply::Error(text) => {
                let text: Vec<u8> = text.bytes().map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }).collect();
                line(out, b'-', &text)
            }
            Reply::Integer(n) => line(out, b':', n.to_string().as_bytes()),
            Reply::Bulk(bytes) => {
                line(out, b'$', bytes.len().to_string().as_bytes());
                out.extend_from_slice(bytes);
                out.extend_from_slice(b"\r\n");
            }
            Reply::Null => match protocol {
                Protocol::Resp2 => out.extend_from_slice(b"$-1\r\n"),
                Protocol::Resp3 => out.extend_from_slice(b"_\r\n"),
            },
            Reply::NullArray => match protocol {
                Protocol::Resp2 => out.extend_from_slice(b"*-1\r\n"),
                Protocol::Resp3 => out.extend_from_slice(b"_\r\n"),
            },
            Reply::Array(items) => {
                line(out, b'*', items.len().to_string().as_bytes());
                for item in items {
                    item.encode(protocol, out);
                }
            }
            Reply::Map(pairs) => {
                match protocol {
                    Protocol::Resp2 => line(out, b'*', (2 * pairs.len()).to_string().as_bytes()),
                    Protocol::Resp3 => line(out, b'%', pairs.len().to_string().as_bytes()),
                }
                for (key, value) in pairs {
                    key.encode(protocol, out);
                    value.encode(protocol, out);
                }
            }
        }
    }
}

fn line(out: &mut Vec<u8>, kind: u8, text: &[u8]) {
    out.push(kind);
    out.extend_from_slice(text);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(reply: &Reply, protocol: Protocol) -> String {
        let mut out = Vec::new();
        reply.encode(protocol, &mut out);
        String::from_utf8(out).unwrap()
    }

    /// Each shape encodes as Redis's does, nulls and maps differently in RESP2 and RESP3.
    #[test]
    fn each_shape_encodes_as_redis_does() {
        use Protocol::*;
        assert_eq!(encoded(&Reply::ok(), Resp2), "+OK\r\n");
        assert_eq!(encoded(&Reply::err("no\r\nway"), Resp2), "-ERR no  way\r\n");
        assert_eq!(encoded(&Reply::Integer(-7), Resp2), ":-7\r\n");
        assert_eq!(encoded(&Reply::bulk("a\r\nb"), Resp2), "$4\r\na\r\nb\r\n");
        assert_eq!(encoded(&Reply::Null, Resp2), "$-1\r\n");
        assert_eq!(encoded(&Reply::Null, Resp3), "_\r\n");
        assert_eq!(encoded(&Reply::NullArray, Resp2), "*-1\r\n");
        assert_eq!(encoded(&Reply::NullArray, Resp3), "_\r\n");
        let array = Reply::Array(vec![Reply::bulk("x"), Reply::Null]);
        assert_eq!(encoded(&array, Resp2), "*2\r\n$1\r\nx\r\n$-1\r\n");
        let map = Reply::Map(vec![(Reply::bulk("proto"), Reply::Integer(3))]);
        assert_eq!(encoded(&map, Resp2), "*2\r\n$5\r\nproto\r\n:3\r\n");
        assert_eq!(encoded(&map, Resp3), "%1\r\n$5\r\nproto\r\n:3\r\n");
    }
}

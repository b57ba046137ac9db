//! Decoding what Redis clients send: commands as RESP arrays of bulk strings
//! (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`), or as inline commands, one per line (`PING\r\n`), the way
//! telnet users and redis-benchmark's `PING_INLINE` speak.
//!
//! The decoder is a pure function of the bytes received so far: it takes one whole command off
//! the front, says it needs more bytes, or says why the stream is not RESP (the connection is
//! then answered `-ERR Protocol error: …` and closed, as Redis does). Every count and length is
//! checked against [`DecodeLimits`] before anything is buffered or allocated for it, so no
//! header can make the node reserve more than the limits allow, and nothing here panics.

use thiserror::Error;

/// The longest inline command line, as Redis's own limit (`PROTO_INLINE_MAX_SIZE`).
pub const INLINE_BYTES_MAX: usize = 64 * 1024;
/// The longest header line (`*N` or `$N`): far more than any valid count needs.
const HEADER_BYTES_MAX: usize = 32;

/// How large a command may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Arguments in one command, the command's name included.
    pub args_max: usize,
    /// Bytes of one argument.
    pub arg_bytes_max: usize,
    /// Bytes of all arguments of one command.
    pub command_bytes_max: usize,
}

impl DecodeLimits {
    /// Limits that let through every command dkv's limits allow: MSET with a full transaction's
    /// keys and values, a value of the largest size, and no more.
    pub fn for_limits(limits: &dkv_core::Limits) -> DecodeLimits {
        let ops = limits.txn_ops_max as usize;
        DecodeLimits {
            // MSET k v k v … (two per op) plus the command's name and a few options.
            args_max: 2 * ops + 16,
            arg_bytes_max: (limits.value_bytes_max.max(limits.key_bytes_max)) as usize,
            command_bytes_max: limits.txn_bytes_max as usize + (2 * ops + 16) * 16,
        }
    }
}

/// Why the bytes received are not a RESP command stream. The message is what Redis says in
/// `-ERR Protocol error: …`, with dkv's limit where one was passed.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ProtocolError {
    #[error("invalid multibulk length")]
    InvalidArrayLength,
    #[error("a command of {count} arguments is over dkv's limit of {max}; split it")]
    TooManyArgs { count: u64, max: usize },
    #[error("expected '$', got '{found}'")]
    ExpectedBulk { found: char },
    #[error("invalid bulk length")]
    InvalidBulkLength,
    #[error("an argument of {len} bytes is over dkv's limit of {max}")]
    ArgTooLarge { len: u64, max: usize },
    #[error("a command of more than {max} bytes is over dkv's limit; split it")]
    CommandTooLarge { max: usize },
    #[error("a bulk string does not end with CRLF")]
    MissingCrlf,
    #[error("too big inline request")]
    InlineTooLarge,
    #[error("unbalanced quotes in request")]
    UnbalancedQuotes,
    /// Not the bytes' fault but their pace: the rest of a command never came.
    #[error("a command did not complete within {seconds} s")]
    Incomplete { seconds: u64 },
}

/// One decoded command: its arguments, the name first, and the bytes it took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    pub args: Vec<Vec<u8>>,
    pub consumed: usize,
}

/// Takes one command off the front of `input`: `Ok(None)` while it is incomplete. An empty
/// command (an empty inline line, `*0`, `*-1`) decodes to no arguments; callers skip it, as
/// Redis does. (A fresh [`Decoder`] over the whole input: for tests and one-shot use.)
pub fn decode_command(input: &[u8], limits: &DecodeLimits) -> Result<Option<Decoded>, ProtocolError> {
    let mut decoder = Decoder::default();
    let mut at = 0;
    loop {
        let (used, command) = decoder.decode(&input[at..], limits)?;
        at += used;
        if let Some(args) = command {
            return Ok(Some(Decoded { args, consumed: at }));
        }
        if used == 0 {
            return Ok(None);
        }
    }
}

/// A command's arguments, its name first.
pub type Args = Vec<Vec<u8>>;

/// A decoder that resumes where it stopped: the arguments of a command that has not fully
/// arrived are kept, not parsed again, so a client that sends a command a byte at a time costs
/// each byte once (plus a header of at most a few dozen bytes), never the whole command again.
#[derive(Debug, Default)]
pub struct Decoder {
    state: State,
}

#[derive(Debug, Default)]
enum State {
    /// Between commands.
    #[default]
    Idle,
    /// Inside an array: the arguments still to come, those taken, and their bytes.
    Array { remaining: usize, args: Vec<Vec<u8>>, total: usize },
    /// Inside an inline command: the bytes already searched for its end.
    Inline { searched: usize },
}

impl Decoder {
    /// Decodes from the front of `input`: the bytes it took (the caller removes them before
    /// the next call, and hands the rest again with more), and a command once one is whole.
    pub fn decode(&mut self, input: &[u8], limits: &DecodeLimits) -> Result<(usize, Option<Args>), ProtocolError> {
        let mut at = 0;
        loop {
            let rest = &input[at..];
            match &mut self.state {
                State::Idle => match rest.first() {
                    None => return Ok((at, None)),
                    Some(b'*') => {
                        let Some((header, used)) = line(rest, HEADER_BYTES_MAX) else {
                            return if rest.len() > HEADER_BYTES_MAX + 2 {
                                Err(ProtocolError::InvalidArrayLength)
                            } else {
                                Ok((at, None))
                            };
                        };
                        let count = parse_integer(&header[1..]).ok_or(ProtocolError::InvalidArrayLength)?;
                        at += used;
                        if count <= 0 {
                            return Ok((at, Some(Vec::new())));
                        }
                        if count as u64 > limits.args_max as u64 {
                            return Err(ProtocolError::TooManyArgs { count: count as u64, max: limits.args_max });
                        }
                        let remaining = count as usize;
                        // Reserve for the arguments announced, but no more than a few: a header
                        // costs nothing to send.
                        self.state = State::Array { remaining, args: Vec::with_capacity(remaining.min(16)), total: 0 };
                    }
                    Some(_) => self.state = State::Inline { searched: 0 },
                },
                State::Array { remaining, args, total } => {
                    match rest.first() {
                        None => return Ok((at, None)),
                        Some(b'$') => {}
                        Some(&other) => return Err(ProtocolError::ExpectedBulk { found: char::from(other) }),
                    }
                    let Some((header, header_len)) = line(rest, HEADER_BYTES_MAX) else {
                        return if rest.len() > HEADER_BYTES_MAX + 2 {
                            Err(ProtocolError::InvalidBulkLength)
                        } else {
                            Ok((at, None))
                        };
                    };
                    let len = parse_integer(&header[1..]).ok_or(ProtocolError::InvalidBulkLength)?;
                    let len = u64::try_from(len).map_err(|_| ProtocolError::InvalidBulkLength)?;
                    if len > limits.arg_bytes_max as u64 {
                        return Err(ProtocolError::ArgTooLarge { len, max: limits.arg_bytes_max });
                    }
                    let len = len as usize;
                    if *total + len > limits.command_bytes_max {
                        return Err(ProtocolError::CommandTooLarge { max: limits.command_bytes_max });
                    }
                    let body = &rest[header_len..];
                    if body.len() < len + 2 {
                        // The header is parsed again next time (a few bytes); the body is not.
                        return Ok((at, None));
                    }
                    if &body[len..len + 2] != b"\r\n" {
                        return Err(ProtocolError::MissingCrlf);
                    }
                    args.push(body[..len].to_vec());
                    *total += len;
                    *remaining -= 1;
                    at += header_len + len + 2;
                    if *remaining == 0 {
                        let args = std::mem::take(args);
                        self.state = State::Idle;
                        return Ok((at, Some(args)));
                    }
                }
                State::Inline { searched } => {
                    let window = &rest[(*searched).min(rest.len())..rest.len().min(INLINE_BYTES_MAX + 2)];
                    let Some(offset) = window.iter().position(|&b| b == b'\n') else {
                        if rest.len() > INLINE_BYTES_MAX {
                            return Err(ProtocolError::InlineTooLarge);
                        }
                        *searched = rest.len();
                        return Ok((at, None));
                    };
                    let end = *searched + offset;
                    let text = &rest[..end];
                    let text = text.strip_suffix(b"\r").unwrap_or(text);
                    let args = split_inline(text)?;
                    if args.len() > limits.args_max {
                        return Err(ProtocolError::TooManyArgs { count: args.len() as u64, max: limits.args_max });
                    }
                    self.state = State::Idle;
                    return Ok((at + end + 1, Some(args)));
                }
            }
        }
    }
}

/// The line at the front of `input` without its terminator, and the bytes it took with the
/// terminator; `None` while no `\n` has arrived within `max` bytes.
fn line(input: &[u8], max: usize) -> Option<(&[u8], usize)> {
    let end = input.iter().take(max + 2).position(|&b| b == b'\n')?;
    let text = &input[..end];
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    Some((text, end + 1))
}

/// A decimal integer as Redis's headers write it (an optional minus sign, then digits).
fn parse_integer(text: &[u8]) -> Option<i64> {
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// Splits an inline command into arguments as Redis does: separated by spaces, and quoted with
/// `"…"` (escapes `\n`, `\r`, `\t`, `\b`, `\a`, `\\`, `\"`, `\xHH`) or `'…'` (escape `\'`); a
/// closing quote must be followed by a space or the end.
fn split_inline(text: &[u8]) -> Result<Vec<Vec<u8>>, ProtocolError> {
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < text.len() && text[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == text.len() {
            return Ok(args);
        }
        let mut arg = Vec::new();
        match text[i] {
            b'"' => {
                i += 1;
                loop {
                    match text.get(i) {
                        None => return Err(ProtocolError::UnbalancedQuotes),
                        Some(b'"') => break,
                        Some(b'\\') if i + 3 < text.len() && text[i + 1] == b'x' => {
                            let hex = |b: u8| (b as char).to_digit(16);
                            if let (Some(high), Some(low)) = (hex(text[i + 2]), hex(text[i + 3])) {
                                arg.push((high * 16 + low) as u8);
                                i += 4;
                            } else {
                                arg.push(b'x');
                                i += 2;
                            }
                        }
                        Some(b'\\') if i + 1 < text.len() => {
                            arg.push(match text[i + 1] {
                                b'n' => b'\n',
                                b'r' => b'\r',
                                b't' => b'\t',
                                b'b' => 0x08,
                                b'a' => 0x07,
                                other => other,
                            });
                            i += 2;
                        }
                        Some(&b) => {
                            arg.push(b);
                            i += 1;
                        }
                    }
                }
                i += 1;
                if text.get(i).is_some_and(|b| !b.is_ascii_whitespace()) {
                    return Err(ProtocolError::UnbalancedQuotes);
                }
            }
            b'\'' => {
                i += 1;
                loop {
                    match text.get(i) {
                        None => return Err(ProtocolError::UnbalancedQuotes),
                        Some(b'\'') => break,
                        Some(b'\\') if text.get(i + 1) == Some(&b'\'') => {
                            arg.push(b'\'');
                            i += 2;
                        }
                        Some(&b) => {
                            arg.push(b);
                            i += 1;
                        }
                    }
                }
                i += 1;
                if text.get(i).is_some_and(|b| !b.is_ascii_whitespace()) {
                    return Err(ProtocolError::UnbalancedQuotes);
                }
            }
            _ => {
                while i < text.len() && !text[i].is_ascii_whitespace() {
                    arg.push(text[i]);
                    i += 1;
                }
            }
        }
        args.push(arg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: DecodeLimits = DecodeLimits { args_max: 8, arg_bytes_max: 16, command_bytes_max: 40 };

    fn decode(input: &[u8]) -> Result<Option<Decoded>, ProtocolError> {
        decode_command(input, &LIMITS)
    }

    fn args(list: &[&str]) -> Vec<Vec<u8>> {
        list.iter().map(|a| a.as_bytes().to_vec()).collect()
    }

    /// An array of bulk strings decodes to its arguments, byte for byte, binary included, and
    /// takes exactly its own bytes (the next command stays for the next call).
    #[test]
    fn array_of_bulk_strings_decodes_exactly() {
        let input = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na\r\n\0\r\n*1\r\n$4\r\nPING\r\n";
        let first = decode(input).unwrap().unwrap();
        assert_eq!(first.args, vec![b"SET".to_vec(), b"k".to_vec(), b"a\r\n\0".to_vec()]);
        let second = decode(&input[first.consumed..]).unwrap().unwrap();
        assert_eq!(second.args, args(&["PING"]));
        assert_eq!(first.consumed + second.consumed, input.len());
    }

    /// Every strict prefix of a command is "incomplete", never an error or a command.
    #[test]
    fn every_prefix_is_incomplete() {
        let input = b"*2\r\n$4\r\nECHO\r\n$5\r\nhello\r\n";
        for end in 0..input.len() {
            assert_eq!(decode(&input[..end]), Ok(None), "prefix of {end} bytes");
        }
        assert!(decode(input).unwrap().is_some());
        let inline = b"SET k \"a b\"\r\n";
        for end in 0..inline.len() - 1 {
            assert_eq!(decode(&inline[..end]), Ok(None), "inline prefix of {end} bytes");
        }
    }

    /// Inline commands split on spaces, honour both quote styles and their escapes, and take
    /// a bare `\n` as the end of the line too.
    #[test]
    fn inline_commands_split_like_redis() {
        let decoded = decode(b"SET  k \"a \\\"b\\\"\\x41\\n\" 'it\\'s'\r\n").unwrap().unwrap();
        assert_eq!(decoded.args, args(&["SET", "k", "a \"b\"A\n", "it's"]));
        assert_eq!(decode(b"PING\n").unwrap().unwrap().args, args(&["PING"]));
        assert_eq!(decode(b"\r\n").unwrap().unwrap().args, Vec::<Vec<u8>>::new());
        assert_eq!(decode(b"GET \"k\r\n"), Err(ProtocolError::UnbalancedQuotes));
        assert_eq!(decode(b"GET \"k\"x\r\n"), Err(ProtocolError::UnbalancedQuotes));
    }

    /// Limits are checked from the headers, before the bytes they announce arrive.
    #[test]
    fn limits_are_checked_from_headers() {
        assert_eq!(decode(b"*9\r\n"), Err(ProtocolError::TooManyArgs { count: 9, max: 8 }));
        assert_eq!(decode(b"*1\r\n$17\r\n"), Err(ProtocolError::ArgTooLarge { len: 17, max: 16 }));
        assert_eq!(
            decode(b"*3\r\n$16\r\n0123456789abcdef\r\n$16\r\n0123456789abcdef\r\n$16\r\n"),
            Err(ProtocolError::CommandTooLarge { max: 40 })
        );
        assert_eq!(decode(&[b'x'; INLINE_BYTES_MAX + 1]), Err(ProtocolError::InlineTooLarge));
        assert_eq!(decode(b"*99999999999999999999999999999999999"), Err(ProtocolError::InvalidArrayLength));
    }

    /// Garbage is a protocol error naming what was wrong, as Redis names it.
    #[test]
    fn garbage_is_a_protocol_error() {
        assert_eq!(decode(b"*x\r\n"), Err(ProtocolError::InvalidArrayLength));
        assert_eq!(decode(b"*1\r\n:1\r\n"), Err(ProtocolError::ExpectedBulk { found: ':' }));
        assert_eq!(decode(b"*1\r\n$-1\r\n"), Err(ProtocolError::InvalidBulkLength));
        assert_eq!(decode(b"*1\r\n$1\r\nab\r\n"), Err(ProtocolError::MissingCrlf));
        assert_eq!(decode(b"*0\r\n").unwrap().unwrap(), Decoded { args: Vec::new(), consumed: 4 });
        assert_eq!(ProtocolError::InvalidArrayLength.to_string(), "invalid multibulk length");
    }

    /// Random bytes never panic the decoder, and what it takes is never more than it was given.
    #[test]
    fn random_bytes_never_panic() {
        let mut rng = crate::testing::SplitMix64(13);
        let alphabet = b"*$\r\n0123456789-: \"'\\xaPING";
        for _ in 0..20_000 {
            let len = rng.below(40) as usize;
            let input: Vec<u8> = (0..len).map(|_| alphabet[rng.below(alphabet.len() as u64) as usize]).collect();
            if let Ok(Some(decoded)) = decode(&input) {
                assert!(decoded.consumed <= input.len());
            }
        }
    }
}

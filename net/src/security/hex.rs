//! Keys and tokens as the text files that hold them spell them: lowercase hex.

/// `bytes` as lowercase hex.
pub fn encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Exactly `2 * N` hex digits (surrounding white space ignored) as `N` bytes; `None` otherwise.
pub fn decode<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.trim();
    if text.len() != 2 * N || !text.is_ascii() {
        return None;
    }
    let mut bytes = [0u8; N];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    /// Decoding what was encoded gives the bytes back; wrong lengths and non-hex are refused.
    #[test]
    fn round_trips_and_refuses_bad_text() {
        let bytes = [0x00, 0x7f, 0xff, 0x10];
        assert_eq!(super::decode::<4>(&super::encode(&bytes)), Some(bytes));
        assert_eq!(super::decode::<4>("00ff"), None);
        assert_eq!(super::decode::<2>("zz00"), None);
    }
}

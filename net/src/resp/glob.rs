//! Redis's glob patterns, for `SCAN … MATCH` and `KEYS`: `*` (any run of bytes), `?` (one
//! byte), `[abc]`, `[^abc]`, `[a-z]` (one byte from a set), and `\x` (the byte `x` itself).
//!
//! Matching is the classic one-star backtracking walk: when a later `*` is met, earlier ones
//! never need revisiting, so a match costs O(pattern × key) at worst, never exponential time
//! (a hostile pattern cannot stall the node).

/// Whether `key` matches `pattern`.
pub fn matches(pattern: &[u8], key: &[u8]) -> bool {
    let mut unlimited = u64::MAX;
    matches_within(pattern, key, &mut unlimited).expect("no match takes 2^64 steps")
}

/// Whether `key` matches `pattern`, spending at most `budget` steps (a step is one byte of the
/// key or of a class looked at), taken from `budget`; `None` when it ran out first. A SCAN page
/// shares one budget among its keys, so a hostile pattern costs the event loop a bounded time.
pub fn matches_within(pattern: &[u8], key: &[u8], budget: &mut u64) -> Option<bool> {
    let (mut p, mut k) = (0, 0);
    // Where to resume after the last `*`: the pattern just past it, and the key byte it
    // would take next.
    let mut resume: Option<(usize, usize)> = None;
    while k < key.len() {
        *budget = budget.checked_sub(1)?;
        let step = match pattern.get(p) {
            Some(b'*') => {
                resume = Some((p + 1, k));
                p += 1;
                continue;
            }
            Some(b'?') => Some(p + 1),
            Some(b'[') => {
                let (matched, looked_at) = match_class(pattern, p, key[k]);
                *budget = budget.checked_sub(looked_at)?;
                matched
            }
            Some(b'\\') if p + 1 < pattern.len() => (pattern[p + 1] == key[k]).then_some(p + 2),
            Some(&literal) => (literal == key[k]).then_some(p + 1),
            None => None,
        };
        match (step, resume) {
            (Some(next), _) => {
                p = next;
                k += 1;
            }
            (None, Some((star_p, star_k))) => {
                // Let the last `*` take one more byte and try again from there.
                resume = Some((star_p, star_k + 1));
                p = star_p;
                k = star_k + 1;
            }
            (None, None) => return Some(false),
        }
    }
    Some(pattern[p.min(pattern.len())..].iter().all(|&b| b == b'*'))
}

/// Matches `byte` against the class `[…]` opening at `pattern[open]`: the pattern index past
/// the class if it matches, and the pattern bytes looked at. An unclosed class runs to the end
/// of the pattern, as in Redis.
fn match_class(pattern: &[u8], open: usize, byte: u8) -> (Option<usize>, u64) {
    let mut i = open + 1;
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut found = false;
    while i < pattern.len() && pattern[i] != b']' {
        if pattern[i] == b'\\' && i + 1 < pattern.len() {
            found |= pattern[i + 1] == byte;
            i += 2;
        } else if i + 2 < pattern.len() && pattern[i + 1] == b'-' && pattern[i + 2] != b']' {
            let (low, high) = (pattern[i].min(pattern[i + 2]), pattern[i].max(pattern[i + 2]));
            found |= (low..=high).contains(&byte);
            i += 3;
        } else {
            found |= pattern[i] == byte;
            i += 1;
        }
    }
    let end = (i + 1).min(pattern.len());
    ((found != negate).then_some(end), (i - open) as u64)
}

/// The bytes every key matching `pattern` starts with: the pattern up to its first special
/// byte, escapes resolved. A scan for the pattern need only visit keys with this prefix.
pub fn literal_prefix(pattern: &[u8]) -> Vec<u8> {
    let mut prefix = Vec::new();
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            b'*' | b'?' | b'[' => break,
            b'\\' if i + 1 < pattern.len() => {
                prefix.push(pattern[i + 1]);
                i += 2;
            }
            b'\\' => break,
            byte => {
                prefix.push(byte);
                i += 1;
            }
        }
    }
    prefix
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pattern language as Redis's documentation shows it.
    #[test]
    fn patterns_match_as_redis_documents() {
        let cases: &[(&str, &str, bool)] = &[
            ("h?llo", "hello", true),
            ("h?llo", "hllo", false),
            ("h*llo", "hllo", true),
            ("h*llo", "heeeello", true),
            ("h[ae]llo", "hallo", true),
            ("h[ae]llo", "hillo", false),
            ("h[^e]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-b]llo", "hbllo", true),
            ("h[a-b]llo", "hcllo", false),
            ("*", "", true),
            ("user:*", "user:1", true),
            ("user:*", "users", false),
            ("a\\*b", "a*b", true),
            ("a\\*b", "axb", false),
            ("*a*b*c", "xxaxxbxxc", true),
            ("*a*b*c", "xxaxxcxxb", false),
            ("", "", true),
            ("", "x", false),
        ];
        for &(pattern, key, expected) in cases {
            assert_eq!(matches(pattern.as_bytes(), key.as_bytes()), expected, "{pattern} against {key}");
        }
    }

    /// A pattern built to make naive backtracking exponential answers at once.
    #[test]
    fn hostile_patterns_stay_linear() {
        let pattern = "*a".repeat(50) + "b";
        let key = "a".repeat(4000);
        assert!(!matches(pattern.as_bytes(), key.as_bytes()));
    }

    /// The budget bounds the work: a long class against a long key runs out instead of
    /// running on, and an ample budget gives the same answer as no budget.
    #[test]
    fn the_budget_bounds_the_work() {
        let pattern = format!("*[{}]x", "a".repeat(1000));
        let key = "b".repeat(1000);
        let mut budget = 10_000;
        assert_eq!(matches_within(pattern.as_bytes(), key.as_bytes(), &mut budget), None);
        let mut ample = u64::MAX;
        assert_eq!(matches_within(b"user:*", b"user:7", &mut ample), Some(true));
        assert!(u64::MAX - ample < 10);
    }

    #[test]
    fn literal_prefix_stops_at_the_first_special_byte() {
        assert_eq!(literal_prefix(b"user:*"), b"user:");
        assert_eq!(literal_prefix(b"a\\*b?"), b"a*b");
        assert_eq!(literal_prefix(b"*"), b"");
        assert_eq!(literal_prefix(b"plain"), b"plain");
    }
}

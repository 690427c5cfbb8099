//! The keys of the indexes that find a name by a needle of any length: which rows hold each
//! of the needle's characters or pairs of adjacent characters. The LIKE still decides; these
//! only have to find every name that holds the needle (and may find more).
//!
//! SQLite keeps them in an FTS5 table (`students_name_grams`, its migration says why in hex
//! and with case kept) for needles of one or two characters; PostgreSQL in an integer array
//! column with a GIN index (`name_grams`, its migration says why a column) for every needle.

/// An FTS5 query for a needle of one or two characters in `students_name_grams`: the needle
/// in every ASCII case (at most four spellings), each spelled in hex as the table's tokens are.
pub(super) fn sqlite_tokens(needle: &str) -> String {
    let mut spellings = vec![String::new()];
    for c in needle.chars() {
        let cases = if c.is_ascii_alphabetic() {
            vec![c.to_ascii_lowercase(), c.to_ascii_uppercase()]
        } else {
            vec![c]
        };
        spellings = spellings
            .iter()
            .flat_map(|s| cases.iter().map(move |&c| format!("{s}{c}")))
            .collect();
    }
    spellings
        .iter()
        .map(|s| {
            let hex: String = s.bytes().map(|b| format!("{b:02X}")).collect();
            format!("\"{hex}\"")
        })
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// The tokens `students_name_grams` holds for `name` on SQLite, spelled exactly as its
/// migration's view `students_name_grams_source` spells them (a contentless FTS5 table forgets
/// a row only when told the same tokens again): at each of the first 100 characters, the
/// character and the character with the next (the last alone), each in uppercase hex of its
/// UTF-8 bytes, all separated by spaces.
pub fn sqlite_tokens_of(name: &str) -> String {
    fn hex(out: &mut String, text: &str) {
        for b in text.bytes() {
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
        }
    }
    let starts: Vec<usize> = name.char_indices().map(|(i, _)| i).collect();
    let end = |i: usize| starts.get(i).copied().unwrap_or(name.len());
    let mut out = String::with_capacity(name.len() * 6);
    for i in 0..starts.len().min(100) {
        if i > 0 {
            out.push(' ');
        }
        hex(&mut out, &name[starts[i]..end(i + 1)]);
        out.push(' ');
        hex(&mut out, &name[starts[i]..end(i + 2)]);
    }
    out
}

/// PostgreSQL's keys of a name as `lower()` lowered it: a key for each character and each pair
/// of adjacent characters, sorted, each the same integer as the migration's
/// `students_name_grams` makes (a test in `tests/api` holds them to it).
pub(super) fn pg_keys(lowered: &str) -> Vec<i32> {
    let chars: Vec<char> = lowered.chars().collect();
    let mut keys = Vec::with_capacity(chars.len() * 2);
    for (i, &c) in chars.iter().enumerate() {
        keys.push(pg_key(c, None));
        if let Some(&next) = chars.get(i + 1) {
            keys.push(pg_key(c, Some(next)));
        }
    }
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// `pg_keys` as an `int4[]` literal, for a statement that binds every row's keys in one array.
pub(super) fn pg_keys_literal(lowered: &str) -> String {
    let listed: Vec<String> = pg_keys(lowered).iter().map(i32::to_string).collect();
    format!("{{{}}}", listed.join(","))
}

/// The keys every name that holds `needle` (lowered as the LIKE's pattern is) has, as an
/// `int4[]` literal: its pairs, or its one character. `None` for an empty needle.
pub(super) fn pg_needle_keys(needle: &str) -> Option<String> {
    let chars: Vec<char> = needle.chars().collect();
    let keys: Vec<i32> = match chars.as_slice() {
        [] => return None,
        [one] => vec![pg_key(*one, None)],
        _ => chars.windows(2).map(|w| pg_key(w[0], Some(w[1]))).collect(),
    };
    let listed: Vec<String> = keys.iter().map(i32::to_string).collect();
    Some(format!("{{{}}}", listed.join(",")))
}

/// Two code points cut to 16 bits, side by side in 32: a shared key only makes a candidate
/// that the LIKE turns away. The shift wraps as PostgreSQL's `<<` does.
fn pg_key(c: char, next: Option<char>) -> i32 {
    let high = (c as u32 & 0xFFFF) << 16;
    let low = next.map_or(0, |n| n as u32 & 0xFFFF);
    (high | low) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_tokens_are_each_character_and_pair_in_hex_the_last_alone() {
        assert_eq!(sqlite_tokens_of("Ab"), "41 4162 62 62");
        assert_eq!(sqlite_tokens_of("ë!"), "C3AB C3AB21 21 21", "UTF-8 bytes");
        assert_eq!(sqlite_tokens_of(&"x".repeat(120)).split(' ').count(), 200);
    }

    #[test]
    fn a_short_needle_is_looked_up_in_each_ascii_case_as_hex_tokens() {
        assert_eq!(sqlite_tokens("q"), "\"71\" OR \"51\"");
        assert_eq!(
            sqlite_tokens("a1"),
            "\"6131\" OR \"4131\"",
            "digits have one case"
        );
        assert_eq!(sqlite_tokens("zq").matches(" OR ").count(), 3);
        assert_eq!(
            sqlite_tokens("ë"),
            "\"C3AB\"",
            "SQLite's LIKE folds ASCII only"
        );
    }

    #[test]
    fn a_name_has_a_key_for_each_character_and_pair() {
        let keys = pg_keys("zoe");
        let z = 'z' as i32;
        let o = 'o' as i32;
        let e = 'e' as i32;
        let mut expected = vec![z << 16, o << 16, e << 16, z << 16 | o, o << 16 | e];
        expected.sort_unstable();
        assert_eq!(keys, expected);
        assert_eq!(
            pg_keys("aaaa").len(),
            2,
            "a character and its pair, once each"
        );
        assert!(pg_keys("").is_empty());
    }

    #[test]
    fn a_needle_asks_for_its_pairs_or_its_one_character() {
        assert_eq!(
            pg_needle_keys("x"),
            Some(format!("{{{}}}", ('x' as i32) << 16))
        );
        let oe = ('o' as i32) << 16 | 'e' as i32;
        assert_eq!(pg_needle_keys("oe"), Some(format!("{{{oe}}}")));
        assert_eq!(pg_needle_keys("zoe").unwrap().matches(',').count(), 1);
        assert_eq!(pg_needle_keys(""), None);
        // Each key of the needle is one of a name's that holds it.
        let name = pg_keys("chloé 😀 o'neil");
        for needle in ["é", "loé", "😀 o", "'n"] {
            let keys = pg_needle_keys(needle).unwrap();
            for key in keys.trim_matches(|c| c == '{' || c == '}').split(',') {
                assert!(name.contains(&key.parse().unwrap()), "{needle}: {key}");
            }
        }
    }
}

//! Django's password validators, with its defaults except the length: at least 12 characters,
//! not entirely digits, not one of the 20,000 most common passwords, not too like the username;
//! and one of this project's: at least 5 different characters (`aaaaaaaaaaaa` is on no list,
//! and first in every guesser's).
//! The same rules for every way a password is set (`create-staff`, `staff set-password`, the
//! change-password page).
//!
//! `common-passwords.txt` is Django's list (`django/contrib/auth/common-passwords.txt.gz`,
//! Django 5.2, BSD-3-Clause; compiled by Royce Williams from leaked passwords), lower-cased, one
//! per line.

use std::collections::HashSet;
use std::sync::OnceLock;

/// The shortest password accepted.
pub const MIN_CHARS: usize = 12;
/// Fewer different characters than this is a repetition, not a password.
const MIN_DISTINCT: usize = 5;
/// Django's `UserAttributeSimilarityValidator.DEFAULT_MAX_SIMILARITY`.
const MAX_SIMILARITY: f64 = 0.7;

const COMMON: &str = include_str!("password_rules/common-passwords.txt");

fn common() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| {
        COMMON
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect()
    })
}

/// Why `password` may not be `username`'s, as a sentence for the form or the command line.
pub fn check(username: &str, password: &str) -> Result<(), &'static str> {
    if password.chars().count() < MIN_CHARS {
        return Err("Use at least 12 characters.");
    }
    if password.chars().all(|c| c.is_ascii_digit()) {
        return Err("Use more than digits.");
    }
    if password.chars().collect::<HashSet<_>>().len() < MIN_DISTINCT {
        return Err("Use at least 5 different characters.");
    }
    if common().contains(password.trim().to_lowercase().as_str()) {
        return Err("This password is too common: it is on the lists attackers try first.");
    }
    if too_similar(&password.to_lowercase(), &username.to_lowercase()) {
        return Err("This password is too similar to the username.");
    }
    Ok(())
}

/// Django's test: the username, and each of its parts between non-word characters, against
/// the password, by `SequenceMatcher.quick_ratio` (twice the characters they share, counted
/// with multiplicity, over their total length), skipping parts far shorter than the password.
fn too_similar(password: &str, username: &str) -> bool {
    let mut parts: Vec<&str> = username
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|p| !p.is_empty())
        .collect();
    parts.push(username);
    parts.into_iter().any(|part| {
        !exceeds_maximum_length_ratio(password, part)
            && quick_ratio(password, part) >= MAX_SIMILARITY
    })
}

/// Django's `exceeds_maximum_length_ratio`: a part this much shorter than the password cannot
/// make it similar, however it matches.
fn exceeds_maximum_length_ratio(password: &str, part: &str) -> bool {
    let (password_len, part_len) = (password.chars().count(), part.chars().count());
    password_len >= 10 * part_len && (part_len as f64) < MAX_SIMILARITY / 2.0 * password_len as f64
}

fn quick_ratio(a: &str, b: &str) -> f64 {
    let total = a.chars().count() + b.chars().count();
    if total == 0 {
        return 1.0;
    }
    let mut available: std::collections::HashMap<char, usize> = Default::default();
    for c in b.chars() {
        *available.entry(c).or_default() += 1;
    }
    let mut matches = 0;
    for c in a.chars() {
        if let Some(n) = available.get_mut(&c).filter(|n| **n > 0) {
            *n -= 1;
            matches += 1;
        }
    }
    2.0 * matches as f64 / total as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issues_passwords_are_refused_and_a_random_one_passes() {
        for (password, why) in [
            ("x", "12 characters"),
            ("aaaaaaaaaaa", "12 characters"),
            ("aaaaaaaaaaaa", "different characters"),
            ("abababababab", "different characters"),
            ("123456789012", "digits"),
            ("password1234", "common"),
            ("PASSWORD1234", "common"),
        ] {
            let refused = check("admin", password).unwrap_err();
            assert!(refused.contains(why), "{password}: {refused}");
        }
        let similar = check("jane.doe", "jane.doe.1234").unwrap_err();
        assert!(similar.contains("similar"), "{similar}");
        assert_eq!(check("admin", "tawny-otter-breakfast"), Ok(()));
        assert_eq!(check("admin", "correct horse battery staple"), Ok(()));
    }

    #[test]
    fn similarity_is_djangos_quick_ratio() {
        // SequenceMatcher(a="abcd", b="bcde").quick_ratio() == 0.75 in Python.
        assert!((quick_ratio("abcd", "bcde") - 0.75).abs() < 1e-9);
        assert!(too_similar("jane.doe.1234", "jane.doe"));
        assert!(!too_similar("tawny-otter-breakfast", "jane.doe"));
        // A part far shorter than the password cannot make it similar.
        assert!(!too_similar("zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", "zz"));
        // The list is Django's: some 20,000 entries.
        assert!(common().len() > 19_000);
    }
}

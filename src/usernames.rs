//! Staff usernames: one form for each name, and no name that passes for another.
//!
//! A username is stored and looked up in NFKC, as Django's `normalize_username` does, so the
//! fullwidth `ａｄｍｉｎ` a user may type is `admin`. Two names that differ only in case or
//! that look alike (`Admin`, Cyrillic `аdmin`) would let one staff user pass for another in
//! the history of writes: a new name whose skeleton (Unicode TS #39: what it looks like, case
//! folded) is that of an existing one is refused.

use unicode_normalization::UnicodeNormalization;

/// The form a username is stored and looked up in.
pub fn normalize(raw: &str) -> String {
    raw.trim().nfkc().collect()
}

/// 1 to 150 letters, digits and `@ . + - _` (Django's validator), in normal form.
pub fn valid(name: &str) -> bool {
    let len = name.chars().count();
    (1..=150).contains(&len)
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || "@.+-_".contains(c))
        && normalize(name) == name
}

/// What `name` looks like: equal for names a reader could take for one another.
pub fn look_alike_key(name: &str) -> String {
    let folded: String = normalize(name).to_lowercase();
    unicode_security::skeleton(&folded)
        .collect::<String>()
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_look_alikes_of_admin_have_its_key() {
        let admin = look_alike_key("admin");
        for other in [
            "Admin",
            "ADMIN",
            "ａｄｍｉｎ",
            "\u{0430}dmin",
            "adm\u{0456}n",
        ] {
            assert_eq!(look_alike_key(other), admin, "{other}");
        }
        for different in ["admin2", "adrnin-x", "ada"] {
            assert_ne!(look_alike_key(different), admin, "{different}");
        }
    }

    #[test]
    fn names_are_stored_in_nfkc() {
        assert_eq!(normalize(" ａｄｍｉｎ "), "admin");
        assert!(valid("ada.lovelace+staff@example"));
        assert!(valid("Zoë"));
        for bad in ["", "has space", "semi;colon", "ａｄｍｉｎ"] {
            assert!(!valid(bad), "{bad:?}");
        }
    }
}

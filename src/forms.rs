//! Form structs as the browser sends them, and their validation into domain values.
//!
//! Every field is a `String` with a default, so a missing field becomes a message next to the
//! field rather than a bare 400 from the extractor.

use serde::Deserialize;

use crate::error::AppError;
use crate::models::NewStudent;

/// A student's name: 1–100 characters (Unicode scalar values) after trimming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StudentName(String);

impl StudentName {
    pub const MAX_CHARS: usize = 100;

    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err("Enter a name.");
        }
        if trimmed.chars().count() > Self::MAX_CHARS {
            return Err("Use at most 100 characters.");
        }
        if trimmed.chars().any(char::is_control) {
            return Err("Remove the control characters from the name.");
        }
        Ok(StudentName(trimmed.to_owned()))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A student's age: a whole number from 0 to 150.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StudentAge(i32);

impl StudentAge {
    pub const MAX: i32 = 150;

    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err("Enter an age.");
        }
        match trimmed.parse::<i64>() {
            Ok(age) if (0..=i64::from(Self::MAX)).contains(&age) => Ok(StudentAge(age as i32)),
            Ok(_) => Err("Enter an age from 0 to 150."),
            Err(_) => Err("Enter the age as a whole number, e.g. 21."),
        }
    }

    pub fn get(self) -> i32 {
        self.0
    }
}

/// The add and edit forms, as typed.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StudentForm {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub age: String,
    #[serde(default)]
    pub csrf_token: String,
}

/// A message for each field that failed validation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StudentFormErrors {
    pub name: Option<&'static str>,
    pub age: Option<&'static str>,
}

impl StudentForm {
    pub fn validate(&self) -> Result<NewStudent, StudentFormErrors> {
        match (StudentName::parse(&self.name), StudentAge::parse(&self.age)) {
            (Ok(name), Ok(age)) => Ok(NewStudent {
                name: name.into_inner(),
                age: age.get(),
            }),
            (name, age) => Err(StudentFormErrors {
                name: name.err(),
                age: age.err(),
            }),
        }
    }
}

/// The sign-in form.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub csrf_token: String,
    #[serde(default)]
    pub next: String,
}

/// The longest password accepted (Django's old limit): Argon2 takes any length, but a
/// megabyte-long "password" is an attack on the hashing, not a password.
pub const MAX_PASSWORD_BYTES: usize = 4096;

/// What a sign-in form submitted, checked to be something a staff account could hold.
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl LoginForm {
    /// The trimmed username and the password. A username no account can have (over 150
    /// characters, control characters such as NUL, which PostgreSQL refuses to store) or an
    /// over-long password is a 400 that records nothing.
    pub fn credentials(&self) -> Result<Credentials, AppError> {
        // As stored: a fullwidth `ａｄｍｉｎ` typed is `admin` (see `usernames`).
        let username = crate::usernames::normalize(&self.username);
        let username = username.as_str();
        if username.chars().count() > 150 || username.chars().any(char::is_control) {
            return Err(AppError::BadRequest(
                "A username has at most 150 letters, digits and @ . + - _.".into(),
            ));
        }
        check_password_input(&self.password)?;
        Ok(Credentials {
            username: username.to_owned(),
            password: self.password.clone(),
        })
    }
}

/// Refuses a password field no password can fill: NUL bytes or more than
/// [`MAX_PASSWORD_BYTES`].
pub fn check_password_input(password: &str) -> Result<(), AppError> {
    if password.len() > MAX_PASSWORD_BYTES || password.contains('\0') {
        return Err(AppError::BadRequest(format!(
            "A password has at most {MAX_PASSWORD_BYTES} bytes and no NUL characters."
        )));
    }
    Ok(())
}

/// The staff search's `q`: trimmed, `None` when empty. A name has at most 100 characters and no
/// control characters, so a longer or NUL-carrying search is a 400 rather than a query.
pub fn search_needle(q: &str) -> Result<Option<String>, AppError> {
    let q = q.trim();
    if q.chars().count() > StudentName::MAX_CHARS || q.chars().any(char::is_control) {
        return Err(AppError::BadRequest(
            "Search for at most 100 characters of a name, without control characters.".into(),
        ));
    }
    Ok((!q.is_empty()).then(|| q.to_owned()))
}

/// The change-password form, as typed.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PasswordChangeForm {
    #[serde(default)]
    pub old_password: String,
    #[serde(default)]
    pub new_password1: String,
    #[serde(default)]
    pub new_password2: String,
    #[serde(default)]
    pub csrf_token: String,
}

/// A message for each field of the change-password form that failed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PasswordChangeErrors {
    pub old_password: Option<&'static str>,
    pub new_password1: Option<&'static str>,
    pub new_password2: Option<&'static str>,
}

impl PasswordChangeErrors {
    pub fn any(&self) -> bool {
        self.old_password.is_some() || self.new_password1.is_some() || self.new_password2.is_some()
    }
}

impl PasswordChangeForm {
    /// Checks what can be checked without the old hash: the new password's rules
    /// ([`crate::password_rules`]), both copies equal.
    pub fn validate(&self, username: &str) -> PasswordChangeErrors {
        let mut errors = PasswordChangeErrors::default();
        if self.old_password.is_empty() {
            errors.old_password = Some("Enter your current password.");
        }
        let new = &self.new_password1;
        if let Err(why) = crate::password_rules::check(username, new) {
            errors.new_password1 = Some(why);
        } else if check_password_input(new).is_err() {
            errors.new_password1 = Some("Use at most 4096 bytes and no NUL characters.");
        } else if *new == self.old_password {
            errors.new_password1 = Some("Choose a password different from the current one.");
        }
        if self.new_password2 != *new {
            errors.new_password2 = Some("The two new passwords differ.");
        }
        errors
    }
}

/// A form whose only field is the CSRF token (sign-out, delete).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CsrfOnlyForm {
    #[serde(default)]
    pub csrf_token: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_counted_in_characters() {
        assert_eq!(StudentName::parse("  Ada  ").unwrap().into_inner(), "Ada");
        assert!(StudentName::parse(&"é".repeat(100)).is_ok());
        assert!(StudentName::parse(&"é".repeat(101)).is_err());
        assert!(StudentName::parse("李小龍").is_ok());
    }

    #[test]
    fn bad_names_are_rejected() {
        for raw in ["", "   ", "\t\n", "a\u{0}b"] {
            assert!(StudentName::parse(raw).is_err(), "{raw:?}");
        }
    }

    #[test]
    fn ages_are_whole_numbers_from_0_to_150() {
        assert_eq!(StudentAge::parse(" 12 ").unwrap().get(), 12);
        assert_eq!(StudentAge::parse("0").unwrap().get(), 0);
        assert_eq!(StudentAge::parse("150").unwrap().get(), 150);
        for raw in [
            "",
            "-1",
            "151",
            "12.5",
            "twelve",
            "1e2",
            "99999999999999999999",
        ] {
            assert!(StudentAge::parse(raw).is_err(), "{raw:?}");
        }
    }

    #[test]
    fn every_bad_field_gets_its_own_message() {
        let form = StudentForm {
            name: " ".into(),
            age: "x".into(),
            csrf_token: String::new(),
        };
        let errors = form.validate().unwrap_err();
        assert!(errors.name.is_some());
        assert!(errors.age.is_some());
    }
}

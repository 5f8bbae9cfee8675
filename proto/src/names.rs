//! Usernames and group names: `[a-z0-9_-]{3,32}`, so they are safe in paths,
//! logs and terminals, and one person cannot look like another by case or Unicode.

use thiserror::Error;

/// Why a name was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum NameError {
    #[error("{0:?} must be 3 to 32 characters long")]
    Length(String),
    #[error("{0:?} may only hold a-z, 0-9, '_' and '-'")]
    Characters(String),
    #[error("{0:?} begins with \"anon-\", which is kept for the pseudonyms of warrant disclosures")]
    Reserved(String),
}

/// What every pseudonym in a warrant disclosure begins with. No account may:
/// a pseudonym must never be mistaken for a person's name.
pub const PSEUDONYM_PREFIX: &str = "anon-";

/// Checks a username chosen at registration: the shared rules, and not the
/// pseudonym prefix.
pub fn validate_new_username(name: &str) -> Result<(), NameError> {
    validate(name)?;
    if name.starts_with(PSEUDONYM_PREFIX) {
        return Err(NameError::Reserved(name.to_owned()));
    }
    Ok(())
}

/// Checks a username or group name against `[a-z0-9_-]{3,32}`.
pub fn validate(name: &str) -> Result<(), NameError> {
    if !(3..=32).contains(&name.len()) {
        return Err(NameError::Length(name.to_owned()));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err(NameError::Characters(name.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        assert!(validate("alice").is_ok());
        assert!(validate("bob_2-x").is_ok());
        assert!(validate(&"a".repeat(32)).is_ok());
    }

    #[test]
    fn refuses_short_long_and_foreign_names() {
        assert!(matches!(validate("al"), Err(NameError::Length(_))));
        assert!(matches!(
            validate(&"a".repeat(33)),
            Err(NameError::Length(_))
        ));
        assert!(matches!(validate("Alice"), Err(NameError::Characters(_))));
        assert!(matches!(validate("al ice"), Err(NameError::Characters(_))));
        assert!(validate("аlice").is_err()); // Cyrillic a
    }

    #[test]
    fn a_new_username_cannot_look_like_a_pseudonym() {
        assert!(matches!(
            validate_new_username("anon-0123456789abcdef01234567"),
            Err(NameError::Reserved(_))
        ));
        assert!(validate_new_username("anonymous").is_ok());
        assert!(validate_new_username("alice").is_ok());
    }
}

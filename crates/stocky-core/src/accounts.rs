//! The rules for user accounts that every way of creating one shares (`POST /api/admin/users`,
//! `POST /api/admin/tenants`, `stocky admin`, the first-start owner): what an email — the
//! login name — must look like, and how long a password must be.
//!
//! Emails are compared case-insensitively everywhere, so they are stored trimmed and
//! lowercased; [`email_key`] is that form, and logins look users up by it.

use crate::documents::Invalid;

/// Longest email accepted, in bytes (RFC 5321's limit for a path).
pub const MAX_EMAIL_LEN: usize = 254;
/// Shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// An email as it is stored and looked up: trimmed and lowercased. Not checked: a login
/// with something that is not an email simply finds no user.
pub fn email_key(raw: &str) -> String {
    raw.trim().to_lowercase()
}

/// Checks an email for a new account and returns it as stored ([`email_key`]): at most
/// [`MAX_EMAIL_LEN`] bytes, one `@` with something on both sides, and no whitespace or
/// control characters.
pub fn parse_email(raw: &str) -> Result<String, Invalid> {
    let email = email_key(raw);
    let ok = email.len() <= MAX_EMAIL_LEN
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && matches!(email.split_once('@'), Some((local, domain))
            if !local.is_empty() && !domain.is_empty() && !domain.contains('@'));
    if ok {
        Ok(email)
    } else {
        Err(Invalid(format!(
            "{:?} is not an email address (one '@', no spaces, at most {MAX_EMAIL_LEN} bytes)",
            raw.trim()
        )))
    }
}

/// Checks a new password: at least [`MIN_PASSWORD_CHARS`] characters, no other rule.
pub fn check_password(password: &str) -> Result<(), Invalid> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(Invalid(format!(
            "the password must have at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_lowercased_and_checked() {
        assert_eq!(parse_email("  Ana@Shop.Test ").unwrap(), "ana@shop.test");
        assert_eq!(email_key(" Ana@Shop.Test"), "ana@shop.test");
        for bad in [
            "",
            "ana",
            "@shop.test",
            "ana@",
            "ana@b@c",
            "a na@shop.test",
            "ana@shop\u{0}.test",
        ] {
            assert!(parse_email(bad).is_err(), "{bad:?}");
        }
        let long = format!("{}@shop.test", "a".repeat(MAX_EMAIL_LEN));
        assert!(parse_email(&long).is_err());
        let longest = format!("{}@b", "a".repeat(MAX_EMAIL_LEN - 2));
        assert!(parse_email(&longest).is_ok());
    }

    #[test]
    fn passwords_need_eight_characters() {
        assert!(check_password("1234567").is_err());
        assert!(check_password("12345678").is_ok());
        assert!(check_password("ñññññññ").is_err(), "characters, not bytes");
    }
}

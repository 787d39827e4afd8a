//! Email addresses: the one check of a new address and the one canonical form every comparison
//! uses (lookup, uniqueness, rate-limit keys, the password-equals-email rule).

use unicode_normalization::UnicodeNormalization;
use web::error::FieldError;

/// Longest email accepted (RFC 5321 path limit).
pub const MAX_EMAIL_LEN: usize = 254;

/// The one canonical form of an email: what lookup, uniqueness (`users.email_canonical`, unique)
/// and every rate-limit key use, computed here and nowhere else (PostgreSQL's `lower()` follows
/// the database's locale and disagrees with Rust on letters such as U+0130, so SQL never
/// compares emails itself).
///
/// Trimmed (Unicode white space), NFKC (fullwidth `ｖ` is `v`, `ﬁ` is `fi`), then Unicode full
/// default case folding rather than lower-casing: lower-casing is contextual (a capital sigma at
/// the end of a word becomes the final `ς`, elsewhere `σ`), folding maps `Σ`, `σ` and `ς` alike to
/// `σ` (and `ß` to `ss`, the Kelvin sign to `k`). Folding turns `İ` (U+0130) into `i` + U+0307
/// COMBINING DOT ABOVE; that dot is dropped after a soft-dotted `i` or `j`, where it adds nothing
/// visible, so `vİctim` is `victim`: the spelling a Turkish keyboard produces for `VICTIM` in
/// capitals is the same account. The steps repeat until nothing changes (at most a few rounds),
/// so the form is idempotent: `canonical_email(canonical_email(x)) == canonical_email(x)`.
pub fn canonical_email(raw: &str) -> String {
    let mut current = raw.to_owned();
    for _ in 0..4 {
        let next = canonical_step(&current);
        if next == current {
            break;
        }
        current = next;
    }
    current
}

fn canonical_step(s: &str) -> String {
    let nfkc: String = s.trim().nfkc().collect();
    let folded = caseless::default_case_fold_str(&nfkc);
    let mut out = String::with_capacity(folded.len());
    let mut previous = None;
    for c in folded.chars() {
        if c == '\u{307}' && matches!(previous, Some('i' | 'j')) {
            continue;
        }
        out.push(c);
        previous = Some(c);
    }
    out.nfkc().collect::<String>().trim().to_owned()
}

/// Trim and check an email. The stored address keeps the user's spelling; comparisons go through
/// [`canonical_email`].
///
/// Only ASCII addresses: the account's mail (reset, verification) goes to the stored spelling, and
/// Amazon SES takes ASCII addresses only (an internationalised domain in its punycode form). An
/// address that could never be mailed would also let someone hold a mailbox's canonical form
/// (`ｖｉｃｔｉｍ@example.com` folds to `victim@example.com`) with no way for its owner to
/// recover it by mail.
pub fn normalize_email(raw: &str) -> Result<String, FieldError> {
    let email = raw.trim();
    let invalid = || FieldError::new("email", "invalid_email", "This is not a valid email address.");
    if email.is_empty() || email.len() > MAX_EMAIL_LEN || email.chars().any(char::is_control) {
        return Err(invalid());
    }
    if !email.is_ascii() {
        return Err(FieldError::new(
            "email",
            "invalid_email",
            "Only ASCII email addresses are accepted (write an internationalised domain in its punycode form).",
        ));
    }
    let parsed = email_address::EmailAddress::parse_with_options(
        email,
        email_address::Options::default()
            .without_display_text()
            .without_domain_literal(),
    )
    .map_err(|_| invalid())?;
    // A deliverable address has a dot in its domain; `user@localhost` is not one.
    if !parsed.domain().contains('.') || parsed.domain().ends_with('.') {
        return Err(invalid());
    }
    // The canonical form is what identifies the account: it must fit the same bound.
    let canonical = canonical_email(email);
    if canonical.is_empty() || canonical.len() > MAX_EMAIL_LEN {
        return Err(invalid());
    }
    Ok(email.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(
            normalize_email("  Alice@Example.COM ").ok(),
            Some("Alice@Example.COM".to_owned())
        );
        for bad in [
            "",
            "   ",
            "alice",
            "alice@",
            "@example.com",
            "alice@localhost",
            "a b@example.com",
            "Alice <a@example.com>",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(normalize_email(&format!("{}@example.com", "a".repeat(250))).is_err());
        // Only ASCII (what SES can mail): no fullwidth or dotted-I spelling of an address, no
        // internationalised domain except in its punycode form.
        for non_ascii in ["ｖｉｃｔｉｍ@example.com", "v\u{130}ctim@example.com", "user@bücher.de"] {
            let err = normalize_email(non_ascii).expect_err(non_ascii);
            assert_eq!(err.code, "invalid_email", "{non_ascii:?}");
        }
        assert!(normalize_email("user@xn--bcher-kva.de").is_ok());
        // Unicode white space around an ASCII address is trimmed, not refused.
        assert_eq!(
            normalize_email("\u{3000}a@example.com\u{a0}").ok().as_deref(),
            Some("a@example.com")
        );
    }

    #[test]
    fn one_canonical_form_per_email() {
        let same = [
            "victim@example.com",
            "  VICTIM@Example.COM\t",
            "v\u{130}ctim@example.com",
            "V\u{130}CT\u{130}M@EXAMPLE.COM",
            "vi\u{307}ctim@example.com",
            "ｖｉｃｔｉｍ@ｅｘａｍｐｌｅ.ｃｏｍ",
            "\u{3000}victim@example.com\u{3000}",
        ];
        for email in same {
            assert_eq!(canonical_email(email), "victim@example.com", "{email:?}");
        }
        // Final sigma, capital sigma and sigma are one letter.
        let sigma = canonical_email("οδυσσευσ@example.gr");
        for email in ["ΟΔΥΣΣΕΥΣ@EXAMPLE.GR", "οδυσσευς@example.gr", "ΟΔΥΣΣΕΥς@example.gr"] {
            assert_eq!(canonical_email(email), sigma, "{email:?}");
        }
        assert_eq!(canonical_email("STRASSE@x.de"), canonical_email("straße@x.de"));
        assert_eq!(canonical_email("\u{212A}elvin@x.com"), "kelvin@x.com");
        // Different letters stay different: the dotless ı is not i.
        assert_ne!(canonical_email("v\u{131}ctim@example.com"), "victim@example.com");
    }

    #[test]
    fn the_canonical_form_is_idempotent() {
        for email in [
            "v\u{130}ctim@example.com",
            "ΟΔΥΣΣΕΥΣ@EXAMPLE.GR",
            "\u{1E9E}@x.com",
            "\u{FB03}\u{2160}\u{0345}@x.com",
            "\u{1FC3}\u{0399}\u{0308}\u{0301}@x.com",
            " ＡＢＣ\u{212B}@x.com ",
        ] {
            let once = canonical_email(email);
            assert_eq!(canonical_email(&once), once, "{email:?}");
        }
    }
}

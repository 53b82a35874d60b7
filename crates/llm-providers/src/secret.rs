//! A secret (an API key) that never shows in logs, transcripts or error messages.

/// Text that `Debug` and `Display` print as a placeholder; [`Secret::expose`] is the one way
/// to read it, used where a request is signed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret text, for the request header that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with this secret, and any `Bearer` token, replaced by a placeholder: for every
    /// message a server sends back (a 401 body may echo the key or the Authorization header).
    pub fn redact(&self, text: &str) -> String {
        let text = if self.0.len() >= 4 {
            text.replace(&self.0, "[redacted]")
        } else {
            text.to_string()
        };
        redact_bearer(&text)
    }
}

/// `text` with the token after every `Bearer ` replaced by a placeholder.
pub fn redact_bearer(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("Bearer ") {
        out += &rest[..i + "Bearer ".len()];
        rest = &rest[i + "Bearer ".len()..];
        let end = rest
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ',' | ';'))
            .unwrap_or(rest.len());
        if end > 0 {
            out += "[redacted]";
        }
        rest = &rest[end..];
    }
    out + rest
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(\"[redacted]\")")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neither_debug_nor_display_shows_the_key() {
        let key = Secret::from("sk-live-1234567890");
        for shown in [
            format!("{key:?}"),
            format!("{key}"),
            format!("{:?}", Some(&key)),
        ] {
            assert!(!shown.contains("1234567890"), "{shown}");
            assert!(shown.contains("redacted"), "{shown}");
        }
        assert_eq!(key.expose(), "sk-live-1234567890");
    }

    #[test]
    fn redaction_removes_the_key_and_bearer_tokens() {
        let key = Secret::from("sk-live-1234567890");
        let echoed =
            "bad key sk-live-1234567890; header \"Authorization: Bearer sk-other-999\" end";
        let r = key.redact(echoed);
        assert!(
            !r.contains("1234567890") && !r.contains("sk-other-999"),
            "{r}"
        );
        assert_eq!(
            r,
            "bad key [redacted]; header \"Authorization: Bearer [redacted]\" end"
        );
        assert_eq!(redact_bearer("no token here"), "no token here");
    }
}

//! URL patterns as topic selectors (the current Mercure draft's `match_urlpattern=`):
//! `https://example.com/books/:id`, `/users/:user/*`.
//!
//! Owns compiling the subset of the URL Pattern standard that topic selectors use: literal text,
//! named groups (`:name`, one path segment), wildcards (`*`, anything) and `\` escapes. Regular
//! expression groups (`(…)`), `{…}` groups and modifiers are refused as unsupported (a `400`),
//! never guessed at. Patterns and topics are compared as written: a relative pattern matches
//! relative topics. It never matches (the `matcher` does).

use super::{
    matcher::{Class, Part, VARIABLES_MAX},
    SelectorError,
};

/// Compiles `pattern`.
pub(crate) fn compile(pattern: &str) -> Result<Vec<Part>, SelectorError> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut variables = 0;
    let mut chars = pattern.chars().peekable();
    let flush = |literal: &mut String, parts: &mut Vec<Part>| {
        if !literal.is_empty() {
            parts.push(Part::Literal(std::mem::take(literal).into()));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\\' => literal.push(
                chars
                    .next()
                    .ok_or(SelectorError::Invalid("a `\\` escapes nothing"))?,
            ),
            ':' if chars
                .peek()
                .is_some_and(|n| n.is_alphabetic() || *n == '_' || *n == '$') =>
            {
                while chars
                    .peek()
                    .is_some_and(|n| n.is_alphanumeric() || *n == '_' || *n == '$')
                {
                    chars.next();
                }
                if chars
                    .peek()
                    .is_some_and(|n| matches!(n, '?' | '+' | '*' | '('))
                {
                    return Err(SelectorError::Unsupported(
                        "URL pattern modifiers and regular expressions",
                    ));
                }
                flush(&mut literal, &mut parts);
                parts.push(Part::Variable {
                    prefix: None,
                    class: Class::Segment,
                    min: 1,
                });
                variables += 1;
            }
            '*' => {
                flush(&mut literal, &mut parts);
                parts.push(Part::Variable {
                    prefix: None,
                    class: Class::Reserved,
                    min: 0,
                });
                variables += 1;
            }
            '(' | '{' | '}' | ')' => {
                return Err(SelectorError::Unsupported(
                    "URL pattern groups and regular expressions",
                ))
            }
            other => literal.push(other),
        }
        if variables > VARIABLES_MAX {
            return Err(SelectorError::TooComplex);
        }
    }
    flush(&mut literal, &mut parts);
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::matcher::is_match;

    fn matches(pattern: &str, topic: &str) -> bool {
        is_match(&compile(pattern).expect("valid"), topic)
    }

    #[test]
    fn named_groups_take_one_segment_and_wildcards_anything() {
        assert!(matches(
            "https://example.com/books/:id",
            "https://example.com/books/1"
        ));
        assert!(!matches(
            "https://example.com/books/:id",
            "https://example.com/books/"
        ));
        assert!(!matches(
            "https://example.com/books/:id",
            "https://example.com/books/1/2"
        ));
        assert!(matches(
            "https://example.com/users/42/*",
            "https://example.com/users/42/books/1"
        ));
        assert!(matches("/subscriptions/:topic/:sub", "/subscriptions/a/b"));
        assert!(matches("https\\://example.com/a", "https://example.com/a"));
        assert!(!matches(
            "https://example.com/bar/:var",
            "https://example.com/foo/x"
        ));
    }

    #[test]
    fn unsupported_syntax_is_refused() {
        assert!(compile("https://example.com/books/:id(\\d+)").is_err());
        assert!(compile("https://example.com/{books}?").is_err());
        assert!(compile("https://example.com/books/:id?").is_err());
    }
}

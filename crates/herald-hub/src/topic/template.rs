//! RFC 6570 URI templates as topic selectors (Mercure draft-07's `topic=` and `mercure.subscribe`
//! claims): `https://example.com/books/{id}`, `{+path}`, `{/segments*}`, `{?query}`, levels 1
//! to 4.
//!
//! Owns compiling a template into [`Part`]s once. A template matches a topic when some values of
//! its variables expand to that topic; each expression becomes a run of the characters its
//! operator may produce (prefix and explode modifiers are accepted and widen nothing). It never
//! matches (the `matcher` does). No maintained crate matches RFC 6570 templates (the crates on
//! crates.io expand them), so this small compiler is Herald's own.

use super::{
    matcher::{Class, Part, VARIABLES_MAX},
    SelectorError,
};

/// Compiles `template`; `Ok(None)` when it holds no expression (it is then an exact topic).
pub(crate) fn compile(template: &str) -> Result<Option<Vec<Part>>, SelectorError> {
    let mut parts = Vec::new();
    let mut rest = template;
    let mut variables = 0;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(Part::Literal(rest[..open].into()));
        }
        let close = rest[open..]
            .find('}')
            .ok_or(SelectorError::Invalid("an expression is not closed"))?
            + open;
        let expression = &rest[open + 1..close];
        let (operator, names) = match expression.chars().next() {
            Some(op @ ('+' | '#' | '.' | '/' | ';' | '?' | '&')) => (Some(op), &expression[1..]),
            Some(_) => (None, expression),
            None => return Err(SelectorError::Invalid("an expression is empty")),
        };
        let is_valid_name = |name: &str| {
            let name = name.trim_end_matches('*');
            let name = name.split_once(':').map_or(name, |(n, len)| {
                if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
                    ""
                } else {
                    n
                }
            });
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '%'))
        };
        if !names.split(',').all(is_valid_name) {
            return Err(SelectorError::Invalid(
                "an expression names no valid variable",
            ));
        }
        let (prefix, class) = match operator {
            None => (None, Class::Simple),
            Some('+') => (None, Class::Reserved),
            Some('#') => (Some('#'), Class::Reserved),
            Some('.') => (Some('.'), Class::Label),
            Some('/') => (Some('/'), Class::Path),
            Some(';') => (Some(';'), Class::Params),
            Some(op) => (Some(op), Class::Query),
        };
        parts.push(Part::Variable {
            prefix,
            class,
            min: 0,
        });
        variables += 1;
        if variables > VARIABLES_MAX {
            return Err(SelectorError::TooComplex);
        }
        rest = &rest[close + 1..];
    }
    if rest.contains('}') {
        return Err(SelectorError::Invalid("a `}` closes no expression"));
    }
    if variables == 0 {
        return Ok(None);
    }
    if !rest.is_empty() {
        parts.push(Part::Literal(rest.into()));
    }
    Ok(Some(parts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::matcher::is_match;

    fn matches(template: &str, topic: &str) -> bool {
        let parts = compile(template)
            .expect("valid")
            .expect("has an expression");
        is_match(&parts, topic)
    }

    #[test]
    fn templates_match_what_they_could_expand_to() {
        assert!(matches(
            "https://example.com/books/{id}",
            "https://example.com/books/1"
        ));
        assert!(matches(
            "https://example.com/books/{id}",
            "https://example.com/books/"
        ));
        assert!(!matches(
            "https://example.com/books/{id}",
            "https://example.com/books/1/x"
        ));
        assert!(!matches(
            "https://example.com/books/{id}",
            "https://example.com/films/1"
        ));
        assert!(matches(
            "https://example.com/{+path}",
            "https://example.com/a/b?c=d"
        ));
        assert!(matches(
            "https://example.com/a{/seg*}",
            "https://example.com/a/b/c"
        ));
        assert!(matches(
            "https://example.com/a{?x,y}",
            "https://example.com/a?x=1&y=2"
        ));
        assert!(matches(
            "https://example.com/a{?x,y}",
            "https://example.com/a"
        ));
        assert!(matches("/users/{id}/books/{book}", "/users/42/books/7"));
        assert!(matches("{host}/x", "example.com/x"));
    }

    #[test]
    fn bad_templates_are_refused_and_plain_ones_are_exact() {
        assert!(compile("https://example.com/{id").is_err());
        assert!(compile("https://example.com/{}").is_err());
        assert!(compile("https://example.com/}").is_err());
        assert_eq!(compile("https://example.com/books/1"), Ok(None));
    }
}

//! The compiled form shared by URI templates (RFC 6570) and URL patterns: literal runs and
//! variable runs, matched against a topic with a bounded backtracking walk.
//!
//! Owns the matching algorithm and its cost bound ([`MATCH_STEPS_MAX`]): a pathological
//! selector is treated as not matching once the bound is reached, never as a slow match. It
//! never parses a selector's syntax (`template` and `pattern` do).

/// Most steps one match may take before it is abandoned as not matching (a guard against
/// selectors crafted to backtrack: a topic is at most 1 KiB and a selector holds at most
/// [`VARIABLES_MAX`] variables, so honest selectors take far fewer).
pub(crate) const MATCH_STEPS_MAX: u32 = 20_000;
/// Most variables (expressions, named segments, wildcards) one selector may hold.
pub(crate) const VARIABLES_MAX: usize = 16;

/// Which characters a variable run may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// RFC 6570 simple expansion: unreserved, percent-encoded, `,` (between values).
    Simple,
    /// `{+var}` and `{#var}`: reserved characters too (anything printable).
    Reserved,
    /// `{.var}`: label values, `.` separated.
    Label,
    /// `{/var}`: path segments, `/` separated.
    Path,
    /// `{;var}`: path parameters.
    Params,
    /// `{?var}` and `{&var}`: query pairs.
    Query,
    /// URL pattern `:name`: one path segment (no `/`, `?` or `#`).
    Segment,
}

impl Class {
    fn admits(self, c: char) -> bool {
        let is_unreserved =
            c.is_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '%') || !c.is_ascii();
        match self {
            Self::Simple => is_unreserved || c == ',',
            Self::Reserved => true,
            Self::Label => is_unreserved || c == ',',
            Self::Path => is_unreserved || matches!(c, ',' | '/'),
            Self::Params => is_unreserved || matches!(c, ',' | ';' | '='),
            Self::Query => is_unreserved || matches!(c, ',' | '&' | '='),
            Self::Segment => !matches!(c, '/' | '?' | '#'),
        }
    }
}

/// One piece of a compiled selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    /// Text that must appear as is.
    Literal(Box<str>),
    /// A run of `class` characters: empty, or (when `prefix` is set) the prefix then the run.
    /// `min` is the least number of characters of the run when it is present.
    Variable {
        prefix: Option<char>,
        class: Class,
        min: usize,
    },
}

/// Whether `topic` matches `parts` in full.
pub(crate) fn is_match(parts: &[Part], topic: &str) -> bool {
    let mut steps = 0;
    walk(parts, topic, &mut steps) == Some(true)
}

/// `None` when the step bound was reached.
fn walk(parts: &[Part], rest: &str, steps: &mut u32) -> Option<bool> {
    *steps += 1;
    if *steps > MATCH_STEPS_MAX {
        return None;
    }
    let Some((part, tail)) = parts.split_first() else {
        return Some(rest.is_empty());
    };
    match part {
        Part::Literal(text) => match rest.strip_prefix(&**text) {
            Some(after) => walk(tail, after, steps),
            None => Some(false),
        },
        Part::Variable { prefix, class, min } => {
            // Without a prefix, the run may be empty (when `min` is 0).
            let body = match prefix {
                Some(p) => {
                    // The expression may expand to nothing at all.
                    if walk(tail, rest, steps)? {
                        return Some(true);
                    }
                    match rest.strip_prefix(*p) {
                        Some(after) => after,
                        None => return Some(false),
                    }
                }
                None => rest,
            };
            // Longest run first: topics end in a variable more often than not.
            let run = body
                .char_indices()
                .find(|(_, c)| !class.admits(*c))
                .map_or(body.len(), |(at, _)| at);
            // (byte end, characters) of every prefix of the run, empty included.
            let ends: Vec<(usize, usize)> = body[..run]
                .char_indices()
                .map(|(at, _)| at)
                .skip(1)
                .chain(std::iter::once(run).filter(|end| *end > 0))
                .enumerate()
                .map(|(n, end)| (end, n + 1))
                .collect();
            for (end, chars) in std::iter::once((0, 0)).chain(ends).rev() {
                if chars < *min {
                    break;
                }
                if walk(tail, &body[end..], steps)? {
                    return Some(true);
                }
            }
            Some(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pathological_selector_stops_at_the_step_bound() {
        let parts: Vec<Part> = (0..VARIABLES_MAX)
            .map(|_| Part::Variable {
                prefix: None,
                class: Class::Reserved,
                min: 0,
            })
            .chain(std::iter::once(Part::Literal("!".into())))
            .collect();
        let topic = "a".repeat(1000);
        let started = std::time::Instant::now();
        assert!(!is_match(&parts, &topic));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }
}

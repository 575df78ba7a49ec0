//! The compiled form shared by URI templates (RFC 6570) and URL patterns: literal runs and
//! variable runs, matched against a topic with a bounded backtracking walk.
//!
//! Owns the matching algorithm and its cost bound ([`MATCH_STEPS_MAX`]): a pathological
//! selector is treated as not matching once the bound is reached, never as a slow match. It
//! never parses a selector's syntax (`template` and `pattern` do).

/// Most work one match may do before it is abandoned as not matching (a guard against
/// selectors crafted to backtrack). Work is counted in steps: one per call of the walk and one per
/// character it compares or scans. A topic is at most 1 KiB and a selector holds at most
/// [`VARIABLES_MAX`] variables, so honest selectors take a few thousand steps at most.
pub(crate) const MATCH_STEPS_MAX: u32 = 16_384;
/// Most work all the selectors of one connection may do for one event (see [`Budget`]), so a
/// connection holding many crafted selectors costs a publish no more than a few honest matches.
pub(crate) const FILTER_STEPS_MAX: u32 = 65_536;
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

/// Work left for the matches of one connection for one event, shared by its selectors.
#[derive(Debug)]
pub(crate) struct Budget(u32);

impl Budget {
    /// The budget of one connection for one event.
    pub(crate) fn per_event() -> Self {
        Self(FILTER_STEPS_MAX)
    }

    /// Whether anything is left.
    pub(crate) fn is_spent(&self) -> bool {
        self.0 == 0
    }
}

/// Whether `topic` matches `parts` in full, within [`MATCH_STEPS_MAX`].
#[cfg(test)]
pub(crate) fn is_match(parts: &[Part], topic: &str) -> bool {
    is_match_within(parts, topic, &mut Budget(MATCH_STEPS_MAX))
}

/// Whether `topic` matches `parts` in full, spending at most [`MATCH_STEPS_MAX`] of `budget`
/// (what it spends is gone for the connection's other selectors). A spent budget is no match.
pub(crate) fn is_match_within(parts: &[Part], topic: &str, budget: &mut Budget) -> bool {
    let mut steps = budget.0.min(MATCH_STEPS_MAX);
    let is_match = walk(parts, topic, &mut steps) == Some(true);
    budget.0 -= budget.0.min(MATCH_STEPS_MAX) - steps;
    is_match
}

/// Takes `units` steps from `steps`; `None` when there are not that many left.
fn spend(steps: &mut u32, units: usize) -> Option<()> {
    *steps = steps.checked_sub(u32::try_from(units).unwrap_or(u32::MAX))?;
    Some(())
}

/// `None` when the steps ran out. Allocates nothing: a step costs its comparisons only.
fn walk(parts: &[Part], rest: &str, steps: &mut u32) -> Option<bool> {
    spend(steps, 1)?;
    let Some((part, tail)) = parts.split_first() else {
        return Some(rest.is_empty());
    };
    match part {
        Part::Literal(text) => {
            spend(steps, text.len())?;
            match rest.strip_prefix(&**text) {
                Some(after) => walk(tail, after, steps),
                None => Some(false),
            }
        }
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
            spend(steps, run)?;
            // Every prefix of the run, longest first, down to the empty one.
            let mut end = run;
            let mut chars = body[..run].chars().count();
            loop {
                if chars < *min {
                    break;
                }
                if walk(tail, &body[end..], steps)? {
                    return Some(true);
                }
                let Some((before, _)) = body[..end].char_indices().next_back() else {
                    break;
                };
                end = before;
                chars -= 1;
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

//! Host selectors (`metadata.hosts`): which hosts of a fleet run a policy,
//! so one policy folder in git serves every host.
//!
//! An entry is a host name (`db1`), a glob over host names (`db-*`, `db?`,
//! `*`), or a label selector `key=value`, matched against the host's labels
//! from the settings document. A host runs the policy when any entry
//! matches it; a policy without `metadata.hosts` runs on every host.

use std::collections::BTreeMap;
use std::fmt;

/// One entry of `metadata.hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostSelector {
    /// A host name, or a glob with `*` (any run of characters) and `?` (one).
    Name(String),
    /// `key=value`: hosts whose label `key` is `value`.
    Label { key: String, value: String },
}

impl fmt::Display for HostSelector {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostSelector::Name(pattern) => formatter.write_str(pattern),
            HostSelector::Label { key, value } => write!(formatter, "{key}={value}"),
        }
    }
}

impl HostSelector {
    /// Parses one entry, or says what is wrong with it.
    pub fn parse(text: &str) -> Result<HostSelector, String> {
        if let Some((key, value)) = text.split_once('=') {
            let word = |part: &str| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/'))
            };
            if !word(key) || !word(value) {
                return Err(format!(
                    "`{text}` is not a label selector: write `key=value` with letters, digits, `.`, `-`, `_` or `/` on both sides"
                ));
            }
            return Ok(HostSelector::Label {
                key: key.to_owned(),
                value: value.to_owned(),
            });
        }
        let valid = !text.is_empty()
            && text.len() <= 253
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '*' | '?'));
        if !valid {
            return Err(format!(
                "`{text}` is neither a host name, a glob like `db-*`, nor a label selector like `role=primary`"
            ));
        }
        Ok(HostSelector::Name(text.to_owned()))
    }

    /// Whether the host `name`, with `labels`, is selected by this entry.
    pub fn matches(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        match self {
            HostSelector::Name(pattern) => glob_matches(pattern, name),
            HostSelector::Label { key, value } => labels.get(key) == Some(value),
        }
    }

    /// The host name this entry names exactly, if it is neither a glob nor a label.
    pub fn exact_name(&self) -> Option<&str> {
        match self {
            HostSelector::Name(pattern) if !pattern.contains(['*', '?']) => Some(pattern),
            _ => None,
        }
    }
}

/// Whether `selectors` (a policy's `metadata.hosts`) select the host; none
/// selects every host.
pub fn selects(selectors: &[HostSelector], name: &str, labels: &BTreeMap<String, String>) -> bool {
    selectors.is_empty()
        || selectors
            .iter()
            .any(|selector| selector.matches(name, labels))
}

/// Whether `text` matches `pattern`: `*` matches any run of characters,
/// `?` any one, anything else itself (host names and settings' host keys).
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    glob_walk(&pattern, &text)
}

fn glob_walk(pattern: &[char], text: &[char]) -> bool {
    // The classic greedy walk with one backtrack point: linear enough for names.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|character| *character == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn names_globs_and_labels_select_hosts() {
        let none = labels(&[]);
        let primary = labels(&[("role", "primary")]);
        let parse = |text| HostSelector::parse(text).unwrap();
        assert!(parse("db1").matches("db1", &none));
        assert!(!parse("db1").matches("db10", &none));
        assert!(parse("db-*").matches("db-eu-1", &none));
        assert!(parse("db-*").matches("db-", &none));
        assert!(!parse("db-*").matches("web-1", &none));
        assert!(parse("db?").matches("db7", &none));
        assert!(!parse("db?").matches("db", &none));
        assert!(parse("*").matches("anything.example.com", &none));
        assert!(parse("*-eu-*").matches("db-eu-2", &none));
        assert!(parse("role=primary").matches("db1", &primary));
        assert!(!parse("role=primary").matches("db1", &none));
        assert!(!parse("role=replica").matches("db1", &primary));
        assert!(selects(&[], "any", &none));
        assert!(selects(&[parse("web"), parse("db*")], "db2", &none));
        assert!(!selects(&[parse("web")], "db2", &none));
        assert_eq!(parse("db1").exact_name(), Some("db1"));
        assert_eq!(parse("db*").exact_name(), None);
        assert_eq!(parse("role=primary").exact_name(), None);
    }

    #[test]
    fn malformed_entries_are_refused_with_what_is_wrong() {
        for text in ["", "db 1", "db/1", "role=", "=primary", "a=b=c", "db$"] {
            let error = HostSelector::parse(text).unwrap_err();
            assert!(error.contains(&format!("`{text}`")), "{error}");
        }
    }

    /// A plain matcher to compare the greedy walk with: every split tried.
    fn reference(pattern: &[u8], text: &[u8]) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some((b'*', rest)) => (0..=text.len()).any(|skip| reference(rest, &text[skip..])),
            Some((first, rest)) => text.split_first().is_some_and(|(byte, tail)| {
                (*first == b'?' || first == byte) && reference(rest, tail)
            }),
        }
    }

    proptest! {
        #[test]
        fn the_glob_walk_agrees_with_trying_every_split(
            pattern in "[ab*?]{0,8}",
            text in "[ab]{0,10}",
        ) {
            prop_assert_eq!(
                glob_matches(&pattern, &text),
                reference(pattern.as_bytes(), text.as_bytes())
            );
        }
    }
}

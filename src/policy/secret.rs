//! Secret references in policy text: `${env:NAME}` and `${file:/path}`.
//!
//! A [`Template`] is a policy string split into literal text and references.
//! References are resolved only when a command needs the value, into a
//! [`Secret`] whose `Debug` and `Display` print `***`. Nothing here logs or
//! stores a resolved value. `$${` writes a literal `${`.

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a template could not be parsed or resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("invalid reference: {reason}")]
    Malformed { offset: usize, reason: String },
    #[error("environment variable `{name}` is not set")]
    UnsetEnv { name: String },
    #[error("environment variable `{name}` is not valid UTF-8")]
    NotUnicodeEnv { name: String },
    #[error("cannot read secret file `{path}`: {reason}")]
    File { path: PathBuf, reason: String },
}

/// One piece of a template.
#[derive(Clone, PartialEq, Eq)]
pub enum Part {
    Literal(String),
    Env(String),
    File(PathBuf),
}

impl fmt::Display for Part {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Part::Literal(_) => formatter.write_str("***"),
            Part::Env(name) => write!(formatter, "${{env:{name}}}"),
            Part::File(path) => write!(formatter, "${{file:{}}}", path.display()),
        }
    }
}

/// A policy string with its references, not yet resolved.
#[derive(Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// Debug shows references but never literal text, which may hold a password.
impl fmt::Debug for Template {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: Vec<String> = self.parts.iter().map(ToString::to_string).collect();
        write!(formatter, "Template({})", shown.join(""))
    }
}

impl Template {
    /// Splits `text` into literals and references.
    pub fn parse(text: &str) -> Result<Template, Error> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        let mut offset = 0;
        while let Some(index) = rest.find('$') {
            literal.push_str(&rest[..index]);
            offset += rest[..index].chars().count();
            let after = &rest[index..];
            if let Some(escaped) = after.strip_prefix("$${") {
                literal.push_str("${");
                rest = escaped;
                offset += 3;
                continue;
            }
            let Some(body) = after.strip_prefix("${") else {
                literal.push('$');
                rest = &after[1..];
                offset += 1;
                continue;
            };
            let Some(end) = body.find('}') else {
                return Err(Error::Malformed {
                    offset,
                    reason: "`${` is not closed by `}`".to_owned(),
                });
            };
            let reference = &body[..end];
            let part =
                parse_reference(reference).map_err(|reason| Error::Malformed { offset, reason })?;
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(part);
            offset += reference.chars().count() + 3;
            rest = &body[end + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Template { parts })
    }

    /// The references, in order.
    pub fn references(&self) -> impl Iterator<Item = &Part> {
        self.parts
            .iter()
            .filter(|part| !matches!(part, Part::Literal(_)))
    }

    /// Whether any of the text is written as it is (not a reference).
    pub fn has_literal_text(&self) -> bool {
        self.parts
            .iter()
            .any(|part| matches!(part, Part::Literal(_)))
    }

    pub fn has_references(&self) -> bool {
        self.references().next().is_some()
    }

    /// The text when it holds no reference at all.
    pub fn literal(&self) -> Option<String> {
        let mut text = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(literal) => text.push_str(literal),
                Part::Env(_) | Part::File(_) => return None,
            }
        }
        Some(text)
    }

    /// Reads every reference and joins the pieces. The value of a file
    /// reference loses one trailing newline, as secret files usually end in one.
    pub fn resolve(&self) -> Result<Secret, Error> {
        self.resolve_with(|name| match std::env::var(name) {
            Ok(value) => Ok(value),
            Err(std::env::VarError::NotPresent) => Err(Error::UnsetEnv {
                name: name.to_owned(),
            }),
            Err(std::env::VarError::NotUnicode(_)) => Err(Error::NotUnicodeEnv {
                name: name.to_owned(),
            }),
        })
    }

    fn resolve_with(&self, env: impl Fn(&str) -> Result<String, Error>) -> Result<Secret, Error> {
        let mut value = String::new();
        for part in &self.parts {
            let resolved = match part {
                Part::Literal(literal) => {
                    value.push_str(literal);
                    continue;
                }
                Part::Env(name) => env(name)?,
                Part::File(path) => read_secret_file(path)?,
            };
            remember(&resolved);
            value.push_str(&resolved);
        }
        remember(&value);
        Ok(Secret(value))
    }
}

/// The most read of a secret file: 64 KiB. Only regular files are read, so
/// a FIFO cannot make a run wait forever, nor `/dev/zero` fill the memory.
pub const SECRET_FILE_LIMIT: u64 = 64 * 1024;

fn read_secret_file(path: &Path) -> Result<String, Error> {
    let failed = |reason: String| Error::File {
        path: path.to_owned(),
        reason,
    };
    let bytes = crate::bounded::read_file(path, SECRET_FILE_LIMIT)
        .map_err(|error| failed(error.to_string()))?;
    let text = String::from_utf8(bytes).map_err(|_| failed("it is not UTF-8 text".to_owned()))?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    Ok(text.strip_suffix('\r').unwrap_or(text).to_owned())
}

fn parse_reference(reference: &str) -> Result<Part, String> {
    let Some((scheme, value)) = reference.split_once(':') else {
        return Err(format!(
            "`${{{reference}}}` names no source; write `${{env:NAME}}` or `${{file:/path}}`"
        ));
    };
    match scheme {
        "env" => {
            let mut characters = value.chars();
            let valid = characters
                .next()
                .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
                && characters
                    .all(|character| character.is_ascii_alphanumeric() || character == '_');
            if valid {
                Ok(Part::Env(value.to_owned()))
            } else {
                Err(format!(
                    "`{value}` is not an environment variable name (letters, digits and `_`, not starting with a digit)"
                ))
            }
        }
        "file" => {
            let path = PathBuf::from(value);
            if path.is_absolute() {
                Ok(Part::File(path))
            } else {
                Err(format!("the path in `${{file:{value}}}` must be absolute"))
            }
        }
        other => Err(format!(
            "unknown reference kind `{other}`; use `env` or `file`"
        )),
    }
}

/// Every value a reference resolved to in this process, for [`redact`].
static RESOLVED: std::sync::RwLock<Vec<String>> = std::sync::RwLock::new(Vec::new());

/// Values shorter than this are not redacted: `***` over every `a` or `1`
/// would make logs unreadable and hides nothing.
const SHORTEST_REDACTED: usize = 4;

fn remember(value: &str) {
    if value.chars().count() < SHORTEST_REDACTED {
        return;
    }
    let mut resolved = RESOLVED
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !resolved.iter().any(|known| known == value) {
        resolved.push(value.to_owned());
        // Longest first, so a URL goes before the password inside it.
        resolved.sort_by_key(|known| std::cmp::Reverse(known.len()));
    }
}

/// `text` with every value a reference resolved to in this process
/// replaced by `***`: log lines pass through this, whoever wrote them
/// (a dependency included).
pub fn redact(text: &str) -> std::borrow::Cow<'_, str> {
    let resolved = RESOLVED
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut text = std::borrow::Cow::Borrowed(text);
    for value in resolved.iter() {
        if text.contains(value.as_str()) {
            text = std::borrow::Cow::Owned(text.replace(value.as_str(), "***"));
        }
    }
    text
}

/// A resolved secret value. Printing it shows `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself, for handing to a child process's environment or a
    /// client library; never for logs or output.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("***")
    }
}

/// Whether a key names a secret, whatever field it is: `password`, `passwd`,
/// `db-pass`, `api_token`, `Authorization`, `secret-access-key`, and `url`
/// (connection, webhook and ping URLs carry credentials). Their values are
/// masked in diagnostics even where the policy does not parse.
pub fn is_secret_name(key: &str) -> bool {
    let normalized: String = key
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|character| character.to_ascii_lowercase())
        .collect();
    normalized == "url"
        || [
            "pass",
            "pwd",
            "secret",
            "token",
            "auth",
            "credential",
            "apikey",
            "privatekey",
            "cookie",
        ]
        .iter()
        .any(|word| normalized.contains(word))
}

/// The ranges (in characters) of `line`, a line of a policy file as
/// written, that look like credentials: the password of a
/// `scheme://user:password@host` URL, the value of a `password=` (or
/// `token=`, …) query parameter, and the value of any key that
/// [`is_secret_name`] — whether or not the line parses, whatever field it
/// is in. Diagnostics mask them; `${…}` references inside stay visible
/// (see [`reference_ranges`]).
pub fn credential_ranges(line: &str) -> Vec<std::ops::Range<usize>> {
    let chars: Vec<char> = line.chars().collect();
    let mut ranges = Vec::new();
    url_passwords(&chars, &mut ranges);
    query_secrets(&chars, &mut ranges);
    secret_values(&chars, &mut ranges);
    ranges
}

/// The ranges (in characters) of the well-formed `${env:…}` and
/// `${file:…}` references in `line`.
pub fn reference_ranges(line: &str) -> Vec<std::ops::Range<usize>> {
    let chars: Vec<char> = line.chars().collect();
    let mut ranges = Vec::new();
    let mut index = 0;
    while index + 1 < chars.len() {
        if chars[index] == '$' && chars[index + 1] == '$' {
            index += 2;
        } else if chars[index] == '$' && chars[index + 1] == '{' {
            let end = reference_end(&chars, index);
            // Only well-formed ones: `${hunter2}` may be a password.
            let inside: String = chars[index + 2..end].iter().collect();
            if inside
                .strip_suffix('}')
                .is_some_and(|body| parse_reference(body).is_ok())
            {
                ranges.push(index..end);
            }
            index = end;
        } else {
            index += 1;
        }
    }
    ranges
}

/// Where the reference starting at `start` (`${`) ends: after its `}`, or at the end.
fn reference_end(chars: &[char], start: usize) -> usize {
    chars[start..]
        .iter()
        .position(|&character| character == '}')
        .map_or(chars.len(), |offset| start + offset + 1)
}

/// `scheme://user:password@host`: the password.
fn url_passwords(chars: &[char], ranges: &mut Vec<std::ops::Range<usize>>) {
    for start in 0..chars.len().saturating_sub(2) {
        if chars[start..start + 3] != [':', '/', '/'] {
            continue;
        }
        let authority = start + 3;
        let mut end = authority;
        while end < chars.len() && !"/?# \t\"',]}".contains(chars[end]) {
            end = if chars[end] == '$' && chars.get(end + 1) == Some(&'{') {
                reference_end(chars, end)
            } else {
                end + 1
            };
        }
        let end = end.min(chars.len());
        let Some(at) = chars[authority..end].iter().rposition(|&c| c == '@') else {
            continue;
        };
        let at = authority + at;
        if let Some(colon) = chars[authority..at].iter().position(|&c| c == ':') {
            ranges.push(authority + colon + 1..at);
        }
    }
}

/// `?password=…`, `&token=…`: the value.
fn query_secrets(chars: &[char], ranges: &mut Vec<std::ops::Range<usize>>) {
    for start in 0..chars.len() {
        if chars[start] != '?' && chars[start] != '&' {
            continue;
        }
        let key_end = (start + 1..chars.len())
            .find(|&index| !(chars[index].is_ascii_alphanumeric() || "_-.".contains(chars[index])))
            .unwrap_or(chars.len());
        if chars.get(key_end) != Some(&'=') {
            continue;
        }
        let key: String = chars[start + 1..key_end].iter().collect();
        if !is_secret_name(&key) {
            continue;
        }
        let value_end = (key_end + 1..chars.len())
            .find(|&index| "&# \t\"'".contains(chars[index]))
            .unwrap_or(chars.len());
        ranges.push(key_end + 1..value_end);
    }
}

/// `password: …`, `{passwd: "…"}`: the value of a key that names a secret.
fn secret_values(chars: &[char], ranges: &mut Vec<std::ops::Range<usize>>) {
    for colon in 0..chars.len() {
        if chars[colon] != ':' || chars.get(colon + 1).is_some_and(|c| !c.is_whitespace()) {
            continue;
        }
        // The key just before the colon, quoted or not.
        let mut key_end = colon;
        while key_end > 0 && chars[key_end - 1] == ' ' {
            key_end -= 1;
        }
        let key_start = if key_end > 0 && matches!(chars[key_end - 1], '"' | '\'') {
            let quote = chars[key_end - 1];
            key_end -= 1;
            chars[..key_end]
                .iter()
                .rposition(|&c| c == quote)
                .map_or(0, |index| index + 1)
        } else {
            chars[..key_end]
                .iter()
                .rposition(|c| !(c.is_alphanumeric() || "_-.".contains(*c)))
                .map_or(0, |index| index + 1)
        };
        let key: String = chars[key_start..key_end].iter().collect();
        if !is_secret_name(&key) {
            continue;
        }
        let mut start = colon + 1;
        while start < chars.len() && chars[start].is_whitespace() {
            start += 1;
        }
        if start >= chars.len() {
            continue;
        }
        // Inside a flow mapping (`smtp: {password: x, …}`) the value ends at `,` or `}`.
        let mut depth = 0_i32;
        let mut index = 0;
        while index < key_start {
            match chars[index] {
                '$' if chars.get(index + 1) == Some(&'{') => {
                    index = reference_end(chars, index);
                    continue;
                }
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => {}
            }
            index += 1;
        }
        let end = match chars[start] {
            quote @ ('"' | '\'') => (start + 1..chars.len())
                .find(|&index| chars[index] == quote && chars[index - 1] != '\\')
                .map_or(chars.len(), |index| index + 1),
            _ if depth > 0 => {
                let mut index = start;
                while index < chars.len() && !matches!(chars[index], ',' | '}') {
                    index = if chars[index] == '$' && chars.get(index + 1) == Some(&'{') {
                        reference_end(chars, index)
                    } else {
                        index + 1
                    };
                }
                index.min(chars.len())
            }
            _ => (start..chars.len())
                .find(|&index| chars[index] == '#' && chars[index - 1] == ' ')
                .unwrap_or(chars.len()),
        };
        let mut end = end;
        while end > start && chars[end - 1].is_whitespace() {
            end -= 1;
        }
        ranges.push(start..end);
    }
}

/// Whether a connection URL holds a password as literal text, either as
/// `scheme://user:password@host` or as a `password=` query parameter.
pub fn url_has_literal_password(url: &str) -> bool {
    let literal = |value: &str| {
        !value.is_empty() && Template::parse(value).is_ok_and(|template| !template.has_references())
    };
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let in_userinfo = authority
        .rsplit_once('@')
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .is_some_and(|(_, password)| literal(password));
    let query = rest.split_once('?').map_or("", |(_, query)| query);
    let query = query.split('#').next().unwrap_or("");
    let in_query = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .any(|(key, value)| key == "password" && literal(value));
    in_userinfo || in_query
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_literals_and_references() {
        let template =
            Template::parse("postgresql://app:${env:PGPASS}@db/${file:/run/db}?x=$1&y=$${z}")
                .unwrap();
        assert_eq!(
            format!("{template:?}"),
            "Template(***${env:PGPASS}***${file:/run/db}***)"
        );
        assert_eq!(template.references().count(), 2);
        let resolved = template
            .resolve_with(|name| {
                assert_eq!(name, "PGPASS");
                Ok("s3cret".to_owned())
            })
            .unwrap_err();
        assert!(matches!(resolved, Error::File { .. }));
    }

    #[test]
    fn resolves_and_hides_the_value() {
        let directory = tempfile::tempdir().unwrap();
        let file = directory.path().join("secret");
        std::fs::write(&file, "from-file\n").unwrap();
        let template = Template::parse(&format!(
            "a=${{env:X}} b=${{file:{}}} $${{lit}}",
            file.display()
        ))
        .unwrap();
        let secret = template
            .resolve_with(|_| Ok("from-env".to_owned()))
            .unwrap();
        assert_eq!(secret.expose(), "a=from-env b=from-file ${lit}");
        assert_eq!(format!("{secret} {secret:?}"), "*** ***");
    }

    #[test]
    fn rejects_malformed_references() {
        for (text, needle) in [
            ("${env:}", "not an environment variable name"),
            ("${env:1X}", "not an environment variable name"),
            ("${ENV:X}", "unknown reference kind `ENV`"),
            ("${file:relative}", "must be absolute"),
            ("${env:X", "not closed"),
            ("${X}", "names no source"),
        ] {
            let error = Template::parse(text).unwrap_err().to_string();
            assert!(error.contains(needle), "{text}: {error}");
        }
    }

    /// `line` with the credential ranges (less references) as `*`.
    fn masked(line: &str) -> String {
        let credentials = credential_ranges(line);
        let references = reference_ranges(line);
        line.chars()
            .enumerate()
            .map(|(index, character)| {
                let secret = credentials.iter().any(|range| range.contains(&index))
                    && !references.iter().any(|range| range.contains(&index));
                if secret { '*' } else { character }
            })
            .collect()
    }

    #[test]
    fn masks_what_looks_like_a_credential_on_any_line() {
        for (line, shown) in [
            ("      passwd: hunter2", "      passwd: *******"),
            ("      password: [hunter2]", "      password: *********"),
            (
                "      url: \"postgresql://app:hunter2@db/app",
                "      url: ********************************",
            ),
            (
                "  x: postgresql://app:hunter2@db/${env:DB}",
                "  x: postgresql://app:*******@db/${env:DB}",
            ),
            (
                "  x: postgresql://db/app?sslmode=require&password=hunter2#top",
                "  x: postgresql://db/app?sslmode=require&password=*******#top",
            ),
            (
                "  smtp: {host: h, Password: \"hunter2\", port: 25}",
                "  smtp: {host: h, Password: *********, port: 25}",
            ),
            (
                "  headers: {X-Api-Key: ${env:KEY}, Authorization: Bearer hunter2}",
                "  headers: {X-Api-Key: ${env:KEY}, Authorization: **************}",
            ),
            (
                "  token: hunter2 # a comment",
                "  token: ******* # a comment",
            ),
            // A malformed reference may be a password.
            ("  password: ${hunter2}", "  password: **********"),
            // Nothing secret here.
            ("    cron: \"0 1 * * *\"", "    cron: \"0 1 * * *\""),
            (
                "  endpoint: https://s3.example.com:9000",
                "  endpoint: https://s3.example.com:9000",
            ),
            ("  path: /var/backups", "  path: /var/backups"),
        ] {
            assert_eq!(masked(line), shown, "{line}");
        }
    }

    #[test]
    fn redacts_every_resolved_value() {
        let template = Template::parse("https://hooks.example.com/${env:HOOK_TOKEN}").unwrap();
        let secret = template
            .resolve_with(|_| Ok("T0k3n-redact-7f2a".to_owned()))
            .unwrap();
        assert_eq!(
            redact(&format!(
                "GET {} failed; token T0k3n-redact-7f2a",
                secret.expose()
            )),
            "GET *** failed; token ***"
        );
        assert_eq!(redact("nothing here"), "nothing here");
    }

    #[test]
    fn finds_literal_passwords_in_urls() {
        assert!(url_has_literal_password("postgresql://app:hunter2@db/app"));
        assert!(!url_has_literal_password(
            "postgresql://app:${env:P}@db/app"
        ));
        assert!(!url_has_literal_password("postgresql://app@db/app"));
        assert!(url_has_literal_password(
            "postgresql://db/app?sslmode=require&password=x"
        ));
        assert!(!url_has_literal_password(
            "postgresql://db/app?password=${env:P}"
        ));
        assert!(!url_has_literal_password("postgresql://db/app#password=x"));
        assert!(!url_has_literal_password("${env:DATABASE_URL}"));
    }
}

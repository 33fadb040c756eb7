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
            match part {
                Part::Literal(literal) => value.push_str(literal),
                Part::Env(name) => value.push_str(&env(name)?),
                Part::File(path) => value.push_str(&read_secret_file(path)?),
            }
        }
        Ok(Secret(value))
    }
}

fn read_secret_file(path: &Path) -> Result<String, Error> {
    let text = std::fs::read_to_string(path).map_err(|error| Error::File {
        path: path.to_owned(),
        reason: error.to_string(),
    })?;
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

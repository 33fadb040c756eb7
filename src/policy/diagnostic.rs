//! Problems found in policy files, as data.
//!
//! A [`Diagnostic`] names the file, the position, a one-line reason and, where
//! one helps, a hint. It renders like cargo's errors (text) or as JSON. This
//! module only describes and renders problems; it never decides what is wrong.

use std::fmt::Write as _;

use serde::Serialize;

use super::secret;
use super::yaml::Span;

/// How bad a problem is. Errors make a policy unusable; warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem in one policy file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// A stable, machine-readable name for the kind of problem (`unknown-field`).
    pub code: &'static str,
    /// The one-line reason.
    pub message: String,
    /// The file, as the user named it.
    pub file: String,
    /// Line of the problem, from 1; absent for problems with the file as a whole.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// Column of the problem, from 1, in characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    /// The dotted path of the field (`spec.retention.keep-daily`), where there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// The source line and the width to underline; filled in by [`Diagnostic::with_source`].
    #[serde(skip)]
    snippet: Option<Snippet>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Snippet {
    text: String,
    width: usize,
}

impl Diagnostic {
    pub fn error(code: &'static str, file: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            file: file.into(),
            line: None,
            column: None,
            field: None,
            hint: None,
            snippet: None,
        }
    }

    pub fn warning(
        code: &'static str,
        file: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, file, message)
        }
    }

    pub fn at(mut self, span: Span) -> Self {
        self.line = Some(span.start.line.max(1));
        self.column = Some(span.start.column.max(1));
        let width = if span.end.line == span.start.line && span.end.column > span.start.column {
            span.end.column - span.start.column
        } else {
            1
        };
        self.snippet = Some(Snippet {
            text: String::new(),
            width,
        });
        self
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        let field = field.into();
        if !field.is_empty() {
            self.field = Some(field);
        }
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn maybe_hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint.or(self.hint);
        self
    }

    /// Attaches the source line the diagnostic points at, for rendering, with
    /// `*` over the text under any of `masks` (literal secrets) and over
    /// whatever on the line looks like a credential, whatever the problem
    /// and even where the file does not parse
    /// ([`secret::credential_ranges`]). `${…}` references stay visible.
    pub fn with_source(mut self, source: &str, masks: &[Span]) -> Self {
        if let (Some(line), Some(snippet)) = (self.line, self.snippet.as_mut())
            && let Some(text) = source.lines().nth(line - 1)
        {
            let credentials = secret::credential_ranges(text);
            let references = secret::reference_ranges(text);
            snippet.text = text
                .chars()
                .enumerate()
                .map(|(index, character)| {
                    let column = index + 1;
                    let masked = masks.iter().any(|mask| {
                        (mask.start.line, mask.start.column) <= (line, column)
                            && (line, column) < (mask.end.line, mask.end.column)
                    }) || credentials.iter().any(|range| range.contains(&index));
                    let reference = references.iter().any(|range| range.contains(&index));
                    if masked && !reference { '*' } else { character }
                })
                .collect();
        }
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Renders the diagnostic the way cargo does, optionally with ANSI colours.
    pub fn render(&self, color: bool) -> String {
        let paint = |code: &str, text: &str| paint(color, code, text);
        let (label, label_color) = match self.severity {
            Severity::Error => ("error", "1;31"),
            Severity::Warning => ("warning", "1;33"),
        };
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{}{}",
            paint(label_color, label),
            paint("1", &format!(": {}", self.message))
        );
        let location = match (self.line, self.column) {
            (Some(line), Some(column)) => format!("{}:{line}:{column}", self.file),
            _ => self.file.clone(),
        };
        let snippet = self
            .snippet
            .as_ref()
            .filter(|snippet| !snippet.text.is_empty());
        let gutter = match (snippet, self.line) {
            (Some(_), Some(line)) => line.to_string().len(),
            _ => 1,
        };
        let pad = " ".repeat(gutter);
        let _ = writeln!(out, "{pad}{} {location}", paint("1;34", "-->"));
        if let (Some(snippet), Some(line), Some(column)) = (snippet, self.line, self.column) {
            let (text, offset) = display_line(&snippet.text, column);
            let bar = paint("1;34", "|");
            let _ = writeln!(out, "{pad} {bar}");
            let _ = writeln!(out, "{} {bar} {text}", paint("1;34", &line.to_string()));
            let carets = "^".repeat(snippet.width.clamp(1, 80));
            let _ = writeln!(
                out,
                "{pad} {bar} {}{}",
                " ".repeat(offset),
                paint(label_color, &carets)
            );
        }
        if let Some(hint) = &self.hint {
            let _ = writeln!(out, "{pad} {} hint: {hint}", paint("1;34", "="));
        }
        out
    }
}

/// The line as shown (tabs expanded, control characters replaced, long lines
/// cut) and the display offset of `column` within it.
/// `text` in the ANSI style `code` (`1;31` bold red) when `enabled`.
pub fn paint(enabled: bool, code: &str, text: &str) -> String {
    if enabled {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

fn display_line(text: &str, column: usize) -> (String, usize) {
    const MAX_CHARS: usize = 160;
    let mut shown = String::new();
    let mut offset = 0;
    for (index, character) in text.chars().enumerate() {
        if index + 1 == column {
            offset = shown.chars().count();
        }
        if index >= MAX_CHARS {
            shown.push('…');
            break;
        }
        match character {
            '\t' => shown.push_str("    "),
            character if character.is_control() => shown.push('\u{fffd}'),
            character => shown.push(character),
        }
    }
    if column > text.chars().count() {
        offset = shown.chars().count();
    }
    (shown, offset.min(MAX_CHARS))
}

/// The closest of `candidates` to `word`, if close enough to suggest.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|candidate| (strsim::jaro_winkler(word, candidate), candidate))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|left, right| left.0.total_cmp(&right.0))
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::yaml::Position;

    #[test]
    fn renders_like_cargo() {
        let source = "spec:\n  retention:\n    keep-dayly: 7\n";
        let span = Span {
            start: Position { line: 3, column: 5 },
            end: Position {
                line: 3,
                column: 15,
            },
        };
        let diagnostic = Diagnostic::error(
            "unknown-field",
            "policies/app.yaml",
            "unknown field `keep-dayly`",
        )
        .at(span)
        .hint("did you mean `keep-daily`?")
        .with_source(source, &[]);
        insta::assert_snapshot!(diagnostic.render(false), @r"
        error: unknown field `keep-dayly`
         --> policies/app.yaml:3:5
          |
        3 |     keep-dayly: 7
          |     ^^^^^^^^^^
          = hint: did you mean `keep-daily`?
        ");
    }

    #[test]
    fn suggests_only_close_words() {
        let keys = ["keep-last", "keep-daily", "keep-weekly"];
        assert_eq!(did_you_mean("keep-dayly", keys), Some("keep-daily"));
        assert_eq!(did_you_mean("frobnicate", keys), None);
    }
}

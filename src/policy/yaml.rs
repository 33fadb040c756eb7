//! The one place YAML is parsed.
//!
//! Turns policy text into documents of [`Node`]s that remember where every key
//! and value stands (`line:column`), so later layers can point a diagnostic at
//! the exact spot. Scalars are resolved with the YAML 1.2 core schema (so `on`,
//! `yes` and `no` stay strings). Swapping the parser means changing this file
//! only. It must not interpret what a policy means.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span as ParserSpan};

/// A position in the source text; line and column count from 1, in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// The stretch of text a node came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: Position,
    pub end: Position,
}

impl Span {
    /// An empty span at line 1, column 1, for problems with a file as a whole.
    pub fn origin() -> Self {
        let origin = Position { line: 1, column: 1 };
        Span {
            start: origin,
            end: origin,
        }
    }

    fn from_parser(span: ParserSpan) -> Self {
        let convert = |marker: saphyr_parser::Marker| Position {
            line: marker.line(),
            column: marker.col() + 1,
        };
        Span {
            start: convert(span.start),
            end: convert(span.end),
        }
    }
}

/// A YAML value with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub span: Span,
}

/// The value of a node, scalars already resolved to their type.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Integer(i64),
    Float(f64),
    String(String),
    Sequence(Vec<Node>),
    /// Entries in document order. Keys are scalars, kept as text.
    Mapping(Vec<(Key, Node)>),
}

/// A mapping key and where it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub name: String,
    pub span: Span,
}

/// One YAML document of a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// `None` for a document that holds nothing (an empty file, a lone `---`).
    pub root: Option<Node>,
    /// Where the document starts.
    pub start: Position,
    /// Problems that do not stop parsing: duplicate and non-scalar keys.
    pub issues: Vec<Issue>,
}

/// A structural problem found while building the node tree.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    pub message: String,
    pub hint: Option<String>,
    pub span: Span,
}

/// Text that is not valid YAML.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct SyntaxError {
    pub message: String,
    pub position: Position,
}

/// More nodes than any policy needs: a guard against alias bombs ("billion laughs").
const MAX_NODES: usize = 100_000;

/// Stand-ins for the braces of a `${…}` reference while the text is parsed.
const OPEN: char = '\u{E000}';
const CLOSE: char = '\u{E001}';

/// Hides the braces of `${…}` references from the parser: in a flow mapping
/// (`webhook: { url: ${env:ALERT_WEBHOOK} }`, as DESIGN.md writes it) they
/// would end the mapping. One character for one, so positions stay right;
/// [`unprotect`] puts them back in every scalar.
fn protect(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let end = after
            .find(['}', '\n'])
            .filter(|&end| after[end..].starts_with('}'));
        let Some(end) = end else {
            out.push_str(&rest[..start + 2]);
            rest = after;
            continue;
        };
        out.push_str(&rest[..start]);
        out.push('$');
        out.push(OPEN);
        out.push_str(&after[..end]);
        out.push(CLOSE);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

fn unprotect(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains([OPEN, CLOSE]) {
        std::borrow::Cow::Owned(text.replace(OPEN, "{").replace(CLOSE, "}"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// Parses every document of `text`.
pub fn parse(text: &str) -> Result<Vec<Document>, SyntaxError> {
    let protected = protect(text);
    let mut builder = Builder {
        parser: Parser::new_from_str(&protected),
        anchors: HashMap::new(),
        nodes: 0,
        issues: Vec::new(),
    };
    builder.stream()
}

struct Builder<'input> {
    parser: Parser<'input, saphyr_parser::StrInput<'input>>,
    anchors: HashMap<usize, Node>,
    nodes: usize,
    issues: Vec<Issue>,
}

impl<'input> Builder<'input> {
    fn next(&mut self) -> Result<(Event<'input>, ParserSpan), SyntaxError> {
        match self.parser.next_event() {
            Some(Ok(event)) => Ok(event),
            Some(Err(error)) => Err(syntax_error(&error)),
            None => Err(SyntaxError {
                message: "unexpected end of input".to_owned(),
                position: Position::default(),
            }),
        }
    }

    fn stream(&mut self) -> Result<Vec<Document>, SyntaxError> {
        let mut documents = Vec::new();
        loop {
            let (event, span) = self.next()?;
            match event {
                Event::StreamStart | Event::Nothing => {}
                Event::StreamEnd => return Ok(documents),
                Event::DocumentStart(_) => {
                    self.anchors.clear();
                    let start = Span::from_parser(span).start;
                    let (event, span) = self.next()?;
                    let root = if matches!(event, Event::DocumentEnd) {
                        None
                    } else {
                        let node = self.node(event, span)?;
                        let (end, end_span) = self.next()?;
                        if !matches!(end, Event::DocumentEnd) {
                            return Err(unexpected(&end, end_span));
                        }
                        Some(node)
                    };
                    // A document of only `~`/`null` holds nothing either.
                    let root = root.filter(|node| node.value != Value::Null);
                    documents.push(Document {
                        root,
                        start,
                        issues: std::mem::take(&mut self.issues),
                    });
                }
                other => return Err(unexpected(&other, span)),
            }
        }
    }

    fn count(&mut self, span: ParserSpan) -> Result<(), SyntaxError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(SyntaxError {
                message: format!(
                    "more than {MAX_NODES} values (are aliases expanding without bound?)"
                ),
                position: Span::from_parser(span).start,
            });
        }
        Ok(())
    }

    fn node(&mut self, event: Event<'input>, span: ParserSpan) -> Result<Node, SyntaxError> {
        self.count(span)?;
        let (node, anchor) = match event {
            Event::Scalar(text, style, anchor, tag) => {
                let text = unprotect(&text);
                let forced_string = tag.as_ref().is_some_and(|tag| tag.suffix == "str");
                let value = if style == ScalarStyle::Plain && !forced_string {
                    resolve_plain(&text)
                } else {
                    Value::String(text.into_owned())
                };
                let node = Node {
                    value,
                    span: Span::from_parser(span),
                };
                (node, anchor)
            }
            Event::Alias(id) => {
                let Some(target) = self.anchors.get(&id) else {
                    return Err(SyntaxError {
                        message: "alias to an unknown anchor".to_owned(),
                        position: Span::from_parser(span).start,
                    });
                };
                let size = target.size();
                self.nodes += size;
                if self.nodes > MAX_NODES {
                    return Err(SyntaxError {
                        message: format!(
                            "more than {MAX_NODES} values (are aliases expanding without bound?)"
                        ),
                        position: Span::from_parser(span).start,
                    });
                }
                // The copy points at the alias, so problems inside it are found.
                let mut node = target.clone();
                node.relocate(Span::from_parser(span));
                return Ok(node);
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                let end = loop {
                    let (event, item_span) = self.next()?;
                    if matches!(event, Event::SequenceEnd) {
                        break item_span;
                    }
                    items.push(self.node(event, item_span)?);
                };
                let node = Node {
                    value: Value::Sequence(items),
                    span: Span {
                        start: Span::from_parser(span).start,
                        end: Span::from_parser(end).end,
                    },
                };
                (node, anchor)
            }
            Event::MappingStart(anchor, _) => {
                let mut entries: Vec<(Key, Node)> = Vec::new();
                let end = loop {
                    let (event, key_span) = self.next()?;
                    if matches!(event, Event::MappingEnd) {
                        break key_span;
                    }
                    let key_node = self.node(event, key_span)?;
                    let (event, value_span) = self.next()?;
                    let value = self.node(event, value_span)?;
                    let Some(name) = key_node.scalar_text() else {
                        self.issues.push(Issue {
                            message: "mapping keys must be plain text".to_owned(),
                            hint: Some("a policy never uses a list or mapping as a key".to_owned()),
                            span: key_node.span,
                        });
                        continue;
                    };
                    if let Some((first, _)) = entries.iter().find(|(key, _)| key.name == name) {
                        self.issues.push(Issue {
                            message: format!("duplicate key `{name}`"),
                            hint: Some(format!(
                                "`{name}` is already set at line {}; keep one",
                                first.span.start.line
                            )),
                            span: key_node.span,
                        });
                        continue;
                    }
                    entries.push((
                        Key {
                            name,
                            span: key_node.span,
                        },
                        value,
                    ));
                };
                let node = Node {
                    value: Value::Mapping(entries),
                    span: Span {
                        start: Span::from_parser(span).start,
                        end: Span::from_parser(end).end,
                    },
                };
                (node, anchor)
            }
            other => return Err(unexpected(&other, span)),
        };
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Ok(node)
    }
}

impl Node {
    /// The text of a scalar, as written; `None` for sequences and mappings.
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::Null => Some(String::new()),
            Value::Bool(value) => Some(value.to_string()),
            Value::Integer(value) => Some(value.to_string()),
            Value::Float(value) => Some(value.to_string()),
            Value::String(value) => Some(value.clone()),
            Value::Sequence(_) | Value::Mapping(_) => None,
        }
    }

    /// The value under `key` of a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(_, node)| node)
    }

    /// The key and value under `key` of a mapping.
    pub fn entry(&self, key: &str) -> Option<(&Key, &Node)> {
        match &self.value {
            Value::Mapping(entries) => entries
                .iter()
                .find(|(candidate, _)| candidate.name == key)
                .map(|(key, node)| (key, node)),
            _ => None,
        }
    }

    fn size(&self) -> usize {
        1 + match &self.value {
            Value::Sequence(items) => items.iter().map(Node::size).sum(),
            Value::Mapping(entries) => entries.iter().map(|(_, node)| node.size()).sum(),
            _ => 0,
        }
    }

    fn relocate(&mut self, span: Span) {
        self.span = span;
        match &mut self.value {
            Value::Sequence(items) => items.iter_mut().for_each(|item| item.relocate(span)),
            Value::Mapping(entries) => entries.iter_mut().for_each(|(key, node)| {
                key.span = span;
                node.relocate(span);
            }),
            _ => {}
        }
    }

    /// The node as JSON, for schema validation and typed deserialization.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as Json;
        match &self.value {
            Value::Null => Json::Null,
            Value::Bool(value) => Json::Bool(*value),
            Value::Integer(value) => Json::from(*value),
            Value::Float(value) => {
                serde_json::Number::from_f64(*value).map_or(Json::Null, Json::Number)
            }
            Value::String(value) => Json::String(value.clone()),
            Value::Sequence(items) => Json::Array(items.iter().map(Node::to_json).collect()),
            Value::Mapping(entries) => Json::Object(
                entries
                    .iter()
                    .map(|(key, node)| (key.name.clone(), node.to_json()))
                    .collect(),
            ),
        }
    }

    /// A short name for the kind of value, for messages ("a string", "a list").
    pub fn describe(&self) -> &'static str {
        match &self.value {
            Value::Null => "nothing (null)",
            Value::Bool(_) => "a boolean",
            Value::Integer(_) => "an integer",
            Value::Float(_) => "a number",
            Value::String(_) => "a string",
            Value::Sequence(_) => "a list",
            Value::Mapping(_) => "a mapping",
        }
    }
}

/// Resolves a plain scalar with the YAML 1.2 core schema.
fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|byte| byte.is_ascii_digit()) {
        if let Ok(value) = text.parse::<i64>() {
            return Value::Integer(value);
        }
        // Too large for i64: keep it as a number so range checks see it.
        if let Ok(value) = text.parse::<f64>() {
            return Value::Float(value);
        }
    }
    if let Some(hex) = text.strip_prefix("0x")
        && let Ok(value) = i64::from_str_radix(hex, 16)
    {
        return Value::Integer(value);
    }
    if let Some(octal) = text.strip_prefix("0o")
        && let Ok(value) = i64::from_str_radix(octal, 8)
    {
        return Value::Integer(value);
    }
    if is_core_float(text)
        && let Ok(value) = text.parse::<f64>()
    {
        return Value::Float(value);
    }
    Value::String(text.to_owned())
}

/// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`
fn is_core_float(text: &str) -> bool {
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(index) => (&body[..index], Some(&body[index + 1..])),
        None => (body, None),
    };
    let (whole, fraction) = match mantissa.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (mantissa, None),
    };
    let all_digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
    let mantissa_ok = match fraction {
        Some(fraction) => {
            all_digits(whole) && all_digits(fraction) && !(whole.is_empty() && fraction.is_empty())
        }
        None => !whole.is_empty() && all_digits(whole),
    };
    let exponent_ok = exponent.is_none_or(|exponent| {
        let digits = exponent.strip_prefix(['-', '+']).unwrap_or(exponent);
        !digits.is_empty() && all_digits(digits)
    });
    mantissa_ok && exponent_ok
}

fn syntax_error(error: &ScanError) -> SyntaxError {
    let marker = error.marker();
    SyntaxError {
        message: error.info().to_owned(),
        position: Position {
            line: marker.line(),
            column: marker.col() + 1,
        },
    }
}

fn unexpected(event: &Event<'_>, span: ParserSpan) -> SyntaxError {
    SyntaxError {
        message: format!("unexpected {event:?}"),
        position: Span::from_parser(span).start,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(text: &str) -> Node {
        parse(text).unwrap().remove(0).root.unwrap()
    }

    #[test]
    fn resolves_core_schema_scalars() {
        let node = root(
            "a: 7\nb: '7'\nc: true\nd: on\ne: ~\nf: 1.5\ng: 0x1f\nh: !!str 12\ni: 1e3\nj: 1.2.3\n",
        );
        let json = node.to_json();
        assert_eq!(
            json,
            serde_json::json!({"a": 7, "b": "7", "c": true, "d": "on", "e": null, "f": 1.5, "g": 31, "h": "12", "i": 1000.0, "j": "1.2.3"})
        );
    }

    #[test]
    fn keeps_positions_of_keys_and_values() {
        let node = root("spec:\n  retention:\n    keep-daily: 7\n");
        let (key, value) = node
            .get("spec")
            .unwrap()
            .get("retention")
            .unwrap()
            .entry("keep-daily")
            .unwrap();
        assert_eq!(key.span.start, Position { line: 3, column: 5 });
        assert_eq!(
            value.span.start,
            Position {
                line: 3,
                column: 17
            }
        );
    }

    #[test]
    fn reports_duplicate_keys_without_stopping() {
        let documents = parse("a: 1\nb: 2\na: 3\n").unwrap();
        assert_eq!(documents[0].issues.len(), 1);
        assert_eq!(documents[0].issues[0].span.start.line, 3);
        assert_eq!(
            documents[0].root.as_ref().unwrap().to_json(),
            serde_json::json!({"a": 1, "b": 2})
        );
    }

    #[test]
    fn splits_documents_and_keeps_empty_ones_empty() {
        let documents = parse("a: 1\n---\n---\nb: 2\n").unwrap();
        assert_eq!(documents.len(), 3);
        assert!(documents[1].root.is_none());
        assert_eq!(documents[2].start.line, 3);
    }

    #[test]
    fn expands_aliases_but_not_without_bound() {
        let node = root("base: &b {x: 1}\ncopy: *b\n");
        assert_eq!(
            node.get("copy").unwrap().to_json(),
            serde_json::json!({"x": 1})
        );
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..10 {
            let previous = level - 1;
            bomb.push_str(&format!(
                "a{level}: &a{level} [*a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}]\n"
            ));
        }
        let error = parse(&bomb).unwrap_err();
        assert!(error.message.contains("aliases"), "{error}");
    }

    #[test]
    fn reports_tabs_with_position() {
        let error = parse("spec:\n\tname: x\n").unwrap_err();
        assert_eq!(error.position.line, 2);
    }
}

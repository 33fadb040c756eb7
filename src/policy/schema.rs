//! The policy's JSON Schema: generated from the wire types, and used to check
//! documents so that every structural problem is reported at once, at its
//! position.
//!
//! `schema/policy.v1.json` is this module's output, committed; a test fails
//! when they differ. Translating a schema error into a [`Diagnostic`] is here
//! too: it knows the schema's shape (tagged unions as `oneOf`), not the meaning
//! of any field.

use std::sync::LazyLock;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::paths::{Location, LocationSegment};
use jsonschema::{ValidationError, Validator};
use schemars::generate::SchemaSettings;
use serde_json::Value as Json;

use super::diagnostic::{Diagnostic, did_you_mean};
use super::settings::SettingsDocumentSpec;
use super::spec::PolicyDocumentSpec;
use super::yaml::{Key, Node, Value};

/// The JSON Schema of a `backup/v1` policy document.
pub fn policy_schema() -> Json {
    schema_for::<PolicyDocumentSpec>()
}

/// The JSON Schema of the settings document (`kind: Settings`).
pub fn settings_schema() -> Json {
    schema_for::<SettingsDocumentSpec>()
}

fn schema_for<T: schemars::JsonSchema>() -> Json {
    let generator = SchemaSettings::draft2020_12()
        .for_deserialize()
        .into_generator();
    let schema = generator.into_root_schema_for::<T>();
    let mut value = schema.to_value();
    describe_variant_properties(&mut value);
    value
}

/// A tagged variant (`postgres: …`) is documented on its `oneOf` branch;
/// editors show the property's description, so copy it there.
fn describe_variant_properties(schema: &mut Json) {
    match schema {
        Json::Object(object) => {
            if let Some(Json::Array(branches)) = object.get_mut("oneOf") {
                for branch in branches.iter_mut() {
                    let description = branch.get("description").cloned();
                    let property = branch
                        .get_mut("properties")
                        .and_then(Json::as_object_mut)
                        .filter(|properties| properties.len() == 1)
                        .and_then(|properties| properties.values_mut().next())
                        .and_then(Json::as_object_mut);
                    if let (Some(description), Some(property)) = (description, property) {
                        property.entry("description").or_insert(description);
                    }
                }
            }
            object.values_mut().for_each(describe_variant_properties);
        }
        Json::Array(items) => items.iter_mut().for_each(describe_variant_properties),
        _ => {}
    }
}

/// The schema as committed: pretty JSON with a final newline.
pub fn policy_schema_text() -> String {
    committed_text(&policy_schema())
}

/// The settings schema as committed (`schema/settings.v1.json`).
pub fn settings_schema_text() -> String {
    committed_text(&settings_schema())
}

fn committed_text(schema: &Json) -> String {
    let mut text = serde_json::to_string_pretty(schema).unwrap_or_default();
    text.push('\n');
    text
}

struct Compiled {
    schema: Json,
    validator: Result<Validator, String>,
}

impl Compiled {
    fn new(schema: Json) -> Compiled {
        let validator = jsonschema::validator_for(&schema).map_err(|error| error.to_string());
        Compiled { schema, validator }
    }
}

static COMPILED: LazyLock<Compiled> = LazyLock::new(|| Compiled::new(policy_schema()));

static SETTINGS: LazyLock<Compiled> = LazyLock::new(|| Compiled::new(settings_schema()));

/// Checks one policy document against the schema and returns every problem found.
pub fn check(document: &Node, file: &str) -> Vec<Diagnostic> {
    check_against(&COMPILED, document, file)
}

/// Checks a settings document against its schema.
pub fn check_settings(document: &Node, file: &str) -> Vec<Diagnostic> {
    check_against(&SETTINGS, document, file)
}

fn check_against(compiled: &Compiled, document: &Node, file: &str) -> Vec<Diagnostic> {
    let validator = match &compiled.validator {
        Ok(validator) => validator,
        Err(error) => {
            return vec![Diagnostic::error(
                "internal",
                file,
                format!("the built-in schema does not compile: {error}"),
            )];
        }
    };
    let instance = document.to_json();
    let translator = Translator {
        root: document,
        file,
        schema: &compiled.schema,
    };
    let mut diagnostics = Vec::new();
    for error in validator.iter_errors(&instance) {
        translator.translate(&error, &mut diagnostics);
    }
    diagnostics.sort_by_key(|diagnostic| (diagnostic.line, diagnostic.column));
    diagnostics.dedup();
    diagnostics
}

struct Translator<'a> {
    root: &'a Node,
    file: &'a str,
    schema: &'a Json,
}

/// One branch of a union, as the schema describes it.
enum Alternative {
    /// A mapping with this single key (`postgres: …`).
    Tag(String),
    /// This constant (`require`).
    Constant(String),
    Other,
}

/// Where an instance path leads: the node, and the key it sits under.
struct Found<'a> {
    key: Option<&'a Key>,
    node: &'a Node,
    field: String,
}

impl<'a> Translator<'a> {
    fn find(&self, location: &Location) -> Found<'a> {
        let mut found = Found {
            key: None,
            node: self.root,
            field: String::new(),
        };
        for segment in location.segments() {
            match (segment, &found.node.value) {
                (LocationSegment::Property(name), Value::Mapping(_)) => {
                    let Some((key, node)) = found.node.entry(&name) else {
                        break;
                    };
                    found.key = Some(key);
                    found.node = node;
                    if !found.field.is_empty() {
                        found.field.push('.');
                    }
                    found.field.push_str(&name);
                }
                (LocationSegment::Index(index), Value::Sequence(items)) => {
                    let Some(node) = items.get(index) else { break };
                    found.node = node;
                    found.field.push_str(&format!("[{index}]"));
                }
                _ => break,
            }
        }
        found
    }

    fn translate(&self, error: &ValidationError<'_>, out: &mut Vec<Diagnostic>) {
        let found = self.find(error.instance_path());
        let at_value = |code: &'static str, message: String| {
            Diagnostic::error(code, self.file, message)
                .at(found.node.span)
                .field(found.field.clone())
        };
        match error.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                let allowed = self.allowed_properties(error.schema_path());
                for name in unexpected {
                    let span = found
                        .node
                        .entry(name)
                        .map_or(found.node.span, |(key, _)| key.span);
                    let field = join_field(&found.field, name);
                    let hint = match (
                        did_you_mean(name, allowed.iter().map(String::as_str)),
                        allowed.as_slice(),
                    ) {
                        (Some(close), _) => format!("did you mean `{close}`?"),
                        (None, []) => "remove it".to_owned(),
                        (None, [only]) => format!("the only field here is `{only}`"),
                        (None, _) => format!("expected one of {}", list(&allowed)),
                    };
                    out.push(
                        Diagnostic::error(
                            "unknown-field",
                            self.file,
                            format!("unknown field `{name}`"),
                        )
                        .at(span)
                        .field(field)
                        .hint(hint),
                    );
                }
            }
            ValidationErrorKind::Required { property } => {
                let name = property.as_str().unwrap_or_default();
                let span = found.key.map_or(found.node.span, |key| key.span);
                let parent = found
                    .key
                    .map_or("the document".to_owned(), |key| format!("`{}`", key.name));
                out.push(
                    Diagnostic::error(
                        "missing-field",
                        self.file,
                        format!("missing field `{name}`"),
                    )
                    .at(span)
                    .field(found.field.clone())
                    .hint(format!("add `{name}:` under {parent}")),
                );
            }
            ValidationErrorKind::Type { kind } => {
                out.push(at_value(
                    "wrong-type",
                    format!(
                        "expected {}, found {}",
                        describe_type(kind),
                        found.node.describe()
                    ),
                ));
            }
            ValidationErrorKind::Enum { options } => {
                let options: Vec<String> = options
                    .as_array()
                    .map(|values| values.iter().map(json_text).collect())
                    .unwrap_or_default();
                out.push(self.not_a_choice(&found, &options));
            }
            ValidationErrorKind::Constant { expected_value } => {
                let value = found.node.scalar_text().unwrap_or_default();
                out.push(
                    at_value("invalid-value", format!("`{value}` is not allowed here"))
                        .hint(format!("expected `{}`", json_text(expected_value))),
                );
            }
            ValidationErrorKind::Minimum { limit }
            | ValidationErrorKind::ExclusiveMinimum { limit } => {
                let value = found.node.scalar_text().unwrap_or_default();
                out.push(at_value(
                    "out-of-range",
                    format!("{} must be {limit} or more, found {value}", name_of(&found)),
                ));
            }
            ValidationErrorKind::Maximum { limit }
            | ValidationErrorKind::ExclusiveMaximum { limit } => {
                let value = found.node.scalar_text().unwrap_or_default();
                out.push(at_value(
                    "out-of-range",
                    format!("{} must be {limit} or less, found {value}", name_of(&found)),
                ));
            }
            ValidationErrorKind::MinItems { limit } => {
                out.push(at_value(
                    "too-few",
                    format!(
                        "{} needs at least {limit} entr{}",
                        name_of(&found),
                        if *limit == 1 { "y" } else { "ies" }
                    ),
                ));
            }
            ValidationErrorKind::MinLength { limit } => {
                let message = if *limit == 1 {
                    format!("{} must not be empty", name_of(&found))
                } else {
                    format!(
                        "{} must be at least {limit} characters long",
                        name_of(&found)
                    )
                };
                out.push(at_value("invalid-value", message));
            }
            ValidationErrorKind::MaxLength { limit } => {
                out.push(at_value(
                    "invalid-value",
                    format!(
                        "{} must be at most {limit} characters long",
                        name_of(&found)
                    ),
                ));
            }
            ValidationErrorKind::Pattern { pattern } => {
                let value = found.node.scalar_text().unwrap_or_default();
                let (message, hint) = pattern_message(&found.field, &value, pattern);
                out.push(at_value("invalid-value", message).hint(hint));
            }
            ValidationErrorKind::OneOfNotValid { .. } | ValidationErrorKind::AnyOf { .. } => {
                self.translate_union(error, &found, out);
            }
            _ => out.push(at_value("invalid-value", error.to_string())),
        }
    }

    /// A tagged union (`source: {postgres: …}`) or a choice of constants
    /// (`sslmode: require`) failed. The alternatives are read from the schema;
    /// when the author clearly meant one branch, that branch's problems are reported.
    fn translate_union(
        &self,
        error: &ValidationError<'_>,
        found: &Found<'_>,
        out: &mut Vec<Diagnostic>,
    ) {
        let branches = match error.kind() {
            ValidationErrorKind::OneOfNotValid { context }
            | ValidationErrorKind::AnyOf { context } => context,
            _ => return,
        };
        let schemas: &[Json] = self
            .schema
            .pointer(error.schema_path().as_str())
            .and_then(Json::as_array)
            .map_or(&[], Vec::as_slice);
        // An optional field (`T` or null) that is set: its problems are `T`'s.
        let is_null = |branch: &Json| branch.get("type").and_then(Json::as_str) == Some("null");
        if found.node.value != Value::Null && schemas.iter().any(is_null) {
            let mut set = schemas
                .iter()
                .zip(branches)
                .filter(|(schema, _)| !is_null(schema));
            if let (Some((_, errors)), None) = (set.next(), set.next()) {
                for error in errors {
                    self.translate(error, out);
                }
                return;
            }
        }
        let alternatives: Vec<Alternative> = schemas
            .iter()
            .map(|branch| self.alternative(branch))
            .collect();
        let here = |code: &'static str, message: String| {
            Diagnostic::error(code, self.file, message)
                .at(found.node.span)
                .field(found.field.clone())
        };
        let constants: Vec<String> = alternatives
            .iter()
            .filter_map(|alternative| match alternative {
                Alternative::Constant(value) => Some(value.clone()),
                _ => None,
            })
            .collect();
        let tags: Vec<String> = alternatives
            .iter()
            .filter_map(|alternative| match alternative {
                Alternative::Tag(name) => Some(name.clone()),
                _ => None,
            })
            .collect();
        let Value::Mapping(entries) = &found.node.value else {
            if !constants.is_empty() {
                out.push(self.not_a_choice(found, &constants));
            } else {
                out.push(
                    here(
                        "wrong-type",
                        format!(
                            "expected a mapping with one of {}, found {}",
                            list(&tags),
                            found.node.describe()
                        ),
                    )
                    .hint(format!(
                        "for example `{}: …`",
                        tags.first().map_or("", String::as_str)
                    )),
                );
            }
            return;
        };
        let present: Vec<&Key> = entries
            .iter()
            .map(|(key, _)| key)
            .filter(|key| tags.contains(&key.name))
            .collect();
        match present.as_slice() {
            [one] => {
                // The author chose this branch: its problems are the real ones.
                let index = alternatives
                    .iter()
                    .position(|alternative| matches!(alternative, Alternative::Tag(name) if *name == one.name));
                if let Some(errors) = index.and_then(|index| branches.get(index)) {
                    for error in errors {
                        self.translate(error, out);
                    }
                    return;
                }
            }
            [_, second, ..] => {
                let names: Vec<String> = present.iter().map(|key| key.name.clone()).collect();
                out.push(
                    Diagnostic::error(
                        "conflicting-fields",
                        self.file,
                        format!("{} cannot be combined", join_quoted(&names, "and")),
                    )
                    .at(second.span)
                    .field(found.field.clone())
                    .hint("give exactly one"),
                );
                return;
            }
            [] => {}
        }
        let unknown: Vec<&Key> = entries
            .iter()
            .map(|(key, _)| key)
            .filter(|key| !tags.contains(&key.name))
            .collect();
        if unknown.is_empty() {
            out.push(here(
                "missing-field",
                format!("expected one of {}", list(&tags)),
            ));
        }
        for key in unknown {
            let hint = match did_you_mean(&key.name, tags.iter().map(String::as_str)) {
                Some(close) => format!("did you mean `{close}`?"),
                None => format!("expected one of {}", list(&tags)),
            };
            out.push(
                Diagnostic::error(
                    "unknown-field",
                    self.file,
                    format!("unknown field `{}`", key.name),
                )
                .at(key.span)
                .field(join_field(&found.field, &key.name))
                .hint(hint),
            );
        }
    }

    /// A value that is not one of the allowed `choices` (`sslmode: bogus`):
    /// the value, the field, and every choice.
    fn not_a_choice(&self, found: &Found<'_>, choices: &[String]) -> Diagnostic {
        let value = found
            .node
            .scalar_text()
            .unwrap_or_else(|| found.node.describe().to_owned());
        let close = did_you_mean(&value, choices.iter().map(String::as_str));
        let hint = match (close, choices) {
            (Some(close), [_]) => format!("did you mean `{close}`?"),
            (None, [only]) => format!("expected `{only}`"),
            (Some(close), _) => {
                format!("did you mean `{close}`? expected one of {}", list(choices))
            }
            (None, _) => format!("expected one of {}", list(choices)),
        };
        Diagnostic::error(
            "invalid-value",
            self.file,
            format!("`{value}` is not allowed for {}", name_of(found)),
        )
        .at(found.node.span)
        .field(found.field.clone())
        .hint(hint)
    }

    /// What one branch of a union accepts: a tagged mapping or a constant.
    fn alternative(&self, branch: &Json) -> Alternative {
        let branch = match branch.get("$ref").and_then(Json::as_str) {
            Some(reference) => reference
                .strip_prefix('#')
                .and_then(|pointer| self.schema.pointer(pointer))
                .unwrap_or(branch),
            None => branch,
        };
        if let Some(value) = branch.get("const") {
            return Alternative::Constant(json_text(value));
        }
        match branch
            .get("required")
            .and_then(Json::as_array)
            .map(Vec::as_slice)
        {
            Some([name]) => name
                .as_str()
                .map_or(Alternative::Other, |name| Alternative::Tag(name.to_owned())),
            _ => Alternative::Other,
        }
    }

    /// The property names the schema allows where `additionalProperties` failed.
    fn allowed_properties(&self, schema_path: &Location) -> Vec<String> {
        let pointer = schema_path.as_str();
        let parent = pointer
            .strip_suffix("/additionalProperties")
            .unwrap_or(pointer);
        self.schema
            .pointer(parent)
            .and_then(|schema| schema.get("properties"))
            .and_then(Json::as_object)
            .map(|properties| properties.keys().cloned().collect())
            .unwrap_or_default()
    }
}

fn pattern_message(field: &str, value: &str, pattern: &str) -> (String, String) {
    if field.ends_with("metadata.name") {
        return (
            format!("invalid policy name `{value}`"),
            "use lowercase letters, digits and `-`, starting with a letter or digit, e.g. `app-db`"
                .to_owned(),
        );
    }
    if field.ends_with("keep-within") || field.ends_with("max-age") {
        return (
            format!("`{value}` is not a duration"),
            "write a number and a unit (y, m, d, h), combined if needed: `14d`, `36h`, `1y6m`"
                .to_owned(),
        );
    }
    (
        format!("`{value}` does not match `{pattern}`"),
        "see the field's description in the schema".to_owned(),
    )
}

/// The field's own name, quoted, for messages (`keep-last`, or `the value`).
fn name_of(found: &Found<'_>) -> String {
    found
        .key
        .map_or("the value".to_owned(), |key| format!("`{}`", key.name))
}

/// The expected type(s), leaving out `null`: an optional field is optional
/// by being absent, and saying "null or an integer" only confuses.
fn describe_type(kind: &TypeKind) -> String {
    let name = |json_type: &jsonschema::JsonType| match json_type.to_string().as_str() {
        "object" => "a mapping".to_owned(),
        "array" => "a list".to_owned(),
        "integer" => "an integer".to_owned(),
        "null" => "nothing (null)".to_owned(),
        other => format!("a {other}"),
    };
    match kind {
        TypeKind::Single(json_type) => name(json_type),
        TypeKind::Multiple(types) => {
            let names: Vec<String> = types
                .iter()
                .filter(|json_type| json_type.to_string() != "null")
                .map(|json_type| name(&json_type))
                .collect();
            names.join(" or ")
        }
    }
}

fn join_field(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}.{name}")
    }
}

fn json_text(value: &Json) -> String {
    match value {
        Json::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// `a`, `b` or `c`.
fn list(items: &[String]) -> String {
    join_quoted(items, "or")
}

/// `a`, `b` and `c` (with `conjunction` between the last two).
fn join_quoted(items: &[String], conjunction: &str) -> String {
    let quoted: Vec<String> = items.iter().map(|item| format!("`{item}`")).collect();
    match quoted.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} {conjunction} {last}", init.join(", ")),
    }
}

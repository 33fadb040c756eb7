//! The committed JSON Schema is what the code generates, and documents every field.
//!
//! `BACKUP_UPDATE_SCHEMA=1 cargo test --test schema` rewrites the committed file.

use std::path::PathBuf;

use backup::policy::schema::{
    policy_schema, policy_schema_text, settings_schema, settings_schema_text,
};

fn assert_committed(file: &str, generated: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("schema")
        .join(file);
    if std::env::var_os("BACKUP_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "schema/{file} is out of date; run `BACKUP_UPDATE_SCHEMA=1 cargo test --test schema` and commit it"
    );
}

#[test]
fn committed_schema_is_up_to_date() {
    assert_committed("policy.v1.json", &policy_schema_text());
}

#[test]
fn committed_settings_schema_is_up_to_date() {
    assert_committed("settings.v1.json", &settings_schema_text());
}

#[test]
fn every_settings_property_has_a_description() {
    let mut missing = Vec::new();
    visit(&settings_schema(), "#", &mut missing);
    assert!(
        missing.is_empty(),
        "properties without a description: {missing:#?}"
    );
}

#[test]
fn committed_sidecar_schema_is_up_to_date() {
    assert_committed(
        "backup-metadata.v1.json",
        &backup::inventory::metadata::schema_text(),
    );
}

#[test]
fn every_property_has_a_description() {
    let schema = policy_schema();
    let mut missing = Vec::new();
    visit(&schema, "#", &mut missing);
    assert!(
        missing.is_empty(),
        "properties without a description: {missing:#?}"
    );
}

fn visit(schema: &serde_json::Value, path: &str, missing: &mut Vec<String>) {
    match schema {
        serde_json::Value::Object(object) => {
            if let Some(serde_json::Value::Object(properties)) = object.get("properties") {
                for (name, property) in properties {
                    let described = property
                        .get("description")
                        .and_then(serde_json::Value::as_str)
                        .is_some_and(|text| !text.trim().is_empty());
                    if !described {
                        missing.push(format!("{path}/properties/{name}"));
                    }
                }
            }
            for (key, value) in object {
                visit(value, &format!("{path}/{key}"), missing);
            }
        }
        serde_json::Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                visit(item, &format!("{path}/{index}"), missing);
            }
        }
        _ => {}
    }
}

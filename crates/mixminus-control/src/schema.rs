//! Kazoo's JSON schemas, run on request bodies at runtime as crossbar runs them
//! (`cb_context:validate_request_data` → `kz_json_schema:validate`), through the
//! `jsonschema` crate.
//!
//! - The schemas are Kazoo's own (`kazoo/*.schema.json` in this crate): `conferences` for
//!   conference documents, `metaflows.relate` for relate bodies. Where Kazoo's
//!   `conferences` schema refers to `conferences.profile`, mixminus's own
//!   `mixminus.profile` stands (the profile keys the mixer reads, with their ranges).
//! - mixminus's documented extensions are patched into them when they load, and nowhere
//!   else: a client-chosen conference `id` (`^[A-Za-z0-9_-]{1,64}$`), `max_participants`
//!   0..=16000, and on relate arrays of ids and arrays of relationship words.
//! - Like Kazoo's `fix_js_types` (crossbar validates non-strictly by default), a value
//!   that fails a `type` rule asking for an integer, a number or a boolean, and is a
//!   string that converts (`"5"`, `"true"`), is converted in place and the body is
//!   validated again. The converted body is what the caller keeps.
//! - An error maps onto Kazoo's error envelope: the dotted path of the field (relative to
//!   `data`), the rule in Kazoo's words (`type`, `required`, `enum`, `minimum`,
//!   `maxLength`, `pattern`, `uniqueItems`, …) and Kazoo's message. Kazoo lists every
//!   failing field; mixminus names the first one.

use std::sync::OnceLock;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::paths::LocationSegment;
use jsonschema::{JsonType, ValidationError, Validator};
use serde_json::{json, Map, Value};

use crate::ApiError;

/// The bodies validated against a schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Body {
    /// A conference document (`conferences` + extensions).
    Conference,
    /// A relate body (`metaflows.relate` + extensions).
    Relate,
    /// A channels metaflow node (`module` and its `data`).
    Metaflow,
}

/// How many rounds of type fixing one body may take (each round fixes every field it can).
const FIX_ROUNDS: usize = 4;

/// Validates `value` against the schema for `body`, converting JavaScript-style strings
/// where Kazoo's `fix_js_types` would; on failure nothing is left half-converted that
/// matters, as the caller refuses the request.
pub fn validate(body: Body, value: &mut Value) -> Result<(), ApiError> {
    let validator = validator(body);
    for _ in 0..FIX_ROUNDS {
        let fixes: Vec<(String, Value)> = {
            let mut errors = validator.iter_errors(value).peekable();
            if errors.peek().is_none() {
                return Ok(());
            }
            errors.filter_map(|e| js_fix(&e)).collect()
        };
        if fixes.is_empty() {
            break;
        }
        for (pointer, fixed) in fixes {
            if let Some(slot) = value.pointer_mut(&pointer) {
                *slot = fixed;
            }
        }
    }
    match validator.iter_errors(value).next() {
        None => Ok(()),
        Some(error) => Err(to_api_error(&error)),
    }
}

/// The `(JSON pointer, converted value)` Kazoo's `fix_js_types` makes of a type error.
fn js_fix(error: &ValidationError<'_>) -> Option<(String, Value)> {
    let ValidationErrorKind::Type { kind: TypeKind::Single(want) } = error.kind() else {
        return None;
    };
    let Value::String(text) = error.instance().as_ref() else { return None };
    let fixed = js_convert(text, *want)?;
    Some((error.instance_path().as_str().to_owned(), fixed))
}

/// `text` as `want`, when it reads as one (`kz_term:to_integer`, `to_number`, `to_boolean`).
pub(crate) fn js_convert(text: &str, want: JsonType) -> Option<Value> {
    let text = text.trim();
    match want {
        JsonType::Integer => text.parse::<i64>().ok().map(Value::from),
        JsonType::Number => text
            .parse::<i64>()
            .map(Value::from)
            .ok()
            .or_else(|| text.parse::<f64>().ok().filter(|f| f.is_finite()).map(Value::from)),
        JsonType::Boolean => match text {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            _ => None,
        },
        _ => None,
    }
}

fn validator(body: Body) -> &'static Validator {
    static SCHEMAS: OnceLock<[Validator; 3]> = OnceLock::new();
    let all = SCHEMAS.get_or_init(|| {
        [compile(conference_schema()), compile(relate_schema()), compile(metaflow_schema())]
    });
    match body {
        Body::Conference => &all[0],
        Body::Relate => &all[1],
        Body::Metaflow => &all[2],
    }
}

fn compile(schema: Value) -> Validator {
    // The schemas are compiled into the binary and checked by this crate's tests, so a
    // failure here is a bug in them, not something a request can cause.
    jsonschema::validator_for(&schema).expect("the embedded schemas compile")
}

fn parse(text: &str) -> Value {
    // Embedded at compile time and covered by the tests: cannot fail at runtime.
    serde_json::from_str(text).expect("the embedded schemas are JSON")
}

/// Kazoo's `conferences` schema, its profile reference resolved to `mixminus.profile`,
/// with mixminus's extensions.
pub fn conference_schema() -> Value {
    let mut schema = parse(include_str!("../kazoo/conferences.schema.json"));
    let profile = parse(include_str!("../kazoo/mixminus.profile.schema.json"));
    if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        props.insert("profile".into(), profile);
        props.insert(
            "id".into(),
            json!({"description": "mixminus: a client-chosen conference id (create only)",
                   "type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}),
        );
        if let Some(Value::Object(max)) = props.get_mut("max_participants") {
            max.insert("minimum".into(), 0.into());
            max.insert("maximum".into(), (mixminus_core::MAX_PARTICIPANTS as u64).into());
        }
    }
    schema
}

/// Kazoo's `metaflows.relate` schema with mixminus's extensions: either side may be an
/// array of ids, and `relationship` an array of words.
pub fn relate_schema() -> Value {
    let mut schema = parse(include_str!("../kazoo/metaflows.relate.schema.json"));
    let id = json!({"oneOf": [{"type": "string"}, {"type": "integer"}]});
    let ids = json!({"type": "array", "items": id, "minItems": 1,
        "maxItems": mixminus_core::MAX_PARTICIPANTS as u64});
    if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        for key in ["participant_id", "other_participant"] {
            if let Some(Value::Array(branches)) =
                props.get_mut(key).and_then(|p| p.get_mut("oneOf"))
            {
                branches.push(ids.clone());
            }
        }
        if let Some(Value::Object(rel)) = props.get_mut("relationship") {
            let single: Map<String, Value> =
                rel.iter().filter(|(k, _)| *k == "type" || *k == "enum").map(clone_kv).collect();
            rel.retain(|k, _| k != "type" && k != "enum");
            rel.insert(
                "oneOf".into(),
                json!([Value::Object(single.clone()), {"type": "array", "items": Value::Object(single)}]),
            );
        }
    }
    schema
}

fn clone_kv((k, v): (&String, &Value)) -> (String, Value) {
    (k.clone(), v.clone())
}

/// A channels metaflow node, as Kazoo's `metaflow` schema constrains it: a `module` name
/// (1..=64 characters) and its `data` object.
pub fn metaflow_schema() -> Value {
    json!({
        "$schema": "http://json-schema.org/draft-04/schema#",
        "type": "object",
        "required": ["module"],
        "properties": {
            "module": {"type": "string", "minLength": 1, "maxLength": 64},
            "data": {"type": "object"}
        }
    })
}

/// A validation error in Kazoo's words.
fn to_api_error(error: &ValidationError<'_>) -> ApiError {
    let path = dotted(error);
    let value = error.instance().as_ref();
    let (field, rule, message): (String, &'static str, String) = match error.kind() {
        ValidationErrorKind::Required { property } => {
            let name = property.as_str().map_or_else(|| property.to_string(), str::to_owned);
            let field = if path.is_empty() { name } else { format!("{path}.{name}") };
            return ApiError::invalid(field, "required", "Field is required but missing");
        }
        ValidationErrorKind::Type { kind } => {
            (path, "type", format!("Value did not match type(s): {}", types(kind)))
        }
        ValidationErrorKind::Enum { options } => {
            let list = options.as_array().map_or_else(String::new, |items| {
                items.iter().map(plain).collect::<Vec<_>>().join(", ")
            });
            (path, "enum", format!("Value not found in enumerated list of values: {list}"))
        }
        ValidationErrorKind::MinLength { limit } => {
            (path, "minLength", format!("String must be at least {limit} characters"))
        }
        ValidationErrorKind::MaxLength { limit } => {
            (path, "maxLength", format!("String must not be more than {limit} characters"))
        }
        ValidationErrorKind::Minimum { limit } => {
            (path, "minimum", format!("Value must be at least {limit}"))
        }
        ValidationErrorKind::Maximum { limit } => {
            (path, "maximum", format!("Value must be at most {limit}"))
        }
        ValidationErrorKind::MinItems { limit } => {
            (path, "minItems", format!("The list must have at least {limit} items"))
        }
        ValidationErrorKind::MaxItems { limit } => {
            (path, "maxItems", format!("The list is more than {limit} items"))
        }
        ValidationErrorKind::UniqueItems => {
            (path, "uniqueItems", "List of items is not unique".to_owned())
        }
        ValidationErrorKind::Pattern { pattern } => {
            (path, "pattern", format!("Failed to match pattern '{pattern}'"))
        }
        ValidationErrorKind::AdditionalProperties { .. } => (
            path,
            "additionalProperties",
            "Strict checking of data is enabled; only include schema-defined properties".to_owned(),
        ),
        ValidationErrorKind::OneOfNotValid { context } | ValidationErrorKind::AnyOf { context } => {
            // The branch of the value's own type says what is wrong; when no branch takes
            // that type, the type itself is.
            let at = error.instance_path().as_str();
            let same_type = context.iter().find(|branch| {
                !branch.iter().any(|e| {
                    e.instance_path().as_str() == at
                        && matches!(e.kind(), ValidationErrorKind::Type { .. })
                })
            });
            if let Some(first) = same_type.and_then(|branch| branch.first()) {
                return to_api_error(first);
            }
            let wanted: Vec<String> = context
                .iter()
                .flatten()
                .filter_map(|e| match e.kind() {
                    ValidationErrorKind::Type { kind } if e.instance_path().as_str() == at => {
                        Some(types(kind))
                    }
                    _ => None,
                })
                .collect();
            (path, "type", format!("Value did not match type(s): {}", wanted.join(", ")))
        }
        _ => (path, "schema", "failed to validate".to_owned()),
    };
    let field = if field.is_empty() { "data".to_owned() } else { field };
    ApiError::invalid_value(field, rule, message, value)
}

fn dotted(error: &ValidationError<'_>) -> String {
    let mut out = String::new();
    for segment in error.instance_path().segments() {
        if !out.is_empty() {
            out.push('.');
        }
        match segment {
            LocationSegment::Property(p) => out.push_str(&p),
            LocationSegment::Index(i) => out.push_str(&i.to_string()),
        }
    }
    out
}

fn types(kind: &TypeKind) -> String {
    match kind {
        TypeKind::Single(t) => t.to_string(),
        TypeKind::Multiple(set) => set.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", "),
    }
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(body: Body, mut v: Value) -> (String, String) {
        match validate(body, &mut v).unwrap_err() {
            ApiError::InvalidData { field, rule, .. } => (field, rule.to_owned()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn kazoo_rules_and_paths() {
        let c = Body::Conference;
        assert_eq!(
            rule(c, json!({"member": {"join_muted": "yes"}})),
            ("member.join_muted".into(), "type".into())
        );
        assert_eq!(rule(c, json!({"name": ""})), ("name".into(), "minLength".into()));
        assert_eq!(
            rule(c, json!({"profile": {"rate": 44100}})),
            ("profile.rate".into(), "enum".into())
        );
        assert_eq!(
            rule(c, json!({"moderator": {"pins": ["12a"]}})),
            ("moderator.pins.0".into(), "pattern".into())
        );
        assert_eq!(
            rule(c, json!({"conference_numbers": ["1", "1"]})),
            ("conference_numbers".into(), "uniqueItems".into())
        );
        assert_eq!(rule(c, json!({"play_exit_tone": 3})), ("play_exit_tone".into(), "type".into()));
        assert_eq!(
            rule(c, json!({"max_participants": -1})),
            ("max_participants".into(), "minimum".into())
        );
        assert_eq!(rule(c, json!("x")), ("data".into(), "type".into()));
        let r = Body::Relate;
        assert_eq!(
            rule(r, json!({"conference_id": "c", "participant_id": 1})),
            ("other_participant".into(), "required".into())
        );
        assert_eq!(
            rule(
                r,
                json!({"conference_id": "c", "participant_id": 1, "other_participant": 2, "relationship": "nohear"})
            ),
            ("relationship".into(), "enum".into())
        );
        assert_eq!(
            rule(r, json!({"conference_id": "c", "participant_id": true, "other_participant": 2})),
            ("participant_id".into(), "type".into())
        );
    }

    #[test]
    fn fixes_js_types_like_kazoo() {
        let mut v = json!({"member": {"join_muted": "false", "join_deaf": "true"},
            "max_participants": "5", "profile": {"rate": "16000"}, "name": "5"});
        validate(Body::Conference, &mut v).unwrap();
        assert_eq!(v["member"]["join_muted"], false);
        assert_eq!(v["member"]["join_deaf"], true);
        assert_eq!(v["max_participants"], 5);
        assert_eq!(v["profile"]["rate"], 16000);
        assert_eq!(v["name"], "5", "a string where a string is wanted stays one");
        let mut v = json!({"play_name": "maybe"});
        assert!(validate(Body::Conference, &mut v).is_err());
    }
}

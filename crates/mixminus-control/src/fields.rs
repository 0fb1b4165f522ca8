//! Walking untrusted JSON into typed values, once, at the edge, with errors that name the
//! field by its dotted path and the rule it broke (Kazoo's validation vocabulary).

use serde_json::{Map, Value};

use crate::ApiError;

/// An object being read; every accessor names `path.key` in its errors.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Obj<'a> {
    pub(crate) map: &'a Map<String, Value>,
    path: &'a str,
}

/// JSON's type names, as JSON Schema says them.
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

pub(crate) fn wrong_type(field: &str, want: &str, got: &Value) -> ApiError {
    ApiError::invalid_value(
        field,
        "type",
        format!("Value did not match type(s) {want} (got {})", type_name(got)),
        got,
    )
}

pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

impl<'a> Obj<'a> {
    /// `value` as an object, or a type error naming `path`.
    pub(crate) fn new(value: &'a Value, path: &'a str) -> Result<Self, ApiError> {
        match value {
            Value::Object(map) => Ok(Self { map, path }),
            other => Err(wrong_type(if path.is_empty() { "data" } else { path }, "object", other)),
        }
    }

    pub(crate) fn field(&self, key: &str) -> String {
        join(self.path, key)
    }

    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key)
    }

    pub(crate) fn required(&self, key: &str) -> Result<&'a Value, ApiError> {
        self.get(key).ok_or_else(|| {
            ApiError::invalid(self.field(key), "required", "Field is required but missing")
        })
    }

    pub(crate) fn str(&self, key: &str) -> Result<Option<&'a str>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(wrong_type(&self.field(key), "string", other)),
        }
    }

    /// A string of `min..=max` characters (code points, as JSON Schema counts).
    pub(crate) fn str_len(
        &self,
        key: &str,
        min: usize,
        max: usize,
    ) -> Result<Option<&'a str>, ApiError> {
        let Some(s) = self.str(key)? else { return Ok(None) };
        let n = s.chars().count();
        let value = Value::String(s.to_owned());
        // Names and ids end up in logs, events and other systems' records: no NUL, no
        // newlines, no terminal escapes.
        // (An SDP body is lines: its CR LF are its syntax, not an attack.)
        if key != "sdp" && s.chars().any(char::is_control) {
            return Err(ApiError::invalid_value(
                self.field(key),
                "pattern",
                "String must not contain control characters".to_owned(),
                &value,
            ));
        }
        if n < min {
            return Err(ApiError::invalid_value(
                self.field(key),
                "minLength",
                format!("String must be at least {min} characters"),
                &value,
            ));
        }
        if n > max {
            return Err(ApiError::invalid_value(
                self.field(key),
                "maxLength",
                format!("String must not be more than {max} characters"),
                &value,
            ));
        }
        Ok(Some(s))
    }

    /// An integer in `min..=max`.
    pub(crate) fn int(&self, key: &str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => int_in(v, &self.field(key), min, max).map(Some),
        }
    }

    pub(crate) fn array(&self, key: &str) -> Result<Option<&'a Vec<Value>>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(other) => Err(wrong_type(&self.field(key), "array", other)),
        }
    }

    /// Refuses any key not in `allowed` (our own bodies are closed; Kazoo's are open).
    pub(crate) fn only(&self, allowed: &[&str]) -> Result<(), ApiError> {
        match self.map.keys().find(|k| !allowed.contains(&k.as_str())) {
            None => Ok(()),
            Some(k) => Err(ApiError::invalid(
                self.field(k),
                "additionalProperties",
                format!("unknown field; expected one of: {}", allowed.join(", ")),
            )),
        }
    }
}

/// `v` as an integer in `min..=max`, or an error naming `field`.
/// A string of digits counts, as Kazoo's `fix_js_types` converts it.
pub(crate) fn int_in(v: &Value, field: &str, min: i64, max: i64) -> Result<i64, ApiError> {
    if let Some(fixed) =
        v.as_str().and_then(|s| crate::schema::js_convert(s, jsonschema::JsonType::Integer))
    {
        return int_in(&fixed, field, min, max);
    }
    let Some(n) = v.as_i64() else {
        return Err(match v.as_u64() {
            Some(_) => {
                ApiError::invalid_value(field, "maximum", format!("Value must be at most {max}"), v)
            }
            None => wrong_type(field, "integer", v),
        });
    };
    if n < min {
        return Err(ApiError::invalid_value(
            field,
            "minimum",
            format!("Value must be at least {min}"),
            v,
        ));
    }
    if n > max {
        return Err(ApiError::invalid_value(
            field,
            "maximum",
            format!("Value must be at most {max}"),
            v,
        ));
    }
    Ok(n)
}

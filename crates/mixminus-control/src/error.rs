//! Kazoo's error envelope: `status: "error"`, `error` = the HTTP code as a string, a
//! `message`, and `data` naming the offending field and rule.
//!
//! Validation errors use Kazoo's shape, `{"<field>": {"<rule>": {"message": …, "value": …}}}`,
//! with nested fields joined by dots (`member.join_muted`). An unknown participant is Kazoo's
//! `bad_identifier` (404) with `data.id` the id as given, plus the same field/rule object.

use axum::http::StatusCode;
use serde_json::{json, Map, Value};

/// Why a request was refused. A refused request changes nothing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// No `X-Auth-Token`, or one that no configured token matches (401).
    #[error("invalid credentials")]
    Unauthorized,
    /// A valid token that does not grant this account (403).
    #[error("forbidden: the token does not grant this account")]
    Forbidden,
    /// A field failed validation (400); `field` is its dotted path, `rule` the rule broken
    /// (Kazoo's words: `required`, `type`, `enum`, `minimum`, `maximum`, `minLength`,
    /// `maxLength`, `pattern`, `uniqueItems`, `minItems`, `maxItems`, …).
    #[error("{field}: {message}")]
    InvalidData {
        /// Dotted path of the field.
        field: String,
        /// The rule it broke.
        rule: &'static str,
        /// What is wrong, for people.
        message: String,
        /// The offending value, when there is one.
        value: Option<Value>,
    },
    /// The body is not JSON (400).
    #[error("malformed JSON body: {0}")]
    MalformedJson(String),
    /// A participant (or call id) named in the request is not in the conference (404,
    /// Kazoo's `bad_identifier`).
    #[error("bad identifier {id} in {field}")]
    BadIdentifier {
        /// The field that named it.
        field: String,
        /// The id as given.
        id: Value,
    },
    /// No such conference (or route) in this account (404).
    #[error("{kind} {id} not found")]
    NotFound {
        /// What was looked for: `conference`, `participant`, `route`.
        kind: &'static str,
        /// Its id or path.
        id: String,
    },
    /// The request names no action the route knows, or none at all (404, Kazoo's
    /// `faulty_request`).
    #[error("faulty request")]
    FaultyRequest,
    /// An action or module Kazoo has and mixminus does not run (501, Kazoo's
    /// `not_implemented`).
    #[error("{field}: {what} is not implemented")]
    NotImplemented {
        /// The field that named it (`action`, `module`).
        field: String,
        /// What was asked for.
        what: String,
    },
    /// The route exists but not with this method (405).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The request conflicts with the conference's state (409): locked, full, id or call
    /// already taken.
    #[error("{field}: {message}")]
    Conflict {
        /// The field or state in the way.
        field: String,
        /// The rule: `locked`, `max_participants`, `unique`, `max_conferences`.
        rule: &'static str,
        /// What is wrong, for people.
        message: String,
    },
    /// The body is larger than the configured limit (413).
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The media layer has no room (503): no free RTP port pair.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Something failed that the caller cannot fix (500).
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// A validation error on `field` for `rule`.
    pub fn invalid(
        field: impl Into<String>,
        rule: &'static str,
        message: impl Into<String>,
    ) -> Self {
        ApiError::InvalidData { field: field.into(), rule, message: message.into(), value: None }
    }

    /// A validation error that also shows the offending value.
    pub fn invalid_value(
        field: impl Into<String>,
        rule: &'static str,
        message: impl Into<String>,
        value: &Value,
    ) -> Self {
        ApiError::InvalidData {
            field: field.into(),
            rule,
            message: message.into(),
            value: Some(truncate_value(value)),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::InvalidData { .. } | ApiError::MalformedJson(_) => StatusCode::BAD_REQUEST,
            ApiError::BadIdentifier { .. } | ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::FaultyRequest => StatusCode::NOT_FOUND,
            ApiError::NotImplemented { .. } => StatusCode::NOT_IMPLEMENTED,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Kazoo's `message` for this error.
    pub fn message(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "invalid credentials",
            ApiError::Forbidden => "forbidden",
            ApiError::InvalidData { .. } => "invalid data",
            ApiError::MalformedJson(_) => "invalid request body",
            ApiError::BadIdentifier { .. } | ApiError::NotFound { .. } => "bad identifier",
            ApiError::MethodNotAllowed => "method not allowed",
            ApiError::FaultyRequest => "faulty request",
            ApiError::NotImplemented { .. } => "not implemented",
            ApiError::Conflict { .. } => "conflict",
            ApiError::PayloadTooLarge { .. } => "payload too large",
            ApiError::Unavailable(_) => "service unavailable",
            ApiError::Internal(_) => "internal server error",
        }
    }

    /// Kazoo's `data` for this error: what was wrong, naming the field and rule.
    pub fn data(&self) -> Value {
        match self {
            ApiError::InvalidData { field, rule, message, value } => {
                let mut detail = Map::new();
                detail.insert("message".into(), Value::String(message.clone()));
                if let Some(value) = value {
                    detail.insert("value".into(), value.clone());
                }
                field_rule(field, rule, Value::Object(detail))
            }
            ApiError::MalformedJson(message) => {
                field_rule("data", "json", json!({ "message": message }))
            }
            ApiError::BadIdentifier { field, id } => {
                let mut data = field_rule(
                    field,
                    "bad_identifier",
                    json!({ "message": format!("{} is not in the conference", display(id)), "value": id }),
                );
                if let Value::Object(map) = &mut data {
                    map.insert("id".into(), id.clone());
                }
                data
            }
            ApiError::NotFound { kind, id } => {
                let mut data = field_rule(
                    kind,
                    "bad_identifier",
                    json!({ "message": format!("{kind} {id} not found") }),
                );
                if let Value::Object(map) = &mut data {
                    map.insert("id".into(), Value::String(id.clone()));
                }
                data
            }
            ApiError::Conflict { field, rule, message } => {
                field_rule(field, rule, json!({ "message": message }))
            }
            ApiError::PayloadTooLarge { limit } => field_rule(
                "data",
                "maxLength",
                json!({ "message": format!("request body larger than {limit} bytes"), "target": limit }),
            ),
            ApiError::NotImplemented { field, what } => field_rule(
                field,
                "not_implemented",
                json!({ "message": format!("{what} is not implemented by mixminus"), "value": what }),
            ),
            ApiError::Unauthorized
            | ApiError::Forbidden
            | ApiError::MethodNotAllowed
            | ApiError::FaultyRequest => {
                json!({ "message": self.to_string() })
            }
            ApiError::Unavailable(message) | ApiError::Internal(message) => {
                json!({ "message": message })
            }
        }
    }

    /// The error a bare status code stands for (axum's own 404/405/413 responses).
    pub fn from_status(status: StatusCode, path: &str, body_limit: usize) -> Self {
        match status {
            StatusCode::UNAUTHORIZED => ApiError::Unauthorized,
            StatusCode::FORBIDDEN => ApiError::Forbidden,
            StatusCode::NOT_FOUND => ApiError::NotFound { kind: "route", id: path.to_owned() },
            StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge { limit: body_limit },
            s if s.is_client_error() => ApiError::MalformedJson(format!("request refused ({s})")),
            s => ApiError::Internal(format!("request failed ({s})")),
        }
    }
}

fn field_rule(field: &str, rule: &str, detail: Value) -> Value {
    let mut inner = Map::new();
    inner.insert(rule.to_owned(), detail);
    let mut outer = Map::new();
    outer.insert(field.to_owned(), Value::Object(inner));
    Value::Object(outer)
}

fn display(id: &Value) -> String {
    match id {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Echoed values are bounded, so an error never reflects a megabyte back.
fn truncate_value(value: &Value) -> Value {
    const MAX: usize = 128;
    match value {
        Value::String(s) if s.len() > MAX => {
            let cut = (0..=MAX).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
            Value::String(format!("{}…", &s[..cut]))
        }
        Value::Array(_) | Value::Object(_) => {
            let text = value.to_string();
            if text.len() > MAX {
                Value::String("(too large to show)".into())
            } else {
                value.clone()
            }
        }
        other => other.clone(),
    }
}

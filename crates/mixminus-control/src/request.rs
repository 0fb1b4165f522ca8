//! A request as crossbar sees it: the query string, the JSON body and its `data`, read once
//! at the edge, before routing.
//!
//! - An empty body is Kazoo's empty request: `data` is `{}` (`api_util:get_json_body`).
//! - A body that is JSON must be an object holding `data` (an object or an array), as
//!   Kazoo's request envelope schema requires; otherwise the request is refused with 400
//!   when a handler needs its body.
//! - [`KazooRequest::value`] is Kazoo's `cb_context:req_value`: it looks in `data`, then
//!   the query string, then the whole body. [`KazooRequest::action`] is
//!   `cb_modules_util:get_request_action`: the body first, then `data`.

use serde_json::{Map, Value};

use crate::fields::wrong_type;
use crate::ApiError;

/// What a request carries, parsed once.
#[derive(Debug, Clone)]
pub struct KazooRequest {
    query: Map<String, Value>,
    body: Result<Option<Map<String, Value>>, ApiError>,
}

impl KazooRequest {
    /// Parses a query string and a body.
    pub fn new(query: Option<&str>, body: &[u8]) -> Self {
        Self { query: parse_query(query), body: parse_body(body) }
    }

    /// The query string's values (all strings).
    pub fn query(&self) -> &Map<String, Value> {
        &self.query
    }

    /// The whole body: `None` for an empty one, or why it is unusable.
    pub fn body(&self) -> Result<Option<&Map<String, Value>>, ApiError> {
        self.body.as_ref().map(Option::as_ref).map_err(Clone::clone)
    }

    /// The request's `data` (`{}` for an empty body).
    pub fn data(&self) -> Result<Value, ApiError> {
        match self.body()? {
            None => Ok(Value::Object(Map::new())),
            Some(body) => match body.get("data") {
                Some(data @ (Value::Object(_) | Value::Array(_))) => Ok(data.clone()),
                Some(other) => Err(wrong_type("data", "object, array", other)),
                None => Err(ApiError::invalid("data", "required", "Field is required but missing")),
            },
        }
    }

    /// Kazoo's `req_value`: `key` in `data`, then the query string, then the body.
    pub fn value(&self, key: &str) -> Option<Value> {
        let body = self.body.as_ref().ok().and_then(Option::as_ref);
        let data = body.and_then(|b| b.get("data"));
        data.and_then(|d| d.get(key))
            .or_else(|| self.query.get(key))
            .or_else(|| body.and_then(|b| b.get(key)))
            .cloned()
    }

    /// Kazoo's `get_request_action`: `action` on the body, then in `data`.
    pub fn action(&self) -> Option<Value> {
        let body = self.body.as_ref().ok().and_then(Option::as_ref)?;
        body.get("action").or_else(|| body.get("data").and_then(|d| d.get("action"))).cloned()
    }

    /// A string value ([`KazooRequest::value`]) for request plumbing: `verb`,
    /// `auth_token`.
    pub fn string(&self, key: &str) -> Option<String> {
        match self.value(key)? {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
}

fn parse_query(query: Option<&str>) -> Map<String, Value> {
    let Some(query) = query else { return Map::new() };
    let pairs: Vec<(String, String)> = serde_urlencoded_pairs(query);
    pairs.into_iter().map(|(k, v)| (k, Value::String(v))).collect()
}

fn serde_urlencoded_pairs(query: &str) -> Vec<(String, String)> {
    // axum's own query decoding (serde_urlencoded underneath); a malformed pair is dropped
    // rather than failing the request, as cowboy's parse_qs tolerates.
    let uri = format!("/?{query}");
    uri.parse::<axum::http::Uri>()
        .ok()
        .and_then(|uri| {
            axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&uri).ok().map(|q| q.0)
        })
        .unwrap_or_default()
}

fn parse_body(bytes: &[u8]) -> Result<Option<Map<String, Value>>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    match serde_json::from_slice(bytes).map_err(|e| ApiError::MalformedJson(e.to_string()))? {
        Value::Object(map) => Ok(Some(map)),
        other => Err(wrong_type("body", "object", &other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn req_value_order() {
        let r = KazooRequest::new(
            Some("action=q&verb=put&x=1"),
            br#"{"action": "body", "data": {"action": "data"}, "x": "b"}"#,
        );
        assert_eq!(r.value("action"), Some(json!("data")));
        assert_eq!(r.value("verb"), Some(json!("put")));
        assert_eq!(r.value("x"), Some(json!("1")));
        assert_eq!(r.action(), Some(json!("body")), "get_request_action prefers the body");
        let r = KazooRequest::new(Some("action=relate"), br#"{"data": {}}"#);
        assert_eq!(r.value("action"), Some(json!("relate")));
    }

    #[test]
    fn empty_body_is_empty_data() {
        assert_eq!(KazooRequest::new(None, b"").data().unwrap(), json!({}));
        assert_eq!(KazooRequest::new(None, b" \n").data().unwrap(), json!({}));
        assert!(KazooRequest::new(None, b"{}").data().is_err(), "the envelope needs data");
        assert!(KazooRequest::new(None, b"[1]").data().is_err());
        assert!(KazooRequest::new(None, b"{x").data().is_err());
        assert!(KazooRequest::new(None, br#"{"data": 5}"#).data().is_err());
    }
}

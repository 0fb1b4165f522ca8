//! Kazoo's listing rules (`crossbar_view`, `crossbar_filter`) on a list of items.
//!
//! - Query-string filters, every one of which an item must pass: `filter_{path}=v` (the
//!   item's value at the dotted `path`, as text, equals `v`, or `v` is a JSON array holding
//!   it), `filter_not_{path}=v`, `has_key=path`, `key_missing=path`, `has_value=path`
//!   (present and not empty), `value_missing=path`. Other keys are ignored.
//! - Paging: items are ordered by `id`; `page_size=n` (default 50) returns at most `n`;
//!   `start_key=k` starts at the first id ≥ `k`; the envelope carries `page_size` (items
//!   returned), `start_key` (when given) and `next_start_key` (the id starting the next
//!   page, when there is one). `paginate=false` returns everything and no paging keys.
//!   Kazoo's start keys are opaque to clients; ours are conference ids.

use serde_json::{Map, Value};

use crate::request::KazooRequest;
use crate::ApiError;

/// Kazoo's default page size.
pub const DEFAULT_PAGE_SIZE: usize = 50;

/// One page of a listing and the keys it adds to the envelope.
#[derive(Debug)]
pub struct Page {
    /// The items on this page.
    pub items: Vec<Value>,
    /// `page_size`, `start_key`, `next_start_key`.
    pub envelope: Map<String, Value>,
}

/// Filters and pages `items` (each with an `id`) as the request asks.
pub fn page(mut items: Vec<Value>, request: &KazooRequest) -> Result<Page, ApiError> {
    items.retain(|item| request.query().iter().all(|(k, v)| passes(item, k, v)));
    items.sort_by(|a, b| id(a).cmp(id(b)));
    let mut envelope = Map::new();
    if request.value("paginate").is_some_and(|v| is_false(&v)) {
        return Ok(Page { items, envelope });
    }
    let page_size = match request.value("page_size") {
        None => DEFAULT_PAGE_SIZE,
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            .filter(|&n| n > 0)
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
            .ok_or_else(|| {
                ApiError::invalid_value(
                    "page_size",
                    "minimum",
                    "page_size must be a positive integer",
                    &v,
                )
            })?,
    };
    if let Some(start) = request.value("start_key") {
        let start_text = text(&start);
        items.retain(|item| id(item) >= start_text.as_str());
        envelope.insert("start_key".into(), start);
    }
    if items.len() > page_size {
        let next = items.split_off(page_size);
        envelope.insert("next_start_key".into(), id(&next[0]).into());
    }
    envelope.insert("page_size".into(), items.len().into());
    Ok(Page { items, envelope })
}

fn id(item: &Value) -> &str {
    item.get("id").and_then(Value::as_str).unwrap_or("")
}

fn is_false(v: &Value) -> bool {
    matches!(v, Value::Bool(false)) || v.as_str() == Some("false")
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn at<'a>(item: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(item, |v, key| match v {
        Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => v.get(key),
    })
}

fn passes(item: &Value, key: &str, value: &Value) -> bool {
    let wanted = text(value);
    if let Some(path) = key.strip_prefix("filter_not_") {
        !matches_filter(at(item, path), &wanted)
    } else if let Some(path) = key.strip_prefix("filter_") {
        matches_filter(at(item, path), &wanted)
    } else {
        match key {
            "has_key" => at(item, &wanted).is_some(),
            "key_missing" => at(item, &wanted).is_none(),
            "has_value" => at(item, &wanted).is_some_and(not_empty),
            "value_missing" => !at(item, &wanted).is_some_and(not_empty),
            _ => true,
        }
    }
}

fn matches_filter(found: Option<&Value>, wanted: &str) -> bool {
    let have = found.map(text).unwrap_or_default();
    if have == wanted {
        return true;
    }
    match serde_json::from_str::<Value>(wanted) {
        Ok(Value::Array(options)) => options.iter().any(|o| text(o) == have),
        Ok(other) => found == Some(&other),
        Err(_) => false,
    }
}

fn not_empty(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(query: &str) -> Page {
        let items = (1..=5)
            .map(|i| {
                json!({"id": format!("c{i}"), "name": if i % 2 == 0 { "even" } else { "odd" },
                "member": {"join_muted": i == 3}})
            })
            .collect();
        page(items, &KazooRequest::new(Some(query), b"")).unwrap()
    }

    #[test]
    fn pages_and_filters() {
        let p = run("page_size=2");
        assert_eq!(p.items.len(), 2);
        assert_eq!(p.envelope["next_start_key"], "c3");
        let p = run("page_size=2&start_key=c3");
        assert_eq!(p.items[0]["id"], "c3");
        assert_eq!(p.envelope["next_start_key"], "c5");
        let p = run("page_size=2&start_key=c5");
        assert!(p.envelope.get("next_start_key").is_none());
        assert_eq!(p.envelope["page_size"], 1);
        let p = run("paginate=false&page_size=1");
        assert_eq!(p.items.len(), 5);
        assert!(p.envelope.is_empty());
        assert_eq!(run("filter_name=even").items.len(), 2);
        assert_eq!(run("filter_not_name=even").items.len(), 3);
        assert_eq!(run("filter_member.join_muted=true").items.len(), 1);
        assert_eq!(run("filter_id=%5B%22c1%22%2C%22c4%22%5D").items.len(), 2);
        assert_eq!(run("has_key=member.join_muted").items.len(), 5);
        assert_eq!(run("key_missing=owner_id").items.len(), 5);
        assert!(page(vec![], &KazooRequest::new(Some("page_size=x"), b"")).is_err());
    }
}

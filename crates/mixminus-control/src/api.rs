//! The HTTP API: axum routes in Kazoo's crossbar v2 shapes.
//!
//! | method | path (under `/v2/accounts/{ACCOUNT_ID}`) | what |
//! |---|---|---|
//! | `GET` | `/conferences` | list (Kazoo's list shape) |
//! | `PUT` | `/conferences` | create from `{"data": document}` → 201 |
//! | `GET` | `/conferences/{C}` | document with live `_read_only` |
//! | `POST` / `PATCH` | `/conferences/{C}` | replace / merge the document |
//! | `DELETE` | `/conferences/{C}` | end it, release every port |
//! | `PUT` | `/conferences/{C}` | `{"action": "lock" \| "unlock", "data": {}}` |
//! | `GET` | `/conferences/{C}/participants` | participant objects |
//! | `PUT` | `/conferences/{C}/participants` | `{"data": {"action": mute\|unmute\|deaf\|undeaf\|kick\|relate\|join, "data": {…}}}` |
//! | `GET` | `/conferences/{C}/participants/{P}` | one participant |
//! | `PUT` | `/conferences/{C}/participants/{P}` | `{"data": {"action": mute\|unmute\|deaf\|undeaf\|kick\|volume_in\|volume_out\|energy, "value": …}}` |
//! | `GET` | `/conferences/{C}/relationships` | the matrix |
//! | `GET` | `/conferences/{C}/events` | server-sent events |
//! | `PUT` | `/channels/{CALL_ID}` | Kazoo's relate metaflow |
//!
//! and `GET /metrics` (Prometheus text; needs a valid token unless the API is open; the
//! token may also come as `Authorization: Bearer …`, which Prometheus can send).
//!
//! `volume_in` / `volume_out` take `"value"`: a FreeSWITCH volume step −4..=4 (3 dB each).
//! `energy` takes `"value"`: 0..=32768 (mean |sample|; 0 = gate off) or `null` for the
//! conference's level. Bulk `mute`/`unmute`/`deaf`/`undeaf` skip moderators and touch only
//! participants whose state changes (as Kazoo); `kick` removes everyone; the response lists
//! who was touched. Every mutation answers after the conference applied it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;
use futures_util::stream::Stream;
use metrics_exporter_prometheus::PrometheusHandle;
use mixminus_core::{Event, Gain, JoinOptions, ParticipantId};
use mixminus_rtp::JoinRequest;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;

use crate::auth::Auth;
use crate::doc::ConferenceDoc;
use crate::envelope::EnvelopeInfo;
use crate::fields::{int_in, wrong_type, Obj};
use crate::join::{JoinBody, Media};
use crate::registry::{codec_params, ConferenceEntry, ParticipantMeta, Registry};
use crate::relate::{relationship_word, ConferenceIdRule, RelateRequest};
use crate::ApiError;

/// Default request body limit, bytes.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

/// Builds the router. See the [crate docs](crate) for an embedding example.
#[derive(Debug, Clone)]
pub struct Api {
    registry: Registry,
    auth: Auth,
    envelope: EnvelopeInfo,
    metrics: Option<PrometheusHandle>,
    body_limit: usize,
}

impl Api {
    /// An API over `registry`, checking tokens with `auth`.
    pub fn new(registry: Registry, auth: Auth) -> Self {
        Self {
            registry,
            auth,
            envelope: EnvelopeInfo::default(),
            metrics: None,
            body_limit: DEFAULT_BODY_LIMIT,
        }
    }

    /// The `node` every response names.
    pub fn node(mut self, node: impl Into<String>) -> Self {
        self.envelope.node = node.into();
        self
    }

    /// Serves `GET /metrics` from this Prometheus recorder's handle.
    pub fn metrics(mut self, handle: PrometheusHandle) -> Self {
        self.metrics = Some(handle);
        self
    }

    /// Largest request body accepted (larger: 413).
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// The axum router.
    pub fn router(self) -> Router {
        let state = AppState(Arc::new(self));
        let account = Router::new()
            .route("/conferences", get(list_conferences).put(create_conference))
            .route(
                "/conferences/{conference_id}",
                get(get_conference)
                    .post(replace_conference)
                    .patch(patch_conference)
                    .delete(delete_conference)
                    .put(conference_action),
            )
            .route(
                "/conferences/{conference_id}/participants",
                get(list_participants).put(participants_action),
            )
            .route(
                "/conferences/{conference_id}/participants/{participant_id}",
                get(get_participant).put(participant_action),
            )
            .route("/conferences/{conference_id}/relationships", get(relationships))
            .route("/conferences/{conference_id}/events", get(events))
            .route("/channels/{call_id}", put(channel_action));
        Router::new()
            .nest("/v2/accounts/{account_id}", account)
            .route("/metrics", get(metrics_text))
            .fallback(not_found)
            .layer(DefaultBodyLimit::max(state.0.body_limit))
            .layer(middleware::from_fn_with_state(state.clone(), envelope))
            .with_state(state)
    }
}

#[derive(Debug, Clone)]
struct AppState(Arc<Api>);

/// A successful response's data before the envelope goes around it.
#[derive(Debug, Clone)]
struct Success {
    data: Value,
    revision: Option<String>,
}

/// A handler's successful answer, wrapped in the envelope by [`envelope`].
struct Reply {
    status: StatusCode,
    success: Success,
}

impl Reply {
    fn ok(data: Value) -> Self {
        Self { status: StatusCode::OK, success: Success { data, revision: None } }
    }

    fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    fn revision(mut self, entry: &ConferenceEntry) -> Self {
        self.success.revision = Some(entry.revision());
        self
    }
}

#[derive(Clone)]
enum Pending {
    Ok(Success),
    Err(ApiError),
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        response.extensions_mut().insert(Pending::Ok(self.success));
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.status().into_response();
        response.extensions_mut().insert(Pending::Err(self));
        response
    }
}

type ApiResult = Result<Reply, ApiError>;

/// Puts Kazoo's envelope around every answer, names the request, counts it.
async fn envelope(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let mut response = next.run(request).await;
    let status = response.status();
    let body = match response.extensions_mut().remove::<Pending>() {
        Some(Pending::Ok(success)) => {
            Some(state.0.envelope.success(success.data, &request_id, success.revision.as_deref()))
        }
        Some(Pending::Err(error)) => Some(error_body(&state, &error, &request_id, &method, &path)),
        None if status.is_client_error() || status.is_server_error() => {
            let error = ApiError::from_status(status, &path, state.0.body_limit);
            Some(error_body(&state, &error, &request_id, &method, &path))
        }
        None => None,
    };
    metrics::counter!("mixminus_api_requests_total", "status" => status.as_u16().to_string())
        .increment(1);
    let mut response = match body {
        Some(body) => {
            let mut r = (status, body.to_string()).into_response();
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
        None => response,
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

fn error_body(
    state: &AppState,
    error: &ApiError,
    request_id: &str,
    method: &axum::http::Method,
    path: &str,
) -> Value {
    // The path never holds a token; the headers (not logged) do.
    if error.status().is_server_error() {
        tracing::warn!(%method, path, request_id, %error, "request failed");
    } else {
        tracing::debug!(%method, path, request_id, %error, "request refused");
    }
    state.0.envelope.error(error, request_id)
}

async fn not_found() -> ApiError {
    ApiError::NotFound { kind: "route", id: String::new() }
}

/// The caller, authorized for the account in the path.
struct Authorized {
    account: String,
}

impl FromRequestParts<AppState> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::NotFound { kind: "route", id: parts.uri.path().to_owned() })?;
        let account = params.get("account_id").cloned().unwrap_or_default();
        state.0.auth.authorize(token(parts), &account)?;
        if !crate::doc::valid_id(&account) {
            return Err(ApiError::invalid_value(
                "account_id",
                "pattern",
                "Value did not match pattern ^[A-Za-z0-9_-]{1,64}$",
                &Value::String(account),
            ));
        }
        Ok(Self { account })
    }
}

fn token(parts: &Parts) -> Option<&str> {
    if let Some(v) = parts.headers.get("x-auth-token") {
        return v.to_str().ok();
    }
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// The request's `data`, which must be present.
fn data_of(body: &Value) -> Result<&Value, ApiError> {
    body.get("data")
        .ok_or_else(|| ApiError::invalid("data", "required", "Field is required but missing"))
}

// ---- conferences ---------------------------------------------------------------------

async fn list_conferences(State(state): State<AppState>, auth: Authorized) -> ApiResult {
    let list: Vec<Value> = state
        .0
        .registry
        .list(&auth.account)
        .iter()
        .map(|entry| entry.summary(&entry.handle().snapshot()))
        .collect();
    Ok(Reply::ok(Value::Array(list)))
}

async fn create_conference(
    State(state): State<AppState>,
    auth: Authorized,
    body: Bytes,
) -> ApiResult {
    let body = parse_body(&body)?;
    let doc = ConferenceDoc::parse(data_of(&body)?)?;
    let entry = state.0.registry.create(&auth.account, doc)?;
    tracing::info!(account = %auth.account, conference = %entry.id(), "conference created");
    Ok(Reply::ok(entry.full_json(&state.0.envelope.node))
        .status(StatusCode::CREATED)
        .revision(&entry))
}

async fn get_conference(
    State(state): State<AppState>,
    auth: Authorized,
    Path((_, conference_id)): Path<(String, String)>,
) -> ApiResult {
    let entry = state.0.registry.get(&auth.account, &conference_id)?;
    Ok(Reply::ok(entry.full_json(&state.0.envelope.node)).revision(&entry))
}

async fn replace_conference(
    State(state): State<AppState>,
    auth: Authorized,
    Path((_, conference_id)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let entry = state.0.registry.get(&auth.account, &conference_id)?;
    let body = parse_body(&body)?;
    let doc = ConferenceDoc::parse(data_of(&body)?)?;
    check_same_id(&doc, &conference_id)?;
    entry.replace_doc(doc)?;
    Ok(Reply::ok(entry.full_json(&state.0.envelope.node)).revision(&entry))
}

async fn patch_conference(
    State(state): State<AppState>,
    auth: Authorized,
    Path((_, conference_id)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let entry = state.0.registry.get(&auth.account, &conference_id)?;
    let body = parse_body(&body)?;
    let doc = entry.doc().merged(data_of(&body)?)?;
    check_same_id(&doc, &conference_id)?;
    entry.replace_doc(doc)?;
    Ok(Reply::ok(entry.full_json(&state.0.envelope.node)).revision(&entry))
}

fn check_same_id(doc: &ConferenceDoc, conference_id: &str) -> Result<(), ApiError> {
    match &doc.id {
        Some(id) if id != conference_id => Err(ApiError::invalid_value(
            "id",
            "const",
            "the id cannot change",
            &Value::String(id.clone()),
        )),
        _ => Ok(()),
    }
}

async fn delete_conference(
    State(state): State<AppState>,
    auth: Authorized,
    Path((_, conference_id)): Path<(String, String)>,
) -> ApiResult {
    let entry = state.0.registry.remove(&auth.account, &conference_id).await?;
    tracing::info!(account = %auth.account, conference = %conference_id, "conference ended");
    let mut doc = entry.doc().to_json(entry.id());
    if let Value::Object(map) = &mut doc {
        map.insert("_read_only".into(), json!({"deleted": true}));
    }
    Ok(Reply::ok(doc))
}

async fn conference_action(
    State(state): State<AppState>,
    auth: Authorized,
    Path((_, conference_id)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let entry = state.0.registry.get(&auth.account, &conference_id)?;
    let body = parse_body(&body)?;
    // Kazoo puts `action` beside `data`; `{"data": {"action": …}}` is accepted too.
    let (action, field) = match (body.get("action"), body.get("data").and_then(|d| d.get("action")))
    {
        (Some(a), _) => (a, "action"),
        (None, Some(a)) => (a, "data.action"),
        (None, None) => {
            return Err(ApiError::invalid("action", "required", "Field is required but missing"))
        }
    };
    let Value::String(word) = action else { return Err(wrong_type(field, "string", action)) };
    let locked = match word.as_str() {
        "lock" => true,
        "unlock" => false,
        _ => {
            return Err(ApiError::invalid_value(
                field,
                "enum",
                "Value not found in enumerated list of values: lock, unlock (play, record and dial are not supported by mixminus)",
                action,
            ))
        }
    };
    entry.set_locked(locked);
    Ok(Reply::ok(json!({"action": word, "is_locked": entry.is_locked()})).revision(&entry))
}

// ---- participants --------------------------------------------------------------------

async fn list_participants(
    State(state): State<AppState>,
    auth: Authorized,
    Path((_, conference_id)): Path<(String, String)>,
) -> ApiResult {
    let entry = state.0.registry.get(&auth.account, &conference_id)?;
    let snapshot = entry.handle().snapshot();
    Ok(Reply::ok(Value::Array(entry.participants_json(&snapshot, &state.0.envelope.node))))
}

async fn get_participant(
    State(state): State<AppState>,
    auth: Authorized,
    Path((_, conference_id, participant)): Path<(String, String, String)>,
) -> ApiResult {
    let entry = state.0.registry.get(&auth.account, &conference_id)?;
    let id = path_participant(&participant)?;
    let snapshot = entry.handle().snapshot();
    let leg = snapshot
        .participants
        .iter()
        .find(|l| l.info.id == id)
        .ok_or_else(|| bad_participant("participant_id", &participant))?;
    Ok(Reply::ok(entry.participant_json(leg, &snapshot, &state.0.envelope.node)))
}

/// The `{"data": {"action": …, "data": …}}` shape of participants actions.
fn action_of(body: &Value) -> Result<(&str, Obj<'_>), ApiError> {
    let data = Obj::new(data_of(body)?, "data")?;
    let action = data.required("action")?;
    let Value::String(word) = action else {
        return Err(wrong_type("data.action", "string", action));
    };
    Ok((word, data))
}

async fn participants_action(
    State(state): State<AppState>,
    auth: Authorized,
    Path((_, conference_id)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let entry = state.0.registry.get(&auth.account, &conference_id)?;
    let body = parse_body(&body)?;
    let (action, data) = action_of(&body)?;
    let empty = Value::Object(Default::default());
    let inner = data.get("data").unwrap_or(&empty);
    match action {
        "relate" => {
            let request = RelateRequest::parse(inner, ConferenceIdRule::FromPath)?;
            relate(&entry, &request).await?;
            Ok(Reply::ok(Value::String("relating participants".into()))
                .status(StatusCode::ACCEPTED)
                .revision(&entry))
        }
        "join" => join(&state, &entry, inner).await,
        "mute" | "unmute" | "deaf" | "undeaf" | "kick" => {
            let touched = bulk(&entry, action).await?;
            Ok(Reply::ok(json!({"action": action, "participants": touched})))
        }
        _ => Err(ApiError::invalid_value(
            "data.action",
            "enum",
            "Value not found in enumerated list of values: mute, unmute, deaf, undeaf, kick, relate, join",
            &Value::String(action.to_owned()),
        )),
    }
}

async fn participant_action(
    State(state): State<AppState>,
    auth: Authorized,
    Path((_, conference_id, participant)): Path<(String, String, String)>,
    body: Bytes,
) -> ApiResult {
    let entry = state.0.registry.get(&auth.account, &conference_id)?;
    let id = path_participant(&participant)?;
    let body = parse_body(&body)?;
    let (action, data) = action_of(&body)?;
    // The body is checked whole before anything changes.
    let command = match action {
        "mute" => One::Speak(false),
        "unmute" => One::Speak(true),
        "deaf" => One::Hear(false),
        "undeaf" => One::Hear(true),
        "kick" => One::Kick,
        "volume_in" | "volume_out" => {
            let v = data.required("value")?;
            let level = int_in(v, "data.value", -4, 4)?;
            // The range is checked above, so this cannot fail.
            let gain = Gain::from_level(level as i8).map_err(|_| {
                ApiError::invalid_value("data.value", "maximum", "volume levels are -4..=4", v)
            })?;
            if action == "volume_in" {
                One::InputGain(gain)
            } else {
                One::OutputGain(gain)
            }
        }
        "energy" => match data.required("value")? {
            Value::Null => One::Energy(None),
            v => One::Energy(Some(int_in(v, "data.value", 0, 32_768)? as u32)),
        },
        other => {
            return Err(ApiError::invalid_value(
                "data.action",
                "enum",
                "Value not found in enumerated list of values: mute, unmute, deaf, undeaf, kick, volume_in, volume_out, energy",
                &Value::String(other.to_owned()),
            ))
        }
    };
    let handle = entry.handle();
    let not_here = |e: mixminus_rtp::RuntimeError| match ApiError::from(e) {
        ApiError::BadIdentifier { .. } => bad_participant("participant_id", &participant),
        other => other,
    };
    let changed = match command {
        One::Speak(v) => handle.set_can_speak(id, v).await.map_err(not_here)?,
        One::Hear(v) => handle.set_can_hear(id, v).await.map_err(not_here)?,
        One::Kick => {
            handle.leave(id).await.map_err(not_here)?;
            entry.remove_member(id);
            true
        }
        One::InputGain(g) => handle.set_input_gain(id, g).await.map(|_| true).map_err(not_here)?,
        One::OutputGain(g) => {
            handle.set_output_gain(id, g).await.map(|_| true).map_err(not_here)?
        }
        One::Energy(t) => {
            handle.set_energy_threshold(id, t).await.map(|_| true).map_err(not_here)?
        }
    };
    Ok(Reply::ok(json!({"action": action, "participant_id": id.get(), "changed": changed})))
}

enum One {
    Speak(bool),
    Hear(bool),
    Kick,
    InputGain(Gain),
    OutputGain(Gain),
    Energy(Option<u32>),
}

fn path_participant(raw: &str) -> Result<ParticipantId, ApiError> {
    raw.parse::<u32>()
        .ok()
        .filter(|&n| n > 0)
        .map(ParticipantId::new)
        .ok_or_else(|| bad_participant("participant_id", raw))
}

fn bad_participant(field: &str, raw: &str) -> ApiError {
    let id = raw.parse::<u64>().map(Value::from).unwrap_or_else(|_| Value::String(raw.to_owned()));
    ApiError::BadIdentifier { field: field.to_owned(), id }
}

/// Kazoo's bulk actions: mute/unmute/deaf/undeaf skip moderators and touch only those whose
/// state changes; kick removes everyone.
async fn bulk(entry: &ConferenceEntry, action: &str) -> Result<Vec<u32>, ApiError> {
    let snapshot = entry.handle().snapshot();
    let handle = entry.handle();
    let mut touched = Vec::new();
    for leg in &snapshot.participants {
        let info = &leg.info;
        let result = match action {
            "kick" => {
                let r = handle.leave(info.id).await.map(|()| true);
                entry.remove_member(info.id);
                r
            }
            _ if info.moderator => continue,
            "mute" if info.can_speak => handle.set_can_speak(info.id, false).await,
            "unmute" if !info.can_speak => handle.set_can_speak(info.id, true).await,
            "deaf" if info.can_hear => handle.set_can_hear(info.id, false).await,
            "undeaf" if !info.can_hear => handle.set_can_hear(info.id, true).await,
            _ => continue,
        };
        match result {
            Ok(true) => touched.push(info.id.get()),
            Ok(false) => {}
            // It left between the snapshot and now: nothing to do for it.
            Err(mixminus_rtp::RuntimeError::Core(mixminus_core::Error::UnknownParticipant(_))) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(touched)
}

async fn relate(entry: &ConferenceEntry, request: &RelateRequest) -> Result<(), ApiError> {
    let (participants, others) = request.ids()?;
    // The conference checks every id, atomically (a relate applies whole or not at all),
    // and names the first one missing.
    let rel = request.relationship;
    entry.handle().relate(participants.clone(), others.clone(), rel).await.map_err(
        |e| match e {
            mixminus_rtp::RuntimeError::Core(mixminus_core::Error::UnknownParticipant(id)) => {
                let field =
                    if participants.contains(&id) { "participant_id" } else { "other_participant" };
                ApiError::BadIdentifier { field: field.into(), id: json!(id.get()) }
            }
            other => other.into(),
        },
    )?;
    tracing::info!(conference = %entry.id(), relationship = relationship_word(rel),
        participants = ?participants, others = ?others, "related");
    Ok(())
}

async fn join(state: &AppState, entry: &Arc<ConferenceEntry>, data: &Value) -> ApiResult {
    let body = JoinBody::parse(data)?;
    if entry.is_locked() {
        return Err(ApiError::Conflict {
            field: "is_locked".into(),
            rule: "locked",
            message: "the conference is locked".into(),
        });
    }
    let doc = entry.doc();
    if !body.ghost {
        if let Some(limit) = doc.member_limit() {
            if entry.counted(&entry.handle().snapshot()) >= limit {
                return Err(ApiError::Conflict {
                    field: "max_participants".into(),
                    rule: "max_participants",
                    message: format!("the conference is full ({limit} participants)"),
                });
            }
        }
    }
    let rules = if body.moderator { &doc.moderator } else { &doc.member };
    let options = JoinOptions {
        muted: Some(body.mute || rules.join_muted),
        deaf: Some(body.deaf || rules.join_deaf),
        moderator: body.moderator,
        ghost: body.ghost,
        ..Default::default()
    };
    let frame_ms = doc.profile.interval.millis();
    let (codec, remote, offer) = match &body.media {
        Media::Rtp { remote, codec } => (codec_params(codec), *remote, None),
        Media::Sdp(sdp) => {
            let offer = mixminus_rtp::sdp::AudioOffer::parse(sdp, frame_ms)
                .map_err(|e| ApiError::invalid("sdp", "format", e.to_string()))?;
            (offer.codec, Some(offer.remote), Some(offer))
        }
    };
    let mut request = JoinRequest::new(codec, remote);
    request.options = options;
    if let Some(offer) = &offer {
        // Only what the answer echoes back is honoured, so the two never disagree.
        request.audio_level_ext = offer.audio_level_ext;
        request.rtcp_mux = offer.rtcp_mux;
    }
    let joined = entry.handle().join(request).await?;
    let call_id = body.call_id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    entry.add_member(
        joined.id,
        ParticipantMeta::new(call_id, body.caller_id_name.clone(), body.caller_id_number.clone()),
    );
    tracing::info!(conference = %entry.id(), participant = %joined.id, local = %joined.local_rtp, "joined");
    // The runtime publishes its snapshot before it answers, so the new leg is in it (unless
    // the runtime already removed it again, when only its id can be reported).
    let mut object = json!({ "participant_id": joined.id.get() });
    let snapshot = entry.handle().snapshot();
    if let Some(leg) = snapshot.participants.iter().find(|l| l.info.id == joined.id) {
        object = entry.participant_json(leg, &snapshot, &state.0.envelope.node);
        // Legs the runtime removed (BYE, inactivity) would otherwise leave their metadata
        // behind forever: a churn of such calls must not grow the registry.
        entry.prune_members(&snapshot, joined.id);
    }
    if let Value::Object(map) = &mut object {
        let rtp = map.entry("rtp").or_insert_with(|| json!({}));
        if let Value::Object(rtp) = rtp {
            rtp.insert("local_ip".into(), joined.local_rtp.ip().to_string().into());
            rtp.insert("local_port".into(), joined.local_rtp.port().into());
        }
        if let Some(offer) = offer {
            map.insert(
                "sdp".into(),
                offer.answer(joined.local_rtp, u64::from(joined.id.get())).into(),
            );
        }
    }
    Ok(Reply::ok(object).status(StatusCode::CREATED).revision(entry))
}

async fn relationships(
    State(state): State<AppState>,
    auth: Authorized,
    Path((_, conference_id)): Path<(String, String)>,
) -> ApiResult {
    let entry = state.0.registry.get(&auth.account, &conference_id)?;
    let snapshot = entry.handle().snapshot();
    let list: Vec<Value> = snapshot
        .relationships
        .iter()
        .map(|(p, o, r)| {
            json!({"participant_id": p.get(), "other_participant": o.get(), "deaf": r.deaf, "mute": r.mute,
                "relationship": relationship_word(*r)})
        })
        .collect();
    Ok(Reply::ok(Value::Array(list)))
}

// ---- channels (Kazoo's metaflow) -----------------------------------------------------

async fn channel_action(
    State(state): State<AppState>,
    auth: Authorized,
    Path((_, call_id)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let body = parse_body(&body)?;
    let root = Obj::new(&body, "")?;
    let action = root.required("action")?;
    if action != "metaflow" {
        return Err(ApiError::invalid_value(
            "action",
            "enum",
            "Value not found in enumerated list of values: metaflow",
            action,
        ));
    }
    let outer = Obj::new(root.required("data")?, "data")?;
    let flow = Obj::new(outer.required("data")?, "data.data")?;
    let module = flow.required("module")?;
    if module != "relate" {
        return Err(ApiError::invalid_value(
            "data.data.module",
            "enum",
            "Value not found in enumerated list of values: relate (the only metaflow mixminus runs)",
            module,
        ));
    }
    let request = RelateRequest::parse(flow.required("data")?, ConferenceIdRule::Required)?;
    let conference_id = request.conference_id.clone().unwrap_or_default();
    let entry = state.0.registry.get(&auth.account, &conference_id)?;
    if entry.participant_by_call(&call_id).is_none() {
        return Err(ApiError::BadIdentifier {
            field: "call_id".into(),
            id: Value::String(call_id),
        });
    }
    relate(&entry, &request).await?;
    Ok(Reply::ok(Value::String("relating participants".into()))
        .status(StatusCode::ACCEPTED)
        .revision(&entry))
}

// ---- events and metrics --------------------------------------------------------------

async fn events(
    State(state): State<AppState>,
    auth: Authorized,
    Path((_, conference_id)): Path<(String, String)>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let entry = state.0.registry.get(&auth.account, &conference_id)?;
    let receiver = entry.handle().subscribe();
    // Weak: an open stream must not keep an ended conference alive (its end closes us).
    let weak = (Arc::downgrade(&entry), entry.id().to_owned());
    drop(entry);
    let stream = futures_util::stream::unfold((receiver, weak), |(mut rx, weak)| async move {
        loop {
            match rx.recv().await {
                Ok(event) => {
                    if let Some(sse) = sse_event(&event, &weak) {
                        return Some((Ok(sse), (rx, weak)));
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    let sse =
                        SseEvent::default().event("lagged").data(json!({"missed": n}).to_string());
                    return Some((Ok(sse), (rx, weak)));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// An event as SSE: Kazoo's participant event names (`add-member`, `del-member`,
/// `start-talking`, `stop-talking`, `mute-member`, `unmute-member`, `deaf-member`,
/// `undeaf-member`) plus mixminus's `floor-change` and `relate-member`.
fn sse_event(
    event: &Event,
    (entry, conference_id): &(Weak<ConferenceEntry>, String),
) -> Option<SseEvent> {
    let (name, participant, mut data) = match event {
        Event::Joined(p) => ("add-member", Some(*p), json!({})),
        Event::Left(p) => ("del-member", Some(*p), json!({})),
        Event::TalkingStarted(p) => ("start-talking", Some(*p), json!({})),
        Event::TalkingStopped(p) => ("stop-talking", Some(*p), json!({})),
        Event::SpeakChanged { participant, can_speak } => (
            if *can_speak { "unmute-member" } else { "mute-member" },
            Some(*participant),
            json!({"speak": can_speak}),
        ),
        Event::HearChanged { participant, can_hear } => (
            if *can_hear { "undeaf-member" } else { "deaf-member" },
            Some(*participant),
            json!({"hear": can_hear}),
        ),
        Event::FloorChanged { from, to } => (
            "floor-change",
            None,
            json!({"from": from.map(|p| p.get()), "to": to.map(|p| p.get())}),
        ),
        Event::RelationshipChanged { participant, other, relationship } => (
            "relate-member",
            Some(*participant),
            json!({"other_participant": other.get(), "relationship": relationship_word(*relationship),
                "deaf": relationship.deaf, "mute": relationship.mute}),
        ),
        _ => return None,
    };
    let entry = entry.upgrade();
    if let Value::Object(map) = &mut data {
        map.insert("event".into(), name.into());
        map.insert("conference_id".into(), conference_id.clone().into());
        if let Some(p) = participant {
            map.insert("participant_id".into(), p.get().into());
            if let Some(meta) = entry.as_ref().and_then(|e| e.member(p)) {
                map.insert("call_id".into(), meta.call_id.into());
            }
        }
    }
    Some(SseEvent::default().event(name).data(data.to_string()))
}

async fn metrics_text(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, _) = request.into_parts();
    state.0.auth.authenticate(token(&parts))?;
    let Some(handle) = &state.0.metrics else {
        return Err(ApiError::NotFound { kind: "route", id: "/metrics".into() });
    };
    let mut response = handle.render().into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    Ok(response)
}

/// Parses a request body: JSON, an object, with its payload under `data` (Kazoo's request
/// shape). Returns the whole body.
pub(crate) fn parse_body(bytes: &[u8]) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid("data", "required", "a JSON body {\"data\": …} is required"));
    }
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    if !value.is_object() {
        return Err(wrong_type("body", "object", &value));
    }
    Ok(value)
}

//! The HTTP API: axum routes in Kazoo's crossbar v2 shapes.
//!
//! | method | path (under `/v2/accounts/{ACCOUNT_ID}`) | what |
//! |---|---|---|
//! | `GET` | `/conferences` | list (Kazoo's list shape, filters, paging) |
//! | `PUT` | `/conferences` | create from `{"data": document}` (or an empty body) |
//! | `GET` | `/conferences/{C}` | document with live `_read_only` |
//! | `POST` / `PATCH` | `/conferences/{C}` | replace / merge the document, applied live |
//! | `DELETE` | `/conferences/{C}` | end it, release every port |
//! | `PUT` | `/conferences/{C}` | `{"action": "lock" \| "unlock" \| "play" \| "record", "data": {…}}` (see [`crate::media`]) |
//! | `GET` | `/conferences/{C}/participants` | participant objects |
//! | `PUT` | `/conferences/{C}/participants` | `action` mute\|unmute\|deaf\|undeaf\|kick\|relate\|join |
//! | `GET` | `/conferences/{C}/participants/{P}` | one participant |
//! | `PUT` | `/conferences/{C}/participants/{P}` | `action` mute\|unmute\|deaf\|undeaf\|kick\|volume_in\|volume_out\|energy\|play |
//! | `GET` | `/conferences/{C}/recordings` | that conference's recordings |
//! | `GET` / `DELETE` | `/recordings`, `/recordings/{R}` | recordings (the file with `Accept: audio/*`) |
//! | `GET` | `/conferences/{C}/relationships` | the matrix |
//! | `GET` | `/conferences/{C}/events` | server-sent events |
//! | `POST` | `/conferences/{C}/whip` | WHIP: an SDP offer in, a WebRTC participant ([`crate::whip`]) |
//! | `DELETE` | `/conferences/{C}/whip/{P}` | ends that WHIP session |
//! | `PUT` | `/channels/{CALL_ID}` | Kazoo's metaflow (`relate`) |
//!
//! and `GET /ui/` (the moderator page, [`crate::ui`]), `GET /websocket` (Kazoo's blackhole event subscriptions, see [`crate::events`]) and
//! `GET /metrics` (Prometheus text; needs a valid token unless the API is open; the
//! token may also come as `Authorization: Bearer …`, which Prometheus can send).
//!
//! Request handling follows crossbar (`api_util`, `api_resource`, `cb_context`); see
//! `docs/KAZOO.md` for each route next to Kazoo's source:
//! - `action` and the other request values are read as Kazoo's `req_value` reads them
//!   (`data`, then the query string, then the body; the conference and channel routes
//!   prefer the body's `action`, as `get_request_action` does);
//! - `POST …?verb=PUT` (or `"verb"` in the body) is handled as a `PUT`, Kazoo's verb
//!   tunnelling (`get_http_verb`); a trailing slash is ignored; the token may come as
//!   `X-Auth-Token`, `?auth_token=` (or `"auth_token"` in the body) or `Authorization:
//!   Bearer`;
//! - a successful `PUT` answers 201 and every other success 200, because that is what
//!   Kazoo's cowboy code path sends (its `response_202` sets the body, not the status);
//! - CORS with configurable origins ([`Api::cors_origins`]), `OPTIONS` answered.
//!
//! `volume_in` / `volume_out` take `"value"`: a FreeSWITCH volume step −4..=4 (3 dB each).
//! `energy` takes `"value"`: 0..=32768 (mean |sample|; 0 = gate off) or `null` for the
//! conference's level. Bulk `mute`/`unmute`/`deaf`/`undeaf` skip moderators and touch only
//! participants whose state changes (as Kazoo); `kick` removes everyone; the response lists
//! who was touched. Every mutation answers after the conference applied it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::Router;
use http_body_util::BodyExt;
use metrics_exporter_prometheus::PrometheusHandle;
use mixminus_core::{Gain, ParticipantId};
use serde_json::{json, Map, Value};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::normalize_path::NormalizePathLayer;

use crate::auth::Auth;
use crate::doc::ConferenceDoc;
use crate::envelope::EnvelopeInfo;
use crate::fields::{int_in, wrong_type};
use crate::fleet::{self, Cluster};
use crate::join::{admit, Admitted, JoinBody};
use crate::registry::{ConferenceEntry, Registry};
use crate::relate::{relationship_word, ConferenceIdRule, RelateRequest};
use crate::request::KazooRequest;
use crate::schema;
use crate::ApiError;

/// Default request body limit, bytes.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

/// The request headers a browser may send cross-origin (crossbar's list, plus
/// `authorization` and `x-request-id`).
pub const CORS_ALLOW_HEADERS: &[&str] = &[
    "content-type",
    "depth",
    "user-agent",
    "x-http-method-override",
    "x-file-size",
    "x-requested-with",
    "if-modified-since",
    "x-file-name",
    "cache-control",
    "x-auth-token",
    "x-kazoo-cluster-id",
    "if-match",
    "authorization",
    "x-request-id",
];

/// The response headers a browser may read cross-origin (crossbar's list).
pub const CORS_EXPOSE_HEADERS: &[&str] =
    &["content-type", "x-auth-token", "x-request-id", "x-kazoo-cluster-id", "location", "etag"];

/// Builds the router. See the [crate docs](crate) for an embedding example.
#[derive(Debug, Clone)]
pub struct Api {
    registry: Registry,
    auth: Auth,
    envelope: EnvelopeInfo,
    metrics: Option<PrometheusHandle>,
    body_limit: usize,
    cors_origins: Vec<String>,
    media: Arc<crate::media::MediaSettings>,
    ui: bool,
    /// The WHIP sessions, by (account, conference, participant).
    whip: Arc<dashmap::DashMap<(String, String, u32), mixminus_rtp::webrtc::WebRtcLeg>>,
    cluster: Option<Cluster>,
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
            cors_origins: vec!["*".into()],
            media: Arc::default(),
            ui: true,
            whip: Arc::default(),
            cluster: None,
        }
    }

    /// Answers as one node of a fleet (see [`crate::fleet`]): requests for conferences
    /// other nodes own are forwarded to them. Without it (or with a
    /// [`crate::fleet::Local`] fleet) every request is answered here, as a lone server.
    pub fn cluster(mut self, cluster: Cluster) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// Where `play` finds media files and `record` writes recordings, and their bounds
    /// (see [`crate::media`]). Without it both are refused (501).
    pub fn media(mut self, settings: crate::media::MediaSettings) -> Self {
        self.media = Arc::new(settings);
        self
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

    /// The origins a browser may call the API from: `["*"]` (any, crossbar's behaviour and
    /// the default), a list of origins (`https://ui.example.com`), or none (no CORS
    /// headers; `OPTIONS` still answers).
    pub fn cors_origins(mut self, origins: Vec<String>) -> Self {
        self.cors_origins = origins;
        self
    }

    /// Whether the moderator page is served at `/ui/` ([`crate::ui`]; on by default).
    pub fn ui(mut self, serve: bool) -> Self {
        self.ui = serve;
        self
    }

    /// The axum router.
    pub fn router(self) -> Router {
        let cors = self.cors_layer();
        let ui = self.ui;
        let cluster = self.cluster.clone().filter(Cluster::is_distributed);
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
            .route(
                "/conferences/{conference_id}/recordings",
                get(crate::media::conference_recordings),
            )
            .route("/recordings", get(crate::media::list_recordings))
            .route(
                "/recordings/{recording_id}",
                get(crate::media::get_recording).delete(crate::media::delete_recording),
            )
            .route("/conferences/{conference_id}/events", get(crate::events::sse))
            .route("/conferences/{conference_id}/whip", post(crate::whip::post))
            .route(
                "/conferences/{conference_id}/whip/{participant_id}",
                delete(crate::whip::delete).patch(crate::whip::patch),
            )
            .route("/channels/{call_id}", put(channel_action));
        let routes = Router::new()
            .nest("/v2/accounts/{account_id}", account)
            .route("/websocket", get(crate::events::upgrade))
            .route("/metrics", get(metrics_text))
            .fallback(not_found)
            .with_state(state.clone());
        // Verb tunnelling and a trailing slash change the route, so both happen before
        // routing: the front wraps the whole router.
        // The fleet's routing runs inside the front: on the body it read, with the verb
        // tunnelled; a lone server has no such layer at all.
        let front = tower::ServiceBuilder::new()
            .layer(middleware::from_fn_with_state(state, front))
            .option_layer(cluster.map(|c| middleware::from_fn_with_state(c, fleet::route)))
            .layer(NormalizePathLayer::trim_trailing_slash())
            .service(routes);
        // The page's routes come first: static files, no envelope, their own headers.
        let app = if ui { crate::ui::router() } else { Router::new() };
        let app = app.fallback_service(front);
        match cors {
            Some(cors) => app.layer(cors),
            None => app,
        }
    }

    fn cors_layer(&self) -> Option<CorsLayer> {
        if self.cors_origins.is_empty() {
            return None;
        }
        let origin = if self.cors_origins.iter().any(|o| o == "*") {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(
                self.cors_origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()),
            )
        };
        let names = |list: &[&str]| -> Vec<HeaderName> {
            list.iter().filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok()).collect()
        };
        Some(
            CorsLayer::new()
                .allow_origin(origin)
                .allow_methods([
                    Method::OPTIONS,
                    Method::GET,
                    Method::PUT,
                    Method::POST,
                    Method::PATCH,
                    Method::DELETE,
                ])
                .allow_headers(names(CORS_ALLOW_HEADERS))
                .expose_headers(names(CORS_EXPOSE_HEADERS))
                .max_age(Duration::from_secs(86_400)),
        )
    }
}

#[derive(Debug, Clone)]
pub(crate) struct AppState(pub(crate) Arc<Api>);

impl AppState {
    pub(crate) fn registry(&self) -> &Registry {
        &self.0.registry
    }

    pub(crate) fn auth(&self) -> &Auth {
        &self.0.auth
    }

    pub(crate) fn node(&self) -> &str {
        &self.0.envelope.node
    }

    pub(crate) fn media(&self) -> &crate::media::MediaSettings {
        &self.0.media
    }

    pub(crate) fn whip_legs(
        &self,
    ) -> &dashmap::DashMap<(String, String, u32), mixminus_rtp::webrtc::WebRtcLeg> {
        &self.0.whip
    }
}

/// A successful response's data before the envelope goes around it.
#[derive(Debug, Clone)]
struct Success {
    data: Value,
    revision: Option<String>,
    /// Extra envelope keys (a listing's `page_size`, `next_start_key`).
    envelope: Map<String, Value>,
}

/// A handler's successful answer, wrapped in the envelope by [`front`]; the status is
/// Kazoo's for the method (201 for a `PUT`, else 200).
pub(crate) struct Reply {
    success: Success,
}

impl Reply {
    pub(crate) fn ok(data: Value) -> Self {
        Self { success: Success { data, revision: None, envelope: Map::new() } }
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
        let mut response = StatusCode::OK.into_response();
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

/// The request as crossbar sees it, parsed by [`front`]; handlers read it from here.
#[derive(Debug, Clone)]
pub(crate) struct Req(pub(crate) Arc<KazooRequest>);

impl<S: Send + Sync> FromRequestParts<S> for Req {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(parts
            .extensions
            .get::<Req>()
            .cloned()
            .unwrap_or_else(|| Req(Arc::new(KazooRequest::new(parts.uri.query(), b"")))))
    }
}

/// Reads the body (bounded), honours `?verb=`, answers `OPTIONS`, puts Kazoo's envelope
/// around every answer with Kazoo's status, names the request, counts it.
async fn front(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let path = request.uri().path().to_owned();
    let (mut parts, body) = request.into_parts();
    let real_method = parts.method.clone();
    let limit = state.0.body_limit;
    let bytes = match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            let error = if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                ApiError::PayloadTooLarge { limit }
            } else {
                ApiError::MalformedJson(format!("reading the body: {e}"))
            };
            return finish(&state, error.into_response(), &request_id, &real_method, &path, false);
        }
    };
    let kazoo = KazooRequest::new(parts.uri.query(), &bytes);
    // Kazoo's get_http_verb; honoured on POST only (see docs/KAZOO.md).
    let mut tunnelled = false;
    if real_method == Method::POST {
        if let Some(verb) = kazoo.string("verb") {
            if let Ok(method) = Method::from_bytes(verb.to_ascii_uppercase().as_bytes()) {
                tunnelled = method != Method::POST;
                parts.method = method;
            }
        }
    }
    if parts.method == Method::OPTIONS {
        // Not a CORS preflight (the CORS layer answers those): Kazoo's `options/2` answers
        // an empty 200.
        let mut response = StatusCode::OK.into_response();
        response.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static("GET, PUT, POST, PATCH, DELETE, OPTIONS"),
        );
        return finish(&state, response, &request_id, &real_method, &path, false);
    }
    let method = parts.method.clone();
    parts.extensions.insert(Req(Arc::new(kazoo)));
    // A request forwarded to another node goes as the client sent it (verb and all), and
    // under this request id.
    parts
        .extensions
        .insert(fleet::Sent { method: real_method.clone(), request_id: request_id.clone() });
    let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    let created = method == Method::PUT && !tunnelled;
    finish(&state, response, &request_id, &method, &path, created)
}

fn finish(
    state: &AppState,
    mut response: Response,
    request_id: &str,
    method: &Method,
    path: &str,
    created: bool,
) -> Response {
    let mut status = response.status();
    let body = match response.extensions_mut().remove::<Pending>() {
        Some(Pending::Ok(success)) => {
            if created {
                status = StatusCode::CREATED;
            }
            let mut body =
                state.0.envelope.success(success.data, request_id, success.revision.as_deref());
            if let Value::Object(map) = &mut body {
                map.extend(success.envelope);
            }
            Some(body)
        }
        Some(Pending::Err(error)) => Some(error_body(state, &error, request_id, method, path)),
        // Another node's answer is sent as it came (it has its envelope already).
        None if response.extensions().get::<fleet::Relayed>().is_some() => None,
        None if status.is_client_error() || status.is_server_error() => {
            let error = ApiError::from_status(status, path, state.0.body_limit);
            Some(error_body(state, &error, request_id, method, path))
        }
        None => None,
    };
    metrics::counter!("mixminus_api_requests_total", "status" => status.as_u16().to_string())
        .increment(1);
    let mut response = match body {
        Some(body) => {
            let (mut parts, _) = response.into_parts();
            parts.status = status;
            parts.headers.remove(header::CONTENT_LENGTH);
            parts
                .headers
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            Response::from_parts(parts, Body::from(body.to_string()))
        }
        None => response,
    };
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

fn error_body(
    state: &AppState,
    error: &ApiError,
    request_id: &str,
    method: &Method,
    path: &str,
) -> Value {
    // The path never holds a token (the query string, which may, is not logged).
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
pub(crate) struct Authorized {
    pub(crate) account: String,
}

impl FromRequestParts<AppState> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::NotFound { kind: "route", id: parts.uri.path().to_owned() })?;
        let account = params.get("account_id").cloned().unwrap_or_default();
        let req = Req::from_request_parts(parts, state).await?;
        state.0.auth.authorize(token(parts, &req.0).as_deref(), &account)?;
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

/// Kazoo's `get_auth_token`: `X-Auth-Token`, then `auth_token` in the request (`data`,
/// query string, body), then `Authorization: Bearer`.
pub(crate) fn token(parts: &Parts, req: &KazooRequest) -> Option<String> {
    if let Some(v) = parts.headers.get("x-auth-token") {
        return v.to_str().ok().map(str::to_owned);
    }
    if let Some(t) = req.string("auth_token") {
        return Some(t);
    }
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned)
}

/// A request value that must be a string when present (an `action`).
fn word(value: Option<Value>, field: &str) -> Result<Option<String>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(wrong_type(field, "string", &other)),
    }
}

// ---- conferences ---------------------------------------------------------------------

async fn list_conferences(
    State(state): State<AppState>,
    auth: Authorized,
    Req(req): Req,
    remote: Option<axum::Extension<fleet::RemoteItems>>,
) -> ApiResult {
    let mut items: Vec<Value> = state
        .0
        .registry
        .list(&auth.account)
        .iter()
        .map(|entry| entry.summary(&entry.handle().snapshot()))
        .collect();
    // The other nodes' conferences (a fleet); one that shows up twice while it moves is
    // listed once.
    if let Some(axum::Extension(fleet::RemoteItems(remote))) = remote {
        let ids: std::collections::HashSet<Value> =
            items.iter().filter_map(|i| i.get("id").cloned()).collect();
        items.extend(remote.into_iter().filter(|i| i.get("id").is_none_or(|id| !ids.contains(id))));
    }
    let page = crate::listing::page(items, &req)?;
    let mut reply = Reply::ok(Value::Array(page.items));
    reply.success.envelope = page.envelope;
    Ok(reply)
}

async fn create_conference(
    State(state): State<AppState>,
    auth: Authorized,
    Req(req): Req,
) -> ApiResult {
    let doc = ConferenceDoc::parse(&req.data()?)?;
    let entry = state.0.registry.create(&auth.account, doc)?;
    if let Some(cluster) = state.0.cluster.as_ref().filter(|c| c.is_distributed()) {
        // Created only if no node has it: else this copy goes and the caller gets 409.
        if let Err(e) = cluster.created(&entry).await {
            let _ = state.0.registry.remove(&auth.account, entry.id()).await;
            return Err(e);
        }
    }
    tracing::info!(account = %auth.account, conference = %entry.id(), "conference created");
    Ok(Reply::ok(entry.full_json(&state.0.envelope.node)).revision(&entry))
}

async fn get_conference(
    State(state): State<AppState>,
    auth: Authorized,
    Path((_, conference_id)): Path<(String, String)>,
) -> ApiResult {
    match state.0.registry.get(&auth.account, &conference_id) {
        Ok(entry) => {
            let mut doc = entry.full_json(&state.0.envelope.node);
            let fleet = state.0.cluster.as_ref().and_then(|c| c.read_only(&entry));
            if let (Some(fleet), Some(Value::Object(map))) = (fleet, doc.get_mut("_read_only")) {
                map.insert("fleet".into(), fleet);
            }
            Ok(Reply::ok(doc).revision(&entry))
        }
        // Kazoo's maybe_build_conference: an unknown conference reads as an ad-hoc one
        // with nobody in it.
        Err(ApiError::NotFound { .. }) => Ok(Reply::ok(crate::registry::ad_hoc(&conference_id))),
        Err(e) => Err(e),
    }
}

async fn replace_conference(
    State(state): State<AppState>,
    auth: Authorized,
    Path((_, conference_id)): Path<(String, String)>,
    Req(req): Req,
) -> ApiResult {
    let entry = state.0.registry.get(&auth.account, &conference_id)?;
    let doc = ConferenceDoc::parse(&req.data()?)?;
    check_same_id(&doc, &conference_id)?;
    entry.replace_doc(doc).await?;
    Ok(Reply::ok(entry.full_json(&state.0.envelope.node)).revision(&entry))
}

async fn patch_conference(
    State(state): State<AppState>,
    auth: Authorized,
    Path((_, conference_id)): Path<(String, String)>,
    Req(req): Req,
) -> ApiResult {
    let entry = state.0.registry.get(&auth.account, &conference_id)?;
    let doc = entry.doc().merged(&req.data()?)?;
    check_same_id(&doc, &conference_id)?;
    entry.replace_doc(doc).await?;
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

/// The conference actions mixminus does not run (yet): 501, Kazoo's `not_implemented`.
/// `dial` waits for the SIP front.
const NOT_IMPLEMENTED: &[&str] = &["dial"];

async fn conference_action(
    State(state): State<AppState>,
    auth: Authorized,
    Path((_, conference_id)): Path<(String, String)>,
    Req(req): Req,
) -> ApiResult {
    let entry = state.0.registry.get(&auth.account, &conference_id)?;
    req.body()?;
    // Kazoo's get_request_action: `action` beside `data`, else inside it.
    let action = word(req.action(), "action")?;
    let locked = match action.as_deref() {
        Some("lock") => true,
        Some("unlock") => false,
        Some("play") => return crate::media::play(&state, &entry, &req, None).await,
        Some("record") => {
            return Ok(crate::media::record(&state, &entry, &req).await?.revision(&entry))
        }
        Some(a) if NOT_IMPLEMENTED.contains(&a) => return Err(not_implemented("action", a)),
        _ => return Err(ApiError::FaultyRequest),
    };
    entry.set_locked(locked);
    Ok(Reply::ok(json!({"action": action, "is_locked": entry.is_locked()})).revision(&entry))
}

fn not_implemented(field: &str, what: &str) -> ApiError {
    ApiError::NotImplemented { field: field.to_owned(), what: what.to_owned() }
}

// ---- participants --------------------------------------------------------------------

async fn list_participants(
    State(state): State<AppState>,
    auth: Authorized,
    Path((_, conference_id)): Path<(String, String)>,
) -> ApiResult {
    // Kazoo lists nobody for a conference that is not running.
    let Ok(entry) = state.0.registry.get(&auth.account, &conference_id) else {
        return Ok(Reply::ok(json!([])));
    };
    let snapshot = entry.handle().snapshot();
    Ok(Reply::ok(Value::Array(entry.participants_json(&snapshot, &state.0.envelope.node))))
}

async fn get_participant(
    State(state): State<AppState>,
    auth: Authorized,
    Path((_, conference_id, participant)): Path<(String, String, String)>,
) -> ApiResult {
    // Kazoo's enrich_participant: `{}` when the conference or the participant is not there.
    let found = state.0.registry.get(&auth.account, &conference_id).ok().and_then(|entry| {
        let id = path_participant(&participant).ok()?;
        let snapshot = entry.handle().snapshot();
        let leg = snapshot.participants.iter().find(|l| l.info.id == id)?;
        Some(entry.participant_json(leg, &snapshot, &state.0.envelope.node))
    });
    Ok(Reply::ok(found.unwrap_or_else(|| json!({}))))
}

async fn participants_action(
    State(state): State<AppState>,
    auth: Authorized,
    Path((_, conference_id)): Path<(String, String)>,
    Req(req): Req,
) -> ApiResult {
    let entry = state.0.registry.get(&auth.account, &conference_id)?;
    req.body()?;
    let action = word(req.value("action"), "action")?;
    // Kazoo's `req_value(Context, <<"data">>, {})`.
    let inner = req.value("data").unwrap_or_else(|| json!({}));
    match action.as_deref() {
        Some("relate") => {
            let request = RelateRequest::parse(&inner, ConferenceIdRule::FromPath)?;
            relate(&entry, &request).await?;
            Ok(Reply::ok(Value::String("relating participants".into())).revision(&entry))
        }
        Some("join") => join(&state, &entry, &inner).await,
        Some(a @ ("mute" | "unmute" | "deaf" | "undeaf" | "kick")) => {
            let touched = bulk(&entry, a).await?;
            Ok(Reply::ok(json!({"action": a, "participants": touched})))
        }
        // Kazoo's participants `play` is the conference's.
        Some("play") => crate::media::play(&state, &entry, &req, None).await,
        _ => Err(ApiError::FaultyRequest),
    }
}

async fn participant_action(
    State(state): State<AppState>,
    auth: Authorized,
    Path((_, conference_id, participant)): Path<(String, String, String)>,
    Req(req): Req,
) -> ApiResult {
    let entry = state.0.registry.get(&auth.account, &conference_id)?;
    let id = path_participant(&participant)?;
    req.body()?;
    let action = word(req.value("action"), "action")?.unwrap_or_default();
    let value = || {
        req.value("value")
            .ok_or_else(|| ApiError::invalid("value", "required", "Field is required but missing"))
    };
    // The request is checked whole before anything changes.
    let command = match action.as_str() {
        "mute" => One::Speak(false),
        "unmute" => One::Speak(true),
        "deaf" => One::Hear(false),
        "undeaf" => One::Hear(true),
        "kick" => One::Kick,
        "volume_in" | "volume_out" => {
            let v = value()?;
            let level = int_in(&v, "value", -4, 4)?;
            // The range is checked above, so this cannot fail.
            let gain = Gain::from_level(level as i8).map_err(|_| {
                ApiError::invalid_value("value", "maximum", "volume levels are -4..=4", &v)
            })?;
            if action == "volume_in" {
                One::InputGain(gain)
            } else {
                One::OutputGain(gain)
            }
        }
        "energy" => match value()? {
            Value::Null => One::Energy(None),
            v => One::Energy(Some(int_in(&v, "value", 0, 32_768)? as u32)),
        },
        "play" => {
            if entry.handle().snapshot().participants.iter().all(|l| l.info.id != id) {
                return Err(bad_participant("participant_id", &participant));
            }
            return crate::media::play(&state, &entry, &req, Some(id)).await.map_err(|e| match e {
                ApiError::BadIdentifier { field, .. } if field == "participant_id" => {
                    bad_participant("participant_id", &participant)
                }
                other => other,
            });
        }
        _ => return Err(ApiError::FaultyRequest),
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
            entry.set_energy_override(id, t.is_some());
            // `null` is the conference's level, which may have changed since it started.
            let t = t.or_else(|| entry.conference_energy());
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
    // Bounded log line: counts and the first few ids, never a whole list.
    tracing::info!(conference = %entry.id(), relationship = relationship_word(rel),
        participants = %summarise(&participants), others = %summarise(&others), "related");
    Ok(())
}

/// A list of ids for a log line: all of a short one, else the count and the first few.
fn summarise(ids: &[ParticipantId]) -> String {
    const SHOWN: usize = 8;
    let head: Vec<String> = ids.iter().take(SHOWN).map(|id| id.get().to_string()).collect();
    if ids.len() <= SHOWN {
        format!("[{}]", head.join(","))
    } else {
        format!("[{},… {} ids]", head.join(","), ids.len())
    }
}

async fn join(state: &AppState, entry: &Arc<ConferenceEntry>, data: &Value) -> ApiResult {
    let body = JoinBody::parse(data)?;
    // A call back after its conference moved to this node gets its roles back.
    let cluster = state.0.cluster.as_ref();
    let rejoining = body.call_id.as_deref().and_then(|call| cluster?.rejoining(entry, call));
    let restore = |options: &mut mixminus_core::JoinOptions| {
        if let Some(roster) = &rejoining {
            Cluster::restored_options(roster, options);
        }
    };
    let Admitted { joined, offer, .. } =
        admit(state.registry(), entry, &body, None, restore).await?;
    tracing::info!(conference = %entry.id(), participant = %joined.id, local = %joined.local_rtp, "joined");
    if let (Some(cluster), Some(roster)) = (cluster, &rejoining) {
        cluster.rejoined(entry, roster, joined.id).await?;
    }
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
    Ok(Reply::ok(object).revision(entry))
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
    Req(req): Req,
) -> ApiResult {
    let data = req.data()?;
    // Kazoo's cb_channels reads the channel first: an unknown call is bad_identifier.
    let Some((entry, _)) = state.0.registry.find_call(&auth.account, &call_id) else {
        return Err(ApiError::BadIdentifier {
            field: "call_id".into(),
            id: Value::String(call_id),
        });
    };
    match word(req.action(), "action")?.as_deref() {
        Some("metaflow") => {}
        _ => return Err(ApiError::FaultyRequest),
    }
    // Kazoo validates `data` against its metaflow schema (`{"module": …, "data": …}`);
    // its docs show the node one level down (`{"data": {"module": …}}`): both are taken.
    let mut node = match data.get("module") {
        Some(_) => data.clone(),
        None => data.get("data").filter(|d| d.get("module").is_some()).cloned().unwrap_or(data),
    };
    schema::validate(schema::Body::Metaflow, &mut node)?;
    let module = node.get("module").and_then(Value::as_str).unwrap_or_default();
    if module != "relate" {
        return Err(not_implemented("module", module));
    }
    let flow = node.get("data").cloned().unwrap_or_else(|| json!({}));
    let request = RelateRequest::parse(&flow, ConferenceIdRule::Required)?;
    let conference_id = request.conference_id.clone().unwrap_or_default();
    if conference_id != entry.id() {
        // The call is in another conference than the one the flow names.
        state.0.registry.get(&auth.account, &conference_id)?;
        return Err(ApiError::BadIdentifier {
            field: "conference_id".into(),
            id: Value::String(conference_id),
        });
    }
    relate(&entry, &request).await?;
    Ok(Reply::ok(Value::String("metaflow sent".into())).revision(&entry))
}

// ---- events and metrics --------------------------------------------------------------

async fn metrics_text(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, _) = request.into_parts();
    let req = parts.extensions.get::<Req>().cloned();
    let presented = req.and_then(|r| token(&parts, &r.0));
    state.0.auth.authenticate(presented.as_deref())?;
    let Some(handle) = &state.0.metrics else {
        return Err(ApiError::NotFound { kind: "route", id: "/metrics".into() });
    };
    let mut response = handle.render().into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    Ok(response)
}

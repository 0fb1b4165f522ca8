//! Playback and recording through the API: where media files come from, where recordings
//! go, and the routes that list and serve recordings.
//!
//! **Media** (`play`): Kazoo plays a `media_id` from its media store. A standalone bridge
//! has no store, so `media_id` names a file in the configured media directory
//! (`[media] dir`), shared by every account: `"welcome.wav"`, or `"welcome"` for the first
//! of `welcome.wav`, `welcome.ogg`, `welcome.opus` that exists. A name is 1–128 characters
//! of `A–Z a–z 0–9 . _ -`, not starting with a dot; anything else (a path, a URL, `..`) is
//! refused as an unknown id before the file system is asked, and a name whose file
//! resolves outside the directory (a symlink) is refused too. Files are WAV (8–32 bit
//! integer or 32-bit float PCM, any rate, any channels) or Ogg/Opus (mono or stereo),
//! decoded whole on a blocking thread, downmixed and resampled to the conference rate;
//! bounded by `max_file_bytes` and `max_seconds`.
//!
//! **Recordings** (`record` start/stop): the conference's full mix, Ogg/Opus (default) or
//! WAV, into `{recordings dir}/{account_id}/{recording_id}.{ogg,wav}` with a JSON sidecar
//! `{recording_id}.json` (the listing reads those). One recording per conference at a time;
//! each stops by itself after `max_seconds`, or when the recordings directory would pass
//! `max_total_bytes` (checked when it starts; the recording gets what is left as its byte
//! budget). Routes, under `/v2/accounts/{ACCOUNT_ID}`, as Kazoo's `cb_recordings`:
//! `GET /recordings` (list), `GET /recordings/{R}` (the metadata; the audio itself with
//! `Accept: audio/*` or `application/octet-stream`, or `?accept=audio`), `DELETE
//! /recordings/{R}`; and `GET /conferences/{C}/recordings` (one conference's).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use mixminus_core::ParticipantId;
use mixminus_rtp::media::{
    MediaClip, MediaError, MediaLimits, RecordingFormat, RecordingRequest, RecordingSummary,
};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::api::{AppState, Authorized, Reply, Req};
use crate::envelope::gregorian_seconds;
use crate::registry::ConferenceEntry;
use crate::ApiError;

/// `[media]`: where `play` finds its files.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct MediaConfig {
    /// The directory `media_id`s name files in; unset = `play` is refused (501).
    pub dir: Option<PathBuf>,
    /// Largest media file read, bytes.
    pub max_file_bytes: u64,
    /// Longest clip decoded, seconds.
    pub max_seconds: u32,
}

impl Default for MediaConfig {
    fn default() -> Self {
        let limits = MediaLimits::default();
        Self { dir: None, max_file_bytes: limits.max_bytes, max_seconds: limits.max_seconds }
    }
}

/// `[recordings]`: where `record` writes and what bounds it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct RecordingsConfig {
    /// The directory recordings go to (one subdirectory per account); unset = `record` is
    /// refused (501).
    pub dir: Option<PathBuf>,
    /// `"ogg"` (Ogg/Opus, the default) or `"wav"` (16-bit PCM); a request may ask for the
    /// other with `data.format`.
    pub format: String,
    /// Opus bitrate of Ogg recordings, bits per second.
    pub opus_bitrate: i32,
    /// A recording stops by itself after this many seconds.
    pub max_seconds: u64,
    /// Recordings stop, and new ones are refused, when the directory holds this many bytes.
    pub max_total_bytes: u64,
}

impl Default for RecordingsConfig {
    fn default() -> Self {
        Self {
            dir: None,
            format: "ogg".into(),
            opus_bitrate: 32_000,
            max_seconds: 4 * 3600,
            max_total_bytes: 1 << 30,
        }
    }
}

impl RecordingsConfig {
    /// Checks what types cannot; the message names the key.
    pub fn validate(&self) -> Result<(), &'static str> {
        if format_named(&self.format, self.opus_bitrate).is_none() {
            return Err("recordings.format must be \"ogg\" or \"wav\"");
        }
        if !(6_000..=510_000).contains(&self.opus_bitrate) {
            return Err("recordings.opus_bitrate must be 6000..=510000");
        }
        if self.max_seconds == 0 || self.max_total_bytes == 0 {
            return Err("recordings.max_seconds and max_total_bytes must be > 0");
        }
        Ok(())
    }
}

/// Both, as the API holds them.
#[derive(Debug, Clone, Default)]
pub struct MediaSettings {
    /// Playback sources.
    pub media: MediaConfig,
    /// Recording destination and bounds.
    pub recordings: RecordingsConfig,
}

/// Most recordings a listing reads from one account's directory.
const MAX_LISTED: usize = 10_000;
/// A recording is refused when less than this is left of `max_total_bytes`.
const MIN_BUDGET: u64 = 64 * 1024;

fn format_named(name: &str, bitrate: i32) -> Option<RecordingFormat> {
    match name {
        "ogg" | "opus" => Some(RecordingFormat::OggOpus { bitrate }),
        "wav" => Some(RecordingFormat::Wav),
        _ => None,
    }
}

/// A name that may stand for a file in the media directory (see the module docs).
fn valid_media_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The file `media_id` names, inside `dir`.
fn resolve_media(dir: &Path, media_id: &str) -> Option<PathBuf> {
    if !valid_media_name(media_id) {
        return None;
    }
    let root = dir.canonicalize().ok()?;
    let candidates = [
        media_id.to_owned(),
        format!("{media_id}.wav"),
        format!("{media_id}.ogg"),
        format!("{media_id}.opus"),
    ];
    candidates.iter().find_map(|name| {
        let path = root.join(name).canonicalize().ok()?;
        (path.starts_with(&root) && path.is_file()).then_some(path)
    })
}

fn bad_media(media_id: &Value) -> ApiError {
    ApiError::BadIdentifier { field: "media_id".into(), id: media_id.clone() }
}

/// Kazoo's `data_required`: the action needs a `data` object.
fn data_object(
    req: &crate::request::KazooRequest,
    action: &str,
) -> Result<Map<String, Value>, ApiError> {
    match req.value("data") {
        Some(Value::Object(map)) => Ok(map),
        _ => Err(ApiError::invalid(
            "data",
            "required",
            format!("action '{action}' requires a data object"),
        )),
    }
}

/// `play` on a conference (`target` `None`) or one participant: Kazoo's `play_media`.
pub(crate) async fn play(
    state: &AppState,
    entry: &ConferenceEntry,
    req: &crate::request::KazooRequest,
    target: Option<ParticipantId>,
) -> Result<Reply, ApiError> {
    let data = data_object(req, "play")?;
    let media_id = match data.get("media_id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        None | Some(Value::Null) | Some(Value::String(_)) => {
            return Err(ApiError::invalid(
                "data.media_id",
                "required",
                "action 'play' requires a media ID or URL",
            ))
        }
        Some(other) => return Err(crate::fields::wrong_type("data.media_id", "string", other)),
    };
    let config = &state.media().media;
    let Some(dir) = config.dir.clone() else {
        return Err(ApiError::NotImplemented {
            field: "media_id".into(),
            what: "playback without a [media] dir in the configuration".into(),
        });
    };
    let id_value = Value::String(media_id.clone());
    let limits = {
        let mut l = MediaLimits::default();
        l.max_bytes = config.max_file_bytes;
        l.max_seconds = config.max_seconds;
        l
    };
    let rate = entry.handle().sample_rate();
    let name = media_id.clone();
    let clip = tokio::task::spawn_blocking(move || {
        let path = resolve_media(&dir, &name).ok_or(None)?;
        MediaClip::load(&path, rate, &limits).map_err(Some)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|error| match error {
        None => bad_media(&id_value),
        Some(MediaError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => bad_media(&id_value),
        Some(e @ (MediaError::TooLarge(_) | MediaError::TooLong(_))) => {
            ApiError::invalid_value("data.media_id", "maxLength", e.to_string(), &id_value)
        }
        Some(e) => ApiError::invalid_value("data.media_id", "format", e.to_string(), &id_value),
    })?;
    let duration_ms = clip.duration_ms();
    let playback =
        entry.handle().play(clip, media_id.clone(), target).await.map_err(|e| match e {
            mixminus_rtp::RuntimeError::Busy(what) => ApiError::Conflict {
                field: "media_id".into(),
                rule: "max_playbacks",
                message: format!(
                    "too many {what} at once (at most {})",
                    mixminus_rtp::media::MAX_PLAYBACKS
                ),
            },
            other => other.into(),
        })?;
    tracing::info!(conference = %entry.id(), media = %media_id, playback = %playback,
        target = ?target.map(ParticipantId::get), "playing");
    let mut data = json!({
        "action": "play",
        "media_id": media_id,
        "playback_id": playback.get(),
        "duration_ms": duration_ms,
    });
    if let (Some(t), Value::Object(map)) = (target, &mut data) {
        map.insert("participant_id".into(), t.get().into());
    }
    Ok(Reply::ok(data))
}

/// `record` on a conference: Kazoo's `record_conference` / `toggle_recording`.
pub(crate) async fn record(
    state: &AppState,
    entry: &ConferenceEntry,
    req: &crate::request::KazooRequest,
) -> Result<Reply, ApiError> {
    let data = data_object(req, "record")?;
    let action = match data.get("action") {
        None | Some(Value::Null) => {
            return Err(ApiError::invalid(
                "data.action",
                "required",
                "recording requires an action",
            ))
        }
        Some(Value::String(s)) if s == "start" || s == "stop" => s.clone(),
        Some(other) => {
            return Err(ApiError::invalid_value(
                "data.action",
                "enum",
                "Value not found in enumerated list of values",
                other,
            ))
        }
    };
    let config = &state.media().recordings;
    let Some(root) = config.dir.clone() else {
        return Err(ApiError::NotImplemented {
            field: "action".into(),
            what: "recording without a [recordings] dir in the configuration".into(),
        });
    };
    if action == "stop" {
        let summary = entry.handle().stop_recording().await.map_err(|e| match e {
            mixminus_rtp::RuntimeError::InvalidRequest(_) => ApiError::Conflict {
                field: "action".into(),
                rule: "not_recording",
                message: "the conference is not recording".into(),
            },
            other => other.into(),
        })?;
        let id = recording_id(&summary.path);
        tracing::info!(conference = %entry.id(), recording = %id, ms = summary.duration_ms,
            dropped = summary.dropped_frames, "recording stopped");
        let doc = read_sidecar(&root.join(entry.account_id()), &id).unwrap_or_else(|| json!({}));
        return Ok(Reply::ok(json!({"action": "stop", "recording": doc})));
    }
    let format_name = match data.get("format") {
        None | Some(Value::Null) => config.format.clone(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(crate::fields::wrong_type("data.format", "string", other)),
    };
    let format = format_named(&format_name, config.opus_bitrate).ok_or_else(|| {
        ApiError::invalid_value(
            "data.format",
            "enum",
            "Value not found in enumerated list of values",
            &Value::String(format_name.clone()),
        )
    })?;
    if entry.handle().snapshot().recording.is_some() {
        return Err(already_recording());
    }
    let account_dir = root.join(entry.account_id());
    let (max_total, root_for_size) = (config.max_total_bytes, root.clone());
    let used = tokio::task::spawn_blocking(move || directory_bytes(&root_for_size))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let budget = max_total.saturating_sub(used);
    if budget < MIN_BUDGET {
        return Err(ApiError::Conflict {
            field: "recording".into(),
            rule: "max_total_bytes",
            message: format!("the recordings directory is full ({used} of {max_total} bytes)"),
        });
    }
    std::fs::create_dir_all(&account_dir).map_err(|e| ApiError::Internal(e.to_string()))?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let path = account_dir.join(format!("{id}.{}", format.extension()));
    let started = std::time::SystemTime::now();
    let doc = json!({
        "id": id,
        "name": format!("conference {} recording", entry.id()),
        "conference_id": entry.id(),
        "origin": "conference",
        "source_type": "mixminus",
        "media_type": format.extension(),
        "content_type": format.content_type(),
        "start": gregorian_seconds(started),
        "status": "recording",
    });
    write_sidecar(&account_dir, &id, &doc).map_err(|e| ApiError::Internal(e.to_string()))?;
    let (sidecar_dir, sidecar_id, first) = (account_dir.clone(), id.clone(), doc.clone());
    let request =
        RecordingRequest::new(path, format, Duration::from_secs(config.max_seconds), budget)
            .on_finish(move |summary| finish_sidecar(&sidecar_dir, &sidecar_id, first, summary));
    match entry.handle().start_recording(request).await {
        Ok(_) => {}
        Err(e) => {
            let _ = std::fs::remove_file(account_dir.join(format!("{id}.json")));
            return Err(match e {
                mixminus_rtp::RuntimeError::Busy(_) => already_recording(),
                other => other.into(),
            });
        }
    }
    tracing::info!(conference = %entry.id(), recording = %id, "recording started");
    Ok(Reply::ok(json!({"action": "start", "recording": doc})))
}

/// The conference's `_read_only` keys for its media: `playbacks` (id, media, target,
/// position and length) and `recording` (id, format, duration, dropped frames) when on.
pub(crate) fn read_only(snapshot: &mixminus_rtp::Snapshot) -> Map<String, Value> {
    let mut map = Map::new();
    let playbacks: Vec<Value> = snapshot
        .playbacks
        .iter()
        .map(|p| {
            let mut item = json!({"playback_id": p.id.get(), "media_id": p.media,
                "position_ms": p.position_ms, "duration_ms": p.duration_ms});
            if let (Some(t), Value::Object(m)) = (p.target, &mut item) {
                m.insert("participant_id".into(), t.get().into());
            }
            item
        })
        .collect();
    map.insert("playbacks".into(), playbacks.into());
    if let Some(r) = &snapshot.recording {
        map.insert(
            "recording".into(),
            json!({"id": recording_id(&r.path), "media_type": r.format.extension(),
                "duration_ms": r.duration_ms, "dropped_frames": r.dropped_frames}),
        );
    }
    map
}

fn already_recording() -> ApiError {
    ApiError::Conflict {
        field: "action".into(),
        rule: "recording",
        message: "the conference is recording already".into(),
    }
}

fn recording_id(path: &Path) -> String {
    path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned()
}

fn write_sidecar(dir: &Path, id: &str, doc: &Value) -> std::io::Result<()> {
    // Written whole, then renamed: a listing never reads half a file.
    let tmp = dir.join(format!(".{id}.json.tmp"));
    std::fs::write(&tmp, doc.to_string())?;
    std::fs::rename(tmp, dir.join(format!("{id}.json")))
}

fn finish_sidecar(dir: &Path, id: &str, mut doc: Value, summary: &RecordingSummary) {
    if let Value::Object(map) = &mut doc {
        let failed = summary.error.is_some();
        map.insert("status".into(), if failed { "failed" } else { "complete" }.into());
        map.insert("duration_ms".into(), summary.duration_ms.into());
        map.insert("size".into(), summary.bytes.into());
        map.insert("dropped_frames".into(), summary.dropped_frames.into());
        map.insert("end_reason".into(), summary.end.label().into());
        if let Some(error) = &summary.error {
            map.insert("error".into(), error.clone().into());
        }
    }
    if let Err(error) = write_sidecar(dir, id, &doc) {
        tracing::warn!(%error, recording = id, "writing a recording's metadata failed");
    }
}

fn read_sidecar(dir: &Path, id: &str) -> Option<Value> {
    let text = std::fs::read_to_string(dir.join(format!("{id}.json"))).ok()?;
    serde_json::from_str(&text).ok()
}

/// Bytes under the recordings directory (two levels: accounts, then files).
fn directory_bytes(root: &Path) -> u64 {
    let Ok(accounts) = std::fs::read_dir(root) else { return 0 };
    accounts
        .flatten()
        .filter_map(|a| std::fs::read_dir(a.path()).ok())
        .flat_map(|files| files.flatten())
        .filter_map(|f| f.metadata().ok())
        .map(|m| m.len())
        .sum()
}

fn list_account(dir: &Path, conference: Option<&str>) -> Vec<Value> {
    let Ok(files) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut docs: Vec<Value> = files
        .flatten()
        .filter_map(|f| {
            let name = f.file_name().into_string().ok()?;
            let id = name.strip_suffix(".json").filter(|id| crate::doc::valid_id(id))?;
            read_sidecar(dir, id)
        })
        .filter(|doc| {
            conference.is_none_or(|c| doc.get("conference_id").and_then(Value::as_str) == Some(c))
        })
        .take(MAX_LISTED)
        .collect();
    let start = |d: &Value| d.get("start").and_then(Value::as_u64).unwrap_or(0);
    docs.sort_by(|a, b| {
        start(a).cmp(&start(b)).then_with(|| a["id"].to_string().cmp(&b["id"].to_string()))
    });
    docs
}

fn account_dir(state: &AppState, account: &str) -> Result<PathBuf, ApiError> {
    match &state.media().recordings.dir {
        Some(root) => Ok(root.join(account)),
        None => Err(ApiError::NotFound { kind: "recording", id: "(no [recordings] dir)".into() }),
    }
}

/// `GET /recordings`.
pub(crate) async fn list_recordings(
    State(state): State<AppState>,
    auth: Authorized,
) -> Result<Reply, ApiError> {
    let Ok(dir) = account_dir(&state, &auth.account) else { return Ok(Reply::ok(json!([]))) };
    let docs = tokio::task::spawn_blocking(move || list_account(&dir, None))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Reply::ok(Value::Array(docs)))
}

/// `GET /conferences/{C}/recordings`.
pub(crate) async fn conference_recordings(
    State(state): State<AppState>,
    auth: Authorized,
    UrlPath((_, conference_id)): UrlPath<(String, String)>,
) -> Result<Reply, ApiError> {
    let Ok(dir) = account_dir(&state, &auth.account) else { return Ok(Reply::ok(json!([]))) };
    let docs = tokio::task::spawn_blocking(move || list_account(&dir, Some(&conference_id)))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Reply::ok(Value::Array(docs)))
}

fn wants_audio(headers: &HeaderMap, req: &crate::request::KazooRequest) -> bool {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let query = req.string("accept").unwrap_or_default();
    [accept, query.as_str()].iter().any(|a| {
        a.split(',').any(|t| {
            let t = t.trim();
            t.starts_with("audio") || t.starts_with("application/octet-stream")
        })
    })
}

/// Whether a running conference of `account` is writing recording `id` now. A sidecar that
/// still says `recording` with no such conference is from a process that stopped while it
/// recorded: its file is served and deletable like any other.
fn in_progress(state: &AppState, account: &str, id: &str) -> bool {
    state.registry().list(account).iter().any(|entry| {
        entry.handle().snapshot().recording.as_ref().is_some_and(|r| recording_id(&r.path) == id)
    })
}

fn find_recording(state: &AppState, account: &str, id: &str) -> Result<(PathBuf, Value), ApiError> {
    let not_found = || ApiError::BadIdentifier {
        field: "recording_id".into(),
        id: Value::String(id.to_owned()),
    };
    if !crate::doc::valid_id(id) {
        return Err(not_found());
    }
    let dir = account_dir(state, account).map_err(|_| not_found())?;
    let doc = read_sidecar(&dir, id).ok_or_else(not_found)?;
    Ok((dir, doc))
}

/// `GET /recordings/{R}`: the metadata, or the audio.
pub(crate) async fn get_recording(
    State(state): State<AppState>,
    auth: Authorized,
    UrlPath((_, id)): UrlPath<(String, String)>,
    Req(req): Req,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (dir, doc) = find_recording(&state, &auth.account, &id)?;
    if !wants_audio(&headers, &req) {
        return Ok(Reply::ok(doc).into_response());
    }
    if in_progress(&state, &auth.account, &id) {
        return Err(ApiError::Conflict {
            field: "recording_id".into(),
            rule: "recording",
            message: "the recording is still in progress".into(),
        });
    }
    let extension = doc.get("media_type").and_then(Value::as_str).unwrap_or("ogg");
    let content_type = if extension == "wav" { "audio/wav" } else { "audio/ogg" };
    let path = dir.join(format!("{id}.{}", if extension == "wav" { "wav" } else { "ogg" }));
    let file = std::fs::File::open(&path).map_err(|_| ApiError::BadIdentifier {
        field: "recording_id".into(),
        id: Value::String(id.clone()),
    })?;
    let length = file.metadata().map(|m| m.len()).unwrap_or(0);
    let file = Arc::new(std::sync::Mutex::new(file));
    // Read in chunks on blocking threads: a recording can be large, memory stays flat.
    let stream = futures_util::stream::unfold(file, |file| async move {
        let reader = file.clone();
        let chunk = tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut buf = vec![0u8; 64 * 1024];
            let n = reader.lock().map_err(|_| std::io::Error::other("poisoned"))?.read(&mut buf)?;
            buf.truncate(n);
            Ok::<_, std::io::Error>(buf)
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
        match chunk {
            Ok(buf) if buf.is_empty() => None,
            other => Some((other, file)),
        }
    });
    let mut response = Body::from_stream(stream).into_response();
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&length.to_string()) {
        headers.insert(header::CONTENT_LENGTH, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{id}.{extension}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

/// `DELETE /recordings/{R}`.
pub(crate) async fn delete_recording(
    State(state): State<AppState>,
    auth: Authorized,
    UrlPath((_, id)): UrlPath<(String, String)>,
) -> Result<Reply, ApiError> {
    let (dir, mut doc) = find_recording(&state, &auth.account, &id)?;
    if in_progress(&state, &auth.account, &id) {
        return Err(ApiError::Conflict {
            field: "recording_id".into(),
            rule: "recording",
            message: "the recording is still in progress: stop it first".into(),
        });
    }
    for extension in ["ogg", "wav", "json"] {
        let _ = std::fs::remove_file(dir.join(format!("{id}.{extension}")));
    }
    if let Value::Object(map) = &mut doc {
        map.insert("_read_only".into(), json!({"deleted": true}));
    }
    Ok(Reply::ok(doc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_names_cannot_leave_the_directory() {
        for bad in [
            "",
            "../etc/passwd",
            "..",
            ".hidden",
            "a/b",
            "a\\b",
            "/etc/passwd",
            "http://example.invalid/x.wav",
            "x%2F..",
            "tone\0.wav",
            &"a".repeat(129),
        ] {
            assert!(!valid_media_name(bad), "{bad:?}");
        }
        for good in ["tone.wav", "Welcome_2-en.ogg", "tone"] {
            assert!(valid_media_name(good), "{good:?}");
        }
    }

    #[test]
    fn a_symlink_out_of_the_directory_is_not_served() {
        let base = std::env::temp_dir().join(format!("mixminus-media-{}", std::process::id()));
        let dir = base.join("media");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(base.join("secret.wav"), b"RIFF").unwrap();
        std::fs::write(dir.join("ok.wav"), b"RIFF").unwrap();
        std::os::unix::fs::symlink(base.join("secret.wav"), dir.join("link.wav")).unwrap();
        assert_eq!(resolve_media(&dir, "ok"), Some(dir.canonicalize().unwrap().join("ok.wav")));
        assert_eq!(resolve_media(&dir, "link.wav"), None);
        assert_eq!(resolve_media(&dir, "missing"), None);
        std::fs::remove_dir_all(base).unwrap();
    }
}

//! Conference events, as server-sent events and as Kazoo's blackhole websocket.
//!
//! Each event is named as Kazoo names conference events (`add-member`, `del-member`,
//! `start-talking`, `stop-talking`, `mute-member`, `unmute-member`, `deaf-member`,
//! `undeaf-member`) plus mixminus's `floor-change` (about the participant taking the floor,
//! with `from` and `to`) and `relate-member`. A participant's event carries `event`, `conference_id`, `call_id`, `participant_id` and the participant
//! fields of Kazoo's participant object (`caller_id_name`, `caller_id_number`,
//! `custom_channel_vars`, `conference_channel_vars`, `join_time`, …) as they are when the
//! event is delivered (for a participant that has left, what is known of its call).
//!
//! - SSE: `GET /v2/accounts/{A}/conferences/{C}/events` (`event:` is the name, `data:`
//!   the JSON payload; `lagged` says how many a slow reader missed).
//! - Websocket (`GET /websocket`), Kazoo's blackhole protocol: send
//!   `{"action": "subscribe", "auth_token": "…", "request_id": "…", "data": {"account_id":
//!   "…", "binding": "conference.event.{CONFERENCE_ID}.{CALL_ID or *}"}}`; the answer is
//!   `{"action": "reply", "request_id": "…", "status": "success", "data": {"subscribed":
//!   […]}}` (or `"status": "error"` with `data.errors`), then every matching event comes as
//!   `{"action": "event", "subscribed_key": …, "subscription_key": …, "name": …,
//!   "routing_key": "conference.event.{C}.{CALL_ID}", "data": payload}`. `unsubscribe`
//!   with the same binding (or none: all) stops them. A socket holds at most
//!   [`MAX_SUBSCRIPTIONS`].

use std::convert::Infallible;
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::Response;
use futures_util::stream::{Stream, StreamExt};
use mixminus_core::Event;
use mixminus_rtp::media::MediaEvent;
use serde_json::{json, Value};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use crate::api::{AppState, Authorized};
use crate::registry::ConferenceEntry;
use crate::relate::relationship_word;
use crate::ApiError;

/// Most subscriptions one websocket holds.
pub const MAX_SUBSCRIPTIONS: usize = 64;

/// Largest websocket message read, bytes.
pub const MAX_WS_MESSAGE: usize = 16 * 1024;

/// A conference event as Kazoo-shaped JSON.
#[derive(Debug, Clone)]
pub struct Payload {
    /// The event's name (`add-member`, …).
    pub name: &'static str,
    /// The participant's call, when the event is about one participant.
    pub call_id: Option<String>,
    /// The JSON payload.
    pub data: Value,
}

/// The payload of `event` in the conference `conference_id` (`None` for events not sent).
pub fn payload(
    event: &Event,
    entry: Option<&ConferenceEntry>,
    conference_id: &str,
    node: &str,
) -> Option<Payload> {
    let (name, participant, data) = match event {
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
            // The participant of a floor change is the one who takes the floor.
            *to,
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
    Some(finish(name, participant, data, entry, conference_id, node))
}

/// The payload of a playback or recording event: FreeSWITCH's conference actions
/// `play-file` / `play-file-done` (to everyone), `play-file-member` /
/// `play-file-member-done` (to one participant, whose fields it carries), `start-recording`
/// / `stop-recording`; with `playback_id`, `media_id`, `reason`, or `recording_id`,
/// `media_type`, `duration_ms`, `dropped_frames`, `reason`.
pub fn media_payload(
    event: &MediaEvent,
    entry: Option<&ConferenceEntry>,
    conference_id: &str,
    node: &str,
) -> Option<Payload> {
    let stem =
        |p: &std::path::Path| p.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
    let (name, participant, data) = match event {
        MediaEvent::PlaybackStarted { id, media, target } => (
            if target.is_some() { "play-file-member" } else { "play-file" },
            *target,
            json!({"playback_id": id.get(), "media_id": media}),
        ),
        MediaEvent::PlaybackEnded { id, media, target, end } => (
            if target.is_some() { "play-file-member-done" } else { "play-file-done" },
            *target,
            json!({"playback_id": id.get(), "media_id": media, "reason": end.label()}),
        ),
        MediaEvent::RecordingStarted { path, format } => (
            "start-recording",
            None,
            json!({"recording_id": stem(path), "media_type": format.extension()}),
        ),
        MediaEvent::RecordingStopped { path, duration_ms, dropped_frames, end } => (
            "stop-recording",
            None,
            json!({"recording_id": stem(path), "duration_ms": duration_ms,
                "dropped_frames": dropped_frames, "reason": end.label()}),
        ),
        _ => return None,
    };
    Some(finish(name, participant, data, entry, conference_id, node))
}

/// One event from either of a conference's streams.
enum Either {
    Core(Event),
    Media(MediaEvent),
}

/// The next event of either stream (the core's: members, talking, relations; the media's:
/// playbacks, recordings).
async fn next(
    core: &mut broadcast::Receiver<Event>,
    media: &mut broadcast::Receiver<MediaEvent>,
) -> Result<Either, RecvError> {
    tokio::select! {
        event = core.recv() => event.map(Either::Core),
        event = media.recv() => event.map(Either::Media),
    }
}

async fn either_payload(
    event: &Either,
    entry: Option<&ConferenceEntry>,
    conference_id: &str,
    node: &str,
) -> Option<Payload> {
    match event {
        Either::Core(event) => {
            settle(event, entry).await;
            payload(event, entry, conference_id, node)
        }
        Either::Media(event) => media_payload(event, entry, conference_id, node),
    }
}

fn finish(
    name: &'static str,
    participant: Option<mixminus_core::ParticipantId>,
    mut data: Value,
    entry: Option<&ConferenceEntry>,
    conference_id: &str,
    node: &str,
) -> Payload {
    let mut call_id = None;
    if let Value::Object(map) = &mut data {
        if let Some(p) = participant {
            let fields = entry.map_or_else(|| json!({}), |e| e.event_participant(p, node));
            if let Value::Object(fields) = fields {
                for (k, v) in fields {
                    map.entry(k).or_insert(v);
                }
            }
            map.insert("participant_id".into(), p.get().into());
            call_id = map.get("call_id").and_then(Value::as_str).map(str::to_owned);
        }
        map.insert("event".into(), name.into());
        map.insert("conference_id".into(), conference_id.into());
    }
    Payload { name, call_id, data }
}

/// A join's event can outrun the join's answer, and the call's metadata is recorded
/// when the answer arrives: wait for it briefly, so `add-member` carries the call.
async fn settle(event: &Event, entry: Option<&ConferenceEntry>) {
    let (Event::Joined(p), Some(entry)) = (event, entry) else { return };
    for _ in 0..40 {
        if entry.member(*p).is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `GET …/conferences/{C}/events`: server-sent events.
pub(crate) async fn sse(
    State(state): State<AppState>,
    auth: Authorized,
    Path((_, conference_id)): Path<(String, String)>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let entry = state.registry().get(&auth.account, &conference_id)?;
    let receiver = (entry.handle().subscribe(), entry.handle().subscribe_media());
    let node = state.node().to_owned();
    // Weak: an open stream must not keep an ended conference alive (its end closes us).
    let weak = (Arc::downgrade(&entry), entry.id().to_owned(), node);
    drop(entry);
    let stream = futures_util::stream::unfold((receiver, weak), |(mut rx, weak)| async move {
        loop {
            match next(&mut rx.0, &mut rx.1).await {
                Ok(event) => {
                    let entry = weak.0.upgrade();
                    if let Some(p) =
                        either_payload(&event, entry.as_deref(), &weak.1, &weak.2).await
                    {
                        let sse = SseEvent::default().event(p.name).data(p.data.to_string());
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

/// `GET /websocket`: Kazoo's blackhole subscriptions.
pub(crate) async fn upgrade(State(state): State<AppState>, ws: WebSocketUpgrade) -> Response {
    ws.max_message_size(MAX_WS_MESSAGE).on_upgrade(move |socket| session(state, socket))
}

struct Subscription {
    binding: String,
    task: tokio::task::JoinHandle<()>,
}

async fn session(state: AppState, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    // Bounded: a client that does not read loses events rather than growing our memory.
    let (tx, mut rx) = mpsc::channel::<Value>(256);
    let writer = tokio::spawn(async move {
        use futures_util::SinkExt;
        while let Some(message) = rx.recv().await {
            if sink.send(Message::Text(message.to_string().into())).await.is_err() {
                break;
            }
        }
    });
    let mut subscriptions: Vec<Subscription> = Vec::new();
    while let Some(Ok(message)) = stream.next().await {
        let text = match message {
            Message::Text(text) => text.to_string(),
            Message::Close(_) => break,
            _ => continue,
        };
        let reply = handle(&state, &text, &mut subscriptions, &tx);
        if tx.send(reply).await.is_err() {
            break;
        }
    }
    for s in subscriptions {
        s.task.abort();
    }
    writer.abort();
}

fn reply(request_id: &Value, status: &str, data: Value) -> Value {
    json!({"action": "reply", "request_id": request_id, "status": status, "data": data})
}

fn handle(
    state: &AppState,
    text: &str,
    subscriptions: &mut Vec<Subscription>,
    tx: &mpsc::Sender<Value>,
) -> Value {
    let request: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let request_id = request.get("request_id").cloned().unwrap_or(Value::Null);
    let error = |message: &str| reply(&request_id, "error", json!({"errors": [message]}));
    let action = request.get("action").and_then(Value::as_str).unwrap_or_default();
    let data = request.get("data").cloned().unwrap_or(Value::Null);
    let binding = data.get("binding").and_then(Value::as_str).map(str::to_owned);
    match action {
        "subscribe" => {}
        "unsubscribe" => {
            subscriptions.retain(|s| {
                let keep = binding.as_ref().is_some_and(|b| *b != s.binding);
                if !keep {
                    s.task.abort();
                }
                keep
            });
            return reply(
                &request_id,
                "success",
                json!({"unsubscribed": binding.map_or(json!("*"), Value::from)}),
            );
        }
        "ping" => return reply(&request_id, "success", json!({"pong": true})),
        _ => return error("unknown action; expected subscribe, unsubscribe or ping"),
    }
    let account = data.get("account_id").and_then(Value::as_str).unwrap_or_default();
    let token = request.get("auth_token").and_then(Value::as_str);
    if state.auth().authorize(token, account).is_err() {
        return error("invalid auth_token for this account");
    }
    let Some(binding) = binding else { return error("data.binding is required") };
    let Some((conference_id, call)) = parse_binding(&binding) else {
        return error("invalid format for conference subscription; expected conference.event.{CONFERENCE_ID}.{CALL_ID or *}");
    };
    let entry = match state.registry().get(account, conference_id) {
        Ok(entry) => entry,
        Err(_) => return error("no such conference"),
    };
    if subscriptions.len() >= MAX_SUBSCRIPTIONS {
        return error("too many subscriptions on this socket");
    }
    let task = tokio::spawn(forward(
        Arc::downgrade(&entry),
        (entry.handle().subscribe(), entry.handle().subscribe_media()),
        binding.clone(),
        call.map(str::to_owned),
        state.node().to_owned(),
        tx.clone(),
    ));
    subscriptions.push(Subscription { binding: binding.clone(), task });
    reply(&request_id, "success", json!({"subscribed": [binding]}))
}

/// `conference.event.{C}.{CALL or *}` → `(C, Some(CALL) or None)`.
fn parse_binding(binding: &str) -> Option<(&str, Option<&str>)> {
    let rest = binding.strip_prefix("conference.event.")?;
    let (conference, call) = rest.split_once('.').unwrap_or((rest, "*"));
    if conference.is_empty() || conference == "*" || call.is_empty() {
        return None;
    }
    Some((conference, (call != "*").then_some(call)))
}

async fn forward(
    entry: Weak<ConferenceEntry>,
    mut events: (broadcast::Receiver<Event>, broadcast::Receiver<MediaEvent>),
    binding: String,
    call: Option<String>,
    node: String,
    tx: mpsc::Sender<Value>,
) {
    let conference_id = entry.upgrade().map(|e| e.id().to_owned()).unwrap_or_default();
    loop {
        let event = match next(&mut events.0, &mut events.1).await {
            Ok(event) => event,
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return,
        };
        let strong = entry.upgrade();
        let Some(p) = either_payload(&event, strong.as_deref(), &conference_id, &node).await else {
            continue;
        };
        drop(strong);
        if call.is_some() && p.call_id != call {
            continue;
        }
        let routing_key =
            format!("conference.event.{conference_id}.{}", p.call_id.as_deref().unwrap_or("*"));
        let message = json!({"action": "event", "subscribed_key": binding, "subscription_key": binding,
            "name": p.name, "routing_key": routing_key, "data": p.data});
        // A full queue: this client is not reading; drop the event rather than wait.
        if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(message) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings() {
        assert_eq!(parse_binding("conference.event.c1.*"), Some(("c1", None)));
        assert_eq!(parse_binding("conference.event.c1"), Some(("c1", None)));
        assert_eq!(parse_binding("conference.event.c1.call-a"), Some(("c1", Some("call-a"))));
        assert_eq!(parse_binding("conference.event.*.*"), None);
        assert_eq!(parse_binding("call.CHANNEL_CREATE.*"), None);
    }
}

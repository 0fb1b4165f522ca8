//! WHIP (RFC 9725): a browser joins a conference with one HTTP request.
//!
//! - `POST /v2/accounts/{A}/conferences/{C}/whip` with the SDP offer as the body
//!   (`Content-Type: application/sdp`; the token as `Authorization: Bearer …` or
//!   `X-Auth-Token`) → `201 Created`, the SDP answer (`application/sdp`) and a `Location`
//!   naming the session: `/v2/accounts/{A}/conferences/{C}/whip/{PARTICIPANT_ID}`. The new
//!   participant's id is also in `X-Participant-Id`.
//! - `DELETE` on the `Location` ends the leg (200): the PeerConnection is closed and the
//!   participant leaves.
//! - `PATCH` (trickle ICE, ICE restart) is not supported: 405, as RFC 9725 asks of a
//!   server without them. The offer must carry its candidates (wait for ICE gathering to
//!   complete before posting); the answer carries ours (ICE-lite: one host candidate).
//!
//! **Extension to WHIP's ingest-only model:** the offer may be `sendrecv` (a browser's
//! default with a microphone track), and the answer is then `sendrecv` too: the
//! participant's own mix-minus (everyone it may hear, less itself and what the matrix
//! removes) comes back on the same PeerConnection. A `sendonly` offer gets a `recvonly`
//! answer and nothing back.
//!
//! A WHIP participant is a participant like any other: it is admitted by the same rules
//! as a `join` (locked → 409, full → 409, the member rules' `join_muted` / `join_deaf`),
//! has a `call_id` (`whip-…`), takes `?name=` as its `caller_id_name`, and is listed,
//! related, muted, deafened, kicked and reported in events like the others. Kicking it
//! ends its PeerConnection too. See [`mixminus_rtp::webrtc`] for the leg itself.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use mixminus_core::ParticipantId;
use mixminus_rtp::webrtc::{WebRtcError, WebRtcLeg};
use serde::Deserialize;

use crate::api::{AppState, Authorized};
use crate::join::{admission, JoinFlags};
use crate::registry::ParticipantMeta;
use crate::ApiError;

/// The longest `?name=` taken as a caller id name.
const MAX_NAME: usize = 64;

/// `?name=`: the participant's caller id name.
#[derive(Debug, Deserialize)]
pub(crate) struct WhipQuery {
    name: Option<String>,
}

/// `POST …/conferences/{C}/whip`.
pub(crate) async fn post(
    State(state): State<AppState>,
    auth: Authorized,
    Path((account, conference_id)): Path<(String, String)>,
    Query(query): Query<WhipQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let entry = state.registry().get(&auth.account, &conference_id)?;
    let sdp_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("application/sdp"));
    if !sdp_type {
        return Err(ApiError::invalid(
            "content-type",
            "enum",
            "a WHIP offer is sent as application/sdp",
        ));
    }
    let offer = std::str::from_utf8(&body)
        .map_err(|_| ApiError::invalid("sdp", "format", "the offer is not UTF-8"))?;
    // The front sets the leg's codec and addresses; the admission is the join rules'.
    let opus = mixminus_rtp::CodecParams::new(mixminus_rtp::CodecKind::Opus);
    let request = admission(state.registry(), &entry, JoinFlags::default(), opus, None)?;
    let bind = state.registry().bridge().config().rtp_bind;
    state.whip_legs().retain(|_, leg| !leg.is_finished());
    let (leg, answer) =
        WebRtcLeg::accept(entry.handle(), offer, bind, request).await.map_err(|e| match e {
            WebRtcError::Offer(_) | WebRtcError::Negotiation(_) => {
                ApiError::invalid("sdp", "format", e.to_string())
            }
            WebRtcError::Runtime(e) => e.into(),
            other => ApiError::Unavailable(other.to_string()),
        })?;
    let id = leg.id();
    let name = query.name.filter(|n| !n.is_empty()).map(|n| n.chars().take(MAX_NAME).collect());
    let call_id = format!("whip-{}", uuid::Uuid::new_v4().simple());
    entry.add_member(id, ParticipantMeta::new(call_id, name, None));
    state.whip_legs().insert((account.clone(), conference_id.clone(), id.get()), leg);
    tracing::info!(conference = %entry.id(), participant = %id, "whip session started");
    let location = format!("/v2/accounts/{account}/conferences/{conference_id}/whip/{}", id.get());
    let mut response = (StatusCode::CREATED, answer).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/sdp"));
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    h.insert("x-participant-id", HeaderValue::from(id.get()));
    Ok(response)
}

/// `DELETE …/conferences/{C}/whip/{P}`: ends the session.
pub(crate) async fn delete(
    State(state): State<AppState>,
    auth: Authorized,
    Path((account, conference_id, participant)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let id = participant.parse::<u32>().ok().filter(|&n| n > 0);
    let key = (account, conference_id.clone(), id.unwrap_or(0));
    let Some((_, leg)) = state.whip_legs().remove(&key) else {
        return Err(ApiError::NotFound { kind: "whip session", id: participant });
    };
    leg.stop().await;
    if let Ok(entry) = state.registry().get(&auth.account, &conference_id) {
        entry.remove_member(ParticipantId::new(key.2));
    }
    tracing::info!(conference = %conference_id, participant = key.2, "whip session ended");
    Ok(StatusCode::OK.into_response())
}

/// `PATCH …/whip/{P}`: trickle ICE and ICE restarts are not supported (RFC 9725 §4.3.1).
pub(crate) async fn patch(_auth: Authorized) -> Response {
    let mut response = StatusCode::METHOD_NOT_ALLOWED.into_response();
    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("DELETE"));
    response
}

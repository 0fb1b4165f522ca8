//! One incoming call, from INVITE to BYE: route, answer, PIN, admit, stay, leave.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytesstr::BytesStr;
use ezk_sip_core::{Endpoint, IncomingRequest, MayTake};
use ezk_sip_types::header::typed::{AuthResponse, Contact, ContentType};
use ezk_sip_types::uri::{NameAddr, SipUri, SipUriUserPart};
use ezk_sip_types::{Method, Name, StatusCode};
use ezk_sip_ua::dialog::{Dialog, Usage};
use ezk_sip_ua::invite::acceptor::InviteAcceptor;
use ezk_sip_ua::invite::session::{InviteSession, InviteSessionEvent};
use mixminus_control::join::{admit, JoinBody};
use mixminus_control::registry::ConferenceEntry;
use mixminus_control::ApiError;
use mixminus_core::{Event, ParticipantId};
use mixminus_rtp::sdp::{self, AudioOffer};
use mixminus_rtp::srtp::{SrtpKey, SrtpKeys};
use tokio::sync::{broadcast, mpsc};

use crate::auth::{AuthVerdict, DigestAuth};
use crate::decide::{read_offer, request_user, OfferError};
use crate::dtmf::info_digit;
use crate::lobby::{collect_pin, Lobby};
use crate::pin::{PinEntry, PinOutcome};
use crate::route::{route, Admission, Role};
use crate::server::Shared;

/// What a caller is told when it cannot join: a status and a reason phrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal(pub(crate) u16, pub(crate) &'static str);

impl Refusal {
    pub(crate) const NOT_FOUND: Refusal = Refusal(404, "Conference Not Found");
    pub(crate) const LOCKED: Refusal = Refusal(403, "Conference Locked");
    pub(crate) const FULL: Refusal = Refusal(486, "Conference Full");
    pub(crate) const BAD_SDP: Refusal = Refusal(488, "Not Acceptable Here");
    pub(crate) const UNSUPPORTED_BODY: Refusal = Refusal(415, "Unsupported Media Type");
    pub(crate) const ALREADY_IN: Refusal = Refusal(482, "Call Already In The Conference");
    pub(crate) const NO_PORTS: Refusal = Refusal(503, "No Media Ports Available");
    pub(crate) const QUOTA: Refusal = Refusal(403, "Account Participant Quota Reached");
    pub(crate) const BAD_REQUEST: Refusal = Refusal(400, "Bad Request");
    pub(crate) const SERVER_ERROR: Refusal = Refusal(500, "Server Internal Error");

    /// The refusal an admission error stands for.
    pub(crate) fn of(error: &ApiError) -> Refusal {
        match error {
            ApiError::Conflict { rule: "locked", .. } => Refusal::LOCKED,
            ApiError::Conflict { rule: "max_participants", .. } => Refusal::FULL,
            ApiError::Conflict { rule: "unique", .. } => Refusal::ALREADY_IN,
            ApiError::Conflict { rule: "participants_per_account", .. } => Refusal::QUOTA,
            ApiError::Conflict { .. } => Refusal::FULL,
            ApiError::NotFound { .. } => Refusal::NOT_FOUND,
            ApiError::InvalidData { .. } => Refusal::BAD_SDP,
            ApiError::Unavailable(_) => Refusal::NO_PORTS,
            _ => Refusal::SERVER_ERROR,
        }
    }

    fn label(self) -> &'static str {
        match self.0 {
            404 => "not_found",
            403 if self.1 == Refusal::QUOTA.1 => "quota",
            403 => "locked",
            486 => "full",
            488 => "bad_sdp",
            415 => "bad_body",
            482 => "duplicate",
            503 => "unavailable",
            400 => "bad_request",
            _ => "error",
        }
    }
}

/// The caller, as the INVITE names it.
#[derive(Debug, Clone)]
struct Caller {
    call_id: String,
    name: Option<String>,
    number: Option<String>,
}

/// Answers an out-of-dialog request the endpoint handed the SIP layer that is not an INVITE.
pub(crate) async fn refuse(endpoint: &Endpoint, mut request: IncomingRequest, refusal: Refusal) {
    metrics::counter!("mixminus_sip_refused_total", "reason" => refusal.label()).increment(1);
    let response = endpoint.create_response(
        &request,
        StatusCode::from(refusal.0),
        Some(BytesStr::from_static(refusal.1)),
    );
    let result = if request.line.method == Method::INVITE {
        endpoint.create_server_inv_tsx(&mut request).respond_failure(response).await
    } else {
        endpoint.create_server_tsx(&mut request).respond(response).await
    };
    if let Err(error) = result {
        tracing::debug!(%error, "sending a refusal failed");
    }
}

/// Answers `401 Unauthorized` with digest challenges (not counted as a refusal: it is the
/// first half of every authenticated call).
async fn challenge(
    endpoint: &Endpoint,
    mut invite: IncomingRequest,
    auth: &DigestAuth,
    stale: bool,
) {
    metrics::counter!("mixminus_sip_auth_challenges_total").increment(1);
    let mut response = endpoint.create_response(&invite, StatusCode::UNAUTHORIZED, None);
    for value in auth.challenges(SystemTime::now(), stale) {
        response.msg.headers.insert(Name::WWW_AUTHENTICATE, BytesStr::from(value));
    }
    if let Err(error) = endpoint.create_server_inv_tsx(&mut invite).respond_failure(response).await
    {
        tracing::debug!(%error, "sending a challenge failed");
    }
}

/// Handles one INVITE that starts a call, to its end.
pub(crate) async fn run(shared: Arc<Shared>, endpoint: Endpoint, invite: IncomingRequest) {
    let started = Instant::now();
    if let Some(auth) = &shared.auth {
        let given = invite
            .headers
            .try_get::<Vec<AuthResponse>>(Name::AUTHORIZATION)
            .and_then(Result::ok)
            .unwrap_or_default();
        match auth.check("INVITE", &given, SystemTime::now()) {
            AuthVerdict::Authorized(user) => {
                tracing::debug!(%user, "SIP caller authenticated");
            }
            AuthVerdict::Challenge { stale, failed } => {
                if failed {
                    metrics::counter!("mixminus_sip_auth_failures_total").increment(1);
                }
                return challenge(&endpoint, invite, auth, stale).await;
            }
        }
    }
    let user = request_user(&invite.line.uri.user_part);
    // Route: the conferences of the accounts SIP serves, by id, then by number.
    let entries = shared.conferences();
    let docs: Vec<_> = entries.iter().map(|e| (e.clone(), e.doc())).collect();
    let Some((entry, admission)) = route(&user, docs.iter().map(|(e, d)| (e.id(), d, e.clone())))
    else {
        tracing::info!(%user, "SIP call to no conference");
        return refuse(&endpoint, invite, Refusal::NOT_FOUND).await;
    };
    // Cheap early refusals (admission decides again, atomically, when the call joins).
    if entry.is_locked() {
        return refuse(&endpoint, invite, Refusal::LOCKED).await;
    }
    if let Some(limit) = entry.doc().member_limit() {
        if entry.counted(&entry.handle().snapshot()) >= limit {
            return refuse(&endpoint, invite, Refusal::FULL).await;
        }
    }
    let frame_ms = entry.doc().profile.interval.millis();
    let content_type = invite.headers.get_named::<ContentType>().ok().map(|t| t.0.to_string());
    let offer = match read_offer(content_type.as_deref(), &invite.body, frame_ms) {
        Ok(offer) => offer,
        Err(OfferError::NotSdp) => {
            return refuse(&endpoint, invite, Refusal::UNSUPPORTED_BODY).await;
        }
        Err(OfferError::Unacceptable) => return refuse(&endpoint, invite, Refusal::BAD_SDP).await,
    };
    let caller = caller_of(&invite);
    let contact = match contact_for(&invite) {
        Some(contact) => contact,
        None => return refuse(&endpoint, invite, Refusal::BAD_REQUEST).await,
    };
    let dialog = match Dialog::new_server(endpoint.clone(), &invite, contact) {
        Ok(dialog) => dialog,
        Err(error) => {
            tracing::debug!(%error, "no dialog from this INVITE");
            return refuse(&endpoint, invite, Refusal::BAD_REQUEST).await;
        }
    };
    // SIP INFO digits (in the dialog) reach the PIN lobby through this channel.
    let (info_tx, mut info_rx) = mpsc::channel(32);
    let _info = dialog.register_usage(InfoUsage { digits: info_tx });
    let mut acceptor = InviteAcceptor::new(dialog, invite);
    if let Ok(trying) = acceptor.create_response(StatusCode::TRYING, None).await {
        let _ = acceptor.respond_provisional(trying).await;
    }
    let ports = match shared.registry.bridge().reserve_ports() {
        Ok(ports) => ports,
        Err(error) => {
            tracing::warn!(%error, "no RTP ports for a SIP call");
            return fail(acceptor, Refusal::NO_PORTS).await;
        }
    };
    let local = ports.local_rtp();
    let session_id = u64::from(rand::random::<u32>());
    let mut body = JoinBody::sdp(String::new());
    body.call_id = Some(caller.call_id.clone());
    body.caller_id_name = caller.name.clone();
    body.caller_id_number = caller.number.clone();
    // SDES: our own key for an RTP/SAVP offer.
    let srtp_local = offer.as_ref().and_then(|(_, o)| o.srtp.as_ref()).map(|_| SrtpKey::random());
    body.srtp_local = srtp_local.clone();
    let key = srtp_local.as_ref();
    let mut events = entry.handle().subscribe();
    // Straight in with an offer: admitted before the answer, so a refusal is a 4xx.
    let (answer, mut joined, mut ports, mut offer_parsed) = match (&admission, offer) {
        (Admission::Join(role), Some((text, offer))) => {
            body.moderator = *role == Role::Moderator;
            body.media = mixminus_control::join::Media::Sdp(text);
            match admit(&shared.registry, &entry, &body, Some(ports), |_| {}).await {
                Ok(admitted) => {
                    let answer = offer.answer_with_key(local, session_id, key);
                    (answer, Some(admitted.joined.id), None, Some(offer))
                }
                Err(error) => {
                    tracing::info!(%error, "SIP call not admitted");
                    return fail(acceptor, Refusal::of(&error)).await;
                }
            }
        }
        (_, Some((text, offer))) => {
            body.media = mixminus_control::join::Media::Sdp(text);
            (offer.answer_with_key(local, session_id, key), None, Some(ports), Some(offer))
        }
        (_, None) => (sdp::offer(local, session_id, frame_ms), None, Some(ports), None),
    };
    let mut response = match acceptor.create_response(StatusCode::OK, None).await {
        Ok(response) => response,
        Err(_) => return leave(&entry, joined).await,
    };
    response.msg.headers.insert_named(&ContentType(BytesStr::from_static("application/sdp")));
    response.msg.body = answer.clone().into();
    let (mut session, ack) = match acceptor.respond_success(response).await {
        Ok(done) => done,
        Err(error) => {
            // CANCEL, or no ACK.
            tracing::info!(%error, "SIP call not established");
            return leave(&entry, joined).await;
        }
    };
    metrics::counter!("mixminus_sip_calls_total").increment(1);
    let _gauge = CallGauge::new();
    if offer_parsed.is_none() {
        // Offerless INVITE: the answer is in the ACK.
        let answered = std::str::from_utf8(&ack.body)
            .ok()
            .and_then(|text| AudioOffer::parse(text, frame_ms).ok().map(|o| (text.to_owned(), o)));
        let Some((text, answer)) = answered else {
            tracing::info!("offerless SIP call: no usable answer in the ACK");
            let _ = session.terminate().await;
            return;
        };
        body.media = mixminus_control::join::Media::Sdp(text);
        offer_parsed = Some(answer);
    }
    let Some(media) = offer_parsed else { return };
    if joined.is_none() {
        let role = match admission {
            Admission::Join(role) => Some(role),
            Admission::Pin { fixed, member_pins, moderator_pins } => {
                let entry_pin = PinEntry::new(
                    shared.config.pin(),
                    member_pins,
                    moderator_pins,
                    fixed,
                    Instant::now(),
                );
                let Some(reserved) = ports.as_ref() else { return };
                let srtp = media
                    .srtp
                    .as_ref()
                    .zip(srtp_local.as_ref())
                    .map(|((_, remote), local)| SrtpKeys::new(remote.clone(), local.clone()));
                let lobby = Lobby {
                    ports: reserved,
                    remote: media.remote,
                    codec: &media.codec,
                    dtmf_pt: media.telephone_event,
                    srtp: srtp.as_ref(),
                };
                let collected = tokio::select! {
                    outcome = collect_pin(lobby, entry_pin, &mut info_rx) => outcome,
                    _ = hung_up(&mut session) => {
                        tracing::info!(call_id = %caller.call_id, "caller hung up during PIN entry");
                        return;
                    }
                };
                match collected {
                    Ok(PinOutcome::Accepted(role)) => Some(role),
                    Ok(_) => {
                        metrics::counter!("mixminus_sip_pin_failures_total").increment(1);
                        tracing::info!(call_id = %caller.call_id, "PIN failed: ending the call");
                        None
                    }
                    Err(error) => {
                        tracing::warn!(%error, "PIN lobby failed");
                        None
                    }
                }
            }
        };
        let Some(role) = role else {
            let _ = session.terminate().await;
            return;
        };
        body.moderator = role == Role::Moderator;
        match admit(&shared.registry, &entry, &body, ports.take(), |_| {}).await {
            Ok(admitted) => joined = Some(admitted.joined.id),
            Err(error) => {
                tracing::info!(%error, "SIP call not admitted after its PIN");
                let _ = session.terminate().await;
                return;
            }
        }
    }
    let Some(id) = joined else { return };
    tracing::info!(conference = %entry.id(), participant = %id, call_id = %caller.call_id,
        setup_ms = started.elapsed().as_millis() as u64, "SIP call joined");
    let answering = Answering { local, session_id, key: srtp_local, codec: media.codec };
    in_call(&entry, id, &mut session, &mut events, &answer, frame_ms, answering).await;
}

/// What a re-INVITE's answer is made from: our media address, the SDP session, the SRTP
/// key we gave, the codec the leg has now.
struct Answering {
    local: std::net::SocketAddr,
    session_id: u64,
    key: Option<SrtpKey>,
    codec: mixminus_rtp::CodecParams,
}

/// The call is in the conference: BYE either way, kick, re-INVITE, the conference ending.
async fn in_call(
    entry: &ConferenceEntry,
    id: ParticipantId,
    session: &mut InviteSession,
    events: &mut broadcast::Receiver<Event>,
    answer: &str,
    frame_ms: u32,
    mut answering: Answering,
) {
    let mut answer = answer.to_owned();
    let mut version = 1u64;
    // One value per loop turn, moved once into the match: its size costs nothing.
    #[allow(clippy::large_enum_variant)]
    enum Next {
        Session(Result<InviteSessionEvent, ezk_sip_core::Error>),
        Left,
        Check,
    }
    let mut check = tokio::time::interval(Duration::from_secs(1));
    loop {
        let next = tokio::select! {
            event = session.run() => Next::Session(event),
            event = events.recv() => match event {
                Ok(Event::Left(left)) if left == id => Next::Left,
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(_)) => Next::Check,
                Err(broadcast::error::RecvError::Closed) => Next::Left,
            },
            _ = check.tick() => Next::Check,
        };
        match next {
            Next::Session(Ok(InviteSessionEvent::Bye(bye))) => {
                let _ = session.handle_bye(bye).await;
                tracing::info!(participant = %id, "caller hung up");
                return leave(entry, Some(id)).await;
            }
            Next::Session(Ok(InviteSessionEvent::ReInviteReceived(reinvite))) => {
                // A new offer: its direction holds or resumes the call, its codec (when
                // another) switches the leg; no offer: the same answer again.
                let offer = std::str::from_utf8(&reinvite.invite.body)
                    .ok()
                    .filter(|b| !b.trim().is_empty())
                    .map(|b| AudioOffer::parse(b, frame_ms));
                let mut status = StatusCode::OK;
                match offer {
                    Some(Ok(offer)) => {
                        let codec_changed = offer.codec != answering.codec;
                        let switched = if codec_changed {
                            entry.handle().set_codec(id, offer.codec).await
                        } else {
                            Ok(false)
                        };
                        match switched {
                            Ok(switched) => {
                                if switched {
                                    tracing::info!(participant = %id,
                                        codec = ?offer.codec.kind, "SIP codec change");
                                    metrics::counter!("mixminus_sip_codec_changes_total")
                                        .increment(1);
                                }
                                answering.codec = offer.codec;
                                let held = !offer.direction.offerer_receives();
                                if let Ok(true) = entry.handle().set_held(id, held).await {
                                    tracing::info!(participant = %id, held, "SIP hold");
                                }
                                version += 1;
                                let fresh = offer.answer_with_key(
                                    answering.local,
                                    answering.session_id,
                                    answering.key.as_ref(),
                                );
                                answer = reanswer(&fresh, offer.direction.answered(), version);
                            }
                            Err(error) => {
                                tracing::info!(%error, "re-INVITE codec refused");
                                status = StatusCode::from(488);
                            }
                        }
                    }
                    Some(Err(error)) => {
                        tracing::info!(%error, "re-INVITE offer refused");
                        status = StatusCode::from(488);
                    }
                    None => {}
                }
                if status != StatusCode::OK {
                    // RFC 3261 §14.2: a refused re-INVITE leaves the session as it was.
                    let response = session.dialog.create_response(&reinvite.invite, status, None);
                    if let Ok(response) = response {
                        let _ = reinvite.transaction.respond_failure(response).await;
                    }
                    continue;
                }
                let response =
                    session.dialog.create_response(&reinvite.invite, StatusCode::OK, None);
                if let Ok(mut response) = response {
                    response
                        .msg
                        .headers
                        .insert_named(&ContentType(BytesStr::from_static("application/sdp")));
                    response.msg.body = answer.clone().into();
                    let _ = session.handle_reinvite_success(reinvite, response).await;
                }
            }
            Next::Session(Ok(InviteSessionEvent::RefreshNeeded)) => {
                let _ = session.refresh().await;
            }
            Next::Session(Ok(InviteSessionEvent::Notify(_))) => {}
            Next::Session(Ok(InviteSessionEvent::Terminated)) | Next::Session(Err(_)) => {
                return leave(entry, Some(id)).await;
            }
            Next::Left => {
                tracing::info!(participant = %id, "participant left the conference: BYE");
                entry.remove_member(id);
                let _ = session.terminate().await;
                return;
            }
            Next::Check => {
                let snapshot = entry.handle().snapshot();
                if !entry.handle().is_running()
                    || !snapshot.participants.iter().any(|l| l.info.id == id)
                {
                    entry.remove_member(id);
                    let _ = session.terminate().await;
                    return;
                }
            }
        }
    }
}

/// `answer` again, with `direction` and the session version `version` (RFC 3264 §8: a
/// changed answer carries a higher version).
fn reanswer(answer: &str, direction: sdp::Direction, version: u64) -> String {
    let mut out = String::with_capacity(answer.len() + 8);
    for line in answer.lines() {
        if matches!(line, "a=sendrecv" | "a=sendonly" | "a=recvonly" | "a=inactive") {
            out.push_str("a=");
            out.push_str(direction.as_str());
        } else if let Some(origin) = line.strip_prefix("o=") {
            let mut fields: Vec<&str> = origin.split(' ').collect();
            let version = version.to_string();
            if fields.len() > 2 {
                fields[2] = &version;
            }
            out.push_str("o=");
            out.push_str(&fields.join(" "));
        } else {
            out.push_str(line);
        }
        out.push_str("\r\n");
    }
    out
}

/// Resolves when the caller hangs up (BYE) or the session ends.
async fn hung_up(session: &mut InviteSession) {
    loop {
        match session.run().await {
            Ok(InviteSessionEvent::Bye(bye)) => {
                let _ = session.handle_bye(bye).await;
                return;
            }
            Ok(InviteSessionEvent::Terminated) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

async fn leave(entry: &ConferenceEntry, id: Option<ParticipantId>) {
    if let Some(id) = id {
        // It may have left already (kicked while the BYE crossed): nothing else to do.
        let _ = entry.handle().leave(id).await;
        entry.remove_member(id);
    }
}

async fn fail(acceptor: InviteAcceptor, refusal: Refusal) {
    metrics::counter!("mixminus_sip_refused_total", "reason" => refusal.label()).increment(1);
    let response = acceptor
        .create_response(StatusCode::from(refusal.0), Some(BytesStr::from_static(refusal.1)))
        .await;
    if let Ok(response) = response {
        let _ = acceptor.respond_failure(response).await;
    }
}

/// `mixminus_sip_active_calls` while a call is established.
struct CallGauge;

impl CallGauge {
    fn new() -> Self {
        metrics::gauge!("mixminus_sip_active_calls").increment(1.0);
        CallGauge
    }
}

impl Drop for CallGauge {
    fn drop(&mut self) {
        metrics::gauge!("mixminus_sip_active_calls").decrement(1.0);
    }
}

/// SIP INFO in the call's dialog: answered 200, DTMF bodies passed on as digits.
struct InfoUsage {
    digits: mpsc::Sender<char>,
}

#[async_trait::async_trait]
impl Usage for InfoUsage {
    fn name(&self) -> &'static str {
        "mixminus-info"
    }

    async fn receive(&self, endpoint: &Endpoint, request: MayTake<'_, IncomingRequest>) {
        if request.line.method != Method::INFO {
            return;
        }
        let mut info = request.take();
        let content_type = info.headers.get_named::<ContentType>().map(|t| t.0.to_string());
        let digit = match (content_type, std::str::from_utf8(&info.body)) {
            (Ok(t), Ok(body)) => info_digit(&t, body),
            _ => None,
        };
        if let Some(digit) = digit {
            // A full channel (a flood of INFOs) drops digits, never blocks.
            let _ = self.digits.try_send(digit);
        }
        let response = endpoint.create_response(&info, StatusCode::OK, None);
        let _ = endpoint.create_server_tsx(&mut info).respond(response).await;
    }
}

/// Call-ID, and the caller's name and number from P-Asserted-Identity, else From.
fn caller_of(invite: &IncomingRequest) -> Caller {
    const PAI: Name = Name::custom("P-Asserted-Identity", &["p-asserted-identity"]);
    let from = &invite.base_headers.from.uri;
    let mut name = from.name.as_ref().map(|n| n.to_string()).filter(|n| !n.is_empty());
    let mut number = match &from.uri.user_part {
        SipUriUserPart::User(user) => Some(user.to_string()),
        _ => None,
    };
    if let Some(pai) = invite.headers.get_raw(&PAI).next() {
        let (pai_name, pai_number) = parse_identity(pai);
        name = pai_name.or(name);
        number = pai_number.or(number);
    }
    let bound = |s: Option<String>, n: usize| s.map(|s| s.chars().take(n).collect::<String>());
    Caller {
        call_id: invite.base_headers.call_id.0.chars().take(128).collect(),
        name: bound(name, 128),
        number: bound(number, 64),
    }
}

/// `"Alice" <sip:1001@host>` → (`Alice`, `1001`); also `tel:` URIs.
fn parse_identity(value: &str) -> (Option<String>, Option<String>) {
    let (display, uri) = match value.split_once('<') {
        Some((display, rest)) => (display, rest.split('>').next().unwrap_or("")),
        None => ("", value),
    };
    let display = display.trim().trim_matches('"').trim();
    let user = uri
        .trim()
        .strip_prefix("sip:")
        .or_else(|| uri.trim().strip_prefix("sips:"))
        .map(|u| u.split('@').next().unwrap_or(""))
        .or_else(|| uri.trim().strip_prefix("tel:"))
        .map(|u| u.split(';').next().unwrap_or("").to_owned());
    ((!display.is_empty()).then(|| display.to_owned()), user.filter(|u| !u.is_empty()))
}

/// Our Contact for a dialog started by `invite`: the address it arrived on, and its
/// transport when that is not UDP.
fn contact_for(invite: &IncomingRequest) -> Option<Contact> {
    let transport = &invite.tp_info.transport;
    let bound = transport.bound();
    let suffix = if transport.is_udp() { "" } else { ";transport=tcp" };
    let uri: SipUri = format!("sip:mixminus@{bound}{suffix}").parse().ok()?;
    Some(Contact::new(NameAddr::uri(uri)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_is_answered_with_the_mirrored_direction_and_a_new_version() {
        let answer =
            "v=0\r\no=mixminus 7 1 IN IP4 127.0.0.1\r\nm=audio 5 RTP/AVP 0\r\na=sendrecv\r\n";
        let held = reanswer(answer, sdp::Direction::RecvOnly, 2);
        assert_eq!(
            held,
            "v=0\r\no=mixminus 7 2 IN IP4 127.0.0.1\r\nm=audio 5 RTP/AVP 0\r\na=recvonly\r\n"
        );
    }

    #[test]
    fn identities() {
        assert_eq!(
            parse_identity("\"Alice Smith\" <sip:1001@example.com;user=phone>"),
            (Some("Alice Smith".into()), Some("1001".into()))
        );
        assert_eq!(parse_identity("<tel:+4930123;cpc=x>"), (None, Some("+4930123".into())));
        assert_eq!(parse_identity("garbage"), (None, None));
        assert_eq!(parse_identity(""), (None, None));
    }

    #[test]
    fn refusals_are_named() {
        let locked = ApiError::Conflict {
            field: "is_locked".into(),
            rule: "locked",
            message: String::new(),
        };
        assert_eq!(Refusal::of(&locked), Refusal::LOCKED);
        let full = ApiError::Conflict {
            field: "max_participants".into(),
            rule: "max_participants",
            message: String::new(),
        };
        assert_eq!(Refusal::of(&full), Refusal::FULL);
    }
}

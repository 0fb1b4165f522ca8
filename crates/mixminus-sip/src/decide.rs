//! The SIP message path's decisions, sans-IO: what a request asks for and what we answer,
//! from bytes and conference documents alone.
//!
//! [`frame`] is the UDP receive path's first step: every datagram is framed and checked
//! here, and what ezk would drop unseen is counted and answered `400` / `513` or dropped.
//! The server then takes its requests from ezk parsed and calls the same functions
//! ([`read_offer`], [`request_user`], [`crate::route::route`], [`crate::dtmf::info_digit`],
//! the caller's identity); [`inspect`] puts them behind [`frame`], so one pure call goes
//! from a datagram to the answer a caller would get. That is what the fuzz
//! target `sip_message` drives, and what the unit tests below pin down.

use bytes::Bytes;
use ezk_sip_core::transaction::TsxKey;
use ezk_sip_core::BaseHeaders;
use ezk_sip_types::header::typed::{CSeq, CallID, ContentLength, ContentType, Via};
use ezk_sip_types::msg::{Line, MessageLine, PullParser};
use ezk_sip_types::parse::Parse;
use ezk_sip_types::uri::SipUriUserPart;
use ezk_sip_types::{Headers, Method, Name};
use ezk_stun_types as stun_types;
use mixminus_control::doc::ConferenceDoc;
use mixminus_rtp::sdp::AudioOffer;

use crate::route::{route, Admission};

/// What the SIP front does with one datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// A keep-alive (`CRLF CRLF` or `CRLF`).
    KeepAlive,
    /// Malformed ([`frame`]): counted, answered `400` / `513` or dropped; the reason's
    /// label.
    Malformed(&'static str),
    /// A response (or STUN): a transaction's business, or dropped as orphaned.
    Response,
    /// Answered with this status and reason phrase.
    Answer(u16, &'static str),
    /// An INVITE that routes to conference number `index` of the candidates and gets in
    /// this way; `offer`: it carried a usable SDP offer (else it is offerless).
    Invite {
        /// The candidate it reached.
        index: usize,
        /// How the caller gets in.
        admission: Admission,
        /// Whether it carried an offer.
        offer: bool,
    },
    /// A request inside a dialog (a To tag): the dialog's business; an INFO's DTMF digit.
    InDialog {
        /// The digit an INFO carries, if any.
        digit: Option<char>,
    },
}

impl Verdict {
    /// The status code answered, if the verdict is an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            Verdict::Answer(status, _) => Some(*status),
            _ => None,
        }
    }
}

/// The Request-URI's user part (the number dialled).
pub fn request_user(user_part: &SipUriUserPart) -> String {
    match user_part {
        SipUriUserPart::User(user) => user.to_string(),
        SipUriUserPart::UserPw(user) => user.user.to_string(),
        SipUriUserPart::Empty => String::new(),
    }
}

/// Why an INVITE's body is not an offer we can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OfferError {
    /// The body is not `application/sdp` text: `415`.
    NotSdp,
    /// SDP we cannot answer (no common codec, bad lines): `488`.
    Unacceptable,
}

/// The SDP offer an INVITE carries: `None` for an empty body (offerless INVITE).
pub fn read_offer(
    content_type: Option<&str>,
    body: &[u8],
    frame_ms: u32,
) -> Result<Option<(String, AudioOffer)>, OfferError> {
    if body.is_empty() {
        return Ok(None);
    }
    let is_sdp = content_type.is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"));
    let text = std::str::from_utf8(body).ok().filter(|_| is_sdp).ok_or(OfferError::NotSdp)?;
    match AudioOffer::parse(text, frame_ms) {
        Ok(offer) => Ok(Some((text.to_owned(), offer))),
        Err(error) => {
            tracing::debug!(%error, "SIP offer refused");
            Err(OfferError::Unacceptable)
        }
    }
}

/// What the server answers `datagram` with, given the conferences callers may reach
/// (`(id, document)`, in registry order) and the conferences' frame length. Never panics.
pub fn inspect<'a>(
    datagram: &[u8],
    conferences: impl IntoIterator<Item = (&'a str, &'a ConferenceDoc)>,
    frame_ms: u32,
) -> Verdict {
    let message = match frame(datagram, usize::MAX) {
        Datagram::Ping | Datagram::Pong => return Verdict::KeepAlive,
        Datagram::Stun(_) => return Verdict::Response,
        Datagram::Malformed { reason, .. } => return Verdict::Malformed(reason.label()),
        Datagram::Sip(message) => *message,
    };
    let headers = &message.headers;
    let to = message.base.to;
    let request = match message.line {
        MessageLine::Request(request) => request,
        MessageLine::Response(_) => return Verdict::Response,
    };
    let content_type = headers.get_named::<ContentType>().ok().map(|t| t.0.to_string());
    let body = message.body;
    if to.tag.is_some() {
        let digit = (request.method == Method::INFO)
            .then(|| {
                let body = std::str::from_utf8(&body).ok()?;
                crate::dtmf::info_digit(content_type.as_deref()?, body)
            })
            .flatten();
        return Verdict::InDialog { digit };
    }
    match request.method {
        Method::INVITE => {}
        Method::OPTIONS => return Verdict::Answer(200, "OK"),
        Method::ACK | Method::CANCEL | Method::BYE => {
            return Verdict::Answer(481, "Call/Transaction Does Not Exist")
        }
        _ => return Verdict::Answer(405, "Method Not Allowed"),
    }
    let user = request_user(&request.uri.user_part);
    let candidates = conferences.into_iter().enumerate().map(|(i, (id, doc))| (id, doc, i));
    let Some((index, admission)) = route(&user, candidates) else {
        return Verdict::Answer(404, "Conference Not Found");
    };
    match read_offer(content_type.as_deref(), &body, frame_ms) {
        Ok(offer) => Verdict::Invite { index, admission, offer: offer.is_some() },
        Err(OfferError::NotSdp) => Verdict::Answer(415, "Unsupported Media Type"),
        Err(OfferError::Unacceptable) => Verdict::Answer(488, "Not Acceptable Here"),
    }
}

/// Why a message is malformed: the `reason` label of `mixminus_sip_malformed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Malformed {
    /// Not a SIP message: nothing, or a start line, header line or UTF-8 that does not parse.
    Unparseable,
    /// The datagram ends before the body its `Content-Length` announces (RFC 3261 §18.3).
    Truncated,
    /// Via, From, To, Call-ID or CSeq absent or unparseable (RFC 3261 §8.1.1), or no
    /// transaction can be keyed from them: ezk drops such a message, we count it first.
    MissingHeaders,
    /// Larger than `max_message_bytes`.
    Oversized,
    /// A STUN message that does not parse.
    Stun,
}

impl Malformed {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Malformed::Unparseable => "unparseable",
            Malformed::Truncated => "truncated",
            Malformed::MissingHeaders => "missing_headers",
            Malformed::Oversized => "oversized",
            Malformed::Stun => "stun",
        }
    }
}

/// One UDP datagram on the SIP port, framed and checked: what the receive path does with it.
#[non_exhaustive]
pub enum Datagram {
    /// `CRLF CRLF`: a keep-alive ping, answered `CRLF` (RFC 5626 §3.5.1).
    Ping,
    /// `CRLF`: a keep-alive pong; nothing to do.
    Pong,
    /// A STUN message: the endpoint's business.
    Stun(stun_types::Message),
    /// A SIP message with the base headers every response needs: for ezk (boxed: the
    /// other variants are small).
    Sip(Box<SipMessage>),
    /// Malformed: counted, and `answer` (a `400` or `513`, to the datagram's source) sent
    /// when it is a request that names its transaction (a Via and a CSeq); else dropped.
    Malformed {
        /// Why.
        reason: Malformed,
        /// The response to send back, if any.
        answer: Option<Bytes>,
    },
}

impl std::fmt::Debug for Datagram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Datagram::Ping => f.write_str("Ping"),
            Datagram::Pong => f.write_str("Pong"),
            // ezk's STUN message has no `Debug`.
            Datagram::Stun(_) => f.write_str("Stun"),
            Datagram::Sip(message) => f.debug_tuple("Sip").field(message).finish(),
            Datagram::Malformed { reason, answer } => {
                f.debug_struct("Malformed").field("reason", reason).field("answer", answer).finish()
            }
        }
    }
}

/// A parsed SIP message, as ezk's `ReceivedMessage` takes it.
#[derive(Debug)]
#[non_exhaustive]
pub struct SipMessage {
    /// The request or status line.
    pub line: MessageLine,
    /// All headers, raw.
    pub headers: Headers,
    /// The base headers, parsed (ezk parses them again).
    pub base: BaseHeaders,
    /// The body.
    pub body: Bytes,
    /// The whole datagram.
    pub buffer: Bytes,
}

/// Frames one datagram of at most `max_bytes` (larger: [`Malformed::Oversized`]) and checks
/// it the way ezk's UDP transport and endpoint would, so that whatever ezk would drop
/// unseen is [`Datagram::Malformed`] here. Never panics.
pub fn frame(datagram: &[u8], max_bytes: usize) -> Datagram {
    match datagram {
        b"\r\n\r\n" => return Datagram::Ping,
        b"\r\n" => return Datagram::Pong,
        _ => {}
    }
    match stun_types::is_stun_message(datagram) {
        // Under 20 bytes: STUN only if its magic cookie is there; else it is no SIP either.
        stun_types::IsStunMessageInfo::TooShort
            if datagram.get(4..8) != Some(&[0x21, 0x12, 0xa4, 0x42]) => {}
        stun_types::IsStunMessageInfo::No => {}
        stun_types::IsStunMessageInfo::Yes { len } if len <= max_bytes => {
            return match datagram.get(..len).map(stun_types::Message::parse) {
                Some(Ok(message)) => Datagram::Stun(message),
                _ => Datagram::Malformed { reason: Malformed::Stun, answer: None },
            };
        }
        _ => return Datagram::Malformed { reason: Malformed::Stun, answer: None },
    }
    let (line, headers, body, buffer) = match parse_message(datagram) {
        Ok(parts) => parts,
        Err(reason) => return Datagram::Malformed { reason, answer: None },
    };
    let answer = |status: &str| bad_request(&line, &headers, status);
    if datagram.len() > max_bytes {
        return Datagram::Malformed {
            reason: Malformed::Oversized,
            answer: answer("513 Message Too Large"),
        };
    }
    let Some(body) = body else {
        return Datagram::Malformed {
            reason: Malformed::Truncated,
            answer: answer("400 Body Shorter Than Content-Length"),
        };
    };
    let Some(base) = base_headers(&line, &headers) else {
        return Datagram::Malformed {
            reason: Malformed::MissingHeaders,
            answer: answer("400 Missing Or Bad Via, From, To, Call-ID Or CSeq"),
        };
    };
    Datagram::Sip(Box::new(SipMessage { line, headers, base, body, buffer }))
}

/// The base headers, when ezk's endpoint would take the message: all five parse, there is
/// a Via, and a transaction key can be made of them.
fn base_headers(line: &MessageLine, headers: &Headers) -> Option<BaseHeaders> {
    let base = BaseHeaders {
        via: headers.get_named::<Vec<Via>>().ok().filter(|v| !v.is_empty())?,
        from: headers.get(Name::FROM).ok()?,
        to: headers.get(Name::TO).ok()?,
        call_id: headers.get_named::<CallID>().ok()?,
        cseq: headers.get_named::<CSeq>().ok()?,
    };
    TsxKey::from_message_parts(line, &base).ok()?;
    Some(base)
}

/// A stateless response (`status`: code and phrase) to a malformed request, echoing the
/// headers it has (RFC 3261 §8.2.6.2): only for a request other than ACK whose Via and
/// CSeq parse, since without them the client cannot match the answer to its transaction.
fn bad_request(line: &MessageLine, headers: &Headers, status: &str) -> Option<Bytes> {
    let MessageLine::Request(request) = line else { return None };
    let vias = headers.get_named::<Vec<Via>>().ok().filter(|v| !v.is_empty());
    if request.method == Method::ACK || vias.is_none() || headers.get_named::<CSeq>().is_err() {
        return None;
    }
    let mut echoed = Headers::with_capacity(6);
    for name in [Name::VIA, Name::FROM, Name::TO, Name::CALL_ID, Name::CSEQ] {
        // Copies raw values; a name absent copies nothing (not an error worth a branch).
        let _ = headers.clone_into(&mut echoed, name);
    }
    echoed.insert(Name::CONTENT_LENGTH, "0");
    Some(Bytes::from(format!("SIP/2.0 {status}\r\n{echoed}\r\n")))
}

/// A datagram as ezk's UDP transport parses it: the first line, the headers, the body
/// (`Content-Length` of it, or the rest of the datagram without one; `None` when the
/// datagram is shorter than that) and the datagram.
fn parse_message(
    datagram: &[u8],
) -> Result<(MessageLine, Headers, Option<Bytes>, Bytes), Malformed> {
    let buffer = Bytes::copy_from_slice(datagram);
    let mut parser = PullParser::new(&buffer, 0);
    let mut first = None;
    let mut headers = Headers::new();
    for item in &mut parser {
        let item = item.map_err(|_| Malformed::Unparseable)?;
        let line = std::str::from_utf8(item).map_err(|_| Malformed::Unparseable)?;
        if first.is_none() {
            first = Some(MessageLine::parse(&buffer)(line).map_err(|_| Malformed::Unparseable)?.1);
        } else {
            let (_, line) = Line::parse(&buffer, line).map_err(|_| Malformed::Unparseable)?;
            headers.insert(line.name, line.value);
        }
    }
    let first = first.ok_or(Malformed::Unparseable)?;
    let head_end = parser.head_end().min(buffer.len());
    let body = match headers.get_named::<ContentLength>() {
        Ok(length) if length.0 == 0 => Some(Bytes::new()),
        Ok(length) => head_end
            .checked_add(length.0)
            .filter(|end| *end <= buffer.len())
            .map(|end| buffer.slice(head_end..end)),
        Err(_) => Some(buffer.slice(head_end..)),
    };
    Ok((first, headers, body, buffer))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn docs() -> Vec<(String, ConferenceDoc)> {
        let open = json!({"conference_numbers": ["7000"], "moderator": {"numbers": ["7001"]}});
        let pinned = json!({"member": {"pins": ["1234"]}});
        vec![
            ("open".into(), ConferenceDoc::parse(&open).unwrap()),
            ("pinned".into(), ConferenceDoc::parse(&pinned).unwrap()),
        ]
    }

    fn verdict(datagram: &str) -> Verdict {
        let docs = docs();
        inspect(datagram.as_bytes(), docs.iter().map(|(id, d)| (id.as_str(), d)), 20)
    }

    fn request(method: &str, user: &str, to_tag: &str, extra: &str, body: &str) -> String {
        format!(
            "{method} sip:{user}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1\r\n\
             From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:{user}@127.0.0.1>{to_tag}\r\nCall-ID: x\r\n\
             CSeq: 1 {method}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
        m=audio 4000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n";

    #[test]
    fn junk_and_headerless_messages_are_malformed() {
        assert_eq!(verdict("\r\n\r\n"), Verdict::KeepAlive);
        assert_eq!(verdict("hello"), Verdict::Malformed("unparseable"));
        assert_eq!(verdict("INVITE\r\n\r\n"), Verdict::Malformed("unparseable"));
        assert_eq!(
            verdict("INVITE sip:open@x SIP/2.0\r\n\r\n"),
            Verdict::Malformed("missing_headers")
        );
        let no_cseq = request("INVITE", "open", "", "", "").replace("CSeq: 1 INVITE\r\n", "");
        assert_eq!(verdict(&no_cseq), Verdict::Malformed("missing_headers"));
        let short_body =
            request("INVITE", "open", "", "", "v=0").replace("Length: 3", "Length: 99");
        assert_eq!(verdict(&short_body), Verdict::Malformed("truncated"));
    }

    fn framed(datagram: &[u8]) -> (Option<&'static str>, Option<String>) {
        match frame(datagram, 2000) {
            Datagram::Malformed { reason, answer } => {
                (Some(reason.label()), answer.map(|a| String::from_utf8(a.to_vec()).unwrap()))
            }
            _ => (None, None),
        }
    }

    #[test]
    fn framing_answers_what_can_be_addressed_and_drops_the_rest() {
        assert!(matches!(frame(b"\r\n\r\n", 2000), Datagram::Ping));
        assert!(matches!(frame(b"\r\n", 2000), Datagram::Pong));
        // A STUN binding request (RFC 5389: type, length 0, magic cookie, transaction id).
        let mut stun = vec![0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42];
        stun.extend_from_slice(&[7; 12]);
        assert!(matches!(frame(&stun, 2000), Datagram::Stun(_)));
        assert_eq!(framed(&stun[..10]), (Some("stun"), None));
        assert!(matches!(
            frame(request("OPTIONS", "x", "", "", "").as_bytes(), 2000),
            Datagram::Sip(_)
        ));
        assert_eq!(framed(b""), (Some("unparseable"), None));
        assert_eq!(framed(b"\xff\xfe junk"), (Some("unparseable"), None));

        // Via and CSeq: answered, with what the request had, to be matched by the client.
        let no_call_id = request("OPTIONS", "x", "", "", "").replace("Call-ID: x\r\n", "");
        let (reason, answer) = framed(no_call_id.as_bytes());
        assert_eq!(reason, Some("missing_headers"));
        let answer = answer.expect("a 400");
        assert!(answer.starts_with("SIP/2.0 400 "), "{answer}");
        assert!(
            answer.contains("branch=z9hG4bK1") && answer.contains("CSeq: 1 OPTIONS"),
            "{answer}"
        );
        assert!(
            !answer.contains("\r\nCall-ID:") && answer.ends_with("Content-Length: 0\r\n\r\n"),
            "{answer:?}"
        );
        // No CSeq, no Via, an ACK, a response: nothing to address, dropped.
        let no_cseq = request("OPTIONS", "x", "", "", "").replace("CSeq: 1 OPTIONS\r\n", "");
        assert_eq!(framed(no_cseq.as_bytes()), (Some("missing_headers"), None));
        let via = "Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1\r\n";
        let no_via = request("OPTIONS", "x", "", "", "").replace(via, "");
        assert_eq!(framed(no_via.as_bytes()), (Some("missing_headers"), None));
        let ack = request("ACK", "x", "", "", "").replace("Call-ID: x\r\n", "");
        assert_eq!(framed(ack.as_bytes()), (Some("missing_headers"), None));
        let response =
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKx\r\nCSeq: 1 BYE\r\n\r\n";
        assert_eq!(framed(response.as_bytes()), (Some("missing_headers"), None));

        // A body shorter than announced: 400 (RFC 3261 §18.3); too large: 513.
        let short = request("INVITE", "x", "", "", "v=0").replace("Length: 3", "Length: 30");
        let (reason, answer) = framed(short.as_bytes());
        assert_eq!(reason, Some("truncated"));
        assert!(answer.unwrap().starts_with("SIP/2.0 400 "));
        let big = request("INVITE", "x", "", "", &"a".repeat(2000));
        let (reason, answer) = framed(big.as_bytes());
        assert_eq!(reason, Some("oversized"));
        assert!(answer.unwrap().starts_with("SIP/2.0 513 Message Too Large\r\n"));
        assert!(matches!(frame(big.as_bytes(), 4000), Datagram::Sip(_)));
    }

    proptest::proptest! {
        #[test]
        fn framing_never_panics_and_answers_only_requests(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..3000),
            cut in 0usize..400,
            max in 1usize..3000,
        ) {
            let _ = frame(&bytes, max);
            // A real request cut short or with junk spliced in: any verdict, no panic, and
            // an answer is always a SIP response.
            let mut message = request("INVITE", "open", "", "", OFFER).into_bytes();
            let at = cut.min(message.len());
            message.splice(at..at, bytes.iter().copied().take(8));
            message.truncate(at + bytes.len() % 40 + 1);
            if let Datagram::Malformed { answer: Some(answer), .. } = frame(&message, max) {
                proptest::prop_assert!(answer.starts_with(b"SIP/2.0 "));
            }
        }
    }

    #[test]
    fn requests_get_the_answers_the_server_gives() {
        let sdp = "Content-Type: application/sdp\r\n";
        assert_eq!(
            verdict(&request("INVITE", "7001", "", sdp, OFFER)),
            Verdict::Invite {
                index: 0,
                admission: Admission::Join(crate::route::Role::Moderator),
                offer: true
            }
        );
        assert!(matches!(
            verdict(&request("INVITE", "pinned", "", "", "")),
            Verdict::Invite { index: 1, admission: Admission::Pin { .. }, offer: false }
        ));
        assert_eq!(verdict(&request("INVITE", "nobody", "", sdp, OFFER)).status(), Some(404));
        assert_eq!(verdict(&request("INVITE", "7000", "", "", OFFER)).status(), Some(415));
        let g729 = OFFER.replace("RTP/AVP 8", "RTP/AVP 18").replace("8 PCMA", "18 G729");
        assert_eq!(verdict(&request("INVITE", "7000", "", sdp, &g729)).status(), Some(488));
        assert_eq!(verdict(&request("OPTIONS", "7000", "", "", "")).status(), Some(200));
        assert_eq!(verdict(&request("MESSAGE", "7000", "", "", "")).status(), Some(405));
        let info = request(
            "INFO",
            "7000",
            ";tag=9",
            "Content-Type: application/dtmf-relay\r\n",
            "Signal=5\r\n",
        );
        assert_eq!(verdict(&info), Verdict::InDialog { digit: Some('5') });
        let response = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\n\
            To: <sip:c@d>;tag=2\r\nCall-ID: y\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(verdict(response), Verdict::Response);
    }
}

//! The SIP message path's decisions, sans-IO: what a request asks for and what we answer,
//! from bytes and conference documents alone.
//!
//! The server takes its requests from ezk already parsed and calls the same functions
//! ([`read_offer`], [`request_user`], [`crate::route::route`], [`crate::dtmf::info_digit`],
//! the caller's identity); [`inspect`] puts them behind ezk's own message parser, so one
//! pure call goes from a datagram to the answer a caller would get. That is what the fuzz
//! target `sip_message` drives, and what the unit tests below pin down.

use bytes::Bytes;
use ezk_sip_types::header::typed::{CSeq, CallID, ContentType, FromTo, Via};
use ezk_sip_types::msg::{Line, MessageLine, PullParser};
use ezk_sip_types::parse::Parse;
use ezk_sip_types::uri::SipUriUserPart;
use ezk_sip_types::{Headers, Method, Name};
use mixminus_control::doc::ConferenceDoc;
use mixminus_rtp::sdp::AudioOffer;

use crate::route::{route, Admission};

/// What the SIP front does with one datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// A keep-alive (`CRLF CRLF` or `CRLF`).
    KeepAlive,
    /// Dropped (ezk's transports drop these before our layer sees them).
    Malformed(&'static str),
    /// A response: a transaction's business, or dropped as orphaned.
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
    if datagram == b"\r\n\r\n" || datagram == b"\r\n" {
        return Verdict::KeepAlive;
    }
    let Some((line, headers, body)) = parse_message(datagram) else {
        return Verdict::Malformed("unparseable");
    };
    let base = (
        headers.get_named::<Vec<Via>>(),
        headers.get::<FromTo>(Name::FROM),
        headers.get::<FromTo>(Name::TO),
        headers.get_named::<CallID>(),
        headers.get_named::<CSeq>(),
    );
    let (Ok(via), Ok(_from), Ok(to), Ok(_call_id), Ok(_cseq)) = base else {
        return Verdict::Malformed("missing_headers");
    };
    if via.is_empty() {
        return Verdict::Malformed("missing_headers");
    }
    let request = match line {
        MessageLine::Request(request) => request,
        MessageLine::Response(_) => return Verdict::Response,
    };
    let content_type = headers.get_named::<ContentType>().ok().map(|t| t.0.to_string());
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

/// A datagram as ezk's UDP transport parses it: the first line, the headers, the body
/// (`Content-Length` of it, or the rest of the datagram without one). `None`: dropped.
fn parse_message(datagram: &[u8]) -> Option<(MessageLine, Headers, Bytes)> {
    let buffer = Bytes::copy_from_slice(datagram);
    let mut parser = PullParser::new(&buffer, 0);
    let mut first = None;
    let mut headers = Headers::new();
    for item in &mut parser {
        let line = std::str::from_utf8(item.ok()?).ok()?;
        if first.is_none() {
            first = Some(MessageLine::parse(&buffer)(line).ok()?.1);
        } else {
            let (_, line) = Line::parse(&buffer, line).ok()?;
            headers.insert(line.name, line.value);
        }
    }
    let head_end = parser.head_end();
    let body = match headers.get_named::<ezk_sip_types::header::typed::ContentLength>() {
        Ok(length) if length.0 == 0 => Bytes::new(),
        Ok(length) => buffer.get(head_end..head_end.checked_add(length.0)?)?.to_vec().into(),
        Err(_) => buffer.slice(head_end.min(buffer.len())..),
    };
    Some((first?, headers, body))
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
        assert_eq!(verdict(&short_body), Verdict::Malformed("unparseable"));
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

//! A SIP datagram from the network through our message path: the UDP receive path's
//! framing ([`mixminus_sip::decide::frame`]: keep-alive, STUN, malformed with its 400/513,
//! or a message for ezk), then routing, the SDP offer, INFO digits
//! ([`mixminus_sip::decide::inspect`]). Never panics, and a verdict is consistent with the
//! bytes (an INVITE verdict names a real candidate; an answer to a malformed message is a
//! SIP response, never one to a response).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mixminus_control::doc::ConferenceDoc;
use mixminus_sip::decide::{frame, inspect, Datagram, Verdict};

fn conferences() -> &'static [(String, ConferenceDoc)] {
    static DOCS: OnceLock<Vec<(String, ConferenceDoc)>> = OnceLock::new();
    DOCS.get_or_init(|| {
        let docs = [
            ("open", r#"{"conference_numbers": ["7000", "+4930100"]}"#),
            ("pinned", r#"{"member": {"numbers": ["300"], "pins": ["1234"]}, "moderator": {"numbers": ["301"], "pins": ["9999"]}}"#),
        ];
        docs.iter()
            .map(|(id, json)| {
                // Literal documents: they parse (the target would fail at once otherwise).
                let value = serde_json::from_str(json).expect("literal JSON");
                ((*id).to_owned(), ConferenceDoc::parse(&value).expect("literal document"))
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the size limit, so the oversized path is reached too.
    let max = 64 + usize::from(data.first().copied().unwrap_or(0)) * 64;
    if let Datagram::Malformed { answer: Some(answer), .. } = frame(data, max) {
        assert!(answer.starts_with(b"SIP/2.0 ") && !data.starts_with(b"SIP/2.0"));
    }
    let docs = conferences();
    let verdict = inspect(data, docs.iter().map(|(id, doc)| (id.as_str(), doc)), 20);
    match verdict {
        Verdict::Invite { index, .. } => assert!(index < docs.len()),
        Verdict::Answer(status, phrase) => assert!((200..700).contains(&status) && !phrase.is_empty()),
        _ => {}
    }
});

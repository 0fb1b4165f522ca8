//! A SIP datagram from the network through our message path: ezk's parser, then routing,
//! the SDP offer, INFO digits ([`mixminus_sip::decide::inspect`]). Never panics, and a
//! verdict is consistent with the bytes (an INVITE verdict names a real candidate).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mixminus_control::doc::ConferenceDoc;
use mixminus_sip::decide::{inspect, Verdict};

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
    let docs = conferences();
    let verdict = inspect(data, docs.iter().map(|(id, doc)| (id.as_str(), doc)), 20);
    match verdict {
        Verdict::Invite { index, .. } => assert!(index < docs.len()),
        Verdict::Answer(status, phrase) => assert!((200..700).contains(&status) && !phrase.is_empty()),
        _ => {}
    }
});

//! # mixminus-sip: dial in to a conference
//!
//! A SIP front for `mixminus serve`: a SIP phone, soft client, PBX or trunk calls a
//! conference by its id or one of its numbers, types a PIN when the conference has PINs, and
//! becomes a participant like any other — the same join ([`mixminus_control::join::admit`]),
//! the same participant fields (`call_id` is the SIP Call-ID, `caller_id_name` /
//! `caller_id_number` come from P-Asserted-Identity, else From), events, relate, mute, deaf;
//! a kick (or the conference ending, or the leg timing out) sends BYE.
//!
//! ```no_run
//! # async fn run(registry: mixminus_control::Registry) -> Result<(), mixminus_sip::SipError> {
//! let mut config = mixminus_sip::SipConfig::default();
//! config.listen = Some("127.0.0.1:5060".parse().unwrap());
//! let sip = mixminus_sip::SipServer::start(registry, config).await?;
//! println!("call sip:CONFERENCE@{}", sip.local_addr());
//! # Ok(()) }
//! ```
//!
//! ## The SIP stack
//!
//! Transactions, dialogs and the INVITE session come from ezk (`ezk-sip-core` and
//! `ezk-sip-ua` 0.9, MIT, maintained, on crates.io): RFC 3261 transactions with their
//! retransmission timers over UDP and TCP, dialogs, INVITE acceptance with the ACK wait,
//! CANCEL (487 to the INVITE), re-INVITE, BYE both ways, and RFC 4028 session timers. The
//! alternatives were `rsip` (a parser and message types only: transactions and dialogs
//! would be ours to write), `rvoip-sip-core` (a parser, with its transaction and dialog
//! crates young and pulling in a whole softphone stack) and `sip-core` (parser and
//! dialogs, no transport). ezk is the one where we write no transaction layer.
//!
//! ## A call
//!
//! 1. INVITE, out of dialog: rate-limited per source address (token bucket; over the limit
//!    it is dropped unanswered and counted in `mixminus_sip_invites_dropped_total`), routed by
//!    the Request-URI's user part ([`route`]). Unknown: `404 Conference Not Found`; locked:
//!    `403 Conference Locked`; full: `486 Conference Full`; an offer we cannot take:
//!    `488 Not Acceptable Here`; a body that is not SDP: `415`.
//! 2. `100 Trying`; RTP ports are reserved from the bridge's range.
//! 3. No PIN: the call is admitted (the conference's join, with the member or moderator
//!    join rules) before the `200 OK` carries the answer, so a refusal is still a 4xx.
//!    With PINs: `200 OK` first, then the lobby ([`lobby`]) plays a prompt tone on the
//!    reserved ports and reads RFC 4733 DTMF there (and SIP INFO in the dialog); the PIN's
//!    list decides the role ([`pin`]); three wrong PINs play a goodbye tone and BYE.
//!    The ports then become the conference leg: the media never moves.
//! 4. In the conference: BYE from the caller removes the leg; the leg leaving (kick, RTP
//!    inactivity, RTCP BYE, the conference ending) sends BYE; a re-INVITE's direction holds
//!    (`sendonly` / `inactive`: the bridge stops sending) or resumes the call, and another
//!    codec in it switches the leg's decoder and encoder (same participant, same port).
//!
//! An `RTP/SAVP` offer with an SDES `AES_CM_128_HMAC_SHA1_80` key makes the call SRTP: the
//! answer carries our own random key, and the lobby and the leg protect and authenticate
//! every packet ([`mixminus_rtp::srtp`]).
//!
//! An offerless INVITE gets our offer in the `200 OK` and joins with the answer in the ACK.
//! OPTIONS is answered `200` (with `Allow` and `Accept`); other out-of-dialog methods `405`.
//!
//! With `auth_users` configured, an INVITE must first answer a digest challenge
//! ([`auth`]): `401` with SHA-256 and MD5 challenges, checked before routing.
//!
//! ## Malformed messages
//!
//! Every malformed message is answered or dropped, and counted in
//! `mixminus_sip_malformed_total{transport, reason}` (`reason`: `unparseable`, `truncated`,
//! `missing_headers`, `oversized`, `stun`; see [`decide::Malformed`]).
//!
//! - **UDP: the receive path is ours** (`udp.rs`). Each datagram goes through
//!   [`decide::frame`] — the same ezk-sip-types parsers and base-header checks ezk's
//!   transport and endpoint apply — before ezk sees it: `CRLF CRLF` is answered `CRLF`,
//!   STUN and good SIP are handed to ezk (`Endpoint::receive_stun`, `Endpoint::receive`),
//!   and a malformed request that names its transaction (a Via and a CSeq that parse, not
//!   an ACK) is answered statelessly, to the datagram's source only, `400` (a missing or bad
//!   From/To/Call-ID, a body shorter than its `Content-Length`, RFC 3261 §8.1.1, §18.3) or
//!   `513 Message Too Large` (over `max_message_bytes`); anything else (junk, no Via or
//!   CSeq, a response, an ACK) is dropped. Responses must leave from the port the client
//!   sent to, and only ezk makes the transport handle it sends through: ezk binds the
//!   public socket in a builder that is never built (so ezk's own reader for it ends at
//!   once), and we read the same socket through a duplicate of its descriptor taken with
//!   `pidfd_getfd(2)` on our own process — safe Rust through `rustix`, so
//!   `forbid(unsafe_code)` stays. Linux ≥ 5.6 only; where the call fails (another OS, a
//!   seccomp policy) the server logs a warning and falls back to ezk's own UDP path,
//!   uncounted.
//! - **TCP: the stream is ezk's** (a connection's transport handle cannot be made outside
//!   ezk), and ezk only logs what it drops. [`ezk_warnings`] is a `tracing` layer that
//!   counts those warnings — a stream that does not frame (closed), one over 65535 bytes
//!   (closed), a message without base headers (dropped; UDP ones never reach ezk) —
//!   which `mixminus serve` installs; an embedder installs it beside its own layers.
//!   A TCP message cut short by the peer closing is discarded by ezk without a word, and
//!   not counted.
//!
//! Counting only through ezk's log lines (option (b) alone) would miss UDP garbage, whose
//! ezk drop is silent for short datagrams, and could not tell UDP from TCP; a patched
//! ezk with a drop hook is what to propose upstream, not ship. [`decide`] holds the message
//! path's decisions as pure functions, which the fuzz target `sip_message` drives.
//!
//! Not done (see `docs/SIP.md`): TLS, other SRTP suites, a re-INVITE that moves the media
//! or rekeys SRTP, DTMF on a joined leg as events
//! (it is counted, `rtp.dtmf_digits`).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod auth;
mod call;
pub mod config;
pub mod decide;
pub mod dtmf;
mod limit;
pub mod lobby;
pub mod malformed;
pub mod pin;
pub mod route;
mod server;
mod udp;

pub use config::SipConfig;
pub use malformed::ezk_warnings;
pub use server::{SipError, SipServer};

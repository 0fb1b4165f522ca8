//! RTP packets: parse untrusted datagrams once into a typed view, write our own headers.
//!
//! Parsing checks every length a peer controls before anything is read, names what was
//! wrong in a [`PacketError`] (rtp-rs's errors have no `Display` and do not say whether
//! the CSRC list or the extension overran), then wraps `rtp_rs::RtpReader` for the field
//! accessors. On top it adds what a mixer needs: a size limit, an empty-payload check, and
//! RFC 8285 header extensions with the RFC 6464 audio level. Nothing on the parse path
//! allocates: the packet borrows its datagram.

use bytes::BufMut;
use rtp_rs::{RtpReader, RtpReaderError};

/// Datagrams larger than this are refused by [`RtpPacket::parse`]: no audio frame needs
/// more, and a bigger one did not cross an Ethernet path unfragmented.
pub const MAX_RTP_DATAGRAM: usize = 1500;

const FIXED_HEADER: usize = 12;

/// Why a datagram is not an acceptable RTP packet, or a header cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PacketError {
    /// Shorter than the 12-byte fixed header.
    #[error("datagram of {0} bytes is shorter than an RTP header")]
    TooShort(usize),
    /// Not RTP version 2.
    #[error("RTP version {0} is not supported")]
    Version(u8),
    /// The CSRC list (of this many entries) runs past the end of the datagram.
    #[error("{0} CSRCs run past the end of the datagram")]
    CsrcTruncated(u8),
    /// The header extension runs past the end of the datagram (or past the padding).
    #[error("RTP header extension runs past the end of the datagram")]
    ExtensionTruncated,
    /// The padding count is zero or larger than the payload.
    #[error("invalid RTP padding length {0}")]
    Padding(u8),
    /// Larger than the limit ([`MAX_RTP_DATAGRAM`] unless given).
    #[error("datagram of {0} bytes is too large")]
    TooLarge(usize),
    /// No payload after the header.
    #[error("RTP packet has no payload")]
    EmptyPayload,
    /// A one-byte-form RFC 8285 extension id must be 1..=14.
    #[error("header extension id {0} is not 1..=14")]
    ExtensionId(u8),
}

/// A validated RTP packet borrowed from its datagram.
#[derive(Debug)]
pub struct RtpPacket<'a> {
    reader: RtpReader<'a>,
}

/// An RFC 6464 client-to-mixer audio level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioLevel {
    /// The sender's voice activity flag.
    pub voice: bool,
    /// Level in −dBov, 0 (loudest) ..= 127 (silence).
    pub level_dbov: u8,
}

impl<'a> RtpPacket<'a> {
    /// Parses and validates one datagram of at most [`MAX_RTP_DATAGRAM`] bytes.
    pub fn parse(datagram: &'a [u8]) -> Result<Self, PacketError> {
        Self::parse_with_limit(datagram, MAX_RTP_DATAGRAM)
    }

    /// Parses and validates one datagram of at most `max_len` bytes (for jumbo-frame
    /// networks, or a tighter bound).
    pub fn parse_with_limit(datagram: &'a [u8], max_len: usize) -> Result<Self, PacketError> {
        check_lengths(datagram, max_len)?;
        // Our checks are a superset of rtp-rs's, so this does not fail; map it anyway
        // rather than trust that across rtp-rs versions.
        let reader = RtpReader::new(datagram).map_err(|e| match e {
            RtpReaderError::BufferTooShort(n) => PacketError::TooShort(n),
            RtpReaderError::UnsupportedVersion(v) => PacketError::Version(v),
            RtpReaderError::HeadersTruncated { .. } => PacketError::ExtensionTruncated,
            RtpReaderError::PaddingLengthInvalid(n) => PacketError::Padding(n),
        })?;
        Ok(Self { reader })
    }

    /// Payload type (7 bits).
    pub fn payload_type(&self) -> u8 {
        self.reader.payload_type()
    }

    /// Marker bit.
    pub fn marker(&self) -> bool {
        self.reader.mark()
    }

    /// 16-bit sequence number (extend it with [`SequenceExtender`](crate::SequenceExtender)).
    pub fn sequence(&self) -> u16 {
        u16::from(self.reader.sequence_number())
    }

    /// Media timestamp.
    pub fn timestamp(&self) -> u32 {
        self.reader.timestamp()
    }

    /// Synchronisation source.
    pub fn ssrc(&self) -> u32 {
        self.reader.ssrc()
    }

    /// Contributing sources.
    pub fn csrcs(&self) -> impl Iterator<Item = u32> + '_ {
        self.reader.csrc()
    }

    /// The payload, without padding; never empty.
    pub fn payload(&self) -> &'a [u8] {
        self.reader.payload()
    }

    /// The RFC 8285 header extension elements (one-byte `0xBEDE` or two-byte `0x100x`
    /// form); empty when there is no extension or its profile is another one.
    pub fn extensions(&self) -> HeaderExtensions<'a> {
        self.reader
            .extension()
            .and_then(|(profile, data)| HeaderExtensions::new(profile, data))
            .unwrap_or(HeaderExtensions { data: &[], two_byte: false })
    }

    /// The first RFC 8285 header extension element with this id, if present.
    pub fn extension(&self, id: u8) -> Option<&'a [u8]> {
        self.extensions().find(|&(eid, _)| eid == id).map(|(_, value)| value)
    }

    /// The RFC 6464 audio level carried in extension `id` (negotiated in SDP as
    /// `urn:ietf:params:rtp-hdrext:ssrc-audio-level`).
    pub fn audio_level(&self, id: u8) -> Option<AudioLevel> {
        let &byte = self.extension(id)?.first()?;
        Some(AudioLevel { voice: byte & 0x80 != 0, level_dbov: byte & 0x7f })
    }
}

/// The elements of an RFC 8285 header extension, as `(id, value)`, without allocating.
///
/// Iteration stops at the first malformed element (an element overrunning the block, or
/// the reserved one-byte id 15), as RFC 8285 §4.2 asks.
#[derive(Debug, Clone)]
pub struct HeaderExtensions<'a> {
    data: &'a [u8],
    two_byte: bool,
}

impl<'a> Iterator for HeaderExtensions<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (&first, rest) = self.data.split_first()?;
            if first == 0 {
                // Padding between elements.
                self.data = rest;
                continue;
            }
            let (id, len, rest) = if self.two_byte {
                let (&len, rest) = rest.split_first()?;
                (first, usize::from(len), rest)
            } else {
                let id = first >> 4;
                if id == 15 {
                    self.data = &[];
                    return None;
                }
                (id, usize::from(first & 0x0f) + 1, rest)
            };
            if len > rest.len() {
                self.data = &[];
                return None;
            }
            let (value, rest) = rest.split_at(len);
            self.data = rest;
            return Some((id, value));
        }
    }
}

/// Whether a datagram arriving on an RTP port is RTCP (RFC 5761 §4: the second byte is an
/// RTCP packet type 192..=223, where RTP would have marker set and payload type 64..=95,
/// which RTP sessions must not use).
pub fn is_rtcp(datagram: &[u8]) -> bool {
    datagram.len() >= 8 && datagram[0] >> 6 == 2 && (64..=95).contains(&(datagram[1] & 0x7f))
}

/// The fields of an RTP header we send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    /// Payload type (7 bits; the high bit is ignored).
    pub payload_type: u8,
    /// Marker bit (start of a talkspurt).
    pub marker: bool,
    /// Sequence number.
    pub sequence: u16,
    /// Media timestamp.
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
}

/// Appends a 12-byte RTP header (no CSRCs, no extension, no padding) to `out`, a
/// `Vec<u8>` or a `bytes::BytesMut`.
pub fn write_rtp_header<B: BufMut + ?Sized>(out: &mut B, header: &RtpHeader) {
    write_fixed(out, header, false);
}

/// Whether `id` can name an element of an RFC 8285 one-byte header extension (1..=14; 0 is
/// padding and 15 reserved): the ids SDP `a=extmap` may negotiate for the audio level.
pub fn is_one_byte_extension_id(id: u8) -> bool {
    (1..=14).contains(&id)
}

/// Appends a 12-byte RTP header followed by a one-byte-form RFC 8285 extension carrying
/// the RFC 6464 audio level in element `ext_id` (1..=14), as WebRTC clients send it: 20
/// bytes in all.
pub fn write_rtp_header_with_audio_level<B: BufMut + ?Sized>(
    out: &mut B,
    header: &RtpHeader,
    ext_id: u8,
    level: AudioLevel,
) -> Result<(), PacketError> {
    if !is_one_byte_extension_id(ext_id) {
        return Err(PacketError::ExtensionId(ext_id));
    }
    write_fixed(out, header, true);
    // Profile 0xBEDE, one 32-bit word: the element (id, length − 1 = 0), its byte, padding.
    out.put_slice(&[0xBE, 0xDE, 0x00, 0x01, ext_id << 4]);
    out.put_u8(if level.voice { 0x80 } else { 0 } | level.level_dbov.min(127));
    out.put_slice(&[0, 0]);
    Ok(())
}

fn write_fixed<B: BufMut + ?Sized>(out: &mut B, header: &RtpHeader, extension: bool) {
    out.put_u8(if extension { 0x90 } else { 0x80 });
    out.put_u8((header.payload_type & 0x7f) | if header.marker { 0x80 } else { 0 });
    out.put_u16(header.sequence);
    out.put_u32(header.timestamp);
    out.put_u32(header.ssrc);
}

/// Every length a peer controls, checked before any field is read.
fn check_lengths(datagram: &[u8], max_len: usize) -> Result<(), PacketError> {
    let len = datagram.len();
    if len > max_len {
        return Err(PacketError::TooLarge(len));
    }
    if len < FIXED_HEADER {
        return Err(PacketError::TooShort(len));
    }
    let first = datagram[0];
    if first >> 6 != 2 {
        return Err(PacketError::Version(first >> 6));
    }
    let csrc_count = first & 0x0f;
    let mut header_len = FIXED_HEADER + 4 * usize::from(csrc_count);
    if header_len > len {
        return Err(PacketError::CsrcTruncated(csrc_count));
    }
    if first & 0x10 != 0 {
        let words =
            datagram.get(header_len + 2..header_len + 4).ok_or(PacketError::ExtensionTruncated)?;
        header_len += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
        if header_len > len {
            return Err(PacketError::ExtensionTruncated);
        }
    }
    let mut payload_len = len - header_len;
    if first & 0x20 != 0 {
        // `len >= 12`, so the last byte exists.
        let pad = datagram[len - 1];
        if pad == 0 || usize::from(pad) > payload_len {
            return Err(PacketError::Padding(pad));
        }
        payload_len -= usize::from(pad);
    }
    if payload_len == 0 {
        return Err(PacketError::EmptyPayload);
    }
    Ok(())
}

impl<'a> HeaderExtensions<'a> {
    fn new(profile: u16, data: &'a [u8]) -> Option<Self> {
        match profile {
            0xBEDE => Some(Self { data, two_byte: false }),
            p if p & 0xfff0 == 0x1000 => Some(Self { data, two_byte: true }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header() -> RtpHeader {
        RtpHeader {
            payload_type: 111,
            marker: true,
            sequence: 65_535,
            timestamp: 960,
            ssrc: 0xdead_beef,
        }
    }

    fn packet(payload: &[u8]) -> Vec<u8> {
        let mut buf = Vec::new();
        write_rtp_header(&mut buf, &header());
        buf.extend_from_slice(payload);
        buf
    }

    #[test]
    fn round_trip() {
        let buf = packet(&[1, 2, 3]);
        assert_eq!(buf.len(), 15);
        let p = RtpPacket::parse(&buf).unwrap();
        assert_eq!(
            (p.payload_type(), p.marker(), p.sequence(), p.timestamp(), p.ssrc()),
            (111, true, 65_535, 960, 0xdead_beef)
        );
        assert_eq!(p.payload(), &[1, 2, 3]);
        assert_eq!(p.csrcs().count(), 0);
        assert_eq!(p.audio_level(1), None);
        assert_eq!(p.extensions().count(), 0);
        assert!(!is_rtcp(&buf));
    }

    #[test]
    fn writes_into_bytes_mut_too() {
        let mut out = bytes::BytesMut::with_capacity(32);
        write_rtp_header_with_audio_level(
            &mut out,
            &header(),
            14,
            AudioLevel { voice: false, level_dbov: 127 },
        )
        .unwrap();
        assert_eq!(out.len(), 20);
        out.extend_from_slice(&[7]);
        let p = RtpPacket::parse(&out).unwrap();
        assert_eq!(p.audio_level(14), Some(AudioLevel { voice: false, level_dbov: 127 }));
        assert_eq!(p.payload(), &[7]);
        let mut v = Vec::new();
        let level = AudioLevel { voice: true, level_dbov: 0 };
        for bad in [0, 15, 200] {
            assert_eq!(
                write_rtp_header_with_audio_level(&mut v, &header(), bad, level),
                Err(PacketError::ExtensionId(bad))
            );
        }
        assert!(v.is_empty(), "nothing written on error");
    }

    #[test]
    fn csrcs_are_read() {
        let mut buf = packet(&[]);
        buf[0] |= 2;
        buf.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2, 0xaa]);
        let p = RtpPacket::parse(&buf).unwrap();
        assert_eq!(p.csrcs().collect::<Vec<_>>(), [1, 2]);
        assert_eq!(p.payload(), &[0xaa]);
    }

    #[test]
    fn audio_level_one_and_two_byte_forms() {
        let mut buf = Vec::new();
        write_rtp_header_with_audio_level(
            &mut buf,
            &header(),
            1,
            AudioLevel { voice: true, level_dbov: 30 },
        )
        .unwrap();
        buf.push(9);
        let p = RtpPacket::parse(&buf).unwrap();
        assert_eq!(p.audio_level(1), Some(AudioLevel { voice: true, level_dbov: 30 }));
        assert_eq!(p.audio_level(2), None);
        assert_eq!(p.payload(), &[9]);

        let mut two = packet(&[]);
        two[0] |= 0x10;
        // Profile 0x1000 (two-byte form), 2 words: pad, id 3 len 1, id 20 len 2, pad.
        two.extend_from_slice(&[0x10, 0x00, 0x00, 0x02, 0x00, 0x03, 0x01, 0x7f]);
        two.extend_from_slice(&[20, 2, 0xab, 0xcd]);
        two.push(5);
        let p = RtpPacket::parse(&two).unwrap();
        assert_eq!(p.audio_level(3), Some(AudioLevel { voice: false, level_dbov: 127 }));
        assert_eq!(p.extension(20), Some(&[0xab, 0xcd][..]));
        assert_eq!(p.extensions().count(), 2);
    }

    #[test]
    fn one_byte_elements_stop_at_the_reserved_id_and_at_overruns() {
        let mut buf = packet(&[]);
        buf[0] |= 0x10;
        // id 1 len 2, id 2 len 1, then id 15: stop.
        buf.extend_from_slice(&[0xBE, 0xDE, 0x00, 0x02, 0x11, 0xaa, 0xbb, 0x20, 0xcc, 0xf0]);
        buf.extend_from_slice(&[0x30, 0xdd, 0x42]);
        let p = RtpPacket::parse(&buf).unwrap();
        let elements: Vec<_> = p.extensions().collect();
        assert_eq!(elements, [(1, &[0xaa, 0xbb][..]), (2, &[0xcc][..])]);
        assert_eq!(p.extension(3), None, "after the reserved id nothing is read");
        assert_eq!(p.payload(), &[0x42]);

        let mut over = packet(&[]);
        over[0] |= 0x10;
        // id 1 claims 16 bytes in a 4-byte block.
        over.extend_from_slice(&[0xBE, 0xDE, 0x00, 0x01, 0x1f, 1, 2, 3, 0x42]);
        assert_eq!(RtpPacket::parse(&over).unwrap().extensions().count(), 0);

        let mut other = packet(&[]);
        other[0] |= 0x10;
        other.extend_from_slice(&[0x12, 0x34, 0x00, 0x01, 0x10, 1, 0, 0, 0x42]);
        assert_eq!(RtpPacket::parse(&other).unwrap().audio_level(1), None, "unknown profile");
    }

    #[test]
    fn malformed_datagrams_are_refused() {
        let ok = packet(&[1]);
        let with = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut v = ok.clone();
            f(&mut v);
            v
        };
        let cases: Vec<(Vec<u8>, PacketError)> = vec![
            (vec![], PacketError::TooShort(0)),
            (ok[..11].to_vec(), PacketError::TooShort(11)),
            (with(&|v| v[0] = 0x40), PacketError::Version(1)),
            (with(&|v| v[0] = 0xc0), PacketError::Version(3)),
            (with(&|v| v[0] |= 0x0f), PacketError::CsrcTruncated(15)),
            (with(&|v| v[0] |= 0x10), PacketError::ExtensionTruncated),
            (
                with(&|v| {
                    v[0] |= 0x10;
                    v.truncate(12);
                    v.extend_from_slice(&[0xBE, 0xDE, 0x00, 0x02, 0, 0, 0, 0, 1]);
                }),
                PacketError::ExtensionTruncated,
            ),
            (
                with(&|v| {
                    v[0] |= 0x20;
                    *v.last_mut().unwrap() = 9;
                }),
                PacketError::Padding(9),
            ),
            (
                with(&|v| {
                    v[0] |= 0x20;
                    *v.last_mut().unwrap() = 0;
                }),
                PacketError::Padding(0),
            ),
            (with(&|v| v.truncate(12)), PacketError::EmptyPayload),
            (vec![0x80; 1501], PacketError::TooLarge(1501)),
        ];
        for (datagram, expected) in cases {
            assert_eq!(RtpPacket::parse(&datagram).unwrap_err(), expected, "{datagram:x?}");
        }
    }

    #[test]
    fn padding_is_stripped_and_padding_only_is_empty() {
        let mut padded = packet(&[1, 2]);
        padded[0] |= 0x20;
        padded.extend_from_slice(&[0, 0, 3]);
        assert_eq!(RtpPacket::parse(&padded).unwrap().payload(), &[1, 2]);
        let mut only = packet(&[]);
        only[0] |= 0x20;
        only.extend_from_slice(&[0, 0, 3]);
        assert_eq!(RtpPacket::parse(&only).unwrap_err(), PacketError::EmptyPayload);
    }

    #[test]
    fn the_size_limit_is_configurable() {
        let big = packet(&[0; 1600]);
        assert_eq!(RtpPacket::parse(&big).unwrap_err(), PacketError::TooLarge(1612));
        assert_eq!(RtpPacket::parse_with_limit(&big, 9000).unwrap().payload().len(), 1600);
        assert_eq!(
            RtpPacket::parse_with_limit(&packet(&[0; 100]), 100).unwrap_err(),
            PacketError::TooLarge(112)
        );
    }

    #[test]
    fn rtcp_demux() {
        assert!(is_rtcp(&[0x80, 200, 0, 6, 0, 0, 0, 1]), "SR");
        assert!(is_rtcp(&[0x81, 201, 0, 7, 0, 0, 0, 1]), "RR");
        assert!(is_rtcp(&[0x81, 203, 0, 1, 0, 0, 0, 1]), "BYE");
        assert!(is_rtcp(&[0x81, 207, 0, 1, 0, 0, 0, 1]), "XR");
        assert!(!is_rtcp(&[0x80, 111, 0, 1, 0, 0, 0, 1]));
        assert!(!is_rtcp(&[0x80, 0x80, 0, 1, 0, 0, 0, 1]), "PCMU with marker");
        assert!(!is_rtcp(&[0x80, 200, 0]), "too short");
        assert!(!is_rtcp(&[0x40, 200, 0, 6, 0, 0, 0, 1]), "version 1");
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..1600)) {
            if let Ok(p) = RtpPacket::parse(&bytes) {
                prop_assert!(!p.payload().is_empty());
                let _ = (p.audio_level(1), p.csrcs().count(), p.extensions().count());
            }
        }

        #[test]
        fn written_headers_parse_back(
            pt in 0u8..128, marker: bool, sequence: u16, timestamp: u32, ssrc: u32,
            level in prop::option::of((1u8..=14, any::<bool>(), 0u8..128)),
            payload in prop::collection::vec(any::<u8>(), 1..200),
        ) {
            let h = RtpHeader { payload_type: pt, marker, sequence, timestamp, ssrc };
            let mut buf = Vec::new();
            match level {
                Some((id, voice, level_dbov)) => write_rtp_header_with_audio_level(
                    &mut buf, &h, id, AudioLevel { voice, level_dbov },
                ).unwrap(),
                None => write_rtp_header(&mut buf, &h),
            }
            buf.extend_from_slice(&payload);
            let p = RtpPacket::parse(&buf).unwrap();
            prop_assert_eq!(
                (p.payload_type(), p.marker(), p.sequence(), p.timestamp(), p.ssrc()),
                (pt, marker, sequence, timestamp, ssrc)
            );
            prop_assert_eq!(p.payload(), &payload[..]);
            if let Some((id, voice, level_dbov)) = level {
                prop_assert_eq!(p.audio_level(id), Some(AudioLevel { voice, level_dbov }));
            }
        }
    }
}

//! RTP packets: parse untrusted datagrams once into a typed view, write our own headers.
//!
//! Parsing wraps `rtp_rs::RtpReader` (which checks the fixed header, CSRCs, extension and
//! padding bounds) and adds what a mixer needs on top: our own error type (rtp-rs's has no
//! `Display`), a size limit, an empty-payload check, and RFC 8285 header extensions with
//! the RFC 6464 audio level.

use rtp_rs::{RtpReader, RtpReaderError};

/// Datagrams larger than this are refused: no audio frame needs more.
pub const MAX_RTP_DATAGRAM: usize = 1500;

/// Why a datagram is not an acceptable RTP packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PacketError {
    /// Shorter than the 12-byte fixed header.
    #[error("datagram of {0} bytes is shorter than an RTP header")]
    TooShort(usize),
    /// Not RTP version 2.
    #[error("RTP version {0} is not supported")]
    Version(u8),
    /// The CSRC list or header extension runs past the end.
    #[error("RTP header runs past the end of the datagram")]
    Truncated,
    /// The padding count is zero or larger than the payload.
    #[error("invalid RTP padding")]
    Padding,
    /// Larger than [`MAX_RTP_DATAGRAM`].
    #[error("datagram of {0} bytes is too large")]
    TooLarge(usize),
    /// No payload after the header.
    #[error("RTP packet has no payload")]
    EmptyPayload,
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
    /// Parses and validates one datagram.
    pub fn parse(datagram: &'a [u8]) -> Result<Self, PacketError> {
        if datagram.len() > MAX_RTP_DATAGRAM {
            return Err(PacketError::TooLarge(datagram.len()));
        }
        let reader = RtpReader::new(datagram).map_err(|e| match e {
            RtpReaderError::BufferTooShort(n) => PacketError::TooShort(n),
            RtpReaderError::UnsupportedVersion(v) => PacketError::Version(v),
            RtpReaderError::HeadersTruncated { .. } => PacketError::Truncated,
            RtpReaderError::PaddingLengthInvalid(_) => PacketError::Padding,
        })?;
        if reader.payload().is_empty() {
            return Err(PacketError::EmptyPayload);
        }
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

    /// The payload, without padding.
    pub fn payload(&self) -> &'a [u8] {
        self.reader.payload()
    }

    /// The RFC 8285 header extension element with this id, if present (one-byte `0xBEDE`
    /// or two-byte `0x100x` form).
    pub fn extension(&self, id: u8) -> Option<&'a [u8]> {
        let (profile, data) = self.reader.extension()?;
        ExtensionElements::new(profile, data)?.find(|&(eid, _)| eid == id).map(|(_, v)| v)
    }

    /// The RFC 6464 audio level carried in extension `id`.
    pub fn audio_level(&self, id: u8) -> Option<AudioLevel> {
        let &byte = self.extension(id)?.first()?;
        Some(AudioLevel { voice: byte & 0x80 != 0, level_dbov: byte & 0x7f })
    }
}

/// Iterates RFC 8285 elements without allocating; stops at the first malformed element.
struct ExtensionElements<'a> {
    data: &'a [u8],
    two_byte: bool,
}

impl<'a> ExtensionElements<'a> {
    fn new(profile: u16, data: &'a [u8]) -> Option<Self> {
        match profile {
            0xBEDE => Some(Self { data, two_byte: false }),
            p if p & 0xfff0 == 0x1000 => Some(Self { data, two_byte: true }),
            _ => None,
        }
    }
}

impl<'a> Iterator for ExtensionElements<'a> {
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
                (first, len as usize, rest)
            } else {
                let id = first >> 4;
                if id == 15 {
                    // Reserved: stop processing (RFC 8285 §4.2).
                    return None;
                }
                (id, (first & 0x0f) as usize + 1, rest)
            };
            if len > rest.len() {
                return None;
            }
            let (value, rest) = rest.split_at(len);
            self.data = rest;
            return Some((id, value));
        }
    }
}

/// Whether a datagram on an RTP port is RTCP (RFC 5761: second byte 192..=223 covers SR,
/// RR, SDES, BYE, APP, RTPFB, PSFB, XR — payload types 64..=95 with the marker set).
pub fn is_rtcp(datagram: &[u8]) -> bool {
    datagram.len() >= 8 && datagram[0] >> 6 == 2 && (192..=223).contains(&datagram[1])
}

/// The fields of an RTP header we send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    /// Payload type.
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

/// Appends a 12-byte RTP header.
pub fn write_rtp_header(out: &mut Vec<u8>, header: &RtpHeader) {
    out.push(0x80);
    out.push((header.payload_type & 0x7f) | if header.marker { 0x80 } else { 0 });
    out.extend_from_slice(&header.sequence.to_be_bytes());
    out.extend_from_slice(&header.timestamp.to_be_bytes());
    out.extend_from_slice(&header.ssrc.to_be_bytes());
}

/// Appends a 12-byte RTP header followed by a one-byte-form RFC 8285 extension carrying the
/// RFC 6464 audio level (as WebRTC clients send it).
pub fn write_rtp_header_with_audio_level(
    out: &mut Vec<u8>,
    header: &RtpHeader,
    ext_id: u8,
    level: AudioLevel,
) {
    let start = out.len();
    write_rtp_header(out, header);
    out[start] |= 0x10;
    out.extend_from_slice(&[0xBE, 0xDE, 0x00, 0x01]);
    out.push((ext_id & 0x0f) << 4);
    out.push(if level.voice { 0x80 } else { 0 } | (level.level_dbov & 0x7f));
    out.extend_from_slice(&[0, 0]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> RtpHeader {
        RtpHeader {
            payload_type: 111,
            marker: true,
            sequence: 65_535,
            timestamp: 960,
            ssrc: 0xdead_beef,
        }
    }

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        write_rtp_header(&mut buf, &header());
        buf.extend_from_slice(&[1, 2, 3]);
        let p = RtpPacket::parse(&buf).unwrap();
        assert_eq!(
            (p.payload_type(), p.marker(), p.sequence(), p.timestamp(), p.ssrc()),
            (111, true, 65_535, 960, 0xdead_beef)
        );
        assert_eq!(p.payload(), &[1, 2, 3]);
        assert_eq!(p.audio_level(1), None);
        assert!(!is_rtcp(&buf));
    }

    #[test]
    fn audio_level_one_and_two_byte_forms() {
        let mut buf = Vec::new();
        write_rtp_header_with_audio_level(
            &mut buf,
            &header(),
            1,
            AudioLevel { voice: true, level_dbov: 30 },
        );
        buf.push(9);
        let p = RtpPacket::parse(&buf).unwrap();
        assert_eq!(p.audio_level(1), Some(AudioLevel { voice: true, level_dbov: 30 }));
        assert_eq!(p.audio_level(2), None);
        assert_eq!(p.payload(), &[9]);

        let mut two = Vec::new();
        write_rtp_header(&mut two, &header());
        two[0] |= 0x10;
        two.extend_from_slice(&[0x10, 0x00, 0x00, 0x01, 0x00, 0x03, 0x01, 0x7f]); // pad, id 3, len 1
        two.push(5);
        assert_eq!(
            RtpPacket::parse(&two).unwrap().audio_level(3),
            Some(AudioLevel { voice: false, level_dbov: 127 })
        );
    }

    #[test]
    fn malformed_datagrams_are_refused() {
        let mut ok = Vec::new();
        write_rtp_header(&mut ok, &header());
        ok.push(1);
        let cases: Vec<(Vec<u8>, PacketError)> = vec![
            (vec![], PacketError::TooShort(0)),
            (ok[..11].to_vec(), PacketError::TooShort(11)),
            (
                {
                    let mut v = ok.clone();
                    v[0] = 0x40;
                    v
                },
                PacketError::Version(1),
            ),
            (
                {
                    let mut v = ok.clone();
                    v[0] |= 0x0f;
                    v
                },
                PacketError::Truncated,
            ),
            (
                {
                    let mut v = ok.clone();
                    v[0] |= 0x10;
                    v
                },
                PacketError::Truncated,
            ),
            (
                {
                    let mut v = ok.clone();
                    v[0] |= 0x20;
                    *v.last_mut().unwrap() = 9;
                    v
                },
                PacketError::Padding,
            ),
            (
                {
                    let mut v = ok.clone();
                    v[0] |= 0x20;
                    *v.last_mut().unwrap() = 0;
                    v
                },
                PacketError::Padding,
            ),
            (ok[..12].to_vec(), PacketError::EmptyPayload),
            (vec![0x80; 1501], PacketError::TooLarge(1501)),
        ];
        for (datagram, expected) in cases {
            assert_eq!(RtpPacket::parse(&datagram).unwrap_err(), expected, "{datagram:x?}");
        }
    }

    #[test]
    fn rtcp_demux() {
        assert!(is_rtcp(&[0x80, 200, 0, 6, 0, 0, 0, 1]));
        assert!(is_rtcp(&[0x81, 203, 0, 1, 0, 0, 0, 1]));
        assert!(!is_rtcp(&[0x80, 111, 0, 1, 0, 0, 0, 1]));
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..1600)) {
            if let Ok(p) = RtpPacket::parse(&bytes) {
                let _ = (p.payload(), p.audio_level(1), p.csrcs().count());
            }
        }
    }
}

//! `Frame`: the unit every stage passes on (capture -> transport -> relay -> display).
//!
//! In: encoded access units from a capture pipeline. Out: the same bytes, plus the
//! capture time that the classroom uses to measure glass-to-glass latency.
//! This module knows neither GStreamer nor QUIC, so both `media` and `transport` use it.
//!
//! On the wire a frame is the moq-lite frame payload prefixed with a small header, so a
//! stock moq-relay carries it untouched (the relay never looks inside payloads):
//!
//! ```text
//! u8  version (1)
//! u8  flags   (bit 0: keyframe)
//! u64 capture time, microseconds since the Unix epoch, big-endian
//! u64 presentation time, microseconds, big-endian
//! ..  codec payload (H.264 access unit in Annex B, or one Opus packet)
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Header length in bytes.
pub const HEADER_LEN: usize = 18;
const VERSION: u8 = 1;
const FLAG_KEYFRAME: u8 = 1;

/// Which track a frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackKind {
    Video,
    Audio,
}

impl TrackKind {
    /// The moq-lite track name.
    pub fn track_name(self) -> &'static str {
        match self {
            TrackKind::Video => "video",
            TrackKind::Audio => "audio",
        }
    }
}

/// One encoded media frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub track: TrackKind,
    /// Starts a new group (GOP) when true: the receiver can decode from here.
    pub keyframe: bool,
    /// When the source captured this frame (Unix microseconds, the sender's clock).
    pub capture_us: u64,
    /// Presentation time in microseconds on the sender's media timeline.
    pub pts_us: u64,
    pub payload: Bytes,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame is {0} bytes, shorter than the {HEADER_LEN}-byte header")]
    Truncated(usize),
    #[error("frame header version {0} is not supported (expected {VERSION})")]
    Version(u8),
}

impl Frame {
    /// Encode header + payload for the wire.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(HEADER_LEN + self.payload.len());
        out.put_u8(VERSION);
        out.put_u8(if self.keyframe { FLAG_KEYFRAME } else { 0 });
        out.put_u64(self.capture_us);
        out.put_u64(self.pts_us);
        out.extend_from_slice(&self.payload);
        out.freeze()
    }

    /// Decode a frame received on `track`.
    pub fn decode(track: TrackKind, mut data: Bytes) -> Result<Self, FrameError> {
        if data.len() < HEADER_LEN {
            return Err(FrameError::Truncated(data.len()));
        }
        let version = data.get_u8();
        if version != VERSION {
            return Err(FrameError::Version(version));
        }
        let flags = data.get_u8();
        let capture_us = data.get_u64();
        let pts_us = data.get_u64();
        Ok(Frame {
            track,
            keyframe: flags & FLAG_KEYFRAME != 0,
            capture_us,
            pts_us,
            payload: data,
        })
    }
}

/// Microseconds since the Unix epoch, now.
pub fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let frame = Frame {
            track: TrackKind::Video,
            keyframe: true,
            capture_us: 1_700_000_000_000_000,
            pts_us: 33_333,
            payload: Bytes::from_static(b"\0\0\0\x01\x65abc"),
        };
        let decoded = Frame::decode(TrackKind::Video, frame.encode()).unwrap();
        assert_eq!(decoded, frame);
    }

    #[test]
    fn truncated_and_unknown_version_are_refused() {
        assert_eq!(
            Frame::decode(TrackKind::Audio, Bytes::from_static(b"\x01\x00\x00")),
            Err(FrameError::Truncated(3))
        );
        let mut bad = vec![9u8; HEADER_LEN];
        bad[0] = 9;
        assert_eq!(
            Frame::decode(TrackKind::Audio, bad.into()),
            Err(FrameError::Version(9))
        );
    }
}

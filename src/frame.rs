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
//! u8  flags   (bit 0: keyframe; bit 1: video in H.265 rather than H.264)
//! u64 capture time, microseconds since the Unix epoch, big-endian
//! u64 presentation time, microseconds, big-endian
//! ..  codec payload (H.264 or H.265 access unit in Annex B, or one Opus packet)
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Header length in bytes.
pub const HEADER_LEN: usize = 18;
const VERSION: u8 = 1;
const FLAG_KEYFRAME: u8 = 1;
const FLAG_H265: u8 = 2;

/// The lesson's video codec. H.264 plays everywhere; H.265 takes about a third fewer
/// bits for the same picture and is what a Raspberry Pi 5 decodes in hardware.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum VideoCodec {
    #[default]
    H264,
    H265,
}

impl VideoCodec {
    /// The catalog's and the reports' name (`h264`, `h265`).
    pub fn as_str(self) -> &'static str {
        match self {
            VideoCodec::H264 => "h264",
            VideoCodec::H265 => "h265",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "h264" => Some(VideoCodec::H264),
            "h265" => Some(VideoCodec::H265),
            _ => None,
        }
    }

    /// The GStreamer caps of its Annex B access units.
    pub fn caps(self) -> &'static str {
        match self {
            VideoCodec::H264 => "video/x-h264,stream-format=byte-stream,alignment=au",
            VideoCodec::H265 => "video/x-h265,stream-format=byte-stream,alignment=au",
        }
    }

    /// Its GStreamer parser.
    pub fn parser(self) -> &'static str {
        match self {
            VideoCodec::H264 => "h264parse",
            VideoCodec::H265 => "h265parse",
        }
    }
}

impl std::fmt::Display for VideoCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VideoCodec::H264 => "H.264",
            VideoCodec::H265 => "H.265",
        })
    }
}

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
    /// The video codec of the payload (audio frames: always the default, unused).
    pub codec: VideoCodec,
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
        let mut flags = 0;
        if self.keyframe {
            flags |= FLAG_KEYFRAME;
        }
        if self.track == TrackKind::Video && self.codec == VideoCodec::H265 {
            flags |= FLAG_H265;
        }
        out.put_u8(flags);
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
            codec: if track == TrackKind::Video && flags & FLAG_H265 != 0 {
                VideoCodec::H265
            } else {
                VideoCodec::H264
            },
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
            codec: VideoCodec::H264,
            payload: Bytes::from_static(b"\0\0\0\x01\x65abc"),
        };
        let decoded = Frame::decode(TrackKind::Video, frame.encode()).unwrap();
        assert_eq!(decoded, frame);
        let hevc = Frame {
            codec: VideoCodec::H265,
            ..frame.clone()
        };
        let encoded = hevc.encode();
        assert_eq!(encoded[1], FLAG_KEYFRAME | FLAG_H265);
        assert_eq!(Frame::decode(TrackKind::Video, encoded).unwrap(), hevc);
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

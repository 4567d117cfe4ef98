//! The catalog track: what the teacher sends, so the classroom can set up its decoders.

use serde::{Deserialize, Serialize};

/// Track name of the catalog.
pub const TRACK: &str = "catalog";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    pub version: u32,
    pub video: Option<VideoInfo>,
    pub audio: Option<AudioInfo>,
    /// Who is teaching (shown on the classroom's page); absent in older catalogs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoInfo {
    /// `h264` or `h265` ([`crate::frame::VideoCodec`]); a new catalog group says when
    /// it changes, and each frame's header says which it is.
    pub codec: String,
    pub width: u32,
    pub height: u32,
    pub framerate: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioInfo {
    /// `opus`.
    pub codec: String,
    pub rate: u32,
    pub channels: u32,
}

/// What classbox sends when a catalog says nothing about audio: Opus, 48 kHz, mono.
impl Default for AudioInfo {
    fn default() -> Self {
        Self {
            codec: "opus".into(),
            rate: 48_000,
            channels: 1,
        }
    }
}

impl Catalog {
    pub const VERSION: u32 = 1;

    /// The video codec (H.264 when the catalog has no video).
    pub fn video_codec(&self) -> Result<crate::frame::VideoCodec, super::TransportError> {
        match &self.video {
            None => Ok(crate::frame::VideoCodec::H264),
            Some(v) => crate::frame::VideoCodec::parse(&v.codec).ok_or_else(|| {
                super::TransportError::Catalog(format!(
                    "video codec \"{}\" (this classbox decodes h264 and h265)",
                    v.codec
                ))
            }),
        }
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, super::TransportError> {
        let catalog: Catalog = serde_json::from_slice(bytes)
            .map_err(|e| super::TransportError::Catalog(e.to_string()))?;
        if catalog.version != Self::VERSION {
            return Err(super::TransportError::Catalog(format!(
                "version {} (this classbox reads version {})",
                catalog.version,
                Self::VERSION
            )));
        }
        Ok(catalog)
    }
}

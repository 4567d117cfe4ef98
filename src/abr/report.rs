//! What a receiver tells the sender's controller.

use serde::{Deserialize, Serialize};

/// What a classroom tells the teacher, about four times a second.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReceiverReport {
    /// What arrived lately, kbit/s: every byte the box's link to the relay delivered
    /// over the last half second, or (no connection of its own: a teacher's feedback)
    /// the media frames of the last second.
    pub received_kbps: f64,
    /// One-way delay of the quickest frame of the last half second (video's or
    /// audio's, the later) above the lowest seen in the last 10 s, ms: what every
    /// frame waited, i.e. a queue. The minimum cancels any clock offset between
    /// teacher and classroom.
    pub queue_delay_ms: f64,
    /// Video groups skipped (superseded or too old) since the previous report.
    pub groups_skipped: u64,
    /// Video frames that arrived since the previous report.
    pub video_frames: u64,
    /// The video codecs the box decodes, best first; empty (a box from before H.265,
    /// the teacher's feedback about a return feed): H.264 only. See [`codec`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub codecs: Vec<crate::frame::VideoCodec>,
    /// What the box's link can carry, kbit/s, from how far apart its full packets
    /// arrive (see [`crate::transport::dispersion`]); `None`: not measured (too
    /// few packets lately, or a box from before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_kbps: Option<f64>,
    /// The link just fell, to about this, kbit/s (see [`super::collapse`]); `None`: no
    /// news of a drop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fell_kbps: Option<f64>,
}

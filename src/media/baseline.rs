//! The benchmark's baseline: GStreamer's own SRT elements carrying the same test
//! sources and H.264 encoder at a fixed bitrate over the same emulated link.
//!
//! Latency is measured as for classbox: the sender notes each access unit's capture
//! time, keyed by its last bytes (which MPEG-TS muxing leaves intact); the receiver
//! finds that key as the unit arrives, then stamps the decoder's output.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
};

use gstreamer as gst;
use gstreamer::prelude::*;

use super::{
    MediaError,
    capture::{capture_time_us, running_time},
    pipeline,
    probe::Profile,
};
use crate::{frame::TrackKind, stats::LessonStats};

pub struct BaselineSettings {
    pub width: u32,
    pub height: u32,
    pub framerate: u32,
    pub video_kbps: u32,
    pub keyframe_interval: u32,
    /// Where the sender sends (the emulator) and where the receiver listens.
    pub send_to: std::net::SocketAddr,
    pub listen_on: std::net::SocketAddr,
    pub srt_latency_ms: u32,
}

/// A running baseline (both ends). Dropping it stops both pipelines.
pub struct Baseline {
    sender: gst::Pipeline,
    receiver: gst::Pipeline,
    /// Encoded payload bytes the sender produced.
    pub sent_bytes: Arc<std::sync::atomic::AtomicU64>,
    _buses: Vec<tokio::task::JoinHandle<()>>,
}

fn key(data: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let tail = &data[data.len().saturating_sub(48)..];
    let mut h = std::collections::hash_map::DefaultHasher::new();
    tail.hash(&mut h);
    data.len().hash(&mut h);
    h.finish()
}

impl Baseline {
    pub async fn start(
        profile: &Profile,
        s: &BaselineSettings,
        stats: Arc<LessonStats>,
    ) -> Result<Self, MediaError> {
        let latency = s.srt_latency_ms.to_string();
        let sender_vars = BTreeMap::from([
            ("WIDTH", s.width.to_string()),
            ("HEIGHT", s.height.to_string()),
            ("FRAMERATE", s.framerate.to_string()),
            (
                "H264_ENCODER",
                profile.encoder().launch(s.video_kbps, s.keyframe_interval),
            ),
            ("SRT_ADDRESS", s.send_to.to_string()),
            ("SRT_LATENCY_MS", latency.clone()),
        ]);
        let receiver_vars = BTreeMap::from([
            ("H264_DECODER", profile.decoder_launch().to_string()),
            ("SRT_ADDRESS", s.listen_on.to_string()),
            ("SRT_LATENCY_MS", latency),
        ]);
        let sender = pipeline::build(None, "baseline", "srt-sender", &sender_vars)?;
        let receiver = pipeline::build(None, "baseline", "srt-receiver", &receiver_vars)?;

        // capture time by access-unit key, written by the sender, read by the receiver
        let captured: Arc<Mutex<HashMap<u64, u64>>> = Default::default();
        // capture time by PTS on the receiver, from arrival to decoder output
        let by_pts: Arc<Mutex<HashMap<u64, u64>>> = Default::default();
        let sent_bytes = Arc::new(std::sync::atomic::AtomicU64::new(0));

        let tap: gst::Element = pipeline::element(&sender, "video_tap")?;
        {
            let captured = captured.clone();
            let sent = sent_bytes.clone();
            let element = tap.clone();
            tap.static_pad("src").expect("identity has src").add_probe(
                gst::PadProbeType::BUFFER,
                move |pad, info| {
                    if let Some(buffer) = info.buffer()
                        && let Ok(map) = buffer.map_readable()
                    {
                        let pts = buffer.pts().unwrap_or(gst::ClockTime::ZERO);
                        let segment = pad.sticky_event::<gst::event::Segment>(0);
                        let running = running_time(segment.as_ref().map(|e| e.segment()), pts);
                        sent.fetch_add(map.len() as u64, std::sync::atomic::Ordering::Relaxed);
                        let mut c = captured.lock().expect("lock");
                        if c.len() > 100_000 {
                            c.clear();
                        }
                        c.insert(key(&map), capture_time_us(&element, running));
                    }
                    gst::PadProbeReturn::Ok
                },
            );
        }
        let arrive: gst::Element = pipeline::element(&receiver, "video_arrive")?;
        {
            let (captured, by_pts, stats) = (captured.clone(), by_pts.clone(), stats.clone());
            arrive
                .static_pad("src")
                .expect("identity has src")
                .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                    if let Some(buffer) = info.buffer()
                        && let Ok(map) = buffer.map_readable()
                    {
                        stats.record_received_bytes(TrackKind::Video, map.len());
                        if let Some(pts) = buffer.pts()
                            && let Some(capture) =
                                captured.lock().expect("lock").get(&key(&map)).copied()
                        {
                            by_pts.lock().expect("lock").insert(pts.nseconds(), capture);
                        }
                    }
                    gst::PadProbeReturn::Ok
                });
        }
        let decoder: gst::Element = pipeline::element(&receiver, "video_decoder")?;
        {
            let stats = stats.clone();
            decoder
                .static_pad("src")
                .expect("decoder has src")
                .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                    if let Some(buffer) = info.buffer()
                        && let Some(pts) = buffer.pts()
                        && let Some(capture) = by_pts.lock().expect("lock").remove(&pts.nseconds())
                    {
                        stats.record_decoded(TrackKind::Video, capture);
                    }
                    gst::PadProbeReturn::Ok
                });
        }
        let audio: gst::Element = pipeline::element(&receiver, "audio_decoder")?;
        audio.static_pad("src").expect("decoder has src").add_probe(
            gst::PadProbeType::BUFFER,
            move |_, _| {
                stats.record_decoded(TrackKind::Audio, crate::frame::unix_micros());
                gst::PadProbeReturn::Ok
            },
        );

        let buses = vec![
            super::watch_bus(&receiver, "baseline-receiver", None),
            super::watch_bus(&sender, "baseline-sender", None),
        ];
        super::set_state(&receiver, gst::State::Playing).await?;
        super::set_state(&sender, gst::State::Playing).await?;
        Ok(Self {
            sender,
            receiver,
            sent_bytes,
            _buses: buses,
        })
    }
}

impl Drop for Baseline {
    fn drop(&mut self) {
        let _ = self.sender.set_state(gst::State::Null);
        let _ = self.receiver.set_state(gst::State::Null);
    }
}

//! Frames in, moq-lite groups out: one group per GOP for video, one per packet for audio.
//!
//! The broadcast lives in a local moq origin; the [`Link`](super::link::Link) session
//! announces it to the relay, and keeps doing so across reconnects.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use moq_net::{Timestamp, broadcast, group, origin, track};
use tokio::sync::mpsc;

use super::{TransportError, catalog::Catalog};
use crate::{
    abr::Layer,
    frame::{Frame, TrackKind},
};

/// Audio outranks video everywhere a choice is made (relay and sender queues).
pub const AUDIO_PRIORITY: u8 = 200;
pub const VIDEO_PRIORITY: u8 = 100;
pub const CATALOG_PRIORITY: u8 = 255;
/// Padding to probe the link (see [`crate::abr::probe`]) goes after everything else.
pub const PROBE_PRIORITY: u8 = 0;
/// The padding track's name.
pub const PROBE_TRACK: &str = "probe";
/// Padding older than this is no use to anyone: the relay resets it rather than send
/// it late.
pub const PROBE_MAX_AGE: Duration = Duration::from_millis(250);

/// The second encoding's track (simulcast, see [`crate::abr::Layer`]); the main one
/// is [`TrackKind::Video`]'s.
pub const FAST_VIDEO_TRACK: &str = "video-fast";
/// Which classrooms are on the second encoding: a group of one JSON frame per change,
/// `{"fast": ["<classroom id>", ...]}`. A classroom not named, or one whose teacher has
/// no such track, plays the main track.
pub const LAYERS_TRACK: &str = "layers";

/// The video track a classroom on `layer` plays.
pub fn video_track(layer: Layer) -> &'static str {
    match layer {
        Layer::Main => TrackKind::Video.track_name(),
        Layer::Fast => FAST_VIDEO_TRACK,
    }
}

/// The classrooms on the second encoding, as sent on [`LAYERS_TRACK`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Layers {
    pub fast: Vec<String>,
}

/// A video track and the group (GOP) being written to it.
struct VideoTrack {
    track: track::Producer,
    group: Option<group::Producer>,
}

impl VideoTrack {
    fn new(
        broadcast: &broadcast::Producer,
        name: &str,
        keep: Duration,
    ) -> Result<Self, TransportError> {
        let track = broadcast.create_track(
            name,
            track::Info::default()
                .with_priority(VIDEO_PRIORITY)
                .with_max_age(keep),
        )?;
        Ok(Self { track, group: None })
    }

    /// Close the group being written (the next picture written must be a keyframe).
    fn close_group(&mut self) {
        if let Some(old) = self.group.take() {
            let _ = old.finish();
        }
    }

    /// Write a picture: a keyframe starts a new group. False: not written, since no
    /// group is open (waiting for a keyframe).
    fn write(&mut self, timestamp: Timestamp, frame: &Frame) -> Result<bool, TransportError> {
        if frame.keyframe {
            self.close_group();
            let group = self.track.append_group()?;
            tracing::trace!(
                track = self.track.name(),
                sequence = group.sequence,
                pts_ms = frame.pts_us / 1000,
                keyframe_bytes = frame.payload.len(),
                "video group starts"
            );
            self.group = Some(group);
        }
        let Some(group) = self.group.as_mut() else {
            return Ok(false);
        };
        group.write_frame(timestamp, frame.encode())?;
        Ok(true)
    }
}

/// Publishes one broadcast (the lesson, or a room feed) into a local origin.
pub struct BroadcastPublisher {
    broadcast: broadcast::Producer,
    /// Served for as long as the broadcast; a new group when the video codec changes.
    catalog_track: track::Producer,
    catalog: Catalog,
    video: VideoTrack,
    /// The second encoding (simulcast).
    fast: VideoTrack,
    /// Bytes of the second encoding sent, for its encoder's use of its target.
    fast_bytes: Arc<AtomicU64>,
    audio: track::Producer,
    probe: track::Producer,
    layers: track::Producer,
    /// Frames sent, per track (for the decoded-frame ratio).
    pub sent_video: u64,
    pub sent_audio: u64,
    /// Video frames dropped while waiting for the first keyframe.
    pub skipped_until_keyframe: u64,
    /// Cleared for an audio-only lesson (the link cannot carry the lowest rung).
    video_enabled: Arc<AtomicBool>,
}

impl BroadcastPublisher {
    pub fn new(
        origin: &origin::Producer,
        name: &str,
        catalog: &Catalog,
    ) -> Result<Self, TransportError> {
        let broadcast = origin.create_broadcast(name)?;
        // Groups are kept a few seconds for relays that re-serve them; a subscriber's
        // own budget decides what it still wants.
        let keep = Duration::from_secs(4);
        let catalog_track = broadcast.create_track(
            super::catalog::TRACK,
            track::Info::default().with_priority(CATALOG_PRIORITY),
        )?;
        let video = VideoTrack::new(&broadcast, TrackKind::Video.track_name(), keep)?;
        let fast = VideoTrack::new(&broadcast, FAST_VIDEO_TRACK, keep)?;
        let layers = broadcast.create_track(
            LAYERS_TRACK,
            track::Info::default().with_priority(CATALOG_PRIORITY),
        )?;
        let audio = broadcast.create_track(
            TrackKind::Audio.track_name(),
            track::Info::default()
                .with_priority(AUDIO_PRIORITY)
                .with_max_age(keep),
        )?;
        let probe = broadcast.create_track(
            PROBE_TRACK,
            track::Info::default()
                .with_priority(PROBE_PRIORITY)
                .with_max_age(PROBE_MAX_AGE),
        )?;
        write_catalog(&catalog_track, catalog)?;
        // Announced once the tracks exist, so a subscriber acting on it finds them.
        broadcast.announce(Default::default())?;
        Ok(Self {
            broadcast,
            catalog_track,
            catalog: catalog.clone(),
            video,
            fast,
            fast_bytes: Default::default(),
            audio,
            probe,
            layers,
            sent_video: 0,
            sent_audio: 0,
            skipped_until_keyframe: 0,
            video_enabled: Arc::new(AtomicBool::new(true)),
        })
    }

    /// A switch for video: off sends audio only; on resumes at the next keyframe.
    pub fn video_switch(&self) -> Arc<AtomicBool> {
        self.video_enabled.clone()
    }

    /// Padding for probes (see [`Prober`]); sent for as long as the broadcast.
    pub fn prober(&self) -> Prober {
        Prober::start(self.probe.clone())
    }

    /// Where to say which classrooms are on the second encoding.
    pub fn layers(&self) -> LayersWriter {
        LayersWriter {
            track: self.layers.clone(),
            last: None,
        }
    }

    /// Bytes of the second encoding sent so far.
    pub fn fast_bytes(&self) -> Arc<AtomicU64> {
        self.fast_bytes.clone()
    }

    /// Send one picture of the second encoding.
    pub fn send_fast(&mut self, frame: &Frame) -> Result<(), TransportError> {
        let timestamp = pts(frame);
        if self.fast.write(timestamp, frame)? {
            self.fast_bytes
                .fetch_add(frame.payload.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Send one frame. A keyframe starts a new video group; audio packets are groups of one.
    pub fn send(&mut self, frame: &Frame) -> Result<(), TransportError> {
        let timestamp = pts(frame);
        match frame.track {
            TrackKind::Video => {
                if !self.video_enabled.load(Ordering::Relaxed) {
                    // Close the current group so resuming starts on a keyframe.
                    self.video.close_group();
                    return Ok(());
                }
                // The encoder changed codec: say so before its first picture.
                if frame.keyframe
                    && let Some(video) = self.catalog.video.as_mut()
                    && video.codec != frame.codec.as_str()
                {
                    video.codec = frame.codec.as_str().to_string();
                    write_catalog(&self.catalog_track, &self.catalog)?;
                }
                if self.video.write(timestamp, frame)? {
                    self.sent_video += 1;
                } else {
                    self.skipped_until_keyframe += 1;
                }
            }
            TrackKind::Audio => {
                let mut group = self.audio.append_group()?;
                group.write_frame(timestamp, frame.encode())?;
                group.finish()?;
                self.sent_audio += 1;
            }
        }
        Ok(())
    }

    /// Pump frames from a capture stage until it ends, and the second encoding's
    /// pictures while it runs (not counted in `stats`, which are the lesson's main
    /// encoding's).
    pub async fn run(
        mut self,
        mut frames: mpsc::Receiver<Frame>,
        mut fast_frames: mpsc::Receiver<Frame>,
        stats: &crate::stats::LessonStats,
    ) -> Result<(), TransportError> {
        loop {
            tokio::select! {
                frame = frames.recv() => match frame {
                    Some(frame) => {
                        self.send(&frame)?;
                        stats.record_sent(&frame);
                    }
                    None => return Ok(()),
                },
                Some(frame) = fast_frames.recv() => self.send_fast(&frame)?,
            }
        }
    }
}

/// Sends padding on the probe track at the rate last set (0: none), in a group of
/// one frame every 20 ms so that each piece expires on its own.
pub struct Prober {
    rate: tokio::sync::watch::Sender<u32>,
    task: tokio::task::JoinHandle<()>,
}

impl Prober {
    const EVERY: Duration = Duration::from_millis(20);

    fn start(track: track::Producer) -> Self {
        let (rate, mut rx) = tokio::sync::watch::channel(0u32);
        let task = tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let mut tick = tokio::time::interval(Self::EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let kbps = *rx.borrow_and_update();
                if kbps == 0 {
                    if rx.changed().await.is_err() {
                        return;
                    }
                    tick.reset();
                    continue;
                }
                tick.tick().await;
                let bytes = (u64::from(kbps) * 1000 / 8 * Self::EVERY.as_millis() as u64 / 1000)
                    .max(1) as usize;
                let at = Timestamp::from_scale(started.elapsed().as_millis() as u64, 1000)
                    .unwrap_or(Timestamp::ZERO);
                let written = track.append_group().and_then(|mut group| {
                    group.write_frame(at, vec![0u8; bytes])?;
                    group.finish()
                });
                if let Err(e) = written {
                    tracing::debug!(error = %e, "probe track closed");
                    return;
                }
            }
        });
        Self { rate, task }
    }

    /// Send padding at `kbps` from now on (0: stop).
    pub fn set(&self, kbps: u32) {
        self.rate
            .send_if_modified(|rate| std::mem::replace(rate, kbps) != kbps);
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A frame's presentation time as moq-lite carries it.
fn pts(frame: &Frame) -> Timestamp {
    Timestamp::from_scale(frame.pts_us / 1000, 1000).unwrap_or(Timestamp::ZERO)
}

/// Says which classrooms are on the second encoding (see [`LAYERS_TRACK`]).
pub struct LayersWriter {
    track: track::Producer,
    last: Option<Layers>,
}

impl LayersWriter {
    /// Publish `layers` (nothing when unchanged).
    pub fn set(&mut self, layers: Layers) -> Result<(), TransportError> {
        if self.last.as_ref() == Some(&layers) {
            return Ok(());
        }
        write_json(&self.track, &layers)?;
        self.last = Some(layers);
        Ok(())
    }
}

/// The catalog as a group of its own (a subscriber reads the newest).
fn write_catalog(track: &track::Producer, catalog: &Catalog) -> Result<(), TransportError> {
    write_json(track, catalog)
}

/// `value` as JSON in a group of one frame.
fn write_json(
    track: &track::Producer,
    value: &impl serde::Serialize,
) -> Result<(), TransportError> {
    let mut group = track.append_group()?;
    group.write_frame(
        Timestamp::ZERO,
        serde_json::to_vec(value).expect("our messages serialize"),
    )?;
    group.finish()?;
    Ok(())
}

impl Drop for BroadcastPublisher {
    fn drop(&mut self) {
        self.video.close_group();
        self.fast.close_group();
        for track in [
            &self.catalog_track,
            &self.video.track,
            &self.fast.track,
            &self.audio,
            &self.probe,
            &self.layers,
        ] {
            let _ = track.finish();
        }
        self.broadcast.close();
    }
}

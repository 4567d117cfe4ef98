//! Live lesson figures, written by the transport and media stages, read by the web page,
//! the logs and the tests. Knows neither GStreamer nor QUIC.

use std::{
    collections::VecDeque,
    sync::Arc,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use serde::Serialize;

use crate::frame::{Frame, TrackKind, unix_micros};
use crate::transport::dispersion::CapacityMeter;

/// The state of the link to the relay, as the page shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum LinkState {
    Idle,
    Connecting,
    Connected {
        rtt_ms: f64,
        cwnd_bytes: u64,
        lost_packets: u64,
        /// What the link from the relay can carry (see `transport::dispersion`).
        capacity_kbps: Option<f64>,
    },
    /// Lost or unreachable; a reconnect is scheduled.
    Lost(String),
    /// The relay refused us (token); retrying will not help until the token changes.
    Refused(String),
    Stopped,
}

#[derive(Default)]
struct TrackCounters {
    sent_frames: AtomicU64,
    sent_bytes: AtomicU64,
    received_frames: AtomicU64,
    received_bytes: AtomicU64,
    decoded: AtomicU64,
    groups_skipped: AtomicU64,
    dropped: AtomicU64,
}

const RECENT_WINDOW_US: u64 = 2_000_000;
const HISTORY_LEN: usize = 300;

/// One decoded frame, for the benchmark's timeline.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Decoded {
    pub at_us: u64,
    pub kind: TrackKind,
    pub latency_ms: f64,
}

/// One frame's arrival: when, how big, and its one-way delay (sender clock to ours).
#[derive(Debug, Clone, Copy)]
struct Arrival {
    at_us: u64,
    kind: TrackKind,
    bytes: usize,
    delay_ms: f64,
}

/// What the sender side decided last (shown on the page, logged by the bench).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SenderState {
    pub target_kbps: u32,
    pub rung: Option<String>,
    pub reason: Option<String>,
}

mod report;

pub use report::ReportState;

const MAX_TIMELINE: usize = 400_000;
const ARRIVAL_WINDOW_US: u64 = 1_000_000;

pub struct LessonStats {
    link: Mutex<LinkState>,
    arrivals: Mutex<VecDeque<Arrival>>,
    timeline: Mutex<Vec<Decoded>>,
    sender: Mutex<SenderState>,
    pub reconnects: AtomicU64,
    /// The audio playout buffer's delay over the path's own, µs.
    audio_delay_us: AtomicU64,
    /// When sound plays, relative to its capture time (see [`Self::sound_offset`]).
    sound_offset: Mutex<Option<(i64, u64)>>,
    video: TrackCounters,
    audio: TrackCounters,
    history: Mutex<VecDeque<Snapshot>>,
    media: Mutex<MediaState>,
    /// Return feeds: the teacher's, one per box; a box's own outgoing one as "return".
    feeds: Mutex<std::collections::BTreeMap<String, Arc<LessonStats>>>,
    /// The QUIC connection to the relay while there is one: its byte counters say what
    /// the link delivered, packet by packet, and the meter what it can carry.
    connection: Mutex<Option<(quinn::Connection, Arc<CapacityMeter>)>>,
}

/// Which pipeline profile decodes the lesson, and why it changed (for the page).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct MediaState {
    pub profile: String,
    /// Set when the box had to fall back (a hardware element failed).
    pub notice: Option<String>,
    /// What the classroom display shows while no lesson runs (None: the lesson).
    pub slate: Option<String>,
    /// The lesson's picture size as decoded now (it follows the teacher's ladder).
    pub picture: Option<(u32, u32)>,
    /// Where the lesson is shown: "screen" or "nowhere (headless)".
    pub output: String,
    /// The classroom's camera towards the teacher: "sending", a slate's reason, or "off".
    pub camera: String,
    /// Who is teaching the lesson being shown (from its catalog).
    pub teacher: Option<String>,
    /// The lesson's video codec and its decoder here ("H.265 (v4l2slh265dec)").
    pub codec: Option<String>,
}

impl Default for LessonStats {
    fn default() -> Self {
        Self {
            link: Mutex::new(LinkState::Idle),
            reconnects: AtomicU64::new(0),
            audio_delay_us: AtomicU64::new(0),
            sound_offset: Mutex::new(None),
            video: Default::default(),
            audio: Default::default(),
            history: Default::default(),
            arrivals: Default::default(),
            timeline: Default::default(),
            sender: Default::default(),
            media: Default::default(),
            feeds: Default::default(),
            connection: Default::default(),
        }
    }
}

/// Counters for one track at one moment.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct TrackTotals {
    pub sent_frames: u64,
    pub sent_bytes: u64,
    pub received_frames: u64,
    pub received_bytes: u64,
    pub decoded: u64,
    pub groups_skipped: u64,
    pub dropped: u64,
}

/// One sample of the lesson, as the page plots it.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub at_unix_ms: u64,
    pub link: LinkState,
    pub reconnects: u64,
    pub video_kbps: f64,
    pub audio_kbps: f64,
    pub decoded_fps: f64,
    pub latency_ms_p50: Option<f64>,
    pub latency_ms_p95: Option<f64>,
    pub video: TrackTotals,
    pub audio: TrackTotals,
    pub sender: SenderState,
    /// How long sound waits in the playout buffer to ride out the link's jitter.
    pub audio_buffer_ms: u64,
}

/// Percentile summary of glass-to-glass latency.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LatencySummary {
    pub samples: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub max_ms: f64,
}

impl LessonStats {
    fn track(&self, kind: TrackKind) -> &TrackCounters {
        match kind {
            TrackKind::Video => &self.video,
            TrackKind::Audio => &self.audio,
        }
    }

    pub fn set_link(&self, state: LinkState) {
        *self.link.lock().expect("stats lock") = state;
    }

    pub fn link(&self) -> LinkState {
        self.link.lock().expect("stats lock").clone()
    }

    pub fn record_sent(&self, frame: &Frame) {
        let t = self.track(frame.track);
        t.sent_frames.fetch_add(1, Relaxed);
        t.sent_bytes.fetch_add(frame.payload.len() as u64, Relaxed);
    }

    /// Bytes of one frame that arrived (when only the size is known, as in the
    /// benchmark's baseline).
    pub fn record_received_bytes(&self, kind: TrackKind, wire_bytes: usize) {
        let t = self.track(kind);
        t.received_frames.fetch_add(1, Relaxed);
        t.received_bytes.fetch_add(wire_bytes as u64, Relaxed);
    }

    pub fn record_received(&self, kind: TrackKind, wire_bytes: usize, frame: &Frame) {
        self.record_received_bytes(kind, wire_bytes);
        let now = unix_micros();
        let mut arrivals = self.arrivals.lock().expect("stats lock");
        arrivals.push_back(Arrival {
            at_us: now,
            kind,
            bytes: wire_bytes,
            // Signed: the sender's clock may be ahead of ours.
            delay_ms: (now as f64 - frame.capture_us as f64) / 1000.0,
        });
        while arrivals
            .front()
            .is_some_and(|a| now.saturating_sub(a.at_us) > ARRIVAL_WINDOW_US)
        {
            arrivals.pop_front();
        }
    }

    /// The connection to the relay (None: not connected).
    pub fn set_connection(&self, connection: Option<(quinn::Connection, Arc<CapacityMeter>)>) {
        *self.connection.lock().expect("stats lock") = connection;
    }

    pub fn set_sender(&self, state: SenderState) {
        *self.sender.lock().expect("stats lock") = state;
    }

    pub fn sender(&self) -> SenderState {
        self.sender.lock().expect("stats lock").clone()
    }

    /// Every decoded frame so far (bounded), for the benchmark.
    pub fn timeline(&self) -> Vec<Decoded> {
        self.timeline.lock().expect("stats lock").clone()
    }

    pub fn record_group_skipped(&self, kind: TrackKind) {
        self.track(kind).groups_skipped.fetch_add(1, Relaxed);
    }

    pub fn record_dropped(&self, kind: TrackKind) {
        self.track(kind).dropped.fetch_add(1, Relaxed);
    }

    /// A decoder produced output for a frame captured at `capture_us`.
    pub fn record_decoded(&self, kind: TrackKind, capture_us: u64) {
        self.track(kind).decoded.fetch_add(1, Relaxed);
        let now = unix_micros();
        let latency_ms = now.saturating_sub(capture_us) as f64 / 1000.0;
        let mut timeline = self.timeline.lock().expect("stats lock");
        if timeline.len() < MAX_TIMELINE {
            timeline.push(Decoded {
                at_us: now,
                kind,
                latency_ms,
            });
        }
    }

    pub fn totals(&self, kind: TrackKind) -> TrackTotals {
        let t = self.track(kind);
        TrackTotals {
            sent_frames: t.sent_frames.load(Relaxed),
            sent_bytes: t.sent_bytes.load(Relaxed),
            received_frames: t.received_frames.load(Relaxed),
            received_bytes: t.received_bytes.load(Relaxed),
            decoded: t.decoded.load(Relaxed),
            groups_skipped: t.groups_skipped.load(Relaxed),
            dropped: t.dropped.load(Relaxed),
        }
    }

    /// Video latency percentiles over every decoded picture so far.
    pub fn latency_summary(&self) -> Option<LatencySummary> {
        let timeline = self.timeline.lock().expect("stats lock");
        let all: Vec<f64> = timeline
            .iter()
            .filter(|d| d.kind == TrackKind::Video)
            .map(|d| d.latency_ms)
            .collect();
        summarize(&all)
    }

    /// The same over the last two seconds (the timeline is in time order).
    fn recent_latency(&self) -> Option<LatencySummary> {
        let now = unix_micros();
        let timeline = self.timeline.lock().expect("stats lock");
        let recent: Vec<f64> = timeline
            .iter()
            .rev()
            .take_while(|d| now.saturating_sub(d.at_us) <= RECENT_WINDOW_US)
            .filter(|d| d.kind == TrackKind::Video)
            .map(|d| d.latency_ms)
            .collect();
        summarize(&recent)
    }

    /// Take a snapshot, computing rates against the previous one.
    pub fn sample(&self, previous: Option<&Snapshot>) -> Snapshot {
        let at_unix_ms = unix_micros() / 1000;
        let video = self.totals(TrackKind::Video);
        let audio = self.totals(TrackKind::Audio);
        let (video_kbps, audio_kbps, decoded_fps) = match previous {
            Some(p) if at_unix_ms > p.at_unix_ms => {
                let secs = (at_unix_ms - p.at_unix_ms) as f64 / 1000.0;
                // The side that receives reports what arrived; the sender what it sent.
                let rate = |now: &TrackTotals, then: &TrackTotals| {
                    let bytes = (now.received_bytes - then.received_bytes)
                        .max(now.sent_bytes - then.sent_bytes);
                    bytes as f64 * 8.0 / 1000.0 / secs
                };
                (
                    rate(&video, &p.video),
                    rate(&audio, &p.audio),
                    (video.decoded - p.video.decoded) as f64 / secs,
                )
            }
            _ => (0.0, 0.0, 0.0),
        };
        let recent = self.recent_latency();
        Snapshot {
            at_unix_ms,
            link: self.link(),
            reconnects: self.reconnects.load(Relaxed),
            video_kbps,
            audio_kbps,
            decoded_fps,
            latency_ms_p50: recent.map(|s| s.p50_ms),
            latency_ms_p95: recent.map(|s| s.p95_ms),
            video,
            audio,
            sender: self.sender(),
            audio_buffer_ms: self.audio_delay_us.load(Relaxed) / 1000,
        }
    }

    pub fn set_audio_delay(&self, delay: Duration) {
        self.audio_delay_us.store(delay.as_micros() as u64, Relaxed);
    }

    /// Sound captured at `t` (the sender's clock) plays at `t + offset` here (µs);
    /// `None`: no sound plays.
    pub fn set_sound_offset(&self, offset_us: Option<i64>) {
        *self.sound_offset.lock().expect("stats lock") =
            offset_us.map(|offset| (offset, unix_micros()));
    }

    /// The sound's offset (see [`Self::set_sound_offset`]) if it was set in the last
    /// second: sound that stopped coming has nothing for pictures to wait for.
    pub fn sound_offset(&self) -> Option<i64> {
        let set = *self.sound_offset.lock().expect("stats lock");
        set.filter(|&(_, at)| unix_micros().saturating_sub(at) < 1_000_000)
            .map(|(offset, _)| offset)
    }

    /// Sample once a second into the history the page plots, until `shutdown`.
    pub async fn run_sampler(&self, shutdown: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let mut history = self.history.lock().expect("stats lock");
            let snapshot = self.sample(history.back());
            if history.len() == HISTORY_LEN {
                history.pop_front();
            }
            history.push_back(snapshot);
        }
    }

    /// The newest sample (or a fresh one before the sampler's first tick).
    /// The stats of return feed `id` (created on first use).
    pub fn feed(&self, id: &str) -> Arc<LessonStats> {
        self.feeds
            .lock()
            .expect("stats lock")
            .entry(id.to_string())
            .or_default()
            .clone()
    }

    pub fn feeds(&self) -> Vec<(String, Arc<LessonStats>)> {
        self.feeds
            .lock()
            .expect("stats lock")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub fn set_media(&self, state: MediaState) {
        *self.media.lock().expect("stats lock") = state;
    }

    /// Change what the display's slate says (None: the lesson is on screen).
    pub fn set_slate(&self, slate: Option<String>) {
        self.media.lock().expect("stats lock").slate = slate;
    }

    pub fn set_picture(&self, width: u32, height: u32) {
        self.media.lock().expect("stats lock").picture = Some((width, height));
    }

    pub fn set_codec(&self, codec: Option<String>) {
        self.media.lock().expect("stats lock").codec = codec;
    }

    pub fn set_teacher(&self, teacher: Option<String>) {
        self.media.lock().expect("stats lock").teacher = teacher;
    }

    pub fn set_camera(&self, state: &str) {
        self.media.lock().expect("stats lock").camera = state.to_string();
    }

    pub fn media(&self) -> MediaState {
        self.media.lock().expect("stats lock").clone()
    }

    pub fn latest(&self) -> Snapshot {
        let history = self.history.lock().expect("stats lock");
        history.back().cloned().unwrap_or_else(|| self.sample(None))
    }

    pub fn history(&self) -> Vec<Snapshot> {
        self.history
            .lock()
            .expect("stats lock")
            .iter()
            .cloned()
            .collect()
    }
}

pub fn summarize(samples: &[f64]) -> Option<LatencySummary> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let pick = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    Some(LatencySummary {
        samples: sorted.len(),
        p50_ms: pick(0.50),
        p95_ms: pick(0.95),
        max_ms: *sorted.last().expect("non-empty"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = summarize(&samples).unwrap();
        assert_eq!(s.samples, 100);
        assert_eq!(s.p50_ms, 51.0);
        assert_eq!(s.p95_ms, 95.0);
        assert_eq!(s.max_ms, 100.0);
        assert!(summarize(&[]).is_none());
    }
}

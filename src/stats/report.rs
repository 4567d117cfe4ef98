//! What a receiver tells the sender's bitrate controller: the report.

use std::collections::VecDeque;

use super::{ARRIVAL_WINDOW_US, Arrival, LessonStats};
use crate::frame::{TrackKind, unix_micros};

/// State a receiver keeps between reports.
#[derive(Debug, Default)]
pub struct ReportState {
    /// (time, quickest video and audio delay in the half second before) for the
    /// last 10 s.
    minima: VecDeque<(u64, [Option<f64>; 2])>,
    /// (time, bytes the connection had received) over the last [`LINK_WINDOW_US`], and
    /// which connection they are of.
    link_bytes: VecDeque<(u64, u64)>,
    link_id: Option<usize>,
    last_skipped: u64,
    last_video_frames: u64,
}

/// The link's arrival rate is measured over this: short, so that a report soon after a
/// drop in capacity is about the new link only (the connection's byte counter has no
/// lumps: a keyframe counts as its packets come, not when its last one does).
const LINK_WINDOW_US: u64 = 500_000;

impl LessonStats {
    /// What the link delivered over the last [`LINK_WINDOW_US`], kbit/s (every UDP
    /// byte: media, retransmissions, headers); None without a connection or before
    /// enough of a window is seen.
    fn link_kbps(&self, now: u64, state: &mut ReportState) -> Option<f64> {
        let (id, bytes) = {
            let connection = self.connection.lock().expect("stats lock");
            let (c, _) = connection.as_ref()?;
            (c.stable_id(), c.stats().udp_rx.bytes)
        };
        if state.link_id != Some(id) {
            state.link_id = Some(id);
            state.link_bytes.clear();
        }
        state.link_bytes.push_back((now, bytes));
        while state.link_bytes.len() > 2
            && state
                .link_bytes
                .get(1)
                .is_some_and(|&(t, _)| now.saturating_sub(t) >= LINK_WINDOW_US)
        {
            state.link_bytes.pop_front();
        }
        let (&(t0, b0), &(t1, b1)) = (state.link_bytes.front()?, state.link_bytes.back()?);
        (t1.saturating_sub(t0) >= LINK_WINDOW_US / 2)
            .then(|| b1.saturating_sub(b0) as f64 * 8.0 / 1000.0 / ((t1 - t0) as f64 / 1e6))
    }

    /// The link to the relay just fell, to about this, kbit/s (see
    /// [`crate::transport::dispersion::Dispersion::fell_kbps`]).
    pub fn link_fell(&self) -> Option<f64> {
        (self.connection.lock().expect("stats lock").as_ref())
            .and_then(|(_, meter)| meter.fell_kbps())
    }

    /// Summarise the last second for the sender's bitrate controller.
    pub fn receiver_report(&self, state: &mut ReportState) -> crate::abr::ReceiverReport {
        let now = unix_micros();
        let (received_kbps, quickest) = {
            let arrivals = self.arrivals.lock().expect("stats lock");
            let in_window: Vec<&Arrival> = arrivals
                .iter()
                .filter(|a| now.saturating_sub(a.at_us) <= ARRIVAL_WINDOW_US)
                .collect();
            let bytes: usize = in_window.iter().map(|a| a.bytes).sum();
            // Each kind's quickest frame of the last half second, not a median: a
            // backlog delays every frame, the quickest too, while what else delays
            // frames is no queue. The frames behind a keyframe wait for it to cross
            // the link; and a lost packet stops the rest of its group's stream until
            // it is sent again (at 300 kbit/s, with a packet every 32 ms, loss
            // detection and a round trip hold the frames behind it for ~300 ms, every
            // few seconds at 1% loss); the last of them then arrive almost on time.
            // The lower quartile saw those stalls as a queue and cut a 300 kbit/s link
            // to half of it.
            let quickest = |kind: TrackKind| -> Option<f64> {
                in_window
                    .iter()
                    .filter(|a| a.kind == kind && now.saturating_sub(a.at_us) <= 500_000)
                    .map(|a| a.delay_ms)
                    .reduce(f64::min)
            };
            (
                bytes as f64 * 8.0 / 1000.0 / (ARRIVAL_WINDOW_US as f64 / 1e6),
                [quickest(TrackKind::Video), quickest(TrackKind::Audio)],
            )
        };
        // Each kind against its own lowest of the last 10 s: a video frame takes its
        // size's time to cross the link (tens of ms at 300 kbit/s), an audio packet
        // next to none, and that is no queue either. Audio jumps the sender's queue
        // (it has priority), so only video shows a backlog at the relay; both show
        // one at the bottleneck. The worse of the two is the queue.
        if quickest.iter().any(Option::is_some) {
            state.minima.push_back((now, quickest));
        }
        while state
            .minima
            .front()
            .is_some_and(|(t, _)| now.saturating_sub(*t) > 10_000_000)
        {
            state.minima.pop_front();
        }
        let queue_delay_ms = (0..2)
            .filter_map(|kind| {
                let base = state
                    .minima
                    .iter()
                    .filter_map(|(_, q)| q[kind])
                    .reduce(f64::min)?;
                Some(quickest[kind]? - base)
            })
            .fold(0.0, f64::max);
        let received_kbps = self.link_kbps(now, state).unwrap_or(received_kbps);
        let capacity = (self.connection.lock().expect("stats lock").as_ref())
            .and_then(|(_, meter)| meter.kbps());
        let fell_kbps = self.link_fell();
        let video = self.totals(TrackKind::Video);
        let report = crate::abr::ReceiverReport {
            received_kbps,
            queue_delay_ms,
            groups_skipped: video.groups_skipped.saturating_sub(state.last_skipped),
            video_frames: video
                .received_frames
                .saturating_sub(state.last_video_frames),
            codecs: Vec::new(),
            // The link carried at least what arrived.
            capacity_kbps: capacity.map(|kbps| kbps.max(received_kbps)),
            fell_kbps,
        };
        state.last_skipped = video.groups_skipped;
        state.last_video_frames = video.received_frames;
        report
    }
}

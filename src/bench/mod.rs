//! Benchmark figures, computed from what a run recorded (pure: no I/O, no clock).
//!
//! In: the decoded-frame timeline, the delivered-bytes samples and the trace.
//! Out: glass-to-glass latency p50/p95/max, utilisation, freeze ratio, audio gaps,
//! recovery after a drop, ramp-up after a rise, resumption after an outage.

use std::time::Duration;

use serde::Serialize;

use crate::{
    emulator::Trace,
    frame::TrackKind,
    stats::{Decoded, summarize},
};

/// A picture that does not change for longer than this is frozen.
pub const FREEZE_MS: f64 = 200.0;
/// Sound missing for longer than this is a gap.
pub const AUDIO_GAP_MS: f64 = 100.0;
/// Latency bound the recovery is measured against.
pub const LATENCY_BOUND_MS: f64 = 400.0;

/// What one run recorded. Times are Unix microseconds; `started_us` is the trace's zero.
#[derive(Debug, Clone, Default)]
pub struct RunData {
    pub started_us: u64,
    pub duration: Duration,
    pub timeline: Vec<Decoded>,
    /// (time, cumulative media bytes received), sampled about four times a second.
    pub delivered: Vec<(u64, u64)>,
    pub video_bytes_received: u64,
    pub bytes_sent: u64,
    /// The sound's packet time, ms, for sound whose packets carry no capture time (the
    /// SRT baseline's, in 20 ms packets); `None`: taken from the capture times.
    pub audio_packet_ms: Option<f64>,
}

impl RunData {
    /// What the receiving side of a run recorded, plus what the sender sent.
    pub fn from_receiver(
        started_us: u64,
        duration: Duration,
        receiver: &crate::stats::LessonStats,
        delivered: Vec<(u64, u64)>,
        bytes_sent: u64,
    ) -> Self {
        Self {
            started_us,
            duration,
            timeline: receiver.timeline(),
            delivered,
            video_bytes_received: receiver.totals(TrackKind::Video).received_bytes,
            bytes_sent,
            audio_packet_ms: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Figures {
    pub decoded_video_frames: usize,
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub latency_max_ms: Option<f64>,
    pub video_kbps: f64,
    pub capacity_kbps: f64,
    pub utilisation: f64,
    pub freeze_ratio: f64,
    pub audio_gaps: usize,
    /// Capture to playing, for sound (its playout buffer trades delay for gaps).
    pub audio_latency_p95_ms: Option<f64>,
    /// Longest time, over the trace's bandwidth drops, until latency stayed under 400 ms.
    pub recovery_after_drop_s: Option<f64>,
    /// Longest time, over the trace's rises, until delivery reached 80% of the link.
    pub rampup_after_rise_s: Option<f64>,
    /// Time from the link returning after an outage to the next decoded picture.
    pub resume_after_outage_s: Option<f64>,
    pub bytes_sent: u64,
}

/// Capacity per whole second of the run, kbit/s.
fn capacity_by_second(trace: &Trace, secs: u64) -> Vec<f64> {
    (0..secs)
        .map(|i| trace.capacity_bps(Duration::from_secs(i), Duration::from_secs(i + 1)) / 1000.0)
        .collect()
}

/// Silences of over [`AUDIO_GAP_MS`]: from the end of each packet's sound (its
/// release plus its duration) to the next packet's release. A packet lasts its capture
/// step to a neighbour, the smaller of the two (20 ms, or 40 ms when the teacher packs
/// the sound for a slow link; a packet lost in between is a silence, not a longer
/// packet). Counting from one release to the next instead would take a 60 ms silence
/// after a 40 ms packet for a gap. `packet_ms`: the duration, for packets that carry no
/// capture time.
fn audio_gaps(audio: &[&Decoded], packet_ms: Option<f64>) -> usize {
    let capture_ms = |d: &Decoded| d.at_us as f64 / 1000.0 - d.latency_ms;
    let step = |i: usize| capture_ms(audio[i + 1]) - capture_ms(audio[i]);
    (0..audio.len().saturating_sub(1))
        .filter(|&i| {
            let duration = match (packet_ms, i) {
                (Some(ms), _) => ms,
                (None, 0) => step(0),
                (None, _) => step(i).min(step(i - 1)),
            }
            .max(0.0);
            let spacing = audio[i + 1].at_us.saturating_sub(audio[i].at_us) as f64 / 1000.0;
            spacing - duration > AUDIO_GAP_MS
        })
        .count()
}

pub fn figures(trace: &Trace, run: &RunData) -> Figures {
    let secs = run.duration.as_secs().max(1);
    let rel = |at_us: u64| at_us.saturating_sub(run.started_us) as f64 / 1e6;
    let video: Vec<&Decoded> = run
        .timeline
        .iter()
        .filter(|d| d.kind == TrackKind::Video)
        .collect();
    let audio: Vec<&Decoded> = run
        .timeline
        .iter()
        .filter(|d| d.kind == TrackKind::Audio)
        .collect();
    let latencies: Vec<f64> = video.iter().map(|d| d.latency_ms).collect();
    let summary = summarize(&latencies);
    let audio_latencies: Vec<f64> = audio.iter().map(|d| d.latency_ms).collect();
    let audio_summary = summarize(&audio_latencies);

    let capacity = capacity_by_second(trace, secs);
    let capacity_kbps = capacity.iter().sum::<f64>() / capacity.len() as f64;
    let video_kbps = run.video_bytes_received as f64 * 8.0 / 1000.0 / run.duration.as_secs_f64();

    // Frozen time: gaps between pictures longer than FREEZE_MS, and the tail after the
    // last one, over the time since the first.
    let end = run.duration.as_secs_f64();
    let freeze_ratio = match video.first() {
        Some(first) => {
            let start = rel(first.at_us);
            let mut frozen = 0.0;
            let mut previous = start;
            for d in video
                .iter()
                .skip(1)
                .map(|d| rel(d.at_us))
                .chain(std::iter::once(end))
            {
                let gap = d - previous;
                if gap * 1000.0 > FREEZE_MS {
                    frozen += gap;
                }
                previous = d.max(previous);
            }
            if end > start {
                frozen / (end - start)
            } else {
                0.0
            }
        }
        None => 1.0,
    };
    let audio_gaps = audio_gaps(&audio, run.audio_packet_ms);

    let mut drops = Vec::new();
    let mut rises = Vec::new();
    let mut returns = Vec::new();
    for i in 1..capacity.len() {
        let (before, now) = (capacity[i - 1], capacity[i]);
        if before > 0.0 && now > 0.0 && now < 0.5 * before {
            drops.push(i as f64);
        }
        if before > 0.0 && now > 2.0 * before {
            rises.push(i as f64);
        }
        if before == 0.0 && now > 0.0 {
            returns.push(
                trace
                    .next_opportunity(Duration::from_secs(i as u64 - 1))
                    .as_secs_f64(),
            );
        }
    }

    let recovery_after_drop_s = drops
        .iter()
        .map(|&t| {
            video
                .iter()
                .filter(|d| {
                    (t..t + 15.0).contains(&rel(d.at_us)) && d.latency_ms > LATENCY_BOUND_MS
                })
                .map(|d| rel(d.at_us) - t)
                .fold(0.0, f64::max)
        })
        .reduce(f64::max);

    // Delivered rate over the second ending at each sample.
    let rate_at = |i: usize| -> Option<(f64, f64)> {
        let (t, bytes) = run.delivered[i];
        let j = run.delivered[..i]
            .iter()
            .rposition(|(u, _)| t - u >= 1_000_000)?;
        let (u, earlier) = run.delivered[j];
        Some((
            rel(t),
            (bytes - earlier) as f64 * 8.0 / 1000.0 / ((t - u) as f64 / 1e6),
        ))
    };
    let rampup_after_rise_s = rises
        .iter()
        .map(|&t| {
            let target = 0.8 * capacity.get(t as usize).copied().unwrap_or(0.0);
            (0..run.delivered.len())
                .filter_map(rate_at)
                .find(|(at, kbps)| *at >= t && *kbps >= target)
                .map(|(at, _)| at - t)
                .unwrap_or(15.0)
        })
        .reduce(f64::max);

    let resume_after_outage_s = returns
        .iter()
        .map(|&t| {
            video
                .iter()
                .map(|d| rel(d.at_us))
                .find(|&at| at >= t)
                .map_or(end - t, |at| at - t)
        })
        .reduce(f64::max);

    Figures {
        decoded_video_frames: video.len(),
        latency_p50_ms: summary.map(|s| s.p50_ms),
        latency_p95_ms: summary.map(|s| s.p95_ms),
        latency_max_ms: summary.map(|s| s.max_ms),
        video_kbps,
        capacity_kbps,
        utilisation: if capacity_kbps > 0.0 {
            video_kbps / capacity_kbps
        } else {
            0.0
        },
        freeze_ratio,
        audio_gaps,
        audio_latency_p95_ms: audio_summary.map(|s| s.p95_ms),
        recovery_after_drop_s,
        rampup_after_rise_s,
        resume_after_outage_s,
        bytes_sent: run.bytes_sent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(at_ms: u64, kind: TrackKind, latency_ms: f64) -> Decoded {
        Decoded {
            at_us: at_ms * 1000,
            kind,
            latency_ms,
        }
    }

    #[test]
    fn an_audio_gap_is_silence_longer_than_100_ms_whatever_the_packet_time() {
        // 20 ms packets, then 40 ms ones; each steady stretch then has one stall.
        let mut timeline = Vec::new();
        let mut push = |capture_ms: u64, delay: f64| {
            timeline.push(decoded(capture_ms + delay as u64, TrackKind::Audio, delay));
        };
        for ms in (0..1000).step_by(20) {
            // From 500 ms each packet plays 90 ms later: 90 ms of silence, no gap.
            push(ms, if ms < 500 { 50.0 } else { 140.0 });
        }
        for ms in (1000..3000).step_by(40) {
            // 40 ms packets: 90 ms more from 1.6 s is no gap either (a release every
            // 130 ms there, which counting from release to release took for one)...
            let delay = match ms {
                ..1600 => 140.0,
                1600..2400 => 230.0,
                // ...but 110 ms more from 2.4 s is.
                _ => 340.0,
            };
            push(ms, delay);
        }
        // A lost 40 ms packet and a 100 ms stall after it: a gap (140 ms of silence).
        push(3040, 440.0);
        let audio: Vec<&Decoded> = timeline.iter().collect();
        assert_eq!(audio_gaps(&audio, None), 2);
        // Sound without capture times (the baseline's): its arrivals, 20 ms each.
        let arrivals: Vec<Decoded> = audio
            .iter()
            .map(|d| decoded(d.at_us / 1000, TrackKind::Audio, 0.0))
            .collect();
        let arrivals: Vec<&Decoded> = arrivals.iter().collect();
        // Read as 20 ms packets, the 130 ms from 1.6 s (90 ms of silence) is a gap too.
        assert_eq!(audio_gaps(&arrivals, Some(20.0)), 3);
    }

    #[test]
    fn freezes_gaps_and_recovery() {
        // 10 s at 1 Mbit/s, dropping to 250 kbit/s at 5 s.
        let mut lines = Vec::new();
        for ms in 1..=10_000u64 {
            let every = if ms <= 5000 { 12 } else { 48 };
            if ms % every == 0 {
                lines.push(ms.to_string());
            }
        }
        lines.push("10000".into());
        lines.dedup();
        let trace = Trace::parse(&lines.join("\n")).unwrap();
        let mut timeline = Vec::new();
        // Video every 40 ms, except a 1 s freeze from 6 s; latency high until 6.5 s.
        for ms in (0..10_000).step_by(40) {
            if (6000..7000).contains(&ms) {
                continue;
            }
            let latency = if (5000..6500).contains(&ms) {
                900.0
            } else {
                100.0
            };
            timeline.push(decoded(ms, TrackKind::Video, latency));
        }
        // Audio every 20 ms with one 300 ms hole.
        for ms in (0..10_000).step_by(20) {
            if !(3000..3300).contains(&ms) {
                timeline.push(decoded(ms, TrackKind::Audio, 50.0));
            }
        }
        timeline.sort_by_key(|d| d.at_us);
        let run = RunData {
            started_us: 0,
            duration: Duration::from_secs(10),
            timeline,
            delivered: (0..=40).map(|i| (i * 250_000, i * 25_000)).collect(),
            video_bytes_received: 1_000_000,
            bytes_sent: 1_200_000,
            audio_packet_ms: None,
        };
        let f = figures(&trace, &run);
        assert!((f.freeze_ratio - 0.1).abs() < 0.01, "{}", f.freeze_ratio);
        assert_eq!(f.audio_gaps, 1);
        let rec = f.recovery_after_drop_s.unwrap();
        // The last late picture before the freeze came at 5.96 s.
        assert!((0.9..1.0).contains(&rec), "{rec}");
        assert!((f.video_kbps - 800.0).abs() < 1.0);
        assert!(f.rampup_after_rise_s.is_none() && f.resume_after_outage_s.is_none());
        assert_eq!(f.latency_max_ms, Some(900.0));
    }
}

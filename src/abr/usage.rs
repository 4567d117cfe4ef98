//! Whether the encoder uses the bitrate it is given, sans-IO.
//!
//! A target is a ceiling, not a rate: on a still picture (a slate, a whiteboard, the
//! test pattern) x264 produces a fraction of it. Low delay at such a target says
//! nothing about the link, and growing on it leaves a target far above the link
//! (3 Mbit/s on a 2 Mbit/s one, 720p chosen for it) that the first movement in front
//! of the camera turns into a queue, and that a drop then needs several cuts to leave.
//! So, as BBR and GCC do with an application-limited sender, the controller does not
//! grow on it beyond what the link carries: while the encoder uses well under its
//! target, the target grows at most to a tenth over what arrives for pictures.

use std::{collections::VecDeque, time::Duration};

/// How far back the use is measured: longer than a keyframe's burst is spread over
/// (x264's VBV), short enough to follow a ramp.
const WINDOW: Duration = Duration::from_secs(1);

/// Below this share of the target the encoder is limited by its picture, not the rate.
pub const LIMITED_BELOW: f64 = 0.7;

#[derive(Debug, Default)]
pub struct EncoderUse {
    /// (when, video bytes produced so far, target from then on in kbit/s)
    samples: VecDeque<(Duration, u64, f64)>,
}

impl EncoderUse {
    /// At `now` the encoder had produced `bytes` in all and is given `target_kbps`
    /// from now on.
    pub fn record(&mut self, now: Duration, bytes: u64, target_kbps: u32) {
        self.samples.push_back((now, bytes, f64::from(target_kbps)));
        // Keep one sample at or before the window's start.
        while self.samples.len() > 2
            && self
                .samples
                .get(1)
                .is_some_and(|&(t, _, _)| now.saturating_sub(t) >= WINDOW)
        {
            self.samples.pop_front();
        }
    }

    /// Forget the history (video stopped: audio-only, or a new encoder).
    pub fn reset(&mut self) {
        self.samples.clear();
    }

    /// What the encoder produced over the last window as a share of the bitrate it
    /// was given over the same time; `None` until a whole window is recorded.
    pub fn share(&self) -> Option<f64> {
        let (produced_kbit, _) = self.window()?;
        let given_kbit: f64 = self
            .samples
            .iter()
            .zip(self.samples.iter().skip(1))
            .map(|(&(t0, _, kbps), &(t1, _, _))| kbps * (t1 - t0).as_secs_f64())
            .sum();
        (given_kbit > 0.0).then(|| produced_kbit / given_kbit)
    }

    /// What the encoder produced over the last window, kbit/s; `None` until a whole
    /// window is recorded.
    pub fn produced_kbps(&self) -> Option<f64> {
        let (produced_kbit, span) = self.window()?;
        Some(produced_kbit / span.as_secs_f64())
    }

    /// What was produced (kbit) over the recorded span, once it is a whole window.
    fn window(&self) -> Option<(f64, Duration)> {
        let (&(start, first_bytes, _), &(end, last_bytes, _)) =
            (self.samples.front()?, self.samples.back()?);
        let span = end.saturating_sub(start);
        (span >= WINDOW).then(|| {
            (
                last_bytes.saturating_sub(first_bytes) as f64 * 8.0 / 1000.0,
                span,
            )
        })
    }

    /// Whether the encoder is limited by its picture rather than by the target.
    pub fn limited(&self) -> bool {
        self.share().is_some_and(|s| s < LIMITED_BELOW)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An encoder producing `produce(target)` kbit/s, sampled every 250 ms.
    fn run(targets: impl Fn(f64) -> u32, produce: impl Fn(u32) -> f64, secs: f64) -> EncoderUse {
        let mut usage = EncoderUse::default();
        let mut bytes = 0.0;
        let mut t = 0.0;
        while t <= secs {
            let target = targets(t);
            usage.record(Duration::from_secs_f64(t), bytes as u64, target);
            bytes += produce(target) * 1000.0 / 8.0 * 0.25;
            t += 0.25;
        }
        usage
    }

    #[test]
    fn nothing_is_said_before_a_whole_window() {
        let usage = run(|_| 1000, |_| 0.0, 0.5);
        assert_eq!(usage.share(), None);
        assert!(!usage.limited());
    }

    #[test]
    fn an_encoder_that_follows_its_target_is_not_limited() {
        // Even while the target doubles every second.
        let usage = run(
            |t| (300.0 * 2f64.powf(t)) as u32,
            |k| f64::from(k) * 0.9,
            3.0,
        );
        let share = usage.share().unwrap();
        assert!((0.85..=0.95).contains(&share), "share {share}");
        // What it produced over the last second: 0.9 x the targets given over it
        // (300 x 2^t for t in 2.0, 2.25, 2.5, 2.75: 1427 kbit/s).
        let produced = usage.produced_kbps().unwrap();
        assert!((1420.0..=1435.0).contains(&produced), "produced {produced}");
        assert!(!usage.limited());
    }

    #[test]
    fn a_still_picture_under_a_high_target_is_limited() {
        // x264 on a test pattern: 1.8 Mbit/s whatever it is given above that.
        let usage = run(|_| 3000, |k| f64::from(k).min(1800.0), 3.0);
        assert!((usage.share().unwrap() - 0.6).abs() < 0.01);
        assert!(usage.limited());
    }

    #[test]
    fn reset_forgets() {
        let mut usage = run(|_| 3000, |_| 100.0, 3.0);
        assert!(usage.limited());
        usage.reset();
        assert!(!usage.limited());
    }
}

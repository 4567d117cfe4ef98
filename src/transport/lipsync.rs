//! Lip sync: a picture plays with the sound captured at the same moment.
//!
//! The sound waits in its playout buffer for the link's jitter (a packet plays at
//! `capture + offset`, see [`Playout`](super::playout::Playout)); a picture used to
//! play the moment it arrived, up to a tenth of a second ahead of the teacher's voice
//! on a slow link. Here each picture is held until `capture + offset` as well. Held
//! pictures also ride out a short stall: a lost packet holds the rest of its group
//! for a round trip until its copy arrives, and pictures already held keep playing
//! meanwhile (as the sound does) instead of the screen freezing for the whole wait.
//!
//! A picture is never held longer than [`MAX_HOLD_US`] past its arrival: after a drop
//! the sound's buffer grows to half a second and more, and the picture would then
//! lag by as much; beyond this it leads the sound, which the eye forgives far more
//! than a late picture. Pictures leave in order.
//!
//! Sans-IO: times (Unix microseconds) are passed in; unit-tested on simulated arrivals.

use std::collections::VecDeque;

/// Longest a picture waits for its sound.
pub const MAX_HOLD_US: u64 = 120_000;

#[derive(Debug)]
pub struct LipSync<T> {
    /// (when to play, picture), in arrival order.
    held: VecDeque<(u64, T)>,
}

impl<T> Default for LipSync<T> {
    fn default() -> Self {
        Self {
            held: VecDeque::new(),
        }
    }
}

impl<T> LipSync<T> {
    /// A picture captured at `capture_us` (the sender's clock) arrived at `now_us`;
    /// sound captured then plays at `capture_us + sound_offset_us` (`None`: no sound
    /// is playing, so nothing to wait for).
    pub fn push(&mut self, now_us: u64, capture_us: u64, sound_offset_us: Option<i64>, item: T) {
        let with_sound = sound_offset_us.map_or(0, |offset| {
            (capture_us as i64).saturating_add(offset).max(0) as u64
        });
        let at = with_sound.clamp(now_us, now_us + MAX_HOLD_US);
        // Never before the picture ahead of it.
        let at = self
            .held
            .back()
            .map_or(at, |&(previous, _)| at.max(previous));
        self.held.push_back((at, item));
    }

    /// The next picture whose time has come at `now_us`, if any.
    pub fn pop(&mut self, now_us: u64) -> Option<T> {
        match self.held.front() {
            Some(&(at, _)) if at <= now_us => self.held.pop_front().map(|(_, item)| item),
            _ => None,
        }
    }

    /// When the first held picture is due (Unix microseconds).
    pub fn deadline(&self) -> Option<u64> {
        self.held.front().map(|&(at, _)| at)
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sender clock ahead of the receiver's by this much: only differences matter.
    const CLOCK_OFFSET_US: u64 = 7_000_000;
    const FRAME_US: u64 = 66_667;

    /// Pictures captured at 15 fps arriving after the given one-way delays (ms), the
    /// sound playing `sound_ms` after capture; returns when each plays (ms), on a 1 ms
    /// tick.
    fn run(delays_ms: &[u64], sound_ms: Option<i64>) -> Vec<u64> {
        let offset = sound_ms.map(|ms| ms * 1000 - CLOCK_OFFSET_US as i64);
        let mut sync = LipSync::default();
        let mut arrivals: Vec<(u64, u64)> = delays_ms
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let capture = i as u64 * FRAME_US;
                (capture + d * 1000, capture + CLOCK_OFFSET_US)
            })
            .collect();
        arrivals.sort();
        let end = arrivals.last().map_or(0, |a| a.0) + 1_000_000;
        let (mut played, mut i) = (Vec::new(), 0);
        for now in (0..=end).step_by(1000) {
            while i < arrivals.len() && arrivals[i].0 <= now {
                sync.push(now, arrivals[i].1, offset, arrivals[i].1);
                i += 1;
            }
            while let Some(capture) = sync.pop(now) {
                played.push((capture, now / 1000));
            }
        }
        assert!(sync.is_empty());
        assert!(played.windows(2).all(|w| w[0].0 < w[1].0), "out of order");
        played.into_iter().map(|(_, at)| at).collect()
    }

    fn longest_pause_ms(played: &[u64]) -> u64 {
        played.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0)
    }

    #[test]
    fn pictures_play_with_their_sound() {
        // Pictures take 160 ms, the sound 225 ms (its buffer covers the jitter).
        let played = run(&[160; 10], Some(225));
        for (i, at) in played.iter().enumerate() {
            assert_eq!(
                *at,
                (i as u64 * FRAME_US).div_ceil(1000) + 225,
                "picture {i}"
            );
        }
    }

    #[test]
    fn a_stall_shorter_than_the_hold_is_not_seen() {
        // A lost packet holds the pictures behind it in its group for a round trip
        // (160 ms): they come in a burst once its copy is in.
        let mut delays = vec![160; 12];
        delays[5..8].copy_from_slice(&[320, 260, 200]);
        let without = run(&delays, None);
        let with = run(&delays, Some(225));
        assert!(longest_pause_ms(&without) > 200, "{without:?}");
        assert!(longest_pause_ms(&with) < 200, "{with:?}");
    }

    #[test]
    fn never_held_long_behind_a_deep_sound_buffer() {
        // After a drop the sound's buffer is 600 ms deep.
        let played = run(&[160; 5], Some(600));
        assert_eq!(played[0], 160 + MAX_HOLD_US / 1000);
        // A picture later than its sound plays at once.
        let played = run(&[300; 5], Some(225));
        assert_eq!(played[0], 300);
    }

    #[test]
    fn without_sound_pictures_play_as_they_come() {
        let played = run(&[160, 170, 150], None);
        assert_eq!(played, vec![160, 237, 284]);
    }
}

//! Groups of a fixed length in time, whatever the frame rate.

/// Keeps a group's length in time when the frame rate changes.
///
/// An encoder counts its keyframe interval in frames, and most (x264enc among them)
/// take a new interval only when they are stopped: the interval made for 30 fps
/// becomes 3 s at 10 fps. A group is the unit a late link loses, so a 3 s group is a
/// 3 s freeze. This clock watches the pictures leave the encoder and asks for a
/// keyframe once a group has lasted `seconds`; once per group, since the encoder
/// answers a frame or two later.
#[derive(Debug)]
pub(crate) struct KeyframeClock {
    interval_us: u64,
    group_start_us: Option<u64>,
    previous_pts_us: Option<u64>,
    asked: bool,
}

impl KeyframeClock {
    pub(crate) fn new(seconds: f64) -> Self {
        Self {
            interval_us: (seconds.max(0.1) * 1e6) as u64,
            group_start_us: None,
            previous_pts_us: None,
            asked: false,
        }
    }

    /// A picture with `pts_us` left the encoder: whether to ask for a keyframe now.
    /// The request is for the next picture, so it goes one picture ahead.
    pub(crate) fn on_frame(&mut self, pts_us: u64, keyframe: bool) -> bool {
        let frame_us = self.previous_pts_us.map_or(0, |p| pts_us.saturating_sub(p));
        self.previous_pts_us = Some(pts_us);
        if keyframe {
            self.group_start_us = Some(pts_us);
            self.asked = false;
            return false;
        }
        let Some(start) = self.group_start_us else {
            return false;
        };
        // Due when the next picture (half a picture's leeway) reaches the interval.
        let due = pts_us.saturating_sub(start) + frame_us * 3 / 2 >= self.interval_us;
        if due && !self.asked {
            self.asked = true;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::KeyframeClock;

    /// Feed frames at `fps` for `seconds`, the encoder answering a request on the
    /// `lag`-th frame after it; returns the pts (ms) of every keyframe.
    fn keyframes(fps: u64, seconds: u64, encoder_every: u64, lag: u64) -> Vec<u64> {
        let mut clock = KeyframeClock::new(1.0);
        let (mut out, mut asked_at, mut since_key) = (Vec::new(), None, 0);
        for n in 0..fps * seconds {
            let pts_us = n * 1_000_000 / fps;
            let keyframe = n == 0
                || since_key + 1 >= encoder_every
                || asked_at.is_some_and(|a: u64| n >= a + lag);
            if keyframe {
                out.push(pts_us / 1000);
                asked_at = None;
                since_key = 0;
            } else {
                since_key += 1;
            }
            if clock.on_frame(pts_us, keyframe) {
                assert!(asked_at.is_none(), "asked twice in one group");
                asked_at = Some(n);
            }
        }
        out
    }

    #[test]
    fn a_group_lasts_its_time_at_any_frame_rate() {
        // An encoder still counting 30 frames: at 10 fps it would make 3 s groups.
        let at_10 = keyframes(10, 6, 30, 1);
        assert_eq!(at_10, vec![0, 1000, 2000, 3000, 4000, 5000]);
        // At 30 fps the encoder's own interval and the clock agree.
        let at_30 = keyframes(30, 3, 30, 1);
        assert_eq!(at_30.len(), 3, "{at_30:?}");
        // An encoder slow to answer still gets one request per group.
        let slow = keyframes(25, 4, 1000, 3);
        assert_eq!(slow, vec![0, 1080, 2160, 3240]);
    }

    #[test]
    fn nothing_is_asked_before_the_first_keyframe() {
        let mut clock = KeyframeClock::new(1.0);
        // Pictures at 10 fps; the group starts at 5.0 s.
        let asked: Vec<u64> = (40..=65u64)
            .filter(|&n| clock.on_frame(n * 100_000, n == 50))
            .collect();
        // Asked once, for the picture at 6.0 s.
        assert_eq!(asked, vec![59]);
    }
}

//! Which video codec the lesson is encoded in, sans-IO: a function of (now, the
//! classrooms' reports).
//!
//! One encoding serves every classroom, so H.265 is chosen only while every classroom
//! that reported recently asks for it first (a Raspberry Pi 5, which decodes H.265 in
//! hardware and H.264 only in software). Back to H.264 is immediate — a classroom that
//! cannot decode H.265, or a tablet on a box's LAN that needs H.264, must not wait —
//! and to H.265 only after every classroom has asked for it for a while, and not soon
//! after a change, so the codec does not flap while classrooms come and go.

use std::{collections::BTreeMap, time::Duration};

use crate::frame::VideoCodec;

/// How long every classroom must ask for H.265 before the lesson switches to it.
pub const SETTLE: Duration = Duration::from_secs(3);
/// At least this long between a switch back to H.264 and another to H.265.
pub const HOLD: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct CodecChooser {
    /// Whether this sender has an H.265 encoder (and may use it).
    can_h265: bool,
    current: VideoCodec,
    /// Each box's codecs (best first) and when it last reported.
    boxes: BTreeMap<String, (Vec<VideoCodec>, Duration)>,
    /// Since when every box has asked for H.265 first.
    all_want_h265_since: Option<Duration>,
    last_switch: Option<Duration>,
    /// A box silent this long no longer counts (as the bitrate controller's).
    pub forget_after: Duration,
}

impl CodecChooser {
    pub fn new(can_h265: bool) -> Self {
        Self {
            can_h265,
            current: VideoCodec::H264,
            boxes: BTreeMap::new(),
            all_want_h265_since: None,
            last_switch: None,
            forget_after: Duration::from_secs(30),
        }
    }

    pub fn current(&self) -> VideoCodec {
        self.current
    }

    /// A box's report of what it decodes (empty: H.264 only).
    pub fn on_report(&mut self, now: Duration, box_id: &str, codecs: &[VideoCodec]) {
        let codecs = if codecs.is_empty() {
            vec![VideoCodec::H264]
        } else {
            codecs.to_vec()
        };
        self.boxes.insert(box_id.to_string(), (codecs, now));
    }

    /// The codec to switch to now, if any.
    pub fn on_tick(&mut self, now: Duration) -> Option<VideoCodec> {
        let forget = self.forget_after;
        self.boxes
            .retain(|_, (_, last)| now.saturating_sub(*last) < forget);
        if self.boxes.is_empty() {
            // Nobody listening: keep what was chosen (a lone classroom's outage must
            // not flip the codec under it).
            self.all_want_h265_since = None;
            return None;
        }
        let all_want_h265 = self.can_h265
            && self
                .boxes
                .values()
                .all(|(codecs, _)| codecs.first() == Some(&VideoCodec::H265));
        let next = match (self.current, all_want_h265) {
            (VideoCodec::H265, false) => {
                self.all_want_h265_since = None;
                Some(VideoCodec::H264)
            }
            (VideoCodec::H264, true) => {
                let since = *self.all_want_h265_since.get_or_insert(now);
                let settled = now.saturating_sub(since) >= SETTLE;
                let held = self
                    .last_switch
                    .is_none_or(|at| now.saturating_sub(at) >= HOLD);
                (settled && held).then_some(VideoCodec::H265)
            }
            (_, false) => {
                self.all_want_h265_since = None;
                None
            }
            (VideoCodec::H265, true) => None,
        };
        if let Some(codec) = next {
            self.current = codec;
            self.last_switch = Some(now);
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use VideoCodec::*;

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    /// Tick every 250 ms from `from` to `to`, returning the switches made.
    fn run(
        c: &mut CodecChooser,
        from: f64,
        to: f64,
        reports: &[(&str, &[VideoCodec])],
    ) -> Vec<(f64, VideoCodec)> {
        let mut switches = Vec::new();
        let mut t = from;
        while t < to {
            for (id, codecs) in reports {
                c.on_report(s(t), id, codecs);
            }
            if let Some(codec) = c.on_tick(s(t)) {
                switches.push((t, codec));
            }
            t += 0.25;
        }
        switches
    }

    #[test]
    fn a_pi5_alone_gets_h265_after_settling() {
        let mut c = CodecChooser::new(true);
        let switches = run(&mut c, 0.0, 10.0, &[("pi5", &[H265, H264])]);
        assert_eq!(switches, vec![(3.0, H265)]);
        assert_eq!(c.current(), H265);
    }

    #[test]
    fn one_classroom_without_h265_keeps_everyone_on_h264() {
        let mut c = CodecChooser::new(true);
        let switches = run(
            &mut c,
            0.0,
            20.0,
            &[("pi5", &[H265, H264]), ("pi4", &[H264]), ("old", &[])],
        );
        assert!(switches.is_empty(), "{switches:?}");
        assert_eq!(c.current(), H264);
    }

    #[test]
    fn a_joining_h264_classroom_switches_back_at_once_and_the_hold_stops_flapping() {
        let mut c = CodecChooser::new(true);
        run(&mut c, 0.0, 5.0, &[("pi5", &[H265, H264])]);
        assert_eq!(c.current(), H265);
        // A tablet starts watching on the Pi 5's LAN: it asks for H.264 first.
        let back = run(&mut c, 5.0, 6.0, &[("pi5", &[H264, H265])]);
        assert_eq!(back, vec![(5.0, H264)]);
        // The tablet leaves a second later: H.265 again, but only after the hold.
        let again = run(&mut c, 6.0, 20.0, &[("pi5", &[H265, H264])]);
        assert_eq!(again, vec![(15.0, H265)]);
    }

    #[test]
    fn a_sender_without_an_h265_encoder_never_switches() {
        let mut c = CodecChooser::new(false);
        assert!(run(&mut c, 0.0, 20.0, &[("pi5", &[H265, H264])]).is_empty());
    }

    #[test]
    fn silence_keeps_the_codec_and_a_forgotten_box_stops_counting() {
        let mut c = CodecChooser::new(true);
        run(&mut c, 0.0, 5.0, &[("pi5", &[H265, H264])]);
        // The Pi 5's link drops: it stops reporting; nothing changes, then or later.
        assert!(run(&mut c, 5.0, 60.0, &[]).is_empty());
        assert_eq!(c.current(), H265);
        // An H.264-only box that went silent 30 s ago no longer holds the others back.
        let mut c = CodecChooser::new(true);
        run(&mut c, 0.0, 1.0, &[("pi4", &[H264])]);
        let switches = run(&mut c, 1.0, 40.0, &[("pi5", &[H265, H264])]);
        assert_eq!(switches.len(), 1);
        assert!(switches[0].0 >= 31.0, "{switches:?}");
    }
}

//! How the teacher's sound is packed for the slowest classroom's link.
//!
//! Each sound packet carries about 60 bytes of moq, QUIC and UDP framing besides the
//! sound: in 20 ms packets that is 24 kbit/s on top of 32 kbit/s of Opus, 56 kbit/s
//! in all, which is 11% of a 500 kbit/s link and 22% of a 250 kbit/s one, taken from
//! the picture. On a slow link the sound goes in 40 ms packets, which halves the
//! framing, at no more than 24 kbit/s (speech-tuned Opus stays clear there): 36 kbit/s
//! in all. The cost is 20 ms more delay for the sound and, as pictures wait for
//! their sound, for the picture (measured on 250 kbit/s: a median of 202-239 ms
//! instead of 174-177, with 74-77% of the link for the picture instead of 65-67%);
//! on 500 kbit/s the same cost bought 2% more picture, so only a link under about
//! 400 kbit/s is slow. Opus changes packet size and bitrate between two packets, and
//! the classroom's playout buffer times each packet by its capture time, so the switch
//! makes no sound of its own. (WebRTC's audio network adaptor can do the same: it
//! lengthens Opus frames when the bandwidth is low.)
//!
//! The slowest classroom decides: the sound is one track for every classroom, and the
//! main encoding follows the slowest. Sans-IO: the sender feeds it the main
//! encoding's target.

/// The main encoding's target under this, kbit/s, is a slow link (the link is then
/// under about 400 kbit/s)...
pub const SLOW_BELOW_KBPS: u32 = 300;
/// ...and over this a fast one again: the gap keeps a link near the line from
/// switching back and forth.
pub const FAST_ABOVE_KBPS: u32 = 500;
/// Packet time on a slow link, ms.
pub const SLOW_FRAME_MS: u32 = 40;
/// Packet time otherwise, ms (the pipelines' `frame-size`).
pub const FRAME_MS: u32 = 20;
/// The most sound on a slow link, kbit/s.
pub const SLOW_MAX_KBPS: u32 = 24;
/// Framing per sound packet on the wire: moq, QUIC and UDP, bytes.
const FRAMING_BYTES: f64 = 60.0;

/// How the sound is encoded and packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sound {
    /// Opus bitrate, kbit/s.
    pub kbps: u32,
    /// Duration of one packet, ms.
    pub frame_ms: u32,
}

impl Sound {
    /// Opus at `kbps` in the pipelines' own 20 ms packets.
    pub fn in_20ms_packets(kbps: u32) -> Self {
        Self {
            kbps,
            frame_ms: FRAME_MS,
        }
    }

    /// What the sound takes of the link with its packets' framing, kbit/s.
    pub fn wire_kbps(&self) -> f64 {
        f64::from(self.kbps) + FRAMING_BYTES * 8.0 / f64::from(self.frame_ms.max(1))
    }
}

/// Chooses the [`Sound`] for the link the main encoding follows.
#[derive(Debug, Clone)]
pub struct SoundPacing {
    configured_kbps: u32,
    /// Whether a slow link repacks the sound at all (`teacher.slow_link_sound`).
    repack: bool,
    slow: bool,
}

impl SoundPacing {
    /// The teacher's configured bitrate, in 20 ms packets until a slow link shows
    /// (never, without `repack`).
    pub fn new(configured_kbps: u32, repack: bool) -> Self {
        Self {
            configured_kbps,
            repack,
            slow: false,
        }
    }

    pub fn sound(&self) -> Sound {
        if self.slow {
            Sound {
                kbps: self.configured_kbps.min(SLOW_MAX_KBPS),
                frame_ms: SLOW_FRAME_MS,
            }
        } else {
            Sound::in_20ms_packets(self.configured_kbps)
        }
    }

    /// The main encoding's target is now `video_kbps` (0 for audio-only): the new
    /// sound when it changes.
    pub fn follow(&mut self, video_kbps: u32) -> Option<Sound> {
        let slow = if !self.repack {
            false
        } else if self.slow {
            video_kbps <= FAST_ABOVE_KBPS
        } else {
            video_kbps < SLOW_BELOW_KBPS
        };
        (slow != self.slow).then(|| {
            self.slow = slow;
            self.sound()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_link_gets_fewer_larger_packets_and_a_fast_one_gets_them_back() {
        let mut pacing = SoundPacing::new(32, true);
        let normal = pacing.sound();
        assert_eq!(
            normal,
            Sound {
                kbps: 32,
                frame_ms: 20
            }
        );
        assert_eq!(normal.wire_kbps(), 56.0);
        assert_eq!(pacing.follow(1800), None, "a fast link keeps 20 ms packets");
        assert_eq!(pacing.follow(380), None, "so does 500 kbit/s");

        let slow = pacing.follow(180).expect("250 kbit/s is a slow link");
        assert_eq!(
            slow,
            Sound {
                kbps: 24,
                frame_ms: 40
            }
        );
        assert_eq!(slow.wire_kbps(), 36.0);
        // Near the line it stays as it is, either way.
        assert_eq!(pacing.follow(400), None);
        assert_eq!(pacing.follow(0), None, "audio-only stays slow");
        assert_eq!(pacing.follow(800), Some(normal));
        assert_eq!(pacing.follow(400), None);
        assert_eq!(pacing.follow(299), Some(slow));
    }

    #[test]
    fn a_low_configured_bitrate_is_kept_on_a_slow_link() {
        let mut pacing = SoundPacing::new(16, true);
        assert_eq!(
            pacing.follow(200),
            Some(Sound {
                kbps: 16,
                frame_ms: 40
            })
        );
    }

    #[test]
    fn without_repacking_the_sound_stays_as_configured() {
        let mut pacing = SoundPacing::new(64, false);
        assert_eq!(pacing.follow(100), None);
        assert_eq!(pacing.follow(0), None);
        assert_eq!(
            pacing.sound(),
            Sound {
                kbps: 64,
                frame_ms: 20
            }
        );
    }
}

//! The rendition ladder: which picture size and frame rate suit a video bitrate.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rung {
    pub name: &'static str,
    pub width: u32,
    pub height: u32,
    pub framerate: u32,
    /// The lowest video bitrate this rung looks acceptable at.
    pub min_kbps: u32,
    /// Above this the next rung up is worth it.
    pub max_kbps: u32,
}

/// Highest first. Below the last rung's minimum the lesson is audio-only.
pub const LADDER: &[Rung] = &[
    Rung {
        name: "720p30",
        width: 1280,
        height: 720,
        framerate: 30,
        min_kbps: 2500,
        max_kbps: 4000,
    },
    Rung {
        name: "480p25",
        width: 854,
        height: 480,
        framerate: 25,
        min_kbps: 700,
        max_kbps: 2500,
    },
    Rung {
        name: "360p20",
        width: 640,
        height: 360,
        framerate: 20,
        min_kbps: 350,
        max_kbps: 700,
    },
    Rung {
        name: "240p15",
        width: 426,
        height: 240,
        framerate: 15,
        min_kbps: 150,
        max_kbps: 350,
    },
    Rung {
        name: "180p10",
        width: 320,
        height: 180,
        framerate: 10,
        min_kbps: 60,
        max_kbps: 150,
    },
];

/// Highest video bitrate the ladder uses.
pub fn max_kbps() -> u32 {
    LADDER[0].max_kbps
}

/// The lowest rung: the least picture there is.
pub fn lowest() -> &'static Rung {
    &LADDER[LADDER.len() - 1]
}

/// The lowest rung's minimum: below it the lesson is audio-only.
pub fn min_kbps() -> u32 {
    lowest().min_kbps
}

/// The rung for `kbps`, or `None` for audio-only. `current` adds hysteresis both
/// ways: moving up needs 15% headroom above the next rung's minimum, and the current
/// rung is kept down to 85% of its own, so the picture size does not flap when the
/// rate hovers at a boundary (each change costs a keyframe, the largest frame there
/// is, just when the link is tight).
pub fn rung_for(kbps: u32, current: Option<&Rung>) -> Option<&'static Rung> {
    LADDER.iter().find(|r| {
        let upward = current.is_some_and(|c| r.min_kbps > c.min_kbps);
        let needed = if upward {
            r.min_kbps + r.min_kbps * 15 / 100
        } else {
            r.min_kbps
        };
        kbps >= needed || (current.is_some_and(|c| c == *r) && kbps >= r.min_kbps * 85 / 100)
    })
}

/// Picks the rung over time: down at once, up only once the rate has called for a
/// higher rung for [`RungChooser::UP_AFTER`] and the pictures that arrive already
/// reach that rung's minimum. Probing overshoots the link for about a second before
/// the delay shows it (the target reaches half again what arrives), and a rung change
/// then costs the new size's keyframe (36 KB at 720p) on a link already full, and
/// another when the cut comes: a 2 Mbit/s link went to 720p (2.5 Mbit/s and up) every
/// ten seconds.
#[derive(Debug, Default)]
pub struct RungChooser {
    up_since: Option<std::time::Duration>,
}

impl RungChooser {
    pub const UP_AFTER: std::time::Duration = std::time::Duration::from_millis(1500);

    /// The rung to show at `now` for `kbps`, from `current`, with `arriving` kbit/s
    /// of pictures getting through. `None`: the encoder cannot fill its target (the
    /// picture is too small for the rate) and all it makes gets through, so the link
    /// is not what limits and the picture grows at once. Leaving audio-only is not
    /// delayed either: there is no picture to keep.
    pub fn choose(
        &mut self,
        now: std::time::Duration,
        kbps: u32,
        arriving: Option<u32>,
        current: Option<&'static Rung>,
    ) -> Option<&'static Rung> {
        let wanted = rung_for(kbps, current);
        let upward = matches!((wanted, current), (Some(w), Some(c)) if w.min_kbps > c.min_kbps);
        if !upward {
            self.up_since = None;
            return wanted;
        }
        let since = *self.up_since.get_or_insert(now);
        let ready = match arriving {
            None => true,
            Some(a) => {
                now.saturating_sub(since) >= Self::UP_AFTER
                    && wanted.is_some_and(|w| a >= w.min_kbps)
            }
        };
        if ready {
            self.up_since = None;
            wanted
        } else {
            current
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn up_waits_down_does_not() {
        use std::time::Duration;
        let ms = Duration::from_millis;
        let mut chooser = RungChooser::default();
        let r480 = rung_for(1500, None);
        // An overshoot to 720p's rate for a second, then a cut: the picture stays.
        assert_eq!(chooser.choose(ms(0), 3000, Some(2600), r480), r480);
        assert_eq!(chooser.choose(ms(1000), 3000, Some(2600), r480), r480);
        assert_eq!(chooser.choose(ms(1250), 1600, Some(1600), r480), r480);
        // Held long enough, but only 1900 kbit/s of pictures arrive: 720p would not fit.
        assert_eq!(chooser.choose(ms(2000), 3000, Some(1900), r480), r480);
        assert_eq!(chooser.choose(ms(3500), 3000, Some(1900), r480), r480);
        // Held long enough with the pictures to show for it: up.
        assert_eq!(
            chooser
                .choose(ms(3600), 3000, Some(2600), r480)
                .unwrap()
                .name,
            "720p30"
        );
        // A picture too small to fill its rate, all of it arriving: up at once.
        let r240 = rung_for(200, None);
        assert_eq!(
            chooser.choose(ms(3650), 1000, None, r240).unwrap().name,
            "480p25"
        );
        // Down at once, and out of audio-only at once.
        assert_eq!(
            chooser.choose(ms(3700), 300, Some(100), r480).unwrap().name,
            "240p15"
        );
        assert_eq!(
            chooser.choose(ms(3800), 300, Some(0), None).unwrap().name,
            "240p15"
        );
    }

    #[test]
    fn rates_map_to_rungs_with_hysteresis() {
        assert_eq!(rung_for(3000, None).unwrap().name, "720p30");
        assert_eq!(rung_for(400, None).unwrap().name, "360p20");
        assert!(rung_for(40, None).is_none(), "audio-only");
        let r360 = rung_for(500, None).unwrap();
        // 720 kbit/s is above 480p's minimum but inside the headroom: stay.
        assert_eq!(rung_for(720, Some(r360)).unwrap().name, "360p20");
        assert_eq!(rung_for(900, Some(r360)).unwrap().name, "480p25");
        let r480 = rung_for(900, None).unwrap();
        assert_eq!(rung_for(710, Some(r480)).unwrap().name, "480p25");
        // 650 is under 480p's minimum but inside its 15% margin: stay; 590 is not.
        assert_eq!(rung_for(650, Some(r480)).unwrap().name, "480p25");
        assert_eq!(rung_for(590, Some(r480)).unwrap().name, "360p20");
        // From 360p at 300 kbit/s (a 350 minimum): stay; at 290, 240p.
        assert_eq!(rung_for(300, Some(r360)).unwrap().name, "360p20");
        assert_eq!(rung_for(290, Some(r360)).unwrap().name, "240p15");
        // Down to audio-only from the lowest rung also waits for its margin.
        let r180 = rung_for(100, None).unwrap();
        assert_eq!(rung_for(55, Some(r180)).unwrap().name, "180p10");
        assert!(rung_for(45, Some(r180)).is_none());
    }
}

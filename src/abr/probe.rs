//! Probing for a better link with padding.
//!
//! Once the link was found full, the target stays under what it then carried for a
//! while and grows only gently past it (see [`super::CEILING_FRESH`]): probing with
//! pictures puts a queue under the sound that cannot be taken back. But pictures
//! cannot show room the encoder is not using, so a link that got better was found
//! only 16 s after the step trace's rise. Padding can: the sender adds it at the lowest
//! priority on a track of its own (the classroom reads it and throws it away) for a
//! moment. Arriving on top of the pictures with no queue, it shows room, and the
//! memory of the old limit goes. At a relay it goes after everything else and is reset
//! once older than the classroom's budget for it, so on a full link most of it never
//! leaves the relay: the cost there is the relay's congestion window trying a quarter
//! more for a moment.

use std::time::Duration;

/// How long padding is sent for one probe.
pub const PROBE_FOR: Duration = Duration::from_millis(750);
/// Quiet time (no cut, no probe) before the next probe.
pub const PROBE_EVERY: Duration = Duration::from_millis(2500);
/// Reports lag what was sent by their half second of arrivals and the trip back.
const REPORT_LAG: Duration = Duration::from_millis(600);
/// A report whose quickest frame met less queue than this is calm...
pub const CALM_BELOW_MS: f64 = 10.0;
/// ...and this many calm reports in a row (a second) hint at a better link.
pub const CALM_REPORTS: u32 = 4;
/// A report with this much queue stops the padding: the link has no room.
pub const STOP_AT_MS: f64 = 25.0;
/// Padding, as a share of the remembered full link: with the target at 90% of it,
/// nearly three times the link's old limit is offered (never more padding than the
/// ladder's top rate). More costs a full link little (the relay sends what its
/// window allows and resets the rest) and shows more of a better one.
pub const PAD_SHARE: f64 = 2.0;
/// A probe succeeds when pictures and padding together arrive at this multiple of
/// the remembered limit, with no queue.
pub const ROOM_ABOVE: f64 = 1.4;
/// On success the target goes straight to this share of what arrived: the link
/// carried all of it with no queue.
pub const TAKE_SHARE: f64 = 0.8;

/// Padding sent from `from` to `until`, kbit/s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Padding {
    pub kbps: f64,
    pub from: Duration,
    pub until: Duration,
}

impl Padding {
    pub fn new(now: Duration, kbps: f64) -> Self {
        Self {
            kbps,
            from: now,
            until: now + PROBE_FOR,
        }
    }

    /// Whether the sender is adding it at `now`.
    pub fn sending(&self, now: Duration) -> bool {
        (self.from..self.until).contains(&now)
    }

    /// Whether a report arriving at `now` may count some of it.
    pub fn in_reports(&self, now: Duration) -> bool {
        (self.from..self.until + REPORT_LAG).contains(&now)
    }

    /// How much of it a report shows: what arrived for video beyond what the encoder
    /// made (`video`, `produced`, kbit/s). Padding does not delay pictures at the relay
    /// (it goes last), so pictures are counted first.
    pub fn arrived(&self, video: f64, produced: f64) -> f64 {
        (video - produced).clamp(0.0, self.kbps)
    }

    /// Stop sending at `now` (the link answered).
    pub fn stop(&mut self, now: Duration) {
        self.until = self.until.min(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_counts_what_arrives_beyond_the_pictures() {
        let p = Padding::new(Duration::from_secs(10), 180.0);
        assert_eq!(p.arrived(270.0 + 180.0, 270.0), 180.0);
        assert_eq!(
            p.arrived(270.0 + 400.0, 270.0),
            180.0,
            "never more than sent"
        );
        assert_eq!(p.arrived(200.0, 270.0), 0.0, "pictures behind: none of it");
        assert!(p.sending(Duration::from_millis(10_700)));
        assert!(!p.sending(Duration::from_millis(10_750)));
        assert!(p.in_reports(Duration::from_millis(11_300)));
        assert!(!p.in_reports(Duration::from_millis(11_400)));
    }

    #[test]
    fn a_stopped_probe_stops_at_once_and_still_counts_in_reports_in_flight() {
        let mut p = Padding::new(Duration::from_secs(10), 180.0);
        p.stop(Duration::from_millis(10_250));
        assert!(!p.sending(Duration::from_millis(10_250)));
        assert!(p.in_reports(Duration::from_millis(10_800)));
        p.stop(Duration::from_secs(11));
        assert_eq!(
            p.until,
            Duration::from_millis(10_250),
            "a stop never extends"
        );
    }
}

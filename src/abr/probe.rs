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
//!
//! Here: the padding's timing and the controller's probing rules (when to probe,
//! how a report that counts padding is read).

use std::time::Duration;

use super::{AbrController, Decision, ReceiverReport};

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

impl AbrController {
    /// A report that may count padding (`padded` kbit/s of it, see the module).
    /// `None`: the usual rules go on (the probe found room, or the link is in
    /// trouble); otherwise the verdict. While padding is on its way the other rules
    /// wait: the queue a probe may build on a full link is the relay's congestion
    /// window trying a quarter more, not a reason to cut.
    pub(super) fn on_padded_report(
        &mut self,
        now: Duration,
        video: f64,
        padded: f64,
        report: &ReceiverReport,
    ) -> Option<Decision> {
        let (low, high) = (self.settings.low_delay_ms, self.settings.high_delay_ms);
        let carried = video + padded;
        if report.queue_delay_ms < low
            && let Some((ceiling, _)) = self.ceiling
            && carried >= ROOM_ABOVE * ceiling
        {
            // Room: the link carries the pictures and the padding with no queue.
            // Forget its old limit, go most of the way to what it carried, and grow
            // from there as on a link never full.
            tracing::debug!(carried, padded, ceiling, "probe: the link has room");
            self.ceiling = None;
            self.padding = None;
            let to = self.clamp((TAKE_SHARE * carried).max(self.target_kbps));
            if to > self.target_kbps {
                self.target_kbps = to;
                self.last_increase = Some(now);
                return Some(Decision::Increase {
                    to_kbps: self.target_kbps(),
                });
            }
            return None;
        }
        tracing::trace!(
            padded,
            queue_delay_ms = report.queue_delay_ms,
            received_kbps = report.received_kbps,
            "probe: report"
        );
        if report.queue_delay_ms >= STOP_AT_MS
            && let Some(p) = self.padding.as_mut()
        {
            // A queue: no room, so no more padding. On a link the pictures nearly
            // fill, a queue drains at what they leave free: 150 ms of it took 2 s.
            p.stop(now);
        }
        if report.queue_delay_ms > 2.0 * high || report.groups_skipped > 0 {
            // More than padding makes: the link fell.
            return None;
        }
        self.previous_delay_ms = report.queue_delay_ms;
        self.calm_reports = 0;
        self.full_reports = 0;
        self.short_reports = 0;
        self.behind_reports = 0;
        Some(Decision::Hold)
    }

    /// Padding the sender should add at `now`, kbit/s (0: none).
    pub fn padding_kbps(&self, now: Duration) -> f64 {
        self.padding
            .filter(|p| p.sending(now))
            .map_or(0.0, |p| p.kbps)
    }

    /// Whether to probe for a better link now, and with how much padding (kbit/s):
    /// the target is held by the memory of a full link, nothing was cut or probed for
    /// a while, and for [`CALM_REPORTS`] reports the quickest frame met no
    /// queue at all. A full link keeps a standing queue (the relay's window holds a
    /// little more than the round trip); it going is the hint that the link got
    /// better. Probing without it, every 3 s, held a 500 kbit/s link's pictures at
    /// 100-150 ms of queue for a second or two after each probe, and cut the target.
    pub fn wants_probe(&self, now: Duration) -> Option<f64> {
        let (ceiling, found) = self.ceiling?;
        let quiet_since =
            |t: Option<Duration>| t.is_none_or(|t| now.saturating_sub(t) >= PROBE_EVERY);
        // (An encoder using well under its target counts too: it cannot show room,
        // and without a probe a 240p15 picture held the step trace at 300k for the
        // 20 s after the rise.)
        // (A box that measures its link's capacity shows a better link by it.)
        let ready = self.joined
            && self.measured.room.is_none()
            && !self.silent
            && now >= self.next_probe
            && self.grace_until.is_none_or(|until| now >= until)
            && quiet_since(self.last_decrease)
            && quiet_since(Some(found))
            && self.calm_reports >= CALM_REPORTS
            && self.target_kbps >= 0.75 * ceiling
            && self.target_kbps < f64::from(self.settings.max_kbps)
            && self
                .last_report
                .is_some_and(|at| now.saturating_sub(at) < Duration::from_secs(1));
        ready.then(|| {
            (PAD_SHARE * ceiling.max(self.target_kbps)).min(f64::from(self.settings.max_kbps))
        })
    }

    /// Padding of `kbps` starts at `now` (this box's probe or another's: what arrives
    /// counts it either way).
    pub fn pad(&mut self, now: Duration, kbps: f64) {
        let padding = Padding::new(now, kbps);
        self.next_probe = padding.until + PROBE_EVERY;
        self.padding = Some(padding);
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

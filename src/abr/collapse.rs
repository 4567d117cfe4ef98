//! A link that fell far under what is sent, seen in one report.
//!
//! The queue rule ([`AbrController::on_report`]) waits for the delay of the quickest
//! frame of the last half second to pass its line, so it sees a drop half a second
//! late. On the step trace the report 0.5 s after 2 Mbit/s fell to 300k showed
//! 389 kbit/s arriving of 1.9 Mbit/s sent and the delay up 52 ms; the target was cut
//! a report later, at 297 ms of queue. Meanwhile the encoder filled the relay's
//! buffer at the old rate, and the smaller picture that ends the freeze started a
//! report later too.
//!
//! A third of what is sent arriving while the delay climbs is none of the things
//! the other rules wait out: a keyframe holds arrivals up rather than down, random
//! loss leaves the delay flat, and an outage brings nothing to show a delay (its
//! return is in a grace). The link fell: cut at once, under what arrived.
//!
//! A box sees it sooner still: its packets come far apart at once (see
//! [`crate::transport::dispersion::Dispersion::fell_kbps`]), and it reports that
//! straight away with the link's new rate, a quarter second after the drop, not
//! the half second and more its half-second windows take to show it.

use std::time::Duration;

use super::{AbrController, Decision, ReceiverReport, elapsed};

/// What arrives under this share of what is sent (pictures and sound)...
const ARRIVING_BELOW: f64 = 0.35;
/// ...while the queueing delay climbs this much over the previous report's, ms.
const CLIMB_MS: f64 = 30.0;
/// The cut: this share of the pictures that arrived. The report's half second
/// still holds some of the old link's arrivals (389 kbit/s on a 300k link above).
const SHARE_OF_ARRIVING: f64 = 0.75;
/// The cut when the box tells the link's new rate: this share of what that leaves
/// the pictures (room for the old rate's backlog to drain).
const SHARE_OF_FELL: f64 = 0.8;

impl AbrController {
    /// The collapse rule (see the module); `None`: the other rules go on.
    /// `video`: what the pictures got in this report; `reference_ms`: the delay it
    /// climbs from; `in_grace`: a burst is expected.
    pub(super) fn on_collapse(
        &mut self,
        now: Duration,
        report: &ReceiverReport,
        video: f64,
        reference_ms: f64,
        in_grace: bool,
    ) -> Option<Decision> {
        let s = &self.settings;
        let sent = self.sent_kbps();
        // The box's word for the new rate, else what arrived with the delay climbing.
        let arriving = match report.fell_kbps {
            Some(fell) => fell.min(report.received_kbps),
            None if report.queue_delay_ms >= reference_ms + CLIMB_MS => report.received_kbps,
            None => return None,
        };
        let collapsed = self.joined
            && !in_grace
            && !self.audio_only()
            && elapsed(now, self.last_decrease) >= s.step
            && arriving < ARRIVING_BELOW * (sent + s.audio_wire_kbps);
        if !collapsed {
            return None;
        }
        let (pictures, share) = match report.fell_kbps {
            Some(_) => ((arriving - s.audio_wire_kbps).max(0.0), SHARE_OF_FELL),
            None => (video, SHARE_OF_ARRIVING),
        };
        self.ceiling = Some((pictures, now));
        self.delay_at_cut_ms = report.queue_delay_ms;
        let reason = format!(
            "the link fell: {arriving:.0} kbit/s of {:.0} sent",
            sent + s.audio_wire_kbps
        );
        Some(self.decrease(now, pictures * share, reason))
    }
}

//! Outages: the reports stop, and when they come back the target restarts from what
//! the link delivers, not from what it carried before.

use std::time::Duration;

use super::{AbrController, Decision, ReceiverReport};

/// After an outage, reports this long carry its backlog, not news of the link.
pub(super) const OUTAGE_BACKLOG: Duration = Duration::from_secs(1);

impl AbrController {
    /// Called on a timer: notices when reports stop (outage).
    pub fn on_tick(&mut self, now: Duration) -> Decision {
        if self
            .last_report
            .is_some_and(|last| now.saturating_sub(last) > self.settings.silence)
        {
            self.silent = true;
        }
        Decision::Hold
    }

    pub fn is_silent(&self) -> bool {
        self.silent
    }

    /// The first report after an outage (None: the link was not out).
    ///
    /// Whatever queued up is stale; restart from what the link is delivering now
    /// rather than from the pre-outage rate. The first report's rate spans the outage
    /// (near zero), which would mean audio-only with no new picture to replace the
    /// stale one: never restart below the start rate (or the pre-outage rate if
    /// lower); a link still weak is cut by the usual rule within a second.
    pub(super) fn back_from_outage(
        &mut self,
        now: Duration,
        report: &ReceiverReport,
    ) -> Option<Decision> {
        if !std::mem::take(&mut self.silent) {
            return None;
        }
        self.last_increase = Some(now);
        // The reports that follow carry the outage's own backlog: seconds of delay
        // and the groups the relay skipped meanwhile. Taken for a full link they cut
        // the target again and left a fresh memory of a "full" link at a third of a
        // 1 Mbit/s link's rate, holding it there for 20 s.
        self.grace_until = Some(now + OUTAGE_BACKLOG);
        self.outage_backlog_until = Some(now + OUTAGE_BACKLOG);
        let s = &self.settings;
        let floor = f64::from(s.start_kbps).min(self.target_kbps);
        let to = (report.received_kbps * 0.8)
            .max(floor)
            .max(f64::from(s.min_kbps));
        Some(self.decrease(now, to, "link returned after an outage".into()))
    }

    /// Whether reports at `now` still carry an outage's backlog.
    pub(super) fn in_outage_backlog(&self, now: Duration) -> bool {
        self.outage_backlog_until.is_some_and(|until| now < until)
    }
}

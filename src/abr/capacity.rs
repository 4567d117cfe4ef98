//! The link's capacity as the box measures it: a limit the target never passes, and
//! the news that a link got better.
//!
//! A box measures what its link can carry from how far apart the relay's packets
//! arrive (see [`crate::transport::dispersion`]), whatever the pictures use of it.
//! The rules of [`super::AbrController::on_report`] otherwise learn the link's limit by
//! passing it: growth stops when a queue shows, a second late, by which time the
//! target is well over (a classroom joining a 500 kbit/s link got 576 kbit/s of
//! pictures for 2 s, and a steady link went through a queue every 10 s or so as the
//! target grew into it again). And they learn that a link got better only by
//! probing it (see [`super::probe`]).
//!
//! Here, for a box that reports its capacity:
//! - the target never grows past what the link carries, less the sound, with some
//!   room to spare ([`LINK_SHARE`]);
//! - a target well over that is cut to it at once (a join, a drop);
//! - a link with far more room than the target uses, with no queue, and more than
//!   at the last cut, got better: the memory of its old limit goes, and the target
//!   doubles per report up to it;
//! - no padding probes a link whose capacity shows no room.

use std::time::Duration;

use super::{AbrController, Decision, ReceiverReport, elapsed, probe};

/// Share of the measured capacity that pictures and sound may use together: what is
/// left covers retransmissions (1% loss) and the bursts a keyframe makes, and keeps
/// the link's queue short, which a lost packet's copy waits in: on the 500 kbit/s
/// sample trace at 1% loss, 93% gave 79 and 86% utilisation with 1.7 and 2.6% of the
/// time frozen (two runs), 90% 74-78% with 0.0-1.3% (four).
pub const LINK_SHARE: f64 = 0.9;
/// A target over this multiple of the room in two reports in a row is cut to it.
const OVER_ROOM: f64 = 1.1;

/// What the controller keeps of the measured capacity.
#[derive(Debug, Clone, Default)]
pub(super) struct Measured {
    /// What the pictures may use of the link, in the latest report.
    pub(super) room: Option<f64>,
    /// Reports in a row with the target well over the room.
    over_room_reports: u32,
    /// The least room measured since the latest cut.
    least_since_cut: Option<f64>,
}

impl Measured {
    /// The target was cut.
    pub(super) fn cut(&mut self) {
        self.least_since_cut = self.room;
    }
}

impl AbrController {
    /// What the pictures may use of the link, by its measured capacity, kbit/s.
    pub(super) fn room_kbps(&self, report: &ReceiverReport) -> Option<f64> {
        report
            .capacity_kbps
            .map(|c| (LINK_SHARE * c - self.settings.audio_wire_kbps).max(0.0))
    }

    /// The capacity rules (see the module); `None`: the usual rules go on.
    pub(super) fn on_room(
        &mut self,
        now: Duration,
        room: f64,
        report: &ReceiverReport,
    ) -> Option<Decision> {
        let since = |t| elapsed(now, t);
        // The least room since the last cut: a cut in the moment of a drop comes
        // before the measure shows it (the queue tells first), and the room it
        // then saw is the old link's.
        let m = &mut self.measured;
        m.least_since_cut = m.least_since_cut.map(|least| least.min(room));
        let s = &self.settings;
        let over = self.target_kbps > OVER_ROOM * room;
        m.over_room_reports = if over { m.over_room_reports + 1 } else { 0 };
        if m.over_room_reports >= 2 && since(self.last_decrease) >= s.step {
            let capacity = report.capacity_kbps.unwrap_or_default();
            return Some(self.decrease(
                now,
                room,
                format!("the link carries {capacity:.0} kbit/s"),
            ));
        }
        // Room the target does not use counts only if the capacity also rose since
        // the last cut: a radio that delivers packets in bursts squeezes pairs and
        // reads high, and taking that room again after every cut the queue
        // forced would fill the link every second or so.
        let better = report.queue_delay_ms < s.low_delay_ms
            && report.groups_skipped == 0
            && room >= probe::ROOM_ABOVE * self.target_kbps
            && (self.measured.least_since_cut)
                .is_none_or(|least| room >= probe::ROOM_ABOVE * least)
            && since(self.last_decrease) >= s.settle;
        if better {
            self.ceiling = None;
            let to = self.clamp(room.min(2.0 * self.target_kbps));
            if to > self.target_kbps && since(self.last_increase) >= s.step.mul_f64(0.8) {
                self.target_kbps = to;
                self.last_increase = Some(now);
                return Some(Decision::Increase {
                    to_kbps: self.target_kbps(),
                });
            }
        }
        None
    }
}

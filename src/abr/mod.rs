//! Adaptive bitrate, sans-IO: plain functions of (now, inputs) -> decision.
//!
//! In: receiver reports (what arrived, how much queueing delay it saw, groups it had
//! to skip) and the sender's own QUIC path statistics. Out: a video target bitrate and
//! a rung of the [`ladder`]. Audio is not adapted: it is sent first and always.
//!
//! The rule, in the spirit of delay-based congestion control (GCC, webrtcsink):
//! queueing delay or skipped groups mean the link is full, so decrease to what actually
//! arrived; low, steady delay means there is room, so increase multiplicatively.
//! Packet loss alone is not a signal (QUIC retransmits, and a lossy radio link is not
//! a full one), so random loss does not collapse the rate.

mod capacity;
pub mod codec;
mod collapse;
pub mod ladder;
mod outage;
pub mod probe;
pub mod receivers;
mod report;
pub mod sound;
pub mod usage;

pub use receivers::{Layer, ReceiverSet};
pub use report::ReceiverReport;

use std::time::Duration;

/// The controller's verdict on one input.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Hold,
    Decrease { to_kbps: u32, reason: String },
    Increase { to_kbps: u32 },
}

#[derive(Debug, Clone)]
pub struct AbrSettings {
    pub start_kbps: u32,
    pub min_kbps: u32,
    pub max_kbps: u32,
    /// Above this queueing delay the link is full.
    pub high_delay_ms: f64,
    /// Below this there is room to grow.
    pub low_delay_ms: f64,
    /// Growth per increase step (every `step` while the link is clear).
    pub increase_factor: f64,
    pub step: Duration,
    /// Wait after a decrease before growing again (lets the queue drain).
    pub settle: Duration,
    /// No report for this long: the link is out; hold, and restart low when it returns.
    pub silence: Duration,
    /// What the sound takes of the link, with its packets' headers, kbit/s: what
    /// arrives less this is what the pictures got.
    pub audio_wire_kbps: f64,
}

impl Default for AbrSettings {
    fn default() -> Self {
        Self {
            start_kbps: 800,
            min_kbps: 40,
            max_kbps: ladder::max_kbps(),
            high_delay_ms: 120.0,
            low_delay_ms: 50.0,
            increase_factor: 1.2,
            step: Duration::from_millis(250),
            settle: Duration::from_millis(750),
            silence: Duration::from_millis(1500),
            audio_wire_kbps: sound::Sound::in_20ms_packets(32).wire_kbps(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AbrController {
    settings: AbrSettings,
    target_kbps: f64,
    last_decrease: Option<Duration>,
    last_increase: Option<Duration>,
    last_report: Option<Duration>,
    /// Set while the link is silent; the first report after it restarts carefully.
    silent: bool,
    /// What the link carried of pictures the last time it was full, and when: growth
    /// slows near it.
    ceiling: Option<(f64, Duration)>,
    /// Queueing delay in the previous report, for its trend.
    previous_delay_ms: f64,
    /// Until then, delay alone is not taken as congestion (see [`Self::expect_burst`]).
    grace_until: Option<Duration>,
    /// Reports in a row that saw the link full.
    full_reports: u32,
    /// Reports in a row in which well under the target arrived.
    short_reports: u32,
    /// A report with pictures has come (the join grace starts with the first).
    joined: bool,
    /// Queueing delay when we last cut, to tell a draining queue from a stuck one.
    delay_at_cut_ms: f64,
    /// The encoder uses well under the target (see [`usage`]): no evidence of room
    /// beyond what arrives.
    app_limited: bool,
    /// What the encoder produced over the last second, kbit/s (see [`usage`]).
    produced_kbps: Option<f64>,
    /// What the pictures got (what arrived less the sound) in the last few reports,
    /// kbit/s, newest last.
    recent_arrivals: std::collections::VecDeque<f64>,
    /// Reports in a row in which the pictures got well under what was produced.
    behind_reports: u32,
    /// What the pictures got in the previous report, when it was a join-grace report
    /// in which they got well under what was produced.
    join_short: Option<f64>,
    /// Padding sent to probe for a better link (see [`probe`]), the latest.
    padding: Option<probe::Padding>,
    /// No probe before this.
    next_probe: Duration,
    /// Until then reports carry an outage's backlog (see [`outage::OUTAGE_BACKLOG`]).
    outage_backlog_until: Option<Duration>,
    /// Reports in a row with pictures and next to no queue: the hint that the link
    /// may have room (see [`Self::wants_probe`]).
    calm_reports: u32,
    /// The link's capacity as the box measures it (see [`capacity`]).
    measured: capacity::Measured,
}

/// Reports averaged for what the pictures get against what the encoder produced:
/// a second, as the encoder's own figure, so a keyframe in one and not the other
/// does not tip the balance.
const ARRIVALS_KEPT: usize = 4;
/// Pictures getting less than this share of what the encoder produces: a backlog
/// grows somewhere (the relay's send buffer) and the target gets no higher.
const BEHIND_BELOW: f64 = 0.95;
/// Under this share for [`BEHIND_REPORTS`] reports in a row: the target is cut to
/// what arrives.
const STUCK_BELOW: f64 = 0.9;
const BEHIND_REPORTS: u32 = 4;
/// How long after the link was found full the target stays under [`FRESH_SHARE`] of
/// what it carried then. Padding finds a much better link within seconds (see
/// [`probe`]), so pictures probe a full link only this rarely: each such probe put
/// 130-190 ms of queue under the sound (10 s here put pictures over 400 ms late
/// 10-13 s after the step trace's drop, in four runs of five).
pub(crate) const CEILING_FRESH: Duration = Duration::from_secs(20);
const FRESH_SHARE: f64 = 0.9;
/// A target over this share of the remembered full link is a probe.
const PROBING_ABOVE: f64 = 0.95;
/// Joining, pictures getting under this share of what the encoder makes: the link
/// is slower than the start rate (see [`AbrController::on_report`]).
const JOIN_SHORT_BELOW: f64 = 0.7;

impl AbrController {
    pub fn new(settings: AbrSettings) -> Self {
        Self {
            target_kbps: settings.start_kbps as f64,
            settings,
            last_decrease: None,
            last_increase: None,
            last_report: None,
            silent: false,
            ceiling: None,
            previous_delay_ms: 0.0,
            grace_until: None,
            full_reports: 0,
            short_reports: 0,
            joined: false,
            delay_at_cut_ms: 0.0,
            app_limited: false,
            produced_kbps: None,
            recent_arrivals: Default::default(),
            behind_reports: 0,
            join_short: None,
            padding: None,
            next_probe: Duration::ZERO,
            outage_backlog_until: None,
            calm_reports: 0,
            measured: Default::default(),
        }
    }

    pub fn target_kbps(&self) -> u32 {
        self.target_kbps.round() as u32
    }

    /// What the pictures got in the latest report, kbit/s.
    pub fn arriving_kbps(&self) -> u32 {
        self.recent_arrivals.back().copied().unwrap_or(0.0).round() as u32
    }

    fn clamp(&self, kbps: f64) -> f64 {
        kbps.clamp(self.settings.min_kbps as f64, self.settings.max_kbps as f64)
    }

    fn decrease(&mut self, now: Duration, to: f64, reason: String) -> Decision {
        // Audio-only is a second step, from the lowest rung: one cut (from a stalled
        // moment, or a box whose CPU is behind) never takes the picture away.
        let lowest = f64::from(ladder::min_kbps());
        let to = if self.target_kbps > lowest {
            to.max(lowest)
        } else {
            to
        };
        let to = self.clamp(to.min(self.target_kbps));
        self.last_decrease = Some(now);
        self.behind_reports = 0;
        self.measured.cut();
        if to >= self.target_kbps {
            return Decision::Hold;
        }
        self.target_kbps = to;
        Decision::Decrease {
            to_kbps: self.target_kbps(),
            reason,
        }
    }

    /// A burst is coming that is not congestion: a new picture size starts with a
    /// large keyframe, and a new subscriber first receives the current group from its
    /// start (frames up to a GOP old). For `for_how_long`, delay alone is ignored;
    /// skipped groups still count.
    pub fn expect_burst(&mut self, now: Duration, for_how_long: Duration) {
        self.grace_until = Some(now + for_how_long);
    }

    /// Whether the encoder is using well under the target (see [`usage`]); while it
    /// is, the target grows no further than what arrives.
    pub fn set_app_limited(&mut self, limited: bool) {
        self.app_limited = limited;
    }

    /// What the encoder produced over the last second (`None`: not known yet, or no
    /// picture is sent).
    pub fn set_produced(&mut self, kbps: Option<f64>) {
        self.produced_kbps = kbps;
    }

    /// What the pictures got, `arriving` kbit/s, against what the encoder produced:
    /// under 1 means a backlog grows on the way (about 1.03 when all gets through:
    /// what arrives counts the packets' headers). `None`: not known, or the encoder
    /// is limited by its picture (then the shares say nothing of the link).
    fn getting_through(&self, arriving: f64) -> Option<f64> {
        if self.recent_arrivals.len() < ARRIVALS_KEPT {
            return None;
        }
        self.share_of_made(arriving)
    }

    /// `arriving` against what the encoder produced, however few reports there are
    /// (see [`Self::getting_through`]).
    fn share_of_made(&self, arriving: f64) -> Option<f64> {
        let produced = self.produced_kbps.filter(|&p| p > 0.0)?;
        (!self.app_limited).then(|| arriving / produced)
    }

    /// Whether the target is under the lowest rung: only the sound is sent.
    fn audio_only(&self) -> bool {
        self.target_kbps < f64::from(ladder::min_kbps())
    }

    /// What is sent of pictures, kbit/s: this box's target or what the encoder made,
    /// the less. A box sharing the encoding with a slower one gets less than it asks
    /// for, and taking that for a starving link cut a 2 Mbit/s classroom under the
    /// 300k one and the shared encoding with it.
    fn sent_kbps(&self) -> f64 {
        self.produced_kbps
            .map_or(self.target_kbps, |made| made.min(self.target_kbps))
    }

    /// What the pictures got over the last [`ARRIVALS_KEPT`] reports, kbit/s.
    fn recent_arriving(&self) -> f64 {
        self.recent_arrivals.iter().sum::<f64>() / self.recent_arrivals.len().max(1) as f64
    }

    /// A receiver report arrived at `now`.
    pub fn on_report(&mut self, now: Duration, report: &ReceiverReport) -> Decision {
        let s = self.settings.clone();
        if !self.joined && report.video_frames > 0 {
            // The join burst (the current GOP from its start, frames up to a GOP old)
            // is through in well under a second on any link the lesson can use.
            self.joined = true;
            self.expect_burst(now, Duration::from_secs(1));
        }
        self.last_report = Some(now);
        // What arrived is sound as well as pictures, and padding while probing.
        let mut video = (report.received_kbps - s.audio_wire_kbps).max(0.0);
        let padded = self
            .padding
            .filter(|p| p.in_reports(now))
            .map(|p| p.arrived(video, self.produced_kbps.unwrap_or(self.target_kbps)));
        video -= padded.unwrap_or(0.0);
        self.recent_arrivals.push_back(video);
        if self.recent_arrivals.len() > ARRIVALS_KEPT {
            self.recent_arrivals.pop_front();
        }
        if let Some(decision) = self.back_from_outage(now, report) {
            return decision;
        }
        self.measured.room = self.room_kbps(report);
        if let Some(room) = self.measured.room
            && let Some(decision) = self.on_room(now, room, report)
        {
            return decision;
        }
        let since = |t| elapsed(now, t);

        if let Some(padded) = padded
            && let Some(decision) = self.on_padded_report(now, video, padded, report)
        {
            return decision;
        }

        // Growing: over the previous report, and within 3 s of a cut over the delay
        // that cut saw. A report between them can read low only because no picture
        // came in it (its delay is the sound's), and "rising" from there cut a 300k
        // link a third time, to 91 kbit/s, while the same backlog drained.
        let since_cut = since(self.last_decrease);
        let reference = if since_cut < Duration::from_secs(3) {
            self.previous_delay_ms.max(self.delay_at_cut_ms)
        } else {
            self.previous_delay_ms
        };
        let rising = report.queue_delay_ms > reference + 10.0;
        self.previous_delay_ms = report.queue_delay_ms;
        let calm = report.queue_delay_ms < probe::CALM_BELOW_MS && report.video_frames > 0;
        self.calm_reports = if calm { self.calm_reports + 1 } else { 0 };
        let in_grace = self.grace_until.is_some_and(|until| now < until);
        if let Some(decision) = self.on_collapse(now, report, video, reference, in_grace) {
            return decision;
        }

        // Joining a link slower than the start rate. The join grace (above) hides
        // the queue, and the rules below wait a second of reports after it: a
        // 250 kbit/s classroom got 400 kbit/s for 3.3 s, the first pictures a
        // second late and frozen, the sound broken as the link's queue grew. Yet
        // the join burst fills the link at once: pictures arriving at well under
        // what the encoder makes, in two reports with pictures, is the link's rate
        // (on a link faster than the start rate the burst arrives faster still).
        let joining = in_grace && self.last_decrease.is_none() && self.last_increase.is_none();
        let short_of_made = self
            .share_of_made(video)
            .is_some_and(|share| share < JOIN_SHORT_BELOW);
        let previous = self.join_short.take();
        // (Not when the measured capacity has room: the burst lacked frames, not link.)
        let room_for_target = (self.measured.room).is_some_and(|r| r >= self.target_kbps);
        if joining && report.video_frames > 0 && short_of_made && !room_for_target {
            self.join_short = Some(video);
        }
        if let (Some(previous), Some(_)) = (previous, self.join_short) {
            let arriving = (previous + video) / 2.0;
            self.join_short = None;
            self.ceiling = Some((arriving, now));
            return self.decrease(
                now,
                arriving * 0.9,
                format!(
                    "joining: {arriving:.0} kbit/s of pictures arrive of {:.0} made",
                    self.produced_kbps.unwrap_or_default()
                ),
            );
        }
        // Probing past where the link was last full, a queue is the expected answer:
        // take it at two thirds of the line. Waiting for the full line let a probe
        // 10 s after the drop to 300k put pictures over 400 ms late.
        let probing = self
            .ceiling
            .is_some_and(|(kbps, _)| self.target_kbps > PROBING_ABOVE * kbps);
        let line = if probing {
            s.high_delay_ms * 2.0 / 3.0
        } else {
            s.high_delay_ms
        };
        let delayed = report.queue_delay_ms > line && !in_grace;
        // One report over the line can be a keyframe passing; two in a row is a queue,
        // and so is one over twice the line (a report's delay is its quickest frame's).
        self.full_reports = if delayed { self.full_reports + 1 } else { 0 };
        let queue =
            self.full_reports >= 2 || (delayed && report.queue_delay_ms > 2.0 * s.high_delay_ms);

        // Pictures not getting through: well under what is sent arrives, although
        // the delay stays low. The relay's congestion window keeps the backlog in its
        // own buffer (where audio goes first and stale groups are dropped), not in
        // the link's queue, so a link that fell under the target shows up here first:
        // 2 Mbit/s falling to 300k left 450k of pictures starving for 2.5 s.
        // No picture at all in a report counts too, whatever the bytes say: after a
        // drop to 300k the link stayed full (sound first, then the stale backlog)
        // while no picture came for 1.2 s and the target stayed 20% over the link.
        // (Audio-only sends no pictures: none arriving is no news then.)
        let audio_only = self.audio_only();
        let sent = self.sent_kbps();
        let short = self.joined
            && !self.app_limited
            && !in_grace
            && (report.received_kbps < 0.5 * (sent + s.audio_wire_kbps)
                || (report.video_frames == 0 && !audio_only));
        self.short_reports = if short { self.short_reports + 1 } else { 0 };
        if !queue && self.short_reports >= 3 && since(self.last_decrease) >= Duration::from_secs(1)
        {
            self.short_reports = 0;
            self.ceiling = Some((video, now));
            // At least 15% below the target: under a fresh ceiling the target
            // is already about what arrives less a tenth, and no picture arriving
            // says that is still too much.
            return self.decrease(
                now,
                (video * 0.9)
                    .min(self.target_kbps * 0.85)
                    .max(self.target_kbps * 0.15),
                format!("only {:.0} kbit/s arrives", report.received_kbps),
            );
        }

        // Pictures getting through more slowly than the encoder makes them, for a
        // second, with no queue to show for it: the relay's window holds the backlog
        // in its send buffer and drops its stale groups, so the delay of the quickest
        // frame stays low while the picture stutters. Measured on a 2 Mbit/s link:
        // the target grew to 3 Mbit/s on delays of 40-50 ms, the encoder made all of
        // it, 1.94 Mbit/s of pictures arrived, and pictures came every 60 ms instead
        // of 40 with their delay climbing to 450 ms, for five seconds until the drop.
        // Over a second of reports, so that one keyframe does not tip the balance.
        let behind = self.getting_through(self.recent_arriving());
        // (Before the first picture arrives nothing is behind: the first keyframe is
        // on its way. A run of a 2 Mbit/s link once cut from 391 to 60 kbit/s there.)
        // Nor while the target grows: what arrived over the last second then lags
        // what the encoder made over it (a ramp after a rise was cut by half). Once
        // pictures stop getting through growth stops (below), and a second later
        // this rule may act.
        let stuck = self.joined
            && !in_grace
            && since(self.last_increase) >= Duration::from_secs(1)
            && behind.is_some_and(|share| share < STUCK_BELOW);
        self.behind_reports = if stuck { self.behind_reports + 1 } else { 0 };
        if !queue
            && self.behind_reports >= BEHIND_REPORTS
            && since(self.last_decrease) >= Duration::from_millis(1500)
        {
            let arriving = self.recent_arriving();
            self.ceiling = Some((arriving, now));
            // At most halved: a link that fell further shows a queue or starving
            // pictures, and the rules above take it down faster.
            return self.decrease(
                now,
                (arriving * 0.95).max(self.target_kbps * 0.5),
                format!(
                    "{arriving:.0} kbit/s of pictures arrive of {:.0} made",
                    self.produced_kbps.unwrap_or_default()
                ),
            );
        }

        let skipped = report.groups_skipped > 0 && !self.in_outage_backlog(now);
        if queue || skipped {
            // After a cut the queue takes a while to drain (seconds, on a bloated
            // link that just dropped): cut again only while the delay still grows, or
            // when a second later it is not draining (still over 80% of what it was).
            // Skipped groups are the same backlog seen later, so they wait too.
            let last = since(self.last_decrease);
            let first_cut = self.last_decrease.is_none() || last > Duration::from_secs(3);
            let not_draining = last >= Duration::from_secs(1)
                && report.queue_delay_ms > 0.8 * self.delay_at_cut_ms;
            if last < s.step || !(rising || first_cut || not_draining) {
                return Decision::Hold;
            }
            self.delay_at_cut_ms = report.queue_delay_ms;
            let reason = if skipped {
                format!("{} video groups skipped", report.groups_skipped)
            } else {
                format!("queueing delay {:.0} ms", report.queue_delay_ms)
            };
            // Go below what actually arrives, by enough to drain the queue in about a
            // second; never below half of it in one step.
            let to = if report.received_kbps > 0.0 {
                let drain = (report.queue_delay_ms / 2000.0).min(0.25);
                // What the full link carries of pictures: growth slows near it.
                self.ceiling = Some((video, now));
                // A stalled moment understates the link: never below a seventh in
                // one step (a drop from 2 Mbit/s to 300k is then one cut, not two
                // with seconds of starved pictures between them). But behind a
                // queue twice the line the link is busy, so what arrives is its
                // rate: a seventh of 1.7 Mbit/s was 250k, 20% over what a 300k link
                // has for pictures, and the queue took two more cuts and 3 s to go.
                let floor = if report.queue_delay_ms >= 2.0 * s.high_delay_ms {
                    0.0
                } else {
                    self.target_kbps * 0.15
                };
                (video * (0.95 - drain)).max(floor)
            } else {
                self.target_kbps * 0.7
            };
            return self.decrease(now, to.min(self.target_kbps * 0.95), reason);
        }
        // Grow only on evidence of room: pictures that arrived with little delay (a
        // report without any says nothing; growing on those sent 2x a 500 kbit/s link
        // at start-up; but audio-only has only its sound to go by, and waiting for
        // pictures there kept a lesson audio-only for good), from an encoder that
        // uses what it is given. Never beyond half
        // again what arrives (as GCC): the delay shows a full link a second late, by
        // which time 1.2x a step would have doubled the rate (a 2 Mbit/s link got a
        // 3 Mbit/s target, and 720p's keyframe with it, just before a drop).
        // An encoder using well under its target (a still picture, the small rungs'
        // pictures) gives no evidence of room beyond what the link carries now: then
        // grow only to a tenth over what arrives for pictures. Not growing at all kept a
        // 300k link at 180p10 for 15 s: the encoder used 65% of 150 kbit/s, so the
        // target never reached 240p15's, with 60 kbit/s of the link unused.
        let mut cap = if self.app_limited {
            1.1 * video
        } else {
            1.5 * report.received_kbps
        };
        if let Some(room) = self.measured.room {
            cap = cap.min(room);
        }
        // Pictures arriving well above the remembered full link: the link got better,
        // so the memory of its old limit no longer slows growth.
        if let Some((kbps, _)) = self.ceiling
            && video > 1.5 * kbps
        {
            self.ceiling = None;
        }
        // And only while what is made gets through: growing on a low delay alone
        // took a full 2 Mbit/s link's target to 3 Mbit/s (above). This report's
        // arrivals (its last half second), not the second's: while the target
        // grows, the second's lag behind what the encoder made over the same
        // second, and held a ramp after a rise to 2 Mbit/s for a second at a time.
        let keeping_up = self
            .getting_through(video)
            .is_none_or(|share| share >= BEHIND_BELOW);
        if report.queue_delay_ms < s.low_delay_ms
            && (report.video_frames > 0 || audio_only)
            && report.groups_skipped == 0
            && keeping_up
            && since(self.last_decrease) >= s.settle
        {
            // Near what the link carried of pictures when it was last full grow
            // gently, 5% a step: growing 20% a step into
            // it filled the link again a second or two after each cut, with 300 ms
            // of queue each time. Just past it, 8% a step: 20% from there overshot
            // by half before the delay showed. Elsewhere grow fast, so a link that
            // got better is found quickly (one that got much better also shows it:
            // what arrives then clears the memory, above). Near it, a step every
            // other report; elsewhere at every report (they
            // come every `step`, give or take: one a few ms early is not a reason to
            // skip a step, which halved the growth after a rise).
            //
            // For [`CEILING_FRESH`] after the link was last found full the target
            // stays under [`FRESH_SHARE`] of it: that limit is a few seconds old, and
            // probing it at once, even 5% a step, put 130-190 ms of queue (and
            // pictures over 400 ms late) on a 300 kbit/s link every few seconds. After
            // that the memory stays and growth probes gently through it; a link that
            // got better is found sooner by padding (see [`probe`]), or when what
            // arrives outgrows it.
            let (factor, every) = match self.ceiling {
                Some((kbps, at)) => {
                    if now.saturating_sub(at) < CEILING_FRESH {
                        // (Never below the lowest rung: audio-only would stay so.)
                        cap = cap.min((FRESH_SHARE * kbps).max(f64::from(ladder::min_kbps())));
                    }
                    let near = self.target_kbps / kbps.max(1.0);
                    if (0.8..1.05).contains(&near) {
                        (1.05, s.step * 2)
                    } else if (1.05..1.3).contains(&near) {
                        (1.08, s.step * 2)
                    } else {
                        (s.increase_factor, s.step.mul_f64(0.8))
                    }
                }
                None => (s.increase_factor, s.step.mul_f64(0.8)),
            };
            let to = self.clamp((self.target_kbps * factor).min(cap));
            if to > self.target_kbps && since(self.last_increase) >= every {
                self.target_kbps = to;
                self.last_increase = Some(now);
                return Decision::Increase {
                    to_kbps: self.target_kbps(),
                };
            }
        }
        Decision::Hold
    }
}

/// Time from `t` to `now`; forever when `t` never happened.
fn elapsed(now: Duration, t: Option<Duration>) -> Duration {
    t.map_or(Duration::MAX, |t| now.saturating_sub(t))
}

#[cfg(test)]
mod tests;

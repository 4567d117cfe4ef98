//! The classrooms listening to one teacher: a controller each, the encoder follows
//! the slowest.

use std::time::Duration;

use super::{AbrController, AbrSettings, Decision, ReceiverReport};

/// One controller per classroom; the encoder follows the slowest box that has
/// reported recently. NOTE: with a single encoding, one slow school lowers the picture
/// for all; the relay still skips stale groups per subscriber so its latency stays
/// bounded for everyone. Simulcast (a rendition per rung) would remove the coupling.
#[derive(Debug)]
pub struct ReceiverSet {
    settings: AbrSettings,
    boxes: std::collections::BTreeMap<String, (AbrController, Duration)>,
    /// A box silent this long no longer counts.
    pub forget_after: Duration,
    /// The latest [`Self::set_encoder`], for boxes that join after it.
    encoder: (bool, Option<f64>),
}

impl ReceiverSet {
    pub fn new(settings: AbrSettings) -> Self {
        Self {
            settings,
            boxes: Default::default(),
            forget_after: Duration::from_secs(30),
            encoder: (false, None),
        }
    }

    /// Whether `box_id` has reported before (a new box wants a keyframe to join on).
    pub fn knows(&self, box_id: &str) -> bool {
        self.boxes.contains_key(box_id)
    }

    /// A report from `box_id`; returns that box's decision.
    pub fn on_report(&mut self, now: Duration, box_id: &str, report: &ReceiverReport) -> Decision {
        let (controller, last) = self.boxes.entry(box_id.to_string()).or_insert_with(|| {
            // A box that joins learns what the encoder does now; later changes reach
            // it through `set_encoder`.
            let mut controller = AbrController::new(self.settings.clone());
            controller.set_app_limited(self.encoder.0);
            controller.set_produced(self.encoder.1);
            (controller, now)
        });
        *last = now;
        controller.on_report(now, report)
    }

    /// See [`AbrController::expect_burst`]; applies to every box.
    pub fn expect_burst(&mut self, now: Duration, for_how_long: Duration) {
        for (controller, _) in self.boxes.values_mut() {
            controller.expect_burst(now, for_how_long);
        }
    }

    /// What the encoder, shared by every box, does with its target: see
    /// [`AbrController::set_app_limited`] and [`AbrController::set_produced`].
    pub fn set_encoder(&mut self, app_limited: bool, produced_kbps: Option<f64>) {
        self.encoder = (app_limited, produced_kbps);
        for (controller, _) in self.boxes.values_mut() {
            controller.set_app_limited(app_limited);
            controller.set_produced(produced_kbps);
        }
    }

    pub fn on_tick(&mut self, now: Duration) {
        let forget = self.forget_after;
        self.boxes
            .retain(|_, (_, last)| now.saturating_sub(*last) < forget);
        for (controller, _) in self.boxes.values_mut() {
            controller.on_tick(now);
        }
    }

    /// Padding to send at `now`, kbit/s (0: none): a probe for a better link when the
    /// box that sets the target wants one (see [`super::probe`]). Every box is told,
    /// so none takes the padding for pictures.
    pub fn padding_kbps(&mut self, now: Duration) -> f64 {
        let sending = self
            .boxes
            .values()
            .map(|(c, _)| c.padding_kbps(now))
            .fold(0.0, f64::max);
        if sending > 0.0 {
            return sending;
        }
        let slowest = self
            .boxes
            .values()
            .map(|(c, _)| c)
            .min_by_key(|c| c.target_kbps());
        let Some(kbps) = slowest.and_then(|c| c.wants_probe(now)) else {
            return 0.0;
        };
        tracing::debug!(
            kbps,
            at_ms = now.as_millis() as u64,
            "probe: padding starts"
        );
        for (controller, _) in self.boxes.values_mut() {
            controller.pad(now, kbps);
        }
        kbps
    }

    /// The bitrate to encode at: the lowest target among boxes that are listening
    /// (silent boxes hold their last value, so an outage does not ramp others up).
    pub fn target_kbps(&self) -> Option<u32> {
        self.boxes.values().map(|(c, _)| c.target_kbps()).min()
    }

    /// What the pictures got lately at the box that got least, kbit/s.
    pub fn arriving_kbps(&self) -> Option<u32> {
        self.boxes.values().map(|(c, _)| c.arriving_kbps()).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(kbps: f64, delay_ms: f64) -> ReceiverReport {
        ReceiverReport {
            received_kbps: kbps,
            queue_delay_ms: delay_ms,
            video_frames: 4,
            ..Default::default()
        }
    }

    #[test]
    fn the_slowest_box_probes_and_every_box_discounts_the_padding() {
        let mut set = ReceiverSet::new(AbrSettings::default());
        let mut now = Duration::ZERO;
        let mut step = |set: &mut ReceiverSet, slow: ReceiverReport, fast: ReceiverReport| {
            now += Duration::from_millis(250);
            set.set_encoder(false, set.target_kbps().map(f64::from));
            set.on_report(now, "slow", &slow);
            set.on_report(now, "fast", &fast);
            now
        };
        // The slow school's link is full at 300 kbit/s (the start rate is 800), and
        // then calm; the fast one carries all that is sent.
        for _ in 0..8 {
            let target = f64::from(set.target_kbps().unwrap_or(800));
            step(&mut set, report(300.0, 300.0), report(target + 60.0, 5.0));
        }
        let mut padding = 0.0;
        for _ in 0..40 {
            let target = f64::from(set.target_kbps().unwrap());
            let now = step(&mut set, report(300.0, 5.0), report(target + 60.0, 5.0));
            padding = set.padding_kbps(now);
            if padding > 0.0 {
                break;
            }
        }
        assert!(padding > 0.0, "no probe in 10 s of calm");
        // The fast school gets the padding too; it is not taken for pictures there.
        let target = set.target_kbps().unwrap();
        let now = step(
            &mut set,
            report(300.0, 5.0),
            report(f64::from(target) + 60.0 + padding, 5.0),
        );
        assert!(set.padding_kbps(now) > 0.0, "still probing");
        let fast = &set.boxes["fast"].0;
        assert!(
            fast.arriving_kbps() <= target + 10,
            "the fast box counts {} kbit/s of pictures of {target}",
            fast.arriving_kbps()
        );
    }
}

//! The classrooms listening to one teacher: a controller each, and at most two
//! encodings of the picture (simulcast) so that one slow school does not hold the
//! others down.
//!
//! Every classroom starts on the [`Layer::Main`] encoding, which follows the slowest
//! classroom on it. A classroom whose own controller asks for well over that rate for
//! a while (its link carries all it is sent, with no queue: pictures arriving set its
//! target up to half again what arrives, and padding probes show more) moves to a
//! second encoding, [`Layer::Fast`], which follows the slowest classroom on it. It
//! moves back when it no longer asks for much more than the main encoding. The relay
//! forwards each classroom the track of its layer, so the adaptation is per
//! subscriber while the teacher's machine runs two encoders at most (a Raspberry Pi's
//! budget; a third school in between gets the lower of the two it could take).

use std::{collections::BTreeMap, time::Duration};

use super::{AbrController, AbrSettings, Decision, ReceiverReport, ladder};

/// One encoding of the lesson's picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Layer {
    /// Follows the slowest classroom; the only one while the classrooms agree.
    Main,
    /// For the classrooms that can take well over what the main one carries.
    Fast,
}

impl Layer {
    pub const ALL: [Layer; 2] = [Layer::Main, Layer::Fast];

    fn index(self) -> usize {
        self as usize
    }
}

/// A classroom asking for this multiple of the main encoding's rate...
pub const SPLIT_ABOVE: f64 = 1.3;
/// ...for this long moves to the fast one (a probe's moment of room is not enough).
pub const SPLIT_AFTER: Duration = Duration::from_secs(3);
/// A classroom on the fast encoding asking for less than this multiple of the main
/// one's rate moves back: a second encoder for a few percent is not worth it.
pub const MERGE_BELOW: f64 = 1.15;
/// Evidence of room is what arrived (pictures and padding, less the sound) in a
/// report with next to no queue, over this long.
pub const SHOWN_FOR: Duration = Duration::from_secs(10);
/// A classroom that asks for more than the main encoding but has not shown room for
/// it gets padding (see [`super::probe`]) this often, at the rate it asks for.
pub const SPLIT_PROBE_EVERY: Duration = Duration::from_secs(10);

/// A classroom moved back does not move up again for this long: its link was found
/// unable to take the fast encoding, and each move costs a keyframe.
pub const REJOIN_AFTER: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub(super) struct Receiver {
    pub(super) controller: AbrController,
    last_report: Duration,
    layer: Layer,
    /// Since when it has asked for [`SPLIT_ABOVE`] the main rate.
    asking_since: Option<Duration>,
    moved_back_at: Option<Duration>,
    /// The most that arrived lately with next to no queue (see [`SHOWN_FOR`]),
    /// kbit/s, and when.
    shown: Option<(f64, Duration)>,
}

impl Receiver {
    /// Onto `layer`, whose encoder does what `(app_limited, produced_kbps)` say (see
    /// [`ReceiverSet::set_encoder`]).
    fn move_to(&mut self, layer: Layer, (app_limited, produced_kbps): (bool, Option<f64>)) {
        self.layer = layer;
        self.asking_since = None;
        self.controller.set_app_limited(app_limited);
        self.controller.set_produced(produced_kbps);
    }

    /// Room shown lately, kbit/s of pictures.
    fn shown(&self, now: Duration) -> f64 {
        self.shown
            .filter(|(_, at)| now.saturating_sub(*at) < SHOWN_FOR)
            .map_or(0.0, |(kbps, _)| kbps)
    }
}

impl AbrController {
    /// No higher than `kbps` (a box moving to a new encoding starts at what it showed
    /// room for; never below the lowest rung).
    fn limit_to(&mut self, kbps: f64) {
        self.target_kbps = self
            .target_kbps
            .min(self.clamp(kbps.max(f64::from(ladder::min_kbps()))));
    }
}

/// One controller per classroom; each encoding follows the slowest box on it that has
/// reported recently.
#[derive(Debug)]
pub struct ReceiverSet {
    settings: AbrSettings,
    pub(super) boxes: BTreeMap<String, Receiver>,
    /// A box silent this long no longer counts.
    pub forget_after: Duration,
    /// Whether a second encoding may be used (the sender can run one).
    pub simulcast: bool,
    /// The latest [`Self::set_encoder`] per layer, for boxes that join or move to it.
    encoders: [(bool, Option<f64>); 2],
    /// No padding for a box asking to move up before this.
    next_split_probe: Duration,
}

impl ReceiverSet {
    pub fn new(settings: AbrSettings) -> Self {
        Self {
            settings,
            boxes: Default::default(),
            forget_after: Duration::from_secs(30),
            simulcast: false,
            encoders: [(false, None); 2],
            next_split_probe: Duration::ZERO,
        }
    }

    /// Whether `box_id` has reported before (a new box wants a keyframe to join on).
    pub fn knows(&self, box_id: &str) -> bool {
        self.boxes.contains_key(box_id)
    }

    /// The encoding `box_id` is on.
    pub fn layer_of(&self, box_id: &str) -> Option<Layer> {
        self.boxes.get(box_id).map(|r| r.layer)
    }

    /// The boxes on `layer`, by name.
    pub fn boxes_on(&self, layer: Layer) -> Vec<String> {
        self.boxes
            .iter()
            .filter(|(_, r)| r.layer == layer)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// A report from `box_id`; returns that box's decision.
    pub fn on_report(&mut self, now: Duration, box_id: &str, report: &ReceiverReport) -> Decision {
        let receiver = self.boxes.entry(box_id.to_string()).or_insert_with(|| {
            // A box that joins learns what the encoder does now; later changes reach
            // it through `set_encoder`.
            let mut receiver = Receiver {
                controller: AbrController::new(self.settings.clone()),
                last_report: now,
                layer: Layer::Main,
                asking_since: None,
                moved_back_at: None,
                shown: None,
            };
            receiver.move_to(Layer::Main, self.encoders[Layer::Main.index()]);
            receiver
        });
        receiver.last_report = now;
        if report.queue_delay_ms < super::probe::STOP_AT_MS {
            let video = report.received_kbps - self.settings.audio_wire_kbps;
            if video >= receiver.shown(now) {
                receiver.shown = Some((video, now));
            }
        }
        receiver.controller.on_report(now, report)
    }

    /// The sound now takes `kbps` of every link (see [`super::sound`]): what arrives
    /// less this is what the pictures got.
    pub fn set_audio_wire_kbps(&mut self, kbps: f64) {
        self.settings.audio_wire_kbps = kbps;
        for r in self.boxes.values_mut() {
            r.controller.settings.audio_wire_kbps = kbps;
        }
    }

    /// See [`AbrController::expect_burst`]; applies to every box on `layer`.
    pub fn expect_burst(&mut self, layer: Layer, now: Duration, for_how_long: Duration) {
        for r in self.boxes.values_mut().filter(|r| r.layer == layer) {
            r.controller.expect_burst(now, for_how_long);
        }
    }

    /// What the encoder of `layer` does with its target: see
    /// [`AbrController::set_app_limited`] and [`AbrController::set_produced`].
    pub fn set_encoder(&mut self, layer: Layer, app_limited: bool, produced_kbps: Option<f64>) {
        self.encoders[layer.index()] = (app_limited, produced_kbps);
        for r in self.boxes.values_mut().filter(|r| r.layer == layer) {
            r.controller.set_app_limited(app_limited);
            r.controller.set_produced(produced_kbps);
        }
    }

    pub fn on_tick(&mut self, now: Duration) {
        let forget = self.forget_after;
        self.boxes
            .retain(|_, r| now.saturating_sub(r.last_report) < forget);
        for r in self.boxes.values_mut() {
            r.controller.on_tick(now);
        }
    }

    /// Move boxes between the encodings (see the module's notes); returns the boxes
    /// that moved. A box that moves gets a second of join grace: it starts on a new
    /// track with a keyframe.
    pub fn regroup(&mut self, now: Duration) -> Vec<String> {
        let mut moved = Vec::new();
        let main = self.target_kbps(Layer::Main).map(f64::from);
        for (name, r) in self.boxes.iter_mut() {
            let target = f64::from(r.controller.target_kbps());
            let to = match (r.layer, main) {
                // No box left on the main encoding (the slow one went away): the
                // fast one becomes the main one.
                (Layer::Fast, None) => Layer::Main,
                (Layer::Fast, Some(main)) if target < MERGE_BELOW * main => Layer::Main,
                (Layer::Main, Some(main))
                    if self.simulcast
                        && target >= SPLIT_ABOVE * main
                        && r.shown(now) >= SPLIT_ABOVE * main
                        && target >= f64::from(ladder::min_kbps()) =>
                {
                    let recently_back = r
                        .moved_back_at
                        .is_some_and(|at| now.saturating_sub(at) < REJOIN_AFTER);
                    let since = *r.asking_since.get_or_insert(now);
                    if !recently_back && now.saturating_sub(since) >= SPLIT_AFTER {
                        Layer::Fast
                    } else {
                        Layer::Main
                    }
                }
                (layer, _) => {
                    r.asking_since = None;
                    layer
                }
            };
            if to == r.layer {
                continue;
            }
            if to == Layer::Main && main.is_some() {
                r.moved_back_at = Some(now);
            }
            if to == Layer::Fast {
                // Never above what it showed room for.
                r.controller.limit_to(r.shown(now));
            }
            r.move_to(to, self.encoders[to.index()]);
            r.controller.expect_burst(now, Duration::from_secs(1));
            moved.push(name.clone());
        }
        if !moved.is_empty() {
            tracing::info!(
                fast = ?self.boxes_on(Layer::Fast),
                main = ?self.boxes_on(Layer::Main),
                "classrooms regrouped"
            );
        }
        moved
    }

    /// Every box back on the main encoding (the second one stopped); the boxes that
    /// moved are not kept from moving up again.
    pub fn regroup_all_main(&mut self) {
        let main = self.encoders[Layer::Main.index()];
        for r in self.boxes.values_mut().filter(|r| r.layer == Layer::Fast) {
            r.move_to(Layer::Main, main);
        }
    }

    /// Padding to send at `now`, kbit/s (0: none): a probe for a better link when the
    /// box that sets an encoding's target wants one (see [`super::probe`]). Every box
    /// is told, so none takes the padding for pictures.
    pub fn padding_kbps(&mut self, now: Duration) -> f64 {
        let sending = self
            .boxes
            .values()
            .map(|r| r.controller.padding_kbps(now))
            .fold(0.0, f64::max);
        if sending > 0.0 {
            return sending;
        }
        let wanted = Layer::ALL.iter().find_map(|&layer| {
            self.on(layer)
                .min_by_key(|c| c.target_kbps())
                .and_then(|c| c.wants_probe(now))
        });
        let Some(kbps) = wanted.or_else(|| self.split_probe(now)) else {
            return 0.0;
        };
        tracing::debug!(
            kbps,
            at_ms = now.as_millis() as u64,
            "probe: padding starts"
        );
        for r in self.boxes.values_mut() {
            r.controller.pad(now, kbps);
        }
        kbps
    }

    /// Padding for a box on the main encoding that asks for well over it but has not
    /// shown the room (it gets only the main encoding's pictures): at the rate it asks
    /// for, every [`SPLIT_PROBE_EVERY`].
    fn split_probe(&mut self, now: Duration) -> Option<f64> {
        let main = f64::from(self.target_kbps(Layer::Main)?);
        if !self.simulcast || now < self.next_split_probe {
            return None;
        }
        let asks = self
            .boxes
            .values()
            .filter(|r| r.layer == Layer::Main && !r.controller.is_silent())
            .map(|r| f64::from(r.controller.target_kbps()))
            .filter(|&target| target >= SPLIT_ABOVE * main)
            .fold(0.0, f64::max);
        let shown_enough = self
            .boxes
            .values()
            .filter(|r| r.layer == Layer::Main)
            .all(|r| {
                r.shown(now) >= SPLIT_ABOVE * main
                    || f64::from(r.controller.target_kbps()) < SPLIT_ABOVE * main
            });
        if asks == 0.0 || shown_enough {
            return None;
        }
        self.next_split_probe = now + SPLIT_PROBE_EVERY;
        Some(asks.min(f64::from(self.settings.max_kbps)))
    }

    /// The bitrate to encode `layer` at: the lowest target among its boxes (silent
    /// boxes hold their last value, so an outage does not ramp others up). None: no
    /// box on it.
    pub fn target_kbps(&self, layer: Layer) -> Option<u32> {
        self.on(layer).map(AbrController::target_kbps).min()
    }

    /// What the pictures of `layer` got lately at the box on it that got least, kbit/s.
    pub fn arriving_kbps(&self, layer: Layer) -> Option<u32> {
        self.on(layer).map(AbrController::arriving_kbps).min()
    }

    /// The controllers of the boxes on `layer`.
    fn on(&self, layer: Layer) -> impl Iterator<Item = &AbrController> {
        self.boxes
            .values()
            .filter(move |r| r.layer == layer)
            .map(|r| &r.controller)
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
            set.set_encoder(
                Layer::Main,
                false,
                set.target_kbps(Layer::Main).map(f64::from),
            );
            set.on_report(now, "slow", &slow);
            set.on_report(now, "fast", &fast);
            now
        };
        // The slow school's link is full at 300 kbit/s (the start rate is 800), and
        // then calm; the fast one carries all that is sent.
        for _ in 0..8 {
            let target = f64::from(set.target_kbps(Layer::Main).unwrap_or(800));
            step(&mut set, report(300.0, 300.0), report(target + 60.0, 5.0));
        }
        let mut padding = 0.0;
        for _ in 0..40 {
            let target = f64::from(set.target_kbps(Layer::Main).unwrap());
            let now = step(&mut set, report(300.0, 5.0), report(target + 60.0, 5.0));
            padding = set.padding_kbps(now);
            if padding > 0.0 {
                break;
            }
        }
        assert!(padding > 0.0, "no probe in 10 s of calm");
        // The fast school gets the padding too; it is not taken for pictures there.
        let target = set.target_kbps(Layer::Main).unwrap();
        let now = step(
            &mut set,
            report(300.0, 5.0),
            report(f64::from(target) + 60.0 + padding, 5.0),
        );
        assert!(set.padding_kbps(now) > 0.0, "still probing");
        let fast = &set.boxes["fast"].controller;
        assert!(
            fast.arriving_kbps() <= target + 10,
            "the fast box counts {} kbit/s of pictures of {target}",
            fast.arriving_kbps()
        );
    }
}

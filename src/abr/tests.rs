use super::*;

mod capacity;
mod collapse;
mod outage;
mod probe;
mod simulcast;

/// A fluid model of a bottleneck with a queue: what a receiver would report.
struct SimLink {
    capacity_kbps: f64,
    queue_kbit: f64,
    loss: f64,
    /// Whether the box reports its link's capacity (see [`capacity`]), and how it
    /// reads: its true value times this.
    measured: Option<f64>,
}

impl SimLink {
    /// Advance `dt` with the sender at `send_kbps` (video + 32k audio) and
    /// `padding_kbps`, which goes last and is dropped rather than queued (as at the
    /// relay).
    fn step(&mut self, send_kbps: f64, padding_kbps: f64, dt: f64) -> ReceiverReport {
        let offered = send_kbps + 32.0;
        let delivered = if self.capacity_kbps <= 0.0 {
            0.0
        } else {
            (offered + self.queue_kbit / dt).min(self.capacity_kbps)
        };
        let padding = padding_kbps.min(self.capacity_kbps - delivered).max(0.0);
        // Groups older than the latency budget are skipped by moq-net, so the queue
        // never holds much more than half a second of data.
        let cap = self.capacity_kbps.max(300.0) * 0.5;
        self.queue_kbit = (self.queue_kbit + (offered - delivered) * dt).clamp(0.0, cap);
        let queue_delay_ms = if self.capacity_kbps > 0.0 {
            self.queue_kbit / self.capacity_kbps * 1000.0
        } else {
            f64::INFINITY
        };
        ReceiverReport {
            received_kbps: (delivered + padding) * (1.0 - self.loss),
            queue_delay_ms,
            groups_skipped: u64::from(queue_delay_ms > 400.0),
            video_frames: 5,
            codecs: Vec::new(),
            capacity_kbps: self
                .measured
                .filter(|_| self.capacity_kbps > 0.0)
                .map(|reads| reads * self.capacity_kbps),
            fell_kbps: None,
        }
    }
}

/// Run the controller against `capacity(t)` for `secs`; returns target over time.
fn simulate(capacity: impl Fn(f64) -> f64, loss: f64, secs: f64) -> Vec<(f64, f64, f64)> {
    simulate_with(None, capacity, loss, secs)
}

/// [`simulate`], with the box reporting its link's capacity times `measured`.
fn simulate_with(
    measured: Option<f64>,
    capacity: impl Fn(f64) -> f64,
    loss: f64,
    secs: f64,
) -> Vec<(f64, f64, f64)> {
    let mut abr = AbrController::new(AbrSettings::default());
    let mut link = SimLink {
        capacity_kbps: capacity(0.0),
        queue_kbit: 0.0,
        loss,
        measured,
    };
    let dt = 0.25;
    let mut out = Vec::new();
    let mut t = 0.0;
    while t < secs {
        link.capacity_kbps = capacity(t);
        let now = Duration::from_secs_f64(t);
        let padding = probe(&mut abr, now);
        let report = link.step(abr.target_kbps() as f64, padding, dt);
        if link.capacity_kbps > 0.0 {
            abr.on_report(now, &report);
        } else {
            abr.on_tick(now);
        }
        out.push((t, abr.target_kbps() as f64, report.queue_delay_ms));
        t += dt;
    }
    out
}

/// What a sender of one box does: start a probe when the controller wants one, and
/// send the padding it asks for (kbit/s).
fn probe(abr: &mut AbrController, now: Duration) -> f64 {
    if let Some(kbps) = abr.wants_probe(now) {
        abr.pad(now, kbps);
    }
    abr.padding_kbps(now)
}

/// A link of `otherwise` kbit/s that is `during` kbit/s for `when` (seconds).
fn dip(when: std::ops::Range<f64>, during: f64, otherwise: f64) -> impl Fn(f64) -> f64 {
    move |t| if when.contains(&t) { during } else { otherwise }
}

fn at(series: &[(f64, f64, f64)], t: f64) -> (f64, f64) {
    let p = series.iter().find(|p| p.0 >= t).unwrap();
    (p.1, p.2)
}

#[test]
fn converges_below_a_constant_link() {
    let s = simulate(|_| 500.0, 0.0, 30.0);
    let late: Vec<_> = s.iter().filter(|p| p.0 >= 15.0).collect();
    let mean = late.iter().map(|p| p.1).sum::<f64>() / late.len() as f64;
    assert!((300.0..=500.0).contains(&mean), "mean target {mean}");
    let worst = late.iter().map(|p| p.2).fold(0.0, f64::max);
    assert!(worst <= 500.0, "queue delay reached {worst} ms");
}

#[test]
fn start_up_above_the_link_does_not_grow_through_the_grace() {
    // Start at 800 on a 500 kbit/s link: the join grace hides the queue, so it
    // must not be read as room; the first cut comes as the grace ends.
    let s = simulate(|_| 500.0, 0.0, 4.0);
    let peak = s.iter().map(|p| p.1).fold(0.0, f64::max);
    assert_eq!(peak, 800.0, "grew to {peak} kbit/s during the grace");
    let (after, _) = at(&s, 2.0);
    assert!(after < 500.0, "still at {after} kbit/s 2 s in");
}

#[test]
fn joining_a_link_slower_than_the_start_rate_cuts_in_the_grace() {
    // As measured on const-250k: the encoder makes 400 kbit/s, the join burst fills
    // the link, and 232 kbit/s arrives (198 of it pictures) with 75 ms of queue.
    let joining = |received: f64| {
        let mut abr = AbrController::new(AbrSettings {
            start_kbps: 400,
            ..Default::default()
        });
        abr.set_produced(Some(400.0));
        let mut clock = Duration::ZERO;
        clear_report(&mut abr, &mut clock, 102.0, 0.0, 0);
        let first = clear_report(&mut abr, &mut clock, received, 75.0, 2);
        let second = clear_report(&mut abr, &mut clock, received, 75.0, 1);
        (first, second, abr.target_kbps())
    };
    let (first, second, target) = joining(232.0);
    assert_eq!(first, Decision::Hold, "one report is not enough");
    assert!(matches!(second, Decision::Decrease { .. }), "{second:?}");
    let audio = AbrSettings::default().audio_wire_kbps;
    assert_eq!(target, ((232.0 - audio) * 0.9f64).round() as u32);
    // A link faster than the start rate: the burst arrives faster still.
    let (_, second, target) = joining(600.0);
    assert_eq!(second, Decision::Hold);
    assert_eq!(target, 400);
    // Nor is a picture-limited encoder's shortfall news of the link.
    let mut still = AbrController::new(AbrSettings {
        start_kbps: 400,
        ..Default::default()
    });
    still.set_produced(Some(400.0));
    still.set_app_limited(true);
    let mut clock = Duration::ZERO;
    for _ in 0..3 {
        clear_report(&mut still, &mut clock, 150.0, 75.0, 2);
    }
    assert_eq!(still.target_kbps(), 400);
}

#[test]
fn steps_down_fast_and_back_up_within_seconds() {
    let s = simulate(dip(20.0..40.0, 300.0, 2000.0), 0.0, 60.0);
    let (before, _) = at(&s, 19.5);
    assert!(before > 1200.0, "before the drop: {before}");
    // Within 3 s of the drop the target fits the new link and the queue drains.
    let (after, _) = at(&s, 23.0);
    assert!(after <= 300.0, "3 s after the drop: {after}");
    let (_, delay) = at(&s, 25.0);
    assert!(delay < 200.0, "queue not drained: {delay} ms");
    // Back near the link within 5 s of the recovery: the queue goes, a probe's
    // padding arrives on top of the pictures, and the target takes most of it.
    let (up, _) = at(&s, 45.0);
    assert!(up >= 0.8 * 2000.0 - 32.0, "5 s after the rise: {up}");
}

/// One report a quarter second after the last, with `delay_ms` of queue.
fn clear_report(
    abr: &mut AbrController,
    clock: &mut Duration,
    kbps: f64,
    delay_ms: f64,
    frames: u64,
) -> Decision {
    *clock += Duration::from_millis(250);
    abr.on_report(
        *clock,
        &ReceiverReport {
            received_kbps: kbps,
            queue_delay_ms: delay_ms,
            video_frames: frames,
            ..Default::default()
        },
    )
}

/// A controller grown to `kbps` on a clear link with all it sends arriving, and its
/// clock 4 s later.
fn grown_to(kbps: u32) -> (AbrController, Duration) {
    let mut abr = AbrController::new(AbrSettings::default());
    let mut clock = Duration::ZERO;
    while abr.target_kbps() < kbps {
        let target = f64::from(abr.target_kbps());
        clear_report(&mut abr, &mut clock, target + 56.0, 10.0, 6);
    }
    (abr, clock + Duration::from_secs(4))
}

/// A fresh controller after `reports` clear reports of `kbps` with `frames` pictures.
fn settled(reports: usize, kbps: f64, frames: u64) -> (AbrController, Duration) {
    let mut abr = AbrController::new(AbrSettings::default());
    let mut clock = Duration::ZERO;
    for _ in 0..reports {
        clear_report(&mut abr, &mut clock, kbps, 10.0, frames);
    }
    (abr, clock)
}

#[test]
fn growth_needs_pictures_and_stays_within_half_again_what_arrives() {
    let mut abr = AbrController::new(AbrSettings::default());
    let mut clock = Duration::ZERO;
    let mut report = |abr: &mut AbrController, kbps: f64, frames: u64| {
        clear_report(abr, &mut clock, kbps, 10.0, frames)
    };
    // Nothing has arrived yet: a clear report without pictures is no evidence.
    for _ in 0..8 {
        assert_eq!(report(&mut abr, 0.0, 0), Decision::Hold);
    }
    // An encoder stuck at 1 Mbit/s (a still picture) while the delay stays low:
    // the target settles at 1.5 Mbit/s, not at the ladder's top.
    for _ in 0..80 {
        report(&mut abr, 1000.0, 6);
    }
    assert_eq!(abr.target_kbps(), 1500);
    // The encoder says it is limited by its picture: no growth past what arrives.
    abr.set_app_limited(true);
    for _ in 0..8 {
        assert_eq!(report(&mut abr, 1000.0, 6), Decision::Hold);
    }
    abr.set_app_limited(false);
    assert!(matches!(
        report(&mut abr, 2000.0, 6),
        Decision::Increase { .. }
    ));
}

#[test]
fn a_limited_encoder_still_grows_to_what_the_link_carries() {
    // As measured on 300k: at 180p10 the encoder used 65% of 150 kbit/s while the
    // link carried 232 kbit/s (sound, headers, retransmissions) with little delay.
    // The target reaches 240p15's (172 kbit/s with the way up's margin), and stops
    // a tenth over what the pictures got (232 less the sound's 56).
    let mut abr = AbrController::new(AbrSettings::default());
    let mut clock = Duration::ZERO;
    abr.target_kbps = 150.0;
    abr.set_app_limited(true);
    for _ in 0..80 {
        clear_report(&mut abr, &mut clock, 232.0, 20.0, 3);
    }
    let target = abr.target_kbps();
    let ceiling = (1.1 * (232.0 - AbrSettings::default().audio_wire_kbps)).round() as u32;
    assert!(
        ladder::rung_for(target, ladder::LADDER.iter().find(|r| r.name == "180p10"))
            .is_some_and(|r| r.name == "240p15"),
        "stuck at {target} kbit/s"
    );
    assert!(target <= ceiling, "{target} kbit/s is past what arrives");
}

#[test]
fn pictures_starving_with_no_queue_to_show_cut_the_rate() {
    // The relay's window keeps the link's queue short: after a drop to 300k the
    // delay stays low, but only about 250 kbit/s arrives of 1.5 Mbit/s sent.
    let mut abr = AbrController::new(AbrSettings::default());
    let mut clock = Duration::ZERO;
    let mut report = |abr: &mut AbrController, kbps: f64, frames: u64| {
        clear_report(abr, &mut clock, kbps, 20.0, frames);
        clock
    };
    while abr.target_kbps() < 1400 {
        let target = f64::from(abr.target_kbps());
        report(&mut abr, target + 56.0, 6);
    }
    let kbps = (1..=4)
        .map(|_| {
            report(&mut abr, 250.0, 1);
            abr.target_kbps()
        })
        .find(|&kbps| kbps < 1400)
        .expect("no cut within a second of starving");
    assert!(kbps <= 250, "cut only to {kbps}");
    // A sender whose encoder is idle (a still picture) is not starving.
    let mut still = AbrController::new(AbrSettings::default());
    for _ in 0..8 {
        report(&mut still, 856.0, 6);
    }
    still.set_app_limited(true);
    let before = still.target_kbps();
    for _ in 0..8 {
        report(&mut still, 100.0, 1);
    }
    assert_eq!(still.target_kbps(), before);
}

#[test]
fn a_deep_queue_after_a_drop_cuts_to_what_arrives() {
    // As measured: 1.7 Mbit/s sent when the link fell to 300k; a report with 596 ms
    // of queue and 301 kbit/s arriving. The cut goes under what the pictures can
    // have of 300k (~245 kbit/s less headers), not to a seventh of the old target.
    let (mut abr, clock) = grown_to(1700);
    let cut = abr.on_report(
        clock,
        &ReceiverReport {
            received_kbps: 301.0,
            queue_delay_ms: 596.0,
            video_frames: 3,
            ..Default::default()
        },
    );
    assert!(
        matches!(cut, Decision::Decrease { to_kbps, .. } if to_kbps <= 200),
        "{cut:?}"
    );
}

#[test]
fn a_report_without_pictures_between_two_is_not_a_new_rise() {
    // As measured after a drop to 300k: a cut at 764 ms of queue, a report with no
    // picture (its delay is the sound's: 44 ms), then 723 ms: the same backlog
    // draining, not a new rise, so no third cut.
    let (mut abr, mut clock) = settled(12, 456.0, 5);
    clock += Duration::from_secs(4);
    let deep = |delay_ms: f64, frames: u64| ReceiverReport {
        received_kbps: 254.0,
        queue_delay_ms: delay_ms,
        video_frames: frames,
        ..Default::default()
    };
    assert!(matches!(
        abr.on_report(clock, &deep(764.0, 2)),
        Decision::Decrease { .. }
    ));
    let cut = abr.target_kbps();
    clock += Duration::from_millis(250);
    abr.on_report(clock, &deep(44.0, 0));
    clock += Duration::from_millis(250);
    assert_eq!(abr.on_report(clock, &deep(723.0, 2)), Decision::Hold);
    assert_eq!(abr.target_kbps(), cut);
}

#[test]
fn reports_without_pictures_cut_the_rate() {
    // The link looks full (sound and stale groups), the delay of the sound is low,
    // yet no picture arrives: within a second or so, the target comes down.
    let (mut abr, mut clock) = settled(12, 300.0, 3);
    let before = abr.target_kbps();
    let cut = (0..6)
        .map(|_| clear_report(&mut abr, &mut clock, 300.0, 40.0, 0))
        .position(|d| matches!(d, Decision::Decrease { .. }));
    assert!(cut.is_some_and(|i| i <= 4), "no cut: {cut:?}");
    assert!(abr.target_kbps() < before);
}

#[test]
fn random_loss_without_congestion_does_not_collapse_the_rate() {
    let s = simulate(|_| 2000.0, 0.03, 30.0);
    let (target, _) = at(&s, 29.0);
    assert!(
        target > 1200.0,
        "3% loss on a 2 Mbit/s link collapsed the rate to {target}"
    );
}

#[test]
fn the_slowest_box_sets_the_rate_until_it_goes_away() {
    let mut set = ReceiverSet::new(AbrSettings::default());
    let fine = ReceiverReport {
        received_kbps: 800.0,
        ..Default::default()
    };
    let congested = ReceiverReport {
        received_kbps: 300.0,
        queue_delay_ms: 300.0,
        ..Default::default()
    };
    // After the start-up grace, two congested reports in a row cut box b's rate.
    for ms in [0, 3000, 3250] {
        let now = Duration::from_millis(ms);
        set.on_report(now, "a", &fine);
        set.on_report(now, "b", &congested);
    }
    // One cut at most halves the rate; box a alone would have grown past 800.
    assert!(
        set.target_kbps(Layer::Main).unwrap() < 600,
        "{:?}",
        set.target_kbps(Layer::Main)
    );
    set.on_tick(Duration::from_secs(40));
    assert_eq!(set.target_kbps(Layer::Main), None);
}

#[test]
fn audio_only_takes_a_second_cut() {
    let (mut abr, mut clock) = settled(8, 456.0, 5);
    let lowest = ladder::min_kbps();
    // Groups skipped while almost nothing arrives, cut after cut.
    let mut targets = vec![abr.target_kbps()];
    for _ in 0..6 {
        clock += Duration::from_secs(4);
        abr.on_report(
            clock,
            &ReceiverReport {
                received_kbps: 60.0,
                queue_delay_ms: 900.0,
                groups_skipped: 2,
                video_frames: 1,
                ..Default::default()
            },
        );
        targets.push(abr.target_kbps());
    }
    // Down to the lowest rung's rate, and from there (only) to audio-only.
    let first_audio_only = targets.iter().position(|&t| t < lowest).unwrap();
    assert_eq!(targets[first_audio_only - 1], lowest, "{targets:?}");
    assert!(first_audio_only >= 2, "{targets:?}");
    // Audio-only sends no pictures, so clear reports carry none: the sound alone
    // arriving without delay brings the picture back.
    clock += Duration::from_secs(4);
    // (Once it is back, pictures come with the sound.)
    for _ in 0..40 {
        let frames = u64::from(abr.target_kbps() >= lowest);
        clear_report(&mut abr, &mut clock, 60.0, 10.0, frames);
    }
    assert!(abr.target_kbps() >= lowest, "still {}", abr.target_kbps());
}

#[test]
fn never_below_the_floor() {
    let s = simulate(|_| 50.0, 0.0, 30.0);
    let (target, _) = at(&s, 29.0);
    assert!(target >= AbrSettings::default().min_kbps as f64);
}

#[test]
fn a_full_link_with_no_queue_to_show_is_not_outgrown() {
    // Measured on 2 Mbit/s: the relay's window keeps the link's queue short, so the
    // delay stayed at 40-50 ms while the target grew to 3 Mbit/s, the encoder made
    // all of it and 1.94 Mbit/s of pictures arrived. Here the encoder makes its
    // target, pictures arrive with 3% of headers, and the link carries 2 Mbit/s.
    let audio = AbrSettings::default().audio_wire_kbps;
    let mut abr = AbrController::new(AbrSettings::default());
    let mut clock = Duration::ZERO;
    let mut run = |abr: &mut AbrController, link: f64, secs: u32| {
        (0..secs * 4)
            .map(|_| {
                let target = f64::from(abr.target_kbps());
                abr.set_produced(Some(target));
                clear_report(abr, &mut clock, (target * 1.03 + audio).min(link), 40.0, 6);
                f64::from(abr.target_kbps())
            })
            .collect::<Vec<_>>()
    };
    let targets = run(&mut abr, 2000.0, 30);
    let carried = 2000.0 - audio;
    let late = &targets[40..];
    let mean = late.iter().sum::<f64>() / late.len() as f64;
    assert!(
        mean <= 1.1 * carried,
        "mean target {mean:.0} on {carried:.0} kbit/s"
    );
    let longest_over = late
        .split(|&t| t <= 1.3 * carried)
        .map(<[f64]>::len)
        .max()
        .unwrap_or(0);
    assert!(
        longest_over <= 6,
        "{longest_over} reports over 1.3x the link"
    );
    // Growth stops once what is made no longer gets through, before any cut.
    let highest = targets.iter().copied().fold(0.0, f64::max);
    assert!(highest <= 1.3 * carried, "target reached {highest:.0}");
    // All of it gets through on a better link: nothing holds the growth back.
    let targets = run(&mut abr, 10_000.0, 15);
    assert_eq!(targets.last().copied(), Some(f64::from(ladder::max_kbps())));
}

#[test]
fn nothing_is_behind_before_the_first_picture() {
    // The first keyframe is on its way: sound arrives, no picture yet, and the
    // encoder has made 391 kbit/s. A run once cut from there to the lowest rung.
    let audio = AbrSettings::default().audio_wire_kbps;
    let mut abr = AbrController::new(AbrSettings::default());
    let mut clock = Duration::ZERO;
    let start = abr.target_kbps();
    abr.set_produced(Some(391.0));
    for _ in 0..8 {
        clear_report(&mut abr, &mut clock, audio, 0.0, 0);
    }
    assert_eq!(abr.target_kbps(), start);
}

#[test]
fn the_encoders_own_lag_does_not_hold_a_ramp() {
    // After a rise from 300k to 2 Mbit/s the target grows a fifth a report. What the
    // encoder made over the last second lags the target, and so does what arrives,
    // which the receiver measures over the last half second, 100 ms later.
    let audio = AbrSettings::default().audio_wire_kbps;
    let mut abr = AbrController::new(AbrSettings::default());
    let mut clock = Duration::ZERO;
    let mut given: Vec<f64> = Vec::new();
    let mean_over = |given: &[f64], from_end: usize, len: usize| {
        let end = given.len().saturating_sub(from_end);
        let start = end.saturating_sub(len);
        let slice = &given[start..end];
        slice.iter().sum::<f64>() / slice.len().max(1) as f64
    };
    let padded = std::cell::Cell::new(0.0);
    // A full link keeps a standing queue; a better one has none.
    let mut report = |abr: &mut AbrController, link: f64, given: &mut Vec<f64>| {
        let delay = if link < 1000.0 { 30.0 } else { 2.0 };
        // Ten samples a report: one per 25 ms.
        given.extend(std::iter::repeat_n(f64::from(abr.target_kbps()), 10));
        abr.set_produced(Some(0.9 * mean_over(given, 0, 40)));
        let video = (1.03 * 0.9 * mean_over(given, 4, 20)).min(link - audio);
        // Padding fills what is left of the link, no more.
        let padding = probe(abr, clock).min(link - audio - video);
        padded.set(padded.get() + padding / 4.0);
        clear_report(abr, &mut clock, video + audio + padding, delay, 5);
    };
    let slow: Vec<f64> = (0..80)
        .map(|_| {
            report(&mut abr, 300.0, &mut given);
            f64::from(abr.target_kbps())
        })
        .collect();
    let mean = slow[40..].iter().sum::<f64>() / 40.0;
    assert!(mean <= 1.2 * (300.0 - audio), "mean {mean:.0} on 300k");
    // Probes on the full link cost a sliver of it.
    let padded = padded.get();
    assert!(
        padded < 0.05 * 300.0 * 20.0,
        "{padded:.0} kbit of padding in 20 s"
    );
    // After the rise a probe finds the room: the next one starts within
    // PROBE_EVERY + PROBE_FOR, and from there growth is as on a link never full.
    let rise = (1..=24)
        .find(|_| {
            report(&mut abr, 2000.0, &mut given);
            abr.target_kbps() >= 1600
        })
        .map(|reports| reports as f64 / 4.0);
    assert!(
        rise.is_some_and(|s| s <= 5.5),
        "1.6 Mbit/s after {rise:?} s (None: not in 6 s; at {} kbit/s)",
        abr.target_kbps()
    );
}

#[test]
fn a_link_just_found_full_is_not_probed_with_pictures_for_twenty_seconds() {
    // Starting above a 300k link finds it full; clear reports follow.
    let (mut abr, mut clock) = settled(12, 300.0, 3);
    let (ceiling, at) = abr.ceiling.expect("the start found the link full");
    while clock < at + CEILING_FRESH - Duration::from_millis(250) {
        clear_report(&mut abr, &mut clock, 300.0, 10.0, 3);
        assert!(
            f64::from(abr.target_kbps()) <= FRESH_SHARE * ceiling + 0.5,
            "{} kbit/s {:?} after finding {ceiling:.0} kbit/s of pictures",
            abr.target_kbps(),
            clock - at
        );
    }
    // Then growth probes past it again, gently.
    for _ in 0..8 {
        clear_report(&mut abr, &mut clock, 300.0, 10.0, 3);
    }
    let target = f64::from(abr.target_kbps());
    assert!(
        (ceiling..1.2 * ceiling).contains(&target),
        "{target} kbit/s 2 s later"
    );
}

//! The controller with a box that measures its link's capacity (see
//! [`crate::abr::capacity`]).

use super::*;
use crate::abr::capacity::LINK_SHARE;

/// What the pictures may use of a link of `kbps`.
fn room(kbps: f64) -> f64 {
    LINK_SHARE * kbps - AbrSettings::default().audio_wire_kbps
}

#[test]
fn a_measured_link_is_filled_and_never_outgrown() {
    let s = simulate_with(Some(1.0), |_| 500.0, 0.0, 30.0);
    // (The start rate, 800 kbit/s, is cut after two reports that measure the link.)
    for &(t, target, delay) in s.iter().filter(|p| p.0 >= 0.5) {
        assert!(target <= room(500.0) + 1.0, "{t} s: target {target}");
        assert!(t < 3.0 || delay < 50.0, "{t} s: {delay} ms of queue");
    }
    let (end, _) = at(&s, 29.0);
    assert!(end >= 0.95 * room(500.0), "settled at {end}");
    // Without the measure the same link is found by its queue.
    let unmeasured = simulate(|_| 500.0, 0.0, 30.0);
    let worst = unmeasured.iter().map(|p| p.2).fold(0.0, f64::max);
    assert!(worst >= 50.0, "no queue to find it by: {worst} ms");
}

#[test]
fn joining_a_slow_measured_link_cuts_at_once() {
    let s = simulate_with(Some(1.0), |_| 250.0, 0.0, 10.0);
    let (early, _) = at(&s, 0.75);
    assert!(
        early <= room(250.0) + 1.0,
        "three reports in: {early} kbit/s"
    );
    // The start's backlog drains, and no queue builds again.
    let late = s
        .iter()
        .filter(|p| p.0 >= 5.0)
        .map(|p| p.2)
        .fold(0.0, f64::max);
    assert!(late < 50.0, "{late} ms of queue after 5 s");
}

#[test]
fn a_measured_drop_and_rise_are_followed_within_a_second_or_two() {
    let s = simulate_with(Some(1.0), dip(20.0..40.0, 300.0, 2000.0), 0.01, 60.0);
    let (before, _) = at(&s, 19.0);
    assert!(before >= 0.9 * room(2000.0), "before the drop: {before}");
    let (after_drop, _) = at(&s, 20.75);
    assert!(
        after_drop <= 1.1 * room(300.0),
        "three reports after the drop: {after_drop}"
    );
    let (low, _) = at(&s, 39.0);
    assert!(low >= 0.9 * room(300.0), "on 300k: {low}");
    let (up, _) = at(&s, 42.0);
    assert!(up >= 0.9 * room(2000.0), "2 s after the rise: {up}");
}

#[test]
fn no_padding_probes_a_link_whose_capacity_is_measured() {
    let mut abr = AbrController::new(AbrSettings::default());
    let mut link = SimLink {
        capacity_kbps: 300.0,
        queue_kbit: 0.0,
        loss: 0.0,
        measured: Some(1.0),
    };
    // The link found full once (a queue), so that probing would be allowed.
    abr.ceiling = Some((200.0, Duration::ZERO));
    for i in 1..200 {
        let now = Duration::from_millis(250 * i);
        assert_eq!(abr.wants_probe(now), None, "probe at {now:?}");
        abr.set_produced(Some(f64::from(abr.target_kbps())));
        let report = link.step(abr.target_kbps() as f64, 0.0, 0.25);
        abr.on_report(now, &report);
    }
}

#[test]
fn a_capacity_that_reads_high_is_not_taken_again_after_every_cut() {
    // A radio link's bursts make its capacity read twice what it carries: the
    // first cut finds the link by its queue, and the target stays near it.
    let s = simulate_with(Some(2.0), |_| 500.0, 0.0, 60.0);
    let queued: Vec<f64> = s
        .iter()
        .filter(|p| p.0 >= 15.0 && p.2 > 100.0)
        .map(|p| p.0)
        .collect();
    assert!(
        queued.len() <= 8,
        "over 100 ms of queue at {} reports after 15 s: {queued:?}",
        queued.len()
    );
    let late = s.iter().filter(|p| p.0 >= 15.0);
    let mean = late.clone().map(|p| p.1).sum::<f64>() / late.count() as f64;
    assert!((300.0..=500.0).contains(&mean), "mean target {mean}");
}

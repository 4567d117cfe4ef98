//! The controller's probing for a better link (see [`crate::abr::probe`]).

use super::*;
use crate::abr::probe as abr_probe;

/// A controller that found a 300k link full `secs` ago and has had clear reports
/// since, with the encoder making its target.
fn held_by_a_full_link(secs: u64) -> (AbrController, Duration) {
    let (mut abr, mut clock) = settled(12, 300.0, 3);
    let found = abr.ceiling.expect("the start found the link full").1;
    while clock < found + Duration::from_secs(secs) {
        abr.set_produced(Some(f64::from(abr.target_kbps())));
        // The quickest frames meet no queue: the hint a probe waits for.
        clear_report(&mut abr, &mut clock, 300.0, 5.0, 3);
    }
    (abr, clock)
}

#[test]
fn padding_that_arrives_without_a_queue_shows_a_better_link() {
    let (mut abr, mut clock) = held_by_a_full_link(3);
    let (ceiling, _) = abr.ceiling.unwrap();
    let target = f64::from(abr.target_kbps());
    let kbps = abr
        .wants_probe(clock)
        .expect("quiet, and held by the memory");
    assert_eq!(
        kbps,
        abr_probe::PAD_SHARE * ceiling,
        "padding on {ceiling} kbit/s"
    );
    abr.pad(clock, kbps);
    assert_eq!(abr.padding_kbps(clock), kbps);
    let audio = AbrSettings::default().audio_wire_kbps;
    // The first report left before the padding arrived.
    clear_report(&mut abr, &mut clock, 300.0, 10.0, 3);
    assert!(abr.ceiling.is_some());
    // Then the pictures and all the padding, no queue.
    let decision = clear_report(&mut abr, &mut clock, target + audio + kbps, 10.0, 3);
    assert_eq!(abr.ceiling, None, "the old limit is forgotten");
    assert_eq!(abr.padding_kbps(clock), 0.0, "and the padding stops");
    // The target goes most of the way to what the link carried at once.
    let carried = target + kbps;
    assert_eq!(
        decision,
        Decision::Increase {
            to_kbps: (abr_probe::TAKE_SHARE * carried).round() as u32
        }
    );
    // What the pictures got does not count the padding (it decides the rung).
    assert!(
        f64::from(abr.arriving_kbps()) <= 1.05 * carried - kbps,
        "{} kbit/s of pictures",
        abr.arriving_kbps()
    );
    // Growth is as on a link never found full: 20% a report.
    let before = abr.target_kbps();
    for _ in 0..4 {
        abr.set_produced(Some(f64::from(abr.target_kbps())));
        let made = f64::from(abr.target_kbps());
        clear_report(&mut abr, &mut clock, made * 1.03 + audio, 10.0, 3);
    }
    assert!(
        f64::from(abr.target_kbps()) >= 1.7 * f64::from(before),
        "{before} -> {} kbit/s in a second",
        abr.target_kbps()
    );
}

#[test]
fn a_probe_of_a_full_link_stops_at_its_queue_and_cuts_nothing() {
    let (mut abr, mut clock) = held_by_a_full_link(3);
    let ceiling = abr.ceiling.unwrap().0;
    let target = abr.target_kbps();
    let kbps = abr.wants_probe(clock).unwrap();
    abr.pad(clock, kbps);
    // The link is full: a sliver of padding gets through, with the relay's window's
    // queue, 100 ms and then 130 (two reports over the line would cut).
    clear_report(&mut abr, &mut clock, 300.0, 100.0, 3);
    assert_eq!(abr.padding_kbps(clock), 0.0, "a queue stops the padding");
    for delay in [130.0, 130.0, 60.0] {
        let decision = clear_report(&mut abr, &mut clock, 300.0, delay, 3);
        assert_eq!(decision, Decision::Hold, "at {delay} ms");
    }
    assert_eq!(abr.target_kbps(), target);
    assert_eq!(abr.ceiling.unwrap().0, ceiling, "the memory stays");
    // No probe again until the link has been quiet a while.
    assert_eq!(abr.wants_probe(clock), None);
    let mut next = None;
    while next.is_none() && clock < Duration::from_secs(120) {
        abr.set_produced(Some(f64::from(abr.target_kbps())));
        clear_report(&mut abr, &mut clock, 300.0, 5.0, 3);
        next = abr.wants_probe(clock).map(|_| clock);
    }
    assert!(next.is_some(), "probing never resumed");
}

#[test]
fn a_link_that_falls_while_probing_is_still_cut() {
    let (mut abr, mut clock) = held_by_a_full_link(3);
    let target = abr.target_kbps();
    let kbps = abr.wants_probe(clock).unwrap();
    abr.pad(clock, kbps);
    clear_report(&mut abr, &mut clock, 120.0, 300.0, 3);
    let decision = clear_report(&mut abr, &mut clock, 120.0, 400.0, 3);
    assert!(
        matches!(decision, Decision::Decrease { .. }),
        "{decision:?} from {target} kbit/s"
    );
}

#[test]
fn a_link_with_a_standing_queue_is_not_probed() {
    let (mut abr, mut clock) = held_by_a_full_link(3);
    assert!(abr.wants_probe(clock).is_some());
    // One report with the relay's usual 30 ms of queue: not calm for another second.
    clear_report(&mut abr, &mut clock, 300.0, 30.0, 3);
    for _ in 0..abr_probe::CALM_REPORTS - 1 {
        assert_eq!(abr.wants_probe(clock), None);
        clear_report(&mut abr, &mut clock, 300.0, 5.0, 3);
    }
    assert_eq!(abr.wants_probe(clock), None);
    clear_report(&mut abr, &mut clock, 300.0, 5.0, 3);
    assert!(abr.wants_probe(clock).is_some());
}

#[test]
fn no_probe_without_a_memory_of_a_full_link_or_while_it_is_fresh_from_a_cut() {
    // Never found full: growth is fast anyway.
    let (abr, clock) = settled(20, 2000.0, 6);
    assert!(abr.ceiling.is_none());
    assert_eq!(abr.wants_probe(clock), None);
    // Just found full: wait for a quiet while first.
    let (abr, clock) = held_by_a_full_link(1);
    assert_eq!(abr.wants_probe(clock), None);
}

#[test]
fn an_encoder_short_of_its_target_still_gets_a_probe() {
    // 240p15 of a simple picture makes 60% of the target: it cannot show room, so
    // growth stays within a tenth of what arrives; only padding can.
    let (mut abr, mut clock) = held_by_a_full_link(3);
    abr.set_app_limited(true);
    let kbps = abr.wants_probe(clock).expect("a probe");
    abr.pad(clock, kbps);
    let made = 0.6 * f64::from(abr.target_kbps());
    abr.set_produced(Some(made));
    let audio = AbrSettings::default().audio_wire_kbps;
    clear_report(&mut abr, &mut clock, made + audio + kbps, 5.0, 3);
    assert_eq!(abr.ceiling, None);
    assert!(
        f64::from(abr.target_kbps()) >= 0.8 * (made + kbps) - 1.0,
        "{} kbit/s after {:.0} arrived",
        abr.target_kbps(),
        made + kbps
    );
}

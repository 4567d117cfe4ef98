//! The collapse rule: a link that fell far under what is sent, in one report.

use super::*;

/// A controller grown to about 1.7 Mbit/s on a clear link, and its clock.
fn at_full_rate() -> (AbrController, Duration) {
    let (mut abr, mut clock) = grown_to(1700);
    let target = f64::from(abr.target_kbps());
    clear_report(&mut abr, &mut clock, target + 56.0, 4.0, 6);
    (abr, clock)
}

fn report(received_kbps: f64, queue_delay_ms: f64) -> ReceiverReport {
    ReceiverReport {
        received_kbps,
        queue_delay_ms,
        video_frames: 1,
        ..Default::default()
    }
}

#[test]
fn a_drop_is_cut_in_the_first_report_that_shows_it() {
    // As measured on the step trace, half a second after 2 Mbit/s fell to 300k: 389
    // kbit/s arriving, the delay up from 4 to 56 ms, under the queue rule's line.
    let (mut abr, mut clock) = at_full_rate();
    clock += Duration::from_millis(250);
    let cut = abr.on_report(clock, &report(389.0, 56.0));
    // Under what a 300k link has for pictures, never under the lowest rung.
    assert!(
        matches!(cut, Decision::Decrease { to_kbps, .. }
            if (ladder::min_kbps()..=260).contains(&to_kbps)),
        "{cut:?}"
    );
}

#[test]
fn little_arriving_with_a_flat_delay_waits_for_more_reports() {
    // A stalled moment (the encoder, the relay) is no drop: nothing queues.
    let (mut abr, mut clock) = at_full_rate();
    let before = abr.target_kbps();
    clock += Duration::from_millis(250);
    assert_eq!(abr.on_report(clock, &report(389.0, 12.0)), Decision::Hold);
    assert_eq!(abr.target_kbps(), before);
}

#[test]
fn a_climbing_delay_with_most_arriving_is_no_collapse() {
    // A keyframe crossing the link: the delay climbs, arrivals hold up.
    let (mut abr, mut clock) = at_full_rate();
    let before = abr.target_kbps();
    clock += Duration::from_millis(250);
    assert_eq!(
        abr.on_report(clock, &report(f64::from(before) * 0.8, 70.0)),
        Decision::Hold
    );
    assert_eq!(abr.target_kbps(), before);
}

#[test]
fn a_drop_the_box_tells_is_cut_before_any_queue_shows() {
    // A quarter second after the drop: the half second of arrivals still reads
    // 1.3 Mbit/s with no queue, but the box saw its packets come 300 kbit/s apart.
    let (mut abr, mut clock) = at_full_rate();
    clock += Duration::from_millis(250);
    let told = ReceiverReport {
        fell_kbps: Some(300.0),
        ..report(1284.0, 18.0)
    };
    let cut = abr.on_report(clock, &told);
    assert!(
        matches!(cut, Decision::Decrease { to_kbps, .. }
            if (ladder::min_kbps()..=(300 - 56)).contains(&to_kbps)),
        "{cut:?}"
    );
}

#[test]
fn a_fall_to_about_what_is_sent_is_left_to_the_other_rules() {
    // A box reading a fall to 500 kbit/s while 450 are sent: nothing to cut.
    let (mut abr, mut clock) = settled(12, 450.0, 5);
    let before = abr.target_kbps();
    clock += Duration::from_millis(250);
    let told = ReceiverReport {
        fell_kbps: Some(500.0),
        ..report(450.0, 10.0)
    };
    assert!(!matches!(
        abr.on_report(clock, &told),
        Decision::Decrease { .. }
    ));
    assert_eq!(abr.target_kbps(), before);
}

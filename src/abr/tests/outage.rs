//! The controller through an outage (see [`crate::abr::outage`]).

use super::*;

#[test]
fn outage_holds_then_restarts_from_what_arrives() {
    let s = simulate(dip(20.0..25.0, 0.0, 1000.0), 0.0, 40.0);
    let (during, _) = at(&s, 24.0);
    let (before, _) = at(&s, 20.0);
    assert_eq!(during, before, "no change while nothing is heard");
    let (resumed, delay) = at(&s, 30.0);
    assert!(
        resumed > 400.0 && delay < 300.0,
        "after outage: {resumed} kbps, {delay} ms"
    );
}

#[test]
fn the_first_report_after_an_outage_does_not_mean_audio_only() {
    // The box measures arrival over the last second, which is mostly outage.
    let mut abr = AbrController::new(AbrSettings::default());
    let clear = |kbps| ReceiverReport {
        received_kbps: kbps,
        queue_delay_ms: 20.0,
        video_frames: 5,
        ..Default::default()
    };
    let mut t = Duration::ZERO;
    for _ in 0..40 {
        abr.on_report(t, &clear(abr.target_kbps() as f64));
        t += Duration::from_millis(250);
    }
    let before = abr.target_kbps();
    assert!(before > 800, "grew to {before}");
    abr.on_tick(t + Duration::from_secs(2));
    assert!(abr.is_silent());
    abr.on_report(t + Duration::from_secs(5), &clear(6.0));
    let after = abr.target_kbps();
    assert_eq!(
        after,
        AbrSettings::default().start_kbps,
        "restarted at {after}"
    );
    assert!(
        ladder::rung_for(after, None).is_some(),
        "audio-only after an outage"
    );
}

#[test]
fn an_outages_own_backlog_is_not_a_full_link() {
    // A 1 Mbit/s link, an outage, and then the reports that carry its backlog:
    // seconds of delay and the groups the relay skipped meanwhile.
    let (mut abr, mut clock) = settled(40, 1000.0, 5);
    abr.on_tick(clock + Duration::from_secs(2));
    clock += Duration::from_secs(5);
    abr.on_report(clock, &ReceiverReport::default());
    let restarted = abr.target_kbps();
    clock += Duration::from_millis(250);
    let backlog = abr.on_report(
        clock,
        &ReceiverReport {
            received_kbps: 430.0,
            queue_delay_ms: 5000.0,
            groups_skipped: 5,
            video_frames: 1,
            ..Default::default()
        },
    );
    assert_eq!(backlog, Decision::Hold, "restarted at {restarted}");
    assert!(
        abr.ceiling.is_none_or(|(_, at)| at < clock),
        "{:?}",
        abr.ceiling
    );
    // Then the link, as good as before: the target grows past the restart.
    for _ in 0..20 {
        abr.set_produced(Some(f64::from(abr.target_kbps())));
        let kbps = f64::from(abr.target_kbps()) + 40.0;
        clear_report(&mut abr, &mut clock, kbps.min(1000.0), 5.0, 5);
    }
    assert!(abr.target_kbps() > 600, "held at {}", abr.target_kbps());
}

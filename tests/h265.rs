//! The lesson follows what the classrooms decode best: a box that asks for H.265 (a
//! Raspberry Pi 5; here `media.h265 = "prefer"` with x265 and libav's decoder) gets the
//! lesson in H.265, and when a box that cannot decode it joins, the teacher goes back
//! to H.264 for both, while the picture and sound go on. Real x265/x264, QUIC, relay.

mod common;

use std::time::Duration;

use classbox::{auth::Role, config::H265Mode, frame::TrackKind};
use common::*;

fn codec(running: &Running) -> String {
    running.stats.media().codec.unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lesson_switches_to_h265_for_a_box_that_asks_and_back_when_another_cannot() {
    init();
    if !["x265enc", "avdec_h265", "h265parse"]
        .iter()
        .all(|e| classbox::media::probe::has(e))
    {
        panic!(
            "x265enc, avdec_h265 and h265parse are needed (gstreamer1.0-plugins-bad, gstreamer1.0-libav)"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(dir.path(), "127.0.0.1:0").await;
    let mut config = relay.client_config("physics", Role::Box);
    config.classroom.id = "pi5".into();
    config.media.h265 = H265Mode::Prefer;
    let pi5 = start_classroom(config);
    let teacher = start_teacher(relay.client_config("physics", Role::Teacher));

    // H.264 first, then H.265 once the box has asked for it for a few seconds.
    eventually(
        Duration::from_secs(30),
        "the lesson in H.265 on the box that asked",
        || {
            let c = codec(&pi5);
            async move { c.starts_with("H.265") }
        },
    )
    .await;
    assert_eq!(codec(&pi5), "H.265 (avdec_h265)");
    let video = |r: &Running| r.stats.totals(TrackKind::Video).decoded;
    let audio = |r: &Running| r.stats.totals(TrackKind::Audio).decoded;
    let (v0, a0) = (video(&pi5), audio(&pi5));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (v1, a1) = (video(&pi5), audio(&pi5));
    println!(
        "in H.265: {} pictures, {} sound packets decoded in 4 s",
        v1 - v0,
        a1 - a0
    );
    assert!(v1 - v0 >= 40, "H.265 pictures decoded in 4 s: {}", v1 - v0);
    assert!(a1 - a0 >= 150, "sound packets decoded in 4 s: {}", a1 - a0);

    // A box that does not decode H.265 joins: back to H.264, for both.
    let mut config = relay.client_config("physics", Role::Box);
    config.classroom.id = "older".into();
    config.media.h265 = H265Mode::Off;
    let older = start_classroom(config);
    eventually(Duration::from_secs(15), "the lesson back in H.264", || {
        let c = codec(&pi5);
        async move { c.starts_with("H.264") }
    })
    .await;
    eventually(
        Duration::from_secs(15),
        "the older box showing the lesson",
        || {
            let n = video(&older);
            async move { n >= 30 }
        },
    )
    .await;
    let (v2, a2) = (video(&pi5), audio(&pi5));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (v3, a3) = (video(&pi5), audio(&pi5));
    println!(
        "back in H.264: {} pictures, {} sound packets decoded in 4 s",
        v3 - v2,
        a3 - a2
    );
    assert!(
        v3 - v2 >= 40,
        "pictures decoded in 4 s after the switch back: {}",
        v3 - v2
    );
    assert!(
        a3 - a2 >= 150,
        "sound packets in 4 s after the switch back: {}",
        a3 - a2
    );
    assert_eq!(codec(&older), "H.264 (avdec_h264)");

    teacher.stop().await.expect("teacher ran cleanly");
    pi5.stop().await.expect("box ran cleanly");
    older.stop().await.expect("older box ran cleanly");
    relay.stop().await;
}

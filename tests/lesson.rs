//! A real lesson on loopback: teacher -> relay -> classroom with GStreamer test
//! sources, x264/Opus encoding, QUIC (moq-lite) and decoding.

mod common;

use std::time::Duration;

use classbox::{auth::Role, frame::TrackKind};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lesson_flows_from_teacher_through_relay_to_classroom() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(dir.path(), "127.0.0.1:0").await;
    let classroom = start_classroom(relay.client_config("maths", Role::Box));
    let teacher = start_teacher(relay.client_config("maths", Role::Teacher));

    // The teacher may start sending before the classroom has subscribed, and
    // a late joiner starts at the next group: count from the first frame the
    // classroom shows, so a slow start-up (a cold CI machine) is not read as
    // loss on a loopback link.
    let decoded = || classroom.stats.totals(TrackKind::Video).decoded;
    assert!(
        wait_until(Duration::from_secs(15), || decoded() > 0).await,
        "the classroom showed no frame within 15 s"
    );
    let sent_before = teacher.stats.totals(TrackKind::Video).sent_frames;
    let decoded_before = decoded();

    tokio::time::sleep(Duration::from_secs(10)).await;
    let teacher_stats = teacher.stats.clone();
    teacher.stop().await.expect("teacher ran cleanly");
    // Let the last frames in flight arrive and decode.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let sent = teacher_stats.totals(TrackKind::Video).sent_frames - sent_before;
    let video = classroom.stats.totals(TrackKind::Video);
    let decoded_in_window = video.decoded - decoded_before;
    let audio = classroom.stats.totals(TrackKind::Audio);
    let latency = classroom
        .stats
        .latency_summary()
        .expect("latency was measured");
    let ratio = decoded_in_window as f64 / sent as f64;
    println!(
        "decoded {}/{} video frames in 10 s ({:.1}%), audio packets sent {} decoded {}, \
         latency p50 {:.1} ms p95 {:.1} ms max {:.1} ms over {} frames",
        decoded_in_window,
        sent,
        ratio * 100.0,
        teacher_stats.totals(TrackKind::Audio).sent_frames,
        audio.decoded,
        latency.p50_ms,
        latency.p95_ms,
        latency.max_ms,
        latency.samples
    );
    assert!(sent >= 200, "teacher sent only {sent} frames in 10 s");
    assert!(
        ratio >= 0.9,
        "classroom decoded {:.1}% of frames sent",
        ratio * 100.0
    );
    assert!(
        audio.decoded >= 200,
        "audio: only {} packets decoded",
        audio.decoded
    );
    assert_eq!(latency.samples as u64, video.decoded);

    classroom.stop().await.expect("classroom ran cleanly");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classroom_and_teacher_reconnect_after_relay_restart() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(dir.path(), "127.0.0.1:0").await;
    let addr = relay.addr;
    let classroom = start_classroom(relay.client_config("art", Role::Box));
    let teacher = start_teacher(relay.client_config("art", Role::Teacher));
    let decoded = || classroom.stats.totals(TrackKind::Video).decoded;

    assert!(
        wait_until(Duration::from_secs(10), || decoded() > 30).await,
        "lesson did not start"
    );
    relay.stop().await;
    // Same address, same state dir: same certificate and token key.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = decoded();
    let relay = TestRelay::start(dir.path(), &addr.to_string()).await;
    assert!(
        wait_until(Duration::from_secs(15), || decoded() > before + 60).await,
        "frames did not flow again after the relay restart (decoded {} before, {} now)",
        before,
        decoded()
    );
    assert!(
        classroom
            .stats
            .reconnects
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    assert!(
        teacher
            .stats
            .reconnects
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    println!("after restart: decoded {} (was {before})", decoded());

    teacher.stop().await.unwrap();
    classroom.stop().await.unwrap();
    relay.stop().await;
}

//! The classroom seen and heard by the teacher: the return feed goes out from the box
//! while the lesson comes in, over the same relay, and adapts to the teacher's reports.
//! A camera that is missing is replaced by a slate and the feed still flows.

mod common;

use std::time::Duration;

use classbox::{auth::Role, frame::TrackKind};
use common::{TestRelay, start_classroom, start_teacher, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lesson_in_and_return_feed_out_on_loopback() {
    common::init();
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(dir.path(), "127.0.0.1:0").await;
    let mut config = relay.client_config("room", Role::Box);
    config.classroom.id = "room-7".into();
    config.classroom.return_feed = "test".into();
    let classroom = start_classroom(config);
    let teacher = start_teacher(relay.client_config("room", Role::Teacher));

    let lesson = classroom.stats.clone();
    let feed = teacher.stats.feed("room-7");
    let outgoing = classroom.stats.feed("return");
    assert!(
        wait_until(Duration::from_secs(40), || {
            lesson.totals(TrackKind::Video).decoded >= 60
                && feed.totals(TrackKind::Video).decoded >= 45
                && feed.totals(TrackKind::Audio).decoded >= 50
        })
        .await,
        "lesson decoded {} pictures; return feed decoded {} pictures, {} sound packets",
        lesson.totals(TrackKind::Video).decoded,
        feed.totals(TrackKind::Video).decoded,
        feed.totals(TrackKind::Audio).decoded
    );
    // The teacher's reports reach the box: on a clear loopback link its controller
    // raises the feed's bitrate from the 300 kbit/s it starts at.
    assert!(
        wait_until(Duration::from_secs(20), || outgoing.sender().target_kbps
            > 300)
        .await,
        "return feed target stayed at {} kbit/s",
        outgoing.sender().target_kbps
    );
    assert!(
        outgoing.sender().target_kbps <= 800,
        "capped at classroom.return_max_kbps"
    );
    teacher.stop().await.unwrap();
    classroom.stop().await.unwrap();
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_that_fails_is_replaced_by_a_slate() {
    common::init();
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(dir.path(), "127.0.0.1:0").await;
    // An edited capture pipeline whose camera fails after 20 pictures (an unplugged
    // USB webcam); test sources otherwise.
    let pipelines = common::edited_pipelines(
        dir.path(),
        "teacher",
        "${VIDEO_SOURCE} !",
        "${VIDEO_SOURCE} ! identity error-after=20 !",
    );

    let mut config = relay.client_config("room", Role::Box);
    config.classroom.id = "room-8".into();
    config.classroom.return_feed = "test".into();
    config.media.pipelines_dir = Some(pipelines);
    let classroom = start_classroom(config);
    let teacher = start_teacher(relay.client_config("room", Role::Teacher));
    let feed = teacher.stats.feed("room-8");
    // 20 pictures from the camera, then the slate's (on the built-in pipeline), and the
    // camera is tried again every 5 s.
    assert!(
        wait_until(Duration::from_secs(40), || feed
            .totals(TrackKind::Video)
            .decoded
            >= 60)
        .await,
        "the teacher saw {} pictures of the classroom",
        feed.totals(TrackKind::Video).decoded
    );
    assert!(
        classroom.stats.totals(TrackKind::Video).decoded > 0,
        "the lesson goes on"
    );
    teacher.stop().await.unwrap();
    classroom.stop().await.unwrap();
    relay.stop().await;
}

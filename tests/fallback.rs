//! A video pipeline that fails mid-lesson (standing in for a hardware decoder that dies:
//! `identity error-after` errors after N frames) is replaced by the built-in software
//! pipeline; the lesson goes on and the page is told.

mod common;

use std::time::Duration;

use classbox::auth::Role;
use common::{TestRelay, start_classroom, start_teacher, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_video_pipeline_falls_back_to_software_and_the_lesson_goes_on() {
    common::init();
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(dir.path(), "127.0.0.1:0").await;

    // The classroom's video pipeline fails after 45 pictures.
    let pipelines = common::edited_pipelines(
        dir.path(),
        "classroom",
        "! ${VIDEO_DECODER}",
        "! ${VIDEO_DECODER} ! identity error-after=45",
    );

    let mut config = relay.client_config("room", Role::Box);
    config.media.pipelines_dir = Some(pipelines);
    let classroom = start_classroom(config);
    let teacher = start_teacher(relay.client_config("room", Role::Teacher));

    let stats = classroom.stats.clone();
    assert!(
        wait_until(Duration::from_secs(30), || stats.media().notice.is_some()).await,
        "no fallback after the pipeline failed; decoded {}",
        stats.totals(classbox::frame::TrackKind::Video).decoded
    );
    let notice = stats.media().notice.unwrap();
    assert!(notice.contains("built-in software"), "{notice}");
    let at_failure = stats.totals(classbox::frame::TrackKind::Video).decoded;
    assert!(
        at_failure >= 30,
        "pictures before the failure: {at_failure}"
    );
    assert!(
        wait_until(Duration::from_secs(30), || stats
            .totals(classbox::frame::TrackKind::Video)
            .decoded
            >= at_failure + 60)
        .await,
        "the lesson did not go on after the fallback: {} -> {}",
        at_failure,
        stats.totals(classbox::frame::TrackKind::Video).decoded
    );
    assert_eq!(stats.media().profile, "software");
    teacher.stop().await.unwrap();
    classroom.stop().await.unwrap();
    relay.stop().await;
}

//! The classroom display while no lesson runs: the classroom's name, the page's address
//! and the link's state; the lesson replaces it, and it comes back when the lesson ends.

mod common;

use std::{sync::Arc, time::Duration};

use classbox::{auth::Role, frame::TrackKind, roles, stats::LessonStats};
use common::{TestRelay, start_teacher, wait_until};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_display_shows_who_and_where_the_box_is_between_lessons() {
    common::init();
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(dir.path(), "127.0.0.1:0").await;
    let mut config = relay.client_config("room", Role::Box);
    config.classroom.name = "Room 9".into();
    config.classroom.web_listen = "127.0.0.1:0".into();
    let stats = Arc::new(LessonStats::default());
    let web = roles::classroom::bind_web(
        &config,
        dir.path().join("classbox.toml"),
        stats.clone(),
        "software",
    )
    .await
    .unwrap();
    let page = format!("http://{}/", web.local_addr().unwrap());
    let stop = CancellationToken::new();
    let classroom = tokio::spawn({
        let (config, stats, stop) = (config.clone(), stats.clone(), stop.clone());
        async move { roles::classroom::run(&config, stats, Some(web), stop).await }
    });
    let slate = || stats.media().slate.unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(20), || slate()
            .contains("Waiting for the teacher"))
        .await,
        "slate: {:?}",
        slate()
    );
    let text = slate();
    assert!(text.starts_with("Room 9") && text.contains(&page), "{text}");

    let teacher = start_teacher(relay.client_config("room", Role::Teacher));
    assert!(
        wait_until(Duration::from_secs(20), || stats.media().slate.is_none()
            && stats.totals(TrackKind::Video).decoded > 30)
        .await,
        "the lesson did not replace the slate: {:?}",
        stats.media().slate
    );
    teacher.stop().await.unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || slate()
            .contains("Waiting for the teacher"))
        .await,
        "the slate did not come back: {:?}",
        stats.media().slate
    );
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), classroom).await;
    relay.stop().await;
}

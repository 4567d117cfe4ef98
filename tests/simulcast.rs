//! One slow school does not hold a fast one down: the teacher encodes the picture a
//! second time for the classroom on the fast link (see `classbox::abr::Layer`), and
//! each classroom plays its own encoding through the same relay.

mod common;

use std::time::Duration;

use classbox::{
    auth::Role,
    emulator::{
        Impairments, Trace,
        proxy::{LinkEmulator, LinkProfile},
    },
    frame::TrackKind,
};
use common::{TestRelay, start_classroom, start_teacher, wait_until};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_school_gets_a_larger_picture_than_a_slow_one_in_the_same_lesson() {
    common::init();
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(dir.path(), "127.0.0.1:0").await;
    // The slow school's link: 300 kbit/s down, 40 ms each way, a 64 KiB queue.
    let stop_link = CancellationToken::new();
    let slow_link = Impairments {
        delay: Duration::from_millis(40),
        queue_bytes: 64 * 1024,
        ..Default::default()
    };
    let emulator = LinkEmulator::start(
        relay.addr,
        LinkProfile {
            up: (Trace::constant(2000), slow_link),
            down: (Trace::constant(300), slow_link),
        },
        11,
        stop_link.clone(),
    )
    .await
    .unwrap();
    let classroom = |id: &str, via| {
        let mut config = relay.client_config_via(via, "lesson", Role::Box);
        config.classroom.id = id.into();
        start_classroom(config)
    };
    let slow = classroom("slow", emulator.addr());
    let fast = classroom("fast", relay.addr);
    let teacher = start_teacher(relay.client_config("lesson", Role::Teacher));

    let height = |c: &common::Running| c.stats.media().picture.map_or(0, |(_, h)| h);
    // The fast school's picture grows past what the slow link could carry (240p and
    // less there), while the slow one plays on.
    let apart = wait_until(Duration::from_secs(60), || {
        height(&fast) >= 480 && (1..=240).contains(&height(&slow))
    })
    .await;
    assert!(
        apart,
        "fast school at {}p, slow school at {}p",
        height(&fast),
        height(&slow)
    );
    // Both still play: pictures keep coming to each.
    let decoded = |c: &common::Running| c.stats.totals(TrackKind::Video).decoded;
    let before = (decoded(&slow), decoded(&fast));
    let both_play = wait_until(Duration::from_secs(10), || {
        decoded(&slow) > before.0 + 20 && decoded(&fast) > before.1 + 20
    })
    .await;
    assert!(
        both_play,
        "pictures decoded since: slow {}, fast {}",
        decoded(&slow) - before.0,
        decoded(&fast) - before.1
    );
    // The teacher runs the second encoding beside the first.
    let fast_received = fast.stats.totals(TrackKind::Video).received_bytes;
    let slow_received = slow.stats.totals(TrackKind::Video).received_bytes;
    assert!(
        fast_received > 2 * slow_received,
        "fast school got {fast_received} bytes of pictures, slow {slow_received}"
    );

    teacher.stop().await.unwrap();
    slow.stop().await.unwrap();
    fast.stop().await.unwrap();
    stop_link.cancel();
    emulator.join().await;
    relay.stop().await;
}

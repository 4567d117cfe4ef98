//! Two classrooms in one lesson, one behind a slow emulated link: what simulcast
//! (`classbox::abr::Layer`) must handle, through our relay or a stock moq-relay.

use std::{net::SocketAddr, time::Duration};

use classbox::{
    config::Config,
    emulator::{
        Impairments, Trace,
        proxy::{LinkEmulator, LinkProfile},
    },
    frame::TrackKind,
};
use tokio_util::sync::CancellationToken;

use super::{Running, start_classroom, start_teacher, wait_until};

/// A teacher and two classrooms (`slow` behind 300 kbit/s down, 40 ms each way and a
/// 64 KiB queue; `fast` straight to the relay at `relay`); `config(via, role_is_teacher)`
/// makes a client's config reaching the relay at `via`. Asserts that the fast
/// classroom gets a larger picture than the slow link could carry while the slow one
/// plays on, and that both keep decoding; then stops everything.
pub async fn a_slow_and_a_fast_school(
    relay: SocketAddr,
    config: impl Fn(SocketAddr, bool) -> Config,
) {
    let stop_link = CancellationToken::new();
    let slow_link = Impairments {
        delay: Duration::from_millis(40),
        queue_bytes: 64 * 1024,
        ..Default::default()
    };
    let emulator = LinkEmulator::start(
        relay,
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
        let mut c = config(via, false);
        c.classroom.id = id.into();
        start_classroom(c)
    };
    let slow = classroom("slow", emulator.addr());
    let fast = classroom("fast", relay);
    let teacher = start_teacher(config(relay, true));

    let height = |c: &Running| c.stats.media().picture.map_or(0, |(_, h)| h);
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
    let decoded = |c: &Running| c.stats.totals(TrackKind::Video).decoded;
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
    // Each got its own encoding.
    let received = |c: &Running| c.stats.totals(TrackKind::Video).received_bytes;
    assert!(
        received(&fast) > 2 * received(&slow),
        "fast school got {} bytes of pictures, slow {}",
        received(&fast),
        received(&slow)
    );
    println!(
        "fast school {}p, slow school {}p; latency p50 fast {:?} ms, slow {:?} ms",
        height(&fast),
        height(&slow),
        fast.stats.latest().latency_ms_p50,
        slow.stats.latest().latency_ms_p50
    );

    teacher.stop().await.unwrap();
    slow.stop().await.unwrap();
    fast.stop().await.unwrap();
    stop_link.cancel();
    emulator.join().await;
}

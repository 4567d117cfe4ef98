//! Probing for a better link (src/abr/probe.rs): the teacher's padding crosses a real
//! relay and the emulated school link to a classroom that reads and drops it, and
//! stops when the teacher stops it.

mod common;

use std::time::Duration;

use classbox::transport::{catalog::Catalog, publish::BroadcastPublisher, subscribe};
use common::{path::EmulatedPath, *};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn padding_crosses_the_relay_to_the_classroom_and_stops_when_told() {
    let path = EmulatedPath::start("probe", 2000).await;
    let catalog = Catalog {
        version: Catalog::VERSION,
        video: None,
        audio: Some(Default::default()),
        teacher: None,
    };
    let publisher = BroadcastPublisher::new(&path.teacher_origin, "teacher", &catalog).unwrap();
    let prober = publisher.prober();
    let remote = path.remote("teacher").await;
    let drain = tokio::spawn(async move { subscribe::drain_probe(&remote).await });
    // (The subscription reaches the relay and the teacher.)
    tokio::time::sleep(Duration::from_millis(500)).await;

    let before = path.down().await.delivered_bytes;
    prober.set(400);
    // 400 kbit/s for a second is 50 KB.
    eventually(Duration::from_secs(10), "padding crosses the link", || {
        let path = &path;
        async move { path.down().await.delivered_bytes - before > 30_000 }
    })
    .await;

    prober.set(0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopped = path.down().await.delivered_bytes;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = path.down().await.delivered_bytes - stopped;
    // Acks and keep-alives only.
    assert!(
        after < 3_000,
        "{after} bytes crossed in the second after the stop"
    );

    drain.abort();
    drop((prober, publisher));
    path.stop().await;
}

//! A relay on loopback, a publisher connected to it directly and a subscriber through
//! the link emulator, for tests of what crosses a slow link.

use std::time::Duration;

use classbox::{
    auth::Role,
    emulator::{
        DirectionStats, Impairments, Trace,
        proxy::{LinkEmulator, LinkProfile},
    },
    roles::{link_settings, spawn_origin},
    transport::link::{Connected, Link},
};
use moq_net::{broadcast, origin};
use tokio_util::sync::CancellationToken;

use super::{TestRelay, init};

pub struct EmulatedPath {
    relay: TestRelay,
    shutdown: CancellationToken,
    emulator: LinkEmulator,
    /// Where the publisher creates its broadcasts (announced to the relay).
    pub teacher_origin: origin::Producer,
    box_origin: origin::Producer,
    links: (Connected, Connected),
    _dir: tempfile::TempDir,
}

impl EmulatedPath {
    /// Down from the relay to the subscriber at `down_kbps`, no loss or delay.
    pub async fn start(room: &str, down_kbps: u64) -> Self {
        init();
        let dir = tempfile::tempdir().unwrap();
        let relay = TestRelay::start(dir.path(), "127.0.0.1:0").await;
        let shutdown = CancellationToken::new();
        let unimpaired = Impairments::default();
        let emulator = LinkEmulator::start(
            relay.addr,
            LinkProfile {
                up: (Trace::constant(10_000), unimpaired),
                down: (Trace::constant(down_kbps), unimpaired),
            },
            7,
            shutdown.clone(),
        )
        .await
        .unwrap();
        let teacher_origin = spawn_origin();
        let teacher = Link::new(link_settings(&relay.client_config(room, Role::Teacher)).unwrap())
            .unwrap()
            .connect(&teacher_origin)
            .await
            .expect("publisher connects");
        let box_origin = spawn_origin();
        let classroom = Link::new(
            link_settings(&relay.client_config_via(emulator.addr(), room, Role::Box)).unwrap(),
        )
        .unwrap()
        .connect(&box_origin)
        .await
        .expect("subscriber connects");
        Self {
            relay,
            shutdown,
            emulator,
            teacher_origin,
            box_origin,
            links: (teacher, classroom),
            _dir: dir,
        }
    }

    /// The publisher's broadcast `name` as the subscriber sees it, once announced.
    pub async fn remote(&self, name: &str) -> broadcast::Consumer {
        let consumer = self.box_origin.consume();
        let mut announced = consumer.announced();
        tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(update) = announced.next().await {
                if update.prefix.as_str() == name && update.kind.is_active() {
                    return;
                }
            }
        })
        .await
        .expect("the broadcast is announced through the relay");
        consumer.request_broadcast(name).await.unwrap()
    }

    /// What the emulated link delivered to the subscriber so far.
    pub async fn down(&self) -> DirectionStats {
        self.emulator.stats().await.1
    }

    pub async fn stop(self) {
        drop(self.links);
        self.shutdown.cancel();
        self.relay.stop().await;
    }
}

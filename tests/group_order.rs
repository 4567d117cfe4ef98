//! The patched moq-net (vendor/moq-net, see Cargo.toml): on a full link, the last
//! pictures of a group still waiting at the relay go before the next group's keyframe.
//!
//! Stock moq-net sends the newest group first, always. A classroom switches to a new
//! group once its keyframe is in, so the previous group's pictures that the keyframe
//! overtook were thrown away: the picture jumped 200-300 ms at every group boundary on
//! a 250-500 kbit/s link. Now a new group waits behind the one before it for a moment
//! (a backlog older than that is still shed newest-first).
//!
//! A real relay, a publisher connected to it directly and a subscriber through the link
//! emulator at 400 kbit/s, all on loopback. A large group fills the relay's congestion
//! window and the link's queue; then a group's last pictures and, right behind them,
//! the next group's keyframe reach the relay while that backlog drains.

mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use classbox::{
    auth::Role,
    emulator::{
        Impairments, Trace,
        proxy::{LinkEmulator, LinkProfile},
    },
    roles::{link_settings, spawn_origin},
    transport::link::Link,
};
use common::*;
use moq_net::{Timestamp, track};
use tokio_util::sync::CancellationToken;

const FRAME_BYTES: usize = 1000;

/// (group, frame index) in the order the subscriber received them.
type Arrivals = Arc<Mutex<Vec<(u64, usize)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_groups_last_pictures_go_before_the_next_keyframe() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(dir.path(), "127.0.0.1:0").await;
    let shutdown = CancellationToken::new();
    let unimpaired = Impairments::default();
    let emulator = LinkEmulator::start(
        relay.addr,
        LinkProfile {
            up: (Trace::constant(10_000), unimpaired),
            down: (Trace::constant(400), unimpaired),
        },
        7,
        shutdown.clone(),
    )
    .await
    .unwrap();

    // The publisher, straight to the relay.
    let teacher_origin = spawn_origin();
    let teacher = Link::new(link_settings(&relay.client_config("order", Role::Teacher)).unwrap())
        .unwrap()
        .connect(&teacher_origin)
        .await
        .expect("publisher connects");
    let broadcast = teacher_origin.create_broadcast("teacher").unwrap();
    let video = broadcast
        .create_track(
            "video",
            track::Info::default()
                .with_priority(1)
                .with_max_age(Duration::from_secs(10)),
        )
        .unwrap();
    broadcast.announce(Default::default()).unwrap();

    // The subscriber, through the emulated 400 kbit/s link.
    let box_origin = spawn_origin();
    let classroom = Link::new(
        link_settings(&relay.client_config_via(emulator.addr(), "order", Role::Box)).unwrap(),
    )
    .unwrap()
    .connect(&box_origin)
    .await
    .expect("subscriber connects");
    let consumer = box_origin.consume();
    let mut announced = consumer.announced();
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(update) = announced.next().await {
            if update.prefix.as_str() == "teacher" && update.kind.is_active() {
                return;
            }
        }
    })
    .await
    .expect("the broadcast is announced through the relay");
    let remote = consumer.request_broadcast("teacher").await.unwrap();
    let mut subscriber = remote
        .track("video")
        .unwrap()
        .subscribe(track::Subscription::default().with_max_age(Duration::from_secs(10)))
        .await
        .unwrap();

    let arrivals: Arrivals = Arc::default();
    let reader = tokio::spawn({
        let arrivals = arrivals.clone();
        async move {
            // Each group read side by side, as they come.
            while let Ok(Some(mut group)) = subscriber.recv_group().await {
                let arrivals = arrivals.clone();
                tokio::spawn(async move {
                    let mut index = 0;
                    while let Ok(Some(_)) = group.read_frame().await {
                        arrivals.lock().unwrap().push((group.sequence, index));
                        index += 1;
                    }
                });
            }
        }
    });

    let write = |group: &mut moq_net::group::Producer, frames: usize| {
        for _ in 0..frames {
            group
                .write_frame(Timestamp::ZERO, vec![0u8; FRAME_BYTES])
                .unwrap();
        }
    };
    let whole_group = |frames: usize| {
        let mut group = video.append_group().unwrap();
        write(&mut group, frames);
        group.finish().unwrap();
        group.sequence
    };

    // A first group, to know the path is up end to end.
    let warm = whole_group(1);
    eventually(Duration::from_secs(10), "the first group arrives", || {
        let arrivals = arrivals.clone();
        async move { arrivals.lock().unwrap().contains(&(warm, 0)) }
    })
    .await;

    // 40 KB: most of a second at 400 kbit/s, more than the relay's window.
    let backlog = whole_group(40);
    // A group that starts well before the next (as a GOP does: a second before)...
    let mut gop = video.append_group().unwrap();
    write(&mut gop, 1);
    tokio::time::sleep(Duration::from_millis(250)).await;
    // ...and its last pictures (5 KB, a tenth of a second of the link), then, a
    // frame's time later (as from a camera), the next group's keyframe.
    write(&mut gop, 5);
    tokio::time::sleep(Duration::from_millis(40)).await;
    gop.finish().unwrap();
    let tail = gop.sequence;
    let next = whole_group(1);

    eventually(Duration::from_secs(20), "the keyframe arrives", || {
        let arrivals = arrivals.clone();
        async move { arrivals.lock().unwrap().contains(&(next, 0)) }
    })
    .await;
    let order = arrivals.lock().unwrap().clone();
    let keyframe_at = order.iter().position(|&a| a == (next, 0)).unwrap();
    let tail_before = order[..keyframe_at]
        .iter()
        .filter(|&&(group, _)| group == tail)
        .count();
    assert_eq!(
        tail_before, 6,
        "all of group {tail}'s pictures before group {next}'s keyframe (backlog: group {backlog}); arrivals: {order:?}"
    );

    reader.abort();
    drop((teacher, classroom));
    shutdown.cancel();
    relay.stop().await;
}

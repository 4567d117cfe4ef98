//! One slow school does not hold a fast one down: the teacher encodes the picture a
//! second time for the classroom on the fast link (see `classbox::abr::Layer`), and
//! each classroom plays its own encoding through the same relay. (The same through a
//! stock moq-relay: `tests/interop_moq_relay.rs`.)

mod common;

use classbox::auth::Role;
use common::TestRelay;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_school_gets_a_larger_picture_than_a_slow_one_in_the_same_lesson() {
    common::init();
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(dir.path(), "127.0.0.1:0").await;
    common::schools::a_slow_and_a_fast_school(relay.addr, |via, teacher| {
        let role = if teacher { Role::Teacher } else { Role::Box };
        relay.client_config_via(via, "lesson", role)
    })
    .await;
    relay.stop().await;
}

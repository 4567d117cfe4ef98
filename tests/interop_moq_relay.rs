//! Interop: teacher -> stock moq-relay 0.17.10 -> classroom. The relay binary is the
//! one `cargo install moq-relay --version 0.17.10` builds (the test set-up script
//! installs it). It runs on loopback with a certificate we generate, and anonymous
//! access rooted at our room (moq-relay 0.17 delegates JWT checks to an auth server).

mod common;

use std::time::Duration;

use classbox::{frame::TrackKind, roles::loopback::StockRelay};
use common::*;

/// A stock moq-relay on loopback with anonymous access to `room/**`.
async fn start_moq_relay(dir: &std::path::Path, room: &str) -> StockRelay {
    let binary =
        StockRelay::installed().expect("moq-relay is not installed: run image/dev-setup.sh --test");
    StockRelay::start(&binary, dir, room).await.unwrap()
}

/// No display in tests.
fn headless(mut config: classbox::config::Config) -> classbox::config::Config {
    config.classroom.display = classbox::config::DisplayMode::Headless;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lesson_flows_through_a_stock_moq_relay() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let relay = start_moq_relay(dir.path(), "interop").await;
    let classroom = start_classroom(headless(relay.client_config(relay.addr)));
    let teacher = start_teacher(headless(relay.client_config(relay.addr)));
    let stats = classroom.stats.clone();
    let decoded = || stats.totals(TrackKind::Video).decoded;
    let flowed = wait_until(Duration::from_secs(20), || decoded() >= 150).await;
    let audio = classroom.stats.totals(TrackKind::Audio).decoded;
    let latency = classroom.stats.latency_summary();
    teacher.stop().await.unwrap();
    classroom.stop().await.unwrap();
    let stderr = relay.stop().await;
    if !flowed {
        eprintln!("moq-relay stderr:\n{stderr}");
    }
    assert!(
        flowed,
        "only {} frames decoded through moq-relay",
        decoded()
    );
    assert!(audio > 0, "no audio through moq-relay");
    let latency = latency.unwrap();
    println!(
        "through moq-relay: {} video frames, {audio} audio packets decoded, latency p50 {:.1} ms p95 {:.1} ms",
        decoded(),
        latency.p50_ms,
        latency.p95_ms
    );
}

/// Simulcast needs nothing of the relay but forwarding each subscriber the tracks it
/// asks for: a stock moq-relay serves a slow and a fast school their own encodings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_school_gets_its_own_encoding_through_a_stock_moq_relay() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let relay = start_moq_relay(dir.path(), "simulcast").await;
    schools::a_slow_and_a_fast_school(relay.addr, |via, _| headless(relay.client_config(via)))
        .await;
    relay.stop().await;
}

//! Interop: teacher -> stock moq-relay 0.17.10 -> classroom. The relay binary is the
//! one `cargo install moq-relay --version 0.17.10` builds (the test set-up script
//! installs it). It runs on loopback with a certificate we generate, and anonymous
//! access rooted at our room (moq-relay 0.17 delegates JWT checks to an auth server).

mod common;

use std::{path::PathBuf, process::Stdio, time::Duration};

use classbox::{frame::TrackKind, transport::tls};
use common::*;

fn moq_relay_binary() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("MOQ_RELAY_BIN").map(PathBuf::from),
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/moq-relay")),
        Some(PathBuf::from("/usr/local/bin/moq-relay")),
    ];
    candidates.into_iter().flatten().find(|p| p.is_file())
}

/// A free UDP port on loopback (bound then released; moq-relay binds it next).
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A stock moq-relay on loopback with anonymous access to `room/**`; its address and
/// certificate fingerprint.
async fn start_moq_relay(
    dir: &std::path::Path,
    room: &str,
) -> (tokio::process::Child, std::net::SocketAddr, String) {
    let binary =
        moq_relay_binary().expect("moq-relay is not installed: run image/dev-setup.sh --test");
    let identity =
        tls::Identity::load_or_generate(dir, &["localhost".into(), "127.0.0.1".into()]).unwrap();
    let port = free_udp_port();
    let relay = tokio::process::Command::new(&binary)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--listen-tls-cert")
        .arg(dir.join("cert.pem"))
        .arg("--listen-tls-key")
        .arg(dir.join("key.pem"))
        .arg("--auth-public")
        .arg(format!("{room}/**"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("moq-relay starts");
    // Give it a moment to bind; the clients retry anyway.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    (relay, addr, identity.fingerprint())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lesson_flows_through_a_stock_moq_relay() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let (mut relay, addr, fingerprint) = start_moq_relay(dir.path(), "interop").await;
    let relay_addr = addr.to_string();
    let classroom = start_classroom(client_config(
        &relay_addr,
        Some(&fingerprint),
        "interop",
        None,
    ));
    let teacher = start_teacher(client_config(
        &relay_addr,
        Some(&fingerprint),
        "interop",
        None,
    ));
    let stats = classroom.stats.clone();
    let decoded = || stats.totals(TrackKind::Video).decoded;
    let flowed = wait_until(Duration::from_secs(20), || decoded() >= 150).await;
    let audio = classroom.stats.totals(TrackKind::Audio).decoded;
    let latency = classroom.stats.latency_summary();
    teacher.stop().await.unwrap();
    classroom.stop().await.unwrap();
    let _ = relay.start_kill();
    let output = relay.wait_with_output().await.unwrap();
    if !flowed {
        eprintln!(
            "moq-relay stderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
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
    let (mut relay, addr, fingerprint) = start_moq_relay(dir.path(), "simulcast").await;
    schools::a_slow_and_a_fast_school(addr, |via, _| {
        client_config(&via.to_string(), Some(&fingerprint), "simulcast", None)
    })
    .await;
    let _ = relay.start_kill();
}

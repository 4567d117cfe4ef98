//! systemd: the units pass `systemd-analyze verify` and rate <= 2.0 on
//! `systemd-analyze security` (when systemd-analyze is present); the daemon speaks the
//! notify protocol (READY, watchdog pings, STOPPING) to a socket of the test's own.

use std::{
    os::unix::net::UnixDatagram,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// A unit with ExecStart pointing at the binary under test.
fn unit_for_test(name: &str, dir: &std::path::Path) -> std::path::PathBuf {
    let text =
        std::fs::read_to_string(format!("{}/systemd/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let text = text.replace("/usr/bin/classbox", env!("CARGO_BIN_EXE_classbox"));
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn units_verify_and_are_locked_down() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("SKIPPED: systemd-analyze is not installed here");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for name in ["classbox.service", "classbox-relay.service"] {
        let unit = unit_for_test(name, dir.path());
        let verify = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&unit)
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&verify.stdout),
            String::from_utf8_lossy(&verify.stderr)
        );
        assert!(
            verify.status.success() && said.trim().is_empty(),
            "{name}: {said}"
        );
        let security = Command::new("systemd-analyze")
            .args(["security", "--offline=yes"])
            .arg(&unit)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&security.stdout);
        let score: f64 = text
            .lines()
            .find_map(|l| l.split("Overall exposure level for").nth(1))
            .and_then(|rest| rest.split(':').nth(1))
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{name}: no score in {text}"));
        println!("{name}: systemd-analyze security exposure {score}");
        assert!(score <= 2.0, "{name}: exposure {score} > 2.0");
    }
}

#[test]
fn the_daemon_says_ready_pings_the_watchdog_and_says_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut relay = Command::new(env!("CARGO_BIN_EXE_classbox"))
        .args(["relay", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(dir.path().join("relay"))
        .args(["--config", "/dev/null"])
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "200000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline
        && seen
            .iter()
            .filter(|m: &&String| m.contains("WATCHDOG=1"))
            .count()
            < 3
    {
        if let Ok(n) = socket.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).to_string());
        }
    }
    assert!(
        seen.first()
            .is_some_and(|m| m.contains("READY=1") && m.contains("STATUS=relay listening")),
        "{seen:?}"
    );
    assert!(
        seen.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 3,
        "{seen:?}"
    );
    // SIGTERM, as systemd stops it.
    Command::new("kill")
        .args(["-TERM", &relay.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stopping = false;
    while Instant::now() < deadline && !stopping {
        if let Ok(n) = socket.recv(&mut buf) {
            stopping = String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1");
        }
    }
    assert!(stopping, "no STOPPING=1 after SIGTERM");
    let status = relay.wait().unwrap();
    assert!(status.success(), "{status}");
}

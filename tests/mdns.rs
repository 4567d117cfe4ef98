//! The box's mDNS announcement, resolved by a second mDNS peer. Multicast stays inside a
//! network namespace this test creates (`unshare -n`, only a loopback interface with
//! multicast on): the test binary runs itself again in there.

use std::{process::Command, time::Duration};

use classbox::web::mdns::Announcer;
use mdns_sd::{HostnameResolutionEvent, ServiceDaemon};

const INSIDE: &str = "CLASSBOX_TEST_IN_NETNS";

#[test]
fn the_box_is_found_as_name_dot_local() {
    if std::env::var_os(INSIDE).is_some() {
        return inside_the_namespace();
    }
    let me = std::env::current_exe().unwrap();
    let root = unsafe_is_root();
    let flags = if root { "-n" } else { "-rn" };
    let script = "ip link set lo up && ip link set lo multicast on && exec \"$0\" --exact the_box_is_found_as_name_dot_local --nocapture";
    let out = Command::new("unshare")
        .args([flags, "sh", "-c", script])
        .arg(&me)
        .env(INSIDE, "1")
        .output()
        .expect("unshare (util-linux) runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "inside the namespace: {text}");
    assert!(
        text.contains("resolved classbox-test.local to 127.0.0.1"),
        "{text}"
    );
}

fn unsafe_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn inside_the_namespace() {
    let _box = Announcer::start("classbox-test", "Room 1", 8080).expect("announces");
    let peer = ServiceDaemon::new().unwrap();
    let events = peer
        .resolve_hostname("classbox-test.local.", Some(8000))
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        match events.recv_timeout(Duration::from_secs(1)) {
            Ok(HostnameResolutionEvent::AddressesFound(host, addrs)) => {
                let addrs: Vec<String> = addrs.iter().map(|a| a.to_ip_addr().to_string()).collect();
                assert!(addrs.iter().any(|a| a == "127.0.0.1"), "{host}: {addrs:?}");
                println!("resolved classbox-test.local to 127.0.0.1");
                return;
            }
            Ok(HostnameResolutionEvent::SearchTimeout(h)) => panic!("{h} not resolved"),
            _ => {}
        }
    }
    panic!("classbox-test.local not resolved within 10 s");
}

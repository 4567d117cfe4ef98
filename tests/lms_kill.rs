//! `kill -9` of the syncing daemon, twice, mid-sync: afterwards every record is in the
//! LRS exactly once. The real `classbox` binary and the real LRS, on loopback.

mod common;

use std::{
    io::Write,
    process::{Command, Stdio},
    time::Duration,
};

use classbox::lms::Outbox;
use common::{eventually, lms::Lrs};

const RECORDS: usize = 600;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_sync_loses_nothing_and_sends_nothing_twice() {
    let lrs = Lrs::start();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config = dir.path().join("classbox.toml");
    std::fs::write(
        &config,
        format!(
            "[classroom]\nstate_dir = {state:?}\nid = \"room-7\"\n\n[lms]\ntarget = \"xapi\"\nurl = \"{}\"\nusername = \"test\"\nsecret = \"test\"\n",
            lrs.xapi_url()
        ),
    )
    .unwrap();
    let classbox = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_classbox"));
        c.arg("--config")
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    };

    // Queue the events from a file, as a script would.
    let events = dir.path().join("events.jsonl");
    let mut f = std::fs::File::create(&events).unwrap();
    for i in 0..RECORDS {
        let status = ["present", "late", "absent"][i % 3];
        writeln!(
            f,
            r#"{{"kind":"attendance","lesson":"maths-7","student":{{"id":"s{}"}},"status":"{status}"}}"#,
            i % 40
        )
        .unwrap();
    }
    drop(f);
    let out = classbox()
        .args(["outbox", "enqueue"])
        .arg(&events)
        .output()
        .unwrap();
    common::assert_succeeded(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("{RECORDS} events queued")));

    let outbox = Outbox::open(&state.join("outbox")).await.unwrap();
    let delivered = || async { outbox.counts().await.unwrap().delivered };
    for at_least in [RECORDS as i64 / 6, RECORDS as i64 / 2] {
        let mut sync = classbox()
            .args(["outbox", "sync"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        eventually(Duration::from_secs(60), "deliveries under way", || async {
            delivered().await >= at_least
        })
        .await;
        sync.kill().unwrap(); // SIGKILL: no chance to finish anything
        sync.wait().unwrap();
        assert!(delivered().await < RECORDS as i64, "killed before the end");
    }
    let mut sync = classbox()
        .args(["outbox", "sync"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually(
        Duration::from_secs(120),
        "every record delivered",
        || async { delivered().await == RECORDS as i64 },
    )
    .await;
    sync.kill().unwrap();
    sync.wait().unwrap();

    let statements = lrs.statements().await;
    let mut ids: Vec<&str> = statements
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), RECORDS, "every record once");
    assert_eq!(statements.len(), RECORDS, "and nothing twice");

    let status = classbox().args(["outbox", "status"]).output().unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains(&format!("pending 0  delivered {RECORDS}  dead-lettered 0")),
        "{text}"
    );
}

#[test]
fn a_bad_events_file_queues_nothing_and_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("classbox.toml");
    std::fs::write(
        &config,
        format!(
            "[classroom]\nstate_dir = {:?}\n\n[lms]\ntarget = \"xapi\"\nurl = \"http://127.0.0.1:9/xAPI/\"\nusername = \"k\"\nsecret = \"s\"\n",
            dir.path().join("state")
        ),
    )
    .unwrap();
    let events = dir.path().join("events.jsonl");
    std::fs::write(
        &events,
        "{\"kind\":\"attendance\",\"lesson\":\"l\",\"student\":{\"id\":\"s1\"},\"status\":\"present\"}\n{\"kind\":\"attendance\",\"lesson\":\"l\",\"student\":{\"id\":\"s 2\"},\"status\":\"present\"}\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_classbox"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["outbox", "enqueue", events.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 2") && err.contains("student.id"),
        "{err}"
    );
    let status = run(&["outbox", "status"]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("pending 0  delivered 0"));
    // The secret is not in anything the command printed.
    assert!(!err.contains("\"s\"") && !String::from_utf8_lossy(&status.stdout).contains("secret"));
}

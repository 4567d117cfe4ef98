//! The box's page in a real browser (headless Chromium): the set-up wizard, live status
//! during a lesson, attendance taken while the LMS is unreachable, the sync queue,
//! logging out and in. Screenshots of each page go to `tests/screenshots/` (the README
//! shows them).

mod common;

use std::{path::PathBuf, sync::Arc, time::Duration};

use classbox::{auth::Role, roles, stats::LessonStats};
use common::{TestRelay, browser::Browser, start_teacher};
use tokio_util::sync::CancellationToken;

fn shot(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/screenshots")
        .join(format!("{name}.png"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_set_up_the_box_watch_the_lesson_and_take_attendance_with_the_lms_down() {
    common::init();
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(dir.path(), "127.0.0.1:0").await;
    let mut config = relay.client_config("maths-4b", Role::Box);
    config.classroom.name = "Room 4B".into();
    config.classroom.web_listen = "127.0.0.1:0".into();
    config.classroom.roster = vec![
        "s1:Ada Lovelace".into(),
        "s2:Alan Turing".into(),
        "s3:Grace Hopper".into(),
    ];
    // The LMS is unreachable (nothing listens on port 9): attendance must still be kept.
    config.lms.target = "xapi".into();
    config.lms.url = Some("http://127.0.0.1:9/xAPI/".into());
    config.lms.username = "key".into();
    config.lms.secret = Some("lrs-secret".into());
    let config_path = dir.path().join("classbox.toml");

    let stats = Arc::new(LessonStats::default());
    let web = roles::classroom::bind_web(&config, config_path.clone(), stats.clone(), "software")
        .await
        .unwrap();
    let page = format!("http://{}", web.local_addr().unwrap());
    let stop = CancellationToken::new();
    let classroom = tokio::spawn({
        let (config, stop) = (config.clone(), stop.clone());
        async move { roles::classroom::run(&config, stats, Some(web), stop).await }
    });

    let browser = Browser::start().await;
    // First boot: every page leads to the wizard.
    browser.goto(&format!("{page}/attendance")).await;
    browser.wait_url("/setup").await;
    browser.fill("#password", "a long enough secret").await;
    browser.fill("#password2", "a long enough secret").await;
    browser.fill("#relay", &relay.addr.to_string()).await;
    browser
        .fill("#token", config.link.token.as_deref().unwrap())
        .await;
    browser.fill("#fingerprint", &relay.fingerprint).await;
    browser.fill("#lms_url", "http://127.0.0.1:9/xAPI/").await;
    browser.fill("#lms_username", "key").await;
    browser.fill("#lms_secret", "lrs-secret").await;
    browser.click("#test-lms").await;
    let result = browser
        .wait_text("#lms-result", "LMS test result", |t| {
            !t.is_empty() && t != "Testing…"
        })
        .await;
    assert!(
        result.contains("Not working") && result.contains("unreachable"),
        "{result}"
    );
    browser.screenshot(&shot("setup")).await;
    browser.click("form#setup > p > button").await;
    browser
        .wait_text("#sentence", "status page after set-up", |t| {
            t.contains("Waiting for the teacher") || t.contains("Connecting")
        })
        .await;
    let saved = std::fs::read_to_string(&config_path).unwrap();
    assert!(saved.contains("Room 4B") && saved.contains("maths-4b"));

    // A lesson starts: the page updates by itself (no reload; the marker survives).
    browser.script("window.__noReload = 42; return null;").await;
    let teacher = start_teacher(relay.client_config("maths-4b", Role::Teacher));
    browser
        .wait_text("#sentence", "the lesson link", |t| {
            t == "The lesson link is good."
        })
        .await;
    browser
        .wait_text("#fps", "pictures arriving", |t| {
            t.parse::<f64>().unwrap_or(0.0) > 5.0
        })
        .await;
    tokio::time::sleep(Duration::from_secs(6)).await; // some history for the plot
    assert_eq!(browser.script("return window.__noReload;").await, 42);
    browser
        .wait_text("#picture", "the picture size the teacher sends", |t| {
            t.ends_with('p')
        })
        .await;
    assert_eq!(
        browser.text("#camera").await,
        "off",
        "no camera asked for here"
    );
    let video = browser.text("#video").await;
    assert!(video.ends_with("kbit/s") && video != "0 kbit/s", "{video}");
    browser.screenshot(&shot("status")).await;

    // A student's tablet on the LAN: the Watch page plays the lesson (remuxed, no
    // transcoding) and its video advances.
    browser.goto(&format!("{page}/watch")).await;
    browser
        .wait_text("#state", "the Watch page", |t| t == "Live.")
        .await;
    let started = std::time::Instant::now();
    let first = loop {
        let t = video_position(&browser).await;
        if t > 0.5 {
            break t;
        }
        let err = browser.script("const v = document.getElementById('lesson'); return String(v.error && v.error.message) + ' ready ' + v.readyState;").await;
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the lesson video does not play: {err}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = video_position(&browser).await;
    assert!(
        later > first + 1.0,
        "the video advances: {first} -> {later}"
    );
    browser.screenshot(&shot("watch")).await;

    // Attendance with the LMS unreachable: saved at once, waiting in the queue.
    browser.goto(&format!("{page}/attendance")).await;
    browser.click("input[name='s.s1'][value='present']").await;
    browser.click("input[name='s.s2'][value='late']").await;
    browser.click("input[name='s.s3'][value='absent']").await;
    browser.screenshot(&shot("attendance")).await;
    browser.click("main form button").await;
    let flash = browser.text(".flash").await;
    assert!(flash.contains("Saved attendance for 3 students"), "{flash}");
    browser.goto(&format!("{page}/queue")).await;
    let summary = browser.text("main p.panel").await;
    assert!(summary.contains("not reachable"), "{summary}");
    let waiting = browser.text("table").await;
    for s in ["s1", "s2", "s3"] {
        assert!(
            waiting.contains("attendance/maths-4b-") && waiting.contains(&format!("/{s}")),
            "{waiting}"
        );
    }
    assert!(
        waiting.contains("lesson/maths-4b"),
        "the lesson's start is queued too: {waiting}"
    );
    browser.screenshot(&shot("queue")).await;

    // Log out, and back in.
    browser.click("header button.link").await;
    browser.wait_url("/login").await;
    browser.fill("#password", "not the password").await;
    browser.click("main form button").await;
    assert!(browser.text(".flash").await.contains("not right"));
    browser.fill("#password", "a long enough secret").await;
    browser.click("main form button").await;
    browser
        .wait_text("#sentence", "status after login", |t| {
            !t.is_empty() && t != "Starting…"
        })
        .await;

    drop(browser);
    teacher.stop().await.unwrap();
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), classroom).await;
    relay.stop().await;
}

async fn video_position(browser: &Browser) -> f64 {
    browser
        .script("return document.getElementById('lesson').currentTime;")
        .await
        .as_f64()
        .unwrap_or(0.0)
}

//! The LMS outbox against a real LRS (Learning Locker's `xapi-statements`, in memory, on
//! loopback), with failures injected between them.

mod common;

use std::{collections::BTreeMap, time::Duration};

use classbox::lms::{
    AttendanceStatus, Event, LessonEvent, LessonLoad, LmsClient, Outbox, RecordState, Student,
    SyncWorker, Target, WorkerSettings,
    outbox::{AttachmentContent, NewAttachment},
    xapi::{XapiClient, XapiSettings},
};
use common::{
    eventually,
    lms::{Fault, FaultProxy, Lrs},
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Quick retries, so the test spends its time on behaviour, not on waiting.
fn fast() -> WorkerSettings {
    WorkerSettings {
        retry_base: Duration::from_millis(50),
        retry_max: Duration::from_millis(400),
        probe_base: Duration::from_millis(50),
        probe_max: Duration::from_millis(200),
        ..Default::default()
    }
}

fn client(url: &str) -> LmsClient {
    // No connection reuse: each request meets the fault proxy afresh.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    LmsClient::Xapi(XapiClient::new(
        http,
        XapiSettings {
            endpoint: url.parse().unwrap(),
            key: "test".into(),
            secret: "test".into(),
            account_homepage: "https://lms.example.org".into(),
            box_id: "room-7".into(),
        },
    ))
}

fn student(id: &str) -> Student {
    Student {
        id: id.into(),
        name: Some(format!("Student {id}")),
    }
}

fn attendance(id: &str, status: AttendanceStatus) -> Event {
    Event::Attendance {
        lesson: "maths-7".into(),
        student: student(id),
        status,
        session_id: None,
    }
}

struct Running {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), classbox::lms::OutboxError>>,
}

impl Running {
    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }
}

fn spawn(worker: SyncWorker) -> Running {
    let stop = CancellationToken::new();
    let task = tokio::spawn(worker.run(stop.clone()));
    Running { stop, task }
}

fn ext(statement: &serde_json::Value, name: &str) -> serde_json::Value {
    statement["context"]["extensions"][format!("https://w3id.org/xapi/classbox/extensions/{name}")]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_reaches_the_lrs_once_through_outages_errors_and_lost_answers() {
    let lrs = Lrs::start();
    let proxy = FaultProxy::start(format!("127.0.0.1:{}", lrs.port).parse().unwrap()).await;
    proxy.set_up(false);
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path()).await.unwrap();

    // Recorded while the LMS is unreachable: three changes of mind per student.
    let mut expected = 0;
    for s in ["s1", "s2", "s3", "s4", "s5"] {
        for status in [
            AttendanceStatus::Absent,
            AttendanceStatus::Late,
            AttendanceStatus::Present,
        ] {
            outbox
                .enqueue(Target::Xapi, attendance(s, status), None, vec![])
                .await
                .unwrap();
            expected += 1;
        }
    }
    for event in [LessonEvent::Joined, LessonEvent::Left] {
        let lesson = Event::Lesson {
            lesson: "maths-7".into(),
            event,
            teacher: Some("Ms Okafor".into()),
        };
        outbox
            .enqueue(Target::Xapi, lesson, None, vec![])
            .await
            .unwrap();
        expected += 1;
    }
    let grade = Event::Grade {
        assignment: "essay-1".into(),
        student: student("s1"),
        grade: "8.5".into(),
    };
    outbox
        .enqueue(Target::Xapi, grade, None, vec![])
        .await
        .unwrap();
    let work = Event::Submission {
        assignment: "essay-2".into(),
        student: student("s2"),
        text: Some("My essay".into()),
    };
    let photo = NewAttachment {
        file_name: "page 1.jpg".into(),
        content_type: "image/jpeg".into(),
        content: AttachmentContent::Bytes(vec![0xAB; 200_000].into()),
    };
    outbox
        .enqueue(Target::Xapi, work, None, vec![photo])
        .await
        .unwrap();
    expected += 2;

    let (_load_tx, load) = watch::channel(LessonLoad::default());
    let worker = SyncWorker::new(outbox.clone(), client(&proxy.url("xAPI/")), fast(), load);
    let status = worker.status();
    let running = spawn(worker);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        outbox.counts().await.unwrap().delivered,
        0,
        "nothing can be delivered while the LMS is down"
    );
    let waiting = outbox.due(i64::MAX, 100).await.unwrap();
    assert!(
        waiting.iter().all(|r| r.attempts == 0),
        "an unreachable LMS spends no attempts"
    );
    assert!(!status.lock().unwrap().reachable);

    // The LMS comes back, with a bad patch: errors, throttling, answers lost after the
    // LRS stored the statement, and the photo's upload stalling until it times out.
    proxy.push(Fault::Status(500, None, "internal error"));
    proxy.push(Fault::LoseResponse);
    proxy.push(Fault::Status(429, Some(1), "slow down"));
    proxy.push(Fault::Status(503, None, "maintenance"));
    proxy.push(Fault::LoseResponse);
    proxy.stall_next_upload();
    proxy.set_up(true);
    eventually(
        Duration::from_secs(60),
        "every record delivered",
        || async { outbox.counts().await.unwrap().delivered == expected },
    )
    .await;
    running.stop().await;
    assert!(proxy.upload_stalled(), "the photo's upload met the stall");

    let statements = lrs.statements().await;
    let mut ids: Vec<&str> = statements
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        statements.len(),
        expected as usize,
        "one statement per record"
    );
    assert_eq!(ids.len(), expected as usize, "no statement twice");

    // Per-entity order: each student's attendance was stored in the order recorded.
    let mut by_student: BTreeMap<String, Vec<(String, i64)>> = BTreeMap::new();
    for s in statements.iter().filter(|s| {
        s["verb"]["id"].as_str().unwrap().contains("attended")
            || s["verb"]["id"].as_str().unwrap().contains("absent")
    }) {
        let name = s["actor"]["account"]["name"].as_str().unwrap().to_string();
        by_student.entry(name).or_default().push((
            s["stored"].as_str().unwrap().to_string(),
            ext(s, "local-sequence").as_i64().unwrap(),
        ));
    }
    for (student, mut list) in by_student {
        list.sort();
        let seqs: Vec<i64> = list.iter().map(|(_, seq)| *seq).collect();
        let mut sorted = seqs.clone();
        sorted.sort();
        assert_eq!(seqs, sorted, "{student}'s records arrived out of order");
    }
    let submitted = statements
        .iter()
        .find(|s| s["verb"]["id"].as_str().unwrap().ends_with("/submit"))
        .unwrap();
    assert_eq!(submitted["attachments"][0]["length"], 200_000);
    assert_eq!(submitted["result"]["response"], "My essay");
    assert!(statements.iter().all(|s| s["timestamp"].is_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poisoned_record_is_dead_lettered_with_the_servers_message_and_blocks_nothing() {
    let lrs = Lrs::start();
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path()).await.unwrap();
    let key = "6f1c5a52-7a43-4a57-9d3b-3e1f2a0c9b11";
    // Someone else already stored a different statement under this id.
    let foreign = serde_json::json!({
        "id": key,
        "actor": {"objectType": "Agent", "mbox": "mailto:other@example.org"},
        "verb": {"id": "http://adlnet.gov/expapi/verbs/experienced"},
        "object": {"id": "https://example.org/other"},
    });
    let put = reqwest::Client::new()
        .put(format!("{}statements?statementId={key}", lrs.xapi_url()))
        .basic_auth("test", Some("test"))
        .header("X-Experience-API-Version", "1.0.3")
        .json(&foreign)
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success());

    let poisoned = outbox
        .enqueue(
            Target::Xapi,
            attendance("s1", AttendanceStatus::Present),
            Some(key.into()),
            vec![],
        )
        .await
        .unwrap();
    let after = outbox
        .enqueue(
            Target::Xapi,
            attendance("s1", AttendanceStatus::Late),
            None,
            vec![],
        )
        .await
        .unwrap();
    let other = outbox
        .enqueue(
            Target::Xapi,
            attendance("s2", AttendanceStatus::Present),
            None,
            vec![],
        )
        .await
        .unwrap();
    // A corrupt attachment (the file changed on disk) is dead-lettered, not sent.
    let work = Event::Submission {
        assignment: "a1".into(),
        student: student("s3"),
        text: None,
    };
    let file = NewAttachment {
        file_name: "work.pdf".into(),
        content_type: "application/pdf".into(),
        content: AttachmentContent::Bytes(bytes::Bytes::from_static(b"%PDF-1.4 real work")),
    };
    let corrupt = outbox
        .enqueue(Target::Xapi, work, None, vec![file])
        .await
        .unwrap();
    let stored = outbox.get(&corrupt).await.unwrap().attachments[0]
        .path
        .clone();
    std::fs::write(&stored, b"%PDF-1.4 bit rot!!").unwrap();

    let (_load_tx, load) = watch::channel(LessonLoad::default());
    let running = spawn(SyncWorker::new(
        outbox.clone(),
        client(&lrs.xapi_url()),
        fast(),
        load,
    ));
    eventually(Duration::from_secs(30), "2 delivered, 2 dead", || async {
        let c = outbox.counts().await.unwrap();
        c.delivered == 2 && c.dead == 2
    })
    .await;
    running.stop().await;

    let dead = outbox.get(&poisoned).await.unwrap();
    assert_eq!(dead.state, RecordState::Dead);
    let message = dead.last_error.unwrap();
    assert!(
        message.contains("409") && message.contains("different statement"),
        "{message}"
    );
    assert_eq!(
        outbox.get(&after).await.unwrap().state,
        RecordState::Delivered,
        "a dead record does not block its entity"
    );
    assert_eq!(
        outbox.get(&other).await.unwrap().state,
        RecordState::Delivered
    );
    let rot = outbox.get(&corrupt).await.unwrap();
    assert_eq!(rot.state, RecordState::Dead);
    assert!(rot.last_error.unwrap().contains("corrupt"));
    let statements = lrs.statements().await;
    assert_eq!(
        statements.len(),
        3,
        "the foreign statement and the two good records, nothing else"
    );
    assert!(
        !statements
            .iter()
            .any(|s| s["verb"]["id"].as_str().unwrap().ends_with("/submit"))
    );

    // Staff press retry: it goes back in the queue (and fails the same way).
    outbox.retry(&poisoned).await.unwrap();
    assert_eq!(
        outbox.get(&poisoned).await.unwrap().state,
        RecordState::Pending
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_and_a_live_lesson_with_no_share_pauses_the_sync() {
    let lrs = Lrs::start();
    let proxy = FaultProxy::start(format!("127.0.0.1:{}", lrs.port).parse().unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path()).await.unwrap();
    let (load_tx, load) = watch::channel(LessonLoad {
        live: true,
        uplink_kbps: Some(500.0),
    });
    let settings = WorkerSettings {
        lesson_share: 0.0,
        ..fast()
    };
    let running = spawn(SyncWorker::new(
        outbox.clone(),
        client(&proxy.url("xAPI/")),
        settings,
        load,
    ));
    let id = outbox
        .enqueue(
            Target::Xapi,
            attendance("s1", AttendanceStatus::Present),
            None,
            vec![],
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        outbox.get(&id).await.unwrap().state,
        RecordState::Pending,
        "paused while the lesson is live"
    );
    assert_eq!(outbox.get(&id).await.unwrap().attempts, 0);

    // The lesson ends; the LMS answers 429 with Retry-After: 30.
    let before = classbox::frame::unix_micros() as i64 / 1000;
    proxy.push(Fault::Status(429, Some(30), "Too Many Requests"));
    load_tx.send_replace(LessonLoad::default());
    eventually(Duration::from_secs(10), "one attempt", || async {
        outbox.get(&id).await.unwrap().attempts == 1
    })
    .await;
    let record = outbox.get(&id).await.unwrap();
    assert!(record.last_error.as_deref().unwrap().contains("429"));
    assert!(
        record.next_attempt_at_ms >= before + 30_000,
        "next attempt {} ms after the 429, Retry-After said 30 s",
        record.next_attempt_at_ms - before
    );
    assert_eq!(record.state, RecordState::Pending);
    running.stop().await;
    assert!(lrs.statements().await.is_empty());
}

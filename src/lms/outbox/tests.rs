//! Tests of the outbox on real SQLite files.

use super::*;
use crate::lms::{AttendanceStatus, Student};

fn attendance(student: &str) -> Event {
    Event::Attendance {
        lesson: "maths-7".into(),
        student: Student {
            id: student.into(),
            name: None,
        },
        status: AttendanceStatus::Present,
        session_id: None,
    }
}

fn submission() -> Event {
    Event::Submission {
        assignment: "a1".into(),
        student: Student {
            id: "s1".into(),
            name: None,
        },
        text: None,
    }
}

fn file(name: &str, content_type: &str, bytes: &'static [u8]) -> NewAttachment {
    NewAttachment {
        file_name: name.into(),
        content_type: content_type.into(),
        content: AttachmentContent::Bytes(bytes::Bytes::from_static(bytes)),
    }
}

#[tokio::test]
async fn enqueued_records_survive_reopening_and_keep_entity_order() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path()).await.unwrap();
    let a1 = outbox
        .enqueue(Target::Xapi, attendance("s1"), None, vec![])
        .await
        .unwrap();
    let a2 = outbox
        .enqueue(Target::Xapi, attendance("s1"), None, vec![])
        .await
        .unwrap();
    let b1 = outbox
        .enqueue(Target::Xapi, attendance("s2"), None, vec![])
        .await
        .unwrap();
    drop(outbox);

    let outbox = Outbox::open(dir.path()).await.unwrap();
    let due: Vec<String> = outbox
        .due(i64::MAX, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.record_id)
        .collect();
    assert_eq!(
        due,
        vec![a1.clone(), b1.clone()],
        "s1's second record waits for its first"
    );
    // s1's first record is in backoff: s2 still goes, s1's second still waits.
    outbox.mark_retry(&a1, i64::MAX - 1, "500").await.unwrap();
    let due: Vec<String> = outbox
        .due(1000, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.record_id)
        .collect();
    assert_eq!(due, vec![b1.clone()]);
    // A dead record does not block its entity.
    outbox.mark_dead(&a1, "409 conflict").await.unwrap();
    let due: Vec<String> = outbox
        .due(1000, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.record_id)
        .collect();
    assert_eq!(due, vec![a2.clone(), b1.clone()]);
    let counts = outbox.counts().await.unwrap();
    assert_eq!((counts.pending, counts.dead), (2, 1));
    outbox.retry(&a1).await.unwrap();
    assert_eq!(outbox.get(&a1).await.unwrap().state, RecordState::Pending);
    assert!(
        outbox.retry(&a1).await.is_err(),
        "only dead records can be retried"
    );
}

#[tokio::test]
async fn a_repeated_idempotency_key_queues_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path()).await.unwrap();
    let key = Some("form-1234".to_string());
    let first = outbox
        .enqueue(Target::Xapi, attendance("s1"), key.clone(), vec![])
        .await
        .unwrap();
    let again = outbox
        .enqueue(Target::Xapi, attendance("s1"), key, vec![])
        .await
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(outbox.counts().await.unwrap().pending, 1);
}

#[tokio::test]
async fn attachments_are_stored_hashed_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path()).await.unwrap();
    let event = submission();
    let file = file(
        "../../etc/passwd essay.pdf",
        "application/pdf",
        b"%PDF-1.4 hello",
    );
    let id = outbox
        .enqueue(Target::Canvas, event, None, vec![file])
        .await
        .unwrap();
    let record = outbox.get(&id).await.unwrap();
    let a = &record.attachments[0];
    assert!(
        a.path.starts_with(dir.path().join("attachments").join(&id)),
        "{:?}",
        a.path
    );
    assert_eq!(a.size, 14);
    assert_eq!(a.read_verified().await.unwrap().as_ref(), b"%PDF-1.4 hello");
    std::fs::write(&a.path, b"%PDF-1.4 hellO").unwrap();
    let err = a.read_verified().await.unwrap_err();
    assert!(err.contains("corrupt"), "{err}");
}

#[tokio::test]
async fn bad_input_queues_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path()).await.unwrap();
    let bad_type = file("x.pdf", "pdf", b"x");
    let event = submission();
    assert!(matches!(
        outbox
            .enqueue(Target::Canvas, event, None, vec![bad_type])
            .await,
        Err(OutboxError::Attachment { .. })
    ));
    assert!(matches!(
        outbox
            .enqueue(Target::Xapi, attendance("bad id"), None, vec![])
            .await,
        Err(OutboxError::Invalid(_))
    ));
    assert_eq!(outbox.counts().await.unwrap(), QueueCounts::default());
    let leftovers = std::fs::read_dir(dir.path().join("attachments"))
        .unwrap()
        .count();
    assert_eq!(leftovers, 0, "refused attachments leave no files");
}

#[tokio::test]
async fn delivered_records_are_pruned_with_their_files() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path()).await.unwrap();
    let file = file("a.txt", "text/plain", b"x");
    let event = submission();
    let old = outbox
        .enqueue(Target::Canvas, event, None, vec![file])
        .await
        .unwrap();
    let kept = outbox
        .enqueue(Target::Xapi, attendance("s2"), None, vec![])
        .await
        .unwrap();
    outbox.mark_delivered(&old, 1_000).await.unwrap();
    let day = Duration::from_secs(86_400);
    assert_eq!(
        outbox
            .prune(1_000 + 8 * 86_400_000, 7 * day, 90 * day)
            .await
            .unwrap(),
        1
    );
    assert!(!dir.path().join("attachments").join(&old).exists());
    assert!(outbox.get(&old).await.is_err());
    assert_eq!(outbox.get(&kept).await.unwrap().state, RecordState::Pending);
}

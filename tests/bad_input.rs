//! Bad input reaches the relay: each gets a clear error, and the relay keeps serving
//! the other clients (a real lesson runs alongside every case).

mod common;

use std::time::Duration;

use classbox::{
    auth::{Claims, Role, unix_now},
    frame::TrackKind,
    transport::{TransportError, link::Link, tls},
};
use common::*;

/// A relay with a lesson running through it, for the bad clients to disturb.
struct Lesson {
    relay: TestRelay,
    classroom: Running,
    teacher: Running,
    _dir: tempfile::TempDir,
}

impl Lesson {
    async fn start() -> Lesson {
        init();
        let dir = tempfile::tempdir().unwrap();
        let relay = TestRelay::start(dir.path(), "127.0.0.1:0").await;
        let classroom = start_classroom(relay.client_config("lesson", Role::Box));
        let teacher = start_teacher(relay.client_config("lesson", Role::Teacher));
        let lesson = Lesson {
            relay,
            classroom,
            teacher,
            _dir: dir,
        };
        // Four lessons start at once here (debug build, two cores on CI): allow
        // them time to start; what is tested is that they keep flowing.
        let started = wait_until(Duration::from_secs(30), || lesson.decoded() >= 30).await;
        assert!(started, "lesson did not start");
        lesson
    }

    fn decoded(&self) -> u64 {
        self.classroom.stats.totals(TrackKind::Video).decoded
    }

    /// The good lesson still decodes new frames.
    async fn frames_keep_flowing(&self) -> bool {
        let before = self.decoded();
        wait_until(Duration::from_secs(10), || self.decoded() >= before + 30).await
    }

    fn link(&self, room: &str, token: Option<String>) -> Link {
        let config = client_config(
            &self.relay.addr.to_string(),
            Some(&self.relay.fingerprint),
            room,
            token,
        );
        Link::new(classbox::roles::link_settings(&config).unwrap()).unwrap()
    }

    /// A raw QUIC connection to the relay offering `alpn`.
    async fn raw_connection(
        &self,
        alpn: &str,
    ) -> Result<quinn::Connection, quinn::ConnectionError> {
        let fp = classbox::config::parse_fingerprint(&self.relay.fingerprint).unwrap();
        let endpoint = classbox::transport::endpoint::client(
            &tls::Trust::Pinned(fp),
            &[alpn],
            "127.0.0.1:0".parse().unwrap(),
        )
        .unwrap();
        endpoint
            .connect(self.relay.addr, "localhost")
            .unwrap()
            .await
    }

    async fn stop(self) {
        self.teacher.stop().await.unwrap();
        self.classroom.stop().await.unwrap();
        self.relay.stop().await;
    }
}

/// Wait for the relay to close `conn`, returning the close reason as text.
async fn closed_by_relay(conn: &quinn::Connection) -> String {
    let reason = tokio::time::timeout(Duration::from_secs(10), conn.closed())
        .await
        .expect("relay closes a bad connection within 10 s");
    reason.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_expired_or_missing_tokens_are_refused_clearly() {
    let lesson = Lesson::start().await;

    let for_other_room = lesson
        .relay
        .key
        .issue("history", Role::Box, Duration::from_secs(60));
    let err = lesson
        .link("lesson", Some(for_other_room))
        .probe(&classbox::roles::spawn_origin())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, TransportError::Refused(_)), "{err}");
    assert!(
        err.to_string().contains("for room `history`, not `lesson`"),
        "{err}"
    );

    let expired = lesson.relay.key.sign(&Claims {
        root: "lesson".into(),
        put: vec![],
        get: vec!["teacher".into()],
        exp: unix_now() - 30,
        iat: unix_now() - 90,
    });
    let err = lesson
        .link("lesson", Some(expired))
        .probe(&classbox::roles::spawn_origin())
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("expired"), "{err}");
    assert!(!err.is_retryable());

    let forged = classbox::auth::TokenKey::generate().issue(
        "lesson",
        Role::Teacher,
        Duration::from_secs(60),
    );
    let err = lesson
        .link("lesson", Some(forged))
        .probe(&classbox::roles::spawn_origin())
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("signature"), "{err}");

    let err = lesson
        .link("lesson", None)
        .probe(&classbox::roles::spawn_origin())
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("needs a token"), "{err}");

    let err = lesson
        .link("lesson", Some("not.a.jwt".into()))
        .probe(&classbox::roles::spawn_origin())
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("well-formed"), "{err}");

    assert!(
        lesson.frames_keep_flowing().await,
        "the lesson stalled after refused clients"
    );
    lesson.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_alpn_is_refused_in_the_handshake() {
    let lesson = Lesson::start().await;
    let err = lesson
        .raw_connection("h3-not-moq")
        .await
        .unwrap_err()
        .to_string();
    println!("unknown ALPN: {err}");
    // TLS alert 120 is no_application_protocol.
    assert!(
        err.contains("error 120") && err.contains("known protocol"),
        "{err}"
    );
    assert!(lesson.frames_keep_flowing().await);
    lesson.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_oversized_control_messages_close_only_that_connection() {
    let lesson = Lesson::start().await;

    // Garbage where the moq-lite setup should be.
    let conn = lesson.raw_connection("moq-lite-06").await.unwrap();
    let mut send = conn.open_uni().await.unwrap();
    send.write_all(b"\xff\xfe GET / HTTP/1.1 garbage garbage")
        .await
        .unwrap();
    send.finish().unwrap();
    let reason = closed_by_relay(&conn).await;
    println!("garbage: {reason}");
    assert!(reason.contains("closed by peer"), "{reason}");

    // A control message that claims to be 1 GiB long.
    let conn = lesson.raw_connection("moq-lite-06").await.unwrap();
    let mut send = conn.open_uni().await.unwrap();
    // Stream type 0 (session setup), then a 4-byte varint length of ~1 GiB.
    let mut msg = vec![0x00u8, 0xbf, 0xff, 0xff, 0xff];
    msg.extend_from_slice(&[0x41; 256 * 1024]);
    send.write_all(&msg).await.unwrap();
    let _ = send.finish();
    let reason = closed_by_relay(&conn).await;
    println!("oversized: {reason}");
    assert!(reason.contains("closed by peer"), "{reason}");

    assert!(
        lesson.frames_keep_flowing().await,
        "the lesson stalled after bad control messages"
    );
    lesson.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_media_stream_does_not_disturb_other_clients() {
    let lesson = Lesson::start().await;
    // A properly admitted second teacher connection that then sends a truncated
    // unidirectional stream (a group header cut off mid-varint).
    let token = lesson
        .relay
        .key
        .issue("lesson", Role::Teacher, Duration::from_secs(60));
    let origin = classbox::roles::spawn_origin();
    let connected = lesson
        .link("lesson", Some(token))
        .connect(&origin)
        .await
        .unwrap();
    let mut send = connected.conn.open_uni().await.unwrap();
    send.write_all(&[0x00, 0xc0, 0x00]).await.unwrap();
    send.finish().unwrap();
    let mut send = connected.conn.open_uni().await.unwrap();
    send.write_all(&[0x01, 0x40]).await.unwrap();
    send.finish().unwrap();
    // The relay either closes that connection with a protocol error or discards the
    // broken streams; either way the good lesson must keep going.
    let outcome = tokio::time::timeout(Duration::from_secs(3), connected.conn.closed()).await;
    println!("truncated stream: {outcome:?}");
    assert!(
        lesson.frames_keep_flowing().await,
        "the lesson stalled after a truncated stream"
    );
    drop(connected);
    lesson.stop().await;
}

//! The LMS outbox: what happens in the classroom reaches the school's LMS, exactly once
//! in effect, whenever the link allows.
//!
//! ```text
//! page / lesson events -> Event (validated) -> Outbox (SQLite, durable before the ack)
//!                                                 |
//!                  SyncWorker: link monitor, backoff, per-entity order, bandwidth share
//!                                                 |
//!                          one client per LMS: xAPI (LRS), Canvas REST, Moodle web services
//! ```
//!
//! Each client turns a delivery outcome into [`DeliveryError`], which says whether
//! retrying can help; the worker decides when.

pub mod canvas;
pub mod moodle;
pub mod outbox;
pub mod worker;
pub mod xapi;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use outbox::{NewAttachment, Outbox, OutboxError, OutboxRecord, QueueCounts, RecordState};
pub use worker::{LessonLoad, LmsClient, SyncStatus, SyncWorker, Throttle, WorkerSettings};

/// Which LMS a record is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Xapi,
    Canvas,
    Moodle,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Xapi => "xapi",
            Target::Canvas => "canvas",
            Target::Moodle => "moodle",
        }
    }

    /// Refuse, before queueing, what this LMS has no API for (it could never be sent).
    pub fn accepts(self, event: &Event) -> Result<(), InvalidEvent> {
        let refuse = |message: &str| {
            Err(InvalidEvent::Field {
                field: "kind",
                message: message.into(),
            })
        };
        match (self, event) {
            (Target::Xapi, _) => Ok(()),
            (Target::Canvas, Event::Attendance { .. } | Event::Lesson { .. }) => {
                refuse("Canvas has no API for attendance or lesson events (they stay on the box)")
            }
            (Target::Moodle, Event::Lesson { .. }) => {
                refuse("Moodle has no web service for lesson events")
            }
            (
                Target::Moodle,
                Event::Attendance {
                    session_id: None, ..
                },
            ) => {
                refuse("Moodle attendance needs the session_id of the lesson's attendance session")
            }
            (Target::Moodle, Event::Grade { grade, .. })
                if grade.trim().parse::<f64>().is_err() =>
            {
                refuse("Moodle grades are numbers")
            }
            _ => Ok(()),
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "xapi" => Some(Target::Xapi),
            "canvas" => Some(Target::Canvas),
            "moodle" => Some(Target::Moodle),
            _ => None,
        }
    }
}

/// A student, as the LMS knows them. `id` is the LMS user id (Canvas/Moodle) or, for
/// xAPI, the account name on `lms.account_homepage`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Student {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttendanceStatus {
    Present,
    Absent,
    Late,
    Excused,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LessonEvent {
    Started,
    Joined,
    Left,
    Ended,
}

/// Something the classroom recorded, as the page or the lesson sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Event {
    /// A student's attendance in a lesson (the latest status wins).
    Attendance {
        lesson: String,
        student: Student,
        status: AttendanceStatus,
        /// Moodle attendance plugin: the session this lesson is.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_id: Option<u64>,
    },
    /// The lesson started, the classroom joined or left, the lesson ended.
    Lesson {
        lesson: String,
        event: LessonEvent,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        teacher: Option<String>,
    },
    /// A student's work on an assignment: text and/or attached files.
    Submission {
        assignment: String,
        student: Student,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    /// A grade for a student's work (sets the value; sending it twice is harmless).
    Grade {
        assignment: String,
        student: Student,
        grade: String,
    },
}

/// Why an event was refused at the door (nothing was queued).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InvalidEvent {
    #[error("{field}: {message}")]
    Field {
        field: &'static str,
        message: String,
    },
    #[error("not a classroom event: {0}")]
    Shape(String),
}

impl Event {
    /// Parse the JSON the page sends, with a message that names what is wrong.
    pub fn from_json(text: &str) -> Result<Self, InvalidEvent> {
        let event: Event =
            serde_json::from_str(text).map_err(|e| InvalidEvent::Shape(e.to_string()))?;
        event.validate()?;
        Ok(event)
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Event::Attendance { .. } => "attendance",
            Event::Lesson { .. } => "lesson",
            Event::Submission { .. } => "submission",
            Event::Grade { .. } => "grade",
        }
    }

    /// The ordering key: records of one entity are delivered in the order recorded.
    /// A student's submission and grade share one, so the grade never lands first.
    pub fn entity(&self) -> String {
        match self {
            Event::Attendance {
                lesson, student, ..
            } => format!("attendance/{lesson}/{}", student.id),
            Event::Lesson { lesson, .. } => format!("lesson/{lesson}"),
            Event::Submission {
                assignment,
                student,
                ..
            }
            | Event::Grade {
                assignment,
                student,
                ..
            } => {
                format!("assignment/{assignment}/{}", student.id)
            }
        }
    }

    pub fn validate(&self) -> Result<(), InvalidEvent> {
        fn id(field: &'static str, value: &str) -> Result<(), InvalidEvent> {
            let ok = !value.is_empty()
                && value.len() <= 200
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.:@+".contains(c));
            if ok {
                Ok(())
            } else {
                Err(InvalidEvent::Field {
                    field,
                    message: format!(
                        "{value:?} is not an id (1-200 letters, digits or - _ . : @ +)"
                    ),
                })
            }
        }
        fn student(s: &Student) -> Result<(), InvalidEvent> {
            id("student.id", &s.id)?;
            if s.name
                .as_ref()
                .is_some_and(|n| n.len() > 200 || n.chars().any(char::is_control))
            {
                return Err(InvalidEvent::Field {
                    field: "student.name",
                    message: "at most 200 characters, no control characters".into(),
                });
            }
            Ok(())
        }
        match self {
            Event::Attendance {
                lesson, student: s, ..
            } => {
                id("lesson", lesson)?;
                student(s)
            }
            Event::Lesson {
                lesson, teacher, ..
            } => {
                id("lesson", lesson)?;
                if teacher.as_ref().is_some_and(|t| t.len() > 200) {
                    return Err(InvalidEvent::Field {
                        field: "teacher",
                        message: "at most 200 characters".into(),
                    });
                }
                Ok(())
            }
            Event::Submission {
                assignment,
                student: s,
                text,
            } => {
                id("assignment", assignment)?;
                student(s)?;
                if text.as_ref().is_some_and(|t| t.len() > 1_000_000) {
                    return Err(InvalidEvent::Field {
                        field: "text",
                        message: "at most 1 MB of text; attach a file instead".into(),
                    });
                }
                Ok(())
            }
            Event::Grade {
                assignment,
                student: s,
                grade,
            } => {
                id("assignment", assignment)?;
                student(s)?;
                if grade.trim().is_empty() || grade.len() > 32 {
                    return Err(InvalidEvent::Field {
                        field: "grade",
                        message: "a grade such as 8, 8.5, A or pass (at most 32 characters)".into(),
                    });
                }
                Ok(())
            }
        }
    }
}

/// What came of one delivery attempt, when it was not a success.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The LMS could not be reached (DNS, connect, TLS, timeout): the link is down.
    #[error("LMS unreachable: {0}")]
    Unreachable(String),
    /// Try again later (5xx, throttling, a timeout mid-upload); `after` is the server's
    /// `Retry-After` when it gave one.
    #[error("{reason}")]
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// Retrying cannot help (validation error, xAPI 409 conflict, a corrupt file): the
    /// record goes to the dead-letter list with this message for staff.
    #[error("{0}")]
    Permanent(String),
}

impl DeliveryError {
    /// Classify a failed HTTP exchange. `body` is the server's message, kept short.
    pub fn from_status(
        status: reqwest::StatusCode,
        headers: &reqwest::header::HeaderMap,
        body: &str,
    ) -> Self {
        let message = format!("{} {}", status.as_u16(), short(body));
        let after = retry_after(headers);
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || status.is_server_error()
            || status == reqwest::StatusCode::REQUEST_TIMEOUT
        {
            return DeliveryError::Retry {
                reason: message,
                after,
            };
        }
        DeliveryError::Permanent(message)
    }

    pub fn from_transport(error: reqwest::Error) -> Self {
        if error.is_connect() || error.is_timeout() && !error.is_body() {
            DeliveryError::Unreachable(error_chain(&error))
        } else {
            DeliveryError::Retry {
                reason: error_chain(&error),
                after: None,
            }
        }
    }
}

/// `Retry-After` in seconds (the HTTP-date form is rare from LMSs; treated as absent).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s.min(3600)))
}

/// A server message cut to a length fit for a table cell, on a char boundary.
pub fn short(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// The client `config` asks for (None: `lms.target = "none"`).
pub fn client_from_config(
    config: &crate::config::Config,
) -> Result<Option<worker::LmsClient>, crate::config::ConfigError> {
    let lms = &config.lms;
    let Some(target) = Target::parse(&lms.target) else {
        return Ok(None);
    };
    let bad_url = |e: String| crate::config::ConfigError::Key {
        key: "lms.url".into(),
        origin: "config".into(),
        message: e,
    };
    let mut url = lms.url.clone().unwrap_or_default();
    // A base without its trailing slash would lose its last segment on join().
    if !url.ends_with('/') {
        url.push('/');
    }
    let base = reqwest::Url::parse(&url).map_err(|e| bad_url(e.to_string()))?;
    let secret = lms.secret()?;
    let http = http_client(Duration::from_secs(120));
    Ok(Some(match target {
        Target::Xapi => worker::LmsClient::Xapi(xapi::XapiClient::new(
            http,
            xapi::XapiSettings {
                account_homepage: lms
                    .account_homepage
                    .clone()
                    .unwrap_or_else(|| base.origin().ascii_serialization()),
                endpoint: base,
                key: lms.username.clone(),
                secret,
                box_id: config.box_id(),
            },
        )),
        Target::Canvas => worker::LmsClient::Canvas(canvas::CanvasClient::new(
            http,
            canvas::CanvasSettings {
                base,
                token: secret,
                course_id: lms.course_id.clone(),
            },
        )),
        Target::Moodle => {
            let ids = &lms.moodle_status_ids;
            worker::LmsClient::Moodle(moodle::MoodleClient::new(
                http,
                moodle::MoodleSettings {
                    base,
                    token: secret,
                    taken_by: lms.moodle_taken_by,
                    status_set: lms.moodle_status_set.clone(),
                    status_ids: [0, 1, 2, 3].map(|i| ids.get(i).copied().unwrap_or_default()),
                    course_id: Some(lms.course_id.clone()).filter(|c| !c.is_empty()),
                },
            ))
        }
    }))
}

/// Worker settings from `config`.
pub fn worker_settings(config: &crate::config::Config) -> WorkerSettings {
    WorkerSettings {
        lesson_share: config.lms.lesson_share_percent / 100.0,
        fallback_uplink_kbps: config.lms.fallback_uplink_kbps,
        keep_delivered: Duration::from_secs(config.lms.keep_delivered_days * 86_400),
        ..Default::default()
    }
}

/// One HTTP client for every LMS: timeouts so a dead link is noticed, no redirects to
/// other hosts carrying credentials.
pub fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("classbox/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("HTTP client builds")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_parse_and_name_their_entity() {
        let e = Event::from_json(
            r#"{"kind":"attendance","lesson":"maths-7","student":{"id":"s1","name":"Ada"},"status":"late"}"#,
        )
        .unwrap();
        assert_eq!(e.entity(), "attendance/maths-7/s1");
        let g = Event::from_json(
            r#"{"kind":"grade","assignment":"a1","student":{"id":"s1"},"grade":"8"}"#,
        )
        .unwrap();
        let s = Event::from_json(
            r#"{"kind":"submission","assignment":"a1","student":{"id":"s1"},"text":"x"}"#,
        )
        .unwrap();
        assert_eq!(
            g.entity(),
            s.entity(),
            "a grade waits for the work it grades"
        );
    }

    #[test]
    fn bad_events_are_refused_with_the_field_named() {
        for (json, needle) in [
            (
                r#"{"kind":"attendance","lesson":"","student":{"id":"s1"},"status":"present"}"#,
                "lesson",
            ),
            (
                r#"{"kind":"attendance","lesson":"l","student":{"id":"s 1"},"status":"present"}"#,
                "student.id",
            ),
            (
                r#"{"kind":"attendance","lesson":"l","student":{"id":"s1"},"status":"asleep"}"#,
                "asleep",
            ),
            (
                r#"{"kind":"grade","assignment":"a","student":{"id":"s1"},"grade":" "}"#,
                "grade",
            ),
            (r#"{"kind":"party"}"#, "party"),
            (
                r#"{"kind":"lesson","lesson":"l","event":"started","extra":1}"#,
                "extra",
            ),
            ("not json", "expected"),
        ] {
            let err = Event::from_json(json).unwrap_err().to_string();
            assert!(err.contains(needle), "{json}: {err}");
        }
    }

    #[test]
    fn statuses_are_classified() {
        let h = reqwest::header::HeaderMap::new();
        assert!(matches!(
            DeliveryError::from_status(reqwest::StatusCode::CONFLICT, &h, "x"),
            DeliveryError::Permanent(_)
        ));
        assert!(matches!(
            DeliveryError::from_status(reqwest::StatusCode::BAD_GATEWAY, &h, "x"),
            DeliveryError::Retry { .. }
        ));
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        match DeliveryError::from_status(reqwest::StatusCode::TOO_MANY_REQUESTS, &h, "slow down") {
            DeliveryError::Retry { after, reason } => {
                assert_eq!(after, Some(Duration::from_secs(7)));
                assert!(reason.contains("slow down"));
            }
            other => panic!("{other:?}"),
        }
    }
}

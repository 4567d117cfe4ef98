//! xAPI client: each record becomes one statement, PUT with its id.
//!
//! Follows the xAPI 1.0.3 specification, Communication part: `PUT statements?statementId=`
//! answers 204, a repeat of the identical statement is accepted again, a different
//! statement under the same id is 409 Conflict (permanent). Files go as attachments in a
//! `multipart/mixed` request, each part carrying its SHA-256 (`X-Experience-API-Hash`).

use serde_json::{Value, json};

use super::{
    AttendanceStatus, DeliveryError, Event, LessonEvent, OutboxRecord, Student, worker::Throttle,
};

/// Verbs. ADL's registry where it has one; ours (under w3id.org/xapi/classbox) where not.
const VERB_ATTENDED: &str = "http://adlnet.gov/expapi/verbs/attended";
const VERB_ABSENT: &str = "https://w3id.org/xapi/classbox/verbs/was-absent";
const VERB_EXCUSED: &str = "https://w3id.org/xapi/classbox/verbs/was-excused";
const VERB_INITIALIZED: &str = "http://adlnet.gov/expapi/verbs/initialized";
const VERB_JOINED: &str = "http://activitystrea.ms/schema/1.0/join";
const VERB_LEFT: &str = "http://activitystrea.ms/schema/1.0/leave";
const VERB_COMPLETED: &str = "http://adlnet.gov/expapi/verbs/completed";
const VERB_SUBMITTED: &str = "http://activitystrea.ms/schema/1.0/submit";
const VERB_SCORED: &str = "http://adlnet.gov/expapi/verbs/scored";
const EXT: &str = "https://w3id.org/xapi/classbox/extensions";

#[derive(Debug, Clone)]
pub struct XapiSettings {
    /// The LRS's xAPI base, e.g. `https://lrs.example.org/data/xAPI/`.
    pub endpoint: reqwest::Url,
    pub key: String,
    pub secret: String,
    /// `homePage` of the accounts students and classrooms have (the school's LMS).
    pub account_homepage: String,
    /// This box, as an actor of lesson events.
    pub box_id: String,
}

pub struct XapiClient {
    http: reqwest::Client,
    settings: XapiSettings,
}

impl XapiClient {
    pub fn new(http: reqwest::Client, settings: XapiSettings) -> Self {
        Self { http, settings }
    }

    fn url(&self, path: &str) -> reqwest::Url {
        self.settings
            .endpoint
            .join(path)
            .expect("relative xAPI path joins")
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .basic_auth(&self.settings.key, Some(&self.settings.secret))
            .header("X-Experience-API-Version", "1.0.3")
    }

    /// Is the LRS there and does it take our credentials?
    pub async fn check(&self) -> Result<(), DeliveryError> {
        let response = self
            .request(reqwest::Method::GET, "statements?limit=1")
            .send()
            .await
            .map_err(DeliveryError::from_transport)?;
        if response.status().is_success() {
            return Ok(());
        }
        let (status, headers) = (response.status(), response.headers().clone());
        Err(DeliveryError::from_status(
            status,
            &headers,
            &response.text().await.unwrap_or_default(),
        ))
    }

    pub async fn deliver(
        &self,
        record: &OutboxRecord,
        throttle: &Throttle,
    ) -> Result<(), DeliveryError> {
        let id = statement_id(&record.idempotency_key);
        let mut statement = self.statement(record);
        statement["id"] = json!(id);
        let mut files = Vec::new();
        for a in &record.attachments {
            let data = a.read_verified().await.map_err(DeliveryError::Permanent)?;
            files.push((a, data));
        }
        let request = self
            .request(reqwest::Method::PUT, "statements")
            .query(&[("statementId", &id)]);
        let request = if files.is_empty() {
            let body = serde_json::to_vec(&statement).expect("statement serializes");
            throttle.take(body.len()).await;
            request
                .header("Content-Type", "application/json")
                .body(body)
        } else {
            statement["attachments"] = files
                .iter()
                .map(|(a, _)| {
                    json!({
                        "usageType": "http://id.tincanapi.com/attachment/supporting_media",
                        "display": {"en-US": a.file_name},
                        "contentType": a.content_type,
                        "length": a.size,
                        "sha2": a.sha256,
                    })
                })
                .collect();
            let boundary = format!("classbox-{}", uuid::Uuid::new_v4().simple());
            let mut body = Vec::new();
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Type: application/json\r\n\r\n{statement}\r\n")
                    .as_bytes(),
            );
            for (a, data) in &files {
                body.extend_from_slice(
                    format!(
                        "--{boundary}\r\nContent-Type: {}\r\nContent-Transfer-Encoding: binary\r\nX-Experience-API-Hash: {}\r\n\r\n",
                        a.content_type, a.sha256
                    )
                    .as_bytes(),
                );
                body.extend_from_slice(data);
                body.extend_from_slice(b"\r\n");
            }
            body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
            request
                .header(
                    "Content-Type",
                    format!("multipart/mixed; boundary={boundary}"),
                )
                .body(throttle.body(body.into()))
        };
        let response = request
            .send()
            .await
            .map_err(DeliveryError::from_transport)?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let headers = response.headers().clone();
        let body = response.text().await.unwrap_or_default();
        Err(match DeliveryError::from_status(status, &headers, &body) {
            DeliveryError::Permanent(m) if status == reqwest::StatusCode::CONFLICT => {
                DeliveryError::Permanent(format!(
                    "the LRS already holds a different statement {id}: {m}"
                ))
            }
            other => other,
        })
    }

    fn agent(&self, student: &Student) -> Value {
        let mut agent = json!({
            "objectType": "Agent",
            "account": {"homePage": self.settings.account_homepage, "name": student.id},
        });
        if let Some(name) = &student.name {
            agent["name"] = json!(name);
        }
        agent
    }

    fn activity(&self, kind: &str, id: &str, name: &str) -> Value {
        let base = self.settings.account_homepage.trim_end_matches('/');
        json!({
            "objectType": "Activity",
            "id": format!("{base}/classbox/{kind}/{}", urlencode(id)),
            "definition": {"name": {"en-US": name}},
        })
    }

    /// The statement for a record (without id and attachments).
    pub fn statement(&self, record: &OutboxRecord) -> Value {
        let (actor, verb, object, result) = match &record.event {
            Event::Attendance {
                lesson,
                student,
                status,
                ..
            } => {
                let verb = match status {
                    AttendanceStatus::Present | AttendanceStatus::Late => VERB_ATTENDED,
                    AttendanceStatus::Absent => VERB_ABSENT,
                    AttendanceStatus::Excused => VERB_EXCUSED,
                };
                let status = serde_json::to_value(status).expect("status serializes");
                (
                    self.agent(student),
                    verb,
                    self.activity("lesson", lesson, lesson),
                    Some(json!({"extensions": {format!("{EXT}/attendance-status"): status}})),
                )
            }
            Event::Lesson {
                lesson,
                event,
                teacher,
            } => {
                let verb = match event {
                    LessonEvent::Started => VERB_INITIALIZED,
                    LessonEvent::Joined => VERB_JOINED,
                    LessonEvent::Left => VERB_LEFT,
                    LessonEvent::Ended => VERB_COMPLETED,
                };
                let classroom = Student {
                    id: self.settings.box_id.clone(),
                    name: Some(format!("classroom {}", self.settings.box_id)),
                };
                let result = teacher
                    .as_ref()
                    .map(|t| json!({"extensions": {format!("{EXT}/teacher"): t}}));
                (
                    self.agent(&classroom),
                    verb,
                    self.activity("lesson", lesson, lesson),
                    result,
                )
            }
            Event::Submission {
                assignment,
                student,
                text,
            } => (
                self.agent(student),
                VERB_SUBMITTED,
                self.activity("assignment", assignment, assignment),
                text.as_ref().map(|t| json!({"response": t})),
            ),
            Event::Grade {
                assignment,
                student,
                grade,
            } => {
                let result = match grade.trim().parse::<f64>() {
                    Ok(raw) if raw.is_finite() => json!({"score": {"raw": raw}}),
                    _ => json!({"response": grade, "extensions": {format!("{EXT}/grade"): grade}}),
                };
                (
                    self.agent(student),
                    VERB_SCORED,
                    self.activity("assignment", assignment, assignment),
                    Some(result),
                )
            }
        };
        let verb_name = verb.rsplit('/').next().unwrap_or(verb);
        let mut context = json!({
            "platform": "classbox",
            "extensions": {format!("{EXT}/local-sequence"): record.seq, format!("{EXT}/box"): self.settings.box_id},
        });
        let mut statement = json!({
            "actor": actor,
            "verb": {"id": verb, "display": {"en-US": verb_name}},
            "object": object,
        });
        if record.clock_suspect {
            // NOTE: a time we know may be wrong is not sent as the statement's timestamp
            // (the LRS then uses its own receipt time); it is kept, flagged, for staff.
            context["extensions"][format!("{EXT}/clock-suspect")] =
                json!({"recorded-at": rfc3339(record.created_at_ms)});
        } else {
            statement["timestamp"] = json!(rfc3339(record.created_at_ms));
        }
        statement["context"] = context;
        if let Some(result) = result {
            statement["result"] = result;
        }
        statement
    }
}

/// The statement id: the idempotency key itself when it is a UUID, else a UUID derived
/// from it (v5), so the same record always carries the same id.
pub fn statement_id(key: &str) -> String {
    match uuid::Uuid::parse_str(key) {
        Ok(id) => id.to_string(),
        Err(_) => uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_URL,
            format!("classbox:{key}").as_bytes(),
        )
        .to_string(),
    }
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Unix milliseconds as an RFC 3339 UTC timestamp (`2026-11-22T08:30:00.000Z`).
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_335_000_123), "2026-11-22T08:10:00.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn statement_ids_are_stable() {
        let v4 = "0e27d99c-04b9-4535-827f-c12798513336";
        assert_eq!(statement_id(v4), v4);
        assert_eq!(statement_id("form-1"), statement_id("form-1"));
        assert_ne!(statement_id("form-1"), statement_id("form-2"));
    }
}

//! Moodle web services client (REST protocol, JSON answers).
//!
//! Follows Moodle's web service API documentation (docs.moodle.org/dev/Web_service_API_functions,
//! and the site's own /admin/webservice/documentation.php): every call is a POST to
//! `/webservice/rest/server.php` with `wstoken`, `wsfunction`, `moodlewsrestformat=json`
//! and the function's parameters form-encoded (arrays as `name[0][key]`). A failure
//! is usually HTTP 200 with `{"exception", "errorcode", "message"}`.
//! - Grades: `mod_assign_save_grade` (sets a value).
//! - Submissions: files first to `/webservice/upload.php` (draft area, one item id for
//!   all of a record's files), then `mod_assign_save_submission`, which replaces the
//!   submission's content: a repeat sets the same content again. Moodle saves it as
//!   the token's user, so the token must belong to the student or a user allowed to
//!   submit for them.
//! - Attendance: the attendance plugin's `mod_attendance_update_user_status` (sets the
//!   student's status in a session).

use serde_json::Value;

use super::{AttendanceStatus, DeliveryError, Event, OutboxRecord, worker::Throttle};

#[derive(Debug, Clone)]
pub struct MoodleSettings {
    pub base: reqwest::Url,
    pub token: String,
    /// Attendance: the Moodle user id recorded as taking it.
    pub taken_by: u64,
    /// Attendance: the status set and the status ids for present, absent, late, excused.
    pub status_set: String,
    pub status_ids: [u64; 4],
    /// The course, for its class list.
    pub course_id: Option<String>,
}

pub struct MoodleClient {
    http: reqwest::Client,
    settings: MoodleSettings,
}

impl MoodleClient {
    pub fn new(http: reqwest::Client, settings: MoodleSettings) -> Self {
        Self { http, settings }
    }

    /// Call `function` with form parameters; the decoded JSON answer or the error.
    pub async fn call(
        &self,
        function: &str,
        params: &[(String, String)],
        throttle: &Throttle,
    ) -> Result<Value, DeliveryError> {
        let mut form: Vec<(String, String)> = vec![
            ("wstoken".into(), self.settings.token.clone()),
            ("wsfunction".into(), function.into()),
            ("moodlewsrestformat".into(), "json".into()),
        ];
        form.extend_from_slice(params);
        throttle
            .take(form.iter().map(|(k, v)| k.len() + v.len() + 2).sum())
            .await;
        let url = self
            .settings
            .base
            .join("webservice/rest/server.php")
            .expect("path joins");
        let response = self
            .http
            .post(url)
            .form(&form)
            .send()
            .await
            .map_err(DeliveryError::from_transport)?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .text()
            .await
            .map_err(DeliveryError::from_transport)?;
        if !status.is_success() {
            return Err(DeliveryError::from_status(status, &headers, &body));
        }
        let value: Value = if body.trim().is_empty() || body.trim() == "null" {
            Value::Null
        } else {
            serde_json::from_str(&body).map_err(|e| DeliveryError::Retry {
                reason: format!(
                    "Moodle answered something that is not JSON ({e}): {}",
                    super::short(&body)
                ),
                after: None,
            })?
        };
        if let Some(code) = value.get("errorcode").and_then(Value::as_str) {
            let message = value.get("message").and_then(Value::as_str).unwrap_or("");
            return Err(DeliveryError::Permanent(format!(
                "Moodle {function}: {code}: {message}"
            )));
        }
        Ok(value)
    }

    /// The course's students: `core_enrol_get_enrolled_users` (needs `course_id`).
    pub async fn roster(&self) -> Result<Vec<super::Student>, DeliveryError> {
        let Some(course) = &self.settings.course_id else {
            return Err(DeliveryError::Permanent(
                "set lms.course_id (the Moodle course id) to fetch the class list".into(),
            ));
        };
        let users = self
            .call(
                "core_enrol_get_enrolled_users",
                &[("courseid".into(), course.clone())],
                &Throttle::unlimited(),
            )
            .await?;
        let users = users.as_array().cloned().unwrap_or_default();
        Ok(users
            .iter()
            .filter(|u| {
                // Students only, when Moodle says who is what.
                u["roles"]
                    .as_array()
                    .is_none_or(|roles| roles.iter().any(|r| r["shortname"] == "student"))
            })
            .filter_map(|u| {
                Some(super::Student {
                    id: u["id"].as_u64()?.to_string(),
                    name: u["fullname"].as_str().map(str::to_string),
                })
            })
            .collect())
    }

    pub async fn check(&self) -> Result<(), DeliveryError> {
        self.call("core_webservice_get_site_info", &[], &Throttle::unlimited())
            .await
            .map(drop)
    }

    pub async fn deliver(
        &self,
        record: &OutboxRecord,
        throttle: &Throttle,
    ) -> Result<(), DeliveryError> {
        let p = |k: &str, v: String| (k.to_string(), v);
        match &record.event {
            Event::Grade {
                assignment,
                student,
                grade,
            } => {
                let grade: f64 = grade.trim().parse().map_err(|_| {
                    DeliveryError::Permanent(format!(
                        "Moodle grades are numbers; {grade:?} is not one"
                    ))
                })?;
                let params = [
                    p("assignmentid", assignment.clone()),
                    p("userid", student.id.clone()),
                    p("grade", grade.to_string()),
                    p("attemptnumber", "-1".into()),
                    p("addattempt", "0".into()),
                    p("workflowstate", String::new()),
                    p("applytoall", "0".into()),
                ];
                self.call("mod_assign_save_grade", &params, throttle)
                    .await
                    .map(drop)
            }
            Event::Submission {
                assignment, text, ..
            } => {
                let mut params = vec![p("assignmentid", assignment.clone())];
                if let Some(text) = text {
                    // The key rides along invisibly: the submission can be traced to its record.
                    let html = format!(
                        "{}<!-- classbox:{} -->",
                        html_escape(text),
                        record.idempotency_key
                    );
                    params.push(p("plugindata[onlinetext_editor][text]", html));
                    params.push(p("plugindata[onlinetext_editor][format]", "1".into()));
                    params.push(p("plugindata[onlinetext_editor][itemid]", "0".into()));
                }
                if !record.attachments.is_empty() {
                    let item = self.upload_drafts(record, throttle).await?;
                    params.push(p("plugindata[files_filemanager]", item.to_string()));
                }
                let warnings = self
                    .call("mod_assign_save_submission", &params, throttle)
                    .await?;
                match warnings.as_array().filter(|w| !w.is_empty()) {
                    Some(w) => Err(DeliveryError::Permanent(format!(
                        "Moodle refused the submission: {}",
                        super::short(&Value::from(w.clone()).to_string())
                    ))),
                    None => Ok(()),
                }
            }
            Event::Attendance {
                student,
                status,
                session_id,
                ..
            } => {
                let session = session_id.ok_or_else(|| {
                    DeliveryError::Permanent(
                        "attendance for Moodle needs the lesson's session_id".into(),
                    )
                })?;
                let index = match status {
                    AttendanceStatus::Present => 0,
                    AttendanceStatus::Absent => 1,
                    AttendanceStatus::Late => 2,
                    AttendanceStatus::Excused => 3,
                };
                let params = [
                    p("sessionid", session.to_string()),
                    p("studentid", student.id.clone()),
                    p("takenbyid", self.settings.taken_by.to_string()),
                    p("statusid", self.settings.status_ids[index].to_string()),
                    p("statusset", self.settings.status_set.clone()),
                ];
                self.call("mod_attendance_update_user_status", &params, throttle)
                    .await
                    .map(drop)
            }
            Event::Lesson { .. } => Err(DeliveryError::Permanent(
                "Moodle has no web service for lesson events".into(),
            )),
        }
    }

    /// Upload a record's files into one draft area; returns its item id.
    async fn upload_drafts(
        &self,
        record: &OutboxRecord,
        throttle: &Throttle,
    ) -> Result<u64, DeliveryError> {
        let mut item = 0u64;
        for a in &record.attachments {
            let data = a.read_verified().await.map_err(DeliveryError::Permanent)?;
            let part = reqwest::multipart::Part::stream_with_length(throttle.body(data), a.size)
                .file_name(a.file_name.clone())
                .mime_str(&a.content_type)
                .map_err(|e| DeliveryError::Permanent(format!("bad content type: {e}")))?;
            let form = reqwest::multipart::Form::new()
                .text("token", self.settings.token.clone())
                .text("filearea", "draft")
                .text("itemid", item.to_string())
                .part("file_1", part);
            let url = self
                .settings
                .base
                .join("webservice/upload.php")
                .expect("path joins");
            let response = self
                .http
                .post(url)
                .multipart(form)
                .send()
                .await
                .map_err(DeliveryError::from_transport)?;
            let (status, headers) = (response.status(), response.headers().clone());
            let body = response
                .text()
                .await
                .map_err(DeliveryError::from_transport)?;
            if !status.is_success() {
                return Err(DeliveryError::from_status(status, &headers, &body));
            }
            let answer: Value = serde_json::from_str(&body).map_err(|e| DeliveryError::Retry {
                reason: format!("unexpected upload answer from Moodle ({e})"),
                after: None,
            })?;
            if let Some(error) = answer.get("error").and_then(Value::as_str) {
                return Err(DeliveryError::Permanent(format!("Moodle upload: {error}")));
            }
            item = answer[0]["itemid"]
                .as_u64()
                .ok_or_else(|| DeliveryError::Retry {
                    reason: "Moodle upload answer has no itemid".into(),
                    after: None,
                })?;
        }
        Ok(item)
    }
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

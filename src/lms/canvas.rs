//! Canvas LMS REST client (grades, submissions with files, the course roster).
//!
//! Follows Canvas's REST API documentation (canvas.instructure.com/doc/api):
//! - Grades: "Grade or comment on a submission", `PUT /api/v1/courses/:course_id/
//!   assignments/:assignment_id/submissions/:user_id` with `submission[posted_grade]`.
//!   It sets a value, so a repeat is harmless.
//! - Submissions: "Submit an assignment", `POST /api/v1/courses/:course_id/assignments/
//!   :assignment_id/submissions` with `submission[user_id]` (on behalf of a student).
//!   It appends, so the client first looks (`GET .../submissions/:user_id?include[]=
//!   submission_comments`) for the comment carrying this record's key.
//! - Files: "Uploading files", step 1 `POST .../submissions/:user_id/files` (name, size,
//!   content_type) -> `upload_url` + `upload_params`; step 2 a multipart POST of the
//!   params and the file to `upload_url` (201 with the file, or a 3xx to confirm).
//!   Canvas offers no resumable upload; a broken upload restarts from step 1.
//! - Pagination: the `Link` header's `rel="next"` ("Pagination").
//! - Throttling: 403 with "Rate Limit Exceeded" in the body ("Throttling"); retried.
//!
//! Attendance and lesson events have no Canvas REST API (Roll Call is an LTI tool);
//! the outbox refuses them for this target.

use serde::Deserialize;
use serde_json::Value;

use super::{DeliveryError, Event, OutboxRecord, Student, worker::Throttle};

#[derive(Debug, Clone)]
pub struct CanvasSettings {
    /// e.g. `https://school.instructure.com/`
    pub base: reqwest::Url,
    pub token: String,
    pub course_id: String,
}

pub struct CanvasClient {
    http: reqwest::Client,
    settings: CanvasSettings,
}

#[derive(Debug, Deserialize)]
struct UploadTicket {
    upload_url: String,
    #[serde(default)]
    upload_params: serde_json::Map<String, Value>,
}

impl CanvasClient {
    pub fn new(http: reqwest::Client, settings: CanvasSettings) -> Self {
        Self { http, settings }
    }

    fn url(&self, path: &str) -> reqwest::Url {
        self.settings
            .base
            .join(path)
            .expect("relative Canvas path joins")
    }

    fn course(&self, rest: &str) -> reqwest::Url {
        self.url(&format!(
            "api/v1/courses/{}/{rest}",
            self.settings.course_id
        ))
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, DeliveryError> {
        let response = request
            .bearer_auth(&self.settings.token)
            .send()
            .await
            .map_err(DeliveryError::from_transport)?;
        check(response).await
    }

    pub async fn check(&self) -> Result<(), DeliveryError> {
        self.send(self.http.get(self.url("api/v1/users/self")))
            .await
            .map(drop)
    }

    /// The course's students, following `Link: <...>; rel="next"` page by page.
    pub async fn roster(&self) -> Result<Vec<Student>, DeliveryError> {
        #[derive(Deserialize)]
        struct User {
            id: Value,
            name: Option<String>,
        }
        let mut next = Some(self.course("users?enrollment_type[]=student&per_page=100"));
        let mut students = Vec::new();
        while let Some(url) = next.take() {
            let response = self.send(self.http.get(url.clone())).await?;
            next = next_link(response.headers()).and_then(|n| url.join(&n).ok());
            let page: Vec<User> = response.json().await.map_err(|e| {
                DeliveryError::Permanent(format!("unexpected roster page from Canvas: {e}"))
            })?;
            students.extend(page.into_iter().map(|u| Student {
                id: match u.id {
                    Value::String(s) => s,
                    other => other.to_string(),
                },
                name: u.name,
            }));
        }
        Ok(students)
    }

    pub async fn deliver(
        &self,
        record: &OutboxRecord,
        throttle: &Throttle,
    ) -> Result<(), DeliveryError> {
        match &record.event {
            Event::Grade {
                assignment,
                student,
                grade,
            } => {
                let form = [("submission[posted_grade]", grade.as_str())];
                throttle.take(128).await;
                let url = self.course(&format!(
                    "assignments/{assignment}/submissions/{}",
                    student.id
                ));
                self.send(self.http.put(url).form(&form)).await.map(drop)
            }
            Event::Submission {
                assignment,
                student,
                text,
            } => {
                let marker = marker(&record.idempotency_key);
                if self
                    .already_submitted(assignment, &student.id, &marker)
                    .await?
                {
                    tracing::info!(record = %record.record_id, "Canvas already has this submission");
                    return Ok(());
                }
                let mut file_ids = Vec::new();
                for a in &record.attachments {
                    let data = a.read_verified().await.map_err(DeliveryError::Permanent)?;
                    file_ids.push(
                        self.upload(assignment, &student.id, a, data, throttle)
                            .await?,
                    );
                }
                let mut form: Vec<(String, String)> =
                    vec![("submission[user_id]".into(), student.id.clone())];
                if file_ids.is_empty() {
                    form.push((
                        "submission[submission_type]".into(),
                        "online_text_entry".into(),
                    ));
                    form.push(("submission[body]".into(), text.clone().unwrap_or_default()));
                } else {
                    form.push(("submission[submission_type]".into(), "online_upload".into()));
                    for id in file_ids {
                        form.push(("submission[file_ids][]".into(), id));
                    }
                }
                let note = match text {
                    Some(t) if !form.iter().any(|(k, _)| k == "submission[body]") => {
                        format!("{t}\n\n{marker}")
                    }
                    _ => format!("Handed in in the classroom. {marker}"),
                };
                form.push(("comment[text_comment]".into(), note));
                throttle
                    .take(form.iter().map(|(k, v)| k.len() + v.len()).sum())
                    .await;
                self.send(
                    self.http
                        .post(self.course(&format!("assignments/{assignment}/submissions")))
                        .form(&form),
                )
                .await
                .map(drop)
            }
            Event::Attendance { .. } | Event::Lesson { .. } => Err(DeliveryError::Permanent(
                "Canvas has no REST API for attendance or lesson events".into(),
            )),
        }
    }

    /// Look before appending: does the student's submission carry our marker already?
    async fn already_submitted(
        &self,
        assignment: &str,
        user: &str,
        marker: &str,
    ) -> Result<bool, DeliveryError> {
        let url = self.course(&format!(
            "assignments/{assignment}/submissions/{user}?include[]=submission_comments"
        ));
        let submission: Value = self
            .send(self.http.get(url))
            .await?
            .json()
            .await
            .map_err(|e| DeliveryError::Retry {
                reason: format!("unreadable submission from Canvas: {e}"),
                after: None,
            })?;
        let comments = submission["submission_comments"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok(comments
            .iter()
            .any(|c| c["comment"].as_str().is_some_and(|t| t.contains(marker))))
    }

    /// Canvas's two-step file upload; returns the file id.
    async fn upload(
        &self,
        assignment: &str,
        user: &str,
        attachment: &super::outbox::Attachment,
        data: bytes::Bytes,
        throttle: &Throttle,
    ) -> Result<String, DeliveryError> {
        let url = self.course(&format!(
            "assignments/{assignment}/submissions/{user}/files"
        ));
        let form = [
            ("name", attachment.file_name.clone()),
            ("size", attachment.size.to_string()),
            ("content_type", attachment.content_type.clone()),
        ];
        let ticket: UploadTicket = self
            .send(self.http.post(url).form(&form))
            .await?
            .json()
            .await
            .map_err(|e| DeliveryError::Retry {
                reason: format!("unexpected upload ticket from Canvas: {e}"),
                after: None,
            })?;
        let upload_url =
            self.settings.base.join(&ticket.upload_url).map_err(|e| {
                DeliveryError::Permanent(format!("bad upload_url from Canvas: {e}"))
            })?;
        let mut multipart = reqwest::multipart::Form::new();
        for (k, v) in ticket.upload_params {
            let v = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            multipart = multipart.text(k, v);
        }
        let part =
            reqwest::multipart::Part::stream_with_length(throttle.body(data), attachment.size)
                .file_name(attachment.file_name.clone())
                .mime_str(&attachment.content_type)
                .map_err(|e| DeliveryError::Permanent(format!("bad content type: {e}")))?;
        multipart = multipart.part("file", part);
        // The upload URL may be another host (a file store): no bearer token there.
        let response = self
            .http
            .post(upload_url)
            .multipart(multipart)
            .send()
            .await
            .map_err(DeliveryError::from_transport)?;
        let response = if response.status().is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .ok_or_else(|| DeliveryError::Retry {
                    reason: "Canvas upload redirect without Location".into(),
                    after: None,
                })?
                .to_string();
            let confirm = self
                .settings
                .base
                .join(&location)
                .map_err(|e| DeliveryError::Permanent(format!("bad confirm URL: {e}")))?;
            self.send(self.http.get(confirm)).await?
        } else {
            check(response).await?
        };
        let file: Value = response.json().await.map_err(|e| DeliveryError::Retry {
            reason: format!("unexpected upload answer from Canvas: {e}"),
            after: None,
        })?;
        match &file["id"] {
            Value::Number(n) => Ok(n.to_string()),
            Value::String(s) => Ok(s.clone()),
            _ => Err(DeliveryError::Retry {
                reason: "Canvas upload answer has no file id".into(),
                after: None,
            }),
        }
    }
}

/// The text that marks a submission as this record's, found again on a retry.
fn marker(key: &str) -> String {
    format!("[classbox:{key}]")
}

/// Map a Canvas answer to a result; its rate limit is a 403, not a 429.
async fn check(response: reqwest::Response) -> Result<reqwest::Response, DeliveryError> {
    let status = response.status();
    if status.is_success() || status.is_redirection() {
        return Ok(response);
    }
    let headers = response.headers().clone();
    let body = response.text().await.unwrap_or_default();
    if status == reqwest::StatusCode::FORBIDDEN && body.contains("Rate Limit Exceeded") {
        return Err(DeliveryError::Retry {
            reason: "Canvas rate limit exceeded".into(),
            after: super::retry_after(&headers),
        });
    }
    Err(DeliveryError::from_status(status, &headers, &body))
}

/// The `rel="next"` target of a `Link` header.
pub fn next_link(headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers
        .get_all(reqwest::header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|link| {
            let mut parts = link.split(';');
            let url = parts.next()?.trim().strip_prefix('<')?.strip_suffix('>')?;
            parts
                .any(|p| {
                    matches!(
                        p.trim().replace(' ', "").as_str(),
                        "rel=\"next\"" | "rel=next"
                    )
                })
                .then(|| url.to_string())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_header_next_is_found() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            reqwest::header::LINK,
            r#"<https://x/api/v1/courses/1/users?page=1>; rel="current",<https://x/api/v1/courses/1/users?page=2>; rel="next", <https://x/api/v1/courses/1/users?page=9>; rel="last""#
                .parse()
                .unwrap(),
        );
        assert_eq!(
            next_link(&h).as_deref(),
            Some("https://x/api/v1/courses/1/users?page=2")
        );
        h.insert(
            reqwest::header::LINK,
            r#"<https://x/a?page=9>; rel="last""#.parse().unwrap(),
        );
        assert_eq!(next_link(&h), None);
    }
}

//! Canvas and Moodle clients against local servers that follow the documented request
//! and response shapes.
//!
//! - Canvas: canvas.instructure.com/doc/api — "Submissions" (grade: PUT
//!   .../submissions/:user_id with submission[posted_grade]; submit: POST .../submissions;
//!   get one: GET .../submissions/:user_id?include[]=submission_comments), "Uploading
//!   files" (POST .../submissions/:user_id/files -> upload_url + upload_params, then a
//!   multipart POST there -> 201 with the file), "Pagination" (Link header), "Throttling"
//!   (403 Forbidden (Rate Limit Exceeded)), error bodies `{"errors": ...}`.
//! - Moodle: docs.moodle.org/dev/Web_service_API_functions and the REST protocol:
//!   POST /webservice/rest/server.php (wstoken, wsfunction, moodlewsrestformat=json),
//!   errors as 200 with {"exception","errorcode","message"}; files through
//!   /webservice/upload.php (draft area, answers [{..., "itemid"}]).

mod common;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, RawQuery, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use classbox::lms::{
    AttendanceStatus, Event, LessonLoad, LmsClient, Outbox, RecordState, Student, SyncWorker,
    Target, WorkerSettings,
    canvas::{CanvasClient, CanvasSettings},
    moodle::{MoodleClient, MoodleSettings},
    outbox::{AttachmentContent, NewAttachment},
};
use common::eventually;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

fn fast() -> WorkerSettings {
    WorkerSettings {
        retry_base: Duration::from_millis(50),
        retry_max: Duration::from_millis(300),
        probe_base: Duration::from_millis(50),
        probe_max: Duration::from_millis(200),
        ..Default::default()
    }
}

fn form(body: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(body).expect("form-encoded body")
}

fn field<'a>(form: &'a [(String, String)], key: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

async fn serve(app: Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn student(id: &str) -> Student {
    Student {
        id: id.into(),
        name: None,
    }
}

async fn run_until(
    outbox: &Outbox,
    client: LmsClient,
    what: &str,
    done: impl Fn(classbox::lms::QueueCounts) -> bool,
) {
    let (_load_tx, load) = watch::channel(LessonLoad::default());
    let stop = CancellationToken::new();
    let task =
        tokio::spawn(SyncWorker::new(outbox.clone(), client, fast(), load).run(stop.clone()));
    eventually(Duration::from_secs(30), what, || async {
        done(outbox.counts().await.unwrap())
    })
    .await;
    stop.cancel();
    task.await.unwrap().unwrap();
}

// ------------------------------------------------------------------------- Canvas

#[derive(Default)]
struct Canvas {
    addr: Option<std::net::SocketAddr>,
    grades: BTreeMap<(String, String), String>,
    /// (assignment, user) -> submissions posted, each with its comment.
    submissions: BTreeMap<(String, String), Vec<Value>>,
    files: BTreeMap<u64, Vec<u8>>,
    throttle_next_grade: bool,
    lose_next_submission_answer: bool,
}

type Shared = Arc<Mutex<Canvas>>;

fn authorized(headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some("Bearer canvas-token")
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"errors": [{"message": "Invalid access token."}]})),
    )
        .into_response()
}

fn canvas_app(state: Shared) -> Router {
    let roster: Vec<Value> = (1..=5)
        .map(|i| json!({"id": i, "name": format!("Student {i}")}))
        .collect();
    Router::new()
        .route(
            "/api/v1/users/self",
            get(|headers: HeaderMap| async move {
                if !authorized(&headers) {
                    return unauthorized();
                }
                Json(json!({"id": 1, "name": "Teacher"})).into_response()
            }),
        )
        .route(
            "/api/v1/courses/{course}/users",
            get(move |State(s): State<Shared>, headers: HeaderMap, RawQuery(q): RawQuery| async move {
                if !authorized(&headers) {
                    return unauthorized();
                }
                // Canvas may send fewer per page than asked: two here, so pagination shows.
                let q = form(q.unwrap_or_default().as_bytes());
                assert_eq!(field(&q, "enrollment_type[]"), Some("student"));
                let page: usize = field(&q, "page").map_or(1, |p| p.parse().unwrap());
                let items: Vec<Value> = roster.iter().skip((page - 1) * 2).take(2).cloned().collect();
                let addr = s.lock().unwrap().addr.unwrap();
                let link = |p: usize, rel: &str| {
                    format!("<http://{addr}/api/v1/courses/42/users?enrollment_type[]=student&page={p}&per_page=2>; rel=\"{rel}\"")
                };
                let mut links = vec![link(page, "current"), link(1, "first"), link(3, "last")];
                if page < 3 {
                    links.push(link(page + 1, "next"));
                }
                ([(header::LINK, links.join(","))], Json(Value::from(items))).into_response()
            }),
        )
        .route(
            "/api/v1/courses/{course}/assignments/{assignment}/submissions/{user}",
            get(|State(s): State<Shared>, headers: HeaderMap, Path((_c, a, u)): Path<(String, String, String)>| async move {
                if !authorized(&headers) {
                    return unauthorized();
                }
                let s = s.lock().unwrap();
                let comments: Vec<Value> = s
                    .submissions
                    .get(&(a, u.clone()))
                    .into_iter()
                    .flatten()
                    .map(|sub| json!({"comment": sub["comment"]}))
                    .collect();
                Json(json!({"user_id": u.parse::<u64>().unwrap(), "workflow_state": "unsubmitted", "submission_comments": comments}))
                    .into_response()
            })
            .put(|State(s): State<Shared>, headers: HeaderMap, Path((_c, a, u)): Path<(String, String, String)>, body: Bytes| async move {
                if !authorized(&headers) {
                    return unauthorized();
                }
                let mut s = s.lock().unwrap();
                if std::mem::take(&mut s.throttle_next_grade) {
                    return (StatusCode::FORBIDDEN, [("X-Rate-Limit-Remaining", "0")], "403 Forbidden (Rate Limit Exceeded)").into_response();
                }
                let f = form(&body);
                let Some(grade) = field(&f, "submission[posted_grade]") else {
                    return (StatusCode::BAD_REQUEST, Json(json!({"errors": {"submission": [{"message": "posted_grade missing"}]}}))).into_response();
                };
                s.grades.insert((a, u.clone()), grade.to_string());
                Json(json!({"user_id": u, "grade": grade, "score": grade.parse::<f64>().ok()})).into_response()
            }),
        )
        .route(
            "/api/v1/courses/{course}/assignments/{assignment}/submissions/{user}/files",
            post(|State(s): State<Shared>, headers: HeaderMap, body: Bytes| async move {
                if !authorized(&headers) {
                    return unauthorized();
                }
                let f = form(&body);
                let addr = s.lock().unwrap().addr.unwrap();
                let size: u64 = field(&f, "size").unwrap().parse().unwrap();
                Json(json!({
                    "upload_url": format!("http://{addr}/files_api/upload/{size}"),
                    "upload_params": {"filename": field(&f, "name").unwrap(), "content_type": field(&f, "content_type").unwrap()},
                }))
                .into_response()
            }),
        )
        .route(
            "/files_api/upload/{size}",
            post(|State(s): State<Shared>, headers: HeaderMap, Path(size): Path<usize>, body: Bytes| async move {
                // The file store takes no bearer token; the ticket is the URL.
                assert!(headers.get(header::AUTHORIZATION).is_none(), "token sent to the file store");
                assert!(body.len() > size, "multipart body shorter than the declared file");
                let mut s = s.lock().unwrap();
                let id = 100 + s.files.len() as u64;
                s.files.insert(id, body.to_vec());
                (StatusCode::CREATED, Json(json!({"id": id, "size": size}))).into_response()
            }),
        )
        .route(
            "/api/v1/courses/{course}/assignments/{assignment}/submissions",
            post(|State(s): State<Shared>, headers: HeaderMap, Path((_c, a)): Path<(String, String)>, body: Bytes| async move {
                if !authorized(&headers) {
                    return unauthorized();
                }
                if a == "closed" {
                    return (StatusCode::BAD_REQUEST, Json(json!({"errors": {"base": [{"message": "this assignment is locked"}]}}))).into_response();
                }
                let f = form(&body);
                let user = field(&f, "submission[user_id]").unwrap().to_string();
                let entry = json!({
                    "type": field(&f, "submission[submission_type]"),
                    "body": field(&f, "submission[body]"),
                    "file_ids": f.iter().filter(|(k, _)| k == "submission[file_ids][]").map(|(_, v)| v.clone()).collect::<Vec<_>>(),
                    "comment": field(&f, "comment[text_comment]"),
                });
                let mut s = s.lock().unwrap();
                s.submissions.entry((a, user)).or_default().push(entry);
                if std::mem::take(&mut s.lose_next_submission_answer) {
                    // Stored, but the answer never reaches the box.
                    return (StatusCode::BAD_GATEWAY, "upstream connect error").into_response();
                }
                Json(json!({"id": 1, "workflow_state": "submitted"})).into_response()
            }),
        )
        .with_state(state)
}

fn canvas_client(addr: std::net::SocketAddr, token: &str) -> CanvasClient {
    CanvasClient::new(
        classbox::lms::http_client(Duration::from_secs(10)),
        CanvasSettings {
            base: format!("http://{addr}/").parse().unwrap(),
            token: token.into(),
            course_id: "42".into(),
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canvas_grades_set_submissions_append_once_and_rate_limits_wait() {
    let state: Shared = Arc::new(Mutex::new(Canvas {
        throttle_next_grade: true,
        lose_next_submission_answer: true,
        ..Default::default()
    }));
    let addr = serve(canvas_app(state.clone())).await;
    state.lock().unwrap().addr = Some(addr);

    let client = canvas_client(addr, "canvas-token");
    let roster = client.roster().await.unwrap();
    assert_eq!(roster.len(), 5, "all three pages followed");
    assert_eq!(roster[4].name.as_deref(), Some("Student 5"));
    assert!(canvas_client(addr, "wrong").check().await.is_err());

    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path()).await.unwrap();
    let text = Event::Submission {
        assignment: "essay".into(),
        student: student("3"),
        text: Some("<p>My essay</p>".into()),
    };
    let text_id = outbox
        .enqueue(Target::Canvas, text, None, vec![])
        .await
        .unwrap();
    let scan = Event::Submission {
        assignment: "worksheet".into(),
        student: student("4"),
        text: None,
    };
    let page = NewAttachment {
        file_name: "scan.pdf".into(),
        content_type: "application/pdf".into(),
        content: AttachmentContent::Bytes(vec![7u8; 100_000].into()),
    };
    outbox
        .enqueue(Target::Canvas, scan, None, vec![page])
        .await
        .unwrap();
    let grade = Event::Grade {
        assignment: "essay".into(),
        student: student("3"),
        grade: "B+".into(),
    };
    outbox
        .enqueue(Target::Canvas, grade, None, vec![])
        .await
        .unwrap();
    let locked = Event::Submission {
        assignment: "closed".into(),
        student: student("5"),
        text: Some("late".into()),
    };
    let locked_id = outbox
        .enqueue(Target::Canvas, locked, None, vec![])
        .await
        .unwrap();
    // Attendance has no Canvas API: refused at the door, nothing queued.
    let attendance = Event::Attendance {
        lesson: "l".into(),
        student: student("3"),
        status: AttendanceStatus::Present,
        session_id: None,
    };
    let refused = outbox
        .enqueue(Target::Canvas, attendance, None, vec![])
        .await
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("Canvas has no API for attendance"),
        "{refused}"
    );

    run_until(
        &outbox,
        LmsClient::Canvas(client),
        "3 delivered, 1 dead",
        |c| c.delivered == 3 && c.dead == 1,
    )
    .await;

    let key = outbox.get(&text_id).await.unwrap().idempotency_key;
    let dead = outbox.get(&locked_id).await.unwrap();
    assert!(
        dead.last_error
            .unwrap()
            .contains("this assignment is locked")
    );
    let s = state.lock().unwrap();
    let essays = &s.submissions[&("essay".to_string(), "3".to_string())];
    assert_eq!(
        essays.len(),
        1,
        "the lost answer was followed by a look, not a second submission"
    );
    assert_eq!(essays[0]["body"], "<p>My essay</p>");
    assert!(essays[0]["comment"].as_str().unwrap().contains(&key));
    assert_eq!(
        s.grades[&("essay".to_string(), "3".to_string())],
        "B+",
        "graded after the rate limit passed"
    );
    let sheets = &s.submissions[&("worksheet".to_string(), "4".to_string())];
    assert_eq!(sheets[0]["type"], "online_upload");
    assert_eq!(sheets[0]["file_ids"], json!(["100"]));
}

// ------------------------------------------------------------------------- Moodle

#[derive(Default)]
struct Moodle {
    calls: Vec<(String, Vec<(String, String)>)>,
    drafts: BTreeMap<u64, Vec<Vec<u8>>>,
}

fn moodle_app(state: Arc<Mutex<Moodle>>) -> Router {
    Router::new()
        .route(
            "/webservice/rest/server.php",
            post(|State(s): State<Arc<Mutex<Moodle>>>, body: Bytes| async move {
                let f = form(&body);
                if field(&f, "wstoken") != Some("moodle-token") {
                    return Json(json!({"exception": "moodle_exception", "errorcode": "invalidtoken", "message": "Invalid token - token not found"}));
                }
                assert_eq!(field(&f, "moodlewsrestformat"), Some("json"));
                let function = field(&f, "wsfunction").unwrap().to_string();
                let answer = match function.as_str() {
                    "core_webservice_get_site_info" => json!({"sitename": "Test school", "userid": 2}),
                    "mod_assign_save_grade" if field(&f, "assignmentid") == Some("999") => json!({
                        "exception": "invalid_parameter_exception", "errorcode": "invalidparameter",
                        "message": "Invalid parameter value detected"}),
                    "mod_assign_save_grade" => Value::Null,
                    "mod_assign_save_submission" => json!([]),
                    "mod_attendance_update_user_status" => json!("200"),
                    "core_enrol_get_enrolled_users" => json!([
                        {"id": 31, "fullname": "Ada Lovelace", "roles": [{"shortname": "student"}]},
                        {"id": 2, "fullname": "The Teacher", "roles": [{"shortname": "editingteacher"}]},
                        {"id": 32, "fullname": "Alan Turing", "roles": [{"shortname": "student"}]},
                    ]),
                    other => json!({"exception": "dml_missing_record_exception", "errorcode": "invalidrecord",
                                    "message": format!("Can't find data record in database table external_functions. ({other})")}),
                };
                s.lock().unwrap().calls.push((function, f));
                Json(answer)
            }),
        )
        .route(
            "/webservice/upload.php",
            post(|State(s): State<Arc<Mutex<Moodle>>>, body: Bytes| async move {
                let text = String::from_utf8_lossy(&body);
                assert!(text.contains("name=\"filearea\"") && text.contains("draft"));
                let mut s = s.lock().unwrap();
                let item = 5550 + s.drafts.len() as u64;
                s.drafts.entry(item).or_default().push(body.to_vec());
                Json(json!([{"component": "user", "contextid": 5, "userid": "2", "filearea": "draft",
                             "filename": "work.jpg", "filepath": "/", "itemid": item, "license": "unknown",
                             "author": "", "source": ""}]))
            }),
        )
        .with_state(state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moodle_attendance_grades_and_submissions_reach_their_functions() {
    let state = Arc::new(Mutex::new(Moodle::default()));
    let addr = serve(moodle_app(state.clone())).await;
    let settings = |token: &str| MoodleSettings {
        base: format!("http://{addr}/").parse().unwrap(),
        token: token.into(),
        taken_by: 2,
        status_set: "0".into(),
        status_ids: [11, 12, 13, 14],
        course_id: None,
    };
    let http = classbox::lms::http_client(Duration::from_secs(10));
    let wrong = MoodleClient::new(http.clone(), settings("nope"))
        .check()
        .await
        .unwrap_err();
    assert!(wrong.to_string().contains("invalidtoken"), "{wrong}");

    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path()).await.unwrap();
    let late = Event::Attendance {
        lesson: "maths-7".into(),
        student: student("31"),
        status: AttendanceStatus::Late,
        session_id: Some(901),
    };
    outbox
        .enqueue(Target::Moodle, late, None, vec![])
        .await
        .unwrap();
    let grade = Event::Grade {
        assignment: "7".into(),
        student: student("31"),
        grade: "17.5".into(),
    };
    outbox
        .enqueue(Target::Moodle, grade, None, vec![])
        .await
        .unwrap();
    let work = Event::Submission {
        assignment: "8".into(),
        student: student("31"),
        text: Some("a < b".into()),
    };
    let photo = NewAttachment {
        file_name: "work.jpg".into(),
        content_type: "image/jpeg".into(),
        content: AttachmentContent::Bytes(vec![1u8; 5_000].into()),
    };
    outbox
        .enqueue(Target::Moodle, work, None, vec![photo])
        .await
        .unwrap();
    let bad = Event::Grade {
        assignment: "999".into(),
        student: student("32"),
        grade: "3".into(),
    };
    let bad_id = outbox
        .enqueue(Target::Moodle, bad, None, vec![])
        .await
        .unwrap();
    for (refused, why) in [
        (
            Event::Grade {
                assignment: "7".into(),
                student: student("31"),
                grade: "A".into(),
            },
            "Moodle grades are numbers",
        ),
        (
            Event::Attendance {
                lesson: "l".into(),
                student: student("31"),
                status: AttendanceStatus::Present,
                session_id: None,
            },
            "session_id",
        ),
    ] {
        let err = outbox
            .enqueue(Target::Moodle, refused, None, vec![])
            .await
            .unwrap_err();
        assert!(err.to_string().contains(why), "{err}");
    }

    run_until(
        &outbox,
        LmsClient::Moodle(MoodleClient::new(http, settings("moodle-token"))),
        "3 delivered, 1 dead",
        |c| c.delivered == 3 && c.dead == 1,
    )
    .await;

    let dead = outbox.get(&bad_id).await.unwrap();
    assert_eq!(dead.state, RecordState::Dead);
    assert!(dead.last_error.unwrap().contains("invalidparameter"));
    let s = state.lock().unwrap();
    let call = |name: &str| {
        s.calls
            .iter()
            .find(|(f, _)| f == name)
            .map(|(_, p)| p.clone())
            .unwrap()
    };
    let att = call("mod_attendance_update_user_status");
    assert_eq!(field(&att, "sessionid"), Some("901"));
    assert_eq!(field(&att, "studentid"), Some("31"));
    assert_eq!(
        field(&att, "statusid"),
        Some("13"),
        "late is the third status id"
    );
    assert_eq!(field(&att, "takenbyid"), Some("2"));
    let g = call("mod_assign_save_grade");
    assert_eq!(
        (field(&g, "assignmentid"), field(&g, "grade")),
        (Some("7"), Some("17.5"))
    );
    let sub = call("mod_assign_save_submission");
    assert_eq!(field(&sub, "plugindata[files_filemanager]"), Some("5550"));
    assert!(
        field(&sub, "plugindata[onlinetext_editor][text]")
            .unwrap()
            .starts_with("a &lt; b")
    );
    assert_eq!(s.drafts[&5550].len(), 1);
}

//! The box's local web page (axum): set-up, live lesson status, attendance, the LMS
//! sync queue, diagnostics.
//!
//! In: [`LessonStats`] (written by the transport and media stages), the LMS [`Outbox`]
//! and the sync worker's status. Out: server-rendered pages with a little JavaScript
//! (the status page listens to `/api/events`, server-sent events), forms that queue
//! attendance durably, and the config file the set-up wizard writes.
//!
//! Every page but `/login`, `/setup` (only while no admin password exists) and the
//! assets needs the admin session; every form carries the session's CSRF token.
//! Internals never reach the page: errors become a message next to the field or a
//! plain status.

pub mod auth;
pub mod mdns;
pub mod pages;
mod setup;
mod watch;

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Form, Json, Router,
    extract::{ConnectInfo, FromRef, FromRequestParts, Query, State},
    http::{HeaderMap, StatusCode, header, request::Parts},
    response::{Html, IntoResponse, Redirect, Response, sse},
    routing::{get, post},
};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::{
    lms::{Event, Outbox, RecordState, Student, SyncStatus, Target},
    stats::{LessonStats, Snapshot},
};
use auth::{AdminPassword, LoginLimiter, Sessions};
use pages::{Nav, esc};

/// What the page shows besides the live figures.
#[derive(Clone, Serialize)]
pub struct PageInfo {
    pub classroom: String,
    pub room: String,
    pub relay: String,
    pub profile: String,
    pub version: &'static str,
}

#[derive(Clone)]
pub struct WebState {
    pub stats: Arc<LessonStats>,
    pub info: PageInfo,
    pub outbox: Option<Outbox>,
    pub sync: Arc<Mutex<SyncStatus>>,
    pub lms_target: Option<Target>,
    /// The class list: `classroom.roster`, or the one last fetched from the LMS
    /// (kept in the state dir as roster.json).
    pub roster: Arc<std::sync::RwLock<Vec<Student>>>,
    /// Where a fetched class list is kept.
    pub roster_path: PathBuf,
    /// The LMS, for its class list and the set-up test.
    pub lms: Option<Arc<crate::lms::LmsClient>>,
    pub password: Arc<AdminPassword>,
    pub sessions: Arc<Sessions>,
    pub limiter: Arc<LoginLimiter>,
    /// The config file the wizard writes (the one the daemon was started with).
    pub config_path: PathBuf,
    /// The lesson for LAN viewers, and the class code they need (empty: none).
    pub watch: Arc<crate::media::rebroadcast::LanFeed>,
    pub watch_code: String,
}

impl WebState {
    /// State for `config`: the admin password and outbox live in `state_dir`.
    pub async fn new(
        config: &crate::config::Config,
        config_path: PathBuf,
        stats: Arc<LessonStats>,
        profile: &str,
        state_dir: &std::path::Path,
    ) -> anyhow::Result<Self> {
        let outbox = Outbox::open(&state_dir.join("outbox")).await.map_err(|e| {
            anyhow::anyhow!("cannot open the LMS outbox in {}: {e}", state_dir.display())
        })?;
        Ok(Self {
            stats,
            info: PageInfo {
                classroom: config.classroom.name.clone(),
                room: config.link.room.clone(),
                relay: config.link.relay.clone().unwrap_or_default(),
                profile: profile.to_string(),
                version: env!("CARGO_PKG_VERSION"),
            },
            outbox: Some(outbox),
            sync: Default::default(),
            lms_target: Target::parse(&config.lms.target),
            roster: Arc::new(std::sync::RwLock::new(load_roster(
                config,
                &state_dir.join("roster.json"),
            ))),
            roster_path: state_dir.join("roster.json"),
            lms: crate::lms::client_from_config(config)
                .ok()
                .flatten()
                .map(Arc::new),
            password: Arc::new(AdminPassword::load(state_dir.join("admin-password"))),
            sessions: Default::default(),
            limiter: Default::default(),
            config_path,
            watch: Arc::new(crate::media::rebroadcast::LanFeed::new(
                config.media.pipelines_dir.clone(),
            )),
            watch_code: config.classroom.watch_code.clone(),
        })
    }
}

/// The configured class list, else the one last fetched from the LMS.
fn load_roster(config: &crate::config::Config, fetched: &std::path::Path) -> Vec<Student> {
    let configured = config.classroom.roster();
    if !configured.is_empty() {
        return configured;
    }
    std::fs::read(fetched)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

pub fn app(state: WebState) -> Router {
    Router::new()
        .route("/", get(status_page))
        .route("/api/status", get(status_json))
        .route("/api/history", get(history))
        .route("/api/events", get(events))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/setup", get(setup::page).post(setup::submit))
        .route("/setup/test-lms", post(setup::test_lms))
        .route("/attendance", get(attendance_page).post(attendance_submit))
        .route("/attendance/roster", post(roster_fetch))
        .route("/queue", get(queue_page))
        .route("/queue/retry", post(queue_retry))
        .route("/watch", get(watch::page).post(watch::enter_code))
        .route("/watch/stream", get(watch::stream))
        .route("/diagnostics", get(diagnostics_page))
        .route("/diagnostics/bundle", get(support_bundle))
        .route(
            "/assets/style.css",
            get(|| async { asset("text/css", include_str!("assets/style.css")) }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        body,
    )
        .into_response()
}

fn page(body: String) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Html(body)).into_response()
}

/// An admin session. Without one: to `/setup` on a box with no password yet, else to
/// `/login` (pages) or 401 (the JSON API).
pub struct Admin {
    pub csrf: String,
}

impl<S> FromRequestParts<S> for Admin
where
    WebState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = WebState::from_ref(state);
        let api = parts.uri.path().starts_with("/api/");
        if !state.password.is_set() {
            return Err(if api {
                StatusCode::UNAUTHORIZED.into_response()
            } else {
                Redirect::to("/setup").into_response()
            });
        }
        let session = auth::session_cookie(&parts.headers)
            .and_then(|t| state.sessions.get(&t, Instant::now()));
        match session {
            Some(s) => Ok(Admin { csrf: s.csrf }),
            None if api => Err(StatusCode::UNAUTHORIZED.into_response()),
            None => Err(
                Redirect::to(&format!("/login?next={}", urlencode(parts.uri.path())))
                    .into_response(),
            ),
        }
    }
}

impl Admin {
    /// A form without the session's CSRF token changes nothing.
    #[allow(clippy::result_large_err)] // NOTE: the rejection is the response itself
    pub fn check_csrf(&self, sent: &str) -> Result<(), Response> {
        if auth::same(&self.csrf, sent) {
            Ok(())
        } else {
            Err((
                StatusCode::FORBIDDEN,
                Html("<p>This form has expired. Go back, reload the page and try again.</p>"),
            )
                .into_response())
        }
    }
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Only local paths: a `next` pointing elsewhere would make the login an open redirect.
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_string(),
        _ => "/".into(),
    }
}

// ---------------------------------------------------------------- login

#[derive(Deserialize)]
struct Next {
    next: Option<String>,
}

async fn login_page(State(state): State<WebState>, Query(q): Query<Next>) -> Response {
    if !state.password.is_set() {
        return Redirect::to("/setup").into_response();
    }
    page(login_html(&state, q.next.as_deref(), None))
}

fn login_html(state: &WebState, next: Option<&str>, error: Option<&str>) -> String {
    let body = format!(
        "<h2>Log in</h2><form class=\"panel\" method=\"post\" action=\"/login\">{}{}\
         <input type=\"hidden\" name=\"next\" value=\"{}\"><p><button>Log in</button></p></form>",
        pages::flash(error, false),
        pages::Field {
            name: "password",
            label: "Admin password",
            kind: "password",
            value: "",
            hint: "Chosen when the box was set up.",
            error: None
        }
        .render(),
        esc(&local_path(next))
    );
    pages::layout("Log in", &state.info.classroom, Nav::Public, None, &body)
}

#[derive(Deserialize)]
struct LoginForm {
    password: String,
    next: Option<String>,
}

async fn login(
    State(state): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(form): Form<LoginForm>,
) -> Response {
    let now = Instant::now();
    if let Some(wait) = state.limiter.wait(peer.ip(), now) {
        let message = format!(
            "Too many wrong passwords. Try again in {} s.",
            wait.as_secs().max(1)
        );
        return (
            StatusCode::TOO_MANY_REQUESTS,
            Html(login_html(&state, form.next.as_deref(), Some(&message))),
        )
            .into_response();
    }
    // Hashing is slow on purpose; keep it off the async threads.
    let password = state.password.clone();
    let ok = tokio::task::spawn_blocking(move || password.verify(&form.password))
        .await
        .unwrap_or(false);
    if !ok {
        state.limiter.failed(peer.ip(), now);
        tracing::warn!(client = %peer.ip(), "wrong admin password");
        return (
            StatusCode::UNAUTHORIZED,
            Html(login_html(
                &state,
                form.next.as_deref(),
                Some("That password is not right."),
            )),
        )
            .into_response();
    }
    state.limiter.succeeded(peer.ip());
    let token = state.sessions.create(now);
    (
        [(header::SET_COOKIE, auth::set_cookie(&token))],
        Redirect::to(&local_path(form.next.as_deref())),
    )
        .into_response()
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(
    State(state): State<WebState>,
    admin: Admin,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(r) = admin.check_csrf(&form.csrf) {
        return r;
    }
    if let Some(token) = auth::session_cookie(&headers) {
        state.sessions.end(&token);
    }
    (
        [(header::SET_COOKIE, auth::clear_cookie())],
        Redirect::to("/login"),
    )
        .into_response()
}

// ---------------------------------------------------------------- status

#[derive(Serialize)]
struct Status {
    #[serde(flatten)]
    info: PageInfo,
    now: Snapshot,
    latency_all: Option<crate::stats::LatencySummary>,
    queue: Option<crate::lms::QueueCounts>,
    sync: SyncStatus,
    media: crate::stats::MediaState,
}

async fn current_status(state: &WebState) -> Status {
    let queue = match &state.outbox {
        Some(outbox) => outbox.counts().await.ok(),
        None => None,
    };
    Status {
        info: state.info.clone(),
        now: state.stats.latest(),
        latency_all: state.stats.latency_summary(),
        queue,
        sync: state.sync.lock().expect("sync status lock").clone(),
        media: state.stats.media(),
    }
}

async fn status_page(State(state): State<WebState>, admin: Admin) -> Response {
    page(pages::layout(
        "Status",
        &state.info.classroom,
        Nav::Status,
        Some(&admin.csrf),
        include_str!("status.html"),
    ))
}

async fn status_json(State(state): State<WebState>, _admin: Admin) -> Json<serde_json::Value> {
    Json(serde_json::to_value(current_status(&state).await).expect("status serializes"))
}

async fn history(State(state): State<WebState>, _admin: Admin) -> Json<Vec<Snapshot>> {
    Json(state.stats.history())
}

/// The status once a second, as server-sent events.
async fn events(State(state): State<WebState>, _admin: Admin) -> impl IntoResponse {
    let stream = futures::stream::unfold((state, true), |(state, first)| async move {
        if !first {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let status =
            serde_json::to_string(&current_status(&state).await).expect("status serializes");
        Some((
            Ok::<_, std::convert::Infallible>(sse::Event::default().event("status").data(status)),
            (state, false),
        ))
    });
    sse::Sse::new(stream).keep_alive(sse::KeepAlive::default())
}

// ---------------------------------------------------------------- attendance

fn today() -> String {
    crate::lms::xapi::rfc3339(crate::frame::unix_micros() as i64 / 1000)[..10].to_string()
}

fn attendance_html(
    state: &WebState,
    csrf: &str,
    lesson: &str,
    message: Option<(&str, bool)>,
) -> String {
    let mut rows = String::new();
    let roster = state.roster.read().expect("roster lock").clone();
    for s in roster.iter() {
        let name = s.name.clone().unwrap_or_else(|| s.id.clone());
        let choices: String = ["present", "late", "absent", "excused"]
            .iter()
            .map(|st| {
                format!(
                    "<label><input type=\"radio\" name=\"s.{id}\" value=\"{st}\">{label}</label>",
                    id = esc(&s.id),
                    label = &(st[..1].to_uppercase() + &st[1..])
                )
            })
            .collect();
        rows.push_str(&format!(
            "<tr><td>{}</td><td><div class=\"choices\">{choices}</div></td></tr>",
            esc(&name)
        ));
    }
    let fetch = if state.lms.is_some() {
        format!(
            "<form method=\"post\" action=\"/attendance/roster\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button class=\"secondary\">Update the class list from the LMS</button></form>",
            esc(csrf)
        )
    } else {
        String::new()
    };
    let body = if roster.is_empty() {
        format!(
            "<p class=\"panel\">No class list yet. Fetch it from the LMS, or add the students to <code>classroom.roster</code> in the configuration (\"id:Name\" each).</p>{fetch}"
        )
    } else {
        format!(
            "<form method=\"post\" action=\"/attendance\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <input type=\"hidden\" name=\"form_id\" value=\"{form_id}\">\
             <div class=\"panel\"><label for=\"lesson\">Lesson</label><input type=\"text\" id=\"lesson\" name=\"lesson\" value=\"{lesson}\">\
             <p class=\"hint\">Saved on the box at once, sent to the school's LMS when the link allows.</p></div>\
             <table class=\"roster\"><thead><tr><th>Student</th><th>Today</th></tr></thead><tbody>{rows}</tbody></table>\
             <p><button>Save attendance</button></p></form>{fetch}",
            csrf = esc(csrf),
            form_id = uuid::Uuid::new_v4(),
            lesson = esc(lesson),
        )
    };
    let flash = message
        .map(|(m, ok)| pages::flash(Some(m), ok))
        .unwrap_or_default();
    pages::layout(
        "Attendance",
        &state.info.classroom,
        Nav::Attendance,
        Some(csrf),
        &format!("<h2>Attendance</h2>{flash}{body}"),
    )
}

async fn attendance_page(State(state): State<WebState>, admin: Admin) -> Response {
    let lesson = format!("{}-{}", state.info.room, today());
    page(attendance_html(&state, &admin.csrf, &lesson, None))
}

async fn attendance_submit(
    State(state): State<WebState>,
    admin: Admin,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let get = |k: &str| {
        form.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    if let Err(r) = admin.check_csrf(get("csrf").unwrap_or("")) {
        return r;
    }
    let lesson = get("lesson").unwrap_or("").trim().to_string();
    let refuse = |m: &str| {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Html(attendance_html(
                &state,
                &admin.csrf,
                &lesson,
                Some((m, false)),
            )),
        )
            .into_response()
    };
    let (Some(outbox), Some(target)) = (&state.outbox, state.lms_target) else {
        return refuse(
            "No LMS is set up, so there is nowhere to send attendance. Set one up first.",
        );
    };
    let form_id = get("form_id").unwrap_or("").to_string();
    // Validate everything before queueing anything.
    let mut events = Vec::new();
    for (key, value) in &form {
        let Some(id) = key.strip_prefix("s.") else {
            continue;
        };
        let Some(student) = state
            .roster
            .read()
            .expect("roster lock")
            .iter()
            .find(|s| s.id == id)
            .cloned()
        else {
            return refuse(&format!("{id:?} is not on the class list."));
        };
        let event = match serde_json::from_value::<crate::lms::AttendanceStatus>(
            serde_json::Value::from(value.clone()),
        ) {
            Ok(status) => Event::Attendance {
                lesson: lesson.clone(),
                student,
                status,
                session_id: None,
            },
            Err(_) => {
                return refuse(&format!(
                    "{value:?} is not present, late, absent or excused."
                ));
            }
        };
        if let Err(e) = event.validate().and_then(|()| target.accepts(&event)) {
            return refuse(&e.to_string());
        }
        events.push((format!("{form_id}-{id}"), event));
    }
    if events.is_empty() {
        return refuse("Nothing was ticked.");
    }
    let count = events.len();
    for (key, event) in events {
        let key = (!form_id.is_empty() && form_id.len() <= 60).then_some(key);
        if let Err(e) = outbox.enqueue(target, event, key, Vec::new()).await {
            tracing::error!(error = %e, "attendance not queued");
            return refuse(
                "The box could not save this (its storage failed). Nothing was lost that was saved before; please try again.",
            );
        }
    }
    let pending = outbox.counts().await.map(|c| c.pending).unwrap_or(0);
    let message =
        format!("Saved attendance for {count} students. {pending} records are waiting to sync.");
    page(attendance_html(
        &state,
        &admin.csrf,
        &lesson,
        Some((&message, true)),
    ))
}

async fn roster_fetch(
    State(state): State<WebState>,
    admin: Admin,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(r) = admin.check_csrf(&form.csrf) {
        return r;
    }
    let lesson = format!("{}-{}", state.info.room, today());
    let Some(lms) = &state.lms else {
        return page(attendance_html(
            &state,
            &admin.csrf,
            &lesson,
            Some(("No LMS is set up.", false)),
        ));
    };
    let message = match tokio::time::timeout(Duration::from_secs(30), lms.roster()).await {
        Err(_) => (
            "The LMS did not answer within 30 s; the class list is unchanged.".to_string(),
            false,
        ),
        Ok(Err(e)) => (
            format!("The class list could not be fetched ({e}); it is unchanged."),
            false,
        ),
        Ok(Ok(students)) if students.is_empty() => (
            "The LMS lists no students for this course; the class list is unchanged.".into(),
            false,
        ),
        Ok(Ok(students)) => {
            let count = students.len();
            let saved = serde_json::to_vec(&students)
                .map_err(std::io::Error::other)
                .and_then(|bytes| crate::state::write_private(&state.roster_path, &bytes));
            *state.roster.write().expect("roster lock") = students;
            match saved {
                Ok(()) => (
                    format!("The class list now has the LMS's {count} students."),
                    true,
                ),
                Err(e) => (
                    format!("{count} students fetched, but not saved for the next start ({e})."),
                    false,
                ),
            }
        }
    };
    page(attendance_html(
        &state,
        &admin.csrf,
        &lesson,
        Some((&message.0, message.1)),
    ))
}

// ---------------------------------------------------------------- sync queue

#[derive(Deserialize)]
struct QueueQuery {
    state: Option<String>,
    done: Option<String>,
}

async fn queue_page(
    State(state): State<WebState>,
    admin: Admin,
    Query(q): Query<QueueQuery>,
) -> Response {
    let Some(outbox) = &state.outbox else {
        return page(pages::layout(
            "Sync queue",
            &state.info.classroom,
            Nav::Queue,
            Some(&admin.csrf),
            "<p>No outbox.</p>",
        ));
    };
    let which = match q.state.as_deref() {
        Some("delivered") => RecordState::Delivered,
        Some("dead") => RecordState::Dead,
        _ => RecordState::Pending,
    };
    let counts = outbox.counts().await.unwrap_or_default();
    let records = outbox.list(which, 200).await.unwrap_or_default();
    let tab = |s: RecordState, label: &str, n: i64| {
        let name = match s {
            RecordState::Pending => "pending",
            RecordState::Delivered => "delivered",
            RecordState::Dead => "dead",
        };
        let current = if s == which {
            " aria-current=\"page\""
        } else {
            ""
        };
        format!("<a href=\"/queue?state={name}\"{current}>{label} ({n})</a>")
    };
    let sync = state.sync.lock().expect("sync status lock").clone();
    let summary = match (&sync.target, sync.reachable, &sync.last_error) {
        (None, _, _) => "No LMS is set up.".to_string(),
        (Some(t), true, _) => format!("The LMS ({}) is reachable.", t.as_str()),
        (Some(t), false, Some(e)) => format!("The LMS ({}) is not reachable: {e}", t.as_str()),
        (Some(t), false, None) => format!("Checking the LMS ({})…", t.as_str()),
    };
    let last = sync
        .last_success_ms
        .or(counts.last_delivered_at_ms)
        .map(|ms| {
            format!(
                " Last delivery {} UTC.",
                &crate::lms::xapi::rfc3339(ms)[..16].replace('T', " ")
            )
        })
        .unwrap_or_default();
    let done = q
        .done
        .as_deref()
        .map(|_| pages::flash(Some("Queued again; it will be sent at once."), true))
        .unwrap_or_default();
    let body = format!(
        "<h2>Sync queue</h2>{done}<p class=\"panel\">{}{}</p><div class=\"tabs\">{}{}{}</div>{}",
        esc(&summary),
        esc(&last),
        tab(RecordState::Pending, "Waiting", counts.pending),
        tab(RecordState::Dead, "Refused by the LMS", counts.dead),
        tab(RecordState::Delivered, "Delivered", counts.delivered),
        pages::queue_table(&records, which, &admin.csrf)
    );
    page(pages::layout(
        "Sync queue",
        &state.info.classroom,
        Nav::Queue,
        Some(&admin.csrf),
        &body,
    ))
}

#[derive(Deserialize)]
struct RetryForm {
    csrf: String,
    record_id: String,
}

async fn queue_retry(
    State(state): State<WebState>,
    admin: Admin,
    Form(form): Form<RetryForm>,
) -> Response {
    if let Err(r) = admin.check_csrf(&form.csrf) {
        return r;
    }
    let Some(outbox) = &state.outbox else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match outbox.retry(&form.record_id).await {
        Ok(()) => Redirect::to("/queue?state=pending&done=1").into_response(),
        Err(_) => (
            StatusCode::NOT_FOUND,
            Html("<p>That record is not in the refused list any more.</p>"),
        )
            .into_response(),
    }
}

// ---------------------------------------------------------------- diagnostics

/// What `classbox doctor` reports about the media stack.
fn media_report() -> String {
    match crate::media::init() {
        Ok(()) => {
            serde_json::to_string_pretty(&crate::media::probe::report("auto")).unwrap_or_default()
        }
        Err(e) => format!("GStreamer cannot start: {e}"),
    }
}

async fn diagnostics_page(State(state): State<WebState>, admin: Admin) -> Response {
    let report = media_report();
    let logs = crate::telemetry::recent_logs();
    let tail: Vec<&String> = logs.iter().rev().take(60).collect();
    let body = format!(
        "<h2>Diagnostics</h2><p class=\"panel\">classbox {} (commit {}, {}) · media profile {} · relay {} · room {}</p>\
         <p><a class=\"button\" href=\"/diagnostics/bundle\">Download a support bundle</a> \
         <span class=\"hint\">Configuration without secrets, recent log lines, versions.</span></p>\
         <h2>What this box has</h2><pre>{}</pre><h2>Recent log lines (newest first)</h2><pre>{}</pre>",
        env!("CARGO_PKG_VERSION"),
        env!("CLASSBOX_GIT_COMMIT"),
        env!("CLASSBOX_TARGET"),
        esc(&state.info.profile),
        esc(&state.info.relay),
        esc(&state.info.room),
        esc(&report),
        esc(&tail
            .iter()
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")),
    );
    page(pages::layout(
        "Diagnostics",
        &state.info.classroom,
        Nav::Diagnostics,
        Some(&admin.csrf),
        &body,
    ))
}

async fn support_bundle(State(state): State<WebState>, _admin: Admin) -> Response {
    let config = std::fs::read_to_string(&state.config_path)
        .map(|text| setup::redact(&text))
        .unwrap_or_else(|e| format!("(cannot read {}: {e})", state.config_path.display()));
    let report = media_report();
    let bundle = format!(
        "classbox support bundle\nversion {} commit {} target {}\n\n== configuration ({}, secrets removed)\n{config}\n\n== media\n{report}\n\n== status\n{}\n\n== recent log lines\n{}\n",
        env!("CARGO_PKG_VERSION"),
        env!("CLASSBOX_GIT_COMMIT"),
        env!("CLASSBOX_TARGET"),
        state.config_path.display(),
        serde_json::to_string_pretty(&current_status(&state).await).unwrap_or_default(),
        crate::telemetry::recent_logs().join("\n"),
    );
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"classbox-support.txt\"",
            ),
        ],
        bundle,
    )
        .into_response()
}

/// A bound web server, ready to serve.
pub struct WebServer {
    listener: tokio::net::TcpListener,
    state: WebState,
}

impl WebServer {
    pub async fn bind(addr: SocketAddr, state: WebState) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        Ok(Self { listener, state })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn state(&self) -> &WebState {
        &self.state
    }

    pub async fn run(self, shutdown: CancellationToken) -> std::io::Result<()> {
        axum::serve(
            self.listener,
            app(self.state).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
    }
}

#[cfg(test)]
mod tests;

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

mod attendance;
pub mod auth;
mod diagnostics;
pub mod mdns;
pub mod pages;
mod queue;
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
    lms::{Outbox, Student, SyncStatus, Target},
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
    /// Told when the set-up wizard saved new settings: the daemon starts over with them.
    pub saved: Arc<tokio::sync::Notify>,
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
            saved: Default::default(),
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
        .route(
            "/attendance",
            get(attendance::page).post(attendance::submit),
        )
        .route("/attendance/roster", post(attendance::roster_fetch))
        .route("/queue", get(queue::page))
        .route("/queue/retry", post(queue::retry))
        .route("/watch", get(watch::page).post(watch::enter_code))
        .route("/watch/stream", get(watch::stream))
        .route("/diagnostics", get(diagnostics::page))
        .route("/diagnostics/bundle", get(diagnostics::bundle))
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
pub(crate) struct CsrfForm {
    pub csrf: String,
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
pub(crate) struct Status {
    #[serde(flatten)]
    info: PageInfo,
    now: Snapshot,
    latency_all: Option<crate::stats::LatencySummary>,
    queue: Option<crate::lms::QueueCounts>,
    sync: SyncStatus,
    media: crate::stats::MediaState,
}

pub(crate) async fn current_status(state: &WebState) -> Status {
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

//! The box's local web page (axum): live lesson status for staff.
//!
//! In: [`LessonStats`] (written by the transport and media stages). Out: an HTML page
//! that updates itself every second, and the JSON it reads (`/api/status`,
//! `/api/history`). Internals never reach the page: errors map to plain HTTP statuses.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Json, Router,
    extract::State,
    http::header,
    response::{Html, IntoResponse},
    routing::get,
};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::stats::{LessonStats, Snapshot};

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
}

#[derive(Serialize)]
struct Status {
    #[serde(flatten)]
    info: PageInfo,
    now: Snapshot,
    latency_all: Option<crate::stats::LatencySummary>,
}

pub fn app(state: WebState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/api/status", get(status))
        .route("/api/history", get(history))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

async fn index() -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "no-store")],
        Html(include_str!("status.html")),
    )
}

async fn status(State(state): State<WebState>) -> Json<serde_json::Value> {
    let status = Status {
        info: state.info.clone(),
        now: state.stats.latest(),
        latency_all: state.stats.latency_summary(),
    };
    Json(serde_json::to_value(status).expect("status serializes"))
}

async fn history(State(state): State<WebState>) -> Json<Vec<Snapshot>> {
    Json(state.stats.history())
}

/// A bound web server, ready to serve.
pub struct WebServer {
    listener: tokio::net::TcpListener,
    router: Router,
}

impl WebServer {
    pub async fn bind(addr: SocketAddr, state: WebState) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        Ok(Self {
            listener,
            router: app(state),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub async fn run(self, shutdown: CancellationToken) -> std::io::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    fn state() -> WebState {
        WebState {
            stats: Arc::new(LessonStats::default()),
            info: PageInfo {
                classroom: "Room 4".into(),
                room: "maths".into(),
                relay: "relay:4443".into(),
                profile: "software".into(),
                version: "test",
            },
        }
    }

    #[tokio::test]
    async fn status_json_and_page() {
        let app = app(state());
        let res = app
            .clone()
            .oneshot(Request::get("/api/status").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let body = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["classroom"], "Room 4");
        assert_eq!(v["now"]["link"]["state"], "idle");

        let res = app
            .clone()
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let body = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        assert!(String::from_utf8_lossy(&body).contains("/api/status"));

        let res = app
            .oneshot(Request::get("/nope").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
    }
}

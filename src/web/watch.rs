//! Watch: students on the school LAN watch the lesson on a tablet or laptop. Open to the
//! LAN, or behind the class code (`classroom.watch_code`). The stream is the lesson
//! remuxed to fragmented MP4 ([`crate::media::rebroadcast`]), played with Media Source
//! Extensions (ManagedMediaSource on iPad).

use std::time::Duration;

use axum::{
    Form,
    body::Body,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{WebState, pages};

const WATCH_COOKIE: &str = "classbox_watch";

fn code_cookie_value(code: &str) -> String {
    Sha256::digest(format!("classbox-watch:{code}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn allowed(state: &WebState, headers: &HeaderMap) -> bool {
    if state.watch_code.is_empty() {
        return true;
    }
    let want = code_cookie_value(&state.watch_code);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix(WATCH_COOKIE)?.strip_prefix('='))
        .any(|v| super::auth::same(v, &want))
}

fn code_form(state: &WebState, error: Option<&str>) -> String {
    let body = format!(
        "<h2>Watch the lesson</h2><form class=\"panel\" method=\"post\" action=\"/watch\">{}{}<p><button>Watch</button></p></form>",
        pages::flash(error, false),
        pages::Field {
            name: "code",
            label: "Class code",
            kind: "text",
            value: "",
            hint: "Your teacher gives you the code.",
            error: None
        }
        .render()
    );
    pages::layout(
        "Watch",
        &state.info.classroom,
        pages::Nav::Public,
        None,
        &body,
    )
}

pub async fn page(State(state): State<WebState>, headers: HeaderMap) -> Response {
    if !allowed(&state, &headers) {
        return super::page(code_form(&state, None));
    }
    let body = format!("<h2>The lesson</h2>{}", include_str!("watch.html"));
    super::page(pages::layout(
        "Watch",
        &state.info.classroom,
        pages::Nav::Public,
        None,
        &body,
    ))
}

#[derive(Deserialize)]
pub struct CodeForm {
    code: String,
}

pub async fn enter_code(State(state): State<WebState>, Form(form): Form<CodeForm>) -> Response {
    if state.watch_code.is_empty() {
        return Redirect::to("/watch").into_response();
    }
    if !super::auth::same(form.code.trim(), &state.watch_code) {
        return (
            StatusCode::UNAUTHORIZED,
            Html(code_form(&state, Some("That is not the class code."))),
        )
            .into_response();
    }
    let cookie = format!(
        "{WATCH_COOKIE}={}; HttpOnly; SameSite=Strict; Path=/watch; Max-Age=43200",
        code_cookie_value(&state.watch_code)
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to("/watch")).into_response()
}

/// The lesson as one fragmented-MP4 stream, starting at the next keyframe.
pub async fn stream(State(state): State<WebState>, headers: HeaderMap) -> Response {
    if !allowed(&state, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    match state.watch.viewer(Duration::from_secs(5)).await {
        Ok(Some(viewer)) => {
            let mime = HeaderValue::from_str(&viewer.mime)
                .unwrap_or(HeaderValue::from_static("video/mp4"));
            let body =
                Body::from_stream(futures::stream::unfold(viewer.bytes, |mut rx| async move {
                    rx.recv()
                        .await
                        .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
                }));
            let mut response = (
                [
                    (header::CONTENT_TYPE, HeaderValue::from_static("video/mp4")),
                    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                ],
                body,
            )
                .into_response();
            response.headers_mut().insert("x-mse-type", mime);
            response
        }
        Ok(None) => (StatusCode::SERVICE_UNAVAILABLE, "no lesson is running").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

//! The sync queue: waiting, refused by the LMS (with its message and a retry button),
//! delivered.

use axum::{
    Form,
    extract::{Query, State},
    http::StatusCode,
    response::{Html, IntoResponse, Redirect, Response},
};
use serde::Deserialize;

use super::{Admin, WebState, pages, pages::Nav, pages::esc};
use crate::lms::RecordState;

#[derive(Deserialize)]
pub struct QueueQuery {
    state: Option<String>,
    done: Option<String>,
}

pub async fn page(
    State(state): State<WebState>,
    admin: Admin,
    Query(q): Query<QueueQuery>,
) -> Response {
    let Some(outbox) = &state.outbox else {
        return super::page(pages::layout(
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
    super::page(pages::layout(
        "Sync queue",
        &state.info.classroom,
        Nav::Queue,
        Some(&admin.csrf),
        &body,
    ))
}

#[derive(Deserialize)]
pub struct RetryForm {
    csrf: String,
    record_id: String,
}

pub async fn retry(
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

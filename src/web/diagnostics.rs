//! Diagnostics: what `classbox doctor` says about the media stack, recent log lines, and
//! a support bundle without secrets.

use axum::{
    extract::State,
    http::header,
    response::{IntoResponse, Response},
};

use super::{Admin, WebState, pages, pages::Nav, pages::esc};

/// What `classbox doctor` reports about the media stack.
fn media_report() -> String {
    match crate::media::init() {
        Ok(()) => {
            serde_json::to_string_pretty(&crate::media::probe::report("auto")).unwrap_or_default()
        }
        Err(e) => format!("GStreamer cannot start: {e}"),
    }
}

pub async fn page(State(state): State<WebState>, admin: Admin) -> Response {
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
    super::page(pages::layout(
        "Diagnostics",
        &state.info.classroom,
        Nav::Diagnostics,
        Some(&admin.csrf),
        &body,
    ))
}

pub async fn bundle(State(state): State<WebState>, _admin: Admin) -> Response {
    let config = std::fs::read_to_string(&state.config_path)
        .map(|text| super::setup::redact(&text))
        .unwrap_or_else(|e| format!("(cannot read {}: {e})", state.config_path.display()));
    let report = media_report();
    let bundle = format!(
        "classbox support bundle\nversion {} commit {} target {}\n\n== configuration ({}, secrets removed)\n{config}\n\n== media\n{report}\n\n== status\n{}\n\n== recent log lines\n{}\n",
        env!("CARGO_PKG_VERSION"),
        env!("CLASSBOX_GIT_COMMIT"),
        env!("CLASSBOX_TARGET"),
        state.config_path.display(),
        serde_json::to_string_pretty(&super::current_status(&state).await).unwrap_or_default(),
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

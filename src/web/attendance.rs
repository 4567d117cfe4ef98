//! Attendance: the class list, one tap per student, queued in the outbox at once (so
//! it works with the link down); the class list fetched from the LMS.

use std::time::Duration;

use axum::{
    Form,
    extract::State,
    http::StatusCode,
    response::{Html, IntoResponse, Response},
};

use super::{Admin, CsrfForm, WebState, pages, pages::Nav, pages::esc};
use crate::lms::Event;

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

pub async fn page(State(state): State<WebState>, admin: Admin) -> Response {
    let lesson = format!("{}-{}", state.info.room, today());
    super::page(attendance_html(&state, &admin.csrf, &lesson, None))
}

pub async fn submit(
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
    super::page(attendance_html(
        &state,
        &admin.csrf,
        &lesson,
        Some((&message, true)),
    ))
}

pub async fn roster_fetch(
    State(state): State<WebState>,
    admin: Admin,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(r) = admin.check_csrf(&form.csrf) {
        return r;
    }
    let lesson = format!("{}-{}", state.info.room, today());
    let Some(lms) = &state.lms else {
        return super::page(attendance_html(
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
    super::page(attendance_html(
        &state,
        &admin.csrf,
        &lesson,
        Some((&message.0, message.1)),
    ))
}

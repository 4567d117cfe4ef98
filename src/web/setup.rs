//! The first-boot wizard: admin password, classroom name, relay and enrolment token,
//! LMS credentials (with a live test), display. Reachable only while no admin password
//! exists; afterwards it redirects to the login.
//!
//! The settings are merged into the config file the daemon was started with, checked
//! with the daemon's own config validation (a bad value is refused next to its field,
//! nothing written), then written atomically with mode 0600 (it holds secrets).

use std::{collections::BTreeMap, time::Instant};

use axum::{
    Form, Json,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
};

use super::{WebState, auth, pages};
use crate::config::{Config, ConfigError};

/// The wizard's fields: (form name, config key). Secrets are never echoed back.
const FIELDS: &[(&str, &str)] = &[
    ("classroom_name", "classroom.name"),
    ("relay", "link.relay"),
    ("room", "link.room"),
    ("token", "link.token"),
    ("fingerprint", "link.fingerprint"),
    ("display", "classroom.display"),
    ("camera", "classroom.camera"),
    ("microphone", "classroom.microphone"),
    ("lms_target", "lms.target"),
    ("lms_url", "lms.url"),
    ("lms_username", "lms.username"),
    ("lms_secret", "lms.secret"),
    ("lms_course_id", "lms.course_id"),
];
const SECRET_FIELDS: &[&str] = &["token", "lms_secret"];

type Values = BTreeMap<String, String>;
type Errors = BTreeMap<&'static str, String>;

pub async fn page(State(state): State<WebState>) -> Response {
    if state.password.is_set() {
        return Redirect::to("/login").into_response();
    }
    let mut values = Values::new();
    values.insert("classroom_name".into(), state.info.classroom.clone());
    values.insert("room".into(), state.info.room.clone());
    values.insert("relay".into(), state.info.relay.clone());
    values.insert("display".into(), "auto".into());
    values.insert(
        "lms_target".into(),
        state.lms_target.map_or("none", |t| t.as_str()).into(),
    );
    super::page(render(&state, &values, &Errors::new(), None))
}

fn render(state: &WebState, values: &Values, errors: &Errors, general: Option<&str>) -> String {
    // The device lists come from GStreamer's device monitor.
    let _ = crate::media::init();
    let v = |k: &str| values.get(k).map(String::as_str).unwrap_or("");
    let field =
        |name: &'static str, label: &'static str, kind: &'static str, hint: &'static str| {
            pages::Field {
                name,
                label,
                kind,
                value: if SECRET_FIELDS.contains(&name) {
                    ""
                } else {
                    v(name)
                },
                hint,
                error: errors.get(name).map(String::as_str),
            }
            .render()
        };
    let body = format!(
        "<h2>Set up this box</h2>{}\
         <form class=\"panel\" method=\"post\" action=\"/setup\" id=\"setup\">\
         <fieldset><legend>1. Admin password</legend>{}{}</fieldset>\
         <fieldset><legend>2. Classroom</legend>{}</fieldset>\
         <fieldset><legend>3. The lesson relay</legend>{}{}{}{}</fieldset>\
         <fieldset><legend>4. The school's LMS (optional)</legend>{}{}{}{}{}\
           <p><button type=\"button\" class=\"secondary\" id=\"test-lms\">Test these LMS settings</button> <span id=\"lms-result\" role=\"status\"></span></p></fieldset>\
         <fieldset><legend>5. Display, camera and microphone</legend>{}{}{}</fieldset>\
         <p><button>Save and start</button></p></form>\
         <script>\
         document.getElementById('test-lms').addEventListener('click', async () => {{\
           const out = document.getElementById('lms-result'); out.textContent = 'Testing…';\
           const data = new URLSearchParams(new FormData(document.getElementById('setup')));\
           try {{ const r = await (await fetch('/setup/test-lms', {{ method: 'POST', body: data }})).json();\
                 out.textContent = r.message; out.className = r.ok ? '' : 'error'; }}\
           catch (e) {{ out.textContent = 'The box did not answer.'; out.className = 'error'; }}\
         }});\
         </script>",
        pages::flash(general, false),
        field(
            "password",
            "Choose a password",
            "password",
            "At least 10 characters. There is no default password."
        ),
        field("password2", "The same password again", "password", ""),
        field(
            "classroom_name",
            "Classroom name",
            "text",
            "Shown on this page and on the classroom display."
        ),
        field(
            "relay",
            "Relay address",
            "text",
            "host:port, from the teacher's organisation (e.g. relay.example.org:4443)."
        ),
        field(
            "room",
            "Lesson room",
            "text",
            "The room name the teacher uses (letters, digits, - and _)."
        ),
        field(
            "token",
            "Enrolment token",
            "password",
            "Paste the box's token (starts with ey…)."
        ),
        field(
            "fingerprint",
            "Relay fingerprint (if given)",
            "text",
            "sha256:… — only for a relay with its own certificate."
        ),
        pages::select(
            "lms_target",
            "LMS",
            &[
                ("none", "None"),
                ("xapi", "xAPI (Learning Record Store)"),
                ("canvas", "Canvas"),
                ("moodle", "Moodle")
            ],
            v("lms_target"),
            ""
        ),
        field(
            "lms_url",
            "LMS address",
            "url",
            "xAPI: the LRS's xAPI endpoint; Canvas and Moodle: the site's address."
        ),
        field("lms_username", "xAPI key", "text", "Only for xAPI."),
        field(
            "lms_secret",
            "Secret or access token",
            "password",
            "xAPI secret, or the Canvas / Moodle token."
        ),
        field(
            "lms_course_id",
            "Course id",
            "text",
            "Canvas: the course this classroom is; Moodle: for the class list."
        ),
        pages::select(
            "display",
            "Show the lesson",
            &[
                ("auto", "On the screen plugged in (automatic)"),
                ("window", "In a window"),
                ("headless", "Nowhere (sound and page only)")
            ],
            v("display"),
            ""
        ),
        device_select(
            "camera",
            "Camera (the teacher sees the classroom)",
            &crate::media::devices::cameras(),
            v("camera"),
            errors.get("camera")
        ),
        device_select(
            "microphone",
            "Microphone (the teacher hears the classroom)",
            &crate::media::devices::microphones(),
            v("microphone"),
            errors.get("microphone")
        ),
    );
    pages::layout(
        "Set up",
        &state.info.classroom,
        pages::Nav::Public,
        None,
        &body,
    )
}

/// A choice among the devices plugged in now, "whichever is plugged in" first.
fn device_select(
    name: &str,
    label: &str,
    devices: &[crate::media::devices::Device],
    chosen: &str,
    error: Option<&String>,
) -> String {
    let mut options: Vec<(&str, &str)> = vec![("", "Whichever is plugged in")];
    options.extend(devices.iter().map(|d| (d.source.as_str(), d.name.as_str())));
    if !chosen.is_empty() && !devices.iter().any(|d| d.source == chosen) {
        options.push((chosen, "(the one chosen before; not plugged in now)"));
    }
    let hint = if devices.is_empty() {
        "None found right now; plug it in and reload this page."
    } else {
        ""
    };
    let error = error
        .map(|e| {
            format!(
                "<p class=\"error\" id=\"{name}-error\">{}</p>",
                pages::esc(e)
            )
        })
        .unwrap_or_default();
    format!(
        "{}{error}",
        pages::select(name, label, &options, chosen, hint)
    )
}

/// Merge the form into the config file's table and validate it like the daemon would.
fn merged_config(
    state: &WebState,
    values: &Values,
) -> Result<(String, Config), (Option<&'static str>, String)> {
    let existing = std::fs::read_to_string(&state.config_path).unwrap_or_default();
    let mut table: toml::Table = existing.parse().map_err(|e| {
        (
            None,
            format!(
                "the existing config file {} is not valid TOML: {e}",
                state.config_path.display()
            ),
        )
    })?;
    for (name, key) in FIELDS {
        let value = values.get(*name).map(|v| v.trim()).unwrap_or("");
        let (section, leaf) = key.split_once('.').expect("section.key");
        let section = table
            .entry(section)
            .or_insert_with(|| toml::Value::Table(Default::default()))
            .as_table_mut()
            .ok_or((
                None,
                format!("[{section}] in the config file is not a section"),
            ))?;
        if value.is_empty() {
            // An empty secret keeps the one already configured; an empty optional field clears it.
            if !SECRET_FIELDS.contains(name) {
                section.remove(leaf);
            }
        } else {
            section.insert(leaf.into(), toml::Value::String(value.into()));
        }
    }
    let text = toml::to_string(&table).map_err(|e| (None, e.to_string()))?;
    match Config::from_toml(&text, &state.config_path, &[]) {
        Ok(config) => Ok((text, config)),
        Err(ConfigError::Key { key, message, .. }) => {
            let field = FIELDS.iter().find(|(_, k)| *k == key).map(|(f, _)| *f);
            Err((field, message))
        }
        Err(e) => Err((None, e.to_string())),
    }
}

pub async fn submit(State(state): State<WebState>, Form(form): Form<Values>) -> Response {
    if state.password.is_set() {
        return (
            StatusCode::FORBIDDEN,
            Html("<p>This box is already set up. <a href=\"/login\">Log in</a>.</p>"),
        )
            .into_response();
    }
    let mut errors = Errors::new();
    let password = form.get("password").cloned().unwrap_or_default();
    if let Err(e) = auth::check_strength(&password) {
        errors.insert("password", format!("The password needs {e}."));
    } else if form.get("password2") != Some(&password) {
        errors.insert("password2", "The two passwords are not the same.".into());
    }
    let general = match merged_config(&state, &form) {
        Ok(_) if !errors.is_empty() => None,
        Ok((text, _config)) => {
            if let Err(e) = crate::state::write_private(&state.config_path, text.as_bytes()) {
                tracing::error!(path = %state.config_path.display(), error = %e, "set-up could not write the config");
                Some(format!(
                    "The settings could not be saved ({e}). Nothing was changed."
                ))
            } else {
                let store = state.password.clone();
                let set = tokio::task::spawn_blocking(move || store.set(&password)).await;
                match set {
                    Ok(Ok(())) => {
                        tracing::info!(path = %state.config_path.display(), "set-up saved");
                        state.saved.notify_one();
                        let token = state.sessions.create(Instant::now());
                        return (
                            [(header::SET_COOKIE, auth::set_cookie(&token))],
                            Redirect::to("/?setup=done"),
                        )
                            .into_response();
                    }
                    Ok(Err(e)) => Some(format!("The password could not be saved ({e}).")),
                    Err(e) => Some(format!("The password could not be saved ({e}).")),
                }
            }
        }
        Err((Some(field), message)) => {
            errors.insert(field, message);
            None
        }
        Err((None, message)) => Some(message),
    };
    let general = general.or_else(|| {
        (!errors.is_empty())
            .then(|| "Please correct the fields marked below. Nothing was saved.".into())
    });
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Html(render(&state, &form, &errors, general.as_deref())),
    )
        .into_response()
}

#[derive(serde::Serialize)]
pub struct TestResult {
    ok: bool,
    message: String,
}

/// "Test these LMS settings": while setting up, or for a logged-in admin.
pub async fn test_lms(
    State(state): State<WebState>,
    headers: HeaderMap,
    Form(form): Form<Values>,
) -> Response {
    if state.password.is_set() {
        let session =
            auth::session_cookie(&headers).and_then(|t| state.sessions.get(&t, Instant::now()));
        let csrf_ok = session.is_some_and(|s| {
            auth::same(&s.csrf, form.get("csrf").map(String::as_str).unwrap_or(""))
        });
        if !csrf_ok {
            return StatusCode::FORBIDDEN.into_response();
        }
    }
    let result = match merged_config(&state, &form) {
        Err((_, message)) => TestResult { ok: false, message },
        Ok((_, config)) => match crate::lms::client_from_config(&config) {
            Ok(None) => TestResult {
                ok: false,
                message: "Choose an LMS first.".into(),
            },
            Err(e) => TestResult {
                ok: false,
                message: e.to_string(),
            },
            Ok(Some(client)) => {
                match tokio::time::timeout(std::time::Duration::from_secs(15), client.check()).await
                {
                    Ok(Ok(())) => TestResult {
                        ok: true,
                        message: "Connected: the LMS accepted these settings.".into(),
                    },
                    Ok(Err(e)) => TestResult {
                        ok: false,
                        message: format!("Not working: {e}"),
                    },
                    Err(_) => TestResult {
                        ok: false,
                        message: "No answer from the LMS within 15 s.".into(),
                    },
                }
            }
        },
    };
    Json(result).into_response()
}

/// The config file's text with every secret replaced (for the support bundle).
pub fn redact(text: &str) -> String {
    text.lines()
        .map(|line| {
            let key = line.split('=').next().unwrap_or("").trim();
            if ["token", "secret", "password"]
                .iter()
                .any(|s| key.ends_with(s))
                && line.contains('=')
            {
                format!("{key} = \"(removed)\"")
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

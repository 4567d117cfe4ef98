//! The router with `oneshot`: set-up, login, CSRF, attendance, queue, bad input.

use std::net::SocketAddr;

use axum::{
    body::Body,
    extract::ConnectInfo,
    http::{Request, StatusCode, header},
};
use tower::ServiceExt;

use super::*;
use crate::lms::RecordState;

struct Page {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn call(app: &Router, req: Request<Body>) -> Page {
    let mut req = req;
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 7], 5000))));
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = String::from_utf8_lossy(
        &axum::body::to_bytes(res.into_body(), 1 << 22)
            .await
            .unwrap(),
    )
    .to_string();
    Page {
        status,
        headers,
        body,
    }
}

fn get(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut r = Request::get(path);
    if let Some(c) = cookie {
        r = r.header(header::COOKIE, c);
    }
    r.body(Body::empty()).unwrap()
}

fn post(path: &str, cookie: Option<&str>, form: &[(&str, &str)]) -> Request<Body> {
    let mut r =
        Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        r = r.header(header::COOKIE, c);
    }
    r.body(Body::from(serde_urlencoded::to_string(form).unwrap()))
        .unwrap()
}

async fn state(dir: &std::path::Path) -> WebState {
    let mut config = crate::config::Config::default();
    config.classroom.name = "Room 4".into();
    config.classroom.roster = vec!["s1:Ada Lovelace".into(), "s2:Alan Turing".into()];
    config.lms.target = "xapi".into();
    config.lms.url = Some("http://127.0.0.1:9/xAPI/".into());
    config.lms.username = "k".into();
    config.lms.secret = Some("s".into());
    WebState::new(
        &config,
        dir.join("classbox.toml"),
        Arc::new(LessonStats::default()),
        "software",
        dir,
    )
    .await
    .unwrap()
}

fn cookie_of(page: &Page) -> String {
    let set = page
        .headers
        .get(header::SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    set.split(';').next().unwrap().to_string()
}

fn csrf_of(body: &str) -> String {
    let at =
        body.find("name=\"csrf\" value=\"").expect("a csrf field") + "name=\"csrf\" value=\"".len();
    body[at..].split('"').next().unwrap().to_string()
}

const SETUP: &[(&str, &str)] = &[
    ("password", "a long enough secret"),
    ("password2", "a long enough secret"),
    ("classroom_name", "Room 4B"),
    ("relay", "relay.example.org:4443"),
    ("room", "maths-4b"),
    ("token", "eyJhbGciOiJIUzI1NiJ9.e30.x"),
    ("display", "headless"),
    ("lms_target", "xapi"),
    ("lms_url", "https://lrs.example.org/xAPI/"),
    ("lms_username", "key"),
    ("lms_secret", "top-secret-value"),
];

async fn set_up(app: &Router) -> String {
    let done = call(app, post("/setup", None, SETUP)).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    cookie_of(&done)
}

#[tokio::test]
async fn first_boot_goes_to_the_wizard_and_bad_values_are_refused_next_to_their_field() {
    let dir = tempfile::tempdir().unwrap();
    let app = super::app(state(dir.path()).await);
    for path in ["/", "/attendance", "/queue", "/login"] {
        let p = call(&app, get(path, None)).await;
        assert_eq!(p.headers.get(header::LOCATION).unwrap(), "/setup", "{path}");
    }
    assert_eq!(
        call(&app, get("/api/status", None)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let wizard = call(&app, get("/setup", None)).await;
    assert!(
        wizard.body.contains("Choose a password")
            && wizard.body.contains("There is no default password")
    );

    for (field, value, message) in [
        ("password2", "something else entirely", "not the same"),
        ("relay", "no-port-here", "relay"),
        ("room", "bad room!", "room"),
        ("lms_url", "ftp://x", "https://"),
        ("camera", "videotestsrc ! fakesink", "one source element"),
    ] {
        let mut form: Vec<(&str, &str)> =
            SETUP.iter().filter(|(k, _)| *k != field).copied().collect();
        form.push((field, value));
        let refused = call(&app, post("/setup", None, &form)).await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{field}");
        let error_at = refused
            .body
            .find(&format!("id=\"{field}-error\""))
            .unwrap_or_else(|| panic!("{field}: no error shown: {}", refused.body));
        assert!(
            refused.body[error_at..].to_lowercase().contains(message),
            "{field}: {}",
            &refused.body[error_at..error_at + 200]
        );
        assert!(
            !refused.body.contains("top-secret-value"),
            "a secret was echoed back"
        );
        assert!(
            !dir.path().join("classbox.toml").exists(),
            "nothing written"
        );
        assert!(!dir.path().join("admin-password").exists());
    }
    let short = [("password", "short"), ("password2", "short")];
    let mut form: Vec<(&str, &str)> = SETUP
        .iter()
        .filter(|(k, _)| !k.starts_with("password"))
        .copied()
        .collect();
    form.extend(short);
    assert!(
        call(&app, post("/setup", None, &form))
            .await
            .body
            .contains("at least 10 characters")
    );

    let mut with_camera: Vec<(&str, &str)> = SETUP.to_vec();
    with_camera.push(("camera", "v4l2src device=\"/dev/video0\""));
    let done = call(&app, post("/setup", None, &with_camera)).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let cookie = cookie_of(&done);
    let written = std::fs::read_to_string(dir.path().join("classbox.toml")).unwrap();
    let config =
        crate::config::Config::from_toml(&written, std::path::Path::new("x"), &[]).unwrap();
    assert_eq!(config.classroom.name, "Room 4B");
    assert_eq!(config.classroom.camera, "v4l2src device=\"/dev/video0\"");
    assert_eq!(config.lms.secret.as_deref(), Some("top-secret-value"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(dir.path().join("classbox.toml"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    // Set up once: the wizard is closed now.
    assert_eq!(
        call(&app, post("/setup", None, SETUP)).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(&app, get("/", Some(&cookie))).await.status,
        StatusCode::OK
    );
    let bundle = call(&app, get("/diagnostics/bundle", Some(&cookie))).await;
    assert!(
        bundle.body.contains("Room 4B")
            && !bundle.body.contains("top-secret-value")
            && !bundle.body.contains("eyJhbG")
    );
}

#[tokio::test]
async fn login_wrong_password_rate_limit_and_csrf() {
    let dir = tempfile::tempdir().unwrap();
    let app = super::app(state(dir.path()).await);
    set_up(&app).await;
    let wrong = call(&app, post("/login", None, &[("password", "not it at all")])).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("not right") && wrong.headers.get(header::SET_COOKIE).is_none());
    for _ in 0..4 {
        call(&app, post("/login", None, &[("password", "not it at all")])).await;
    }
    let locked = call(
        &app,
        post("/login", None, &[("password", "a long enough secret")]),
    )
    .await;
    assert_eq!(
        locked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "even the right password waits out the lock"
    );
    assert!(locked.body.contains("Try again in"));

    // A second box state, to log in without the lock.
    let dir = tempfile::tempdir().unwrap();
    let app = super::app(state(dir.path()).await);
    set_up(&app).await;
    let ok = call(
        &app,
        post(
            "/login",
            None,
            &[
                ("password", "a long enough secret"),
                ("next", "//evil.example/"),
            ],
        ),
    )
    .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    assert_eq!(
        ok.headers.get(header::LOCATION).unwrap(),
        "/",
        "no open redirect"
    );
    let cookie = cookie_of(&ok);
    let attendance = call(&app, get("/attendance", Some(&cookie))).await;
    let csrf = csrf_of(&attendance.body);
    // A form without (or with a wrong) CSRF token changes nothing.
    for bad in ["", "forged"] {
        let r = call(
            &app,
            post(
                "/attendance",
                Some(&cookie),
                &[("csrf", bad), ("lesson", "l1"), ("s.s1", "present")],
            ),
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
    }
    let r = call(&app, post("/logout", Some(&cookie), &[("csrf", "forged")])).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = call(&app, post("/logout", Some(&cookie), &[("csrf", &csrf)])).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(
        call(&app, get("/attendance", Some(&cookie))).await.status,
        StatusCode::SEE_OTHER,
        "logged out"
    );
}

#[tokio::test]
async fn attendance_is_queued_at_once_and_bad_values_queue_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path()).await;
    let outbox = state.outbox.clone().unwrap();
    let app = super::app(state);
    let cookie = set_up(&app).await;
    let page = call(&app, get("/attendance", Some(&cookie))).await;
    assert!(page.body.contains("Ada Lovelace") && page.body.contains("Alan Turing"));
    let csrf = csrf_of(&page.body);
    for (form, message) in [
        (
            vec![("s.s1", "asleep")],
            "not present, late, absent or excused",
        ),
        (vec![("s.s9", "present")], "not on the class list"),
        (vec![], "Nothing was ticked"),
    ] {
        let mut f = vec![
            ("csrf", csrf.as_str()),
            ("lesson", "maths-1"),
            ("form_id", "f1"),
        ];
        f.extend(form);
        let r = call(&app, post("/attendance", Some(&cookie), &f)).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(r.body.contains(message), "{message}");
    }
    // A bad lesson id: refused, nothing queued (and the good row with it).
    let r = call(
        &app,
        post(
            "/attendance",
            Some(&cookie),
            &[("csrf", &csrf), ("lesson", "a b"), ("s.s1", "present")],
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(outbox.counts().await.unwrap().pending, 0);

    let form = [
        ("csrf", csrf.as_str()),
        ("lesson", "maths-1"),
        ("form_id", "f2"),
        ("s.s1", "present"),
        ("s.s2", "late"),
    ];
    let r = call(&app, post("/attendance", Some(&cookie), &form)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("Saved attendance for 2 students"));
    // The same form sent twice (a double click) queues nothing twice.
    call(&app, post("/attendance", Some(&cookie), &form)).await;
    assert_eq!(outbox.counts().await.unwrap().pending, 2);

    let queue = call(&app, get("/queue", Some(&cookie))).await;
    assert!(queue.body.contains("attendance/maths-1/s1") && queue.body.contains("Waiting (2)"));
    let record = outbox
        .list(RecordState::Pending, 10)
        .await
        .unwrap()
        .remove(0);
    outbox
        .mark_dead(&record.record_id, "400 <b>bad</b> statement")
        .await
        .unwrap();
    let dead = call(&app, get("/queue?state=dead", Some(&cookie))).await;
    assert!(
        dead.body.contains("400 &lt;b&gt;bad&lt;/b&gt; statement"),
        "the server's message, escaped"
    );
    let retry = call(
        &app,
        post(
            "/queue/retry",
            Some(&cookie),
            &[("csrf", &csrf), ("record_id", &record.record_id)],
        ),
    )
    .await;
    assert_eq!(retry.status, StatusCode::SEE_OTHER);
    assert_eq!(outbox.counts().await.unwrap().dead, 0);
    let again = call(
        &app,
        post(
            "/queue/retry",
            Some(&cookie),
            &[("csrf", &csrf), ("record_id", &record.record_id)],
        ),
    )
    .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);

    let status = call(&app, get("/api/status", Some(&cookie))).await;
    let v: serde_json::Value = serde_json::from_str(&status.body).unwrap();
    assert_eq!(v["classroom"], "Room 4");
    assert_eq!(v["queue"]["pending"], 2);
    assert_eq!(v["now"]["link"]["state"], "idle");
    assert!(!status.body.contains("secret"));
}

#[tokio::test]
async fn the_watch_page_is_open_to_the_lan_or_behind_the_class_code() {
    let dir = tempfile::tempdir().unwrap();
    let mut open = state(dir.path()).await;
    let app_open = super::app(open.clone());
    let page = call(&app_open, get("/watch", None)).await;
    assert!(
        page.body.contains("id=\"lesson\""),
        "open: the player, no login"
    );
    let no_lesson = call(&app_open, get("/watch/stream", None)).await;
    assert_eq!(no_lesson.status, StatusCode::SERVICE_UNAVAILABLE);

    open.watch_code = "blue-falcon".into();
    let app = super::app(open);
    let page = call(&app, get("/watch", None)).await;
    assert!(page.body.contains("Class code") && !page.body.contains("id=\"lesson\""));
    assert_eq!(
        call(&app, get("/watch/stream", None)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let wrong = call(&app, post("/watch", None, &[("code", "red-falcon")])).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("not the class code") && !wrong.body.contains("blue-falcon"));
    let right = call(&app, post("/watch", None, &[("code", "blue-falcon")])).await;
    let cookie = right
        .headers
        .get(header::SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert!(
        !cookie.contains("blue-falcon"),
        "the code itself is not the cookie"
    );
    assert!(
        call(&app, get("/watch", Some(&cookie)))
            .await
            .body
            .contains("id=\"lesson\"")
    );
    assert_eq!(
        call(&app, get("/watch/stream", Some(&cookie))).await.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "allowed; no lesson yet"
    );
}

#[tokio::test]
async fn the_class_list_can_be_fetched_from_the_lms() {
    use axum::routing::get as route_get;
    // A Canvas course with three students over two pages (Link: rel="next").
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let canvas = Router::new().route(
        "/api/v1/courses/42/users",
        route_get(move |axum::extract::RawQuery(q): axum::extract::RawQuery| async move {
            let second = q.unwrap_or_default().contains("page=2");
            let (users, link) = if second {
                (serde_json::json!([{"id": 3, "name": "Grace Hopper"}]), String::new())
            } else {
                (
                    serde_json::json!([{"id": 1, "name": "Ada Lovelace"}, {"id": 2, "name": "Alan Turing"}]),
                    format!("<http://{addr}/api/v1/courses/42/users?page=2>; rel=\"next\""),
                )
            };
            ([(header::LINK, link)], Json(users))
        }),
    );
    tokio::spawn(async move { axum::serve(listener, canvas).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::config::Config::default();
    config.lms.target = "canvas".into();
    config.lms.url = Some(format!("http://{addr}/"));
    config.lms.secret = Some("token".into());
    config.lms.course_id = "42".into();
    let state = WebState::new(
        &config,
        dir.path().join("classbox.toml"),
        Arc::new(LessonStats::default()),
        "software",
        dir.path(),
    )
    .await
    .unwrap();
    let app = super::app(state);
    let cookie = set_up(&app).await;
    let page = call(&app, get("/attendance", Some(&cookie))).await;
    assert!(
        page.body.contains("No class list yet")
            && page.body.contains("Update the class list from the LMS")
    );
    let csrf = csrf_of(&page.body);
    let fetched = call(
        &app,
        post("/attendance/roster", Some(&cookie), &[("csrf", &csrf)]),
    )
    .await;
    assert!(
        fetched.body.contains("the LMS&#39;s 3 students")
            || fetched.body.contains("the LMS's 3 students"),
        "{}",
        fetched.body
    );
    assert!(fetched.body.contains("Grace Hopper"));
    let saved = std::fs::read_to_string(dir.path().join("roster.json")).unwrap();
    assert!(saved.contains("Alan Turing"), "kept for the next start");
    let forged = call(
        &app,
        post("/attendance/roster", Some(&cookie), &[("csrf", "forged")]),
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
}

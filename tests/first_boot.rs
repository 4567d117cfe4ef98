//! A fresh box (no relay in its config, as the image ships): the daemon stays up, tells
//! systemd it is ready and waiting for set-up, serves the wizard; once the wizard saves,
//! it starts over with the new settings and dials the relay, without a restart.

mod common;

use std::{
    io::{BufRead, BufReader},
    os::unix::net::UnixDatagram,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use classbox::auth::Role;
use common::{TestRelay, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_box_serves_the_wizard_then_runs_with_what_it_saved() {
    common::init();
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(&dir.path().join("relay"), "127.0.0.1:0").await;
    let enrolment = relay.client_config("room-7", Role::Box);

    // A free loopback port for the page (the image uses a fixed one, 8080).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("classbox.toml");
    std::fs::write(
        &config,
        format!(
            "[classroom]\nweb_listen = \"127.0.0.1:{port}\"\ndisplay = \"headless\"\nstate_dir = \"{}\"\nreturn_feed = \"off\"\n",
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let socket_path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_nonblocking(true).unwrap();

    let mut daemon = Command::new(env!("CARGO_BIN_EXE_classbox"))
        .arg("--config")
        .arg(&config)
        .arg("classroom")
        .env("CLASSBOX_LOG", "info")
        .env("NOTIFY_SOCKET", &socket_path)
        .env_remove("CLASSBOX_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let reader = std::thread::spawn({
        let (log, stderr) = (log.clone(), daemon.stderr.take().unwrap());
        move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log.lock().unwrap().push_str(&(line + "\n"));
            }
        }
    });

    // systemd hears it is ready, and why it is not dialling anything.
    let notes = Arc::new(Mutex::new(Vec::<String>::new()));
    let poll_notify = |notes: &Arc<Mutex<Vec<String>>>| {
        let mut buf = [0u8; 1024];
        while let Ok(n) = socket.recv(&mut buf) {
            notes
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(&buf[..n]).to_string());
        }
    };
    eventually(Duration::from_secs(60), "READY=1 while not set up", || {
        poll_notify(&notes);
        let ready = notes
            .lock()
            .unwrap()
            .iter()
            .any(|m| m.contains("READY=1") && m.contains("not set up yet"));
        async move { ready }
    })
    .await;

    let page = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let wizard = http.get(format!("{page}/")).send().await.unwrap();
    assert_eq!(wizard.status(), 303, "every page leads to the wizard");
    assert_eq!(wizard.headers()["location"], "/setup");
    let form = http.get(format!("{page}/setup")).send().await.unwrap();
    assert_eq!(form.status(), 200);
    assert!(form.text().await.unwrap().contains("name=\"relay\""));

    let saved = http
        .post(format!("{page}/setup"))
        .form(&[
            ("password", "a long enough secret"),
            ("password2", "a long enough secret"),
            ("classroom_name", "Room 7"),
            ("relay", &relay.addr.to_string()),
            ("room", "room-7"),
            ("token", enrolment.link.token.as_deref().unwrap()),
            (
                "fingerprint",
                enrolment.link.fingerprint.as_deref().unwrap(),
            ),
            ("display", "headless"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), 303, "{:?}", saved.text().await);

    // Without being restarted, the daemon takes the new settings and dials the relay.
    eventually(
        Duration::from_secs(60),
        "the box connects with the saved settings",
        || {
            let log = log.lock().unwrap().clone();
            async move { log.contains("starting over") && log.contains("connected to relay") }
        },
    )
    .await;
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        text.contains("Room 7") && text.contains(&relay.addr.to_string()),
        "{text}"
    );
    // The page is back, on the same address, behind the password now.
    let again = http.get(format!("{page}/")).send().await.unwrap();
    let to = again.headers()["location"].to_str().unwrap().to_string();
    assert!(to.starts_with("/login"), "{to}");

    Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .unwrap();
    let status = daemon.wait().unwrap();
    reader.join().unwrap();
    assert!(status.success(), "{status}\n{}", log.lock().unwrap());
    relay.stop().await;
}

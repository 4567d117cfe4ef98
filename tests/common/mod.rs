//! Shared helpers: a real relay on 127.0.0.1:0, real classroom and teacher roles with
//! GStreamer test sources, and polling waits (no wall-clock assertions).
#![allow(dead_code)]

use std::{
    net::SocketAddr,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use classbox::{
    auth::Role,
    config::{Config, DisplayMode},
    roles::{self, loopback::LoopbackRelay},
    stats::LessonStats,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub mod browser;
pub mod lms;
pub mod path;
pub mod schools;

/// A command's output, which must be a success (its stderr says why not).
pub fn assert_succeeded(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Poll an async condition until it holds; panics after `limit` (a hang guard, not a
/// timing assertion).
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not within {limit:?}: {what}");
}

/// Edited copies of the software pipeline files in `dir/pipelines` (what an IT person
/// makes with `media.pipelines_dir`), with `from` replaced by `to` once in `role`'s file.
pub fn edited_pipelines(dir: &Path, role: &str, from: &str, to: &str) -> std::path::PathBuf {
    let pipelines = dir.join("pipelines");
    std::fs::create_dir_all(pipelines.join("software")).unwrap();
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/gst-pipelines/software");
    for file in ["teacher", "classroom"] {
        let text = std::fs::read_to_string(format!("{root}/{file}.pipeline")).unwrap();
        let edited = if file == role {
            text.replacen(from, to, 1)
        } else {
            text.clone()
        };
        assert!(
            file != role || edited != text,
            "{from:?} is not in {file}.pipeline"
        );
        std::fs::write(pipelines.join(format!("software/{file}.pipeline")), edited).unwrap();
    }
    pipelines
}

pub fn init() {
    let _ = tracing_subscriber_init();
    classbox::media::init().expect("GStreamer initialises");
}

fn tracing_subscriber_init() -> Option<()> {
    // Honour CLASSBOX_LOG for debugging a failing test; quiet otherwise.
    if std::env::var_os("CLASSBOX_LOG").is_some() {
        classbox::telemetry::init(false);
    }
    Some(())
}

/// A relay on loopback for one test; derefs to the library's [`LoopbackRelay`].
pub struct TestRelay {
    inner: LoopbackRelay,
    pub shutdown: CancellationToken,
}

impl std::ops::Deref for TestRelay {
    type Target = LoopbackRelay;
    fn deref(&self) -> &LoopbackRelay {
        &self.inner
    }
}

impl TestRelay {
    /// Start a relay with its state in `dir` on `listen` (use port 0 for any).
    pub async fn start(dir: &Path, listen: &str) -> TestRelay {
        let shutdown = CancellationToken::new();
        let inner = LoopbackRelay::start(dir, listen, shutdown.clone()).expect("relay starts");
        TestRelay { inner, shutdown }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.inner.task.await;
    }

    /// Config for a teacher or a box in `room`, headless, with a fresh token.
    pub fn client_config(&self, room: &str, role: Role) -> Config {
        self.client_config_via(self.addr, room, role)
    }

    /// As [`Self::client_config`], reaching the relay at `via` (a link emulator).
    pub fn client_config_via(&self, via: SocketAddr, room: &str, role: Role) -> Config {
        let mut c = self.inner.client_config(via, room, role);
        c.classroom.display = DisplayMode::Headless;
        c
    }
}

/// Config for a client of some other relay (moq-relay in the interop test).
pub fn client_config(
    relay: &str,
    fingerprint: Option<&str>,
    room: &str,
    token: Option<String>,
) -> Config {
    let mut c = Config::default();
    c.link.relay = Some(relay.into());
    c.link.fingerprint = fingerprint.map(str::to_string);
    c.link.room = room.into();
    c.link.token = token;
    c.link.max_backoff_secs = 1;
    c.classroom.display = DisplayMode::Headless;
    c
}

/// A role running in this process, with its stats and a way to stop it.
pub struct Running {
    pub stats: Arc<LessonStats>,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("role stops within 5 s")
            .expect("role task did not panic")
    }
}

pub fn start_classroom(config: Config) -> Running {
    let stats = Arc::new(LessonStats::default());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let (stats, shutdown) = (stats.clone(), shutdown.clone());
        async move { roles::classroom::run(&config, stats, None, shutdown).await }
    });
    Running {
        stats,
        shutdown,
        task,
    }
}

pub fn start_teacher(config: Config) -> Running {
    let stats = Arc::new(LessonStats::default());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let (stats, shutdown) = (stats.clone(), shutdown.clone());
        async move { roles::teacher::run(&config, stats, false, shutdown).await }
    });
    Running {
        stats,
        shutdown,
        task,
    }
}

/// Poll `cond` every 50 ms until it holds or `limit` passes; returns whether it held.
pub async fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cond()
}

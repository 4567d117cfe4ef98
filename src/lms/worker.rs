//! The sync worker: due records out of the [`Outbox`], through the LMS client, and their
//! fate back in.
//!
//! - Link monitor: while the LMS is unreachable the worker only probes it (backoff from
//!   2 s to 30 s, and at once when the box's relay link comes back), and records wait
//!   without spending attempts.
//! - One request at a time (per credential); retries with exponential backoff and
//!   jitter, never sooner than the server's `Retry-After`.
//! - Per-entity order comes from [`Outbox::due`]; a permanent failure dead-letters only
//!   its own record.
//! - While a lesson is live the worker sends at most `lesson_share` of the measured
//!   uplink ([`Throttle`]), or pauses if the share is 0; after the lesson, full speed.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{
    DeliveryError, Outbox, OutboxError, OutboxRecord, Target, canvas::CanvasClient,
    moodle::MoodleClient, xapi::XapiClient,
};
use crate::frame::unix_micros;

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Share of the uplink the worker may use while a lesson is live (0 pauses it).
    pub lesson_share: f64,
    /// Uplink assumed when none has been measured, kbit/s.
    pub fallback_uplink_kbps: f64,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub probe_base: Duration,
    pub probe_max: Duration,
    pub keep_delivered: Duration,
    pub keep_dead: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            lesson_share: 0.10,
            fallback_uplink_kbps: 256.0,
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(15 * 60),
            probe_base: Duration::from_secs(2),
            probe_max: Duration::from_secs(30),
            keep_delivered: Duration::from_secs(7 * 86_400),
            keep_dead: Duration::from_secs(90 * 86_400),
        }
    }
}

/// What the lesson is doing to the link, as the classroom role sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LessonLoad {
    pub live: bool,
    /// Measured uplink capacity, kbit/s, when known.
    pub uplink_kbps: Option<f64>,
}

/// The worker's state, for the page.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncStatus {
    pub target: Option<Target>,
    pub reachable: bool,
    pub paused_for_lesson: bool,
    pub last_error: Option<String>,
    pub last_success_ms: Option<i64>,
}

/// One client per LMS.
pub enum LmsClient {
    Xapi(XapiClient),
    Canvas(CanvasClient),
    Moodle(MoodleClient),
}

impl LmsClient {
    pub fn target(&self) -> Target {
        match self {
            LmsClient::Xapi(_) => Target::Xapi,
            LmsClient::Canvas(_) => Target::Canvas,
            LmsClient::Moodle(_) => Target::Moodle,
        }
    }

    /// Reachable, and the credentials work (the page's "test" button uses this too).
    pub async fn check(&self) -> Result<(), DeliveryError> {
        match self {
            LmsClient::Xapi(c) => c.check().await,
            LmsClient::Canvas(c) => c.check().await,
            LmsClient::Moodle(c) => c.check().await,
        }
    }

    /// The course's students, for the attendance list (Canvas and Moodle know them; an
    /// LRS does not).
    pub async fn roster(&self) -> Result<Vec<super::Student>, DeliveryError> {
        match self {
            LmsClient::Xapi(_) => Err(DeliveryError::Permanent(
                "a Learning Record Store keeps no class lists: set classroom.roster".into(),
            )),
            LmsClient::Canvas(c) => c.roster().await,
            LmsClient::Moodle(c) => c.roster().await,
        }
    }

    async fn deliver(
        &self,
        record: &OutboxRecord,
        throttle: &Throttle,
    ) -> Result<(), DeliveryError> {
        match self {
            LmsClient::Xapi(c) => c.deliver(record, throttle).await,
            LmsClient::Canvas(c) => c.deliver(record, throttle).await,
            LmsClient::Moodle(c) => c.deliver(record, throttle).await,
        }
    }
}

/// Paces what the worker sends while a lesson is live.
#[derive(Clone)]
pub struct Throttle {
    load: watch::Receiver<LessonLoad>,
    share: f64,
    fallback_kbps: f64,
}

impl Throttle {
    pub fn new(load: watch::Receiver<LessonLoad>, share: f64, fallback_kbps: f64) -> Self {
        Self {
            load,
            share,
            fallback_kbps,
        }
    }

    /// Unthrottled (tests, benches, the page's test button).
    pub fn unlimited() -> Self {
        let (_, load) = watch::channel(LessonLoad::default());
        Self::new(load, 1.0, 0.0)
    }

    /// The allowed rate now, bytes per second (None: no limit).
    pub fn rate(&self) -> Option<f64> {
        let load = *self.load.borrow();
        if !load.live {
            return None;
        }
        let kbps = load.uplink_kbps.unwrap_or(self.fallback_kbps) * self.share;
        Some((kbps * 1000.0 / 8.0).max(1.0))
    }

    /// Wait as long as sending `bytes` takes at the allowed rate.
    pub async fn take(&self, bytes: usize) {
        if let Some(rate) = self.rate() {
            tokio::time::sleep(Duration::from_secs_f64(bytes as f64 / rate)).await;
        }
    }

    /// A request body sent in 16 KiB chunks at the allowed rate (re-read per chunk, so a
    /// lesson starting mid-upload slows it at once).
    pub fn body(&self, data: bytes::Bytes) -> reqwest::Body {
        const CHUNK: usize = 16 * 1024;
        let throttle = self.clone();
        let chunks = (0..data.len().div_ceil(CHUNK))
            .map(move |i| data.slice(i * CHUNK..((i + 1) * CHUNK).min(data.len())));
        let stream = futures::stream::iter(chunks).then(move |chunk| {
            let throttle = throttle.clone();
            async move {
                throttle.take(chunk.len()).await;
                Ok::<_, std::io::Error>(chunk)
            }
        });
        reqwest::Body::wrap_stream(stream)
    }
}

use futures::StreamExt;

pub struct SyncWorker {
    outbox: Outbox,
    client: LmsClient,
    settings: WorkerSettings,
    load: watch::Receiver<LessonLoad>,
    /// Changes when the box's relay link comes up: the LMS is probably back too.
    link_up: Option<watch::Receiver<bool>>,
    status: Arc<Mutex<SyncStatus>>,
}

impl SyncWorker {
    pub fn new(
        outbox: Outbox,
        client: LmsClient,
        settings: WorkerSettings,
        load: watch::Receiver<LessonLoad>,
    ) -> Self {
        let status = SyncStatus {
            target: Some(client.target()),
            ..Default::default()
        };
        Self {
            outbox,
            client,
            settings,
            load,
            link_up: None,
            status: Arc::new(Mutex::new(status)),
        }
    }

    /// Report into `status` (the page's handle) instead of a private one.
    pub fn with_status(mut self, status: Arc<Mutex<SyncStatus>>) -> Self {
        *status.lock().expect("status lock") = self.status.lock().expect("status lock").clone();
        self.status = status;
        self
    }

    pub fn wake_on_link(mut self, link_up: watch::Receiver<bool>) -> Self {
        self.link_up = Some(link_up);
        self
    }

    pub fn status(&self) -> Arc<Mutex<SyncStatus>> {
        self.status.clone()
    }

    fn set_status(&self, f: impl FnOnce(&mut SyncStatus)) {
        f(&mut self.status.lock().expect("status lock"));
    }

    /// Deliver until `shutdown`. A delivery under way when it fires is abandoned: the
    /// record stays pending and its repeat is recognised by the LMS (ids, look-first).
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), OutboxError> {
        let throttle = Throttle::new(
            self.load.clone(),
            self.settings.lesson_share,
            self.settings.fallback_uplink_kbps,
        );
        let changed = self.outbox.changed();
        let mut reachable = false;
        let mut probes = 0u32;
        let mut next_prune = 0i64;
        loop {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            let now = now_ms();
            if now >= next_prune {
                let pruned = self
                    .outbox
                    .prune(now, self.settings.keep_delivered, self.settings.keep_dead)
                    .await?;
                if pruned > 0 {
                    tracing::info!(pruned, "old outbox records removed");
                }
                next_prune = now + 3_600_000;
            }
            if !reachable {
                match self.client.check().await {
                    Ok(()) => {
                        tracing::info!(target = self.client.target().as_str(), "LMS reachable");
                        reachable = true;
                        probes = 0;
                        self.set_status(|s| {
                            s.reachable = true;
                            s.last_error = None;
                        });
                    }
                    Err(e) => {
                        let wait = crate::backoff::delay(
                            self.settings.probe_base,
                            self.settings.probe_max,
                            probes,
                            rand::random(),
                        );
                        probes = probes.saturating_add(1);
                        tracing::debug!(error = %e, ?wait, "LMS not reachable");
                        self.set_status(|s| {
                            s.reachable = false;
                            s.last_error = Some(e.to_string());
                        });
                        self.wait(&shutdown, Some(wait), true).await;
                        continue;
                    }
                }
            }
            if self.settings.lesson_share <= 0.0 && self.load.borrow().live {
                self.set_status(|s| s.paused_for_lesson = true);
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = self.load.wait_for(|l| !l.live) => {}
                }
                self.set_status(|s| s.paused_for_lesson = false);
                continue;
            }
            let due = self.outbox.due(now_ms(), 32).await?;
            if due.is_empty() {
                let next = self.outbox.next_due_ms().await?;
                let wait =
                    next.map(|at| Duration::from_millis(at.saturating_sub(now_ms()).max(0) as u64));
                tokio::select! {
                    _ = changed.notified() => {}
                    _ = self.wait(&shutdown, wait, false) => {}
                }
                continue;
            }
            // A delivered mark commits while the next request is on the wire: it is the
            // one write whose loss in a crash costs nothing (the repeat is recognised).
            let mut marks = tokio::task::JoinSet::new();
            for record in due {
                let outcome = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    outcome = self.client.deliver(&record, &throttle) => outcome,
                };
                let Err(failure) = outcome else {
                    let (outbox, id) = (self.outbox.clone(), record.record_id.clone());
                    marks.spawn(async move { outbox.mark_delivered(&id, now_ms()).await });
                    self.set_status(|s| s.last_success_ms = Some(now_ms()));
                    tracing::debug!(record = %record.record_id, kind = %record.kind, entity = %record.entity, "delivered to the LMS");
                    continue;
                };
                if !self.settle(&record, failure).await? {
                    reachable = false;
                    break;
                }
            }
            while let Some(mark) = marks.join_next().await {
                mark.map_err(|e| OutboxError::Io(std::io::Error::other(e)))??;
            }
        }
    }

    /// Record a failed delivery. Returns false when the LMS turned out unreachable.
    async fn settle(
        &self,
        record: &OutboxRecord,
        failure: DeliveryError,
    ) -> Result<bool, OutboxError> {
        let now = now_ms();
        match failure {
            DeliveryError::Unreachable(why) => {
                // Not the record's fault: no attempt is spent.
                self.outbox
                    .postpone(&record.record_id, now, &format!("LMS unreachable: {why}"))
                    .await?;
                self.set_status(|s| {
                    s.reachable = false;
                    s.last_error = Some(why);
                });
                return Ok(false);
            }
            DeliveryError::Retry { reason, after } => {
                let backoff = crate::backoff::delay(
                    self.settings.retry_base,
                    self.settings.retry_max,
                    record.attempts,
                    rand::random(),
                );
                let wait = after.map_or(backoff, |a| a.max(backoff.min(a * 2)));
                tracing::warn!(record = %record.record_id, %reason, ?wait, attempt = record.attempts + 1, "LMS delivery will be retried");
                self.outbox
                    .mark_retry(&record.record_id, now + wait.as_millis() as i64, &reason)
                    .await?;
                self.set_status(|s| s.last_error = Some(reason));
            }
            DeliveryError::Permanent(message) => {
                tracing::warn!(record = %record.record_id, %message, "LMS refused a record; dead-lettered");
                self.outbox.mark_dead(&record.record_id, &message).await?;
            }
        }
        Ok(true)
    }

    /// Sleep for `wait` (forever when None) or until shutdown; when probing, also wake
    /// when the relay link comes up.
    async fn wait(&self, shutdown: &CancellationToken, wait: Option<Duration>, probing: bool) {
        let sleep = async {
            match wait {
                Some(w) => tokio::time::sleep(w).await,
                None => std::future::pending().await,
            }
        };
        let link = async {
            match (&self.link_up, probing) {
                (Some(link), true) => {
                    let mut link = link.clone();
                    link.mark_unchanged();
                    // Only a change to "up" counts, not a link that is up already.
                    loop {
                        if link.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                        if *link.borrow_and_update() {
                            break;
                        }
                    }
                }
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = sleep => {}
            _ = link => {}
        }
    }
}

fn now_ms() -> i64 {
    unix_micros() as i64 / 1000
}

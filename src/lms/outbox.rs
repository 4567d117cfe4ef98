//! The durable queue: SQLite (WAL, `synchronous=FULL`) plus attachment files beside it.
//!
//! In: validated [`Event`]s with optional files. Out: records due for delivery in
//! per-entity order, and their fate (delivered, retry later, dead-lettered).
//!
//! An enqueue returns only after its transaction is committed and its files are
//! fsynced. Concurrent enqueues share one commit (group commit), which is what makes
//! thousands of durable enqueues a second possible on an SD card.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use serde::Serialize;
use sqlx::{
    Row, SqlitePool,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};
use tokio::sync::{Notify, mpsc, oneshot};

use super::{Event, InvalidEvent, Target};

mod attachments;
use attachments::store_files;
pub use attachments::{Attachment, AttachmentContent, MAX_ATTACHMENT_BYTES, NewAttachment};

/// A wall clock this far behind the newest record is taken as wrong (a power cut
/// reset it), not as the box travelling back in time.
const CLOCK_BACKWARDS_TOLERANCE_MS: i64 = 5 * 60 * 1000;
/// Commit time of the source this binary was built from: no real event is older.
const BUILT_AT_MS: i64 = match i64::from_str_radix(env!("CLASSBOX_SOURCE_UNIX"), 10) {
    Ok(s) => s * 1000,
    Err(_) => 0,
};

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error(transparent)]
    Invalid(#[from] InvalidEvent),
    #[error("attachment {name:?}: {message}")]
    Attachment { name: String, message: String },
    #[error("outbox database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("outbox database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("outbox files: {0}")]
    Io(#[from] std::io::Error),
    #[error("the outbox is shutting down")]
    Closed,
    #[error("no such record: {0}")]
    NotFound(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordState {
    Pending,
    Delivered,
    Dead,
}

impl RecordState {
    fn as_str(self) -> &'static str {
        match self {
            RecordState::Pending => "pending",
            RecordState::Delivered => "delivered",
            RecordState::Dead => "dead",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "delivered" => RecordState::Delivered,
            "dead" => RecordState::Dead,
            _ => RecordState::Pending,
        }
    }
}

/// One queued record, as the worker and the page see it.
#[derive(Debug, Clone, Serialize)]
pub struct OutboxRecord {
    pub seq: i64,
    pub record_id: String,
    pub idempotency_key: String,
    pub target: Target,
    pub kind: String,
    pub entity: String,
    pub event: Event,
    pub created_at_ms: i64,
    /// The box's clock looked wrong when this was recorded.
    pub clock_suspect: bool,
    pub state: RecordState,
    pub attempts: u32,
    pub next_attempt_at_ms: i64,
    pub last_error: Option<String>,
    pub delivered_at_ms: Option<i64>,
    pub attachments: Vec<Attachment>,
}

/// Queue figures for the page.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct QueueCounts {
    pub pending: i64,
    pub delivered: i64,
    pub dead: i64,
    pub last_delivered_at_ms: Option<i64>,
}

struct Insert {
    record_id: String,
    idempotency_key: String,
    target: Target,
    event: Event,
    created_at_ms: i64,
    clock_suspect: bool,
    attachments: Vec<Attachment>,
    done: oneshot::Sender<Result<String, OutboxError>>,
}

/// The outbox. Cheap to clone; the group-commit writer lives as long as any clone.
#[derive(Clone)]
pub struct Outbox {
    pool: SqlitePool,
    files: PathBuf,
    writer: mpsc::Sender<Insert>,
    /// Woken on every enqueue and retry, so the worker does not poll.
    changed: Arc<Notify>,
    newest_created_ms: Arc<AtomicI64>,
}

impl Outbox {
    /// Open (creating and migrating) the outbox in `dir`: `outbox.sqlite` and `attachments/`.
    pub async fn open(dir: &Path) -> Result<Self, OutboxError> {
        std::fs::create_dir_all(dir.join("attachments"))?;
        let options = SqliteConnectOptions::new()
            .filename(dir.join("outbox.sqlite"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a committed enqueue survives a power cut, not only a crash.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("src/lms/migrations").run(&pool).await?;
        let newest: Option<i64> = sqlx::query_scalar("SELECT MAX(created_at_ms) FROM outbox")
            .fetch_one(&pool)
            .await?;
        let (writer, inserts) = mpsc::channel(1024);
        tokio::spawn(group_commit(pool.clone(), inserts));
        Ok(Self {
            pool,
            files: dir.join("attachments"),
            writer,
            changed: Arc::new(Notify::new()),
            newest_created_ms: Arc::new(AtomicI64::new(newest.unwrap_or(0))),
        })
    }

    /// Notified whenever there may be new work (an enqueue, a retry button).
    pub fn changed(&self) -> Arc<Notify> {
        self.changed.clone()
    }

    /// Queue `event` for `target`. Returns the record id once it is durable. With an
    /// `idempotency_key` already queued, returns that record instead (a double-click
    /// or a retried form post queues nothing twice).
    pub async fn enqueue(
        &self,
        target: Target,
        event: Event,
        idempotency_key: Option<String>,
        attachments: Vec<NewAttachment>,
    ) -> Result<String, OutboxError> {
        event.validate()?;
        target.accepts(&event)?;
        if let Some(key) = &idempotency_key
            && (key.is_empty()
                || key.len() > 100
                || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        {
            return Err(InvalidEvent::Field {
                field: "idempotency_key",
                message: "1-100 letters, digits or dashes".into(),
            }
            .into());
        }
        let record_id = uuid::Uuid::new_v4().to_string();
        let stored = self.store_attachments(&record_id, attachments).await?;
        let now = crate::frame::unix_micros() as i64 / 1000;
        let newest = self.newest_created_ms.fetch_max(now, Ordering::Relaxed);
        let clock_suspect = now < BUILT_AT_MS || now + CLOCK_BACKWARDS_TOLERANCE_MS < newest;
        let (done, result) = oneshot::channel();
        let insert = Insert {
            record_id: record_id.clone(),
            idempotency_key: idempotency_key.unwrap_or_else(|| record_id.clone()),
            target,
            event,
            created_at_ms: now,
            clock_suspect,
            attachments: stored,
            done,
        };
        self.writer
            .send(insert)
            .await
            .map_err(|_| OutboxError::Closed)?;
        let outcome = result.await.map_err(|_| OutboxError::Closed)?;
        if !matches!(&outcome, Ok(id) if *id == record_id) {
            // Refused, or a duplicate of an earlier record: the copies are not needed.
            let _ = tokio::fs::remove_dir_all(self.files.join(&record_id)).await;
        }
        self.changed.notify_one();
        outcome
    }

    /// Copy, hash and fsync each attachment under `attachments/<record_id>/`.
    async fn store_attachments(
        &self,
        record_id: &str,
        attachments: Vec<NewAttachment>,
    ) -> Result<Vec<Attachment>, OutboxError> {
        if attachments.is_empty() {
            return Ok(Vec::new());
        }
        let dir = self.files.join(record_id);
        let result = tokio::task::spawn_blocking(move || store_files(&dir, attachments))
            .await
            .map_err(|e| OutboxError::Io(std::io::Error::other(e)))?;
        if result.is_err() {
            let _ = tokio::fs::remove_dir_all(self.files.join(record_id)).await;
        }
        result
    }

    /// Pending records whose time has come and that are first in line for their
    /// entity (an earlier pending record of the same entity holds them back).
    pub async fn due(&self, now_ms: i64, limit: u32) -> Result<Vec<OutboxRecord>, OutboxError> {
        let rows = sqlx::query(
            "SELECT o.* FROM outbox o
             WHERE o.state = 'pending' AND o.next_attempt_at_ms <= ?1
               AND NOT EXISTS (SELECT 1 FROM outbox p
                               WHERE p.state = 'pending' AND p.entity = o.entity AND p.seq < o.seq)
             ORDER BY o.seq LIMIT ?2",
        )
        .bind(now_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        self.records(rows).await
    }

    /// When the earliest waiting record becomes due (None: nothing pending).
    pub async fn next_due_ms(&self) -> Result<Option<i64>, OutboxError> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(o.next_attempt_at_ms) FROM outbox o
             WHERE o.state = 'pending'
               AND NOT EXISTS (SELECT 1 FROM outbox p
                               WHERE p.state = 'pending' AND p.entity = o.entity AND p.seq < o.seq)",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    pub async fn mark_delivered(&self, record_id: &str, now_ms: i64) -> Result<(), OutboxError> {
        sqlx::query(
            "UPDATE outbox SET state = 'delivered', delivered_at_ms = ?2, attempts = attempts + 1, last_error = NULL
             WHERE record_id = ?1",
        )
        .bind(record_id)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Count a failed attempt and schedule the next one.
    pub async fn mark_retry(
        &self,
        record_id: &str,
        next_attempt_at_ms: i64,
        error: &str,
    ) -> Result<(), OutboxError> {
        sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at_ms = ?2, last_error = ?3
             WHERE record_id = ?1 AND state = 'pending'",
        )
        .bind(record_id)
        .bind(next_attempt_at_ms)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Not an attempt (the LMS was unreachable or the worker yielded): wait, uncounted.
    pub async fn postpone(
        &self,
        record_id: &str,
        next_attempt_at_ms: i64,
        why: &str,
    ) -> Result<(), OutboxError> {
        sqlx::query("UPDATE outbox SET next_attempt_at_ms = ?2, last_error = ?3 WHERE record_id = ?1 AND state = 'pending'")
            .bind(record_id)
            .bind(next_attempt_at_ms)
            .bind(why)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Retrying cannot help: dead-letter the record with the server's message.
    pub async fn mark_dead(&self, record_id: &str, error: &str) -> Result<(), OutboxError> {
        sqlx::query("UPDATE outbox SET state = 'dead', attempts = attempts + 1, last_error = ?2 WHERE record_id = ?1")
            .bind(record_id)
            .bind(error)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The page's retry button: a dead record goes back in the queue, due now. It
    /// keeps its place (seq) among its entity's records.
    pub async fn retry(&self, record_id: &str) -> Result<(), OutboxError> {
        let done = sqlx::query(
            "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at_ms = 0 WHERE record_id = ?1 AND state = 'dead'",
        )
        .bind(record_id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(OutboxError::NotFound(format!(
                "{record_id} (or it is not dead-lettered)"
            )));
        }
        self.changed.notify_one();
        Ok(())
    }

    /// Records in one state, newest first (for the page).
    pub async fn list(
        &self,
        state: RecordState,
        limit: u32,
    ) -> Result<Vec<OutboxRecord>, OutboxError> {
        let rows = sqlx::query("SELECT * FROM outbox WHERE state = ?1 ORDER BY seq DESC LIMIT ?2")
            .bind(state.as_str())
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        self.records(rows).await
    }

    pub async fn get(&self, record_id: &str) -> Result<OutboxRecord, OutboxError> {
        let row = sqlx::query("SELECT * FROM outbox WHERE record_id = ?1")
            .bind(record_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| OutboxError::NotFound(record_id.to_string()))?;
        Ok(self.records(vec![row]).await?.remove(0))
    }

    pub async fn counts(&self) -> Result<QueueCounts, OutboxError> {
        let row = sqlx::query(
            "SELECT
               COALESCE(SUM(state = 'pending'), 0) AS pending,
               COALESCE(SUM(state = 'delivered'), 0) AS delivered,
               COALESCE(SUM(state = 'dead'), 0) AS dead,
               MAX(delivered_at_ms) AS last_delivered
             FROM outbox",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(QueueCounts {
            pending: row.try_get("pending")?,
            delivered: row.try_get("delivered")?,
            dead: row.try_get("dead")?,
            last_delivered_at_ms: row.try_get("last_delivered")?,
        })
    }

    /// Forget delivered records older than `keep_delivered` and dead ones older than
    /// `keep_dead` (by local time of recording), with their files. Returns how many.
    pub async fn prune(
        &self,
        now_ms: i64,
        keep_delivered: Duration,
        keep_dead: Duration,
    ) -> Result<u64, OutboxError> {
        let delivered_before = now_ms - keep_delivered.as_millis() as i64;
        let dead_before = now_ms - keep_dead.as_millis() as i64;
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT record_id FROM outbox
             WHERE (state = 'delivered' AND delivered_at_ms < ?1) OR (state = 'dead' AND created_at_ms < ?2)",
        )
        .bind(delivered_before)
        .bind(dead_before)
        .fetch_all(&self.pool)
        .await?;
        let mut pruned = 0;
        for chunk in ids.chunks(500) {
            let mut tx = self.pool.begin().await?;
            for id in chunk {
                pruned += sqlx::query("DELETE FROM outbox WHERE record_id = ?1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            }
            tx.commit().await?;
            for id in chunk {
                let _ = tokio::fs::remove_dir_all(self.files.join(id)).await;
            }
        }
        Ok(pruned)
    }

    async fn records(
        &self,
        rows: Vec<sqlx::sqlite::SqliteRow>,
    ) -> Result<Vec<OutboxRecord>, OutboxError> {
        let mut records = Vec::with_capacity(rows.len());
        for row in rows {
            let record_id: String = row.try_get("record_id")?;
            let attachments = sqlx::query(
                "SELECT file_name, content_type, stored_path, size, sha256 FROM attachment WHERE record_id = ?1 ORDER BY id",
            )
            .bind(&record_id)
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|a| {
                Ok(Attachment {
                    file_name: a.try_get("file_name")?,
                    content_type: a.try_get("content_type")?,
                    path: self.files.join(a.try_get::<String, _>("stored_path")?),
                    size: a.try_get::<i64, _>("size")? as u64,
                    sha256: a.try_get("sha256")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
            let payload: String = row.try_get("payload")?;
            let target: String = row.try_get("target")?;
            records.push(OutboxRecord {
                seq: row.try_get("seq")?,
                idempotency_key: row.try_get("idempotency_key")?,
                target: Target::parse(&target).ok_or_else(|| {
                    sqlx::Error::Decode(format!("unknown target {target}").into())
                })?,
                kind: row.try_get("kind")?,
                entity: row.try_get("entity")?,
                event: serde_json::from_str(&payload)
                    .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                created_at_ms: row.try_get("created_at_ms")?,
                clock_suspect: row.try_get("clock_suspect")?,
                state: RecordState::parse(&row.try_get::<String, _>("state")?),
                attempts: row.try_get::<i64, _>("attempts")? as u32,
                next_attempt_at_ms: row.try_get("next_attempt_at_ms")?,
                last_error: row.try_get("last_error")?,
                delivered_at_ms: row.try_get("delivered_at_ms")?,
                attachments,
                record_id,
            });
        }
        Ok(records)
    }
}

/// The single writer: takes every enqueue waiting and commits them in one transaction.
async fn group_commit(pool: SqlitePool, mut inserts: mpsc::Receiver<Insert>) {
    let mut batch = Vec::new();
    while inserts.recv_many(&mut batch, 512).await > 0 {
        match insert_batch(&pool, &batch).await {
            Ok(ids) => {
                for (insert, id) in batch.drain(..).zip(ids) {
                    let _ = insert.done.send(Ok(id));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, records = batch.len(), "outbox commit failed");
                let message = e.to_string();
                for insert in batch.drain(..) {
                    let _ = insert
                        .done
                        .send(Err(OutboxError::Database(sqlx::Error::Protocol(
                            message.clone(),
                        ))));
                }
            }
        }
    }
}

/// Insert a batch; returns each insert's record id (an existing one for a repeated key).
async fn insert_batch(pool: &SqlitePool, batch: &[Insert]) -> Result<Vec<String>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let mut ids = Vec::with_capacity(batch.len());
    for i in batch {
        let payload = serde_json::to_string(&i.event).expect("events serialize");
        let inserted = sqlx::query(
            "INSERT INTO outbox (record_id, idempotency_key, target, kind, entity, payload, created_at_ms, clock_suspect)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .bind(&i.record_id)
        .bind(&i.idempotency_key)
        .bind(i.target.as_str())
        .bind(i.event.kind())
        .bind(i.event.entity())
        .bind(payload)
        .bind(i.created_at_ms)
        .bind(i.clock_suspect)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            let existing: String =
                sqlx::query_scalar("SELECT record_id FROM outbox WHERE idempotency_key = ?1")
                    .bind(&i.idempotency_key)
                    .fetch_one(&mut *tx)
                    .await?;
            ids.push(existing);
            continue;
        }
        for a in &i.attachments {
            let stored = a
                .path
                .strip_prefix(
                    a.path
                        .parent()
                        .and_then(Path::parent)
                        .unwrap_or(Path::new("")),
                )
                .unwrap_or(&a.path);
            sqlx::query(
                "INSERT INTO attachment (record_id, file_name, content_type, stored_path, size, sha256)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .bind(&i.record_id)
            .bind(&a.file_name)
            .bind(&a.content_type)
            .bind(stored.to_string_lossy().to_string())
            .bind(a.size as i64)
            .bind(&a.sha256)
            .execute(&mut *tx)
            .await?;
        }
        ids.push(i.record_id.clone());
    }
    tx.commit().await?;
    Ok(ids)
}

#[cfg(test)]
mod tests;

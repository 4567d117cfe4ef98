//! `classbox outbox ...` for IT staff and scripts, the outbox part of the classroom
//! daemon, and `classbox bench outbox`.
//!
//! config -> Outbox (state dir) -> SyncWorker (configured LMS) until shutdown.

use std::{io::BufRead, sync::Arc, time::Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{
    cli::{OutboxAction, OutboxBenchArgs},
    config::Config,
    lms::{self, Event, LessonLoad, Outbox, RecordState, SyncWorker, Target, Throttle},
};

/// The outbox lives in the classroom's state directory.
pub async fn open(config: &Config) -> anyhow::Result<Outbox> {
    let dir = crate::state::dir(config.classroom.state_dir.as_deref(), "classroom").join("outbox");
    Outbox::open(&dir)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the LMS outbox in {}: {e}", dir.display()))
}

/// Watches the lesson for the LMS sync, once a second: what it leaves of the uplink
/// (the worker yields to a live lesson) and whether the relay link is up (the worker
/// wakes when it comes back). The task ends at `shutdown`.
pub fn watch_lesson(
    stats: Arc<crate::stats::LessonStats>,
    shutdown: CancellationToken,
) -> (
    watch::Receiver<LessonLoad>,
    watch::Receiver<bool>,
    tokio::task::JoinHandle<()>,
) {
    let (load_tx, load) = watch::channel(LessonLoad::default());
    let (link_up_tx, link_up) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            let now = stats.latest();
            let up = matches!(now.link, crate::stats::LinkState::Connected { .. });
            link_up_tx.send_if_modified(|v| std::mem::replace(v, up) != up);
            // The uplink as the box's own QUIC sender sees it: window / RTT (our
            // latency-bounded controller keeps the window at rate x (RTT + 40 ms)).
            // While the box sends little this underestimates it, which only makes the
            // LMS sync more modest during a lesson.
            let uplink_kbps = match now.link {
                crate::stats::LinkState::Connected {
                    rtt_ms, cwnd_bytes, ..
                } if rtt_ms > 0.0 => Some(cwnd_bytes as f64 * 8.0 / (rtt_ms + 40.0)),
                _ => None,
            };
            let load = LessonLoad {
                live: up && now.video_kbps > 0.0,
                uplink_kbps,
            };
            load_tx.send_if_modified(|l| std::mem::replace(l, load) != load);
        }
    });
    (load, link_up, task)
}

/// The worker for the configured LMS, or None when `lms.target = "none"`.
pub fn worker(
    config: &Config,
    outbox: &Outbox,
    load: watch::Receiver<LessonLoad>,
) -> anyhow::Result<Option<SyncWorker>> {
    let Some(client) = lms::client_from_config(config)? else {
        return Ok(None);
    };
    Ok(Some(SyncWorker::new(
        outbox.clone(),
        client,
        lms::worker_settings(config),
        load,
    )))
}

pub async fn run(
    config: &Config,
    action: &OutboxAction,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let outbox = open(config).await?;
    match action {
        OutboxAction::Status => {
            let c = outbox.counts().await?;
            println!(
                "pending {}  delivered {}  dead-lettered {}",
                c.pending, c.delivered, c.dead
            );
            match c.last_delivered_at_ms {
                Some(ms) => println!("last delivery {}", lms::xapi::rfc3339(ms)),
                None => println!("nothing delivered yet"),
            }
        }
        OutboxAction::List { state, limit, json } => {
            let state = match state.as_str() {
                "pending" => RecordState::Pending,
                "delivered" => RecordState::Delivered,
                "dead" => RecordState::Dead,
                other => anyhow::bail!("--state {other:?}: use pending, delivered or dead"),
            };
            let records = outbox.list(state, *limit).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&records)?);
            } else {
                for r in records {
                    println!(
                        "{}  {}  {:<10} {:<40} attempts {}  {}",
                        r.record_id,
                        lms::xapi::rfc3339(r.created_at_ms),
                        r.kind,
                        r.entity,
                        r.attempts,
                        r.last_error.unwrap_or_default()
                    );
                }
            }
        }
        OutboxAction::Retry { record_id } => {
            outbox.retry(record_id).await?;
            println!("{record_id} is queued again");
        }
        OutboxAction::Enqueue { file } => {
            let target = Target::parse(&config.lms.target).ok_or_else(|| {
                anyhow::anyhow!("set lms.target (xapi, canvas or moodle) before queueing")
            })?;
            let input: Box<dyn BufRead> = if file.as_os_str() == "-" {
                Box::new(std::io::stdin().lock())
            } else {
                Box::new(std::io::BufReader::new(std::fs::File::open(file).map_err(
                    |e| anyhow::anyhow!("cannot read {}: {e}", file.display()),
                )?))
            };
            // Every line is checked before any is queued: a bad file queues nothing.
            let mut events = Vec::new();
            for (n, line) in input.lines().enumerate() {
                let line = line?;
                if line.trim().is_empty() {
                    continue;
                }
                let event =
                    Event::from_json(&line).map_err(|e| anyhow::anyhow!("line {}: {e}", n + 1))?;
                target
                    .accepts(&event)
                    .map_err(|e| anyhow::anyhow!("line {}: {e}", n + 1))?;
                events.push(event);
            }
            let queued = events.len();
            for event in events {
                outbox.enqueue(target, event, None, Vec::new()).await?;
            }
            println!("{queued} events queued for {}", target.as_str());
        }
        OutboxAction::Sync => {
            let (_load_tx, load) = watch::channel(LessonLoad::default());
            let worker = worker(config, &outbox, load)?.ok_or_else(|| {
                anyhow::anyhow!("lms.target is \"none\": there is nowhere to sync to")
            })?;
            worker.run(shutdown).await?;
        }
    }
    Ok(())
}

/// `classbox bench outbox`: durable enqueues per second; drain rate to an LRS beside
/// the rate the LRS takes statements sent to it directly, one at a time.
pub async fn bench(args: &OutboxBenchArgs) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("classbox-outbox-bench-")
        .tempdir()?;
    let outbox = Outbox::open(dir.path()).await?;
    let event = |i: usize| Event::Attendance {
        lesson: "bench".into(),
        student: lms::Student {
            id: format!("s{i}"),
            name: None,
        },
        status: lms::AttendanceStatus::Present,
        session_id: None,
    };

    // One at a time: each enqueue waits for its own commit (fsync).
    let serial = args.records.min(500);
    let started = Instant::now();
    for i in 0..serial {
        outbox
            .enqueue(Target::Xapi, event(i), None, Vec::new())
            .await?;
    }
    let serial_rate = serial as f64 / started.elapsed().as_secs_f64();

    // Many in flight, as from many page requests: they share commits.
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency.max(1) {
        let (outbox, next) = (outbox.clone(), next.clone());
        let total = args.records;
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, lms::OutboxError>(());
                }
                outbox
                    .enqueue(Target::Xapi, event(serial + i), None, Vec::new())
                    .await?;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let concurrent_rate = args.records as f64 / started.elapsed().as_secs_f64();
    println!("| measurement | records | rate |");
    println!("|---|---|---|");
    println!("| durable enqueue, one at a time | {serial} | {serial_rate:.0} /s |");
    println!(
        "| durable enqueue, {} in flight (group commit) | {} | {concurrent_rate:.0} /s |",
        args.concurrency, args.records
    );

    let Some(lrs) = &args.lrs else {
        println!("\n(no --lrs given: drain not measured)");
        return Ok(());
    };
    let mut config = Config::default();
    config.lms.target = "xapi".into();
    config.lms.url = Some(lrs.clone());
    config.lms.username = "bench".into();
    config.lms.secret = Some("bench".into());
    config.classroom.id = "bench".into();
    let Some(lms::LmsClient::Xapi(client)) = lms::client_from_config(&config)? else {
        unreachable!("xapi configured above");
    };

    // The LRS alone: statements PUT one at a time, no outbox. Measured before and
    // after the drain (an in-memory LRS slows as it fills), averaged.
    let records = outbox.due(i64::MAX, args.drain as u32).await?;
    let direct = (records.len() / 2).max(1);
    let put_directly = |records: &[lms::OutboxRecord]| {
        let client = &client;
        let records = records.to_vec();
        async move {
            let started = Instant::now();
            for r in &records {
                client
                    .deliver(r, &Throttle::unlimited())
                    .await
                    .map_err(|e| anyhow::anyhow!("the LRS refused a statement: {e}"))?;
            }
            Ok::<_, anyhow::Error>(records.len() as f64 / started.elapsed().as_secs_f64())
        }
    };
    let before = put_directly(&records[..direct]).await?;
    // Through the outbox and worker: the rest of the queue, drained.
    let drain_dir = tempfile::Builder::new()
        .prefix("classbox-outbox-drain-")
        .tempdir()?;
    let drain_box = Outbox::open(drain_dir.path()).await?;
    let drain = args.drain.max(1);
    for i in 0..drain {
        drain_box
            .enqueue(Target::Xapi, event(1_000_000 + i), None, Vec::new())
            .await?;
    }
    let (_load_tx, load) = watch::channel(LessonLoad::default());
    let Some(drain_client) = lms::client_from_config(&config)? else {
        unreachable!("xapi configured above");
    };
    let worker = SyncWorker::new(
        drain_box.clone(),
        drain_client,
        lms::worker_settings(&config),
        load,
    );
    let stop = CancellationToken::new();
    let running = tokio::spawn(worker.run(stop.clone()));
    let started = Instant::now();
    while drain_box.counts().await?.delivered < drain as i64 {
        if running.is_finished() {
            anyhow::bail!("the sync worker stopped early");
        }
        if started.elapsed() > std::time::Duration::from_secs(600) {
            anyhow::bail!(
                "drain did not finish in 10 minutes: {:?}",
                drain_box.counts().await?
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let drain_rate = drain as f64 / started.elapsed().as_secs_f64();
    stop.cancel();
    let _ = running.await;
    let after = put_directly(&records[direct..]).await?;
    let direct_rate = (before + after) / 2.0;
    println!(
        "| the LRS alone (PUT one at a time; {before:.0} /s before the drain, {after:.0} /s after) | {} | {direct_rate:.0} /s |",
        records.len()
    );
    println!("| drain through outbox + worker | {drain} | {drain_rate:.0} /s |");
    println!(
        "\nDrain / LRS alone: {:.0}%",
        drain_rate / direct_rate * 100.0
    );
    Ok(())
}

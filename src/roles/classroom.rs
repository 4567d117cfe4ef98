//! Classroom: relay -> subscriber (moq-lite, QUIC) -> Frame -> decode (gst) -> display
//! and speakers; the web page shows how it goes.

use std::{net::SocketAddr, sync::Arc};

use tokio::{sync::mpsc, task::JoinHandle};
use tokio_util::sync::CancellationToken;

mod lesson;

use self::lesson::{next_error, play_lesson, start_display};
use crate::{
    config::Config,
    frame::VideoCodec,
    media::{
        self,
        display::{Display, Output},
        probe::Profile,
    },
    stats::{LessonStats, ReportState},
    transport::{
        TEACHER_BROADCAST, catalog::Catalog, link::Link, report::ReportPublisher, subscribe,
    },
    web::{WebServer, WebState},
};

/// Run the classroom until `shutdown`. `web`: a bound page server to run alongside.
pub async fn run(
    config: &Config,
    stats: Arc<LessonStats>,
    web: Option<WebServer>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    media::init()?;
    let profile = media::probe::choose(&config.media.profile)?;
    // Not set up yet (a fresh box: no relay in the config): the page serves the set-up
    // wizard and the screen shows where to find it; nothing is dialled until then.
    let settings = match super::link_settings(config) {
        Ok(settings) => {
            super::check_token_role(&settings, crate::auth::Role::Box)?;
            Some(settings)
        }
        Err(_) if config.link.relay.is_none() && web.is_some() => {
            tracing::warn!("no relay in the config: waiting for the set-up page");
            None
        }
        Err(e) => return Err(e.into()),
    };
    let link = settings.map(Link::new).transpose()?;
    let output = Output::detect(config.classroom.display);
    tracing::info!(profile = %profile.name, reason = %profile.reason, ?output, "classroom media profile");

    let origin = super::spawn_origin();
    let mut tasks = vec![tokio::spawn({
        let stats = stats.clone();
        let shutdown = shutdown.clone();
        async move { stats.run_sampler(shutdown).await }
    })];
    // The lesson re-served to the LAN (the page's Watch), when there is a page.
    let lan = web.as_ref().map(|w| w.state().watch.clone());
    // The page's address, for the slate on the classroom display. Found again on each
    // slate tick: the box may start before DHCP gives it an address, or move networks.
    let page_addr = web.as_ref().and_then(|w| w.local_addr().ok());
    let mdns_host = (!config.classroom.mdns_name.is_empty())
        .then(|| format!("{}.local", config.classroom.mdns_name));
    let page_url = || page_addr.map(|a| page_url(a, mdns_host.as_deref()));
    // On the LAN (not loopback only), the box announces itself as <name>.local.
    let _mdns = match page_addr {
        Some(addr) if !addr.ip().is_loopback() && !config.classroom.mdns_name.is_empty() => {
            crate::web::mdns::Announcer::start(
                &config.classroom.mdns_name,
                &config.classroom.name,
                addr.port(),
            )
            .map_err(|e| tracing::warn!(error = %e, "no mDNS announcement"))
            .ok()
        }
        _ => None,
    };
    // The page's outbox and sync-status handles, shared with the worker below.
    let shared = web.as_ref().and_then(|w| {
        w.state()
            .outbox
            .clone()
            .map(|o| (o, w.state().sync.clone()))
    });
    if let Some(web) = web {
        let shutdown = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = web.run(shutdown).await {
                tracing::error!(error = %e, "web page stopped");
            }
        }));
    }
    let configured = link.is_some();
    let link_task = link
        .map(|link| tokio::spawn(link.run(origin.clone(), stats.clone(), false, shutdown.clone())));
    // The classroom seen and heard by the teacher. With a live microphone and the
    // lesson on the speakers, the speakers' echo is cancelled from the microphone.
    let return_sources = super::return_feed::sources(config);
    let echo_wanted =
        return_sources == Some(false) && output == Output::Window && media::probe::has("webrtcdsp");
    let (echo_tx, echo_rx) = tokio::sync::watch::channel(false);
    if let Some(test_sources) = return_sources {
        tasks.push(tokio::spawn(super::return_feed::run(
            super::return_feed::ReturnFeed {
                config: config.clone(),
                profile: profile.clone(),
                origin: origin.clone(),
                test_sources,
                echo: echo_rx,
                stats: stats.feed("return"),
                classroom: stats.clone(),
            },
            shutdown.clone(),
        )));
    } else if output == Output::Window && !media::probe::has("webrtcdsp") {
        tracing::info!(
            "webrtcdsp is not installed: no echo cancellation (gstreamer1.0-plugins-bad)"
        );
    }
    // Receiver reports back to the teacher's bitrate controller, four a second, with
    // the codecs this box decodes best (the profile may change: see below).
    let mut reports = ReportPublisher::new(&origin, &config.box_id())?;
    let (profile_tx, profile_rx) = tokio::sync::watch::channel(profile.clone());
    tasks.push(tokio::spawn({
        let (stats, shutdown, lan) = (stats.clone(), shutdown.clone(), lan.clone());
        let h265 = config.media.h265;
        async move {
            let mut state = ReportState::default();
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
            // A link that just fell is news now, not at the next report: each report
            // of waiting is a quarter second more of the old rate sent into the new
            // link (see `abr::collapse`). One such report a second at most.
            let mut watch = tokio::time::interval(std::time::Duration::from_millis(50));
            let mut told_fall: Option<std::time::Instant> = None;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => {}
                    _ = watch.tick() => {
                        let recent = told_fall.is_some_and(|t| t.elapsed().as_secs() < 1);
                        if recent || stats.link_fell().is_none() {
                            continue;
                        }
                        told_fall = Some(std::time::Instant::now());
                    }
                }
                let mut report = stats.receiver_report(&mut state);
                let need_h264 = lan.as_ref().is_some_and(|l| l.wants_h264());
                report.codecs = profile_rx.borrow().video_codecs(h265, need_h264);
                if let Err(e) = reports.send(&report) {
                    tracing::debug!(error = %e, "receiver report not sent");
                }
            }
        }
    }));

    // The LMS outbox and its sync worker, which yields to the lesson. With a page, they
    // share the page's handles (it shows the queue and the worker's state).
    let (outbox, sync_status) = match shared {
        Some(shared) => shared,
        None => (super::outbox::open(config).await?, Default::default()),
    };
    let (load, link_up, watching) = super::outbox::watch_lesson(stats.clone(), shutdown.clone());
    tasks.push(watching);
    if let Some(worker) = super::outbox::worker(config, &outbox, load)? {
        let shutdown = shutdown.clone();
        let worker = worker.wake_on_link(link_up).with_status(sync_status);
        tasks.push(tokio::spawn(async move {
            if let Err(e) = worker.run(shutdown).await {
                tracing::error!(error = %e, "LMS sync stopped");
            }
        }));
    }
    let lms_target = crate::lms::Target::parse(&config.lms.target);
    let record_lesson = |event: crate::lms::LessonEvent| {
        let (outbox, room) = (outbox.clone(), config.link.room.clone());
        async move {
            let Some(target) = lms_target else { return };
            let event = crate::lms::Event::Lesson {
                lesson: room,
                event,
                teacher: None,
            };
            if target.accepts(&event).is_ok()
                && let Err(e) = outbox.enqueue(target, event, None, Vec::new()).await
            {
                tracing::warn!(error = %e, "lesson event not queued for the LMS");
            }
        }
    };

    // Watch for the teacher's broadcast; each time it appears (first start, teacher
    // reconnect, relay restart) subscribe afresh. The display outlives lessons.
    let consumer = origin.consume();
    let mut announced = consumer.announced();
    let mut display: Option<(Catalog, Arc<Display>)> = None;
    let mut display_errors: Option<mpsc::UnboundedReceiver<media::MediaError>> = None;
    let mut lesson: Option<JoinHandle<()>> = None;
    let mut playing: Option<moq_net::broadcast::Consumer> = None;
    // May change at run time: a failing hardware pipeline falls back to the built-in
    // software one, and the lesson goes on.
    let mut profile = profile;
    let mut pipelines_dir = config.media.pipelines_dir.clone();
    stats.set_media(crate::stats::MediaState {
        profile: profile.name.clone(),
        output: match output {
            Output::Window => "screen".into(),
            Output::Headless => "nowhere (headless)".into(),
        },
        camera: if return_sources.is_some() {
            "starting".into()
        } else {
            "off".into()
        },
        ..Default::default()
    });
    // While no lesson runs, the screen says who this is, where its page is, how the link is.
    let slate_text = || {
        slate_text(
            &config.classroom.name,
            page_url().as_deref(),
            configured.then(|| stats.latest().link),
        )
    };
    let mut slate = start_slate(&profile, output, &slate_text(), &stats).await;
    let mut slate_tick = tokio::time::interval(std::time::Duration::from_secs(1));
    // Serving: the page is up and the relay is being dialled.
    crate::systemd::ready(&match (&page_url(), configured) {
        (Some(url), true) => format!("page on {url}; dialling the relay"),
        (Some(url), false) => format!("not set up yet: open {url} to set it up"),
        (None, _) => "dialling the relay".to_string(),
    });
    let mut watchdog = crate::systemd::Watchdog::new();
    // A lesson whose video changes codec (the teacher follows what the classrooms
    // decode best) stops and says so here; it goes on with a display for the new codec.
    let (codec_tx, mut codec_rx) = mpsc::unbounded_channel();
    let spawn_lesson = |broadcast, display| {
        tokio::spawn(play_lesson(
            broadcast,
            display,
            config.latency_budget(),
            stats.clone(),
            lan.clone(),
            codec_tx.clone(),
            config.box_id(),
        ))
    };
    loop {
        enum Step {
            Update(moq_net::announce::Update),
            DisplayFailed(media::MediaError),
            Codec(VideoCodec),
            Slate,
        }
        let step = tokio::select! {
            _ = shutdown.cancelled() => break,
            update = announced.next() => match update {
                Some(update) => Step::Update(update),
                None => break,
            },
            Some(e) = next_error(&mut display_errors) => Step::DisplayFailed(e),
            Some(codec) = codec_rx.recv() => Step::Codec(codec),
            _ = slate_tick.tick() => Step::Slate,
            // The main loop is alive: tell systemd's watchdog.
            _ = watchdog.tick() => {
                watchdog.ping();
                continue;
            }
        };
        let update = match step {
            Step::Update(update) => update,
            Step::Slate => {
                if let Some(s) = &slate {
                    let text = slate_text();
                    s.set_text(&text);
                    stats.set_slate(Some(text));
                }
                continue;
            }
            Step::Codec(codec) => {
                let (Some(broadcast), Some((mut catalog, _))) = (playing.clone(), display.take())
                else {
                    continue;
                };
                if let Some(old) = lesson.take() {
                    old.abort();
                }
                display_errors = None;
                if let Some(video) = catalog.video.as_mut() {
                    video.codec = codec.as_str().to_string();
                }
                tracing::info!(%codec, "the lesson's video codec changed");
                match start_display(
                    &profile,
                    pipelines_dir.clone(),
                    &catalog,
                    output,
                    echo_wanted,
                    &stats,
                )
                .await
                {
                    Ok((d, errors)) => {
                        let d = Arc::new(d);
                        display = Some((catalog, d.clone()));
                        display_errors = Some(errors);
                        lesson = Some(spawn_lesson(broadcast, d));
                    }
                    Err(e) => {
                        // The teacher sends what this box said it decodes, so only a
                        // foreign sender gets here; the page says why nothing shows.
                        tracing::error!(error = %e, %codec, "cannot show the lesson");
                        stats.set_media(crate::stats::MediaState {
                            notice: Some(format!("The lesson cannot be shown: {e}")),
                            ..stats.media()
                        });
                    }
                }
                continue;
            }
            Step::DisplayFailed(e) => {
                let Some((catalog, _)) = display.take() else {
                    continue;
                };
                display_errors = None;
                if let Some(old) = lesson.take() {
                    old.abort();
                }
                let notice = if profile.is_software() && pipelines_dir.is_none() {
                    format!("The picture pipeline failed ({e}); it was restarted.")
                } else {
                    let was = profile.name.clone();
                    profile = media::probe::choose("software")?;
                    profile_tx.send_replace(profile.clone());
                    pipelines_dir = None;
                    format!(
                        "The {was} video pipeline failed ({e}); the lesson goes on with the built-in software one."
                    )
                };
                tracing::warn!(%notice, "display pipeline failed");
                stats.set_media(crate::stats::MediaState {
                    profile: profile.name.clone(),
                    notice: Some(notice),
                    ..stats.media()
                });
                let Some(broadcast) = playing.clone() else {
                    continue;
                };
                let (d, errors) = start_display(
                    &profile,
                    pipelines_dir.clone(),
                    &catalog,
                    output,
                    echo_wanted,
                    &stats,
                )
                .await?;
                let d = Arc::new(d);
                display = Some((catalog, d.clone()));
                display_errors = Some(errors);
                lesson = Some(spawn_lesson(broadcast, d));
                continue;
            }
        };
        if update.prefix.as_str() != TEACHER_BROADCAST {
            continue;
        }
        if let Some(old) = lesson.take() {
            old.abort();
        }
        if !update.kind.is_active() {
            tracing::info!("teacher went offline; waiting");
            playing = None;
            stats.set_teacher(None);
            // Free the screen for the slate.
            display = None;
            display_errors = None;
            if slate.is_none() {
                slate = start_slate(&profile, output, &slate_text(), &stats).await;
            }
            record_lesson(crate::lms::LessonEvent::Left).await;
            continue;
        }
        let broadcast = match consumer.request_broadcast(TEACHER_BROADCAST).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "cannot open the teacher's broadcast");
                continue;
            }
        };
        let catalog = match subscribe::read_catalog(&broadcast).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the lesson catalog");
                continue;
            }
        };
        if slate.take().is_some() {
            stats.set_slate(None);
        }
        stats.set_teacher(catalog.teacher.clone());
        let current = match display.take() {
            Some((c, d)) if c == catalog => d,
            _ => {
                let (d, errors) = start_display(
                    &profile,
                    pipelines_dir.clone(),
                    &catalog,
                    output,
                    echo_wanted,
                    &stats,
                )
                .await?;
                display_errors = Some(errors);
                Arc::new(d)
            }
        };
        display = Some((catalog, current.clone()));
        echo_tx.send_if_modified(|on| std::mem::replace(on, echo_wanted) != echo_wanted);
        playing = Some(broadcast.clone());
        tracing::info!("lesson started");
        record_lesson(crate::lms::LessonEvent::Joined).await;
        lesson = Some(spawn_lesson(broadcast, current));
    }

    crate::systemd::stopping();
    if let Some(l) = lesson.take() {
        l.abort();
    }
    drop(display);
    shutdown.cancel();
    for t in tasks {
        let _ = t.await;
    }
    if let Some(link_task) = link_task {
        link_task.await??;
    }
    Ok(())
}

/// The page's address as people on the LAN type it: the listening address, or, when
/// it listens on every interface, this machine's address on its default route (found
/// by a UDP connect, which sends nothing); with no route yet (no DHCP lease, cable
/// out), its mDNS name when it has one.
fn page_url(addr: SocketAddr, mdns_host: Option<&str>) -> String {
    let ip = if addr.ip().is_unspecified() {
        std::net::UdpSocket::bind("0.0.0.0:0")
            .and_then(|s| s.connect("192.0.2.1:9").and_then(|()| s.local_addr()))
            .map(|a| a.ip())
            .unwrap_or(addr.ip())
    } else {
        addr.ip()
    };
    let host = match (ip, mdns_host) {
        (ip, Some(name)) if ip.is_unspecified() => name.to_string(),
        (std::net::IpAddr::V6(v6), _) => format!("[{v6}]"),
        (v4, _) => v4.to_string(),
    };
    match addr.port() {
        80 => format!("http://{host}/"),
        port => format!("http://{host}:{port}/"),
    }
}

/// `link`: `None` while the box is not set up (no relay to dial).
fn slate_text(
    classroom: &str,
    page: Option<&str>,
    link: Option<crate::stats::LinkState>,
) -> String {
    use crate::stats::LinkState::*;
    let Some(link) = link else {
        let page = page.map_or_else(String::new, |p| format!(" at {p}"));
        return format!("{classroom}\nNot set up yet: open this box's page{page} to set it up.");
    };
    let state = match link {
        Connected { .. } => "Connected. Waiting for the teacher to start the lesson.",
        Connecting | Idle => "Connecting to the lesson relay…",
        Refused(_) => "The relay refused this box: its enrolment token needs renewing.",
        _ => "The internet link is down; the box reconnects by itself.",
    };
    let page = page
        .map(|p| format!("\nThe box's page: {p}"))
        .unwrap_or_default();
    format!("{classroom}{page}\n{state}")
}

/// Start the slate; a failure is logged (the lesson matters more than the slate).
async fn start_slate(
    profile: &Profile,
    output: Output,
    text: &str,
    stats: &LessonStats,
) -> Option<media::slate::Slate> {
    match media::slate::Slate::start(profile, output, text).await {
        Ok(s) => {
            stats.set_slate(Some(text.to_string()));
            Some(s)
        }
        Err(e) => {
            tracing::warn!(error = %e, "the display's slate cannot start");
            None
        }
    }
}

/// Bind the page server for `config` (the caller prints or logs the URL). The set-up
/// wizard writes `config_path`.
pub async fn bind_web(
    config: &Config,
    config_path: std::path::PathBuf,
    stats: Arc<LessonStats>,
    profile: &str,
) -> anyhow::Result<WebServer> {
    let addr: SocketAddr = config.classroom.web_listen.parse()?;
    let state_dir = crate::state::dir(config.classroom.state_dir.as_deref(), "classroom");
    let state = WebState::new(config, config_path, stats, profile, &state_dir).await?;
    WebServer::bind(addr, state)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (classroom.web_listen): {e}"))
}

//! `classbox`: parse the command line, start logging, run one role, map the result
//! to an exit code (0 ok, 1 failed, 2 bad configuration).

use std::{process::ExitCode, sync::Arc};

use clap::Parser;

use classbox::{
    cli::{Cli, Command},
    config::{Config, ConfigError, env_overrides},
    roles, shutdown,
    stats::LessonStats,
    telemetry,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.verbose);
    let config = load_config(&cli);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime starts");
    let result = runtime.block_on(run(cli, config));
    // Streams and GStreamer threads may linger briefly; do not wait for them.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(code) => code,
        Err(e) => {
            let code = if e.downcast_ref::<ConfigError>().is_some() {
                2
            } else {
                1
            };
            // Under systemd the journal gets it with fields; a person gets one line.
            if std::env::var_os("JOURNAL_STREAM").is_some() {
                tracing::error!("{e:#}");
            } else {
                eprintln!("classbox: {e:#}");
            }
            ExitCode::from(code)
        }
    }
}

/// Bind the page; after a restart the old listener may take a moment to close.
async fn bind_web_retrying(
    config: &Config,
    config_path: &std::path::Path,
    stats: &Arc<LessonStats>,
    profile: &str,
) -> anyhow::Result<classbox::web::WebServer> {
    let mut attempt = 0;
    loop {
        match roles::classroom::bind_web(config, config_path.to_path_buf(), stats.clone(), profile)
            .await
        {
            Ok(web) => return Ok(web),
            Err(e) if attempt < 20 => {
                attempt += 1;
                tracing::debug!(error = %e, "page address busy; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

fn load_config(cli: &Cli) -> Result<Config, ConfigError> {
    let mut overrides = env_overrides(std::env::vars());
    overrides.extend(cli.overrides()?);
    Config::load(cli.config.as_deref(), &overrides)
}

async fn run(cli: Cli, config: Result<Config, ConfigError>) -> anyhow::Result<ExitCode> {
    if let Command::Doctor(args) = &cli.command {
        let healthy = roles::doctor::run(config, args.json).await?;
        return Ok(if healthy {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let config = config?;
    if cli.check {
        match &cli.command {
            // A box without a relay is valid: it waits for its set-up page.
            Command::Classroom(_) if config.link.relay.is_none() => {
                println!(
                    "configuration is valid; no relay set: the box will wait for its set-up page"
                );
                return Ok(ExitCode::SUCCESS);
            }
            Command::Classroom(_) | Command::Teacher(_) => {
                roles::link_settings(&config)?;
            }
            _ => {}
        }
        println!("configuration is valid");
        return Ok(ExitCode::SUCCESS);
    }
    let shutdown = shutdown::on_signals();
    match &cli.command {
        Command::Classroom(_) => {
            let stats = Arc::new(LessonStats::default());
            classbox::media::init()?;
            let profile = classbox::media::probe::choose(&config.media.profile)?;
            let config_path = cli
                .config
                .clone()
                .unwrap_or_else(|| classbox::config::DEFAULT_PATH.into());
            let mut config = config;
            // When the set-up page saves new settings, start over with them (the page
            // comes back on the same address).
            loop {
                let web = bind_web_retrying(&config, &config_path, &stats, &profile.name).await?;
                tracing::info!("web page on http://{}/", web.local_addr()?);
                let saved = web.state().saved.clone();
                let session = shutdown.child_token();
                let restart = {
                    let run =
                        roles::classroom::run(&config, stats.clone(), Some(web), session.clone());
                    tokio::pin!(run);
                    tokio::select! {
                        result = &mut run => {
                            result?;
                            false
                        }
                        () = saved.notified() => {
                            tracing::info!("the set-up page saved new settings: starting over with them");
                            session.cancel();
                            run.await?;
                            true
                        }
                    }
                };
                if !restart || shutdown.is_cancelled() {
                    break;
                }
                config = load_config(&cli)?;
            }
        }
        Command::Teacher(args) => {
            if let Some(secs) = args.duration {
                let stop = shutdown.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
                    stop.cancel();
                });
            }
            roles::teacher::run(&config, Arc::new(LessonStats::default()), true, shutdown).await?;
        }
        Command::Relay(args) => match &args.action {
            Some(action) => roles::relay::admin(&config, action)?,
            None => roles::relay::run(&config, shutdown).await?,
        },
        Command::Demo(args) => roles::demo::run(args, shutdown).await?,
        Command::Bench(args) => match &args.mode {
            Some(classbox::cli::BenchMode::Outbox(outbox)) => roles::outbox::bench(outbox).await?,
            None => roles::bench::run(args, shutdown).await?,
        },
        Command::Outbox(args) => roles::outbox::run(&config, &args.action, shutdown).await?,
        Command::Doctor(_) => unreachable!("handled above"),
    }
    Ok(ExitCode::SUCCESS)
}

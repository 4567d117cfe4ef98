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
            let web =
                roles::classroom::bind_web(&config, config_path, stats.clone(), &profile.name)
                    .await?;
            tracing::info!("web page on http://{}/", web.local_addr()?);
            roles::classroom::run(&config, stats, Some(web), shutdown).await?;
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

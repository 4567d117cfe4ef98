//! Doctor: GStreamer version, the elements found, the profile and why, the config,
//! and whether the relay answers.

use std::time::Duration;

use serde::Serialize;

use crate::{config::Config, media, transport::link::Link};

#[derive(Serialize)]
struct Report {
    version: &'static str,
    media: media::probe::ProbeReport,
    config: ConfigCheck,
    relay: RelayCheck,
}

#[derive(Serialize)]
struct ConfigCheck {
    ok: bool,
    message: String,
}

#[derive(Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum RelayCheck {
    NotConfigured,
    Reachable { address: String, rtt_ms: f64 },
    Unreachable { address: String, error: String },
}

pub async fn run(
    config: Result<Config, crate::config::ConfigError>,
    json: bool,
) -> anyhow::Result<bool> {
    media::init()?;
    let (config_check, config) = match config {
        Ok(c) => (
            ConfigCheck {
                ok: true,
                message: "configuration is valid".into(),
            },
            c,
        ),
        Err(e) => (
            ConfigCheck {
                ok: false,
                message: e.to_string(),
            },
            Config::default(),
        ),
    };
    let media = media::probe::report(&config.media.profile);
    let relay = check_relay(&config).await;
    let healthy = config_check.ok
        && media.profile.is_ok()
        && !matches!(relay, RelayCheck::Unreachable { .. });
    let report = Report {
        version: crate::cli::VERSION_LONG,
        media,
        config: config_check,
        relay,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_human(&report);
    }
    Ok(healthy)
}

async fn check_relay(config: &Config) -> RelayCheck {
    let Ok(settings) = super::link_settings(config) else {
        return RelayCheck::NotConfigured;
    };
    let address = settings.relay.clone();
    let link = match Link::new(settings) {
        Ok(l) => l,
        Err(e) => {
            return RelayCheck::Unreachable {
                address,
                error: e.to_string(),
            };
        }
    };
    let origin = super::spawn_origin();
    match tokio::time::timeout(Duration::from_secs(8), link.probe(&origin)).await {
        Ok(Ok(connected)) => {
            let rtt_ms = connected.conn.rtt().as_secs_f64() * 1000.0;
            connected.conn.close(0u32.into(), b"doctor done");
            RelayCheck::Reachable { address, rtt_ms }
        }
        Ok(Err(e)) => RelayCheck::Unreachable {
            address,
            error: e.to_string(),
        },
        Err(_) => RelayCheck::Unreachable {
            address,
            error: "no answer within 8 s".into(),
        },
    }
}

fn print_human(r: &Report) {
    println!("classbox {}", r.version);
    println!("GStreamer {}", r.media.gstreamer_version);
    let mut group = "";
    for e in &r.media.elements {
        if e.group != group {
            group = e.group;
            print!("\n  {group:<14}");
        }
        print!(" {}{}", if e.present { "+" } else { "-" }, e.element);
    }
    println!("\n  (+ found, - absent)");
    match &r.media.profile {
        Ok(p) => println!("pipeline profile: {} ({})", p.name, p.reason),
        Err(e) => println!("pipeline profile: NONE: {e}"),
    }
    println!(
        "config: {}",
        if r.config.ok {
            "ok".to_string()
        } else {
            format!("ERROR: {}", r.config.message)
        }
    );
    match &r.relay {
        RelayCheck::NotConfigured => println!("relay: not configured (link.relay)"),
        RelayCheck::Reachable { address, rtt_ms } => {
            println!("relay: {address} reachable, round trip {rtt_ms:.0} ms")
        }
        RelayCheck::Unreachable { address, error } => {
            println!("relay: {address} UNREACHABLE: {error}")
        }
    }
}

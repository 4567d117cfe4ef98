//! systemd's notify protocol, without a library: `READY=1` once the daemon serves,
//! `WATCHDOG=1` from its main loop (a hung loop stops pinging and systemd restarts it),
//! `STOPPING=1` on the way out, and `STATUS=` lines `systemctl status` shows.
//!
//! Everything is a no-op outside systemd (`NOTIFY_SOCKET` unset).

use std::{os::unix::net::UnixDatagram, time::Duration};

/// Send one notification (several `KEY=value` lines). Errors are logged, never fatal.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let result = UnixDatagram::unbound().and_then(|socket| {
        let path = path.to_string_lossy();
        if let Some(abstract_name) = path.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            let addr =
                std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes())?;
            socket.send_to_addr(state.as_bytes(), &addr)
        } else {
            socket.send_to(state.as_bytes(), path.as_ref())
        }
    });
    if let Err(e) = result {
        tracing::debug!(error = %e, "systemd notification not sent");
    }
}

pub fn ready(status: &str) {
    notify(&format!("READY=1\nSTATUS={status}"));
}

pub fn status(status: &str) {
    notify(&format!("STATUS={status}"));
}

pub fn stopping() {
    notify("STOPPING=1");
}

/// How often to ping the watchdog: half of `WatchdogSec`, when systemd asked for it
/// (and for this process: `WATCHDOG_PID`, when set, must be ours).
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// A ticker for the main loop: ticks at the watchdog interval (never when there is
/// no watchdog), and each tick's `ping()` tells systemd the loop is alive.
pub struct Watchdog {
    interval: Option<tokio::time::Interval>,
}

impl Watchdog {
    pub fn new() -> Self {
        Self {
            interval: watchdog_interval().map(tokio::time::interval),
        }
    }

    pub async fn tick(&mut self) {
        match &mut self.interval {
            Some(i) => {
                i.tick().await;
            }
            None => std::future::pending().await,
        }
    }

    pub fn ping(&self) {
        notify("WATCHDOG=1");
    }
}

impl Default for Watchdog {
    fn default() -> Self {
        Self::new()
    }
}

//! The box announces itself on the school LAN by multicast DNS: `<name>.local` (default
//! `classbox.local`) resolves to the box, and its page is advertised as an `_http._tcp`
//! service, so staff can type the name instead of an address. Pure Rust (mdns-sd): no
//! avahi needed. Two boxes on one LAN need different `classroom.mdns_name`s.

use mdns_sd::{ServiceDaemon, ServiceInfo};

/// A running announcement; dropping it withdraws it.
pub struct Announcer {
    daemon: ServiceDaemon,
}

impl Announcer {
    pub fn start(host: &str, classroom: &str, port: u16) -> Result<Self, String> {
        let daemon = ServiceDaemon::new().map_err(|e| format!("mDNS: {e}"))?;
        let info = ServiceInfo::new(
            "_http._tcp.local.",
            &format!("classbox {classroom}"),
            &format!("{host}.local."),
            "",
            port,
            &[("path", "/")][..],
        )
        .map_err(|e| format!("mDNS: {e}"))?
        .enable_addr_auto();
        daemon.register(info).map_err(|e| format!("mDNS: {e}"))?;
        tracing::info!(host = %format!("{host}.local"), port, "announced on the LAN by mDNS");
        Ok(Self { daemon })
    }
}

impl Drop for Announcer {
    fn drop(&mut self) {
        let _ = self.daemon.shutdown();
    }
}

//! The checks serde cannot express: each returns the offending key and why, for
//! [`ConfigError`](super::ConfigError) to name it.

use std::net::SocketAddr;

use super::{Config, parse_student};

impl Config {
    /// Checks serde cannot express. Returns the offending key and why.
    pub(super) fn validate(&self) -> Result<(), (&'static str, String)> {
        if let Some(relay) = &self.link.relay {
            parse_host_port(relay).map_err(|m| ("link.relay", m))?;
        }
        if let Some(fp) = &self.link.fingerprint {
            parse_fingerprint(fp).map_err(|m| ("link.fingerprint", m))?;
        }
        validate_room(&self.link.room).map_err(|m| ("link.room", m))?;
        if !self.classroom.id.is_empty() {
            validate_room(&self.classroom.id)
                .map_err(|m| ("classroom.id", m.replace("a room", "an id")))?;
        }
        if self.link.max_backoff_secs == 0 || self.link.max_backoff_secs > 600 {
            return Err((
                "link.max_backoff_secs",
                "must be between 1 and 600 seconds".into(),
            ));
        }
        self.classroom
            .web_listen
            .parse::<SocketAddr>()
            .map_err(|e| {
                (
                    "classroom.web_listen",
                    format!("not an address like 127.0.0.1:8080: {e}"),
                )
            })?;
        if !(50..=5000).contains(&self.classroom.latency_budget_ms) {
            return Err((
                "classroom.latency_budget_ms",
                "must be between 50 and 5000 ms".into(),
            ));
        }
        let t = &self.teacher;
        if !(16..=3840).contains(&t.width) || !t.width.is_multiple_of(2) {
            return Err((
                "teacher.width",
                "must be an even number of pixels from 16 to 3840".into(),
            ));
        }
        if !(16..=2160).contains(&t.height) || !t.height.is_multiple_of(2) {
            return Err((
                "teacher.height",
                "must be an even number of pixels from 16 to 2160".into(),
            ));
        }
        if !(1..=60).contains(&t.framerate) {
            return Err((
                "teacher.framerate",
                "must be from 1 to 60 frames per second".into(),
            ));
        }
        if !(50..=20_000).contains(&t.video_kbps) {
            return Err((
                "teacher.video_kbps",
                "must be from 50 to 20000 kbit/s".into(),
            ));
        }
        if !(6..=256).contains(&t.audio_kbps) {
            return Err(("teacher.audio_kbps", "must be from 6 to 256 kbit/s".into()));
        }
        if !(1..=600).contains(&t.keyframe_interval) {
            return Err((
                "teacher.keyframe_interval",
                "must be from 1 to 600 frames".into(),
            ));
        }
        self.relay.listen.parse::<SocketAddr>().map_err(|e| {
            (
                "relay.listen",
                format!("not an address like [::]:4443: {e}"),
            )
        })?;
        if self.relay.tls_cert.is_some() != self.relay.tls_key.is_some() {
            return Err((
                "relay.tls_cert",
                "tls_cert and tls_key must be given together".into(),
            ));
        }
        if self.relay.max_connections == 0 {
            return Err(("relay.max_connections", "must be at least 1".into()));
        }
        if !["auto", "camera", "test", "off"].contains(&self.classroom.return_feed.as_str()) {
            return Err((
                "classroom.return_feed",
                format!(
                    "{:?} is not one of auto, camera, test, off",
                    self.classroom.return_feed
                ),
            ));
        }
        if self.classroom.return_kbps < 40
            || self.classroom.return_kbps > self.classroom.return_max_kbps
        {
            return Err((
                "classroom.return_kbps",
                "from 40 up to classroom.return_max_kbps".into(),
            ));
        }
        for (key, value) in [
            ("classroom.camera", &self.classroom.camera),
            ("classroom.microphone", &self.classroom.microphone),
        ] {
            let first = value.split_whitespace().next().unwrap_or("");
            let plain = first
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !value.is_empty()
                && (value.contains('!') || value.contains('\\') || !plain || value.len() > 300)
            {
                return Err((key, "one source element and its settings, as the set-up page lists them (e.g. v4l2src device=\"/dev/video0\")".into()));
            }
        }
        let name = &self.classroom.mdns_name;
        if !name.is_empty()
            && (name.len() > 63
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                || name.starts_with('-'))
        {
            return Err((
                "classroom.mdns_name",
                "letters, digits and - (at most 63), or empty for none".into(),
            ));
        }
        let code = &self.classroom.watch_code;
        if !code.is_empty() && !(4..=64).contains(&code.chars().count()) {
            return Err((
                "classroom.watch_code",
                "4 to 64 characters, or empty for no code".into(),
            ));
        }
        for entry in &self.classroom.roster {
            let student = parse_student(entry);
            let probe = crate::lms::Event::Grade {
                assignment: "x".into(),
                student,
                grade: "1".into(),
            };
            probe
                .validate()
                .map_err(|e| ("classroom.roster", format!("{entry:?}: {e}")))?;
        }
        self.lms.validate()
    }
}

/// `host:port`, where host may be a name, an IPv4 address or a bracketed IPv6 address.
pub fn parse_host_port(text: &str) -> Result<(String, u16), String> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("`{text}` is not host:port (e.g. relay.example.org:4443)"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("`{port}` in `{text}` is not a port number"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("`{text}` has no host name"));
    }
    Ok((host.to_string(), port))
}

/// A SHA-256 fingerprint: 64 hex digits, colons allowed, optional `sha256:` prefix.
pub fn parse_fingerprint(text: &str) -> Result<[u8; 32], String> {
    let hex: String = text
        .trim()
        .trim_start_matches("sha256:")
        .chars()
        .filter(|c| *c != ':')
        .collect();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err("expected a SHA-256 fingerprint: 64 hex digits (colons allowed)".into());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("checked hex");
    }
    Ok(out)
}

/// Room names become moq broadcast path prefixes: keep them to a safe alphabet.
pub fn validate_room(room: &str) -> Result<(), String> {
    let ok = !room.is_empty()
        && room.len() <= 64
        && room
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if ok {
        Ok(())
    } else {
        Err("a room is 1-64 characters of letters, digits, '-', '_' or '.'".into())
    }
}

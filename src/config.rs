//! One configuration type for the TOML file, environment variables and flags.
//!
//! In: `/etc/classbox/classbox.toml` (or `--config`), then `CLASSBOX_<SECTION>_<KEY>`
//! variables, then flags (`--set section.key=value` and the role shortcuts), each
//! overriding the one before. Out: a validated [`Config`], or a [`ConfigError`] that
//! names the key, where the value came from and what is wrong with it.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

mod lms;
pub use lms::LmsConfig;

/// Where the daemon looks when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/classbox/classbox.toml";
const ENV_PREFIX: &str = "CLASSBOX_";
const SECTIONS: &[&str] = &["link", "classroom", "teacher", "relay", "media", "lms"];

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub link: LinkConfig,
    pub classroom: ClassroomConfig,
    pub teacher: TeacherConfig,
    pub relay: RelayConfig,
    pub media: MediaConfig,
    pub lms: LmsConfig,
}

/// How a box or a teacher reaches the relay.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinkConfig {
    /// `host:port` of the relay (ours or a moq-relay).
    pub relay: Option<String>,
    /// SHA-256 of the relay's certificate (hex, colons allowed, optional `sha256:`).
    /// Unset: the relay must present a certificate a system CA signed.
    pub fingerprint: Option<String>,
    /// The room (lesson) this box or teacher belongs to.
    pub room: String,
    /// A token from `classbox relay token`.
    pub token: Option<String>,
    /// A file holding the token (keeps it out of the main config and the process list).
    pub token_file: Option<PathBuf>,
    /// Longest wait between reconnect attempts, in seconds.
    pub max_backoff_secs: u64,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            relay: None,
            fingerprint: None,
            room: "demo".into(),
            token: None,
            token_file: None,
            max_backoff_secs: 10,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DisplayMode {
    /// A window where a display server exists, otherwise headless.
    Auto,
    Window,
    Headless,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassroomConfig {
    /// Shown on the page and the display.
    pub name: String,
    /// This box's id on the relay (`classroom/<id>`). Empty: the host name.
    pub id: String,
    /// Where the box's web page listens.
    pub web_listen: String,
    pub display: DisplayMode,
    /// Frames older than this (behind the live edge) are skipped, never queued.
    pub latency_budget_ms: u64,
    /// Where the box keeps its state. Unset: `$STATE_DIRECTORY`, else XDG state dir.
    pub state_dir: Option<PathBuf>,
    /// The class list for attendance: `"id:Full Name"` (or just `"id"`) per student;
    /// the id is the student's LMS user id or account name.
    pub roster: Vec<String>,
    /// A class code students enter to watch the lesson on the LAN; empty: open to the LAN.
    pub watch_code: String,
    /// The box's name on the LAN by mDNS (`<name>.local`) when its page listens
    /// beyond loopback; empty: no announcement.
    pub mdns_name: String,
    /// The classroom seen and heard by the teacher: `auto` (when a camera is found),
    /// `camera`, `test` (test picture and tone) or `off`.
    pub return_feed: String,
    /// The camera and microphone for it, as the set-up page's device list gives them
    /// (`v4l2src device="/dev/video0"`); empty: whichever is plugged in.
    pub camera: String,
    pub microphone: String,
    /// Its starting and highest video bitrate, kbit/s: less than the lesson's, since the
    /// school's uplink is usually the weaker direction.
    pub return_kbps: u32,
    pub return_max_kbps: u32,
}

impl Default for ClassroomConfig {
    fn default() -> Self {
        Self {
            name: "Classroom".into(),
            id: String::new(),
            web_listen: "127.0.0.1:8080".into(),
            display: DisplayMode::Auto,
            latency_budget_ms: 400,
            state_dir: None,
            roster: Vec::new(),
            watch_code: String::new(),
            mdns_name: "classbox".into(),
            return_feed: "auto".into(),
            camera: String::new(),
            microphone: String::new(),
            return_kbps: 300,
            return_max_kbps: 800,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TeacherConfig {
    /// Shown on the classrooms' pages as who is teaching.
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub framerate: u32,
    /// The video bitrate a lesson starts at; adaptive, it then grows to what the
    /// link carries. Low by default: starting above a slow link fills its queue and
    /// delays speech for the first seconds.
    pub video_kbps: u32,
    pub audio_kbps: u32,
    /// Keyframe (group) interval in frames at `framerate`; kept in time (1 s by
    /// default) on every rung of the ladder.
    pub keyframe_interval: u32,
    /// Use test sources (moving picture, tone) instead of a camera and microphone.
    pub test_sources: bool,
    /// Follow the classrooms' receiver reports along the rendition ladder (the
    /// picture size then comes from the ladder, starting near `video_kbps`).
    pub adaptive: bool,
    /// Where the classrooms' return feeds are shown: auto, window or headless.
    pub feed_display: DisplayMode,
}

impl Default for TeacherConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            width: 640,
            height: 360,
            framerate: 30,
            video_kbps: 400,
            audio_kbps: 32,
            keyframe_interval: 30,
            test_sources: true,
            adaptive: true,
            feed_display: DisplayMode::Auto,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// UDP address the relay listens on.
    pub listen: String,
    /// Certificate, key and token-signing key live here.
    pub state_dir: Option<PathBuf>,
    /// Host names and addresses put in the self-signed certificate.
    pub names: Vec<String>,
    /// Use this certificate chain (PEM) instead of generating one.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Most connections served at once.
    pub max_connections: usize,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            listen: "[::]:4443".into(),
            state_dir: None,
            names: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            tls_cert: None,
            tls_key: None,
            max_connections: 512,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// `auto` probes; or name a profile from `gst-pipelines/` to force it.
    pub profile: String,
    /// Read pipeline descriptions from here instead of the built-in copies.
    pub pipelines_dir: Option<PathBuf>,
    /// H.265 for the lesson: see [`H265Mode`].
    pub h265: H265Mode,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            profile: "auto".into(),
            pipelines_dir: None,
            h265: H265Mode::Auto,
        }
    }
}

/// When the lesson is sent in H.265. The teacher encodes H.265 only while every
/// classroom asks for it first; any other classroom (or a tablet watching on a box's
/// LAN) brings it back to H.264 within a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum H265Mode {
    /// Classroom: ask for H.265 when it is decoded in hardware (a Raspberry Pi 5).
    /// Teacher: encode it when every classroom asks.
    #[default]
    Auto,
    /// Classroom: ask for H.265 whenever it can be decoded, in software too (a strong
    /// mini-PC on a thin link: about a third fewer bits for the same picture).
    Prefer,
    /// Never: the classroom does not ask, the teacher does not encode it.
    Off,
}

/// `"id:Full Name"` or `"id"`.
fn parse_student(entry: &str) -> crate::lms::Student {
    match entry.split_once(':') {
        Some((id, name)) => crate::lms::Student {
            id: id.trim().to_string(),
            name: Some(name.trim().to_string()).filter(|n| !n.is_empty()),
        },
        None => crate::lms::Student {
            id: entry.trim().to_string(),
            name: None,
        },
    }
}

impl ClassroomConfig {
    pub fn roster(&self) -> Vec<crate::lms::Student> {
        self.roster.iter().map(|e| parse_student(e)).collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("config key `{key}` (from {origin}): {message}")]
    Key {
        key: String,
        origin: String,
        message: String,
    },
    #[error("{origin}: {message}")]
    Override { origin: String, message: String },
}

/// One override: `section.key` set to a value, and where it came from.
#[derive(Debug, Clone)]
pub struct Override {
    pub key: String,
    pub value: String,
    pub origin: String,
}

impl Override {
    /// Parse `section.key=value` from a `--set` flag.
    pub fn parse_flag(text: &str) -> Result<Self, ConfigError> {
        let (key, value) = text.split_once('=').ok_or_else(|| ConfigError::Override {
            origin: format!("--set {text}"),
            message: "expected section.key=value".into(),
        })?;
        Ok(Self {
            key: key.trim().to_string(),
            value: value.to_string(),
            origin: format!("--set {key}"),
        })
    }

    /// A flag that maps to one key, e.g. `--relay` to `link.relay`.
    pub fn flag(key: &str, flag: &str, value: impl ToString) -> Self {
        Self {
            key: key.into(),
            value: value.to_string(),
            origin: format!("flag {flag}"),
        }
    }
}

/// Overrides from `CLASSBOX_<SECTION>_<KEY>` variables. Variables whose first word
/// is not a config section (`CLASSBOX_CONFIG`, `CLASSBOX_LOG`, ...) are not config keys.
pub fn env_overrides(vars: impl IntoIterator<Item = (String, String)>) -> Vec<Override> {
    let mut out = Vec::new();
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let lower = rest.to_ascii_lowercase();
        let Some((section, key)) = lower.split_once('_') else {
            continue;
        };
        if !SECTIONS.contains(&section) {
            continue;
        }
        out.push(Override {
            key: format!("{section}.{key}"),
            value,
            origin: format!("environment variable {name}"),
        });
    }
    out
}

impl Config {
    /// Load from `path` (a missing file is fine only at the default path) and apply overrides.
    pub fn load(path: Option<&Path>, overrides: &[Override]) -> Result<Self, ConfigError> {
        let (text, path) = match path {
            Some(path) => (
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.into(),
                    source,
                })?,
                path.to_path_buf(),
            ),
            None => match std::fs::read_to_string(DEFAULT_PATH) {
                Ok(text) => (text, DEFAULT_PATH.into()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    (String::new(), DEFAULT_PATH.into())
                }
                Err(source) => {
                    return Err(ConfigError::Read {
                        path: DEFAULT_PATH.into(),
                        source,
                    });
                }
            },
        };
        Self::from_toml(&text, &path, overrides)
    }

    /// Parse TOML text, apply overrides, deserialize and validate.
    pub fn from_toml(text: &str, path: &Path, overrides: &[Override]) -> Result<Self, ConfigError> {
        let mut table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    path: path.into(),
                    message: e.to_string(),
                })?;
        let mut origins: BTreeMap<String, String> = BTreeMap::new();
        for o in overrides {
            apply_override(&mut table, o)?;
            origins.insert(o.key.clone(), o.origin.clone());
        }
        let origin_of = |key: &str| {
            origins
                .get(key)
                .cloned()
                .unwrap_or_else(|| format!("config file {}", path.display()))
        };

        let config: Config =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                let key = e.path().to_string();
                // toml appends "\nin `section`"; the key already says where.
                let message = e
                    .inner()
                    .to_string()
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                // An unknown key may be reported at its parent; name the key itself.
                let key = match message.split('`').nth(1) {
                    Some(field)
                        if message.starts_with("unknown field") && !key.ends_with(field) =>
                    {
                        if key == "." {
                            field.to_string()
                        } else {
                            format!("{key}.{field}")
                        }
                    }
                    _ => key,
                };
                ConfigError::Key {
                    origin: origin_of(&key),
                    key,
                    message,
                }
            })?;
        config
            .validate()
            .map_err(|(key, message)| ConfigError::Key {
                origin: origin_of(key),
                key: key.to_string(),
                message,
            })?;
        Ok(config)
    }

    /// Checks serde cannot express. Returns the offending key and why.
    fn validate(&self) -> Result<(), (&'static str, String)> {
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

    /// This box's id: `classroom.id`, else the host name, else `box`.
    pub fn box_id(&self) -> String {
        if !self.classroom.id.is_empty() {
            return self.classroom.id.clone();
        }
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        let clean: String = host
            .trim()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(64)
            .collect();
        if clean.is_empty() {
            "box".into()
        } else {
            clean
        }
    }

    pub fn latency_budget(&self) -> Duration {
        Duration::from_millis(self.classroom.latency_budget_ms)
    }

    /// The token from `link.token` or `link.token_file`.
    pub fn token(&self) -> Result<Option<String>, ConfigError> {
        if let Some(token) = &self.link.token {
            return Ok(Some(token.trim().to_string()));
        }
        match &self.link.token_file {
            Some(path) => std::fs::read_to_string(path)
                .map(|t| Some(t.trim().to_string()))
                .map_err(|e| ConfigError::Key {
                    key: "link.token_file".into(),
                    origin: "config".into(),
                    message: format!("cannot read {}: {e}", path.display()),
                }),
            None => Ok(None),
        }
    }
}

fn apply_override(table: &mut toml::Table, o: &Override) -> Result<(), ConfigError> {
    let bad = |message: String| ConfigError::Override {
        origin: o.origin.clone(),
        message,
    };
    let (section, key) = o
        .key
        .split_once('.')
        .ok_or_else(|| bad(format!("`{}` is not a section.key name", o.key)))?;
    if !SECTIONS.contains(&section) {
        return Err(bad(format!(
            "unknown section `{section}` (expected one of {})",
            SECTIONS.join(", ")
        )));
    }
    // A value that reads as TOML (a number, a bool, a quoted string, an array) is taken
    // as such; anything else is a plain string, so `--set link.room=maths` just works.
    let value = format!("v = {}", o.value)
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(o.value.clone()));
    let entry = table
        .entry(section.to_string())
        .or_insert_with(|| toml::Value::Table(Default::default()));
    let section_table = entry
        .as_table_mut()
        .ok_or_else(|| bad(format!("`{section}` in the config file is not a table")))?;
    section_table.insert(key.to_string(), value);
    Ok(())
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

#[cfg(test)]
mod tests;

//! One configuration type for the TOML file, environment variables and flags.
//!
//! In: `/etc/classbox/classbox.toml` (or `--config`), then `CLASSBOX_<SECTION>_<KEY>`
//! variables, then flags (`--set section.key=value` and the role shortcuts), each
//! overriding the one before. Out: a validated [`Config`], or a [`ConfigError`] that
//! names the key, where the value came from and what is wrong with it.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

mod lms;
mod validate;
pub use lms::LmsConfig;
pub use validate::{parse_fingerprint, parse_host_port, validate_room};

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
    /// Adaptive, with classrooms on very different links: encode the picture a second
    /// time for the ones that can take much more than the slowest (two encoders on
    /// the teacher's machine while it lasts). Off: the slowest sets the picture for all.
    pub simulcast: bool,
    /// Where the classrooms' return feeds are shown: auto, window or headless.
    pub feed_display: DisplayMode,
    /// On a slow link (the picture under 300 kbit/s) send the sound in 40 ms packets
    /// at no more than 24 kbit/s, leaving the picture 20 kbit/s more (see
    /// [`crate::abr::sound`]). Off: the sound stays at `audio_kbps` in 20 ms packets
    /// on every link (a music lesson, say).
    pub slow_link_sound: bool,
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
            simulcast: true,
            feed_display: DisplayMode::Auto,
            slow_link_sound: true,
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

#[cfg(test)]
mod tests;

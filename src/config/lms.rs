//! The `[lms]` section: which LMS the outbox delivers to, and how.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// The school's LMS, where the outbox delivers.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LmsConfig {
    /// `none`, `xapi`, `canvas` or `moodle`.
    pub target: String,
    /// xAPI: the LRS's xAPI base (…/xAPI/); Canvas and Moodle: the site's address.
    pub url: Option<String>,
    /// xAPI: the Basic-auth key.
    pub username: String,
    /// xAPI: the Basic-auth secret; Canvas and Moodle: the access token.
    pub secret: Option<String>,
    /// A file holding the secret (keeps it out of the main config).
    pub secret_file: Option<PathBuf>,
    /// Canvas: the course the classroom is.
    pub course_id: String,
    /// xAPI: the `homePage` of students' accounts. Unset: the LMS url.
    pub account_homepage: Option<String>,
    /// Share of the measured uplink the sync may use during a live lesson, percent;
    /// 0 pauses the sync while a lesson runs.
    pub lesson_share_percent: f64,
    /// Uplink assumed while none has been measured, kbit/s.
    pub fallback_uplink_kbps: f64,
    /// Delivered records are kept this long (for the page), then removed.
    pub keep_delivered_days: u64,
    /// Moodle attendance: the teacher's user id, the status set, and the status ids
    /// for present, absent, late, excused.
    pub moodle_taken_by: u64,
    pub moodle_status_set: String,
    pub moodle_status_ids: Vec<u64>,
}

impl Default for LmsConfig {
    fn default() -> Self {
        Self {
            target: "none".into(),
            url: None,
            username: String::new(),
            secret: None,
            secret_file: None,
            course_id: String::new(),
            account_homepage: None,
            lesson_share_percent: 10.0,
            fallback_uplink_kbps: 256.0,
            keep_delivered_days: 7,
            moodle_taken_by: 0,
            moodle_status_set: String::new(),
            moodle_status_ids: Vec::new(),
        }
    }
}

impl std::fmt::Debug for LmsConfig {
    // NOTE: by hand, so the secret never reaches a log line or an error message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LmsConfig")
            .field("target", &self.target)
            .field("url", &self.url)
            .field("username", &self.username)
            .field("secret", &self.secret.as_ref().map(|_| "(set)"))
            .field("secret_file", &self.secret_file)
            .field("course_id", &self.course_id)
            .field("lesson_share_percent", &self.lesson_share_percent)
            .finish_non_exhaustive()
    }
}

impl LmsConfig {
    /// The secret from `lms.secret` or `lms.secret_file`.
    pub fn secret(&self) -> Result<String, ConfigError> {
        if let Some(secret) = &self.secret {
            return Ok(secret.trim().to_string());
        }
        match &self.secret_file {
            Some(path) => std::fs::read_to_string(path)
                .map(|t| t.trim().to_string())
                .map_err(|e| ConfigError::Key {
                    key: "lms.secret_file".into(),
                    origin: "config".into(),
                    message: format!("cannot read {}: {e}", path.display()),
                }),
            None => Ok(String::new()),
        }
    }

    pub(super) fn validate(&self) -> Result<(), (&'static str, String)> {
        if !["none", "xapi", "canvas", "moodle"].contains(&self.target.as_str()) {
            return Err((
                "lms.target",
                format!("{:?} is not one of none, xapi, canvas, moodle", self.target),
            ));
        }
        if !(0.0..=100.0).contains(&self.lesson_share_percent) {
            return Err(("lms.lesson_share_percent", "must be from 0 to 100".into()));
        }
        if self.fallback_uplink_kbps.is_nan() || self.fallback_uplink_kbps <= 0.0 {
            return Err(("lms.fallback_uplink_kbps", "must be above 0".into()));
        }
        if self.keep_delivered_days == 0 {
            return Err(("lms.keep_delivered_days", "must be at least 1".into()));
        }
        if self.target == "none" {
            return Ok(());
        }
        let url = self.url.as_deref().ok_or((
            "lms.url",
            format!("is needed for lms.target = {:?}", self.target),
        ))?;
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| ("lms.url", format!("{url:?} is not a URL: {e}")))?;
        if !["http", "https"].contains(&parsed.scheme()) {
            return Err((
                "lms.url",
                "must start with https:// (or http:// on a school network)".into(),
            ));
        }
        if self.secret.is_none() && self.secret_file.is_none() {
            return Err((
                "lms.secret",
                "set lms.secret or lms.secret_file (the LMS credentials)".into(),
            ));
        }
        match self.target.as_str() {
            "xapi" if self.username.is_empty() => {
                Err(("lms.username", "the LRS key is needed for xAPI".into()))
            }
            "canvas" if self.course_id.is_empty() => {
                Err(("lms.course_id", "the Canvas course id is needed".into()))
            }
            "moodle" if !self.moodle_status_ids.is_empty() && self.moodle_status_ids.len() != 4 => {
                Err((
                    "lms.moodle_status_ids",
                    "four ids: present, absent, late, excused".into(),
                ))
            }
            _ => Ok(()),
        }
    }
}

//! Admin login for the page: the password (argon2id hash in the state dir), sessions
//! (random tokens in an HttpOnly, SameSite=Strict cookie), CSRF tokens tied to the
//! session, and a login rate limit per client address.
//!
//! There is no default password: until one is chosen in the set-up wizard, the admin
//! pages are not reachable at all. The limiter is sans-IO (time passed in).

use std::{
    collections::HashMap,
    net::IpAddr,
    path::PathBuf,
    sync::Mutex,
    time::{Duration, Instant},
};

use argon2::{
    Argon2,
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
};
use base64::Engine;

pub const SESSION_COOKIE: &str = "classbox_session";
const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
pub const MIN_PASSWORD_CHARS: usize = 10;

/// The admin password's hash, kept in `<state dir>/admin-password` (mode 0600).
pub struct AdminPassword {
    path: PathBuf,
    hash: Mutex<Option<String>>,
}

impl AdminPassword {
    pub fn load(path: PathBuf) -> Self {
        let hash = std::fs::read_to_string(&path)
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty());
        Self {
            path,
            hash: Mutex::new(hash),
        }
    }

    pub fn is_set(&self) -> bool {
        self.hash.lock().expect("password lock").is_some()
    }

    /// Choose the password (first boot, or a change). Refuses weak ones.
    pub fn set(&self, password: &str) -> Result<(), String> {
        check_strength(password)?;
        let salt_bytes: [u8; 16] = rand::random();
        let salt =
            SaltString::encode_b64(&salt_bytes).map_err(|e| format!("cannot make a salt: {e}"))?;
        let hash = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| format!("cannot hash the password: {e}"))?
            .to_string();
        crate::state::write_private(&self.path, hash.as_bytes())
            .map_err(|e| format!("cannot save the password: {e}"))?;
        *self.hash.lock().expect("password lock") = Some(hash);
        Ok(())
    }

    pub fn verify(&self, password: &str) -> bool {
        let Some(hash) = self.hash.lock().expect("password lock").clone() else {
            return false;
        };
        PasswordHash::new(&hash)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    }
}

pub fn check_strength(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!("at least {MIN_PASSWORD_CHARS} characters"));
    }
    if password.chars().count() > 200 {
        return Err("at most 200 characters".into());
    }
    let lower = password.to_lowercase();
    if [
        "password",
        "classbox",
        "1234567890",
        "0123456789",
        "qwertyuiop",
    ]
    .iter()
    .any(|w| lower.contains(w))
    {
        return Err("too easy to guess".into());
    }
    Ok(())
}

fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Logged-in sessions, in memory (a restart logs everyone out, which is fine for a box).
#[derive(Default)]
pub struct Sessions {
    live: Mutex<HashMap<String, Session>>,
}

#[derive(Clone)]
pub struct Session {
    pub csrf: String,
    expires: Instant,
}

impl Sessions {
    /// A new session; returns its cookie value.
    pub fn create(&self, now: Instant) -> String {
        let token = random_token();
        let mut live = self.live.lock().expect("sessions lock");
        live.retain(|_, s| s.expires > now);
        live.insert(
            token.clone(),
            Session {
                csrf: random_token(),
                expires: now + SESSION_LIFETIME,
            },
        );
        token
    }

    pub fn get(&self, token: &str, now: Instant) -> Option<Session> {
        let live = self.live.lock().expect("sessions lock");
        live.get(token).filter(|s| s.expires > now).cloned()
    }

    pub fn end(&self, token: &str) {
        self.live.lock().expect("sessions lock").remove(token);
    }
}

/// The session cookie's value in a `Cookie` header.
pub fn session_cookie(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            c.trim()
                .strip_prefix(SESSION_COOKIE)?
                .strip_prefix('=')
                .map(str::to_string)
        })
}

/// `Set-Cookie` for a session. Not `Secure`: the page is plain HTTP on the school LAN
/// (there is no certificate a tablet would trust for a box's address); HttpOnly keeps
/// it from scripts and SameSite=Strict from other sites' forms.
pub fn set_cookie(token: &str) -> String {
    format!(
        "{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_LIFETIME.as_secs()
    )
}

pub fn clear_cookie() -> String {
    format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

/// Compare without leaking where they differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Failed logins per client: five in a row lock that client out, for 30 s doubling to
/// 15 min. Sans-IO.
#[derive(Default)]
pub struct LoginLimiter {
    clients: Mutex<HashMap<IpAddr, Failures>>,
}

#[derive(Clone, Copy)]
struct Failures {
    count: u32,
    locked_until: Option<Instant>,
}

impl LoginLimiter {
    /// How long this client must still wait before trying again.
    pub fn wait(&self, client: IpAddr, now: Instant) -> Option<Duration> {
        let clients = self.clients.lock().expect("limiter lock");
        let until = clients.get(&client)?.locked_until?;
        (until > now).then(|| until - now)
    }

    pub fn failed(&self, client: IpAddr, now: Instant) {
        let mut clients = self.clients.lock().expect("limiter lock");
        if clients.len() > 10_000 {
            clients.retain(|_, f| f.locked_until.is_some_and(|u| u > now));
        }
        let f = clients.entry(client).or_insert(Failures {
            count: 0,
            locked_until: None,
        });
        f.count += 1;
        if f.count >= 5 {
            let lockouts = f.count - 4;
            let secs = (30u64 << (lockouts - 1).min(5)).min(900);
            f.locked_until = Some(now + Duration::from_secs(secs));
        }
    }

    pub fn succeeded(&self, client: IpAddr) {
        self.clients.lock().expect("limiter lock").remove(&client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify_and_weak_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = AdminPassword::load(dir.path().join("admin-password"));
        assert!(!store.is_set());
        assert!(!store.verify(""), "no password: nothing verifies");
        assert!(store.set("short").is_err());
        assert!(store.set("mypassword123").is_err());
        store.set("correct horse battery").unwrap();
        assert!(store.verify("correct horse battery"));
        assert!(!store.verify("correct horse battery "));
        let saved = std::fs::read_to_string(dir.path().join("admin-password")).unwrap();
        assert!(saved.starts_with("$argon2id$") && !saved.contains("horse"));
        let again = AdminPassword::load(dir.path().join("admin-password"));
        assert!(again.verify("correct horse battery"));
    }

    #[test]
    fn five_failures_lock_a_client_out_and_the_lock_grows() {
        let limiter = LoginLimiter::default();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let t = Instant::now();
        for _ in 0..4 {
            limiter.failed(a, t);
        }
        assert_eq!(limiter.wait(a, t), None);
        limiter.failed(a, t);
        assert_eq!(limiter.wait(a, t), Some(Duration::from_secs(30)));
        assert_eq!(limiter.wait(b, t), None, "other clients are not affected");
        assert_eq!(limiter.wait(a, t + Duration::from_secs(31)), None);
        limiter.failed(a, t + Duration::from_secs(31));
        assert_eq!(
            limiter.wait(a, t + Duration::from_secs(31)),
            Some(Duration::from_secs(60))
        );
        limiter.succeeded(a);
        assert_eq!(limiter.wait(a, t + Duration::from_secs(31)), None);
    }

    #[test]
    fn sessions_expire_and_cookies_parse() {
        let sessions = Sessions::default();
        let t = Instant::now();
        let token = sessions.create(t);
        assert!(sessions.get(&token, t).is_some());
        assert!(sessions.get(&token, t + SESSION_LIFETIME).is_none());
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            axum::http::header::COOKIE,
            format!("a=b; {SESSION_COOKIE}={token}").parse().unwrap(),
        );
        assert_eq!(session_cookie(&h), Some(token));
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}

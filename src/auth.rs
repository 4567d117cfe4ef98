//! Room-scoped, expiring tokens for teachers and boxes.
//!
//! In: a signing key (a JWK file in the relay's state dir), a room, a role and a
//! lifetime. Out: a compact JWT (HS256) whose claims follow moq-auth's wire format
//! (`root`, `put`, `get`, `exp`, `iat`), so a stock moq-relay given the same key
//! (`--auth-key`) accepts the tokens `classbox relay token` issues.
//!
//! A token rides to the relay in the moq-lite SETUP path: `<room>?jwt=<token>`.

use std::{
    path::Path,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Who a token is for; decides what it may publish and subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Publishes the lesson (`teacher`), watches the room feeds (`classroom/...`).
    Teacher,
    /// A classroom box: watches the lesson, publishes its room feed.
    Box,
}

impl Role {
    /// Broadcast prefixes (relative to the room) this role may publish.
    pub fn publish(self) -> Vec<String> {
        match self {
            Role::Teacher => vec![crate::transport::TEACHER_BROADCAST.into()],
            Role::Box => vec![crate::transport::CLASSROOM_BROADCAST.into()],
        }
    }
    /// Broadcast prefixes (relative to the room) this role may subscribe to.
    pub fn subscribe(self) -> Vec<String> {
        match self {
            Role::Teacher => vec![crate::transport::CLASSROOM_BROADCAST.into()],
            Role::Box => vec![crate::transport::TEACHER_BROADCAST.into()],
        }
    }
}

/// The claims a token carries (moq-auth's wire names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The room.
    pub root: String,
    /// Prefixes the holder may publish under `root`.
    #[serde(default)]
    pub put: Vec<String>,
    /// Prefixes the holder may subscribe to under `root`.
    #[serde(default)]
    pub get: Vec<String>,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Issued at, Unix seconds.
    #[serde(default)]
    pub iat: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the relay needs a token: pass one from `classbox relay token` (link.token)")]
    Missing,
    #[error("the token is not a well-formed JWT ({0})")]
    Malformed(&'static str),
    #[error("the token uses algorithm {0}; only HS256 is accepted")]
    Algorithm(String),
    #[error("the token's signature is wrong (issued by another relay, or altered)")]
    Signature,
    #[error("the token expired {0} s ago; ask for a new one")]
    Expired(u64),
    #[error("the token is for room `{token}`, not `{requested}`")]
    WrongRoom { token: String, requested: String },
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the token key {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write the token key {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("the token key {path} is not an HS256 JWK with at least 32 bytes of key: {why}")]
    Invalid { path: String, why: String },
}

/// An HMAC-SHA256 signing key.
#[derive(Clone)]
pub struct TokenKey {
    secret: Vec<u8>,
}

/// The JWK form of the key, as moq-relay's `--auth-key` reads it.
#[derive(Serialize, Deserialize)]
struct Jwk {
    kty: String,
    alg: String,
    k: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    key_ops: Vec<String>,
}

impl TokenKey {
    pub fn generate() -> Self {
        use rand::RngCore;
        let mut secret = vec![0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        Self { secret }
    }

    pub fn from_secret(secret: Vec<u8>) -> Self {
        Self { secret }
    }

    /// Load the key at `path`, creating it (mode 0600) on first use.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        let shown = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let invalid = |why: String| KeyError::Invalid {
                    path: shown.clone(),
                    why,
                };
                let jwk: Jwk = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
                if jwk.kty != "oct" || jwk.alg != "HS256" {
                    return Err(invalid(format!("kty {} alg {}", jwk.kty, jwk.alg)));
                }
                let secret = B64
                    .decode(jwk.k.trim_end_matches('='))
                    .map_err(|e| invalid(e.to_string()))?;
                if secret.len() < 32 {
                    return Err(invalid(format!("{} bytes", secret.len())));
                }
                Ok(Self { secret })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate();
                crate::state::write_private(path, key.to_jwk().as_bytes()).map_err(|source| {
                    KeyError::Write {
                        path: shown,
                        source,
                    }
                })?;
                Ok(key)
            }
            Err(source) => Err(KeyError::Read {
                path: shown,
                source,
            }),
        }
    }

    pub fn to_jwk(&self) -> String {
        let jwk = Jwk {
            kty: "oct".into(),
            alg: "HS256".into(),
            k: B64.encode(&self.secret),
            key_ops: vec!["sign".into(), "verify".into()],
        };
        serde_json::to_string_pretty(&jwk).expect("plain struct serializes")
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.secret).expect("HMAC takes any key length")
    }

    /// Issue a token for `role` in `room`, valid for `ttl`.
    pub fn issue(&self, room: &str, role: Role, ttl: Duration) -> String {
        let now = unix_now();
        let claims = Claims {
            root: room.to_string(),
            put: role.publish(),
            get: role.subscribe(),
            exp: now + ttl.as_secs().max(1),
            iat: now,
        };
        self.sign(&claims)
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let header = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let body = B64.encode(serde_json::to_vec(claims).expect("claims serialize"));
        let signing_input = format!("{header}.{body}");
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        let signature = B64.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{signature}")
    }

    /// Verify `token` for `room` at time `now` (Unix seconds).
    pub fn verify(&self, token: &str, room: &str, now: u64) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(body), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed("expected three dot-separated parts"));
        };
        #[derive(Deserialize)]
        struct Header {
            alg: String,
        }
        let header: Header = B64
            .decode(header)
            .ok()
            .and_then(|h| serde_json::from_slice(&h).ok())
            .ok_or(TokenError::Malformed("header"))?;
        if header.alg != "HS256" {
            return Err(TokenError::Algorithm(header.alg));
        }
        let signature = B64
            .decode(signature)
            .map_err(|_| TokenError::Malformed("signature"))?;
        let mut mac = self.mac();
        mac.update(&token.as_bytes()[..header_len(token)]);
        mac.verify_slice(&signature)
            .map_err(|_| TokenError::Signature)?;
        let claims: Claims = B64
            .decode(body)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed("claims"))?;
        if claims.exp <= now {
            return Err(TokenError::Expired(now - claims.exp));
        }
        if claims.root.trim_matches('/') != room.trim_matches('/') {
            return Err(TokenError::WrongRoom {
                token: claims.root,
                requested: room.to_string(),
            });
        }
        Ok(claims)
    }
}

/// Read a token's claims without checking its signature (only the relay can): lets
/// a client notice it holds the wrong kind of token before it connects.
pub fn peek_claims(token: &str) -> Result<Claims, TokenError> {
    let body = token
        .split('.')
        .nth(1)
        .ok_or(TokenError::Malformed("expected three dot-separated parts"))?;
    B64.decode(body)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(TokenError::Malformed("claims"))
}

/// Whether `token` lets its holder act as `role` (publish and watch what it needs).
pub fn check_role(token: &str, role: Role) -> Result<(), String> {
    let claims = peek_claims(token).map_err(|e| e.to_string())?;
    let covers = |granted: &[String], wanted: &[String]| {
        wanted.iter().all(|w| {
            granted
                .iter()
                .any(|g| g.is_empty() || w == g || w.starts_with(&format!("{g}/")))
        })
    };
    if covers(&claims.put, &role.publish()) && covers(&claims.get, &role.subscribe()) {
        return Ok(());
    }
    let (is, want) = match role {
        Role::Teacher => ("a classroom box", "teacher"),
        Role::Box => ("a teacher", "box"),
    };
    Err(format!(
        "this token is for {is}, not for this role: issue one with `classbox relay token --room {} --role {want}`",
        claims.root
    ))
}

/// Length of `header.body`, the part of a JWT the signature covers.
fn header_len(token: &str) -> usize {
    token.rfind('.').unwrap_or(token.len())
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Parse a lifetime like `90m`, `8h`, `7d` or plain seconds.
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a lifetime like 90m, 8h or 7d"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("`{unit}` is not a unit: use s, m, h or d")),
    };
    if secs == 0 || secs > 366 * 86_400 {
        return Err("a token lives from 1 second to 366 days".into());
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_and_verify() {
        let key = TokenKey::generate();
        let token = key.issue("maths-4b", Role::Teacher, Duration::from_secs(60));
        let claims = key.verify(&token, "maths-4b", unix_now()).unwrap();
        assert_eq!(claims.put, vec!["teacher".to_string()]);
        assert_eq!(claims.get, vec!["classroom".to_string()]);
    }

    #[test]
    fn refusals_say_why() {
        let key = TokenKey::generate();
        let token = key.issue("maths", Role::Box, Duration::from_secs(60));
        assert_eq!(
            key.verify(&token, "art", unix_now()),
            Err(TokenError::WrongRoom {
                token: "maths".into(),
                requested: "art".into()
            })
        );
        assert_eq!(
            key.verify(&token, "maths", unix_now() + 70),
            Err(TokenError::Expired(10))
        );
        let other = TokenKey::generate();
        assert_eq!(
            other.verify(&token, "maths", unix_now()),
            Err(TokenError::Signature)
        );
        assert!(matches!(
            key.verify("garbage", "maths", 0),
            Err(TokenError::Malformed(_))
        ));
        // Altering the claims breaks the signature.
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = B64.encode(br#"{"root":"maths","put":[""],"get":[""],"exp":99999999999}"#);
        parts[1] = &forged;
        assert_eq!(
            key.verify(&parts.join("."), "maths", unix_now()),
            Err(TokenError::Signature)
        );
    }

    #[test]
    fn key_file_round_trip_and_rejects_short_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.jwk");
        let a = TokenKey::load_or_create(&path).unwrap();
        let b = TokenKey::load_or_create(&path).unwrap();
        assert_eq!(a.secret, b.secret);
        std::fs::write(&path, r#"{"kty":"oct","alg":"HS256","k":"c2hvcnQ"}"#).unwrap();
        assert!(matches!(
            TokenKey::load_or_create(&path),
            Err(KeyError::Invalid { .. })
        ));
    }

    #[test]
    fn a_box_token_is_not_a_teacher_token() {
        let key = TokenKey::generate();
        let box_token = key.issue("maths", Role::Box, Duration::from_secs(60));
        assert!(check_role(&box_token, Role::Box).is_ok());
        let err = check_role(&box_token, Role::Teacher).unwrap_err();
        assert!(err.contains("--role teacher"), "{err}");
        let wide = key.sign(&Claims {
            root: "maths".into(),
            put: vec!["".into()],
            get: vec!["".into()],
            exp: unix_now() + 60,
            iat: 0,
        });
        assert!(check_role(&wide, Role::Teacher).is_ok());
    }

    #[test]
    fn ttl_forms() {
        assert_eq!(parse_ttl("90m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_ttl("8h").unwrap(), Duration::from_secs(28_800));
        assert!(parse_ttl("soon").is_err());
        assert!(parse_ttl("0").is_err());
    }
}

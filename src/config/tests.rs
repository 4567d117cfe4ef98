//! Tests of config merging, validation and error messages.

use super::*;

fn load(text: &str, overrides: &[Override]) -> Result<Config, ConfigError> {
    Config::from_toml(text, Path::new("test.toml"), overrides)
}

#[test]
fn defaults_are_valid() {
    let config = load("", &[]).unwrap();
    assert_eq!(config.link.room, "demo");
    assert_eq!(config.classroom.latency_budget_ms, 400);
}

#[test]
fn unknown_key_is_named() {
    let err = load("[link]\nrelya = \"x:1\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("`link.relya`"), "{err}");
    let err = load("[lnik]\nrelay = \"x:1\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("`lnik`"), "{err}");
}

#[test]
fn wrong_type_names_key_and_file() {
    let err = load("[classroom]\nlatency_budget_ms = \"soon\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("`classroom.latency_budget_ms`"), "{err}");
    assert!(err.contains("test.toml"), "{err}");
}

#[test]
fn invalid_value_names_key() {
    let err = load("[link]\nrelay = \"no-port\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`link.relay`") && err.contains("host:port"),
        "{err}"
    );
    let err = load("[link]\nfingerprint = \"abc\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("`link.fingerprint`"), "{err}");
    let err = load("[teacher]\nwidth = 641\n", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("`teacher.width`"), "{err}");
}

#[test]
fn syntax_error_is_reported() {
    let err = load("[link\n", &[]).unwrap_err();
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
}

#[test]
fn env_then_flags_override_file_and_are_blamed() {
    let env = env_overrides(vec![
        ("CLASSBOX_LINK_ROOM".to_string(), "maths".to_string()),
        (
            "CLASSBOX_CLASSROOM_LATENCY_BUDGET_MS".to_string(),
            "250".to_string(),
        ),
        ("CLASSBOX_CONFIG".to_string(), "/ignored".to_string()),
        ("PATH".to_string(), "/bin".to_string()),
    ]);
    assert_eq!(env.len(), 2);
    let mut all = env.clone();
    all.push(Override::parse_flag("link.room=physics").unwrap());
    let config = load("[link]\nroom = \"art\"\n", &all).unwrap();
    assert_eq!(config.link.room, "physics");
    assert_eq!(config.classroom.latency_budget_ms, 250);

    let bad = env_overrides(vec![(
        "CLASSBOX_CLASSROOM_LATENCY_BUDGET_MS".into(),
        "9".into(),
    )]);
    let err = load("", &bad).unwrap_err().to_string();
    assert!(
        err.contains("CLASSBOX_CLASSROOM_LATENCY_BUDGET_MS"),
        "{err}"
    );
    let err = load("", &[Override::parse_flag("nosuch.key=1").unwrap()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown section `nosuch`"), "{err}");
}

#[test]
fn fingerprint_forms() {
    let hex = "ab".repeat(32);
    assert_eq!(parse_fingerprint(&hex).unwrap(), [0xab; 32]);
    let colons = vec!["AB"; 32].join(":");
    assert_eq!(
        parse_fingerprint(&format!("sha256:{colons}")).unwrap(),
        [0xab; 32]
    );
}

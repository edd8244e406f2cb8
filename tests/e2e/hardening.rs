//! Issue 17, findings 7 and 8, against the real binary: a broker, database or SMTP server on
//! another machine without TLS is refused at start, before any connection, unless
//! `security.allow_plaintext` (said loudly); a pseudonym key file others may read is
//! refused; and `RUST_LOG=trace` never makes the AMQP client log its frames.

use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::process::Command;

use raccordo_e2e::{prepare_with, raccordo_bin};

/// An address of TEST-NET-1 (RFC 5737): routed nowhere, so a connection to it would hang
/// until a timeout instead of failing at once.
const NOWHERE: &str = "192.0.2.1";

/// `raccordo serve` with the defaults and `env` over them: its output and how long it ran.
async fn serve_with(env: &[(&str, &str)]) -> (Output, Duration) {
    let mut command = Command::new(raccordo_bin());
    command
        .arg("serve")
        .env_remove("RACCORDO_CONFIG")
        .env_remove("RUST_LOG")
        .env("RACCORDO__HTTP__ADDR", "127.0.0.1:0")
        .env("RACCORDO__EVICTION__ALLOW_DEVELOPMENT_KEY", "true")
        .envs(env.iter().copied())
        .kill_on_drop(true);
    let started = Instant::now();
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("raccordo serve ends within 60 s")
        .expect("raccordo serve runs");
    (output, started.elapsed())
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Environment variables, the setting refused, and the remedy its refusal names.
type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);

#[tokio::test]
async fn issue17_f7_serve_refuses_a_plaintext_peer_on_another_host_before_connecting() {
    let database = format!("postgres://postgres:s3cret-pw@{NOWHERE}:5432/raccordo");
    let broker = format!("amqp://guest:s3cret-pw@{NOWHERE}:5672/%2f");
    let smtp = format!("smtp://{NOWHERE}:25");
    let cases: [Case; 3] = [
        (
            &[
                ("RACCORDO__DATABASE__URL", &database),
                // A connection attempt would wait this long: the check must come first.
                ("RACCORDO__DATABASE__ACQUIRE_TIMEOUT_MS", "30000"),
            ],
            "database.url",
            "sslmode=verify-full",
        ),
        (&[("RACCORDO__AMQP__URL", &broker)], "amqp.url", "amqps://"),
        (
            &[
                ("RACCORDO__MAIL__TRANSPORT", "smtp"),
                ("RACCORDO__MAIL__SMTP_URL", &smtp),
            ],
            "mail.smtp_url",
            "smtps://",
        ),
    ];
    for (env, key, remedy) in cases {
        let (output, took) = serve_with(env).await;

        let text = stderr(&output);
        assert!(!output.status.success(), "{key}: {text}");
        assert!(
            took < Duration::from_secs(5),
            "{key}: refused after {took:?}, so after trying to connect: {text}"
        );
        for expected in [
            key,
            NOWHERE,
            "without TLS",
            remedy,
            "security.allow_plaintext",
        ] {
            assert!(
                text.contains(expected),
                "{key}: {expected:?} missing: {text}"
            );
        }
        assert!(!text.contains("s3cret-pw"), "{key}: {text}");
    }

    // With TLS asked for, the same remote database passes the rule (and only then is
    // connection tried, in vain here).
    let with_tls = format!("{database}?sslmode=verify-full");
    let (output, _) = serve_with(&[
        ("RACCORDO__DATABASE__URL", &with_tls),
        ("RACCORDO__DATABASE__ACQUIRE_TIMEOUT_MS", "500"),
    ])
    .await;
    let text = stderr(&output);
    assert!(!output.status.success());
    assert!(
        text.contains("Failed to connect to the database") && !text.contains("without TLS"),
        "{text}"
    );

    // security.allow_plaintext lets it through, and the start says so.
    let (output, _) = serve_with(&[
        ("RACCORDO__DATABASE__URL", &database),
        ("RACCORDO__DATABASE__ACQUIRE_TIMEOUT_MS", "500"),
        ("RACCORDO__SECURITY__ALLOW_PLAINTEXT", "true"),
    ])
    .await;
    let text = stderr(&output);
    assert!(
        text.contains("WARN")
            && text.contains("SECURITY: security.allow_plaintext is true")
            && text.contains(&format!("database.url ({NOWHERE})")),
        "{text}"
    );
    assert!(text.contains("Failed to connect to the database"), "{text}");
}

#[cfg(unix)]
#[tokio::test]
async fn issue17_f8_a_key_file_others_may_read_is_refused_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("raccordo-keyfile-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let key = dir.join("pseudonym_key");
    std::fs::write(&key, "0123456789abcdef0123456789abcdef0123").expect("write the key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let key_path = key.display().to_string();
    // A remote database in clear stops the start right after the key file is read: which
    // error comes says whether the key file passed.
    let database = format!("postgres://postgres@{NOWHERE}:5432/raccordo");
    let env = [
        ("RACCORDO__EVICTION__PSEUDONYM_KEY_FILE", key_path.as_str()),
        ("RACCORDO__DATABASE__URL", database.as_str()),
    ];

    let (output, _) = serve_with(&env).await;

    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains("eviction.pseudonym_key_file")
            && text.contains("0644")
            && text.contains("chmod 600"),
        "{text}"
    );
    assert!(
        !text.contains("0123456789abcdef"),
        "the key is never printed: {text}"
    );

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let (output, _) = serve_with(&env).await;
    let text = stderr(&output);
    assert!(
        !text.contains("pseudonym_key_file") && text.contains("database.url"),
        "a private key file passes: {text}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn issue17_f8_rust_log_trace_never_makes_the_amqp_client_log_its_frames() {
    let app = prepare_with(|_| {}).await;
    let event = app.event(
        "housing.unit.v1",
        serde_json::json!({
            "unit_id": "TRACE-1", "action": "offered", "comune_istat": "015146",
            "address": "Via Segreta 1, Milano", "places": 2, "reception_kind": "CAS",
            "building_type": "appartamento", "owner_declaration": true
        }),
    );
    let dir = std::env::temp_dir().join(format!("raccordo-trace-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("events.ndjson");
    std::fs::write(&file, format!("{event}\n")).expect("write");

    let output = app
        .command()
        .env("RUST_LOG", "trace")
        .args(["--log-format", "json", "publish"])
        .arg(&file)
        .output()
        .await
        .expect("raccordo publish runs");

    let text = stderr(&output);
    assert!(output.status.success(), "{text}");
    let lines: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let from = |prefix: &str, level: &str| {
        lines.iter().any(|l| {
            l["target"].as_str().is_some_and(|t| t.starts_with(prefix))
                && l["level"].as_str() == Some(level)
        })
    };
    assert!(!from("lapin", "TRACE"), "lapin logged at trace");
    assert!(
        !from("amq_protocol", "TRACE"),
        "amq_protocol logged at trace"
    );
    assert!(from("lapin", "DEBUG"), "lapin still logs at debug: {text}");
    assert!(
        text.contains("lapin and amq_protocol stay at debug"),
        "the cap is said: {text}"
    );
    assert!(!text.contains("Via Segreta"), "a body in the log: {text}");
    let _ = std::fs::remove_dir_all(dir);
    app.cleanup().await;
}

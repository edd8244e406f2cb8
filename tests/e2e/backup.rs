//! `raccordo backup` and `raccordo restore` through the real binary (issue 20, item 3):
//! nothing lost, no email sent twice after a restore, the key's fingerprint checked, a
//! database in use never overwritten without `--force`.

use std::path::{Path, PathBuf};
use std::process::Output;

use raccordo::serve::Workers;
use raccordo_core::settings::Settings;
use raccordo_e2e::upgrade::{columns, facts};
use raccordo_e2e::{TestApp, prepare_with, spawn_app};
use secrecy::ExposeSecret;
use serde_json::json;
use uuid::Uuid;

fn backup_dir() -> PathBuf {
    std::env::temp_dir().join(format!("raccordo-backup-{}", Uuid::new_v4().simple()))
}

/// The URL of another database on the same server, for a restore.
fn other_database(settings: &Settings) -> String {
    let mut url = url::Url::parse(settings.database.url.expose_secret()).expect("database.url");
    let id = Uuid::new_v4().simple().to_string();
    url.set_path(&format!("/raccordo_test_{}", &id[..16]));
    url.to_string()
}

async fn run(app: &TestApp, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = app.command();
    command.args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().await.expect("raccordo runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

async fn offer(app: &TestApp, unit: &str) {
    let event = app.event(
        "housing.unit.v1",
        json!({"unit_id": unit, "action": "offered", "comune_istat": "015146",
               "address": "Via del Ripristino 2, Milano", "places": 4,
               "reception_kind": "CAS", "building_type": "appartamento",
               "owner_declaration": true}),
    );
    app.publish(&event).await;
}

async fn drop_database(url: &str) {
    let mut settings = Settings::load().expect("settings");
    settings.database.url = url.to_owned().into();
    let _ = raccordo_core::db::drop_database(&settings.database).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_and_restore_lose_nothing_and_send_no_email_twice() {
    let mut app = spawn_app().await;
    offer(&app, "BK-0001").await;
    offer(&app, "BK-0002").await;
    app.settle().await;
    let sent_before = app.emails().len();
    assert!(sent_before > 0, "the offers were emailed");
    let dir = backup_dir();
    let dir_text = dir.to_string_lossy().into_owned();
    let output = run(&app, &[], &["backup", &dir_text, "--definitions"]).await;
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("[1/"),
        "progress shown: {}",
        text(&output)
    );
    let manifest = raccordo::backup::read_manifest(&dir).expect("a manifest");
    assert_eq!(manifest.release, env!("CARGO_PKG_VERSION"));
    assert_eq!(
        manifest.migration_version,
        raccordo_core::db::latest_known()
    );
    assert_eq!(
        manifest.pseudonym_key_fingerprint,
        raccordo_eviction::Pseudonymizer::from_settings(&app.settings.eviction).fingerprint()
    );
    assert!(manifest.definitions.is_some() && dir.join("definitions.json").exists());
    app.stop_workers().await;
    let shape = columns(&app.pool).await;
    let before = facts(&app.pool, &shape).await;

    let original = app.settings.database.url.expose_secret().to_owned();
    let restored = other_database(&app.settings);
    let output = run(
        &app,
        &[("RACCORDO__DATABASE__URL", restored.as_str())],
        &["restore", &dir_text],
    )
    .await;
    assert!(output.status.success(), "{}", text(&output));
    // The hub goes on from the restored database, the same broker and mail server.
    app.settings.database.url = restored.clone().into();
    app.pool = raccordo_core::db::connect(&app.settings.database)
        .await
        .expect("the restored database");
    assert_eq!(facts(&app.pool, &shape).await, before, "nothing lost");
    let app = app.start(Workers::All).await;
    app.settle().await;
    assert_eq!(app.emails().len(), sent_before, "nothing sent again");
    offer(&app, "BK-0003").await;
    app.settle().await;
    let emails = app.emails();
    assert!(emails.len() > sent_before, "the restored hub works");
    let mut pairs: Vec<(Option<String>, Vec<String>)> = emails
        .iter()
        .map(|m| (m.header("X-Raccordo-Notification"), m.to.clone()))
        .collect();
    pairs.sort();
    pairs.dedup();
    assert_eq!(pairs.len(), emails.len(), "no email sent twice");
    app.cleanup().await;
    drop_database(&original).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_restore_refuses_another_key_a_damaged_dump_and_a_database_in_use() {
    let app = prepare_with(|_| {}).await;
    let dir = backup_dir();
    let dir_text = dir.to_string_lossy().into_owned();
    let output = run(&app, &[], &["backup", &dir_text]).await;
    assert!(output.status.success(), "{}", text(&output));
    let shape = columns(&app.pool).await;
    let before = facts(&app.pool, &shape).await;

    // The configured database holds the hub's tables.
    let output = run(&app, &[], &["restore", &dir_text]).await;
    assert!(!output.status.success());
    assert!(
        text(&output).contains("not empty") && text(&output).contains("--force"),
        "{}",
        text(&output)
    );

    // Another key: refused before any database is touched.
    let elsewhere = other_database(&app.settings);
    let other_key = "4f7d1c0e9b8a7f6e5d4c3b2a19081726354f6e7d8c9bab0c1d2e3f4a5b6c7d8e";
    let output = run(
        &app,
        &[
            ("RACCORDO__DATABASE__URL", elsewhere.as_str()),
            ("RACCORDO__EVICTION__PSEUDONYM_KEY", other_key),
        ],
        &["restore", &dir_text],
    )
    .await;
    assert!(!output.status.success());
    assert!(text(&output).contains("fingerprint"), "{}", text(&output));
    assert!(!database_exists(&app, &elsewhere).await);

    // A damaged dump: refused.
    let damaged = backup_dir();
    copy_damaged(&dir, &damaged);
    let output = run(
        &app,
        &[("RACCORDO__DATABASE__URL", elsewhere.as_str())],
        &["restore", &damaged.to_string_lossy()],
    )
    .await;
    assert!(!output.status.success());
    assert!(text(&output).contains("damaged"), "{}", text(&output));

    // --force replaces the database in use with the backup's.
    sqlx::query("DELETE FROM referents")
        .execute(&app.pool)
        .await
        .expect("lose the referents");
    app.pool.close().await;
    let output = run(&app, &[], &["restore", &dir_text, "--force"]).await;
    assert!(output.status.success(), "{}", text(&output));
    let pool = raccordo_core::db::connect(&app.settings.database)
        .await
        .expect("the restored database");
    assert_eq!(facts(&pool, &shape).await, before);
    pool.close().await;
    app.cleanup().await;
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&damaged);
}

async fn database_exists(app: &TestApp, url: &str) -> bool {
    let name = url.rsplit('/').next().unwrap_or_default().to_owned();
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(&app.pool)
        .await
        .expect("pg_database")
}

fn copy_damaged(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("a folder");
    for name in ["manifest.json", "database.dump"] {
        std::fs::copy(from.join(name), to.join(name)).expect("copy");
    }
    let dump = to.join("database.dump");
    let mut bytes = std::fs::read(&dump).expect("the dump");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&dump, bytes).expect("write");
}

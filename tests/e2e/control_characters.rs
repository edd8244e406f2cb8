//! Issue 17, finding 2: one character never stops the mail. A CR, LF, NUL or other control
//! character is refused at every edge — the CSV imports, the registry event — and a row
//! stored before that (written here by hand, as an old row would be) reaches the mailer
//! without stopping it; a sender that stops all the same makes `/readyz` answer 503 and is
//! started again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use raccordo::serve::Workers;
use raccordo_core::health::Health;
use raccordo_e2e::{TestApp, http_get, prepare_with, spawn_app};
use raccordo_mailer::delivery::{Mailer, Round, Rounds, run_mailer, transport_from_settings};

const MILANO: &str = "015146";

fn offer(unit_id: &str) -> Value {
    json!({
        "unit_id": unit_id, "action": "offered", "comune_istat": MILANO,
        "address": "Via Padova 1, Milano", "places": 4, "reception_kind": "CAS",
        "building_type": "appartamento", "owner_declaration": true
    })
}

/// Deliveries not delivered (pending or failed).
async fn undelivered(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE delivered_at IS NULL")
        .fetch_one(&app.pool)
        .await
        .expect("count")
}

#[tokio::test]
async fn issue17_f2_a_stored_name_with_cr_lf_never_stops_the_mail() {
    let app = spawn_app().await;
    // A referent written before the edges refused control characters: PostgreSQL keeps CR,
    // LF, ESC and C1 (not NUL, which no text column can hold).
    sqlx::query(
        r#"
        INSERT INTO referents (referent_id, institution, role, email, name, scope_kind, scope_value)
        VALUES ('pref-legacy', $1, 'stazione_appaltante', 'legacy@prefettura.mi.example', $2, 'all', NULL)
        "#,
    )
    .bind("Prefettura\u{1b}[2J di Milano\u{85}")
    .bind("Ufficio gare\r\nBcc: intruso@evil.example")
    .execute(&app.pool)
    .await
    .expect("an old row");

    app.publish(&app.event("housing.unit.v1", offer("CC-1")))
        .await;

    // pref-sa and the legacy referent get housing.offered, com-milano housing.ack.
    let mails = app.wait_for_emails(3).await;
    let legacy: Vec<_> = mails
        .iter()
        .filter(|m| m.to.iter().any(|to| to.contains("legacy@")))
        .collect();
    assert_eq!(legacy.len(), 1, "the legacy referent still gets its email");
    assert_eq!(
        legacy[0].header("To").as_deref(),
        Some("legacy@prefettura.mi.example"),
        "the name is left out, the address kept"
    );
    assert!(mails.iter().all(|m| m.header("Bcc").is_none()));
    assert!(
        mails
            .iter()
            .all(|m| m.to.iter().all(|to| !to.contains("intruso")))
    );

    // The mailer goes on: the next notification reaches everyone too.
    app.publish(&app.event("housing.unit.v1", offer("CC-2")))
        .await;
    app.wait_for_emails(6).await;
    app.settle().await;
    assert_eq!(app.emails().len(), 6);
    assert_eq!(undelivered(&app).await, 0);
    assert!(app.dead_letters().await.is_empty());
    app.cleanup().await;
}

/// Runs `raccordo import TABLE FILE` with `csv` as the file: (success, stderr).
async fn import(app: &TestApp, table: &str, csv: &str) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("raccordo-import-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join(format!("{table}.csv"));
    std::fs::write(&file, csv).expect("write the CSV");
    let output = app
        .command()
        .args(["import", table])
        .arg(&file)
        .output()
        .await
        .expect("raccordo import runs");
    let _ = std::fs::remove_dir_all(dir);
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn issue17_f2_an_import_with_a_control_character_is_refused_and_imports_nothing() {
    let app = prepare_with(|_| {}).await;
    let referents_before: i64 = sqlx::query_scalar("SELECT count(*) FROM referents")
        .fetch_one(&app.pool)
        .await
        .expect("count");

    let (ok, stderr) = import(
        &app,
        "referents",
        "referent_id,institution,role,email,name,comune_istat,ambito,zona\n\
         r-clean,Comune di Rho,comune,clean@comune.rho.example,Ufficio,015182,,\n\
         r-crlf,Comune di Rho,comune,crlf@comune.rho.example,\"Ufficio\r\nBcc: intruso@evil.example\",015182,,\n\
         r-nul,Comune di Rho\0,comune,nul@comune.rho.example,Ufficio,015182,,\n\
         r-c1,Comune di Rho,comune,c1@comune.rho.example,Uff\u{85}icio,,Rho,\n",
    )
    .await;

    assert!(!ok, "the import fails");
    assert!(stderr.contains("Nothing imported"), "{stderr}");
    for expected in [
        "line 3: column name holds a control character",
        "line 5: column institution holds a control character",
        "line 6: column name holds a control character",
    ] {
        assert!(stderr.contains(expected), "{expected}: {stderr}");
    }
    assert!(!stderr.contains("intruso"), "{stderr}");
    let referents_after: i64 = sqlx::query_scalar("SELECT count(*) FROM referents")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(referents_after, referents_before, "nothing imported");

    let (ok, stderr) = import(
        &app,
        "comuni",
        "istat,nome,popolazione,zona_omogenea,ambito\n\
         015998,Nuovo Comune,1000,Nord Ovest,Rho\n\
         015999,Altro\u{7} Comune,1000,Nord Ovest,Rho\n",
    )
    .await;

    assert!(!ok, "the import fails");
    assert!(
        stderr.contains("line 3: column nome holds a control character"),
        "{stderr}"
    );
    let new: i64 =
        sqlx::query_scalar("SELECT count(*) FROM comuni WHERE istat IN ('015998', '015999')")
            .fetch_one(&app.pool)
            .await
            .expect("count");
    assert_eq!(new, 0, "nothing imported");
    app.cleanup().await;
}

#[tokio::test]
async fn issue17_f2_a_registry_event_with_a_control_character_is_dead_lettered_naming_the_field() {
    let app = spawn_app().await;
    let upsert = |id: &str, institution: &str, name: &str| {
        json!({"referent_id": id, "action": "upsert", "institution": institution,
               "role": "stazione_appaltante", "email": format!("{id}@prefettura.mi.example"),
               "name": name, "scope": {}})
    };
    app.publish(&app.event(
        "registry.referent.v1",
        upsert(
            "r-crlf",
            "Prefettura",
            "Ufficio\r\nBcc: intruso@evil.example",
        ),
    ))
    .await;
    app.publish(&app.event(
        "registry.referent.v1",
        upsert("r-nul", "Prefettura\u{0}", "Ufficio"),
    ))
    .await;
    app.publish(&app.event(
        "registry.referent.v1",
        upsert("r-c1", "Prefettura", "Uff\u{9b}icio"),
    ))
    .await;

    let dead = app.wait_for_dead(3).await;
    let mut reasons: Vec<String> = dead.iter().map(|d| d.error.clone()).collect();
    reasons.sort();
    assert_eq!(
        reasons,
        vec![
            "schema violation in registry.referent.v1: at /institution: holds a control character (CR, LF, NUL or another C0/C1 character)",
            "schema violation in registry.referent.v1: at /name: holds a control character (CR, LF, NUL or another C0/C1 character)",
            "schema violation in registry.referent.v1: at /name: holds a control character (CR, LF, NUL or another C0/C1 character)",
        ]
    );
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM referents WHERE referent_id LIKE 'r-%'")
            .fetch_one(&app.pool)
            .await
            .expect("count");
    assert_eq!(stored, 0);
    // The registry worker goes on: a clean event is applied.
    app.publish(&app.event(
        "registry.referent.v1",
        upsert("r-clean", "Prefettura", "Ufficio gare"),
    ))
    .await;
    app.settle().await;
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM referents WHERE referent_id = 'r-clean'")
            .fetch_one(&app.pool)
            .await
            .expect("count");
    assert_eq!(stored, 1);
    app.cleanup().await;
}

/// The mailer's rounds, made to panic outside any one delivery while `broken` is set: what
/// a defect in a sender's own loop does to it.
struct Breakable {
    mailer: Mailer,
    broken: AtomicBool,
}

#[async_trait]
impl Rounds for Breakable {
    async fn send_due(&self) -> Result<Round, sqlx::Error> {
        assert!(
            !self.broken.load(Ordering::SeqCst),
            "a defect in the sender's loop"
        );
        self.mailer.send_due().await
    }

    fn round_size(&self) -> usize {
        Rounds::round_size(&self.mailer)
    }
}

/// Polls `/readyz` until `done(status, body)` holds (bounded).
async fn wait_readyz(
    addr: std::net::SocketAddr,
    what: &str,
    done: impl Fn(u16, &str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = http_get(addr, "/readyz").await;
        if done(status, &body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{what}: {status} {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn issue17_f2_readyz_a_sender_that_stops_answers_503_until_it_is_restarted() {
    // The hub's own workers, without a mailer: this test runs the mailer's senders itself.
    let app = prepare_with(|_| {}).await.start(Workers::Housing).await;
    let settings = &app.settings;
    let mailer = Mailer::new(
        app.pool.clone(),
        transport_from_settings(&settings.mail).expect("the SMTP sink's settings"),
        &settings.mail.from,
        &settings.retry,
        1,
    );
    let rounds = Arc::new(Breakable {
        mailer,
        broken: AtomicBool::new(true),
    });
    let health = Health::default();
    let token = CancellationToken::new();
    let (_commits, woken) = tokio::sync::watch::channel(0_u64);
    let (addr, http) = raccordo_core::http::serve_http(
        "127.0.0.1:0",
        app.pool.clone(),
        health.clone(),
        token.clone(),
    )
    .await
    .expect("/readyz listens");
    let senders = tokio::spawn(run_mailer(
        rounds.clone(),
        1,
        woken,
        Duration::from_millis(100),
        health.clone(),
        token.clone(),
    ));

    // The sender panics on its first round: not running, and /readyz says so.
    let body = wait_readyz(
        addr,
        "a stopped sender makes /readyz 503",
        |status, body| status == 503 && body.contains("mailer-sender-0: stopped"),
    )
    .await;
    assert!(body.contains("database: ok"), "{body}");
    app.publish(&app.event("housing.unit.v1", offer("RZ-1")))
        .await;
    // Restarted with a growing pause, it stops again while the defect lasts.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, body) = http_get(addr, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(app.emails().is_empty());

    // The defect gone, the next restart sends: ready again, and the emails leave.
    rounds.broken.store(false, Ordering::SeqCst);
    wait_readyz(addr, "a restarted sender makes /readyz 200", |status, _| {
        status == 200
    })
    .await;
    app.wait_for_emails(2).await;
    assert_eq!(undelivered(&app).await, 0);

    token.cancel();
    senders.await.expect("the senders stop");
    let _ = http.await;
    app.cleanup().await;
}

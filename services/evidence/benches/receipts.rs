//! PEC receipts processed per second (D2, issue 18 "Measure"): N PEC deliveries in a
//! database of the bench's own, 2·N receipts (acceptance and delivery, as the simulator
//! writes them) in a mailbox of its own on the project's Dovecot, then the reader's rounds
//! until every one is handled. Prints receipts/s and the rounds' commits.
//!
//! `cargo bench -p raccordo-evidence --bench receipts [-- N]` (default N = 1000); the
//! database of `RACCORDO__DATABASE__URL` (or the default) with another name, Dovecot of
//! `RACCORDO_TEST_IMAP_URL` (or scripts/services.sh's).

use std::time::{Duration, Instant};

use raccordo_core::settings::Settings;
use raccordo_evidence::daticert::ReceiptType;
use raccordo_evidence::imap::{Appender, ImapUrl, Mailbox};
use raccordo_evidence::pec::read_round;
use raccordo_evidence::simulator::compose::{ReceiptSpec, compose_receipt};
use secrecy::ExposeSecret;
use uuid::Uuid;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let n: usize = std::env::args()
        .filter_map(|a| a.parse().ok())
        .next()
        .unwrap_or(1000);
    let mut settings = Settings::load()?;
    let id = Uuid::new_v4().simple().to_string();
    let mut url = url::Url::parse(settings.database.url.expose_secret())?;
    url.set_path(&format!("/raccordo_bench_pec_{}", &id[..12]));
    settings.database.url = url.to_string().into();
    raccordo_core::db::create_database_if_missing(&settings.database).await?;
    let pool = raccordo_core::db::connect(&settings.database).await?;
    raccordo_core::db::migrate(&pool).await?;

    let notification = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO notifications (id, kind, payload) VALUES ($1, 'housing.offered', '{}')",
    )
    .bind(notification)
    .execute(&pool)
    .await?;
    let addresses: Vec<String> = (0..n)
        .map(|i| format!("ente{i}@pec.bench.example"))
        .collect();
    let references: Vec<String> = (0..n)
        .map(|i| format!("<bench.{i}@raccordo.example>"))
        .collect();
    sqlx::query(
        r#"
        INSERT INTO deliveries (notification_id, email, referent_id, institution, role, channel,
                                message_id, delivered_at, state)
        SELECT $1, a, 'r' || a, 'Ente', 'comune', 'pec', m, now(), 'sent'
        FROM UNNEST($2::TEXT[], $3::TEXT[]) AS u (a, m)
        "#,
    )
    .bind(notification)
    .bind(&addresses)
    .bind(&references)
    .execute(&pool)
    .await?;

    let base = std::env::var("RACCORDO_TEST_IMAP_URL")
        .unwrap_or_else(|_| "imap://raccordo:raccordo@127.0.0.1:10143/INBOX".into());
    let mailbox = ImapUrl::parse(&base)?.with_mailbox(&format!("bench-{}", &id[..12]));
    let mut appender = Appender::new(mailbox.clone(), Duration::from_secs(30));
    let started = Instant::now();
    for (i, (address, reference)) in addresses.iter().zip(&references).enumerate() {
        for kind in [ReceiptType::Accettazione, ReceiptType::AvvenutaConsegna] {
            let receipt = compose_receipt(&ReceiptSpec {
                kind,
                reference,
                mittente: "raccordo@pec.bench.example",
                destinatario: address,
                oggetto: "Nuova disponibilità di alloggio",
                gestore: "Gestore PEC simulato",
                domain: "pec.sim.example",
                at: time::OffsetDateTime::now_utc(),
                errore: "nessuno",
                errore_esteso: None,
                original: Some(b"Subject: x\r\n\r\nbody\r\n"),
                serial: i as u64,
            });
            appender.append(&receipt).await?;
        }
    }
    appender.close().await;
    let appended = started.elapsed();

    let database = settings.database.database_name()?;
    let commits_before = raccordo_core::db::commit_count(&settings.database, &database).await?;
    let mut reader = Mailbox::open(&mailbox, Duration::from_secs(30)).await?;
    let started = Instant::now();
    let mut handled = 0;
    let mut rounds = 0;
    while handled < 2 * n {
        let round = read_round(
            &pool,
            &raccordo_core::fallback::FallbackPolicy::default(),
            &mut reader,
        )
        .await?;
        if round == 0 {
            break;
        }
        handled += round;
        rounds += 1;
    }
    let took = started.elapsed();
    let commits =
        raccordo_core::db::commit_count(&settings.database, &database).await? - commits_before;
    reader.close().await;
    let delivered: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM deliveries WHERE notification_id = $1 AND state = 'pec_delivered'",
    )
    .bind(notification)
    .fetch_one(&pool)
    .await?;
    pool.close().await;
    raccordo_core::db::drop_database(&settings.database).await?;

    println!(
        "receipts: {handled} handled in {:.2} s = {:.0} receipts/s ({rounds} rounds, {commits} commits); {delivered}/{n} deliveries pec_delivered; appending them took {:.2} s",
        took.as_secs_f64(),
        handled as f64 / took.as_secs_f64().max(1e-9),
        appended.as_secs_f64()
    );
    if delivered != i64::try_from(n)? {
        return Err("not every delivery was delivered".into());
    }
    Ok(())
}

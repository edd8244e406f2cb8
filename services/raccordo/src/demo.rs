//! `raccordo demo`: the whole flow on the sample data of the Città Metropolitana di Milano,
//! in its own database and prefix so it never touches a real installation, with emails
//! written as `.eml` files unless SMTP is configured. Safe to run again: it starts afresh.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use lapin::options::QueuePurgeOptions;

use raccordo_core::amqp::{Topology, connect};
use raccordo_core::db;
use raccordo_core::registry::{Actor, import_comuni, import_referents};
use raccordo_core::settings::{MailTransportKind, Settings};

use raccordo_evidence::imap::ImapUrl;
use raccordo_evidence::simulator::{Answer, PecSimulator, SimulatorOptions};

use crate::database::connect_db;
use crate::serve::{App, Workers};

const COMUNI: &str = include_str!("../../../data/comuni_mi.csv");
const REFERENTS: &str = include_str!("../../../data/referents_sample.csv");
/// Two referents with a PEC address: the Prefettura's contracting office and Rho's servizi
/// sociali, whose provider (the simulator) refuses the PEC, so the email stands in (D3).
const REFERENTS_PEC: &str = include_str!("../../../data/demo/referents_pec.csv");
/// The PEC address the demo's simulated provider refuses.
const REFUSED_PEC: &str = "servizisociali.rho@pec.comune.rho.example";
const HOUSING_EVENTS: &str = include_str!("../../../data/demo/housing.ndjson");
const OCCUPANCY_EVENTS: &str = include_str!("../../../data/demo/occupancy.ndjson");

/// Turns the configured settings into the demo's own: database `<name>_demo`, prefix
/// `<prefix>-demo`, outbox `<outbox_dir>/demo`, HTTP on a free port.
pub(crate) fn demo_settings(mut settings: Settings) -> anyhow::Result<Settings> {
    use secrecy::ExposeSecret;
    let name = settings.database.database_name()?;
    let mut url = url::Url::parse(settings.database.url.expose_secret())
        .context("database.url is not a URL")?;
    url.set_path(&format!("/{name}_demo"));
    settings.database.url = url.to_string().into();
    settings.amqp.prefix = format!("{}-demo", settings.amqp.prefix);
    settings.mail.outbox_dir = settings.mail.outbox_dir.join("demo");
    settings.http.addr = "127.0.0.1:0".into();
    // The demo's events come from the sample files, without a broker user each, and its
    // families are invented: the development key and anonymous publishers are fine here.
    settings.publishers.allow_anonymous = true;
    settings.eviction.allow_development_key = true;
    // Its emails go to files by default (no SMTP server needed): the demo allows that.
    settings.mail.allow_file_transport = true;
    crate::demo_ingest::configure(&mut settings);
    Ok(settings)
}

/// The demo's console operator.
const DEMO_OPERATOR: &str = "demo";

/// Runs the demo, writing progress and the summary to `out`; with `keep_console`, the hub
/// and its console stay up with the demo's data until Ctrl-C.
pub async fn run(
    settings: Settings,
    keep_console: bool,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let started = Instant::now();
    let (mut settings, password) = with_console(demo_settings(settings)?)?;
    let database = settings.database.database_name()?;
    writeln!(out, "Raccordo demo — Città Metropolitana di Milano")?;
    writeln!(
        out,
        "  database {database}, broker prefix {}, emails: {}",
        settings.amqp.prefix,
        match settings.mail.transport {
            MailTransportKind::File => format!("files in {}", settings.mail.outbox_dir.display()),
            MailTransportKind::Smtp => "SMTP (mail.smtp_url)".to_owned(),
        }
    )?;

    step(out, "Starting afresh (database, queues, outbox folder)")?;
    start_afresh(&settings).await?;

    step(out, "Importing the registry")?;
    let pool = connect_db(&settings).await?;
    let (comuni, referents) = import_sample_registry(&pool).await?;
    let desks = crate::demo_asylum::import_desks(&pool).await?;
    writeln!(
        out,
        "  {comuni} comuni, {referents} referents, {desks} of the Tavolo provinciale asilo and its sportelli"
    )?;

    let simulator = with_pec(&mut settings, out).await?;
    let pec_count = import_demo_pec(&pool).await?;
    if simulator.is_some() {
        writeln!(out, "  {pec_count} referents receive their kinds by PEC")?;
    }

    step(out, "Starting every worker")?;
    let app = App::start(settings.clone(), Workers::All).await?;
    app.wait_ready(Duration::from_secs(30)).await?;
    writeln!(
        out,
        "  /healthz /readyz /metrics on http://{}",
        app.http_addr
    )?;
    if let Some(console) = app.console_addr {
        writeln!(
            out,
            "  console on http://{console}/ (operator {DEMO_OPERATOR}, password {password})"
        )?;
    }

    let ingest = app.ingest_addr.context("the demo serves HTTP ingestion")?;
    publish_sample_events(&settings, &pool, out).await?;
    let token = crate::demo_ingest::send_spreadsheet(&pool, ingest, out).await?;
    step(
        out,
        "Waiting for the hub to process them and send the emails",
    )?;
    wait_until_quiet(&settings, &pool, out).await?;
    crate::demo_ingest::follow_stream(ingest, &token, out).await?;
    evidence_steps(&settings, &pool, simulator.as_ref(), app.console_addr, out).await?;
    write_summary(&settings, &pool, out).await?;
    writeln!(
        out,
        "\nDone in {:.1} s. Inspect with: RACCORDO__AMQP__PREFIX={} RACCORDO__DATABASE__URL={} raccordo status",
        started.elapsed().as_secs_f64(),
        settings.amqp.prefix,
        settings_url(&settings)
    )?;
    if let (true, Some(console)) = (keep_console, app.console_addr) {
        writeln!(
            out,
            "\nThe console shows the demo's data: http://{console}/ — operator {DEMO_OPERATOR}, password {password}.\nThe hub keeps running; Ctrl-C stops it."
        )?;
        out.flush()?;
        crate::serve::wait_for_signal(app.token()).await;
    }
    let stopped = app.shutdown(Duration::from_secs(9)).await;
    if let Some(simulator) = simulator {
        simulator.stop().await;
    }
    anyhow::ensure!(stopped, "The workers did not stop within 9 s");
    pool.close().await;
    Ok(())
}

/// Turns the console on with an operator whose password is of this run only (returned, to
/// be printed): the demo's console is not left open to whoever else reaches the address.
fn with_console(mut settings: Settings) -> anyhow::Result<(Settings, String)> {
    let password = format!("{:016x}", rand::random::<u64>());
    settings.console.enabled = true;
    // Another demo (or console) may hold the usual port: then a free one, known now, since
    // the acknowledgement links of the emails name it.
    if std::net::TcpListener::bind(&settings.console.addr).is_err() {
        let free = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        settings.console.addr = free.to_string();
    }
    // The links referents press (D4), with a key of this run only.
    settings.console.public_url = format!("http://{}", settings.console.addr);
    settings.ack.key = format!(
        "{:032x}{:032x}",
        rand::random::<u128>(),
        rand::random::<u128>()
    )
    .into();
    settings
        .console
        .operators
        .push(raccordo_core::settings::OperatorSettings {
            name: DEMO_OPERATOR.into(),
            password_hash: Some(raccordo_console::hash_password(&password)?.into()),
            role: Some(raccordo_core::settings::ConsoleRole::Operator),
        });
    Ok((settings, password))
}

/// Proof of delivery in the demo: waits for the PEC receipts, then presses one
/// acknowledgement link as a social worker would.
async fn evidence_steps(
    settings: &Settings,
    pool: &sqlx::PgPool,
    simulator: Option<&PecSimulator>,
    console: Option<std::net::SocketAddr>,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    if let Some(simulator) = simulator {
        step(out, "Waiting for the PEC provider's receipts")?;
        let receipts = simulator
            .wait_for_receipts(pec_receipts_expected(pool).await?, Duration::from_secs(30))
            .await;
        writeln!(out, "  {receipts} receipts in the PEC mailbox")?;
        wait_until_quiet(settings, pool, out).await?;
        wait_for_receipts_read(pool).await?;
    }
    if let Some(console) = console {
        step(
            out,
            "A social worker of the ambito of Rho presses the link in the urgent alert",
        )?;
        match acknowledge_urgent_alert(settings, pool, console).await? {
            Some(200) => writeln!(
                out,
                "  the console answered 200: acknowledged, on the alert's timeline"
            )?,
            Some(status) => {
                anyhow::bail!("The console refused the demo's acknowledgement with {status}")
            }
            None => writeln!(
                out,
                "  no acknowledgement link in the alert (console.public_url unset)"
            )?,
        }
    }
    Ok(())
}

/// The demo's PEC provider (CONTRACT D2): the project's simulator, its receipts written into
/// a mailbox of this run on the project's Dovecot (`scripts/services.sh` starts it). Without
/// Dovecot the demo says so and goes on without PEC.
async fn with_pec(
    settings: &mut Settings,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<Option<PecSimulator>> {
    let port: u16 = std::env::var("RACCORDO_DOVECOT_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(10143);
    if tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        writeln!(
            out,
            "  PEC off: no IMAP server on 127.0.0.1:{port} (scripts/services.sh starts the project's Dovecot)"
        )?;
        return Ok(None);
    }
    let mailbox = format!("demo-pec-{}", raccordo_core::clock::now().unix_timestamp());
    let url = format!("imap://raccordo:raccordo@127.0.0.1:{port}/{mailbox}");
    let imap = ImapUrl::parse(&url).context("the demo's IMAP URL")?;
    let simulator = PecSimulator::start(SimulatorOptions::new(imap))
        .await
        .context("Failed to start the PEC provider simulator")?;
    simulator.answer(REFUSED_PEC, Answer::Refuse);
    settings.mail.pec_smtp_url = format!("smtp://{}", simulator.addr()).into();
    settings.mail.pec_imap_url = url.into();
    writeln!(
        out,
        "  PEC: simulated provider on {}, receipts into IMAP mailbox {mailbox} on 127.0.0.1:{port}",
        simulator.addr()
    )?;
    Ok(Some(simulator))
}

/// Gives two referents their PEC address, as a registry import does.
async fn import_demo_pec(pool: &sqlx::PgPool) -> anyhow::Result<u64> {
    let report = import_referents(
        pool,
        REFERENTS_PEC.as_bytes(),
        &Actor::import("data/demo/referents_pec.csv"),
    )
    .await?;
    anyhow::ensure!(
        report.errors.is_empty(),
        "data/demo/referents_pec.csv: {:?}",
        report.errors
    );
    Ok(report.updated + report.inserted)
}

/// The receipts the PEC deliveries sent should bring: an acceptance each, and a delivery
/// receipt for those the provider accepts.
async fn pec_receipts_expected(pool: &sqlx::PgPool) -> anyhow::Result<u64> {
    let (sent, refused): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE email <> $1), count(*) FILTER (WHERE email = $1) \
         FROM deliveries WHERE channel = 'pec' AND delivered_at IS NOT NULL",
    )
    .bind(REFUSED_PEC)
    .fetch_one(pool)
    .await?;
    Ok(u64::try_from(sent * 2 + refused).unwrap_or(0))
}

/// Waits (bounded) until no PEC delivery waits for its receipts.
async fn wait_for_receipts_read(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM deliveries WHERE channel = 'pec' AND state IN ('queued', 'sent', 'pec_accepted')",
        )
        .fetch_one(pool)
        .await?;
        if waiting == 0 || Instant::now() >= deadline {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Presses the acknowledgement button of the urgent eviction alert's email to the ambito of
/// Rho, as its social worker would: the link from the `.eml` file, a `POST` to the console.
/// Returns the console's HTTP status, or `None` when the email carries no link.
async fn acknowledge_urgent_alert(
    settings: &Settings,
    pool: &sqlx::PgPool,
    console: std::net::SocketAddr,
) -> anyhow::Result<Option<u16>> {
    let id: Option<uuid::Uuid> = sqlx::query_scalar(
        "SELECT n.id FROM notifications n JOIN deliveries d ON d.notification_id = n.id \
         WHERE n.kind = 'eviction.alert' AND n.urgent AND d.referent_id = 'ss-ambito-rho' \
         ORDER BY n.created_at LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    let Some(id) = id else { return Ok(None) };
    let file = settings
        .mail
        .outbox_dir
        .join(format!("{id}-ufficiodipiano@ambito.rho.example.eml"));
    let Ok(raw) = std::fs::read(&file) else {
        return Ok(None);
    };
    // The text part as a mail client shows it (quoted-printable decoded).
    let Some(email) = mail_parser::MessageParser::default()
        .parse(&raw)
        .and_then(|m| m.body_text(0).map(|t| t.into_owned()))
    else {
        return Ok(None);
    };
    let Some(start) = email.find("/ack/") else {
        return Ok(None);
    };
    let token: String = email[start + 5..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_' || *c == '.')
        .collect();
    let status = post(console, &format!("/ack/{token}")).await?;
    Ok(Some(status))
}

/// A `POST` without a body over HTTP/1.1; the status code.
async fn post(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .context("the console did not answer the acknowledgement")??;
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("the console's answer is not HTTP")
}

/// Drops the demo's database, empties its queues and its outbox folder, and sets it up again.
async fn start_afresh(settings: &Settings) -> anyhow::Result<()> {
    db::drop_database(&settings.database)
        .await
        .context("Failed to reach PostgreSQL (scripts/services.sh starts it)")?;
    db::create_database_if_missing(&settings.database).await?;
    purge_queues(settings).await?;
    if settings.mail.outbox_dir.exists() {
        for entry in std::fs::read_dir(&settings.mail.outbox_dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "eml") {
                std::fs::remove_file(&path)
                    .with_context(|| format!("Failed to remove {}", path.display()))?;
            }
        }
    }
    crate::setup::run(settings).await?;
    Ok(())
}

/// Publishes the sample housing, occupancy and eviction events, telling the story.
async fn publish_sample_events(
    settings: &Settings,
    pool: &sqlx::PgPool,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    step(out, "Comuni and the Prefettura publish housing units")?;
    let report = crate::publish::run(
        settings,
        HOUSING_EVENTS.as_bytes(),
        crate::publish::How::RAW,
        |_| {},
    )
    .await?;
    writeln!(out, "  {} events published with confirms", report.published)?;

    step(
        out,
        "The Prefettura and facility managers publish occupancy reports (Nord Milano fills its quota)",
    )?;
    let report = crate::publish::run(
        settings,
        OCCUPANCY_EVENTS.as_bytes(),
        crate::publish::How::RAW,
        |_| {},
    )
    .await?;
    writeln!(out, "  {} events published with confirms", report.published)?;

    step(
        out,
        "Courts publish eviction steps of two families; the one in Rho asks for help",
    )?;
    let published = crate::evictions::publish_demo(settings, pool).await?;
    writeln!(out, "  {published} events published with confirms")?;

    step(
        out,
        "The asylum desks report two vulnerable people (one consents), ask three domiciles and update the SPRAR list; a SPRAR facility frees places",
    )?;
    let published = crate::demo_asylum::publish(settings, pool).await?;
    writeln!(out, "  {published} events published with confirms")?;

    step(
        out,
        "The Tavolo sends this week's SPRAR priority list now (raccordo report priorities --send; by itself every Monday at 08:00)",
    )?;
    let (sent, _) = crate::report_priorities::send(settings).await?;
    writeln!(
        out,
        "  {} cases waiting, sent to {} recipients (the sportelli and the Tavolo provinciale asilo)",
        sent.waiting, sent.recipients
    )?;
    Ok(())
}

/// The notifications and their emails, the quota announcements, the families, the dead letters.
async fn write_summary(
    settings: &Settings,
    pool: &sqlx::PgPool,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let summary = summarize(pool, settings).await?;
    let quota = crate::report_coverage::announcements(pool).await?;
    let evictions = crate::evictions::demo_summary(pool, settings).await?;
    let asylum = crate::demo_asylum::summary(pool).await?;
    let dead = crate::dlq::list(settings, crate::dlq::Which::Dead).await?;

    writeln!(out, "\n{summary}")?;
    writeln!(out, "{quota}")?;
    writeln!(out, "{evictions}")?;
    writeln!(out, "{asylum}")?;
    writeln!(
        out,
        "Dead letters ({}): input that can never be processed",
        dead.len()
    )?;
    for m in &dead {
        writeln!(
            out,
            "  {}  {}",
            m.event_id.as_deref().unwrap_or("?"),
            m.error
        )?;
    }
    write_evidence(pool, out).await
}

/// Proof of delivery (CONTRACT §9): the deliveries by state and channel, and the timeline of
/// the urgent eviction alert, as `raccordo timeline` prints it.
async fn write_evidence(pool: &sqlx::PgPool, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let mut conn = pool.acquire().await?;
    let counts = raccordo_core::db::evidence::state_counts(&mut conn).await?;
    let line = counts
        .iter()
        .map(|(channel, state, n)| format!("{n} {state} ({channel})"))
        .collect::<Vec<_>>()
        .join(", ");
    writeln!(out, "\nProof of delivery: {line}")?;
    let urgent: Option<uuid::Uuid> = sqlx::query_scalar(
        "SELECT id FROM notifications WHERE kind = 'eviction.alert' AND urgent ORDER BY created_at LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(id) = urgent
        && let Some(timeline) = raccordo_core::db::evidence::timeline(&mut conn, id).await?
    {
        writeln!(
            out,
            "Timeline of the urgent eviction alert (raccordo timeline {id}):"
        )?;
        write!(
            out,
            "{}",
            crate::timeline::format(&timeline, crate::table::Format::Table)?
        )?;
    }
    Ok(())
}

/// Imports the sample comuni and referents (`data/`); the numbers of each inserted.
pub(crate) async fn import_sample_registry(pool: &sqlx::PgPool) -> anyhow::Result<(u64, u64)> {
    let comuni = import_comuni(pool, COMUNI.as_bytes()).await?;
    let referents = import_referents(
        pool,
        REFERENTS.as_bytes(),
        &Actor::import("data/referents_sample.csv (demo)"),
    )
    .await?;
    anyhow::ensure!(
        comuni.errors.is_empty() && referents.errors.is_empty(),
        "The sample data does not import: {:?} {:?}",
        comuni.errors,
        referents.errors
    );
    Ok((comuni.inserted, referents.inserted))
}

/// The demo database's URL without its password, for the hint printed at the end.
fn settings_url(settings: &Settings) -> String {
    use secrecy::ExposeSecret;
    match url::Url::parse(settings.database.url.expose_secret()) {
        Ok(mut url) => {
            let _ = url.set_password(None);
            url.to_string()
        }
        Err(_) => String::new(),
    }
}

pub(crate) fn step(out: &mut (dyn Write + Send), text: &str) -> std::io::Result<()> {
    writeln!(out, "• {text}…")?;
    out.flush()
}

/// Empties the demo's queues from an earlier run. Purged, not deleted: quorum queues are
/// not made to be created and deleted over and over.
async fn purge_queues(settings: &Settings) -> anyhow::Result<()> {
    let topology = Topology::from_settings(settings);
    let connection = connect(&settings.amqp, "demo")
        .await
        .context("Failed to connect to RabbitMQ (scripts/services.sh starts it)")?;
    for name in topology.all_queues() {
        let channel = connection.create_channel().await?;
        // A missing queue (404, first run) closes the channel: nothing to purge then. Any
        // other refusal would leave an earlier run's messages in this one.
        match channel
            .queue_purge(name.clone().into(), QueuePurgeOptions::default())
            .await
        {
            Ok(_) => {}
            Err(error) if is_not_found(&error) => {}
            Err(error) => {
                return Err(error).with_context(|| format!("Failed to purge the queue {name}"));
            }
        }
    }
    let _ = connection.close(200, "demo".into()).await;
    Ok(())
}

/// The broker's `404 NOT_FOUND` channel error.
fn is_not_found(error: &lapin::Error) -> bool {
    matches!(error.kind(), lapin::ErrorKind::ProtocolError(e) if e.get_id() == 404)
}

/// Waits until the inbound queues are empty and every notification is published and
/// sent, and the counts have not moved for a second; shows progress; bounded to 60 s.
async fn wait_until_quiet(
    settings: &Settings,
    pool: &sqlx::PgPool,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = None;
    let mut stable_since = Instant::now();
    loop {
        let status = crate::status::collect(settings).await?;
        let queued: u32 = status
            .queues
            .iter()
            .filter(|q| !q.name.ends_with(".dead") && !q.name.ends_with(".parked"))
            .filter_map(|q| q.messages)
            .sum();
        let processed = db::count_processed(&mut *pool.acquire().await?, None).await?;
        let now = (
            processed,
            status.dead,
            status.deliveries_sent,
            status.outbox_pending,
            status.deliveries_pending,
            queued,
        );
        if last != Some(now) {
            write!(
                out,
                "\r  events processed {processed}, dead {}, emails sent {}, pending {}   ",
                status.dead,
                status.deliveries_sent,
                status.outbox_pending + status.deliveries_pending
            )?;
            out.flush()?;
            last = Some(now);
            stable_since = Instant::now();
        } else if queued == 0
            && status.outbox_pending == 0
            && status.deliveries_pending == 0
            && stable_since.elapsed() > Duration::from_secs(1)
        {
            writeln!(out)?;
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "The hub did not finish within 60 s; see `raccordo status`"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One line per notification: its recipients, and whether each email went out.
async fn summarize(pool: &sqlx::PgPool, settings: &Settings) -> anyhow::Result<String> {
    let lines = db::notification_lines(&mut *pool.acquire().await?)
        .await
        .context("Failed to read the notifications")?;
    let mut out = String::from("Notifications and their emails\n");
    let mut table = Vec::new();
    let mut counts: Vec<(&str, i64)> = Vec::new();
    for line in &lines {
        let recipients = line.recipients.join(", ");
        let to = match (line.sent + line.unsent, line.unsent) {
            (0, _) => "UNDELIVERABLE: no referent matches".to_owned(),
            (_, 0) => recipients,
            (_, n) => format!("{recipients} ({n} not sent)"),
        };
        let mut id = line.id.to_string();
        id.truncate(8);
        table.push(vec![
            line.kind.clone(),
            line.comune_nome.clone().unwrap_or_default(),
            id,
            to,
        ]);
        match counts.iter_mut().find(|(k, _)| *k == line.kind) {
            Some((_, n)) => *n += line.sent,
            None => counts.push((&line.kind, line.sent)),
        }
    }
    out.push_str(&crate::table::render(
        &["kind", "comune", "id", "sent to"],
        &table,
    ));
    out.push_str("\nEmails per kind: ");
    out.push_str(
        &counts
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    out.push('\n');
    if settings.mail.transport == MailTransportKind::File {
        out.push_str(&format!(
            "Open them in any mail client: {}/<id>-<recipient>.eml\n",
            settings.mail.outbox_dir.display()
        ));
    }
    Ok(out)
}

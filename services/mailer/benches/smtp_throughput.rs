//! SMTP throughput: lettre's stock pooled transport against Raccordo's `SmtpTransport`.
//!
//! Sends `BENCH_MESSAGES` (default 500) realistic `housing.offered` emails to a local
//! `raccordo-smtp-sink`:
//! (a) sequentially with lettre's `AsyncSmtpTransport` (one pooled connection reused),
//! (b) sequentially with `SmtpTransport` (pool of one),
//! (c) with `SmtpTransport` and 4 concurrent senders (pool of four),
//! and prints messages per second and latency per configuration.
//!
//! Run with `cargo bench -p raccordo-mailer`. The difference between (a) and (b) is the
//! `TCP_NODELAY` socket (see `smtp/mod.rs`); (c) shows what concurrency adds on top.

use std::time::{Duration, Instant};

use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use raccordo_mailer::{
    OutgoingEmail, RecipientContext, SmtpOptions, SmtpTransport, message_id_for, render,
};
use raccordo_smtp_sink::SmtpSink;
use serde_json::json;
use tokio::task::JoinSet;
use uuid::Uuid;

const CONCURRENT_SENDERS: usize = 4;

/// The outcome of one configuration.
struct Run {
    name: &'static str,
    messages: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

fn emails(count: usize) -> Vec<OutgoingEmail> {
    let recipient = RecipientContext {
        name: Some("Ufficio accoglienza".into()),
        institution: "Prefettura di Milano".into(),
        role: "stazione_appaltante".into(),
    };
    (0..count)
        .map(|n| {
            let notification_id = Uuid::new_v4();
            let payload = json!({
                "unit_id": format!("RHO-2025-{n:04}"),
                "comune_istat": "015182",
                "comune_nome": "Rho",
                "zona": "Nord Ovest",
                "address": format!("Via Madonna {n}"),
                "places": 1 + n % 8,
                "reception_kind": if n % 2 == 0 { "CAS" } else { "SPRAR" },
                "building_type": "appartamento",
                "available_from": "2025-04-01",
                "notes": "Appartamento al secondo piano, senza ascensore; chiavi presso l'ufficio tecnico comunale.",
                "update": n % 5 == 0,
            });
            let rendered = render("housing.offered", notification_id, &payload, &recipient)
                .expect("the benchmark payload renders");
            let to = format!("accoglienza{}@prefettura.example", n % 3);
            OutgoingEmail {
                from: "Raccordo <raccordo@cittametropolitana.mi.example>".into(),
                message_id: message_id_for(notification_id, &to, "raccordo.example"),
                to,
                to_name: recipient.name.clone(),
                subject: rendered.subject,
                text: rendered.text,
                html: rendered.html,
                kind: "housing.offered".into(),
                notification_id,
                urgent: false,
                reminder: false,
                list_unsubscribe: None,
                digest: false,
            }
        })
        .collect()
}

async fn lettre_stock(sink: &SmtpSink, emails: &[OutgoingEmail]) -> Run {
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(sink.port())
        .build();
    // Warm-up: open the pooled connection outside the measurement.
    transport
        .send(emails[0].to_message().expect("valid email"))
        .await
        .expect("warm-up accepted");
    let mut latencies = Vec::with_capacity(emails.len());
    let started = Instant::now();
    for email in emails {
        let sent = Instant::now();
        transport
            .send(email.to_message().expect("valid email"))
            .await
            .expect("accepted");
        latencies.push(sent.elapsed());
    }
    Run {
        name: "lettre AsyncSmtpTransport, 1 sender",
        messages: emails.len(),
        elapsed: started.elapsed(),
        latencies,
    }
}

async fn raccordo(
    sink: &SmtpSink,
    emails: &[OutgoingEmail],
    senders: usize,
    name: &'static str,
) -> Run {
    let transport = SmtpTransport::new(&SmtpOptions {
        url: format!("smtp://127.0.0.1:{}", sink.port()),
        timeout: Duration::from_secs(10),
        pool_size: senders,
        max_connections: senders,
        hello_name: None,
    })
    .expect("valid options");
    // Warm-up: open every pooled connection outside the measurement.
    let mut warm = JoinSet::new();
    for _ in 0..senders {
        let (transport, email) = (transport.clone(), emails[0].clone());
        warm.spawn(async move { transport.send(&email).await });
    }
    while let Some(done) = warm.join_next().await {
        done.expect("warm-up task").expect("warm-up accepted");
    }

    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for share in emails.chunks(emails.len().div_ceil(senders)) {
        let (transport, share) = (transport.clone(), share.to_vec());
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(share.len());
            for email in &share {
                let sent = Instant::now();
                transport.send(email).await.expect("accepted");
                latencies.push(sent.elapsed());
            }
            latencies
        });
    }
    let mut latencies = Vec::with_capacity(emails.len());
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done.expect("sender task"));
    }
    Run {
        name,
        messages: emails.len(),
        elapsed: started.elapsed(),
        latencies,
    }
}

fn print(runs: &[Run]) {
    println!(
        "\n{:<40} {:>8} {:>9} {:>12} {:>10} {:>10} {:>10}",
        "configuration", "messages", "seconds", "messages/s", "mean ms", "p50 ms", "p99 ms"
    );
    for run in runs {
        let mut sorted = run.latencies.clone();
        sorted.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let mean = sorted.iter().map(|d| ms(*d)).sum::<f64>() / sorted.len().max(1) as f64;
        let at = |q: f64| {
            sorted
                .get(((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1)))
                .map_or(0.0, |d| ms(*d))
        };
        println!(
            "{:<40} {:>8} {:>9.2} {:>12.1} {:>10.2} {:>10.2} {:>10.2}",
            run.name,
            run.messages,
            run.elapsed.as_secs_f64(),
            run.messages as f64 / run.elapsed.as_secs_f64(),
            mean,
            at(0.5),
            at(0.99),
        );
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument other than that selects nothing here.
    let messages: usize = std::env::var("BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(500);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime for the benchmark");

    runtime.block_on(async {
        let sink = SmtpSink::start().await.expect("the SMTP sink starts");
        let emails = emails(messages);
        let size = emails[0]
            .to_message()
            .expect("valid email")
            .formatted()
            .len();
        println!("SMTP throughput: {messages} messages of ~{size} bytes to a local sink.");

        let mut runs = Vec::new();
        for configuration in 0..3 {
            sink.clear();
            let run = match configuration {
                0 => lettre_stock(&sink, &emails).await,
                1 => raccordo(&sink, &emails, 1, "raccordo SmtpTransport, 1 sender").await,
                _ => {
                    raccordo(
                        &sink,
                        &emails,
                        CONCURRENT_SENDERS,
                        "raccordo SmtpTransport, 4 senders",
                    )
                    .await
                }
            };
            let warm_ups = if configuration == 2 {
                CONCURRENT_SENDERS
            } else {
                1
            };
            sink.wait_for(messages + warm_ups, Duration::from_secs(30))
                .await
                .expect("the sink received every message");
            runs.push(run);
        }
        print(&runs);
    });
}

//! The demo's HTTP door (CONTRACT 1.2 §10): a comune without AMQP sends its spreadsheet of
//! housing units over HTTP — a preview first, then the publish — and, at the end, reads
//! what the hub decided from the pull stream.

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Context;

use raccordo_core::settings::{PublisherRule, Settings};

use crate::http_client::HttpClient;

/// The demo's HTTP publisher: Sesto San Giovanni's protocol system.
pub(crate) const PUBLISHER: &str = "comune_sesto";
const SPREADSHEET: &str = include_str!("../../../data/demo/alloggi_sesto.csv");

/// HTTP ingestion on a free port, and Sesto's system among the publishers.
pub(crate) fn configure(settings: &mut Settings) {
    settings.ingest.addr = "127.0.0.1:0".into();
    settings.publishers.users.insert(
        PUBLISHER.into(),
        PublisherRule {
            types: vec!["housing.unit.v1".into()],
            comuni: vec!["015209".into()],
            stream_kinds: vec!["housing.*".into()],
            ..PublisherRule::default()
        },
    );
}

/// Makes Sesto's token and sends its spreadsheet: preview, then publish. Returns the token.
pub(crate) async fn send_spreadsheet(
    pool: &sqlx::PgPool,
    ingest: SocketAddr,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<String> {
    crate::demo::step(
        out,
        "Sesto San Giovanni, without AMQP, sends its spreadsheet of housing units over HTTP (POST /v1/csv/housing.unit.v1)",
    )?;
    writeln!(out, "  HTTP ingestion on http://{ingest}/v1/")?;
    let (_, token) = raccordo_ingest::tokens::add(pool, PUBLISHER).await?;
    let bearer = format!("Bearer {token}");
    let headers = [
        ("authorization", bearer.as_str()),
        ("content-type", "text/csv; charset=utf-8"),
    ];
    let mut client = HttpClient::connect(ingest).await?;
    let preview = client
        .send(
            "POST",
            "/v1/csv/housing.unit.v1?dry_run=true",
            &headers,
            SPREADSHEET,
        )
        .await?;
    anyhow::ensure!(
        preview.status == 200,
        "the preview answered {}: {}",
        preview.status,
        String::from_utf8_lossy(&preview.body)
    );
    let body = preview.json();
    writeln!(
        out,
        "  preview: {} of {} rows valid, nothing published",
        body["valid"], body["rows"]
    )?;
    let sent = client
        .send("POST", "/v1/csv/housing.unit.v1", &headers, SPREADSHEET)
        .await?;
    anyhow::ensure!(
        sent.status == 202,
        "the publish answered {}: {}",
        sent.status,
        String::from_utf8_lossy(&sent.body)
    );
    writeln!(
        out,
        "  published: {} events, 202 once the broker confirmed them",
        sent.json()["accepted"]
    )?;
    Ok(token)
}

/// Reads the stream to its end as Sesto's system would poll it, and says how many
/// notifications it gave.
pub(crate) async fn follow_stream(
    ingest: SocketAddr,
    token: &str,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    crate::demo::step(
        out,
        "Sesto's system polls what the hub decided (GET /v1/stream)",
    )?;
    let bearer = format!("Bearer {token}");
    let mut client = HttpClient::connect(ingest).await?;
    let mut after = String::new();
    let mut seen = 0;
    loop {
        let page = client
            .send(
                "GET",
                &format!("/v1/stream?after={after}&limit=100"),
                &[("authorization", bearer.as_str())],
                Vec::new(),
            )
            .await?;
        anyhow::ensure!(page.status == 200, "the stream answered {}", page.status);
        let page = page.json();
        let items = page["items"].as_array().map_or(0, Vec::len);
        if items == 0 {
            writeln!(
                out,
                "  {seen} housing notifications, ids and times only; try: {}",
                try_it(ingest, token)
            )?;
            return Ok(());
        }
        seen += items;
        after = page["next"]
            .as_str()
            .context("a page without next")?
            .to_owned();
    }
}

/// A command to try the stream by hand while the demo's hub runs.
pub(crate) fn try_it(ingest: SocketAddr, token: &str) -> String {
    format!("curl -sS 'http://{ingest}/v1/stream?limit=5' -H 'Authorization: Bearer {token}'")
}

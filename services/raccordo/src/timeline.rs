//! `raccordo timeline ID`: what happened to each delivery of a notification (CONTRACT D1,
//! §11), as a table in Europe/Rome time or as the contract's JSON.

use anyhow::Context;
use uuid::Uuid;

use raccordo_core::clock::rome_datetime;
use raccordo_core::db::evidence::{self, DeliveryEvent, Timeline};
use raccordo_core::settings::Settings;

use crate::database::connect_db;
use crate::table::{Format, render, render_csv};

/// Reads the timeline of notification `id`; an unknown id is an error that says so.
pub(crate) async fn load(settings: &Settings, id: &str) -> anyhow::Result<Timeline> {
    let id = Uuid::parse_str(id.trim()).with_context(|| {
        format!("{id:?} is not a notification id (a UUID, as in X-Raccordo-Notification)")
    })?;
    let pool = connect_db(settings).await?;
    let mut conn = pool.acquire().await?;
    let timeline = evidence::timeline(&mut conn, id)
        .await
        .context("Failed to read the timeline")?;
    drop(conn);
    pool.close().await;
    timeline.with_context(|| format!("No notification {id} is known to this hub"))
}

const HEADER: [&str; 6] = [
    "recipient",
    "referent",
    "channel",
    "event",
    "at (Europe/Rome)",
    "details",
];

/// Prints the timeline of notification `id` in `format`.
pub(crate) async fn print(settings: &Settings, id: &str, format: Format) -> anyhow::Result<()> {
    let timeline = load(settings, id).await?;
    print!("{}", self::format(&timeline, format)?);
    Ok(())
}

/// The timeline as one row per event, deliveries in the order they were queued.
fn rows(timeline: &Timeline) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for delivery in &timeline.deliveries {
        if delivery.events.is_empty() {
            rows.push(vec![
                delivery.recipient.clone(),
                delivery.referent_id.clone(),
                delivery.channel.clone(),
                delivery.state.clone(),
                String::new(),
                "(before delivery evidence)".to_owned(),
            ]);
        }
        for event in &delivery.events {
            let details = event
                .details
                .iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => format!("{k}: {}", one_line(s)),
                    other => format!("{k}: {other}"),
                })
                .collect::<Vec<_>>()
                .join("; ");
            rows.push(vec![
                delivery.recipient.clone(),
                delivery.referent_id.clone(),
                delivery.channel.clone(),
                event.event.clone(),
                rome_datetime(event.at),
                details,
            ]);
        }
    }
    rows
}

/// A server's reply or a diagnostic on one line of a terminal.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The timeline as a table (with a summary line per state), CSV or JSON (§11).
pub(crate) fn format(timeline: &Timeline, format: Format) -> anyhow::Result<String> {
    match format {
        Format::Json => Ok(serde_json::to_string_pretty(timeline)? + "\n"),
        Format::Csv => render_csv(&HEADER, &rows(timeline)),
        Format::Table => {
            let mut out = format!(
                "notification {}  kind {}  deliveries {}\n\n",
                timeline.notification,
                timeline.kind,
                timeline.deliveries.len()
            );
            out.push_str(&render(&HEADER, &rows(timeline)));
            let mut states: Vec<(String, usize)> = Vec::new();
            for delivery in &timeline.deliveries {
                match states.iter_mut().find(|(s, _)| *s == delivery.state) {
                    Some((_, n)) => *n += 1,
                    None => states.push((delivery.state.clone(), 1)),
                }
            }
            let summary = states
                .iter()
                .map(|(state, n)| {
                    let label = DeliveryEvent::parse(state).map_or("", DeliveryEvent::label_it);
                    format!("{n} {state} ({label})")
                })
                .collect::<Vec<String>>()
                .join(", ");
            out.push_str(&format!("\nnow: {summary}\n"));
            Ok(out)
        }
    }
}

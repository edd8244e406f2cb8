//! The demo's part of the Tavolo provinciale asilo (CONTRACT A1–A5): its desks, two
//! vulnerability reports (one person consents, one does not), a first intervention, three
//! domicile requests, the SPRAR waiting list and a facility that frees places.
//!
//! The sample events (`data/demo/asylum.ndjson`) are dated around 2 March 2026, 12:00; the
//! demo moves every time and date by the same amount so that "now" falls there: the case
//! in Milano was reported 13 hours ago and nobody intervened, the one in Rho an hour ago.

use anyhow::Context;
use sqlx::PgPool;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use raccordo_core::registry::{Actor, import_referents};
use raccordo_core::settings::Settings;

/// The six desks and the Tavolo provinciale asilo (unscoped `tavolo`).
const REFERENTS: &str = include_str!("../../../data/demo/referents_asylum.csv");
const EVENTS: &str = include_str!("../../../data/demo/asylum.ndjson");

/// The moment the sample events were written around.
const ANCHOR: &str = "2026-03-02T12:00:00+01:00";

/// Imports the desks; how many referents.
pub(crate) async fn import_desks(pool: &PgPool) -> anyhow::Result<u64> {
    let report = import_referents(
        pool,
        REFERENTS.as_bytes(),
        &Actor::import("data/demo/referents_asylum.csv"),
    )
    .await?;
    anyhow::ensure!(
        report.errors.is_empty(),
        "data/demo/referents_asylum.csv: {:?}",
        report.errors
    );
    Ok(report.inserted + report.updated)
}

/// The sample events with every time moved so that the anchor is `now`.
pub(crate) fn events(now: OffsetDateTime) -> anyhow::Result<Vec<String>> {
    let shift = now - OffsetDateTime::parse(ANCHOR, &Rfc3339)?;
    let days = time::Duration::days(shift.whole_days());
    let mut out = Vec::new();
    for line in EVENTS.lines().filter(|l| !l.trim().is_empty()) {
        let mut event: serde_json::Value = serde_json::from_str(line)?;
        if let Some(at) = event["time"].as_str() {
            event["time"] = (OffsetDateTime::parse(at, &Rfc3339)? + shift)
                .format(&Rfc3339)?
                .into();
        }
        let data = &mut event["data"];
        for key in ["reported_at", "at", "requested_at"] {
            if let Some(at) = data[key].as_str() {
                data[key] = (OffsetDateTime::parse(at, &Rfc3339)? + shift)
                    .format(&Rfc3339)?
                    .into();
            }
        }
        for key in ["since", "as_of"] {
            if let Some(on) = data[key].as_str() {
                let moved = raccordo_core::domain::parse_date(on)? + days;
                data[key] = raccordo_core::domain::format_date(moved).into();
            }
        }
        out.push(serde_json::to_string(&event)?);
    }
    Ok(out)
}

/// Publishes the sample events one at a time, each once the hub has processed the one
/// before (the story has an order: the list before the freed places). Returns how many.
pub(crate) async fn publish(settings: &Settings, pool: &PgPool) -> anyhow::Result<usize> {
    let events = events(raccordo_core::clock::now())?;
    crate::publish::one_by_one(settings, pool, events.iter().map(String::as_str), "asylum").await
}

/// What the demo's asylum events caused, per kind: one line each.
pub(crate) async fn summary(pool: &PgPool) -> anyhow::Result<String> {
    let mut conn = pool.acquire().await?;
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        r#"
        SELECT n.kind, count(DISTINCT n.id), count(d.notification_id)
        FROM notifications n LEFT JOIN deliveries d ON d.notification_id = n.id
        WHERE n.kind LIKE 'asylum.%'
        GROUP BY n.kind ORDER BY n.kind
        "#,
    )
    .fetch_all(&mut *conn)
    .await
    .context("Failed to read the asylum notifications")?;
    let (cases, personal): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM asylum_cases), (SELECT count(*) FROM asylum_personal)",
    )
    .fetch_one(&mut *conn)
    .await?;
    let mut out = String::from("Tavolo provinciale asilo (seed 001): the sportelli's protocols\n");
    out.push_str(&format!(
        "  {cases} vulnerability reports; personal data kept for {personal} (the person who consented), the other known only by pseudonym.\n"
    ));
    for (kind, notifications, emails) in rows {
        out.push_str(&format!(
            "  {kind}: {notifications} notifications, {emails} emails\n"
        ));
    }
    let domiciles: Vec<(String, String, i32)> = sqlx::query_as(
        r#"
        SELECT d.request_id, c.nome, d.people
        FROM asylum_domiciles d JOIN comuni c ON c.istat = d.comune_istat
        ORDER BY d.assigned_at, d.request_id
        "#,
    )
    .fetch_all(&mut *conn)
    .await?;
    for (request, comune, people) in domiciles {
        out.push_str(&format!(
            "  domicile {request} ({people} people): Comune di {comune}, next in the rotation\n"
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_event_is_moved_to_now_and_validates() {
        let now = OffsetDateTime::parse("2026-12-07T09:30:00+01:00", &Rfc3339).expect("valid");
        let events = events(now).expect("the sample events parse");
        assert_eq!(events.len(), EVENTS.lines().count());
        for line in &events {
            raccordo_core::envelope::Envelope::decode(line.as_bytes())
                .unwrap_or_else(|e| panic!("{line}: {e}"));
        }
        assert!(
            events[0].contains("2026-12-07T08:30:00+01:00"),
            "{}",
            events[0]
        );
    }
}

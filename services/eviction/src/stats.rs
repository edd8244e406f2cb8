//! C6: anonymous statistics of eviction steps per comune and step over a month (by
//! `occurred_on`, a Europe/Rome date), one `eviction.stats` per ambito with steps, to its
//! servizi sociali (scoped to the ambito or one of its comuni) and to the prefettura
//! covering it (Protocollo escomio, art. 2 comma 4). A comune without an ambito is a unit
//! of its own: its comune-scoped servizi sociali and the prefettura.
//!
//! Counts of 1 or 2 are shown as `<3` everywhere (emails, CLI, JSON): a small count in a
//! small comune could point at a family. No totals are shown, since a total next to
//! masked cells would give them away.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use raccordo_core::clock::YearMonth;
use raccordo_core::db::{NewNotification, insert_notification};
use raccordo_core::domain::{ComuneIstat, Role};
use raccordo_core::notification::NotificationKind;
use raccordo_core::payload::{Payload, StatsPayload, StatsRow, StatsStep};
use raccordo_core::registry::{
    Recipient, load_comune, recipients_for, recipients_in_ambito, recipients_with_roles,
};
use raccordo_core::schedule::MonthlyJob;

use crate::event::Step;

/// A count as it may be shown: 0, `<3` for 1 or 2, the number from 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    Zero,
    Few,
    Exact(i64),
}

impl Count {
    /// Masks a raw count.
    pub fn of(n: i64) -> Self {
        match n {
            i64::MIN..=0 => Count::Zero,
            1 | 2 => Count::Few,
            n => Count::Exact(n),
        }
    }
}

impl std::fmt::Display for Count {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Count::Zero => f.write_str("0"),
            Count::Few => f.write_str("<3"),
            Count::Exact(n) => write!(f, "{n}"),
        }
    }
}

impl Serialize for Count {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Count::Zero => s.serialize_i64(0),
            Count::Few => s.serialize_str("<3"),
            Count::Exact(n) => s.serialize_i64(*n),
        }
    }
}

/// One comune's masked counts, per step in [`Step::ALL`] order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComuneCounts {
    pub ambito: Option<String>,
    pub istat: String,
    pub nome: String,
    pub counts: BTreeMap<&'static str, Count>,
}

/// The statistics sent to one ambito (or to one comune without an ambito).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnitStats {
    /// The ambito; `None` for a comune outside every ambito.
    pub ambito: Option<String>,
    pub comuni: Vec<ComuneCounts>,
}

pub(crate) use crate::store::RawRow;

/// Groups raw counts into units, masking small ones. Pure, for tests.
pub(crate) fn group(rows: Vec<RawRow>) -> Vec<UnitStats> {
    let mut by_comune: BTreeMap<(Option<String>, String, String), BTreeMap<Step, i64>> =
        BTreeMap::new();
    for (ambito, istat, nome, step, n) in rows {
        let Some(step) = Step::parse(&step) else {
            continue;
        };
        *by_comune
            .entry((ambito, nome, istat))
            .or_default()
            .entry(step)
            .or_default() += n;
    }
    let mut units: Vec<UnitStats> = Vec::new();
    for ((ambito, nome, istat), counts) in by_comune {
        let comune = ComuneCounts {
            ambito: ambito.clone(),
            istat,
            nome,
            counts: Step::ALL
                .iter()
                .map(|s| (s.as_str(), Count::of(counts.get(s).copied().unwrap_or(0))))
                .collect(),
        };
        // A comune without an ambito is a unit of its own.
        match units.last_mut() {
            Some(u) if ambito.is_some() && u.ambito == ambito => u.comuni.push(comune),
            _ => units.push(UnitStats {
                ambito,
                comuni: vec![comune],
            }),
        }
    }
    // Ambiti in name order, then comuni without one.
    units.sort_by(|a, b| {
        (a.ambito.is_none(), &a.ambito, &a.comuni[0].nome).cmp(&(
            b.ambito.is_none(),
            &b.ambito,
            &b.comuni[0].nome,
        ))
    });
    units
}

/// The month's statistics from `eviction_steps`. A procedure's step on one day counts
/// once, however often it was published.
pub async fn month_stats(
    conn: &mut PgConnection,
    month: YearMonth,
) -> Result<Vec<UnitStats>, sqlx::Error> {
    let rows = crate::store::step_counts(conn, month.first_day(), month.next().first_day()).await?;
    Ok(group(rows))
}

/// The recipients of one unit's statistics (CONTRACT §5).
pub async fn unit_recipients(
    conn: &mut PgConnection,
    unit: &UnitStats,
) -> Result<Vec<Recipient>, sqlx::Error> {
    if let Some(ambito) = &unit.ambito {
        return recipients_in_ambito(conn, ambito, &[Role::ServiziSociali], &[Role::Prefettura])
            .await;
    }
    let istat = &unit.comuni[0].istat;
    let mut out =
        recipients_with_roles(conn, &[Role::ServiziSociali], "comune", Some(istat)).await?;
    let comune = match ComuneIstat::parse(istat) {
        Ok(c) => load_comune(conn, &c).await?,
        Err(_) => None,
    };
    if let Some(comune) = comune {
        for r in recipients_for(conn, NotificationKind::EvictionStats, &comune).await? {
            if r.role == Role::Prefettura && !out.iter().any(|o| o.email == r.email) {
                out.push(r);
            }
        }
    }
    Ok(out)
}

/// The template data of one unit's `eviction.stats`.
pub(crate) fn stats_payload(month: YearMonth, unit: &UnitStats) -> StatsPayload {
    StatsPayload {
        month: month.to_string(),
        month_label: month.italian(),
        ambito: unit.ambito.clone(),
        comune_nome: match unit.ambito {
            None => unit.comuni.first().map(|c| c.nome.clone()),
            Some(_) => None,
        },
        steps: Step::ALL
            .iter()
            .map(|s| StatsStep {
                step: s.as_str().to_owned(),
                label: s.label().to_owned(),
            })
            .collect(),
        rows: unit
            .comuni
            .iter()
            .map(|c| StatsRow {
                comune_istat: c.istat.clone(),
                comune_nome: c.nome.clone(),
                counts: Step::ALL
                    .iter()
                    .map(|s| {
                        c.counts
                            .get(s.as_str())
                            .map(ToString::to_string)
                            .unwrap_or_default()
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// Writes one `eviction.stats` per unit with steps in `month` to the outbox; returns
/// their ids. The relay and the mailer of a running hub send them.
pub async fn send_stats(
    conn: &mut PgConnection,
    month: YearMonth,
) -> Result<Vec<Uuid>, sqlx::Error> {
    let units = month_stats(conn, month).await?;
    let mut ids = Vec::new();
    for unit in &units {
        let recipients = unit_recipients(conn, unit).await?;
        let comune_istat = match &unit.ambito {
            Some(_) => None,
            None => ComuneIstat::parse(&unit.comuni[0].istat).ok(),
        };
        ids.push(
            insert_notification(
                conn,
                &NewNotification {
                    comune_istat,
                    payload: Payload::EvictionStats(stats_payload(month, unit)),
                    urgent: false,
                    recipients,
                },
            )
            .await?,
        );
    }
    Ok(ids)
}

/// The monthly job: the statistics of the month that just ended, once across replicas.
pub struct EvictionStatsJob;

#[async_trait]
impl MonthlyJob for EvictionStatsJob {
    fn name(&self) -> &'static str {
        "eviction.stats"
    }

    async fn run(&self, tx: &mut PgConnection, month: YearMonth) -> Result<(), sqlx::Error> {
        let ids = send_stats(tx, month).await?;
        tracing::info!(month = %month, notifications = ids.len(), "Eviction statistics queued.");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn row(ambito: Option<&str>, istat: &str, nome: &str, step: &str, n: i64) -> RawRow {
        (
            ambito.map(str::to_owned),
            istat.into(),
            nome.into(),
            step.into(),
            n,
        )
    }

    #[test]
    fn c6_counts_of_one_or_two_are_shown_as_less_than_three() {
        assert_eq!(Count::of(0).to_string(), "0");
        assert_eq!(Count::of(1).to_string(), "<3");
        assert_eq!(Count::of(2).to_string(), "<3");
        assert_eq!(Count::of(3).to_string(), "3");
        assert_eq!(
            serde_json::to_value([Count::of(2), Count::of(7), Count::of(0)]).expect("json"),
            json!(["<3", 7, 0])
        );
    }

    #[test]
    fn c6_one_unit_per_ambito_and_one_per_comune_without_an_ambito() {
        let units = group(vec![
            row(Some("Rho"), "015182", "Rho", "precetto", 4),
            row(Some("Rho"), "015009", "Arese", "intimazione", 1),
            row(None, "015191", "San Colombano al Lambro", "accesso", 2),
            row(Some("Milano"), "015146", "Milano", "convalida", 12),
        ]);
        let names: Vec<_> = units.iter().map(|u| u.ambito.clone()).collect();
        assert_eq!(names, vec![Some("Milano".into()), Some("Rho".into()), None]);
        let rho = &units[1];
        assert_eq!(rho.comuni.len(), 2);
        assert_eq!(rho.comuni[0].nome, "Arese");
        assert_eq!(rho.comuni[0].counts["intimazione"], Count::Few);
        assert_eq!(rho.comuni[1].counts["precetto"], Count::Exact(4));
        assert_eq!(rho.comuni[1].counts["esecuzione"], Count::Zero);
        assert_eq!(units[2].comuni[0].counts["accesso"], Count::Few);
    }

    #[test]
    fn c6_an_ambito_with_no_steps_gets_nothing() {
        assert!(group(vec![]).is_empty());
    }

    #[test]
    fn c6_the_payload_holds_only_masked_counts() {
        let units = group(vec![row(Some("Rho"), "015182", "Rho", "precetto", 2)]);
        let month = YearMonth::parse("2026-03").expect("valid");
        let payload = serde_json::to_value(stats_payload(month, &units[0])).expect("encodes");
        assert_eq!(payload["month_label"], "marzo 2026");
        assert_eq!(payload["rows"][0]["counts"][2], "<3");
        assert_eq!(payload["rows"][0]["counts"][0], "0");
        assert!(!payload.to_string().contains("\"2\""));
    }

    fn steps_json() -> serde_json::Value {
        json!([
            {"step": "intimazione", "label": "intimazione di sfratto"},
            {"step": "convalida", "label": "convalida dello sfratto"},
            {"step": "precetto", "label": "precetto"},
            {"step": "avviso_sloggio", "label": "avviso di sloggio"},
            {"step": "accesso", "label": "accesso dell'ufficiale giudiziario"},
            {"step": "esecuzione", "label": "esecuzione dello sfratto"},
        ])
    }

    #[test]
    fn c6_an_ambito_payload_writes_the_json_it_always_wrote() {
        let units = group(vec![
            row(Some("Rho"), "015182", "Rho", "precetto", 4),
            row(Some("Rho"), "015009", "Arese", "intimazione", 1),
        ]);
        let month = YearMonth::parse("2026-03").expect("valid");
        let payload = Payload::EvictionStats(stats_payload(month, &units[0]));
        let value = payload.to_value().expect("encodes");

        assert_eq!(
            value,
            json!({
                "month": "2026-03",
                "month_label": "marzo 2026",
                "ambito": "Rho",
                "comune_nome": null,
                "steps": steps_json(),
                "rows": [
                    {"comune_istat": "015009", "comune_nome": "Arese",
                     "counts": ["<3", "0", "0", "0", "0", "0"]},
                    {"comune_istat": "015182", "comune_nome": "Rho",
                     "counts": ["0", "0", "4", "0", "0", "0"]},
                ],
            })
        );
        assert_eq!(
            Payload::from_parts("eviction.stats", &value).expect("decodes"),
            payload
        );
    }

    #[test]
    fn c6_a_comune_without_an_ambito_is_named_in_its_payload() {
        let units = group(vec![row(
            None,
            "015191",
            "San Colombano al Lambro",
            "accesso",
            3,
        )]);
        let month = YearMonth::parse("2026-03").expect("valid");

        let value = serde_json::to_value(stats_payload(month, &units[0])).expect("encodes");

        assert_eq!(value["ambito"], serde_json::Value::Null);
        assert_eq!(value["comune_nome"], "San Colombano al Lambro");
    }
}

//! The weekly priority list (rule A4): the waiting cases — pseudonyms, categories,
//! priority, weeks waiting — in the list's order, and the free places of the active SPRAR
//! projects per comune, to every `sportello_asilo` and the unscoped `tavolo` (the Tavolo
//! provinciale asilo). Sent by the weekly schedule every Monday at 08:00 and by
//! `raccordo report priorities --send`.

use std::sync::Arc;

use serde::Serialize;
use sqlx::PgConnection;
use time::Date;
use uuid::Uuid;

use raccordo_core::clock::{Clock, SystemClock, rome_date};
use raccordo_core::db::{NewNotification, insert_notification};
use raccordo_core::domain::{Role, Scope};
use raccordo_core::payload::{ComunePlaces, Payload, WeeklyPrioritiesPayload};
use raccordo_core::registry::{Recipient, Referent, list_referents};

use crate::event::Priority;
use crate::waiting::{WaitingEntry, load_waiting};

/// Free places of the active SPRAR projects of one comune.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FreePlaces {
    pub comune_istat: String,
    pub comune_nome: String,
    pub zona: String,
    /// Projects with at least one free place.
    pub facilities: i64,
    pub free_places: i64,
}

/// The list as of one day.
#[derive(Debug, Clone)]
pub struct WeeklyList {
    /// The Monday of the week it is for.
    pub monday: Date,
    /// The day the figures were read.
    pub today: Date,
    pub cases: Vec<WaitingEntry>,
    pub places: Vec<FreePlaces>,
}

impl WeeklyList {
    /// Free places in all active SPRAR projects.
    pub fn free_total(&self) -> i64 {
        self.places.iter().map(|p| p.free_places).sum()
    }

    /// Cases of one priority.
    pub fn count(&self, priority: Priority) -> i64 {
        let n = self.cases.iter().filter(|c| c.priority == priority).count();
        i64::try_from(n).unwrap_or(i64::MAX)
    }

    /// The notification's data.
    pub fn payload(&self) -> WeeklyPrioritiesPayload {
        let (year, week, _) = self.monday.to_iso_week_date();
        WeeklyPrioritiesPayload {
            week: format!("{year}-W{week:02}"),
            monday: self.monday.to_string(),
            cases: self.cases.iter().map(|c| c.to_wire(self.today)).collect(),
            places: self.places.iter().filter_map(comune_places).collect(),
            generated_on: self.today.to_string(),
            waiting: i64::try_from(self.cases.len()).unwrap_or(i64::MAX),
            alta: self.count(Priority::Alta),
            media: self.count(Priority::Media),
            ordinaria: self.count(Priority::Ordinaria),
            free_total: self.free_total(),
        }
    }
}

/// A row whose ISTAT code no longer parses is left out of the email (it stays in the
/// CLI's report).
fn comune_places(p: &FreePlaces) -> Option<ComunePlaces> {
    Some(ComunePlaces {
        comune_istat: raccordo_core::domain::ComuneIstat::parse(&p.comune_istat).ok()?,
        comune_nome: p.comune_nome.clone(),
        free_places: p.free_places,
        zona: p.zona.clone(),
        facilities: p.facilities,
    })
}

/// Free places of the active SPRAR projects, per comune with any, by zona and comune name.
pub async fn load_free_places(conn: &mut PgConnection) -> Result<Vec<FreePlaces>, sqlx::Error> {
    let rows: Vec<(String, String, String, i64, i64)> = sqlx::query_as(
        r#"
        SELECT f.comune_istat, c.nome, c.zona,
               count(*) FILTER (WHERE f.capacity > f.presences),
               COALESCE(sum(GREATEST(f.capacity - f.presences, 0)), 0)::BIGINT
        FROM reception_facilities f
        JOIN comuni c ON c.istat = f.comune_istat
        WHERE f.reception_kind = 'SPRAR'
          AND f.active
        GROUP BY f.comune_istat, c.nome, c.zona
        HAVING sum(GREATEST(f.capacity - f.presences, 0)) > 0
        ORDER BY c.zona, c.nome
        "#,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(comune_istat, comune_nome, zona, facilities, free_places)| FreePlaces {
                comune_istat,
                comune_nome,
                zona,
                facilities,
                free_places,
            },
        )
        .collect())
}

/// The list of the week of `monday`, with the figures as of `today`.
pub async fn load_list(
    conn: &mut PgConnection,
    monday: Date,
    today: Date,
) -> Result<WeeklyList, sqlx::Error> {
    Ok(WeeklyList {
        monday,
        today,
        cases: load_waiting(&mut *conn).await?,
        places: load_free_places(conn).await?,
    })
}

/// Every `sportello_asilo` (whatever its scope: the SPRAR list is one for the province)
/// and the unscoped `tavolo`, one per address, by role and id.
pub fn audience(referents: &[Referent]) -> Vec<Recipient> {
    recipients(referents, |r| {
        r.role == Role::SportelloAsilo || (r.role == Role::Tavolo && r.scope == Scope::All)
    })
}

/// The referents `wanted` picks, one per address, in the registry's order.
pub(crate) fn recipients(
    referents: &[Referent],
    wanted: impl Fn(&Referent) -> bool,
) -> Vec<Recipient> {
    let mut out: Vec<Recipient> = Vec::new();
    for r in referents.iter().filter(|r| wanted(r)) {
        if out.iter().any(|o| o.email == r.email) {
            continue;
        }
        out.push(Recipient {
            referent_id: r.referent_id.clone(),
            email: r.email.clone(),
            name: r.name.clone(),
            institution: r.institution.clone(),
            role: r.role,
        });
    }
    out
}

/// What one sending wrote.
#[derive(Debug, Clone)]
pub struct SentList {
    pub notification: Uuid,
    pub recipients: usize,
    pub waiting: usize,
}

/// Writes the list of the week of `monday` to the outbox in `conn`'s transaction.
pub async fn insert_weekly(
    conn: &mut PgConnection,
    monday: Date,
    today: Date,
) -> Result<SentList, sqlx::Error> {
    let list = load_list(&mut *conn, monday, today).await?;
    let recipients = audience(&list_referents(&mut *conn).await?);
    let sent = SentList {
        notification: Uuid::nil(),
        recipients: recipients.len(),
        waiting: list.cases.len(),
    };
    let notification = insert_notification(
        conn,
        &NewNotification {
            comune_istat: None,
            payload: Payload::AsylumWeeklyPriorities(list.payload()),
            urgent: false,
            recipients,
        },
    )
    .await?;
    Ok(SentList {
        notification,
        ..sent
    })
}

/// The weekly job: reads "today" (the weeks waited) from its clock.
pub struct WeeklyPriorities {
    clock: Arc<dyn Clock>,
}

impl Default for WeeklyPriorities {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
        }
    }
}

impl WeeklyPriorities {
    /// The job reading "today" from `clock`.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self { clock }
    }

    /// Writes the week's list in `tx`.
    pub async fn insert(&self, tx: &mut PgConnection, monday: Date) -> Result<(), sqlx::Error> {
        let today = rome_date(self.clock.now());
        let sent = insert_weekly(tx, monday, today).await?;
        tracing::info!(
            week = %monday,
            waiting = sent.waiting,
            recipients = sent.recipients,
            notification = %sent.notification,
            "Weekly priority list written."
        );
        Ok(())
    }
}

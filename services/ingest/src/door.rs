//! What HTTP ingestion and the console's upload share (CONTRACT 1.2 §10): a CSV file judged
//! row by row as one publisher's events, and the publishing of judged events with the hub's
//! signature of that publisher.

use std::sync::Arc;

use raccordo_core::amqp::Topology;
use raccordo_core::csv_events::{self, CsvFileError};
use raccordo_core::envelope::EventType;
use raccordo_core::http_binding::{self, HttpEvent};
use raccordo_core::origin::{Publishers, Refusal};
use raccordo_core::settings::Settings;

use crate::broker::{Broker, BrokerError};

/// One refused row of a CSV file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RowError {
    /// The spreadsheet row number (the header is row 1).
    pub row: usize,
    pub column: Option<String>,
    pub detail: String,
    /// `detail` in Italian for the console (issue 24), when the hub can render it; the
    /// HTTP API's problem+json keeps the English `detail` only.
    #[serde(skip)]
    pub detail_it: Option<String>,
    /// The row is valid, but the publisher may not say it (a comune not its own).
    #[serde(skip)]
    pub forbidden: bool,
}

/// A CSV file judged: its events, ready to publish, and its bad rows.
#[derive(Debug, Clone)]
pub struct CsvJudged {
    /// Data rows in the file.
    pub rows: usize,
    /// One per good row, in file order, with the row number.
    pub events: Vec<(usize, HttpEvent)>,
    /// Every bad row: schema, control characters, or what the publisher may not say.
    pub errors: Vec<RowError>,
}

impl CsvJudged {
    /// The events' ids, in file order.
    pub fn ids(&self) -> Vec<&str> {
        self.events
            .iter()
            .map(|(_, e)| e.envelope.id.as_str())
            .collect()
    }
}

/// Why a CSV file cannot be judged at all.
#[derive(Debug, thiserror::Error)]
pub enum CsvRefusal {
    #[error("CSV is taken for housing.unit.v1 and reception.occupancy.v1 only")]
    Type,
    #[error("publisher {user:?} may not publish {event_type}")]
    Forbidden { user: String, event_type: EventType },
    #[error(transparent)]
    File(#[from] CsvFileError),
}

/// The door: the publishers' rules and a broker connection.
pub struct Door {
    settings: Arc<Settings>,
    publishers: Publishers,
    broker: Broker,
}

impl Door {
    pub fn new(settings: Arc<Settings>) -> Self {
        Self {
            publishers: Publishers::from_settings(&settings.publishers),
            broker: Broker::new(
                settings.amqp.clone(),
                Topology::from_settings(&settings),
                settings.eviction.pseudonym_keys(),
            ),
            settings,
        }
    }

    /// The configured publishers that may publish `event_type`, by name.
    pub fn publishers_of(&self, event_type: EventType) -> Vec<String> {
        self.settings
            .publishers
            .users
            .keys()
            .filter(|user| self.publishers.may_publish_type(Some(user), event_type))
            .cloned()
            .collect()
    }

    /// Whether `user` may publish `event`; the refusal names what it may not.
    pub fn authorize(&self, user: &str, event: &HttpEvent) -> Result<(), Refusal> {
        self.publishers.authorize(Some(user), &event.envelope)
    }

    /// Judges a CSV file of `event_type` as `user`'s: each row an event, or its error.
    pub fn judge_csv(
        &self,
        user: &str,
        event_type: &str,
        bytes: &[u8],
    ) -> Result<CsvJudged, CsvRefusal> {
        let event_type = EventType::parse(event_type)
            .filter(|t| csv_events::csv_types().contains(t))
            .ok_or(CsvRefusal::Type)?;
        if !self.publishers.may_publish_type(Some(user), event_type) {
            return Err(CsvRefusal::Forbidden {
                user: user.to_owned(),
                event_type,
            });
        }
        let source = format!("urn:raccordo:csv:{user}");
        let parsed = csv_events::parse_csv(
            event_type,
            bytes,
            &source,
            self.settings.ingest.max_csv_rows,
        )?;
        let mut errors: Vec<RowError> = parsed
            .errors
            .iter()
            .map(|e| RowError {
                row: e.row,
                column: e.column.clone(),
                detail: e.detail.clone(),
                detail_it: e.detail_it(),
                forbidden: false,
            })
            .collect();
        let mut events = Vec::with_capacity(parsed.rows.len());
        for row in &parsed.rows {
            let body = serde_json::to_vec(&row.event).unwrap_or_default();
            let decoded =
                http_binding::decode(Some("application/cloudevents+json"), &|_| None, &body, 1)
                    .map_err(|e| e.to_string())
                    .and_then(|(_, mut one)| one.pop().ok_or_else(|| "no event".to_owned()));
            let refused = |detail: String, forbidden: bool| RowError {
                row: row.row,
                column: None,
                detail_it: raccordo_core::amqp::reason_it(&detail).map(str::to_owned),
                detail,
                forbidden,
            };
            match decoded {
                Err(detail) => errors.push(refused(detail, false)),
                Ok(event) => match self.authorize(user, &event) {
                    Ok(()) => events.push((row.row, event)),
                    Err(refusal) => errors.push(refused(refusal.to_string(), true)),
                },
            }
        }
        errors.sort_by_key(|e| e.row);
        Ok(CsvJudged {
            rows: parsed.rows.len() + parsed.errors.len(),
            events,
            errors,
        })
    }

    /// Publishes `events` as `user`'s and returns once the broker confirmed every one.
    pub async fn publish(&self, user: &str, events: &[HttpEvent]) -> Result<(), BrokerError> {
        self.broker.publish(user, events).await
    }

    /// Whether the door can publish: its broker connection is open (opened if need be).
    pub async fn ready(&self) -> bool {
        self.broker.ready().await
    }

    /// Closes the broker connection.
    pub async fn close(&self) {
        self.broker.close().await;
    }
}

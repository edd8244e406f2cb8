//! Delivery evidence (CONTRACT §9, D1): the timeline of each delivery — notification ×
//! recipient — as dated events, appended by every stage in the transaction of the change it
//! records, and published by the relay as `delivery.<event>` on `{prefix}.events`.
//!
//! The events are kept `retention.audit_years`, after their notification and deliveries
//! are gone: each row carries its kind, referent and channel.

use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use super::signal::OUTBOX_CHANNEL;

/// What happened to a delivery (CONTRACT D1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryEvent {
    /// Decided and waiting for the mailer.
    Queued,
    /// The mail server accepted it (`reply`).
    Sent,
    /// A delivery status notification, or a permanent refusal (`status`, `diagnostic`).
    Bounced,
    /// The PEC provider's `accettazione`.
    PecAccepted,
    /// The recipient's PEC provider's `avvenuta-consegna`: delivered, legally.
    PecDelivered,
    /// A PEC failure: non-accettazione, errore-consegna, virus, or no receipt in time.
    PecNotDelivered,
    /// A person acknowledged it (`by`).
    Acknowledged,
    /// Sent again, unacknowledged (D5).
    Reminded,
    /// Told to deputies, the ambito and the Prefettura, unacknowledged (D5).
    Escalated,
    /// Another channel or person stands in for it (D3).
    Fallback,
    /// Not sent: the reason needing it went away (C4).
    Cancelled,
    /// Put in the referent's digest closing at `until` (issue 22).
    Digested,
    /// Sent within a digest (`digest`, `reply`).
    SentInDigest,
    /// Held for the referent's quiet hours, until `until`, then sent alone.
    Deferred,
    /// Not sent: the referent turned this optional kind off.
    Suppressed,
}

impl DeliveryEvent {
    /// Every event, in the contract's order.
    pub const ALL: [DeliveryEvent; 15] = [
        DeliveryEvent::Queued,
        DeliveryEvent::Sent,
        DeliveryEvent::Bounced,
        DeliveryEvent::PecAccepted,
        DeliveryEvent::PecDelivered,
        DeliveryEvent::PecNotDelivered,
        DeliveryEvent::Acknowledged,
        DeliveryEvent::Reminded,
        DeliveryEvent::Escalated,
        DeliveryEvent::Fallback,
        DeliveryEvent::Cancelled,
        DeliveryEvent::Digested,
        DeliveryEvent::SentInDigest,
        DeliveryEvent::Deferred,
        DeliveryEvent::Suppressed,
    ];

    /// Its name in the contract, the timeline and the routing key `delivery.<name>`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryEvent::Queued => "queued",
            DeliveryEvent::Sent => "sent",
            DeliveryEvent::Bounced => "bounced",
            DeliveryEvent::PecAccepted => "pec_accepted",
            DeliveryEvent::PecDelivered => "pec_delivered",
            DeliveryEvent::PecNotDelivered => "pec_not_delivered",
            DeliveryEvent::Acknowledged => "acknowledged",
            DeliveryEvent::Reminded => "reminded",
            DeliveryEvent::Escalated => "escalated",
            DeliveryEvent::Fallback => "fallback",
            DeliveryEvent::Cancelled => "cancelled",
            DeliveryEvent::Digested => "digested",
            DeliveryEvent::SentInDigest => "sent_in_digest",
            DeliveryEvent::Deferred => "deferred",
            DeliveryEvent::Suppressed => "suppressed",
        }
    }

    /// The event named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == name)
    }

    /// What it means, in Italian, for the console.
    pub fn label_it(self) -> &'static str {
        match self {
            DeliveryEvent::Queued => "in coda",
            DeliveryEvent::Sent => "inviata",
            DeliveryEvent::Bounced => "respinta",
            DeliveryEvent::PecAccepted => "PEC accettata",
            DeliveryEvent::PecDelivered => "PEC consegnata",
            DeliveryEvent::PecNotDelivered => "PEC non consegnata",
            DeliveryEvent::Acknowledged => "presa visione",
            DeliveryEvent::Reminded => "sollecitata",
            DeliveryEvent::Escalated => "segnalata ai superiori",
            DeliveryEvent::Fallback => "inoltrata ad altro canale",
            DeliveryEvent::Cancelled => "annullata",
            DeliveryEvent::Digested => "in attesa del riepilogo",
            DeliveryEvent::SentInDigest => "inviata nel riepilogo",
            DeliveryEvent::Deferred => "rinviata (fascia di silenzio)",
            DeliveryEvent::Suppressed => "non inviata (disattivata dal referente)",
        }
    }
}

impl std::fmt::Display for DeliveryEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event to append to a delivery's timeline.
#[derive(Debug, Clone)]
pub struct Evidence {
    pub notification_id: Uuid,
    /// The delivery's address (`deliveries.email`).
    pub recipient: String,
    pub event: DeliveryEvent,
    /// An object: `reply`, `status`, `diagnostic`, `receipt`, `by`, `reason`… as the event has.
    pub details: Value,
}

impl Evidence {
    /// An event with no details.
    pub fn new(notification_id: Uuid, recipient: impl Into<String>, event: DeliveryEvent) -> Self {
        Self {
            notification_id,
            recipient: recipient.into(),
            event,
            details: Value::Object(Map::new()),
        }
    }

    /// With the detail `key` = `value`.
    #[must_use]
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        if let Value::Object(map) = &mut self.details {
            map.insert(key.to_owned(), value.into());
        }
        self
    }
}

/// The NOTIFY payload that wakes the relay to publish `delivery.*` events.
pub const EVIDENCE_PAYLOAD: &str = "evidence";

/// Appends `evidence` to the timelines of deliveries that exist (others are skipped), sets
/// each delivery's state to its latest event, and wakes the relay at commit. Call it in the
/// transaction of the change it records. Returns how many events were appended.
pub async fn record(conn: &mut PgConnection, evidence: &[Evidence]) -> Result<u64, sqlx::Error> {
    if evidence.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = evidence.iter().map(|e| e.notification_id).collect();
    let recipients: Vec<&str> = evidence.iter().map(|e| e.recipient.as_str()).collect();
    let events: Vec<&str> = evidence.iter().map(|e| e.event.as_str()).collect();
    let details: Vec<&Value> = evidence.iter().map(|e| &e.details).collect();
    let ordinals: Vec<i32> = (0..i32::try_from(evidence.len()).unwrap_or(i32::MAX)).collect();
    let appended: i64 = sqlx::query_scalar(
        r#"
        WITH given AS (
            SELECT * FROM UNNEST($1::UUID[], $2::TEXT[], $3::TEXT[], $4::JSONB[], $5::INT[])
                AS g (notification_id, recipient, event, details, ordinal)
        ), appended AS (
            INSERT INTO delivery_events
                (notification_id, kind, recipient, referent_id, channel, event, details)
            SELECT g.notification_id, n.kind, g.recipient, d.referent_id, d.channel, g.event,
                   g.details
            FROM given g
            JOIN deliveries d ON d.notification_id = g.notification_id AND d.email = g.recipient
            JOIN notifications n ON n.id = g.notification_id
            ORDER BY g.ordinal
            RETURNING notification_id, recipient, event, at
        ), latest AS (
            SELECT DISTINCT ON (notification_id, recipient) notification_id, recipient, event, at
            FROM appended
            ORDER BY notification_id, recipient, at DESC
        ), stated AS (
            UPDATE deliveries d
            SET state = l.event, state_at = l.at
            FROM latest l
            WHERE d.notification_id = l.notification_id AND d.email = l.recipient
        )
        SELECT (SELECT count(*) FROM appended) FROM (SELECT pg_notify($6, $7)) AS woken
        "#,
    )
    .bind(&ids)
    .bind(&recipients)
    .bind(&events)
    .bind(&details)
    .bind(&ordinals)
    .bind(OUTBOX_CHANNEL)
    .bind(EVIDENCE_PAYLOAD)
    .fetch_one(conn)
    .await?;
    Ok(u64::try_from(appended).unwrap_or(0))
}

/// One event of a timeline (CONTRACT §11): `{"event", "at", …details}`.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineEvent {
    pub event: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    #[serde(flatten)]
    pub details: Map<String, Value>,
}

/// One delivery of a timeline: a recipient by one channel, and what happened to it.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryTimeline {
    /// The address.
    pub recipient: String,
    pub referent_id: String,
    /// `email` or `pec`.
    pub channel: String,
    /// Its latest event.
    pub state: String,
    pub events: Vec<TimelineEvent>,
}

/// A notification's timeline (CONTRACT §11, `raccordo timeline ID --format json`).
#[derive(Debug, Clone, Serialize)]
pub struct Timeline {
    pub notification: Uuid,
    pub kind: String,
    pub deliveries: Vec<DeliveryTimeline>,
}

type EventRow = (
    String,
    String,
    String,
    String,
    String,
    OffsetDateTime,
    Value,
);

/// The timeline of notification `id`: its deliveries, in the order they were queued, each
/// with its events in order. Deliveries from before the evidence (no events) show their
/// stored state. `None` when the hub knows nothing of it.
pub async fn timeline(conn: &mut PgConnection, id: Uuid) -> Result<Option<Timeline>, sqlx::Error> {
    let rows: Vec<EventRow> = sqlx::query_as(
        r#"
        SELECT kind, recipient, referent_id, channel, event, at, details
        FROM delivery_events
        WHERE notification_id = $1
        ORDER BY id
        "#,
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let stored: Vec<(String, String, String, String, String)> = sqlx::query_as(
        r#"
        SELECT n.kind, d.email, d.referent_id, d.channel, d.state
        FROM deliveries d JOIN notifications n ON n.id = d.notification_id
        WHERE d.notification_id = $1
        ORDER BY d.email
        "#,
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let kind = match (rows.first(), stored.first()) {
        (Some(row), _) => row.0.clone(),
        (None, Some(row)) => row.0.clone(),
        (None, None) => {
            let kind: Option<String> =
                sqlx::query_scalar("SELECT kind FROM notifications WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?;
            match kind {
                Some(kind) => kind,
                None => return Ok(None),
            }
        }
    };
    let mut deliveries: Vec<DeliveryTimeline> = Vec::new();
    for (_, recipient, referent_id, channel, event, at, details) in rows {
        let details = match details {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        let entry = TimelineEvent {
            event: event.clone(),
            at,
            details,
        };
        match deliveries.iter_mut().find(|d| d.recipient == recipient) {
            Some(delivery) => {
                delivery.state = event;
                delivery.events.push(entry);
            }
            None => deliveries.push(DeliveryTimeline {
                recipient,
                referent_id,
                channel,
                state: event,
                events: vec![entry],
            }),
        }
    }
    for (_, recipient, referent_id, channel, state) in stored {
        if !deliveries.iter().any(|d| d.recipient == recipient) {
            deliveries.push(DeliveryTimeline {
                recipient,
                referent_id,
                channel,
                state,
                events: Vec::new(),
            });
        }
    }
    Ok(Some(Timeline {
        notification: id,
        kind,
        deliveries,
    }))
}

/// Which deliveries to list (the console's page of deliveries); every field narrows.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub kind: Option<String>,
    pub comune_istat: Option<String>,
    /// Part of the address or of the referent id, any case.
    pub recipient: Option<String>,
    /// The latest event.
    pub state: Option<String>,
    /// Notifications decided from this instant on.
    pub from: Option<OffsetDateTime>,
    /// … and before this one.
    pub until: Option<OffsetDateTime>,
    /// Kinds left out (those a role may not see one by one).
    pub hidden_kinds: Vec<String>,
}

/// One delivery in a list.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryRow {
    pub notification_id: Uuid,
    pub kind: String,
    pub comune_istat: Option<String>,
    pub created_at: OffsetDateTime,
    pub referent_id: String,
    pub recipient: String,
    pub channel: String,
    pub state: String,
    pub state_at: OffsetDateTime,
}

/// The deliveries `filter` selects, newest notification first, `limit` from `offset`.
pub async fn list_deliveries(
    conn: &mut PgConnection,
    filter: &DeliveryFilter,
    offset: i64,
    limit: i64,
) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    let recipient = filter.recipient.as_deref().map(|r| {
        let escaped = r
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        format!("%{escaped}%")
    });
    sqlx::query_as(
        r#"
        SELECT d.notification_id, n.kind, n.comune_istat, n.created_at, d.referent_id,
               d.email AS recipient, d.channel, d.state, d.state_at
        FROM deliveries d JOIN notifications n ON n.id = d.notification_id
        WHERE ($1::TEXT IS NULL OR n.kind = $1)
          AND ($2::TEXT IS NULL OR n.comune_istat = $2)
          AND ($3::TEXT IS NULL OR d.email ILIKE $3 OR d.referent_id ILIKE $3)
          AND ($4::TEXT IS NULL OR d.state = $4)
          AND ($5::TIMESTAMPTZ IS NULL OR n.created_at >= $5)
          AND ($6::TIMESTAMPTZ IS NULL OR n.created_at < $6)
          AND NOT (n.kind = ANY($7))
        ORDER BY n.created_at DESC, n.id, d.email
        OFFSET $8 LIMIT $9
        "#,
    )
    .bind(filter.kind.as_deref())
    .bind(filter.comune_istat.as_deref())
    .bind(recipient)
    .bind(filter.state.as_deref())
    .bind(filter.from)
    .bind(filter.until)
    .bind(&filter.hidden_kinds)
    .bind(offset)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// How many deliveries are in each state, by channel: `(channel, state, count)`, in the
/// order of [`DeliveryEvent::ALL`].
pub async fn state_counts(
    conn: &mut PgConnection,
) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
    let mut rows: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT channel, state, count(*) FROM deliveries GROUP BY channel, state")
            .fetch_all(conn)
            .await?;
    let rank = |state: &str| {
        DeliveryEvent::ALL
            .iter()
            .position(|e| e.as_str() == state)
            .unwrap_or(usize::MAX)
    };
    rows.sort_by(|a, b| (rank(&a.1), &a.0).cmp(&(rank(&b.1), &b.0)));
    Ok(rows)
}

/// Times from `queued` to delivery (`sent` by email, `pec_delivered` by PEC) and to the
/// first acknowledgement, per kind, over the deliveries queued since `since` (CONTRACT D6).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KindLatency {
    pub kind: String,
    /// Deliveries queued in the period.
    pub queued: i64,
    pub delivered: i64,
    pub delivery_p50_s: Option<f64>,
    pub delivery_p90_s: Option<f64>,
    pub acknowledged: i64,
    pub ack_p50_s: Option<f64>,
    pub ack_p90_s: Option<f64>,
}

/// [`KindLatency`] of every kind with deliveries queued since `since`, by kind.
pub async fn latency_by_kind(
    conn: &mut PgConnection,
    since: OffsetDateTime,
) -> Result<Vec<KindLatency>, sqlx::Error> {
    sqlx::query_as(
        r#"
        WITH per_delivery AS (
            SELECT kind, notification_id, recipient,
                   min(at) FILTER (WHERE event = 'queued') AS queued,
                   min(at) FILTER (WHERE (channel = 'email' AND event = 'sent')
                                      OR (channel = 'pec' AND event = 'pec_delivered')) AS delivered,
                   min(at) FILTER (WHERE event = 'acknowledged') AS acknowledged
            FROM delivery_events
            WHERE notification_id IN (
                SELECT notification_id FROM delivery_events WHERE event = 'queued' AND at >= $1
            )
            GROUP BY kind, notification_id, recipient
        ), spans AS (
            SELECT kind, queued,
                   extract(epoch FROM delivered - queued)::FLOAT8 AS to_delivery,
                   extract(epoch FROM acknowledged - queued)::FLOAT8 AS to_ack
            FROM per_delivery
            WHERE queued IS NOT NULL
        )
        SELECT kind,
               count(*) AS queued,
               count(to_delivery) AS delivered,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY to_delivery) AS delivery_p50_s,
               percentile_cont(0.9) WITHIN GROUP (ORDER BY to_delivery) AS delivery_p90_s,
               count(to_ack) AS acknowledged,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY to_ack) AS ack_p50_s,
               percentile_cont(0.9) WITHIN GROUP (ORDER BY to_ack) AS ack_p90_s
        FROM spans
        GROUP BY kind
        ORDER BY kind
        "#,
    )
    .bind(since)
    .fetch_all(conn)
    .await
}

//! `raccordo status`: queues with depth and consumers, dead and parked counts, the outbox,
//! deliveries and undeliverable notifications.

use anyhow::Context;
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use raccordo_core::amqp::{QueueStatus, Topology, connect, depth_of, queue_status};
use raccordo_core::db;
use raccordo_core::settings::Settings;
use raccordo_eviction::event::ConsentDecision;

/// A notification no referent matched.
#[derive(Debug, Serialize)]
pub(crate) struct Undeliverable {
    pub id: Uuid,
    pub kind: String,
    pub comune_istat: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// The whole picture.
#[derive(Debug, Serialize)]
pub(crate) struct Status {
    pub prefix: String,
    pub queues: Vec<QueueStatus>,
    pub dead: u32,
    pub parked: u32,
    /// Notifications not yet published by the relay.
    pub outbox_pending: i64,
    /// Emails not yet sent (transient failures included).
    pub deliveries_pending: i64,
    /// Emails refused for good by the server.
    pub deliveries_failed: i64,
    pub deliveries_sent: i64,
    pub undeliverable_total: i64,
    /// The most recent undeliverable notifications.
    pub undeliverable: Vec<Undeliverable>,
    /// Consent revocations that arrived after a later decision and so changed nothing:
    /// each is worth a look (was the citizen's latest word really the grant?).
    pub stale_revocations: i64,
    /// Grants that changed nothing: older than the decision in force, or not recorded
    /// after the revocation in force (C8).
    pub stale_grants: i64,
    /// Revocations applied although they failed validation (C8): each was also
    /// dead-lettered with its reason, which an operator should read.
    pub unvalidated_revocations: i64,
    /// Deliveries that bounced and who stood in for them (D3), and the bounce mailbox's
    /// reports that matched nothing.
    pub bounces: db::Bounces,
}

/// Reads the broker (passive declarations) and the database.
pub(crate) async fn collect(settings: &Settings) -> anyhow::Result<Status> {
    let topology = Topology::from_settings(settings);
    let connection = connect(&settings.amqp, "status")
        .await
        .context("Failed to connect to RabbitMQ (scripts/services.sh starts it)")?;
    let queues = queue_status(&connection, &topology).await?;
    let _ = connection.close(200, "status".into()).await;
    let dead = depth_of(&queues, &topology.dead_queue())
        + depth_of(&queues, &topology.dead_personal_queue());
    let parked = depth_of(&queues, &topology.parked_queue())
        + depth_of(&queues, &topology.parked_personal_queue());

    let pool = crate::database::connect_db(settings).await?;
    let mut conn = pool.acquire().await?;
    let backlog = db::backlog(&mut conn).await?;
    let undeliverable = db::recent_notifications(&mut conn, true, 20).await?;
    let stale = raccordo_eviction::store::stale_decisions(&mut conn).await?;
    let unvalidated_revocations =
        raccordo_eviction::store::unvalidated_revocations(&mut conn).await?;
    let bounces = db::bounces(&mut conn, 20).await?;
    drop(conn);
    pool.close().await;
    let stale_count = |d| {
        stale
            .iter()
            .find(|(decision, _)| *decision == d)
            .map_or(0, |(_, n)| *n)
    };
    Ok(Status {
        prefix: settings.amqp.prefix.clone(),
        queues,
        dead,
        parked,
        outbox_pending: backlog.outbox_pending,
        deliveries_pending: backlog.deliveries_pending,
        deliveries_failed: backlog.deliveries_failed,
        deliveries_sent: backlog.deliveries_sent,
        undeliverable_total: backlog.undeliverable_total,
        stale_revocations: stale_count(ConsentDecision::Revoked),
        stale_grants: stale_count(ConsentDecision::Granted),
        unvalidated_revocations,
        bounces,
        undeliverable: undeliverable
            .into_iter()
            .map(|n| Undeliverable {
                id: n.id,
                kind: n.kind,
                comune_istat: n.comune_istat,
                created_at: n.created_at,
            })
            .collect(),
    })
}

/// The terminal view.
pub(crate) fn table(status: &Status) -> String {
    let rows: Vec<Vec<String>> = status
        .queues
        .iter()
        .map(|q| {
            vec![
                q.name.clone(),
                q.messages.map_or("missing".into(), |m| m.to_string()),
                q.consumers.map_or("-".into(), |c| c.to_string()),
            ]
        })
        .collect();
    let mut out = crate::table::render(&["queue", "messages", "consumers"], &rows);
    out.push_str(&format!(
        "\ndead letters: {}   parked: {}   (raccordo dlq list)\noutbox pending: {}   emails sent: {}   pending: {}   refused: {}\nundeliverable notifications: {}\n",
        status.dead,
        status.parked,
        status.outbox_pending,
        status.deliveries_sent,
        status.deliveries_pending,
        status.deliveries_failed,
        status.undeliverable_total
    ));
    if status.stale_revocations + status.stale_grants > 0 {
        out.push_str(&format!(
            "consent decisions that arrived after a later one and changed nothing: {} revocation(s), {} grant(s) (raccordo audit --kind eviction.consent_revoked)\n",
            status.stale_revocations, status.stale_grants
        ));
    }
    if status.unvalidated_revocations > 0 {
        out.push_str(&format!(
            "revocations applied although invalid (C8; their reasons are in raccordo dlq list): {}\n",
            status.unvalidated_revocations
        ));
    }
    for u in &status.undeliverable {
        out.push_str(&format!(
            "  {}  {}  comune {}  {}\n",
            u.id,
            u.kind,
            u.comune_istat.as_deref().unwrap_or("-"),
            u.created_at
        ));
    }
    let b = &status.bounces;
    if b.bounced_total + b.unmatched_reports + b.malformed_reports > 0 {
        out.push_str(&format!(
            "bounced deliveries: {}   without anyone to stand in: {}   reports matching no delivery: {}   not reports: {}\n",
            b.bounced_total, b.without_stand_in, b.unmatched_reports, b.malformed_reports
        ));
        for r in &b.recent {
            out.push_str(&format!(
                "  {}  {}  {} by {}  {} ({})  → {}\n",
                r.notification_id,
                r.kind,
                r.referent_id,
                r.channel,
                r.status,
                r.source,
                if r.stand_ins.is_empty() {
                    "nobody (raccordo timeline ID)".to_owned()
                } else {
                    r.stand_ins.join(", ")
                }
            ));
        }
    }
    out
}

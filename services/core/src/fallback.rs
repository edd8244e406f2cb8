//! The fallback of a delivery that cannot arrive (CONTRACT §9 D3): a permanent bounce (a
//! DSN of class 5, or a permanent refusal at send time) or a PEC failure is followed by
//!
//! 1. the referent's other channel — its PEC address after an email, its email after a
//!    PEC — when it has one not tried yet for this notification; otherwise,
//! 2. for the kinds a person must act on ([`ACT_ON_KINDS`]), the referents standing in for
//!    it (`deputy_of`) and the other referents of its role covering the notification's
//!    comune.
//!
//! Each stand-in is a new delivery of the same notification, recorded `queued` with whom
//! it stands in for; the failed delivery records a `fallback` event per stand-in. Nobody
//! receives a notification twice (a referent with a delivery of it is skipped), so chains
//! end, even between two offices that stand in for each other. A kind carrying personal
//! data reaches only whom its routing rule allows (CONTRACT §1: an eviction alert only the
//! `servizi_sociali` scoped to the comune or its ambito), deputies included.
//!
//! Everything runs in the caller's transaction: the state change that made the delivery
//! fail, its events and its stand-ins commit together.

use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::db::evidence::{DeliveryEvent, Evidence, record};
use crate::domain::{ComuneIstat, EmailAddress};
use crate::notification::{NotificationKind, Reach};
use crate::registry::{Referent, Snapshot};

/// The kinds a person must act on (CONTRACT D4): their fallback reaches deputies and the
/// role's other referents.
pub const ACT_ON_KINDS: [&str; 4] = [
    "eviction.alert",
    "housing.offered",
    "housing.consultation",
    "asylum.pronta_accoglienza",
];

/// What decides a stand-in's channel: the kinds sent by PEC alone to a referent that has
/// one (`mail.pec_kinds`, CONTRACT D2, §11).
#[derive(Debug, Clone, Default)]
pub struct FallbackPolicy {
    pub pec_kinds: Vec<String>,
    /// Whether the hub can send by PEC at all (`mail.pec_smtp_url`): without it, a
    /// referent's PEC is no other channel to fall back to.
    pub pec_enabled: bool,
}

impl FallbackPolicy {
    /// The policy of `mail`: its PEC kinds, when PEC is on.
    pub fn from_mail(mail: &crate::settings::MailSettings) -> Self {
        Self {
            pec_kinds: mail.pec_channel_kinds(),
            pec_enabled: mail.pec_enabled(),
        }
    }

    /// The channel and address by which `referent` receives `kind`.
    fn address_for<'r>(&self, kind: &str, referent: &'r Referent) -> (Channel, &'r EmailAddress) {
        match &referent.pec {
            Some(pec) if self.pec_kinds.iter().any(|k| k == kind) => (Channel::Pec, pec),
            _ => (Channel::Email, &referent.email),
        }
    }
}

/// A delivery's channel (`deliveries.channel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Email,
    Pec,
}

impl Channel {
    /// Its name in `deliveries.channel` and the timeline.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Pec => "pec",
        }
    }

    fn parse(text: &str) -> Self {
        if text == "pec" {
            Channel::Pec
        } else {
            Channel::Email
        }
    }
}

/// Why a referent stands in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Why {
    /// The same referent, by its other channel.
    OtherChannel,
    /// Its `deputy_of` names the failed delivery's referent.
    Deputy,
    /// Another referent of the same role covering the comune.
    SameRole,
}

impl Why {
    fn as_str(self) -> &'static str {
        match self {
            Why::OtherChannel => "other_channel",
            Why::Deputy => "deputy",
            Why::SameRole => "same_role",
        }
    }
}

/// A new delivery made by a fallback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StandIn {
    pub referent_id: String,
    pub channel: Channel,
    pub why: Why,
}

/// A permanent failure of a delivery that was handed over: what the DSN or the refusing
/// server said.
#[derive(Debug, Clone)]
pub struct Bounce {
    /// The enhanced status (`5.1.1`), or the SMTP reply code when there is none.
    pub status: String,
    /// The server's words, without addresses (they stay out of `delivery.*` events).
    pub diagnostic: Option<String>,
    /// `dsn` (a report read from `mail.bounce_imap_url`) or `smtp` (refused at send time).
    pub source: &'static str,
}

/// What recording a bounce did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BounceOutcome {
    /// Recorded `bounced`, and these stand in for it (none: nobody left to try).
    Bounced(Vec<StandIn>),
    /// The delivery had bounced already (a report read twice): nothing changed.
    AlreadyBounced,
    /// No such delivery: nothing changed.
    NoDelivery,
}

/// Records a permanent bounce of the delivery of `notification_id` to `recipient` (its
/// address) and follows its fallback, in `conn`'s transaction. The delivery is locked
/// first, so two readers of one report record it once.
pub async fn record_bounce(
    conn: &mut PgConnection,
    policy: &FallbackPolicy,
    notification_id: Uuid,
    recipient: &str,
    bounce: &Bounce,
) -> Result<BounceOutcome, sqlx::Error> {
    let locked: Option<String> = sqlx::query_scalar(
        r#"
        SELECT email
        FROM deliveries
        WHERE notification_id = $1
          AND lower(email) = lower($2)
        FOR UPDATE
        "#,
    )
    .bind(notification_id)
    .bind(recipient)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(address) = locked else {
        return Ok(BounceOutcome::NoDelivery);
    };
    let bounced: bool = sqlx::query_scalar(
        r#"
        SELECT EXISTS (
            SELECT 1 FROM delivery_events
            WHERE notification_id = $1
              AND recipient = $2
              AND event = 'bounced'
        )
        "#,
    )
    .bind(notification_id)
    .bind(&address)
    .fetch_one(&mut *conn)
    .await?;
    if bounced {
        return Ok(BounceOutcome::AlreadyBounced);
    }
    let mut event = Evidence::new(notification_id, address.clone(), DeliveryEvent::Bounced)
        .with("status", bounce.status.clone())
        .with("source", bounce.source);
    if let Some(diagnostic) = &bounce.diagnostic {
        event = event.with("diagnostic", diagnostic.clone());
    }
    record(conn, &[event]).await?;
    metrics::counter!("raccordo_deliveries_bounced_total", "source" => bounce.source).increment(1);
    let stand_ins = fall_back(conn, policy, notification_id, &address).await?;
    Ok(BounceOutcome::Bounced(stand_ins))
}

/// The failed delivery, as the fallback needs it: its referent, channel, the notification's
/// kind and comune.
struct Failed {
    referent_id: String,
    channel: Channel,
    kind: String,
    comune_istat: Option<String>,
}

/// A stand-in chosen: the referent, by which channel and address, and why.
type Chosen<'r> = (&'r Referent, Channel, &'r EmailAddress, Why);

/// Follows the fallback of the delivery of `notification_id` to `recipient`, which cannot
/// arrive (its failure already recorded by the caller: `bounced`, `pec_not_delivered`):
/// makes the stand-ins' deliveries, records `fallback` on it and `queued` on theirs, in
/// `conn`'s transaction, and returns them (none: nobody left to try). Safe to call again:
/// whoever already has a delivery of the notification is not added twice.
pub async fn fall_back(
    conn: &mut PgConnection,
    policy: &FallbackPolicy,
    notification_id: Uuid,
    recipient: &str,
) -> Result<Vec<StandIn>, sqlx::Error> {
    let row: Option<(String, String, String, Option<String>)> = sqlx::query_as(
        r#"
        SELECT d.referent_id, d.channel, n.kind, n.comune_istat
        FROM deliveries d
        JOIN notifications n ON n.id = d.notification_id
        WHERE d.notification_id = $1
          AND d.email = $2
        "#,
    )
    .bind(notification_id)
    .bind(recipient)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((referent_id, channel, kind, comune_istat)) = row else {
        return Ok(Vec::new());
    };
    let failed = Failed {
        referent_id,
        channel: Channel::parse(&channel),
        kind,
        comune_istat,
    };
    let registry = Snapshot::load(&mut *conn).await?;
    let already: Vec<(String, String)> = sqlx::query_as(
        "SELECT lower(email), referent_id FROM deliveries WHERE notification_id = $1",
    )
    .bind(notification_id)
    .fetch_all(&mut *conn)
    .await?;
    let chosen = choose(&registry, policy, &failed, &already);
    if chosen.is_empty() {
        tracing::info!(notification = %notification_id, referent = %failed.referent_id, "A delivery failed and nobody is left to stand in for it.");
        metrics::counter!("raccordo_fallbacks_exhausted_total").increment(1);
        return Ok(Vec::new());
    }
    add_stand_ins(conn, notification_id, recipient, &failed, chosen).await
}

/// Who stands in for `failed`, by the chain of D3, skipping whoever `already` (address,
/// referent) has a delivery of the notification.
fn choose<'r>(
    registry: &'r Snapshot,
    policy: &FallbackPolicy,
    failed: &Failed,
    already: &[(String, String)],
) -> Vec<Chosen<'r>> {
    let has_address =
        |a: &EmailAddress| already.iter().any(|(e, _)| *e == a.as_ref().to_lowercase());
    let has_referent = |id: &str| already.iter().any(|(_, r)| r == id);
    let failed_referent = registry.referent(&failed.referent_id);
    // 1. The referent's other channel.
    if let Some(r) = failed_referent {
        let other = match failed.channel {
            Channel::Email => r
                .pec
                .as_ref()
                .filter(|_| policy.pec_enabled)
                .map(|pec| (Channel::Pec, pec)),
            Channel::Pec => Some((Channel::Email, &r.email)),
        };
        if let Some((c, address)) = other
            && !has_address(address)
        {
            return vec![(r, c, address, Why::OtherChannel)];
        }
    }
    // 2. For the kinds a person must act on: deputies, then the role's other referents.
    if !ACT_ON_KINDS.contains(&failed.kind.as_str()) {
        return Vec::new();
    }
    let comune = failed
        .comune_istat
        .as_deref()
        .and_then(|c| ComuneIstat::parse(c).ok())
        .and_then(|c| registry.comune(&c));
    let routed = NotificationKind::parse(&failed.kind);
    // Whom the kind's routing rule reaches for the comune: a kind with personal data
    // reaches nobody else, deputy or not.
    let reachable: Option<Vec<String>> = match (routed, comune) {
        (Some(k), Some(c)) => Some(
            registry
                .recipients_for(k, c)
                .into_iter()
                .map(|r| r.referent_id)
                .collect(),
        ),
        _ => None,
    };
    let personal = routed.is_some_and(|k| k.reach() == Reach::ComuneOrAmbito);
    let allowed = |r: &Referent| {
        !personal
            || reachable
                .as_ref()
                .is_some_and(|ids| ids.contains(&r.referent_id))
    };
    let mut candidates: Vec<(&Referent, Why)> = registry
        .deputies_of(&failed.referent_id)
        .into_iter()
        .filter(|r| allowed(r))
        .map(|r| (r, Why::Deputy))
        .collect();
    if let (Some(failed_referent), Some(ids)) = (failed_referent, &reachable) {
        for id in ids {
            if let Some(r) = registry.referent(id)
                && r.role == failed_referent.role
                && r.referent_id != failed.referent_id
            {
                candidates.push((r, Why::SameRole));
            }
        }
    }
    let mut chosen: Vec<Chosen<'r>> = Vec::new();
    for (r, why) in candidates {
        let (c, address) = policy.address_for(&failed.kind, r);
        let taken = chosen.iter().any(|(o, ..)| o.referent_id == r.referent_id);
        if !taken && !has_referent(&r.referent_id) && !has_address(address) {
            chosen.push((r, c, address, why));
        }
    }
    chosen
}

/// Makes the deliveries of `chosen` and records the events of each.
async fn add_stand_ins(
    conn: &mut PgConnection,
    notification_id: Uuid,
    recipient: &str,
    failed: &Failed,
    chosen: Vec<Chosen<'_>>,
) -> Result<Vec<StandIn>, sqlx::Error> {
    let mut stand_ins = Vec::new();
    let mut evidence = Vec::new();
    for (r, c, address, why) in chosen {
        let inserted = sqlx::query(
            r#"
            INSERT INTO deliveries (notification_id, email, referent_id, name, institution, role, channel)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            ON CONFLICT (notification_id, email) DO NOTHING
            "#,
        )
        .bind(notification_id)
        .bind(address.as_ref())
        .bind(&r.referent_id)
        .bind(&r.name)
        .bind(&r.institution)
        .bind(r.role.as_str())
        .bind(c.as_str())
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if inserted == 0 {
            continue;
        }
        evidence.push(
            Evidence::new(notification_id, recipient, DeliveryEvent::Fallback)
                .with("to", r.referent_id.clone())
                .with("channel", c.as_str())
                .with("why", why.as_str()),
        );
        evidence.push(
            Evidence::new(notification_id, address.as_ref(), DeliveryEvent::Queued)
                .with("fallback_of", failed.referent_id.clone())
                .with("why", why.as_str()),
        );
        metrics::counter!("raccordo_fallbacks_total", "why" => why.as_str()).increment(1);
        stand_ins.push(StandIn {
            referent_id: r.referent_id.clone(),
            channel: c,
            why,
        });
    }
    record(conn, &evidence).await?;
    tracing::info!(notification = %notification_id, referent = %failed.referent_id, stand_ins = stand_ins.len(), "A failed delivery fell back.");
    Ok(stand_ins)
}

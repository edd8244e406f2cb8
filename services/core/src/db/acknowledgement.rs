//! Acknowledgements (CONTRACT D4): the delivery a link names, and its acknowledgement,
//! recorded once.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use super::evidence::{self, DeliveryEvent, Evidence};
use crate::ack::Claims;

/// The delivery an acknowledgement link names.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AckTarget {
    pub notification_id: Uuid,
    /// The address: what the token's MAC covers. Never shown.
    pub email: String,
    pub referent_id: String,
    pub kind: String,
    /// When the notification was decided.
    pub created_at: OffsetDateTime,
    pub acknowledged_at: Option<OffsetDateTime>,
}

/// The delivery of `claims`' notification whose address the token names, if any. The
/// caller verifies the token against its address before trusting it.
pub async fn ack_target(
    conn: &mut PgConnection,
    claims: &Claims,
) -> Result<Option<AckTarget>, sqlx::Error> {
    let rows: Vec<AckTarget> = sqlx::query_as(
        r#"
        SELECT d.notification_id, d.email, d.referent_id, n.kind, n.created_at,
               d.acknowledged_at
        FROM deliveries d
        JOIN notifications n ON n.id = d.notification_id
        WHERE d.notification_id = $1
        "#,
    )
    .bind(claims.notification)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().find(|t| claims.names(&t.email)))
}

/// What an acknowledgement did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acknowledgement {
    /// Recorded now, at this instant.
    Recorded(OffsetDateTime),
    /// Already recorded then: nothing changes.
    Already(OffsetDateTime),
}

/// Records that the recipient of `target` acknowledged it — once: the first call sets
/// `acknowledged_at` and appends `acknowledged` (with `by`, the referent) to the timeline;
/// later calls, concurrent ones included, change nothing and say when it was.
pub async fn acknowledge(
    conn: &mut PgConnection,
    target: &AckTarget,
) -> Result<Acknowledgement, sqlx::Error> {
    let recorded: Option<OffsetDateTime> = sqlx::query_scalar(
        r#"
        UPDATE deliveries
        SET acknowledged_at = clock_timestamp()
        WHERE notification_id = $1
          AND email = $2
          AND acknowledged_at IS NULL
        RETURNING acknowledged_at
        "#,
    )
    .bind(target.notification_id)
    .bind(&target.email)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(at) = recorded {
        let event = Evidence::new(
            target.notification_id,
            target.email.clone(),
            DeliveryEvent::Acknowledged,
        )
        .with("by", target.referent_id.clone());
        evidence::record(conn, &[event]).await?;
        return Ok(Acknowledgement::Recorded(at));
    }
    let at: Option<OffsetDateTime> = sqlx::query_scalar(
        "SELECT acknowledged_at FROM deliveries WHERE notification_id = $1 AND email = $2",
    )
    .bind(target.notification_id)
    .bind(&target.email)
    .fetch_optional(&mut *conn)
    .await?
    .flatten();
    at.map(Acknowledgement::Already)
        .ok_or(sqlx::Error::RowNotFound)
}

//! Read-only views of the outbox for operators: each notification with its recipients and
//! whether their emails went out. Referents' addresses only, never a payload.

use sqlx::PgConnection;
use uuid::Uuid;

/// One notification and its emails.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct NotificationLine {
    pub id: Uuid,
    pub kind: String,
    /// The name of the comune it is about, when it is about one.
    pub comune_nome: Option<String>,
    /// Emails handed over.
    pub sent: i64,
    /// Emails not (yet) handed over.
    pub unsent: i64,
    /// Every recipient's address, sorted.
    pub recipients: Vec<String>,
}

/// Every notification, oldest first, with its emails.
pub async fn notification_lines(
    conn: &mut PgConnection,
) -> Result<Vec<NotificationLine>, sqlx::Error> {
    sqlx::query_as(
        r#"
        SELECT n.id,
               n.kind,
               c.nome AS comune_nome,
               count(d.email) FILTER (WHERE d.delivered_at IS NOT NULL) AS sent,
               count(d.email) FILTER (WHERE d.delivered_at IS NULL) AS unsent,
               COALESCE(array_agg(d.email ORDER BY d.email) FILTER (WHERE d.email IS NOT NULL), '{}') AS recipients
        FROM notifications n
        LEFT JOIN comuni c ON c.istat = n.comune_istat
        LEFT JOIN deliveries d ON d.notification_id = n.id
        GROUP BY n.id, n.kind, c.nome, n.created_at
        ORDER BY n.created_at, n.kind
        "#,
    )
    .fetch_all(conn)
    .await
}

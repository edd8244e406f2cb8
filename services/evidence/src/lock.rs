//! One reader per mailbox across replicas: a PostgreSQL session-level advisory lock held on
//! a connection of its own for as long as the reader reads. A replica that dies releases it
//! with its connection; another takes over at its next try.

use sqlx::{Connection, PgConnection};

use raccordo_core::settings::DatabaseSettings;

/// The lock of one reader, e.g. `raccordo.pec_receipts`: its key is `hashtext(name)`.
#[derive(Debug)]
pub struct ReaderLock {
    conn: PgConnection,
}

impl ReaderLock {
    /// Takes the lock named `name` if no other session holds it; `None` when one does.
    ///
    /// # Errors
    /// The database is unreachable.
    pub async fn try_take(
        database: &DatabaseSettings,
        name: &str,
    ) -> Result<Option<Self>, sqlx::Error> {
        let mut conn = PgConnection::connect_with(&database.connect_options()?).await?;
        let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
            .bind(name)
            .fetch_one(&mut conn)
            .await?;
        if taken {
            Ok(Some(Self { conn }))
        } else {
            let _ = conn.close().await;
            Ok(None)
        }
    }

    /// Whether the lock's connection still answers (else the lock is gone with it).
    pub async fn held(&mut self) -> bool {
        self.conn.ping().await.is_ok()
    }

    /// Releases the lock.
    pub async fn release(self) {
        let _ = self.conn.close().await;
    }
}

//! The commands' one way to the database, and to the broker for what a `--send` wrote to
//! the outbox.

use anyhow::Context;
use sqlx::PgPool;

use raccordo_core::db;
use raccordo_core::settings::Settings;

/// Opens a pool on `database.url`, failing with what to run when it cannot.
pub(crate) async fn connect_db(settings: &Settings) -> anyhow::Result<PgPool> {
    db::connect_hub(settings).await.with_context(|| {
        let name = settings
            .database
            .database_name()
            .unwrap_or_else(|_| "of database.url".into());
        format!(
            "Failed to connect to the database {name} (run `raccordo setup` first, and scripts/services.sh if PostgreSQL is down)"
        )
    })
}

/// Whether the notifications a `--send` wrote went out on `{prefix}.events` at once.
#[derive(Debug)]
pub enum Publication {
    /// Published with confirms: this many notifications.
    Published(usize),
    /// Not published now; they wait in the outbox for the relay of a running hub.
    Deferred(db::RelayError),
}

impl Publication {
    /// Publishes what waits in the outbox; a failure is kept for [`Publication::describe`]
    /// to tell, not dropped.
    pub async fn attempt(pool: &PgPool, settings: &Settings) -> Publication {
        match db::publish_pending(pool, settings).await {
            Ok(n) => Publication::Published(n),
            Err(error) => Publication::Deferred(error),
        }
    }

    /// Whether the notifications went out.
    pub fn is_published(&self) -> bool {
        matches!(self, Publication::Published(_))
    }

    /// What it means for the operator, one line.
    pub fn describe(&self) -> String {
        match self {
            Publication::Published(_) => {
                "Published on the events exchange: the mailer of a running hub sends the emails.\n"
                    .to_owned()
            }
            Publication::Deferred(error) => format!(
                "Not published now ({}): the notifications wait in the outbox; a running hub publishes and sends them.\n",
                raccordo_core::telemetry::ErrorChain(error)
            ),
        }
    }
}

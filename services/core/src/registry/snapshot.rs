//! The registry in memory: comuni and referents as of one `registry_version`. Workers read
//! the version once per transaction and load the registry again only when it moved, so an
//! event pays no query for its comune or its recipients (CONTRACT §1, §5 as one function).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sqlx::PgConnection;

use super::comuni::{Comune, list_comuni};
use super::recipients::Recipient;
use super::referents::{Referent, list_referents};
use crate::amqp::HandleError;
use crate::domain::{ComuneIstat, Scope};
use crate::notification::{NotificationKind, Reach};

/// Comuni and referents as one version of the registry left them.
#[derive(Debug)]
pub struct Snapshot {
    version: i64,
    comuni: HashMap<String, Comune>,
    /// By role, then referent id: the order recipients are listed in.
    referents: Vec<Referent>,
}

/// The registry's current version.
async fn current_version(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT version FROM registry_version")
        .fetch_one(conn)
        .await
}

impl Snapshot {
    /// Loads the registry as it is now.
    pub async fn load(conn: &mut PgConnection) -> Result<Self, sqlx::Error> {
        let version = current_version(&mut *conn).await?;
        Self::load_at(conn, version).await
    }

    /// Loads the registry, labelled `version`, read before it: a change committed between
    /// the two reads only makes the next check load it again.
    async fn load_at(conn: &mut PgConnection, version: i64) -> Result<Self, sqlx::Error> {
        let comuni = list_comuni(&mut *conn)
            .await?
            .into_iter()
            .map(|c| (c.istat.as_ref().to_owned(), c))
            .collect();
        let referents = list_referents(conn).await?;
        Ok(Self {
            version,
            comuni,
            referents,
        })
    }

    /// One comune.
    pub fn comune(&self, istat: &ComuneIstat) -> Option<&Comune> {
        self.comuni.get(istat.as_ref())
    }

    /// One referent.
    pub fn referent(&self, referent_id: &str) -> Option<&Referent> {
        self.referents.iter().find(|r| r.referent_id == referent_id)
    }

    /// The referents that stand in for `referent_id` (their `deputy_of` names it), by role
    /// and id.
    pub fn deputies_of(&self, referent_id: &str) -> Vec<&Referent> {
        self.referents
            .iter()
            .filter(|r| r.deputy_of.as_deref() == Some(referent_id))
            .collect()
    }

    /// The comuni of one zona, or all, by zona then ISTAT code (the quota worker's lock
    /// order).
    pub fn comuni_by_istat(&self, zona: Option<&str>) -> Vec<Comune> {
        let mut comuni: Vec<Comune> = self
            .comuni
            .values()
            .filter(|c| zona.is_none_or(|z| c.zona == z))
            .cloned()
            .collect();
        comuni.sort_by(|a, b| (&a.zona, a.istat.as_ref()).cmp(&(&b.zona, b.istat.as_ref())));
        comuni
    }

    /// The comune an event names; an unknown one makes the event unprocessable.
    pub fn require_comune(&self, istat: &ComuneIstat) -> Result<&Comune, HandleError> {
        self.comune(istat)
            .ok_or_else(|| HandleError::UnknownComune(istat.clone()))
    }

    /// Referents of `kind`'s roles that it reaches for `comune`, one per address.
    pub fn recipients_for(&self, kind: NotificationKind, comune: &Comune) -> Vec<Recipient> {
        let covering = kind.reach() == Reach::Covering;
        let reaches = |scope: &Scope| match scope {
            Scope::Comune(istat) => *istat == comune.istat,
            Scope::Ambito(ambito) => comune.ambito.as_ref() == Some(ambito),
            Scope::Zona(zona) => covering && *zona == comune.zona,
            Scope::All => covering,
        };
        let mut out: Vec<Recipient> = Vec::new();
        for r in &self.referents {
            if !kind.roles().contains(&r.role) || !reaches(&r.scope) {
                continue;
            }
            // One email per address, even if two referents share it.
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
}

/// The last snapshot a worker loaded, shared by its consumers.
#[derive(Debug, Default)]
pub struct RegistryCache {
    current: Mutex<Option<Arc<Snapshot>>>,
}

impl RegistryCache {
    /// An empty cache: the first call loads the registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The registry as of now, inside the caller's transaction: one query when it has not
    /// changed since the last call, a reload when it has.
    pub async fn snapshot(&self, conn: &mut PgConnection) -> Result<Arc<Snapshot>, sqlx::Error> {
        let version = current_version(&mut *conn).await?;
        if let Some(cached) = self.cached().filter(|s| s.version == version) {
            return Ok(cached);
        }
        let fresh = Arc::new(Snapshot::load_at(conn, version).await?);
        if let Ok(mut current) = self.current.lock() {
            // Concurrent loads: keep the newest.
            if current.as_ref().is_none_or(|c| c.version <= version) {
                *current = Some(fresh.clone());
            }
        }
        Ok(fresh)
    }

    fn cached(&self) -> Option<Arc<Snapshot>> {
        self.current.lock().ok().and_then(|c| c.clone())
    }
}

//! The worker of `registry.referent.v1`: the registry's own event, taken by the shared
//! inbound path like any other (here, above both, so `registry` need not know `inbound`).

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::PgConnection;

use crate::amqp::HandleError;
use crate::envelope::{Envelope, EventType};
use crate::inbound::EventWorker;
use crate::origin::Publishers;
use crate::registry::{Snapshot, apply_published_referent_event};

/// Applies each referent event in a transaction of its own (no batch key).
pub struct RegistryWorker {
    publishers: Arc<Publishers>,
}

impl RegistryWorker {
    /// A worker that holds each publisher to its `publishers.<user>.scopes`.
    pub fn new(publishers: Arc<Publishers>) -> Self {
        Self { publishers }
    }
}

#[async_trait]
impl EventWorker for RegistryWorker {
    fn accepts(&self) -> &'static [EventType] {
        &[EventType::RegistryReferent]
    }

    /// The snapshot (the registry before) is not read: the event changes the registry.
    async fn apply(
        &self,
        tx: &mut PgConnection,
        _registry: &Snapshot,
        event: &Envelope,
    ) -> Result<(), HandleError> {
        apply_published_referent_event(tx, &self.publishers, event).await
    }
}

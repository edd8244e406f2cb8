//! The asylum worker in the inbound transaction: each type to its module.

use async_trait::async_trait;
use sqlx::PgConnection;

use raccordo_core::amqp::HandleError;
use raccordo_core::envelope::{Envelope, EventType};
use raccordo_core::inbound::EventWorker;
use raccordo_core::registry::Snapshot;
use raccordo_core::settings::{AsylumSettings, EvictionSettings};

use crate::{domicile, placement, pronta};

/// The worker of the four `asylum.*.v1` types.
pub struct AsylumWorker {
    /// The key chain of the case pseudonyms.
    keys: EvictionSettings,
    settings: AsylumSettings,
}

impl AsylumWorker {
    /// With the pseudonym keys of `eviction` and the clocks of `asylum`.
    pub fn new(keys: &EvictionSettings, settings: &AsylumSettings) -> Self {
        Self {
            keys: keys.clone(),
            settings: settings.clone(),
        }
    }

    /// The configured clocks.
    pub fn settings(&self) -> &AsylumSettings {
        &self.settings
    }
}

#[async_trait]
impl EventWorker for AsylumWorker {
    fn accepts(&self) -> &'static [EventType] {
        &[
            EventType::AsylumVulnerability,
            EventType::AsylumIntervention,
            EventType::AsylumDomicile,
            EventType::AsylumPlacement,
        ]
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        registry: &Snapshot,
        event: &Envelope,
    ) -> Result<(), HandleError> {
        match event.event_type {
            EventType::AsylumVulnerability => {
                pronta::vulnerability(tx, registry, &self.keys, &self.settings, event).await
            }
            EventType::AsylumIntervention => pronta::intervention(tx, &self.keys, event).await,
            EventType::AsylumDomicile => domicile::request(tx, registry, &self.keys, event).await,
            EventType::AsylumPlacement => placement::update(tx, registry, &self.keys, event).await,
            other => Err(HandleError::WrongQueue {
                event_type: other,
                routing_key: other.as_str().to_owned(),
            }),
        }
    }
}

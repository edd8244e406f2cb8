//! Inbound events, the same way for every worker: decode and validate the CloudEvent,
//! check the worker handles its type and that its publisher may say it, then in one
//! transaction record the idempotency key, apply the worker's decision and write its
//! outbox rows — and commit.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::{PgConnection, PgPool};

use crate::amqp::{HandleError, Handler, Message, Outcome};
use crate::db::{Ingest, record_event};
use crate::envelope::{Envelope, EventType};
use crate::origin::Publishers;

/// The part of a worker that differs from the others.
#[async_trait]
pub trait EventWorker: Send + Sync + 'static {
    /// The event types this worker handles; others are dead-lettered.
    fn accepts(&self) -> &'static [EventType];

    /// Applies one new event inside the transaction `tx`.
    async fn apply(&self, tx: &mut PgConnection, event: &Envelope) -> Result<(), HandleError>;
}

/// A [`Handler`] made of an [`EventWorker`] and the database.
pub struct Inbound<W> {
    pool: PgPool,
    publishers: Arc<Publishers>,
    worker: W,
}

impl<W: EventWorker> Inbound<W> {
    /// Wraps `worker`; `publishers` says who may publish what.
    pub fn new(pool: PgPool, publishers: Arc<Publishers>, worker: W) -> Self {
        Self {
            pool,
            publishers,
            worker,
        }
    }
}

#[async_trait]
impl<W: EventWorker> Handler for Inbound<W> {
    async fn handle(&self, message: &Message) -> Result<Outcome, HandleError> {
        let event = Envelope::decode(&message.body)
            .map_err(|rejection| HandleError::Permanent(rejection.to_string()))?;
        let span = tracing::Span::current();
        span.record("type", event.event_type.as_str());
        span.record("source", event.source.as_str());
        if !self.worker.accepts().contains(&event.event_type) {
            return Err(HandleError::Permanent(format!(
                "no worker handles type {} on this queue (routing key {})",
                event.event_type, message.routing_key
            )));
        }
        self.publishers
            .authorize(message.publisher.as_deref(), &event)
            .map_err(|refusal| HandleError::Permanent(refusal.to_string()))?;
        let mut tx = self.pool.begin().await.map_err(HandleError::from_db)?;
        if record_event(&mut tx, &event)
            .await
            .map_err(HandleError::from_db)?
            == Ingest::Duplicate
        {
            return Ok(Outcome::Duplicate);
        }
        self.worker.apply(&mut tx, &event).await?;
        tx.commit().await.map_err(HandleError::from_db)?;
        Ok(Outcome::Processed)
    }
}

/// Moves whatever reaches `{prefix}.unrouted` (published with a type no worker is bound
/// to) to the dead queue, naming the type (CONTRACT F1).
pub struct Unrouted;

#[async_trait]
impl Handler for Unrouted {
    async fn handle(&self, message: &Message) -> Result<Outcome, HandleError> {
        let reason = match Envelope::decode(&message.body) {
            Err(rejection) => rejection.to_string(),
            Ok(event) => format!(
                "no worker is bound to routing key {:?} (event type {})",
                message.routing_key, event.event_type
            ),
        };
        Err(HandleError::Permanent(reason))
    }
}

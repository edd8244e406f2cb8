//! Inbound events, the same way for every worker: decode and validate the CloudEvent,
//! check the worker handles its type and that its publisher may say it, then in one
//! transaction record the idempotency key, apply the worker's decision and write its
//! outbox rows — and commit.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::{Acquire, PgConnection, PgPool};
use tracing::Instrument;

use crate::amqp::{HandleError, Handler, HoldingPolicy, Message, Outcome};
use crate::db::{Ingest, record_event};
use crate::envelope::{Envelope, EventType};
use crate::origin::Publishers;

/// The part of a worker that differs from the others.
#[async_trait]
pub trait EventWorker: Send + Sync + 'static {
    /// The event types this worker handles; others are dead-lettered.
    fn accepts(&self) -> &'static [EventType];

    /// Where `event` takes its row locks, for deciding it in a batch with others: a batch
    /// applies its events in the order of these keys (arrival order among equal keys), so
    /// two batches always lock rows in one order and never deadlock. None: the event is
    /// decided in a transaction of its own (its locks span more than one key). Default None.
    fn batch_key(&self, _event: &Envelope) -> Option<String> {
        None
    }

    /// Applies one new event inside the transaction `tx`.
    async fn apply(&self, tx: &mut PgConnection, event: &Envelope) -> Result<(), HandleError>;

    /// What may stay of this worker's messages once held. Default: kept until an operator acts.
    fn holding_policy(&self) -> HoldingPolicy {
        HoldingPolicy::keep()
    }
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

impl<W: EventWorker> Inbound<W> {
    /// Decodes the event and checks it may be handled here and by its publisher: nothing
    /// of this needs the database.
    fn admit(&self, message: &Message) -> Result<Envelope, HandleError> {
        let event = Envelope::decode(&message.body)?;
        message.span.record("type", event.event_type.as_str());
        message.span.record("source", event.source.as_str());
        if !self.worker.accepts().contains(&event.event_type) {
            return Err(HandleError::WrongQueue {
                event_type: event.event_type,
                routing_key: message.routing_key.clone(),
            });
        }
        self.publishers
            .authorize(message.publisher.as_deref(), &event)?;
        Ok(event)
    }

    /// Records the idempotency key and applies the event, inside `tx`.
    async fn ingest(
        &self,
        tx: &mut PgConnection,
        event: &Envelope,
    ) -> Result<Outcome, HandleError> {
        if record_event(tx, event).await? == Ingest::Duplicate {
            return Ok(Outcome::Duplicate);
        }
        self.worker.apply(tx, event).await?;
        Ok(Outcome::Processed)
    }
}

#[async_trait]
impl<W: EventWorker> Handler for Inbound<W> {
    async fn handle(&self, message: &Message) -> Result<Outcome, HandleError> {
        let event = self.admit(message)?;
        let mut tx = self.pool.begin().await?;
        let outcome = self.ingest(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    fn holding_policy(&self) -> HoldingPolicy {
        self.worker.holding_policy()
    }

    /// Every event of the batch in one transaction, each in a savepoint of its own: an
    /// event that fails rolls back alone, and the batch pays one commit (one WAL flush)
    /// instead of one per event. Events are applied in the order they arrived.
    async fn handle_batch(&self, messages: &[&Message]) -> Vec<Result<Outcome, HandleError>> {
        let mut results: Vec<Option<Result<Outcome, HandleError>>> =
            messages.iter().map(|_| None).collect();
        let mut admitted = Vec::with_capacity(messages.len());
        for (i, message) in messages.iter().enumerate() {
            match self.admit(message) {
                Ok(event) => match self.worker.batch_key(&event) {
                    Some(key) => admitted.push((key, i, event)),
                    None => {
                        // Its own transaction, in arrival order before the batch.
                        let result = async {
                            let mut tx = self.pool.begin().await?;
                            let outcome = self.ingest(&mut tx, &event).await?;
                            tx.commit().await?;
                            Ok(outcome)
                        }
                        .instrument(message.span.clone())
                        .await;
                        results[i] = Some(result);
                    }
                },
                Err(error) => results[i] = Some(Err(error)),
            }
        }
        // Stable: events with the same key keep their arrival order (Q1's "later arrival").
        admitted.sort_by(|a, b| a.0.cmp(&b.0));
        if !admitted.is_empty() {
            match self.pool.begin().await {
                Err(error) => {
                    let error = Arc::new(error);
                    for (_, i, _) in &admitted {
                        results[*i] = Some(Err(HandleError::shared(&error)));
                    }
                }
                Ok(mut tx) => {
                    // A lone event needs no savepoint: its failure rolls back nothing else.
                    let alone = admitted.len() == 1;
                    for (_, i, event) in &admitted {
                        let result = async {
                            if alone {
                                return self.ingest(&mut tx, event).await;
                            }
                            let mut savepoint = tx.begin().await?;
                            let outcome = self.ingest(&mut savepoint, event).await?;
                            savepoint.commit().await?;
                            Ok(outcome)
                        }
                        .instrument(messages[*i].span.clone())
                        .await;
                        results[*i] = Some(result);
                    }
                    let failed_alone = alone
                        && admitted
                            .first()
                            .is_some_and(|(_, i, _)| matches!(results[*i], Some(Err(_))));
                    if failed_alone {
                        // Its writes (the idempotency row first) must not stay: rolled back.
                        let _ = tx.rollback().await;
                    } else if let Err(error) = tx.commit().await {
                        // Nothing of the batch is committed: what succeeded must be done again.
                        let error = Arc::new(error);
                        for (_, i, _) in &admitted {
                            if matches!(results[*i], Some(Ok(_))) {
                                results[*i] = Some(Err(HandleError::shared(&error)));
                            }
                        }
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or(Err(HandleError::NoResult)))
            .collect()
    }
}

/// Moves whatever reaches `{prefix}.unrouted` (published with a type no worker is bound
/// to) to the dead queue, naming the type (CONTRACT F1).
pub struct Unrouted;

#[async_trait]
impl Handler for Unrouted {
    async fn handle(&self, message: &Message) -> Result<Outcome, HandleError> {
        let event = Envelope::decode(&message.body)?;
        Err(HandleError::Unrouted {
            routing_key: message.routing_key.clone(),
            event_type: event.event_type,
        })
    }
}

//! Inbound events, the same way for every worker: decode and validate the CloudEvent,
//! check the worker handles its type and that its publisher may say it, then in one
//! transaction record the idempotency key, apply the worker's decision and write its
//! outbox rows — and commit. A batch of events shares one transaction; the registry is
//! read from memory, checked once per transaction against its version.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::{Acquire, PgConnection, PgPool};
use tracing::Instrument;

use crate::amqp::{Disposition, HandleError, Handler, HoldingPolicy, Message, Outcome};
use crate::binding;
use crate::db::{Ingest, record_event, record_events};
use crate::envelope::{Envelope, EventType};
use crate::origin::Publishers;
use crate::registry::{RegistryCache, Snapshot};
use crate::telemetry::ErrorChain;

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

    /// Applies one new event inside the transaction `tx`; `registry` is the registry as
    /// of this transaction.
    async fn apply(
        &self,
        tx: &mut PgConnection,
        registry: &Snapshot,
        event: &Envelope,
    ) -> Result<(), HandleError>;

    /// Runs once per transaction, before the first event is applied: checks that hold for
    /// the whole transaction (a lock, a key) are taken here rather than per event.
    /// Default: nothing.
    async fn prepare(&self, _tx: &mut PgConnection) -> Result<(), HandleError> {
        Ok(())
    }

    /// Applies new events that share a batch key, in order, inside `tx`: as one by one
    /// with [`EventWorker::apply`] unless the worker can do better. An error rolls back
    /// the whole batch, which is then applied one event at a time.
    async fn apply_group(
        &self,
        tx: &mut PgConnection,
        registry: &Snapshot,
        events: &[&Envelope],
    ) -> Result<(), HandleError> {
        for event in events {
            self.apply(tx, registry, event).await?;
        }
        Ok(())
    }

    /// What may stay of this worker's messages once held. Default: kept until an operator acts.
    fn holding_policy(&self) -> HoldingPolicy {
        HoldingPolicy::keep()
    }

    /// Whether [`EventWorker::salvage`] has anything to do with this refused message (a
    /// cheap look at it, before a transaction is opened). Default: no.
    fn salvageable(&self, _message: &Message) -> bool {
        false
    }

    /// Called, in a transaction of its own, with a message of this worker's queue that is
    /// about to be dead-lettered for `error` (invalid, refused to its publisher, in
    /// conflict): the worker may still act on what can be trusted of it — a revocation
    /// always wins (CONTRACT C8). Returns what it did, which the dead letter's reason
    /// tells the operator. Default: nothing.
    async fn salvage(
        &self,
        _tx: &mut PgConnection,
        _registry: &Snapshot,
        _message: &Message,
        _error: &HandleError,
    ) -> Result<Option<String>, HandleError> {
        Ok(None)
    }
}

/// A [`Handler`] made of an [`EventWorker`] and the database.
pub struct Inbound<W> {
    pool: PgPool,
    publishers: Arc<Publishers>,
    registry: RegistryCache,
    worker: W,
}

impl<W: EventWorker> Inbound<W> {
    /// Wraps `worker`; `publishers` says who may publish what.
    pub fn new(pool: PgPool, publishers: Arc<Publishers>, worker: W) -> Self {
        Self {
            pool,
            publishers,
            registry: RegistryCache::new(),
            worker,
        }
    }
}

impl<W: EventWorker> Inbound<W> {
    /// Decodes the event and checks it may be handled here and by its publisher: nothing
    /// of this needs the database.
    fn admit(&self, message: &Message) -> Result<Envelope, HandleError> {
        let event = binding::decode(&message.body, &message.properties)?
            .published_by(message.publisher.as_deref());
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

    /// Records the idempotency key, prepares the worker and applies the event, inside `tx`
    /// (one event alone, or one savepoint of a batch).
    async fn ingest(
        &self,
        tx: &mut PgConnection,
        registry: &Snapshot,
        event: &Envelope,
    ) -> Result<Outcome, HandleError> {
        match record_event(tx, event).await? {
            Ingest::New => {}
            Ingest::Duplicate => return Ok(Outcome::Duplicate),
            Ingest::Conflict => return Err(conflict(event)),
        }
        self.worker.prepare(tx).await?;
        self.worker.apply(tx, registry, event).await?;
        Ok(Outcome::Processed)
    }
}

#[async_trait]
impl<W: EventWorker> Handler for Inbound<W> {
    async fn handle(&self, message: &Message) -> Result<Outcome, HandleError> {
        let result = match self.admit(message) {
            Ok(event) => self.ingest_alone(&event).await,
            Err(error) => Err(error),
        };
        self.salvage(message, result).await
    }

    fn holding_policy(&self) -> HoldingPolicy {
        self.worker.holding_policy()
    }

    /// Every event of the batch in one transaction: the batch pays one commit (one WAL
    /// flush) instead of one per event. Events are applied in the order of their batch
    /// keys, arrival order among equal keys.
    async fn handle_batch(&self, messages: &[&Message]) -> Vec<Result<Outcome, HandleError>> {
        let mut results: Vec<Option<Result<Outcome, HandleError>>> =
            messages.iter().map(|_| None).collect();
        let mut admitted = Vec::with_capacity(messages.len());
        for (i, message) in messages.iter().enumerate() {
            match self.admit(message) {
                Ok(event) => match self.worker.batch_key(&event) {
                    Some(key) => admitted.push(Admitted {
                        key,
                        index: i,
                        event,
                    }),
                    None => {
                        // Its own transaction, in arrival order before the batch.
                        let result = self.ingest_alone(&event).instrument(message.span.clone());
                        results[i] = Some(result.await);
                    }
                },
                Err(error) => results[i] = Some(Err(error)),
            }
        }
        // Stable: events with the same key keep their arrival order (Q1's "later arrival").
        admitted.sort_by(|a, b| a.key.cmp(&b.key));
        if let [one] = admitted.as_slice() {
            let result = self.ingest_alone(&one.event);
            results[one.index] = Some(result.instrument(messages[one.index].span.clone()).await);
        } else if !admitted.is_empty() {
            match self.apply_together(&admitted, messages).await {
                Ok(outcomes) => {
                    for (a, outcome) in admitted.iter().zip(outcomes) {
                        results[a.index] = Some(outcome);
                    }
                }
                Err(error) => {
                    // Nothing was committed: again, each event in a savepoint of its own.
                    tracing::debug!(error = %ErrorChain(&error), "A batch failed; applying its events one by one.");
                    for (index, result) in self.apply_each(&admitted, messages).await {
                        results[index] = Some(result);
                    }
                }
            }
        }
        let mut settled = Vec::with_capacity(results.len());
        for (message, result) in messages.iter().zip(results) {
            let result = result.unwrap_or(Err(HandleError::NoResult));
            settled.push(self.salvage(message, result).await);
        }
        settled
    }
}

/// The error of an event whose key was recorded with another digest.
fn conflict(event: &Envelope) -> HandleError {
    HandleError::Conflict {
        publisher: event.publisher.clone(),
    }
}

/// An event of a batch, admitted, with its lock key and its place in the batch.
struct Admitted {
    key: String,
    index: usize,
    event: Envelope,
}

impl<W: EventWorker> Inbound<W> {
    /// Gives the worker its say on a message about to be dead-lettered (see
    /// [`EventWorker::salvage`]). Should that fail with a fault that passes, the message is
    /// retried rather than dead-lettered: what the worker would have done is not lost.
    async fn salvage(
        &self,
        message: &Message,
        result: Result<Outcome, HandleError>,
    ) -> Result<Outcome, HandleError> {
        let error = match result {
            Err(error) if error.disposition() == Disposition::Dead && self.may_salvage(message) => {
                error
            }
            other => return other,
        };
        let salvaged = async {
            let mut tx = self.pool.begin().await?;
            let registry = self.registry.snapshot(&mut tx).await?;
            let done = self
                .worker
                .salvage(&mut tx, &registry, message, &error)
                .instrument(message.span.clone())
                .await?;
            tx.commit().await?;
            Ok::<_, HandleError>(done)
        };
        match salvaged.await {
            Ok(None) => Err(error),
            Ok(Some(done)) => Err(HandleError::Salvaged {
                error: Box::new(error),
                done,
            }),
            Err(fault) if fault.disposition() == Disposition::Retry => Err(fault),
            Err(fault) => {
                tracing::error!(error = %ErrorChain(&fault), "A refused message could not be salvaged.");
                Err(error)
            }
        }
    }

    /// Only a publisher that may send the message's type at all is heard (C8 waives the
    /// comune entitlement of a revocation, never the type).
    fn may_salvage(&self, message: &Message) -> bool {
        EventType::parse(&message.routing_key).is_some_and(|t| {
            self.worker.accepts().contains(&t)
                && self
                    .publishers
                    .may_publish_type(message.publisher.as_deref(), t)
        }) && self.worker.salvageable(message)
    }

    /// One event in a transaction of its own.
    async fn ingest_alone(&self, event: &Envelope) -> Result<Outcome, HandleError> {
        let mut tx = self.pool.begin().await?;
        let registry = self.registry.snapshot(&mut tx).await?;
        let outcome = self.ingest(&mut tx, &registry, event).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// The happy path of a batch: one statement records every idempotency key, then each
    /// event is applied with no savepoint. The first failure rolls everything back.
    async fn apply_together(
        &self,
        admitted: &[Admitted],
        messages: &[&Message],
    ) -> Result<Vec<Result<Outcome, HandleError>>, HandleError> {
        let mut tx = self.pool.begin().await?;
        let registry = self.registry.snapshot(&mut tx).await?;
        let events: Vec<&Envelope> = admitted.iter().map(|a| &a.event).collect();
        let ingests = record_events(&mut tx, &events).await?;
        if ingests.contains(&Ingest::New) {
            self.worker.prepare(&mut tx).await?;
        }
        let outcomes: Vec<Result<Outcome, HandleError>> = ingests
            .iter()
            .zip(&events)
            .map(|(i, event)| match i {
                Ingest::New => Ok(Outcome::Processed),
                Ingest::Duplicate => Ok(Outcome::Duplicate),
                Ingest::Conflict => Err(conflict(event)),
            })
            .collect();
        // The new events, by key: a group shares its key, so the worker may apply it as one.
        let fresh: Vec<&Admitted> = admitted
            .iter()
            .zip(&ingests)
            .filter(|(_, i)| **i == Ingest::New)
            .map(|(a, _)| a)
            .collect();
        for group in fresh.chunk_by(|a, b| a.key == b.key) {
            let span = messages[group[0].index].span.clone();
            if let [one] = group {
                let applied = self.worker.apply(&mut tx, &registry, &one.event);
                applied.instrument(span).await?;
                continue;
            }
            // The group's span is its first event's; one by one, each has its own.
            let events: Vec<&Envelope> = group.iter().map(|a| &a.event).collect();
            let applied = self.worker.apply_group(&mut tx, &registry, &events);
            applied.instrument(span).await?;
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    /// A batch with a failing event: one transaction, each event in a savepoint of its
    /// own, so the one that fails rolls back alone.
    async fn apply_each(
        &self,
        admitted: &[Admitted],
        messages: &[&Message],
    ) -> Vec<(usize, Result<Outcome, HandleError>)> {
        let opened = async {
            let mut tx = self.pool.begin().await?;
            let registry = self.registry.snapshot(&mut tx).await?;
            Ok::<_, sqlx::Error>((tx, registry))
        };
        let (mut tx, registry) = match opened.await {
            Ok(opened) => opened,
            Err(error) => {
                let error = Arc::new(error);
                return admitted
                    .iter()
                    .map(|a| (a.index, Err(HandleError::shared(&error))))
                    .collect();
            }
        };
        let mut results = Vec::with_capacity(admitted.len());
        for a in admitted {
            let result = async {
                let mut savepoint = tx.begin().await?;
                let outcome = self.ingest(&mut savepoint, &registry, &a.event).await?;
                savepoint.commit().await?;
                Ok(outcome)
            }
            .instrument(messages[a.index].span.clone())
            .await;
            results.push((a.index, result));
        }
        if let Err(error) = tx.commit().await {
            // Nothing of the batch is committed: what succeeded must be done again.
            let error = Arc::new(error);
            for (_, result) in &mut results {
                if result.is_ok() {
                    *result = Err(HandleError::shared(&error));
                }
            }
        }
        results
    }
}

/// Moves whatever reaches `{prefix}.unrouted` (published with a type no worker is bound
/// to) to the dead queue, naming the type (CONTRACT F1).
pub struct Unrouted;

#[async_trait]
impl Handler for Unrouted {
    async fn handle(&self, message: &Message) -> Result<Outcome, HandleError> {
        let event = binding::decode(&message.body, &message.properties)?;
        Err(HandleError::Unrouted {
            routing_key: message.routing_key.clone(),
            event_type: event.event_type,
        })
    }
}

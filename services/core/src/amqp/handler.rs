//! What a worker implements: a [`Handler`] takes a [`Message`] and answers an [`Outcome`]
//! or a [`HandleError`], whose [`HandleError::disposition`] is the one question the
//! consume loop asks of it — dead-letter it, or retry it (and park it after the last try).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lapin::BasicProperties;
use tracing::Instrument;

use super::policy::HoldingPolicy;
use crate::domain::ComuneIstat;
use crate::envelope::{EventType, Rejection};
use crate::origin::Refusal;
use crate::ownership::Taken;

/// A delivery as a handler sees it.
pub struct Message {
    /// The body, exactly as published.
    pub body: Vec<u8>,
    /// The original routing key (kept across retries).
    pub routing_key: String,
    /// The AMQP properties, headers included.
    pub properties: BasicProperties,
    /// 1 on first delivery, then one more per retry.
    pub attempt: u32,
    /// The broker user that published it: the `user_id` RabbitMQ validated, kept by the
    /// hub in `x-raccordo-user` across retries and replays. None: anonymous.
    pub publisher: Option<String>,
    /// The delivery's span (message id, routing key, attempt, publisher); a handler of a
    /// batch runs each message's part in it.
    pub span: tracing::Span,
}

/// What a handler made of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Its effects were committed.
    Processed,
    /// It had been processed before; nothing was done.
    Duplicate,
}

/// What the consume loop does with a message whose handling failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// It can never be processed: to `{prefix}.dead` at once (CONTRACT F1).
    Dead,
    /// It might succeed later: retried with growing delays, parked after the last
    /// attempt (CONTRACT F2).
    Retry,
}

/// A worker's own error, kept whole as the source of [`HandleError::Unprocessable`] or
/// [`HandleError::Unavailable`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a handler could not process a message. Texts name fields, rules and ids, never
/// values of personal fields: the whole chain goes to logs and to `x-raccordo-error`.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// Not an event of the contract: not JSON, envelope or schema violation.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// Its publisher may not say it.
    #[error(transparent)]
    Forbidden(#[from] Refusal),
    /// A type this queue's worker does not handle.
    #[error("no worker handles type {event_type} on this queue (routing key {routing_key})")]
    WrongQueue {
        event_type: EventType,
        routing_key: String,
    },
    /// Published with a routing key no worker is bound to.
    #[error("no worker is bound to routing key {routing_key:?} (event type {event_type})")]
    Unrouted {
        routing_key: String,
        event_type: EventType,
    },
    /// Over `amqp.max_message_bytes`.
    #[error("message of {size} bytes is over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    /// The event names a comune the registry does not know.
    #[error("unknown comune {0}: it is not in the registry (raccordo import comuni)")]
    UnknownComune(ComuneIstat),
    /// The database failed; shared by the messages of a batch that failed together.
    #[error("database")]
    Database(#[source] Arc<sqlx::Error>),
    /// The handler took longer than `amqp.handler_timeout_ms`.
    #[error("the handler did not finish within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The handler panicked: a defect this message would meet on every retry.
    #[error("the handler panicked (a defect of the hub, please report it): {0}")]
    Panicked(String),
    /// The handler returned fewer results than it was given messages.
    #[error("the handler gave no result")]
    NoResult,
    /// A worker's own reason the message can never be processed.
    #[error(transparent)]
    Unprocessable(BoxError),
    /// A worker's own fault that may pass (SMTP down, a concurrent change).
    #[error(transparent)]
    Unavailable(BoxError),
    /// The event would take an id from the comune or publisher that owns it (CONTRACT 1.2
    /// §3).
    #[error(transparent)]
    Taken(#[from] Taken),
    /// The same idempotency key with another type or data (CONTRACT 1.2 §3): the first
    /// event stands.
    #[error(
        "idempotency conflict: publisher {publisher:?} already sent an event with this source \
         and id but another type or data; the first one stands"
    )]
    Conflict { publisher: String },
    /// Refused, but the worker still acted on what could be trusted of it (CONTRACT C8: a
    /// revocation always wins); `done` says what, for the operator.
    #[error("{error}; {done}")]
    Salvaged {
        error: Box<HandleError>,
        done: String,
    },
}

impl HandleError {
    /// Dead-letter or retry: only causes that pass by themselves are retried (vector's
    /// `is_retriable_error`): connection-level database faults, time-outs, outages.
    pub fn disposition(&self) -> Disposition {
        match self {
            HandleError::Database(error) if crate::pg::is_transient(error) => Disposition::Retry,
            HandleError::Timeout(_) | HandleError::NoResult | HandleError::Unavailable(_) => {
                Disposition::Retry
            }
            HandleError::Rejected(_)
            | HandleError::Forbidden(_)
            | HandleError::WrongQueue { .. }
            | HandleError::Unrouted { .. }
            | HandleError::TooLarge { .. }
            | HandleError::UnknownComune(_)
            | HandleError::Database(_)
            | HandleError::Panicked(_)
            | HandleError::Unprocessable(_)
            | HandleError::Conflict { .. }
            | HandleError::Taken(_)
            | HandleError::Salvaged { .. } => Disposition::Dead,
        }
    }

    /// The same database error for every message of a batch that failed with it.
    pub fn shared(error: &Arc<sqlx::Error>) -> Self {
        HandleError::Database(error.clone())
    }
}

impl From<sqlx::Error> for HandleError {
    fn from(error: sqlx::Error) -> Self {
        HandleError::Database(Arc::new(error))
    }
}

/// A worker's logic, called once per delivery, or once per batch of deliveries.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Processes one message. Must be idempotent: a redelivery may follow any crash.
    async fn handle(&self, message: &Message) -> Result<Outcome, HandleError>;

    /// Processes messages taken together, one result each, in order. A handler that can
    /// decide several in one database transaction (one commit instead of one each)
    /// overrides it; the outcome of each must be what [`Handler::handle`] would give.
    async fn handle_batch(&self, messages: &[&Message]) -> Vec<Result<Outcome, HandleError>> {
        let mut results = Vec::with_capacity(messages.len());
        for message in messages {
            results.push(self.handle(message).instrument(message.span.clone()).await);
        }
        results
    }

    /// What may stay of this queue's messages once held. Default: kept until an operator acts.
    fn holding_policy(&self) -> HoldingPolicy {
        HoldingPolicy::keep()
    }
}

/// `handler` with the holding policy `policy` instead of its own: a queue that may receive
/// another worker's events (the unrouted queue, a misrouted eviction event) gets that
/// worker's policy, e.g. `WithPolicy::new(Unrouted, raccordo_eviction::holding::holding_policy(..))`.
pub struct WithPolicy<H> {
    handler: H,
    policy: HoldingPolicy,
}

impl<H: Handler> WithPolicy<H> {
    /// Wraps `handler`.
    pub fn new(handler: H, policy: HoldingPolicy) -> Self {
        Self { handler, policy }
    }
}

#[async_trait]
impl<H: Handler> Handler for WithPolicy<H> {
    async fn handle(&self, message: &Message) -> Result<Outcome, HandleError> {
        self.handler.handle(message).await
    }

    async fn handle_batch(&self, messages: &[&Message]) -> Vec<Result<Outcome, HandleError>> {
        self.handler.handle_batch(messages).await
    }

    fn holding_policy(&self) -> HoldingPolicy {
        self.policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::ErrorChain;

    #[test]
    fn a_lost_connection_is_retried_and_a_constraint_violation_is_not() {
        let lost = HandleError::from(sqlx::Error::PoolTimedOut);
        let broken = HandleError::from(sqlx::Error::RowNotFound);

        assert_eq!(lost.disposition(), Disposition::Retry);
        assert_eq!(broken.disposition(), Disposition::Dead);
    }

    #[test]
    fn a_database_error_keeps_its_cause_in_the_chain() {
        let error = HandleError::from(sqlx::Error::PoolTimedOut);

        let text = ErrorChain(&error).to_string();

        assert!(text.starts_with("database: "), "{text}");
        assert!(text.contains("timed out"), "{text}");
    }

    struct Nothing;

    #[async_trait]
    impl Handler for Nothing {
        async fn handle(&self, _message: &Message) -> Result<Outcome, HandleError> {
            Ok(Outcome::Processed)
        }
    }

    #[test]
    fn a_wrapped_handler_holds_its_messages_under_the_given_policy() {
        let ttl = Duration::from_secs(3);
        let policy = HoldingPolicy::expire_personal(ttl, |_, _| true);

        let wrapped = WithPolicy::new(Nothing, policy);

        assert_eq!(Nothing.holding_policy().expiry_of("k", b""), None);
        assert_eq!(wrapped.holding_policy().expiry_of("k", b""), Some(ttl));
    }

    #[test]
    fn an_unknown_comune_is_dead_lettered_naming_it() {
        let istat = ComuneIstat::parse("015999").expect("valid");

        let error = HandleError::UnknownComune(istat);

        assert_eq!(error.disposition(), Disposition::Dead);
        assert!(error.to_string().contains("unknown comune 015999"));
    }
}

//! `delivery.unacknowledged` (CONTRACT D5): an urgent notification nobody acknowledged.
//!
//! It goes to the recipients' deputies, the ambito's servizi sociali and the Prefettura,
//! and carries no personal data for any of them: which notification (its id, kind and
//! comune), when it was sent, and which offices did not confirm it. The family's data stay
//! in the alert, with the offices the family's consent named; the escalation tells the
//! others that an alert is waiting and whom to call, never what it says.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::ComuneIstat;

/// An office that received the notification and did not acknowledge it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnacknowledgedRecipient {
    pub referent_id: String,
    pub institution: String,
}

/// `delivery.unacknowledged`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnacknowledgedPayload {
    /// The notification nobody acknowledged.
    pub notification: Uuid,
    /// Its kind (`eviction.alert`).
    pub kind: String,
    pub comune_istat: ComuneIstat,
    pub comune_nome: String,
    pub ambito: Option<String>,
    /// When it was decided, `YYYY-MM-DD HH:MM` in Europe/Rome.
    pub sent_at: String,
    /// `escalation.after_hours`, as configured (a reminder went after that long).
    pub after_hours: f64,
    pub recipients: Vec<UnacknowledgedRecipient>,
}

//! A desk is the `referent_id` of a `sportello_asilo` referent (CONTRACT 1.2 §4): an event
//! naming any other is unprocessable, with the reason.

use raccordo_core::amqp::HandleError;
use raccordo_core::domain::Role;
use raccordo_core::envelope::Rejection;
use raccordo_core::registry::{Referent, Snapshot};

/// The desk's referent, or the reason the event is dead-lettered.
pub fn require_desk<'a>(registry: &'a Snapshot, desk: &str) -> Result<&'a Referent, HandleError> {
    match registry.referent(desk) {
        Some(r) if r.role == Role::SportelloAsilo => Ok(r),
        Some(_) => Err(Rejection::Business(format!(
            "desk {desk:?} is a referent but not a sportello_asilo (raccordo import referents)"
        ))
        .into()),
        None => Err(Rejection::Business(format!(
            "unknown desk {desk:?}: no sportello_asilo referent has that referent_id (raccordo import referents)"
        ))
        .into()),
    }
}

//! One module per page of the console.

pub(crate) mod ack;
pub(crate) mod assets;
pub(crate) mod coverage;
pub(crate) mod dead_letters;
pub(crate) mod deliveries;
pub(crate) mod emails;
pub(crate) mod evictions;
pub(crate) mod overview;
pub(crate) mod preferences;
pub(crate) mod routing;
pub(crate) mod tavolo;
pub(crate) mod upload;

use crate::render::ConsoleError;

pub(crate) async fn not_found() -> ConsoleError {
    ConsoleError::NotFound("Pagina non trovata.")
}

//! The registry: comuni (zona, ambito, population, quota) and referents (role, scope),
//! from CSV imports and from `registry.referent.v1` events; and who receives what.
//!
//! # Layout
//! - `comuni`: the comuni table and its CSV import.
//! - `csv_rows`: reading CSV files line by line, errors collected; control characters
//!   refused in every field.
//! - `history`: who changed which referent, when, before and after.
//! - `lookup`: the known zone and a comune by name, for operators' commands.
//! - `preferences`: a referent's mail preferences (modes, quiet hours), read and set.
//! - `referents`: referents, their CSV import and the registry event.
//! - `recipients`: who receives a notification (CONTRACT §1, §5).
//! - `snapshot`: the registry in memory, reloaded when its version moves.

mod comuni;
mod csv_rows;
mod history;
mod lookup;
mod preferences;
mod recipients;
mod referents;
mod snapshot;

pub use comuni::{
    Comune, import_comuni, list_comuni, list_comuni_by_istat, load_comune, parse_comuni,
    require_comune,
};
pub use csv_rows::{CsvError, ImportError, ImportReport, RowError};
pub use history::{Actor, ReferentChange, referent_history, set_actor};
pub use lookup::{LookupError, find_comune_by_name, list_zone};
pub use preferences::{PreferenceHolder, load_preferences, set_preferences};
pub use recipients::{
    Recipient, escalation_recipients, recipients_for, recipients_in_ambito, recipients_with_roles,
};
pub use referents::{
    Referent, ReferentEvent, apply_published_referent_event, apply_referent_event,
    import_referents, list_referents, parse_referents,
};
pub use snapshot::{RegistryCache, Snapshot};

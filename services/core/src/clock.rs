//! Time as the hub sees it. Decision cores take `now` as an argument, so tests pass any
//! instant they like; only the edges call these.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The current UTC instant.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// The current instant as RFC 3339.
pub fn now_rfc3339() -> String {
    now().format(&Rfc3339).unwrap_or_default()
}

//! What every handler reads: the console's shared state.

use std::sync::Arc;

use sqlx::PgPool;

use raccordo_core::health::Health;
use raccordo_core::settings::Settings;

use crate::broker::Broker;
use crate::hashing::Hashing;
use crate::limits::LoginLimits;
use crate::render::Templates;
use crate::sessions::Sessions;

/// What every handler reads.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) settings: Arc<Settings>,
    pub(crate) pool: PgPool,
    /// The consumers of this process, when the console runs inside `raccordo serve`.
    pub(crate) health: Option<Health>,
    pub(crate) sessions: Sessions,
    pub(crate) templates: Arc<Templates>,
    /// The one broker connection of the console.
    pub(crate) broker: Arc<Broker>,
    /// CSV uploads: judged and published as a configured publisher's (CONTRACT 1.2 §10).
    pub(crate) door: Arc<raccordo_ingest::Door>,
    pub(crate) limits: Arc<LoginLimits>,
    /// Password verifications, a bounded number at once.
    pub(crate) hashing: Arc<Hashing>,
    pub(crate) trusted_proxies: Arc<Vec<ipnet::IpNet>>,
    /// Whether cookies are marked `Secure`.
    pub(crate) secure_cookie: bool,
}

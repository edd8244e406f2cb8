//! Readiness as operators see it: which consumers are attached to the broker right now.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Shared by every consumer of a process and by `/readyz`.
#[derive(Clone, Default)]
pub struct Health {
    consumers: Arc<Mutex<BTreeMap<String, bool>>>,
}

impl Health {
    /// Records whether consumer `name` is attached.
    pub fn set_consuming(&self, name: &str, consuming: bool) {
        if let Ok(mut map) = self.consumers.lock() {
            map.insert(name.to_owned(), consuming);
        }
    }

    /// Declares a consumer that will start, so readiness waits for it.
    pub fn expect(&self, name: &str) {
        if let Ok(mut map) = self.consumers.lock() {
            map.entry(name.to_owned()).or_insert(false);
        }
    }

    /// Every known consumer and whether it is attached.
    pub fn consumers(&self) -> BTreeMap<String, bool> {
        self.consumers.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// True when at least one consumer is known and all are attached.
    pub fn all_consuming(&self) -> bool {
        let map = self.consumers();
        !map.is_empty() && map.values().all(|c| *c)
    }
}

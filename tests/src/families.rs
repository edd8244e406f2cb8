//! The leak families: two fictional families with distinctive name, address, phone, email and
//! docket number, for tests that search every output of the hub for personal data. One never
//! consents; one consents and then revokes. The same strings as `tests/e2e/eviction.rs`.

use serde_json::{Value, json};

/// Distinctive strings of one family.
pub struct Family {
    pub procedure: &'static str,
    pub name: &'static str,
    pub address: &'static str,
    pub phone: &'static str,
    pub email: &'static str,
}

impl Family {
    /// Every string that must not leak.
    pub fn strings(&self) -> [&'static str; 5] {
        [
            self.procedure,
            self.name,
            self.address,
            self.phone,
            self.email,
        ]
    }

    /// The `household` of an `eviction.step.v1`.
    pub fn household(&self) -> Value {
        json!({"name": self.name, "address": self.address, "members": 4, "minors": 2,
               "frail": true, "phone": self.phone, "email": self.email, "notes": "Al piano terra"})
    }

    /// The `contact` of an `eviction.consent.v1`.
    pub fn contact(&self) -> Value {
        json!({"name": self.name, "phone": self.phone, "email": self.email,
               "address": self.address})
    }
}

/// The family that never consents.
pub const NEVER: Family = Family {
    procedure: "RG-XQZLEAK-4411/2026",
    name: "Famiglia Xylofagorrea",
    address: "Via Quizzolvente 913",
    phone: "+39 347 5550913",
    email: "xylofago.leak@example.org",
};

/// The family that consents, then revokes.
pub const REVOKING: Family = Family {
    procedure: "RG-WVKLEAK-7722/2026",
    name: "Famiglia Wombatiello",
    address: "Vicolo Kappaonda 27",
    phone: "+39 348 5550727",
    email: "wombatiello.leak@example.org",
};

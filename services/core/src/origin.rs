//! Who published an event, and whether that publisher may say it (CONTRACT §2, version
//! 1.1).
//!
//! RabbitMQ refuses a message whose `user_id` property is not the user of the connection
//! that published it, so `user_id` is the publisher the broker vouches for. Each
//! publishing system has its own broker user; `[publishers.<user>]` lists the event types
//! (and, where given, the comuni) it may publish. Registry changes and consent decisions
//! thus come only from the users configured for them; a registry publisher may further be
//! limited to comuni, ambiti or zone (`scopes`, CONTRACT §4), which the registry worker
//! checks against each referent's scope before and after the change.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::domain::{ComuneIstat, Scope};
use crate::envelope::{Envelope, EventType};
use crate::settings::PublishersSettings;

/// Why an event was refused: the text names the user, the type or the comune, never a
/// value of the event's data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "unauthenticated publisher: the event has no AMQP user_id and publishers.allow_anonymous is false"
    )]
    Anonymous,
    #[error("publisher {user:?} is not configured in [publishers]")]
    UnknownUser { user: String },
    #[error("publisher {user:?} may not publish {event_type}")]
    Type { user: String, event_type: EventType },
    #[error("publisher {user:?} may not publish {event_type} about comune {comune}")]
    Comune {
        user: String,
        event_type: EventType,
        comune: String,
    },
    #[error(
        "publisher {user:?} is limited to some comuni, and this {event_type} names no comune_istat"
    )]
    NoComune { user: String, event_type: EventType },
    /// A registry publisher limited to some scopes changed a referent outside them.
    #[error(
        "publisher {user:?} may not change referent {referent_id}: its {which} scope ({scope}) is outside publishers.{user}.scopes"
    )]
    OutsideScopes {
        user: String,
        referent_id: String,
        /// `current` (the referent as stored) or `new` (as the event would make it).
        which: &'static str,
        scope: Scope,
    },
}

struct Rule {
    types: BTreeSet<EventType>,
    /// None: any comune.
    comuni: Option<BTreeSet<String>>,
    /// The scopes its referents must lie within (`scopes` and `comuni`); None: any.
    registry_scopes: Option<Vec<Scope>>,
}

/// The publishers' rules, checked for every inbound event.
pub struct Publishers {
    allow_anonymous: bool,
    rules: BTreeMap<String, Rule>,
}

impl Publishers {
    /// From validated settings (unknown types were refused at start).
    pub fn from_settings(settings: &PublishersSettings) -> Self {
        let rules = settings
            .users
            .iter()
            .map(|(user, rule)| {
                let types = rule
                    .types
                    .iter()
                    .filter_map(|t| EventType::parse(t))
                    .collect();
                let comuni =
                    (!rule.comuni.is_empty()).then(|| rule.comuni.iter().cloned().collect());
                let scopes: Vec<Scope> = rule
                    .scopes
                    .iter()
                    .filter_map(|s| s.to_scope().ok())
                    .chain(
                        rule.comuni
                            .iter()
                            .filter_map(|c| ComuneIstat::parse(c).ok())
                            .map(Scope::Comune),
                    )
                    .collect();
                let registry_scopes = (!scopes.is_empty()).then_some(scopes);
                (
                    user.clone(),
                    Rule {
                        types,
                        comuni,
                        registry_scopes,
                    },
                )
            })
            .collect();
        Self {
            allow_anonymous: settings.allow_anonymous,
            rules,
        }
    }

    /// Whether events without `user_id` are accepted.
    pub fn allows_anonymous(&self) -> bool {
        self.allow_anonymous
    }

    /// Whether `user` may publish events of `event_type` at all, whatever their comune.
    pub fn may_publish_type(&self, user: Option<&str>, event_type: EventType) -> bool {
        match user {
            None => self.allow_anonymous,
            Some(user) => self
                .rules
                .get(user)
                .is_some_and(|rule| rule.types.contains(&event_type)),
        }
    }

    /// Checks that `user` (the broker-validated `user_id`, if any) may publish `event`.
    pub fn authorize(&self, user: Option<&str>, event: &Envelope) -> Result<(), Refusal> {
        let Some(user) = user else {
            return if self.allow_anonymous {
                Ok(())
            } else {
                Err(Refusal::Anonymous)
            };
        };
        let rule = self.rules.get(user).ok_or_else(|| Refusal::UnknownUser {
            user: user.to_owned(),
        })?;
        if !rule.types.contains(&event.event_type) {
            return Err(Refusal::Type {
                user: user.to_owned(),
                event_type: event.event_type,
            });
        }
        let Some(comuni) = &rule.comuni else {
            return Ok(());
        };
        if event.event_type == EventType::RegistryReferent {
            // A referent names a scope, not a comune: the registry worker checks it
            // against the user's scopes (its comuni among them).
            return Ok(());
        }
        match event.data.get("comune_istat").and_then(Value::as_str) {
            Some(comune) if comuni.contains(comune) => Ok(()),
            // Schema-valid here, so a six-digit code: safe to name.
            Some(comune) => Err(Refusal::Comune {
                user: user.to_owned(),
                event_type: event.event_type,
                comune: comune.to_owned(),
            }),
            None => Err(Refusal::NoComune {
                user: user.to_owned(),
                event_type: event.event_type,
            }),
        }
    }
}

impl Publishers {
    /// The scopes `user`'s referents must lie within; None: any referent (an unlimited
    /// registry publisher, or an anonymous one where allowed).
    pub fn registry_scopes(&self, user: Option<&str>) -> Option<&[Scope]> {
        self.rules
            .get(user?)
            .and_then(|rule| rule.registry_scopes.as_deref())
    }
}

/// The header in which HTTP ingestion names the token's publisher (CONTRACT 1.2 §10).
pub const HTTP_PUBLISHER: &str = "x-raccordo-http-publisher";
/// The hub's signature of that name over the message it travels with.
pub const HTTP_SIGNATURE: &str = "x-raccordo-http-signature";

/// The purpose of the HTTP ingestion signature's key.
const HTTP_PURPOSE: &[u8] = b"raccordo:purpose:http-publisher";

/// The signature of a message HTTP ingestion publishes for `user`: the HTTP door connects
/// to the broker as its own user, so the worker trusts the publisher it names only with a
/// signature made with the replicas' shared key (the eviction key chain's first key, turned
/// into a key of its own purpose). 64 hex digits.
pub fn sign_http(
    keys: &[secrecy::SecretString],
    user: &str,
    routing_key: &str,
    body: &[u8],
) -> String {
    keys.first()
        .map(|key| http_mac(key, user, routing_key, body))
        .unwrap_or_default()
}

/// Whether `signature` is the hub's for this message, under any key of the chain.
pub fn verify_http(
    keys: &[secrecy::SecretString],
    user: &str,
    routing_key: &str,
    body: &[u8],
    signature: &str,
) -> bool {
    keys.iter().any(|key| {
        let expected = http_mac(key, user, routing_key, body);
        // Compared in constant time: a forger learns nothing from how long a refusal takes.
        expected.len() == signature.len()
            && expected
                .bytes()
                .zip(signature.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    })
}

fn http_mac(key: &secrecy::SecretString, user: &str, routing_key: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    use secrecy::ExposeSecret;
    type HmacSha256 = Hmac<sha2::Sha256>;
    let derive = |key: &[u8], message: &[u8]| {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        mac.update(message);
        mac.finalize().into_bytes()
    };
    let purpose_key = derive(key.expose_secret().as_bytes(), HTTP_PURPOSE);
    let mut message = Vec::with_capacity(user.len() + routing_key.len() + body.len() + 2);
    message.extend_from_slice(user.as_bytes());
    message.push(0);
    message.extend_from_slice(routing_key.as_bytes());
    message.push(0);
    message.extend_from_slice(body);
    derive(&purpose_key, &message)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::PublisherRule;
    use serde_json::json;

    fn envelope(event_type: EventType, data: Value) -> Envelope {
        Envelope {
            id: "e1".into(),
            source: "urn:test".into(),
            event_type,
            data,
            publisher: "tribunale".into(),
        }
    }

    #[test]
    fn an_http_signature_binds_user_routing_key_and_body() {
        let keys = vec![secrecy::SecretString::from("k".repeat(32))];
        let sig = sign_http(&keys, "comune_rho", "housing.unit.v1", b"{}");
        assert_eq!(sig.len(), 64);
        assert!(verify_http(
            &keys,
            "comune_rho",
            "housing.unit.v1",
            b"{}",
            &sig
        ));
        assert!(!verify_http(
            &keys,
            "tribunale",
            "housing.unit.v1",
            b"{}",
            &sig
        ));
        assert!(!verify_http(
            &keys,
            "comune_rho",
            "eviction.step.v1",
            b"{}",
            &sig
        ));
        assert!(!verify_http(
            &keys,
            "comune_rho",
            "housing.unit.v1",
            b"{ }",
            &sig
        ));
        assert!(!verify_http(
            &keys,
            "comune_rho",
            "housing.unit.v1",
            b"{}",
            ""
        ));
        let other = vec![secrecy::SecretString::from("o".repeat(32))];
        assert!(!verify_http(
            &other,
            "comune_rho",
            "housing.unit.v1",
            b"{}",
            &sig
        ));
        // After a rekey the chain grows: a message signed before it still verifies.
        let chain = vec![other[0].clone(), keys[0].clone()];
        assert!(verify_http(
            &chain,
            "comune_rho",
            "housing.unit.v1",
            b"{}",
            &sig
        ));
    }

    fn publishers(allow_anonymous: bool) -> Publishers {
        let mut users = BTreeMap::new();
        users.insert(
            "tribunale".to_owned(),
            PublisherRule {
                types: vec!["eviction.step.v1".into()],
                comuni: vec![],
                ..PublisherRule::default()
            },
        );
        users.insert(
            "comune_rho".to_owned(),
            PublisherRule {
                types: vec!["housing.unit.v1".into(), "registry.referent.v1".into()],
                comuni: vec!["015182".into()],
                ..PublisherRule::default()
            },
        );
        Publishers::from_settings(&PublishersSettings {
            allow_anonymous,
            users,
        })
    }

    #[test]
    fn a_publisher_may_say_only_its_types() {
        let p = publishers(false);
        let step = envelope(EventType::EvictionStep, json!({"comune_istat": "015146"}));
        assert_eq!(p.authorize(Some("tribunale"), &step), Ok(()));
        let consent = envelope(
            EventType::EvictionConsent,
            json!({"comune_istat": "015146"}),
        );
        let refusal = p
            .authorize(Some("tribunale"), &consent)
            .expect_err("not its type");
        assert_eq!(
            refusal.to_string(),
            "publisher \"tribunale\" may not publish eviction.consent.v1"
        );
    }

    #[test]
    fn a_comune_reports_units_of_its_own_comune_only() {
        let p = publishers(false);
        let own = envelope(EventType::HousingUnit, json!({"comune_istat": "015182"}));
        assert_eq!(p.authorize(Some("comune_rho"), &own), Ok(()));
        let other = envelope(EventType::HousingUnit, json!({"comune_istat": "015146"}));
        assert!(matches!(
            p.authorize(Some("comune_rho"), &other),
            Err(Refusal::Comune { .. })
        ));
        let no_comune = envelope(EventType::HousingUnit, json!({"unit_id": "x"}));
        assert!(matches!(
            p.authorize(Some("comune_rho"), &no_comune),
            Err(Refusal::NoComune { .. })
        ));
    }

    #[test]
    fn a_registry_publishers_comuni_and_scopes_limit_its_referents_scopes() {
        let mut p = publishers(false);
        // Its referents are checked against its scopes by the registry worker.
        let registry = envelope(EventType::RegistryReferent, json!({"referent_id": "x"}));
        assert_eq!(p.authorize(Some("comune_rho"), &registry), Ok(()));
        let rho = ComuneIstat::parse("015182").expect("valid");
        assert_eq!(
            p.registry_scopes(Some("comune_rho")),
            Some([Scope::Comune(rho.clone())].as_slice())
        );
        assert_eq!(p.registry_scopes(Some("tribunale")), None);
        assert_eq!(p.registry_scopes(None), None);

        let mut users = BTreeMap::new();
        users.insert(
            "registro".to_owned(),
            PublisherRule {
                types: vec!["registry.referent.v1".into()],
                scopes: vec![crate::settings::ScopeSetting {
                    ambito: Some("Rho".into()),
                    ..Default::default()
                }],
                ..PublisherRule::default()
            },
        );
        p = Publishers::from_settings(&PublishersSettings {
            allow_anonymous: false,
            users,
        });
        assert_eq!(
            p.registry_scopes(Some("registro")),
            Some([Scope::Ambito("Rho".into())].as_slice())
        );
        let refusal = Refusal::OutsideScopes {
            user: "registro".into(),
            referent_id: "ss-milano".into(),
            which: "new",
            scope: Scope::Comune(ComuneIstat::parse("015146").expect("valid")),
        };
        assert_eq!(
            refusal.to_string(),
            "publisher \"registro\" may not change referent ss-milano: its new scope (comune 015146) is outside publishers.registro.scopes"
        );
    }

    #[test]
    fn anonymous_and_unknown_publishers_are_refused_unless_anonymous_is_allowed() {
        let step = envelope(EventType::EvictionStep, json!({"comune_istat": "015146"}));
        assert_eq!(
            publishers(false).authorize(None, &step),
            Err(Refusal::Anonymous)
        );
        assert_eq!(publishers(true).authorize(None, &step), Ok(()));
        assert!(matches!(
            publishers(true).authorize(Some("guest"), &step),
            Err(Refusal::UnknownUser { .. })
        ));
    }
}

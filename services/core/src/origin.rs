//! Who published an event, and whether that publisher may say it (CONTRACT §2, version
//! 1.1).
//!
//! RabbitMQ refuses a message whose `user_id` property is not the user of the connection
//! that published it, so `user_id` is the publisher the broker vouches for. Each
//! publishing system has its own broker user; `[publishers.<user>]` lists the event types
//! (and, where given, the comuni) it may publish. Registry changes and consent decisions
//! thus come only from the users configured for them.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

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
}

struct Rule {
    types: BTreeSet<EventType>,
    /// None: any comune.
    comuni: Option<BTreeSet<String>>,
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
                (user.clone(), Rule { types, comuni })
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

    fn publishers(allow_anonymous: bool) -> Publishers {
        let mut users = BTreeMap::new();
        users.insert(
            "tribunale".to_owned(),
            PublisherRule {
                types: vec!["eviction.step.v1".into()],
                comuni: vec![],
            },
        );
        users.insert(
            "comune_rho".to_owned(),
            PublisherRule {
                types: vec!["housing.unit.v1".into(), "registry.referent.v1".into()],
                comuni: vec!["015182".into()],
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
        let registry = envelope(EventType::RegistryReferent, json!({"referent_id": "x"}));
        assert!(matches!(
            p.authorize(Some("comune_rho"), &registry),
            Err(Refusal::NoComune { .. })
        ));
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

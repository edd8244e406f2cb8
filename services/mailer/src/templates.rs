//! Italian emails from notification payloads: a subject, a plain-text body and an HTML body
//! per kind, rendered with minijinja from templates embedded in the binary.
//!
//! Templates live in `services/mailer/templates/` as `<kind>.subject.j2`, `<kind>.txt.j2`
//! and `<kind>.html.j2`, on a shared `layout.*.j2` frame (greeting, footer with the
//! notification id). They are compiled into the binary with `include_str!` so a deployment
//! is one file and a broken template fails the tests, not a delivery.
//!
//! Undefined variables are errors ([`UndefinedBehavior::Strict`]): a payload missing a
//! required field fails loudly instead of producing an email with blanks. HTML templates
//! escape every value; subjects only ever name non-personal facts (CONTRACT §6).

use std::sync::LazyLock;

use minijinja::{AutoEscape, Environment, UndefinedBehavior, context};
use raccordo_core::payload::{Payload, PayloadError};
use serde::Serialize;
use uuid::Uuid;

/// The notification kinds that have templates.
pub const KINDS: &[&str] = &[
    "eviction.alert",
    "eviction.consent_revoked",
    "eviction.stats",
    "housing.offered",
    "housing.ack",
    "housing.rejected",
    "housing.consultation",
    "housing.withdrawn",
    "quota.threshold",
    "quota.safeguard",
    "quota.monthly_report",
    "reception.over_capacity",
    "delivery.unacknowledged",
    "asylum.domicile_assigned",
    "asylum.pronta_accoglienza",
    "asylum.intervention_overdue",
    "asylum.weekly_priorities",
    "asylum.place_available",
];

/// Every template, by the name templates use to extend or include it.
const TEMPLATES: &[(&str, &str)] = &[
    ("digest.txt.j2", include_str!("../templates/digest.txt.j2")),
    (
        "digest.html.j2",
        include_str!("../templates/digest.html.j2"),
    ),
    (
        "layout.html.j2",
        include_str!("../templates/layout.html.j2"),
    ),
    ("layout.txt.j2", include_str!("../templates/layout.txt.j2")),
    (
        "eviction_facts.txt.j2",
        include_str!("../templates/eviction_facts.txt.j2"),
    ),
    (
        "eviction_facts.html.j2",
        include_str!("../templates/eviction_facts.html.j2"),
    ),
    (
        "eviction.alert.subject.j2",
        include_str!("../templates/eviction.alert.subject.j2"),
    ),
    (
        "eviction.alert.txt.j2",
        include_str!("../templates/eviction.alert.txt.j2"),
    ),
    (
        "eviction.alert.html.j2",
        include_str!("../templates/eviction.alert.html.j2"),
    ),
    (
        "eviction.consent_revoked.subject.j2",
        include_str!("../templates/eviction.consent_revoked.subject.j2"),
    ),
    (
        "eviction.consent_revoked.txt.j2",
        include_str!("../templates/eviction.consent_revoked.txt.j2"),
    ),
    (
        "eviction.consent_revoked.html.j2",
        include_str!("../templates/eviction.consent_revoked.html.j2"),
    ),
    (
        "eviction.stats.subject.j2",
        include_str!("../templates/eviction.stats.subject.j2"),
    ),
    (
        "eviction.stats.txt.j2",
        include_str!("../templates/eviction.stats.txt.j2"),
    ),
    (
        "eviction.stats.html.j2",
        include_str!("../templates/eviction.stats.html.j2"),
    ),
    (
        "unit_details.html.j2",
        include_str!("../templates/unit_details.html.j2"),
    ),
    (
        "unit_details.txt.j2",
        include_str!("../templates/unit_details.txt.j2"),
    ),
    (
        "housing.offered.subject.j2",
        include_str!("../templates/housing.offered.subject.j2"),
    ),
    (
        "housing.offered.txt.j2",
        include_str!("../templates/housing.offered.txt.j2"),
    ),
    (
        "housing.offered.html.j2",
        include_str!("../templates/housing.offered.html.j2"),
    ),
    (
        "housing.ack.subject.j2",
        include_str!("../templates/housing.ack.subject.j2"),
    ),
    (
        "housing.ack.txt.j2",
        include_str!("../templates/housing.ack.txt.j2"),
    ),
    (
        "housing.ack.html.j2",
        include_str!("../templates/housing.ack.html.j2"),
    ),
    (
        "housing.rejected.subject.j2",
        include_str!("../templates/housing.rejected.subject.j2"),
    ),
    (
        "housing.rejected.txt.j2",
        include_str!("../templates/housing.rejected.txt.j2"),
    ),
    (
        "housing.rejected.html.j2",
        include_str!("../templates/housing.rejected.html.j2"),
    ),
    (
        "housing.consultation.subject.j2",
        include_str!("../templates/housing.consultation.subject.j2"),
    ),
    (
        "housing.consultation.txt.j2",
        include_str!("../templates/housing.consultation.txt.j2"),
    ),
    (
        "housing.consultation.html.j2",
        include_str!("../templates/housing.consultation.html.j2"),
    ),
    (
        "housing.withdrawn.subject.j2",
        include_str!("../templates/housing.withdrawn.subject.j2"),
    ),
    (
        "housing.withdrawn.txt.j2",
        include_str!("../templates/housing.withdrawn.txt.j2"),
    ),
    (
        "housing.withdrawn.html.j2",
        include_str!("../templates/housing.withdrawn.html.j2"),
    ),
    (
        "quota.threshold.subject.j2",
        include_str!("../templates/quota.threshold.subject.j2"),
    ),
    (
        "quota.threshold.txt.j2",
        include_str!("../templates/quota.threshold.txt.j2"),
    ),
    (
        "quota.threshold.html.j2",
        include_str!("../templates/quota.threshold.html.j2"),
    ),
    (
        "quota.safeguard.subject.j2",
        include_str!("../templates/quota.safeguard.subject.j2"),
    ),
    (
        "quota.safeguard.txt.j2",
        include_str!("../templates/quota.safeguard.txt.j2"),
    ),
    (
        "quota.safeguard.html.j2",
        include_str!("../templates/quota.safeguard.html.j2"),
    ),
    (
        "quota.monthly_report.subject.j2",
        include_str!("../templates/quota.monthly_report.subject.j2"),
    ),
    (
        "quota.monthly_report.txt.j2",
        include_str!("../templates/quota.monthly_report.txt.j2"),
    ),
    (
        "quota.monthly_report.html.j2",
        include_str!("../templates/quota.monthly_report.html.j2"),
    ),
    (
        "reception.over_capacity.subject.j2",
        include_str!("../templates/reception.over_capacity.subject.j2"),
    ),
    (
        "reception.over_capacity.txt.j2",
        include_str!("../templates/reception.over_capacity.txt.j2"),
    ),
    (
        "reception.over_capacity.html.j2",
        include_str!("../templates/reception.over_capacity.html.j2"),
    ),
    (
        "delivery.unacknowledged.subject.j2",
        include_str!("../templates/delivery.unacknowledged.subject.j2"),
    ),
    (
        "delivery.unacknowledged.txt.j2",
        include_str!("../templates/delivery.unacknowledged.txt.j2"),
    ),
    (
        "delivery.unacknowledged.html.j2",
        include_str!("../templates/delivery.unacknowledged.html.j2"),
    ),
    (
        "asylum.domicile_assigned.subject.j2",
        include_str!("../templates/asylum.domicile_assigned.subject.j2"),
    ),
    (
        "asylum.domicile_assigned.txt.j2",
        include_str!("../templates/asylum.domicile_assigned.txt.j2"),
    ),
    (
        "asylum.domicile_assigned.html.j2",
        include_str!("../templates/asylum.domicile_assigned.html.j2"),
    ),
    (
        "asylum_facilities.txt.j2",
        include_str!("../templates/asylum_facilities.txt.j2"),
    ),
    (
        "asylum_facilities.html.j2",
        include_str!("../templates/asylum_facilities.html.j2"),
    ),
    (
        "asylum.pronta_accoglienza.subject.j2",
        include_str!("../templates/asylum.pronta_accoglienza.subject.j2"),
    ),
    (
        "asylum.pronta_accoglienza.txt.j2",
        include_str!("../templates/asylum.pronta_accoglienza.txt.j2"),
    ),
    (
        "asylum.pronta_accoglienza.html.j2",
        include_str!("../templates/asylum.pronta_accoglienza.html.j2"),
    ),
    (
        "asylum.intervention_overdue.subject.j2",
        include_str!("../templates/asylum.intervention_overdue.subject.j2"),
    ),
    (
        "asylum.intervention_overdue.txt.j2",
        include_str!("../templates/asylum.intervention_overdue.txt.j2"),
    ),
    (
        "asylum.intervention_overdue.html.j2",
        include_str!("../templates/asylum.intervention_overdue.html.j2"),
    ),
    (
        "asylum.weekly_priorities.subject.j2",
        include_str!("../templates/asylum.weekly_priorities.subject.j2"),
    ),
    (
        "asylum.weekly_priorities.txt.j2",
        include_str!("../templates/asylum.weekly_priorities.txt.j2"),
    ),
    (
        "asylum.weekly_priorities.html.j2",
        include_str!("../templates/asylum.weekly_priorities.html.j2"),
    ),
    (
        "asylum.place_available.subject.j2",
        include_str!("../templates/asylum.place_available.subject.j2"),
    ),
    (
        "asylum.place_available.txt.j2",
        include_str!("../templates/asylum.place_available.txt.j2"),
    ),
    (
        "asylum.place_available.html.j2",
        include_str!("../templates/asylum.place_available.html.j2"),
    ),
];

/// Who the email is addressed to, from the referent registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecipientContext {
    /// The referent's name, if known: the greeting uses it.
    pub name: Option<String>,
    /// The institution the referent speaks for (`Prefettura di Milano`, `Comune di Rho`).
    pub institution: String,
    /// The referent's role as in CONTRACT §1 (`stazione_appaltante`, `comune`, …).
    pub role: String,
}

/// A rendered email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// One line, white space collapsed, no personal data.
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// The HTML alternative.
    pub html: String,
}

/// A notification could not be rendered. Retrying cannot help: the payload or the kind is
/// wrong, or a template is.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// No templates exist for this kind.
    #[error("no templates for notification kind {0:?}")]
    UnknownKind(String),
    /// The payload is not a JSON object.
    #[error("the payload of a {0} notification is not a JSON object")]
    PayloadNotObject(String),
    /// The payload is not the one the kind's worker writes: names the kind and the field,
    /// never a value.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// A template failed, typically on a missing payload field.
    #[error("failed to render template {template}")]
    Template {
        /// The template that failed.
        template: String,
        /// minijinja's account, naming the missing or mistyped value.
        #[source]
        source: minijinja::Error,
    },
}

/// Built once: parsing the templates is the costly part of rendering.
static ENVIRONMENT: LazyLock<Environment<'static>> = LazyLock::new(environment);

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html.j2") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    env.add_filter("data", date_it);
    env.add_filter("tipologia", building_type_it);
    env.add_filter("accoglienza", reception_kind_it);
    env.add_filter("percento", percent_it);
    env.add_filter("durata", hours_it);
    env.add_filter("quando", instant_it);
    env.add_filter("categoria", category_it);
    env.add_filter("vicinanza", proximity_it);
    for (name, source) in TEMPLATES {
        env.add_template(name, source)
            .expect("embedded templates parse: `every_template_parses` checks them");
    }
    env
}

/// Renders the email for one notification and one recipient, from the stored kind and
/// payload: the payload is decoded first ([`Payload::from_parts`]).
///
/// `notification_id` is printed in the footer so that a recipient can quote it.
///
/// # Errors
/// An unknown kind, a payload that is not an object or not the kind's (a missing field,
/// a value of the wrong type), or a template fault.
pub fn render(
    kind: &str,
    notification_id: Uuid,
    payload: &serde_json::Value,
    recipient: &RecipientContext,
) -> Result<Rendered, RenderError> {
    render_with_link(kind, notification_id, payload, recipient, None)
}

/// Like [`render`], with the recipient's acknowledgement link (CONTRACT D4) and the one
/// sentence saying what its button does, above the footer.
///
/// # Errors
/// As [`render`].
pub fn render_with_link(
    kind: &str,
    notification_id: Uuid,
    payload: &serde_json::Value,
    recipient: &RecipientContext,
    ack_url: Option<&str>,
) -> Result<Rendered, RenderError> {
    render_with_links(kind, notification_id, payload, recipient, ack_url, None)
}

/// Like [`render_with_link`], with the link to the referent's preferences page (issue 22).
///
/// # Errors
/// As [`render`].
pub fn render_with_links(
    kind: &str,
    notification_id: Uuid,
    payload: &serde_json::Value,
    recipient: &RecipientContext,
    ack_url: Option<&str>,
    preferences_url: Option<&str>,
) -> Result<Rendered, RenderError> {
    if !KINDS.contains(&kind) {
        return Err(RenderError::UnknownKind(kind.to_owned()));
    }
    if !payload.is_object() {
        return Err(RenderError::PayloadNotObject(kind.to_owned()));
    }
    let payload = Payload::from_parts(kind, payload)?;
    render_payload_with_links(
        &payload,
        notification_id,
        recipient,
        ack_url,
        preferences_url,
    )
}

/// Renders the email for one typed payload and one recipient. The templates read the
/// payload's JSON as `p`.
///
/// # Errors
/// A template fault.
pub fn render_payload(
    payload: &Payload,
    notification_id: Uuid,
    recipient: &RecipientContext,
) -> Result<Rendered, RenderError> {
    render_payload_with_link(payload, notification_id, recipient, None)
}

/// Like [`render_payload`], with an acknowledgement link.
///
/// # Errors
/// A template fault.
pub fn render_payload_with_link(
    payload: &Payload,
    notification_id: Uuid,
    recipient: &RecipientContext,
    ack_url: Option<&str>,
) -> Result<Rendered, RenderError> {
    render_payload_with_links(payload, notification_id, recipient, ack_url, None)
}

/// Like [`render_payload_with_link`], with the link to the referent's preferences page in
/// the footer (issue 22).
///
/// # Errors
/// A template fault.
pub fn render_payload_with_links(
    payload: &Payload,
    notification_id: Uuid,
    recipient: &RecipientContext,
    ack_url: Option<&str>,
    preferences_url: Option<&str>,
) -> Result<Rendered, RenderError> {
    let kind = payload.kind().as_str();
    // A1: the person's data only to the social services, whatever the stored payload holds.
    let payload = payload.visible_to(&recipient.role);
    let payload: &Payload = &payload;
    let (recipient_value, greeting) = addressee(recipient);
    let base = context! {
        p => payload,
        recipient => recipient_value,
        greeting => greeting,
        kind => kind,
        notification_id => notification_id.to_string(),
        ack_url => ack_url,
        preferences_url => preferences_url,
    };

    let subject = render_one(&format!("{kind}.subject.j2"), &base)?;
    let subject = subject.split_whitespace().collect::<Vec<_>>().join(" ");
    let full = context! { subject => subject, ..base };
    let text = render_one(&format!("{kind}.txt.j2"), &full)?;
    let html = render_one(&format!("{kind}.html.j2"), &full)?;
    Ok(Rendered {
        subject,
        text,
        html,
    })
}

/// One item of a digest: a notification of a kind that carries no personal data.
#[derive(Debug, Clone)]
pub struct DigestEntry {
    pub notification_id: Uuid,
    pub kind: String,
    pub payload: serde_json::Value,
    /// When it was decided, shown in Europe/Rome.
    pub created_at: time::OffsetDateTime,
    /// Its acknowledgement link, for the kinds a person must act on (D4).
    pub ack_url: Option<String>,
}

/// Renders a digest (issue 22): a count in the subject, and each entry with its kind,
/// time, subject and the content its own email would have had, with its acknowledgement
/// link where it has one.
///
/// # Errors
/// An unknown kind, a payload not the kind's, or a template fault.
pub fn render_digest(
    digest_id: Uuid,
    recipient: &RecipientContext,
    entries: &[DigestEntry],
    preferences_url: Option<&str>,
) -> Result<Rendered, RenderError> {
    let (recipient_value, greeting) = addressee(recipient);
    let mut items = Vec::with_capacity(entries.len());
    for entry in entries {
        let kind = entry.kind.as_str();
        if !KINDS.contains(&kind) {
            return Err(RenderError::UnknownKind(kind.to_owned()));
        }
        let payload = Payload::from_parts(kind, &entry.payload)?;
        let payload = payload.visible_to(&recipient.role);
        let payload: &Payload = &payload;
        let base = context! {
            p => payload,
            recipient => recipient_value.clone(),
            greeting => greeting.clone(),
            kind => kind,
            notification_id => entry.notification_id.to_string(),
            ack_url => None::<String>,
            preferences_url => None::<String>,
        };
        let subject = render_one(&format!("{kind}.subject.j2"), &base)?;
        let subject = subject.split_whitespace().collect::<Vec<_>>().join(" ");
        let full = context! { subject => subject.clone(), ..base };
        let text = render_block(&format!("{kind}.txt.j2"), &full, "content")?;
        let html = render_block(&format!("{kind}.html.j2"), &full, "content")?;
        items.push(context! {
            notification_id => entry.notification_id.to_string(),
            kind_label => raccordo_core::notification::NotificationKind::parse(kind)
                .map_or(kind, |k| k.label_it()),
            at => italian_datetime(entry.created_at),
            subject => subject,
            text => text.trim(),
            html => minijinja::Value::from_safe_string(html),
            ack_url => entry.ack_url,
        });
    }
    let count_label = if entries.len() == 1 {
        "1 notifica".to_owned()
    } else {
        format!("{} notifiche", entries.len())
    };
    let since = entries
        .iter()
        .map(|e| e.created_at)
        .min()
        .map(italian_datetime)
        .unwrap_or_default();
    let until = entries
        .iter()
        .map(|e| e.created_at)
        .max()
        .map(italian_datetime)
        .unwrap_or_default();
    let subject = format!("Riepilogo Raccordo: {count_label}");
    let ctx = context! {
        subject => subject,
        recipient => recipient_value,
        greeting => greeting,
        items => items,
        count_label => count_label,
        since => since,
        until => until,
        digest_id => digest_id.to_string(),
        preferences_url => preferences_url,
    };
    Ok(Rendered {
        text: render_one("digest.txt.j2", &ctx)?,
        html: render_one("digest.html.j2", &ctx)?,
        subject,
    })
}

/// How an email names its recipient: the frame's context and the greeting.
fn addressee(recipient: &RecipientContext) -> (minijinja::Value, String) {
    let value = context! {
        name => recipient.name,
        institution => recipient.institution,
        role => recipient.role,
        role_label => role_label(&recipient.role),
    };
    let greeting = match recipient.name.as_deref().map(str::trim) {
        Some(name) if !name.is_empty() => format!("Gentile {name},"),
        _ => "Gentile referente,".to_owned(),
    };
    (value, greeting)
}

/// `7 dicembre 2026, 18:05` in Europe/Rome.
fn italian_datetime(at: time::OffsetDateTime) -> String {
    let date = raccordo_core::clock::rome_date(at);
    let (_, hm) = raccordo_core::clock::rome_local(at);
    format!(
        "{} {} {}, {hm}",
        date.day(),
        raccordo_core::clock::month_it(date.month()),
        date.year()
    )
}

/// Renders one block of a template (a kind's content without its frame).
fn render_block(name: &str, ctx: &minijinja::Value, block: &str) -> Result<String, RenderError> {
    let failed = |source| RenderError::Template {
        template: name.to_owned(),
        source,
    };
    let template = ENVIRONMENT.get_template(name).map_err(failed)?;
    let mut captured = template.render_captured(ctx).map_err(failed)?;
    captured
        .with_state_mut(|state| state.render_block(block))
        .map_err(failed)
}

fn render_one(name: &str, ctx: &minijinja::Value) -> Result<String, RenderError> {
    let failed = |source| RenderError::Template {
        template: name.to_owned(),
        source,
    };
    ENVIRONMENT
        .get_template(name)
        .map_err(failed)?
        .render(ctx)
        .map_err(failed)
}

/// How the footer and the HTML header name the recipient's role (CONTRACT §1).
fn role_label(role: &str) -> String {
    match role {
        "stazione_appaltante" => "stazione appaltante",
        "prefettura" => "coordinamento della Prefettura",
        "comune" => "referente del Comune",
        "servizi_sociali" => "servizi sociali",
        "tavolo" => "Tavolo di coordinamento della zona omogenea",
        "sportello_asilo" => "sportello provinciale asilo",
        other => other,
    }
    .to_owned()
}

/// `2025-03-01` → `1 marzo 2025`; anything else is printed as given.
fn date_it(value: &str) -> String {
    match raccordo_core::domain::parse_date(value) {
        Ok(date) => format!(
            "{} {} {}",
            date.day(),
            raccordo_core::clock::month_it(date.month()),
            date.year()
        ),
        Err(_) => value.to_owned(),
    }
}

/// An RFC 3339 instant as `2 marzo 2026 alle 09:15`, Europe/Rome.
fn instant_it(value: &str) -> String {
    match time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339) {
        Ok(at) => {
            let (date, time) = raccordo_core::clock::rome_local(at);
            format!("{} alle {time}", date_it(&date))
        }
        Err(_) => value.to_owned(),
    }
}

/// The vulnerability categories of `asylum.vulnerability.v1` in words.
fn category_it(value: &str) -> String {
    match value {
        "minore_non_accompagnato" => "minore straniero non accompagnato",
        "nucleo_con_minori" => "nucleo familiare con minori",
        "donna_sola" => "donna sola",
        "rischio_tratta" => "possibile vittima di tratta",
        "vittima_violenza" => "vittima di violenza",
        "salute" => "problemi di salute",
        "disabilita" => "disabilità",
        "altro" => "altra vulnerabilità",
        other => other,
    }
    .to_owned()
}

/// How near a facility is (A1's order) in words.
fn proximity_it(value: &str) -> String {
    match value {
        "comune" => "nello stesso comune",
        "ambito" => "nello stesso ambito",
        "zona" => "nella stessa zona omogenea",
        "altro" => "in un'altra zona",
        other => other,
    }
    .to_owned()
}

/// The `building_type` codes of `housing.unit.v1` in words.
fn building_type_it(value: &str) -> String {
    match value {
        "appartamento" => "appartamento",
        "casa" => "casa",
        "struttura_collettiva" => "struttura collettiva",
        "ex_caserma" => "ex caserma",
        "altro" => "altra tipologia",
        other => other,
    }
    .to_owned()
}

/// A percentage the Italian way: `51.1` → `51,1`, `50.0` → `50`.
fn percent_it(value: f64) -> String {
    let rounded = (value * 10.0).round() / 10.0;
    if rounded.fract() == 0.0 {
        format!("{rounded:.0}")
    } else {
        format!("{rounded:.1}").replace('.', ",")
    }
}

/// A duration in hours, as `escalation.after_hours` gives it, in words: `12.0` → `12 ore`,
/// `1.5` → `1,5 ore`, `0.01` → `36 secondi`.
fn hours_it(hours: f64) -> String {
    let seconds = (hours * 3600.0).round();
    if hours >= 1.0 {
        let rounded = (hours * 10.0).round() / 10.0;
        if rounded == 1.0 {
            "1 ora".to_owned()
        } else {
            format!("{} ore", percent_it(rounded))
        }
    } else if seconds >= 120.0 {
        format!("{} minuti", (seconds / 60.0).round())
    } else {
        format!("{seconds} secondi")
    }
}

/// The `reception_kind` codes in words.
fn reception_kind_it(value: &str) -> String {
    match value {
        "CAS" => "CAS (centro di accoglienza straordinaria)",
        "SPRAR" => "SPRAR (rete di accoglienza dei Comuni)",
        other => other,
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    const NOTIFICATION: Uuid = Uuid::from_u128(0x0193_8c2e_5d4f_7a10_8b2c_3d4e_5f60_7182);

    #[test]
    fn a_digest_lists_each_item_with_its_content_and_counts_in_italian() {
        let recipient = crate::samples::sample_recipient("housing.offered");
        let entry = |n: u128, kind: &str, ack: Option<&str>| DigestEntry {
            notification_id: Uuid::from_u128(n),
            kind: kind.to_owned(),
            payload: crate::samples::sample_payload(kind).expect("a sample"),
            created_at: time::macros::datetime!(2026-12-07 17:05 UTC),
            ack_url: ack.map(str::to_owned),
        };
        let entries = [
            entry(
                1,
                "housing.offered",
                Some("https://raccordo.example/ack/abc"),
            ),
            entry(2, "housing.withdrawn", None),
        ];
        let digest = Uuid::from_u128(99);
        let rendered = render_digest(
            digest,
            &recipient,
            &entries,
            Some("https://raccordo.example/preferenze/tok"),
        )
        .expect("renders");
        assert_eq!(rendered.subject, "Riepilogo Raccordo: 2 notifiche");
        for text in [&rendered.text, &rendered.html] {
            assert!(text.contains(&Uuid::from_u128(1).to_string()));
            assert!(text.contains(&Uuid::from_u128(2).to_string()));
            assert!(text.contains(&digest.to_string()));
            // HTML escapes the slashes of an attribute.
            assert!(text.contains("ack/abc") || text.contains("ack&#x2f;abc"));
            assert!(text.contains("preferenze/tok") || text.contains("preferenze&#x2f;tok"));
            assert!(text.contains("7 dicembre 2026, 18:05"), "Europe/Rome time");
            assert!(!text.contains("{{") && !text.contains("{%"));
        }
        // Each item's own content, without its frame: one greeting, one footer.
        assert_eq!(rendered.text.matches("Gentile").count(), 1);
        assert_eq!(
            rendered
                .text
                .matches("Identificativo del riepilogo")
                .count(),
            1
        );
        let one = render_digest(digest, &recipient, &entries[..1], None).expect("renders");
        assert_eq!(one.subject, "Riepilogo Raccordo: 1 notifica");
        assert!(!one.text.contains("/preferenze/"));
    }

    fn unit() -> Value {
        json!({
            "unit_id": "SSG-2025-014",
            "comune_istat": "015209",
            "comune_nome": "Sesto San Giovanni",
            "zona": "Nord Milano",
            "address": "Via Fratelli Bandiera 12",
            "places": 4,
            "reception_kind": "SPRAR",
            "building_type": "appartamento",
            "identified_by": "comune",
            "available_from": "2025-03-01",
            "notes": "Citofonare Bianchi; chiavi presso l'ufficio tecnico",
            "update": false,
        })
    }

    fn payload_for(kind: &str) -> Value {
        let mut payload = unit();
        match kind {
            "housing.rejected" => {
                payload["reason_code"] = json!("ex_caserma");
                payload["reason"] = json!("L'immobile è una ex caserma.");
            }
            "housing.withdrawn" => {
                // As the worker writes it: the unit as last offered, no date nor notes.
                let object = payload.as_object_mut().expect("object");
                object.insert("available_from".into(), Value::Null);
                object.insert("notes".into(), Value::Null);
            }
            _ => {}
        }
        payload
    }

    fn recipient(name: Option<&str>) -> RecipientContext {
        RecipientContext {
            name: name.map(str::to_owned),
            institution: "Prefettura di Milano".into(),
            role: "stazione_appaltante".into(),
        }
    }

    #[test]
    fn every_template_parses() {
        for (name, _) in TEMPLATES {
            assert!(ENVIRONMENT.get_template(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn every_kind_renders_with_a_sample_payload() {
        for kind in KINDS.iter().filter(|k| k.starts_with("housing.")) {
            let rendered = render(kind, NOTIFICATION, &payload_for(kind), &recipient(None))
                .unwrap_or_else(|e| panic!("{kind}: {e:?}"));

            assert!(rendered.subject.contains("Sesto San Giovanni"), "{kind}");
            assert!(rendered.subject.contains("SSG-2025-014"), "{kind}");
            assert!(!rendered.subject.contains('\n'), "{kind}");
            for body in [&rendered.text, &rendered.html] {
                assert!(body.contains("Gentile referente,"), "{kind}");
                assert!(body.contains("SSG-2025-014"), "{kind}");
                assert!(body.contains("Raccordo"), "{kind}");
                assert!(body.contains(&NOTIFICATION.to_string()), "{kind}");
                assert!(body.contains("art. "), "{kind}");
            }
            assert!(rendered.html.starts_with("<!DOCTYPE html>"), "{kind}");
            assert!(rendered.html.contains(&rendered.subject), "{kind}: <title>");
        }
    }

    #[test]
    fn subjects_contain_no_address_notes_or_names() {
        for kind in KINDS.iter().filter(|k| k.starts_with("housing.")) {
            let rendered = render(
                kind,
                NOTIFICATION,
                &payload_for(kind),
                &recipient(Some("Dott.ssa Maria Verdi")),
            )
            .expect("renders");

            for personal in ["Bandiera", "Bianchi", "Verdi", "ex caserma"] {
                assert!(!rendered.subject.contains(personal), "{kind}: {personal}");
            }
        }
    }

    #[test]
    fn html_escapes_payload_values_and_text_keeps_them() {
        let mut payload = unit();
        payload["notes"] = json!("<script>alert('x')</script>");
        payload["address"] = json!("Via <b>Roma</b> & C.");

        let rendered =
            render("housing.offered", NOTIFICATION, &payload, &recipient(None)).expect("renders");

        assert!(!rendered.html.contains("<script>"));
        assert!(rendered.html.contains("&lt;script&gt;"));
        assert!(!rendered.html.contains("<b>Roma"));
        assert!(rendered.html.contains("&amp; C."));
        assert!(rendered.text.contains("<script>alert('x')</script>"));
    }

    #[test]
    fn a_named_recipient_is_greeted_by_name() {
        let rendered = render(
            "housing.ack",
            NOTIFICATION,
            &unit(),
            &RecipientContext {
                name: Some("Mario Rossi".into()),
                institution: "Comune di Sesto San Giovanni".into(),
                role: "comune".into(),
            },
        )
        .expect("renders");

        assert!(rendered.text.contains("Gentile Mario Rossi,"));
        assert!(
            rendered
                .text
                .contains("Comune di Sesto San Giovanni — referente del Comune")
        );
        assert!(rendered.html.contains("Gentile Mario Rossi,"));
    }

    #[test]
    fn an_update_is_announced_as_such() {
        let mut payload = unit();
        payload["update"] = json!(true);

        let offered =
            render("housing.offered", NOTIFICATION, &payload, &recipient(None)).expect("renders");
        let first =
            render("housing.offered", NOTIFICATION, &unit(), &recipient(None)).expect("renders");

        assert!(offered.subject.starts_with("Aggiornamento"));
        assert!(offered.text.contains("sostituiscono quelli trasmessi"));
        assert!(first.subject.starts_with("Nuova disponibilità di alloggio"));
        assert!(first.subject.contains("4 posti"));
    }

    #[test]
    fn a_rejection_explains_the_rule_and_the_remedy() {
        let mut caserma = unit();
        caserma["reason_code"] = json!("ex_caserma");
        caserma["reason"] = json!("L'immobile è una ex caserma.");
        let mut declaration = unit();
        declaration["reason_code"] = json!("owner_declaration_missing");
        declaration["reason"] = json!("Manca la dichiarazione del proprietario.");

        let caserma =
            render("housing.rejected", NOTIFICATION, &caserma, &recipient(None)).expect("renders");
        let declaration = render(
            "housing.rejected",
            NOTIFICATION,
            &declaration,
            &recipient(None),
        )
        .expect("renders");

        assert!(caserma.text.contains("art. 2, comma 4"));
        assert!(caserma.text.contains("L'immobile è una ex caserma."));
        assert!(caserma.html.contains("L&#x27;immobile è una ex caserma."));
        assert!(declaration.text.contains("art. 1, comma 2"));
        assert!(declaration.text.contains("invii di nuovo la comunicazione"));
    }

    #[test]
    fn optional_fields_may_be_missing_or_null() {
        let mut payload = unit();
        let object = payload.as_object_mut().expect("object");
        object.remove("notes");
        object.insert("available_from".into(), Value::Null);
        let mut withdrawn = unit();
        let object = withdrawn.as_object_mut().expect("object");
        object.remove("address");
        object.remove("notes");
        object.insert("available_from".into(), Value::Null);

        let offered =
            render("housing.offered", NOTIFICATION, &payload, &recipient(None)).expect("renders");
        let withdrawn = render(
            "housing.withdrawn",
            NOTIFICATION,
            &withdrawn,
            &recipient(None),
        )
        .expect("renders");

        assert!(!offered.text.contains("Note del Comune"));
        assert!(!offered.text.contains("Disponibile dal"));
        assert!(!withdrawn.text.contains("Indirizzo"));
    }

    #[test]
    fn a_withdrawal_of_a_unit_never_described_renders_without_its_details() {
        // A withdrawal names the unit as last offered; a unit withdrawn before any offer
        // has no places, kind or building type, and the workers write them as null.
        let mut withdrawn = unit();
        let object = withdrawn.as_object_mut().expect("object");
        for key in ["address", "places", "reception_kind", "building_type"] {
            object.insert(key.into(), Value::Null);
        }
        let rendered = render(
            "housing.withdrawn",
            NOTIFICATION,
            &withdrawn,
            &recipient(None),
        )
        .expect("renders");
        assert!(!rendered.text.contains("none"), "{}", rendered.text);
        assert!(!rendered.text.contains("Posti"), "{}", rendered.text);
    }

    #[test]
    fn dates_and_codes_are_written_in_italian() {
        let rendered =
            render("housing.offered", NOTIFICATION, &unit(), &recipient(None)).expect("renders");

        assert!(rendered.text.contains("Disponibile dal: 1 marzo 2025"));
        assert!(
            rendered
                .text
                .contains("Tipologia dell'immobile: appartamento")
        );
        assert!(
            rendered
                .text
                .contains("SPRAR (rete di accoglienza dei Comuni)")
        );
    }

    #[test]
    fn a_missing_required_field_is_a_payload_error_naming_kind_and_field() {
        let mut payload = unit();
        payload
            .as_object_mut()
            .expect("object")
            .remove("comune_nome");

        let error = render("housing.offered", NOTIFICATION, &payload, &recipient(None))
            .expect_err("comune_nome is required");

        assert!(matches!(error, RenderError::Payload(_)), "{error:?}");
        assert_eq!(
            error.to_string(),
            "the housing.offered payload has no comune_nome"
        );
    }

    #[test]
    fn a_value_of_the_wrong_type_is_a_payload_error_that_does_not_quote_it() {
        let mut payload = unit();
        payload["places"] = json!("quattro, citofonare Bianchi");

        let error = render("housing.offered", NOTIFICATION, &payload, &recipient(None))
            .expect_err("places is a number");

        assert_eq!(
            error.to_string(),
            "the housing.offered payload's places has the wrong type or value"
        );
    }

    #[test]
    fn an_ack_stored_by_the_first_version_without_update_still_renders() {
        let mut old = unit();
        old.as_object_mut().expect("object").remove("update");

        let rendered = render("housing.ack", NOTIFICATION, &old, &recipient(None));

        assert!(rendered.is_ok(), "{rendered:?}");
    }

    #[test]
    fn fields_unknown_to_the_payload_type_are_ignored() {
        let mut payload = unit();
        payload["added_by_a_later_version"] = json!(true);

        assert!(render("housing.offered", NOTIFICATION, &payload, &recipient(None)).is_ok());
    }

    #[test]
    fn an_unknown_kind_or_a_non_object_payload_is_refused() {
        let unknown = render("housing.sold", NOTIFICATION, &unit(), &recipient(None));
        let not_object = render("housing.ack", NOTIFICATION, &json!([1]), &recipient(None));

        assert!(matches!(unknown, Err(RenderError::UnknownKind(k)) if k == "housing.sold"));
        assert!(matches!(not_object, Err(RenderError::PayloadNotObject(_))));
    }
}

/// The reception-quota kinds (CONTRACT Q5–Q7 and the salvaguardia).
#[cfg(test)]
mod quota_tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::samples;

    const NOTIFICATION: Uuid = Uuid::from_u128(0x0193_8c2e_5d4f_7a10_8b2c_3d4e_5f60_7183);

    fn payload_for(kind: &str) -> Value {
        match kind {
            "quota.threshold" => json(&Payload::QuotaThreshold(samples::threshold())),
            "quota.safeguard" => json(&Payload::QuotaSafeguard(samples::safeguard())),
            "reception.over_capacity" => {
                json(&Payload::ReceptionOverCapacity(samples::over_capacity()))
            }
            _ => monthly(None),
        }
    }

    fn monthly(zona: Option<&str>) -> Value {
        json(&Payload::QuotaMonthlyReport(samples::monthly(zona)))
    }

    fn json(payload: &Payload) -> Value {
        payload.to_value().expect("encodes")
    }

    fn recipient(role: &str) -> RecipientContext {
        RecipientContext {
            name: None,
            institution: "Prefettura di Milano".into(),
            role: role.into(),
        }
    }

    #[test]
    fn every_quota_kind_renders_cites_the_protocol_and_keeps_subjects_clean() {
        for kind in [
            "quota.threshold",
            "quota.safeguard",
            "quota.monthly_report",
            "reception.over_capacity",
        ] {
            for role in ["stazione_appaltante", "comune", "tavolo", "prefettura"] {
                let r = render(kind, NOTIFICATION, &payload_for(kind), &recipient(role))
                    .unwrap_or_else(|e| panic!("{kind}: {e:?}"));
                assert!(!r.subject.contains('\n'), "{kind}");
                assert!(r.html.starts_with("<!DOCTYPE html>"), "{kind}");
                for body in [&r.text, &r.html] {
                    assert!(body.contains("art. "), "{kind}");
                    assert!(body.contains(&NOTIFICATION.to_string()), "{kind}");
                }
            }
        }
    }

    #[test]
    fn a_threshold_names_state_rule_and_figures_the_italian_way() {
        let r = render(
            "quota.threshold",
            NOTIFICATION,
            &payload_for("quota.threshold"),
            &recipient("stazione_appaltante"),
        )
        .expect("renders");
        assert!(r.subject.contains("Melegnano escluso dai bandi"));
        assert!(r.subject.contains("51,1%"));
        assert!(r.text.contains("Quota assegnata al Comune: 47 posti"));
        assert!(r.text.contains("Copertura: 24"));
        assert!(r.text.contains("art. 2, comma 3"));
        assert!(r.text.contains("Non includa il Comune di Melegnano"));

        let mut back = payload_for("quota.threshold");
        back["excluded"] = json!(false);
        back["rule"] = Value::Null;
        back["previous_rule"] = json!("zona");
        let r =
            render("quota.threshold", NOTIFICATION, &back, &recipient("comune")).expect("renders");
        assert!(r.subject.contains("di nuovo incluso"));
        assert!(r.text.contains("quota della zona omogenea"));
    }

    #[test]
    fn the_monthly_report_shows_a_bar_per_comune_and_flags() {
        let r = render(
            "quota.monthly_report",
            NOTIFICATION,
            &monthly(Some("Sud Est")),
            &recipient("tavolo"),
        )
        .expect("renders");
        assert!(r.subject.contains("ottobre 2026"));
        assert!(r.subject.contains("Sud Est"));
        assert!(r.html.contains("width:33%"));
        assert!(r.html.contains("width:51%"));
        assert!(r.html.contains("sotto la soglia"));
        assert!(r.text.contains("- Colturano: 2 su 6 (33,3%)"));
        assert!(r.text.contains("SOTTO LA SOGLIA"));
        assert!(r.text.contains("art. 2, comma 8"));
    }
}

#[cfg(test)]
mod pronta_tests {
    use raccordo_core::notification::NotificationKind;
    use raccordo_core::payload::{Payload, Person};
    use uuid::Uuid;

    use super::*;
    use crate::samples::sample;

    fn recipient(role: &str) -> RecipientContext {
        RecipientContext {
            name: None,
            institution: "Ufficio".into(),
            role: role.into(),
        }
    }

    fn with_person(person: Option<Person>) -> Payload {
        match sample(NotificationKind::AsylumProntaAccoglienza) {
            Payload::AsylumProntaAccoglienza(mut p) => {
                p.person = person;
                Payload::AsylumProntaAccoglienza(p)
            }
            other => other,
        }
    }

    #[test]
    fn the_desk_reads_the_notice_without_the_person_and_the_social_services_with_it() {
        let payload = with_person(Some(Person {
            name: Some("Nome Soltanto".into()),
            ..Person::default()
        }));
        let social =
            render_payload(&payload, Uuid::nil(), &recipient("servizi_sociali")).expect("renders");
        let desk =
            render_payload(&payload, Uuid::nil(), &recipient("sportello_asilo")).expect("renders");
        assert!(social.text.contains("Nome Soltanto") && social.html.contains("Nome Soltanto"));
        assert!(!desk.text.contains("Nome Soltanto") && !desk.html.contains("Nome Soltanto"));
        assert!(desk.text.contains("solo ai servizi sociali"));
        for rendered in [&social, &desk] {
            assert!(!rendered.subject.contains("Nome"), "{}", rendered.subject);
            assert!(!rendered.subject.contains("salute"), "{}", rendered.subject);
        }
    }

    #[test]
    fn without_consent_the_social_services_are_told_to_ask_the_desk() {
        let rendered = render_payload(
            &with_person(None),
            Uuid::nil(),
            &recipient("servizi_sociali"),
        )
        .expect("renders");
        assert!(
            rendered.text.contains("non ha acconsentito"),
            "{}",
            rendered.text
        );
        assert!(rendered.text.contains("problemi di salute"));
        assert!(
            rendered.subject.contains("2 marzo 2026 alle 21:15"),
            "{}",
            rendered.subject
        );
    }
}

#[cfg(test)]
mod asylum_priorities_tests {
    use uuid::Uuid;

    use super::*;
    use crate::samples::{sample_payload, sample_recipient};

    fn rendered(kind: &str) -> Rendered {
        let payload = sample_payload(kind).expect("a sample");
        render(kind, Uuid::nil(), &payload, &sample_recipient(kind)).expect("renders")
    }

    #[test]
    fn the_weekly_list_shows_cases_in_order_by_short_pseudonym_and_no_category_in_the_subject() {
        let r = rendered("asylum.weekly_priorities");

        assert_eq!(
            r.subject,
            "Lista settimanale delle priorità SPRAR — settimana del 2 marzo 2026: 3 casi in attesa, 5 posti liberi"
        );
        assert!(r.text.contains("1. Caso 5f1c0a9e3b7d — priorità alta"));
        assert!(r.text.contains("nucleo con minori"));
        assert!(r.text.contains(
            "- Sesto San Giovanni (zona omogenea Nord Milano): 4 posti liberi in 2 progetti"
        ));
        assert!(r.text.contains("Tavolo provinciale asilo"));
        for body in [&r.text, &r.html] {
            assert!(
                !body.contains("5f1c0a9e3b7d42c8"),
                "only the short pseudonym"
            );
        }
    }

    #[test]
    fn the_place_alert_names_the_project_the_places_and_the_first_cases() {
        let r = rendered("asylum.place_available");

        assert_eq!(
            r.subject,
            "Posti SPRAR liberi — progetto SPRAR-SSG-01, Comune di Sesto San Giovanni: 3 posti"
        );
        assert!(r.text.contains("indica 3 posti liberi, contro 1 della rilevazione precedente, mentre 7 casi sono in lista di attesa"));
        assert!(r.text.contains("Posti: 25; presenze: 22"));
        assert!(r.text.contains("3. Caso c3e7a1d5b9f2 — priorità ordinaria"));
        assert!(r.html.contains("<strong>3 posti liberi</strong>"));
    }

    #[test]
    fn an_empty_list_says_nothing_is_needed() {
        let mut payload = sample_payload("asylum.weekly_priorities").expect("a sample");
        payload["cases"] = serde_json::json!([]);
        payload["places"] = serde_json::json!([]);
        payload["waiting"] = serde_json::json!(0);
        payload["free_total"] = serde_json::json!(1);

        let r = render(
            "asylum.weekly_priorities",
            Uuid::nil(),
            &payload,
            &sample_recipient("asylum.weekly_priorities"),
        )
        .expect("renders");

        assert!(r.subject.contains("0 casi in attesa, 1 posto libero"));
        assert!(r.text.contains("Nessun caso è in attesa di inserimento."));
        assert!(r.text.contains("Nessuna azione richiesta"));
    }
}

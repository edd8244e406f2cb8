//! The referents' own preferences pages (issue 22): `/preferenze/<token>`, the link in the
//! footer of every email, and `/preferenze/<token>/disiscrivi`, the one-click unsubscribe
//! of `List-Unsubscribe` (RFC 2369, RFC 8058) for the kinds a referent may turn off. No
//! login: the signed token ([`PreferenceLinks`]) is the credential, and the routes exist
//! only when `console.public_url` and `ack.key` are set (else 404).
//!
//! The page shows the referent's office (institution and role, never an address) and, for
//! each kind its role can receive, how it wants it: at once, in a digest (hourly, daily at a
//! time, weekly on a day at a time) or, for the optional kinds, not at all; the kinds that
//! are never delayed, and those that may carry personal data (never put in a digest), are
//! listed with what happens to them, without a choice. Then quiet hours and weekends. A
//! `POST` checks everything and saves in one transaction, recorded in the referents'
//! history as `self-service:<id>`; a wrong value is a 400 page and changes nothing.
//!
//! The unsubscribe: `GET` only shows the kind and a button (link scanners must not
//! unsubscribe); `POST` — a mail provider's one-click (`List-Unsubscribe=One-Click`) or
//! the button — turns that kind off, keeping every other choice, idempotently; a kind the
//! protocols require is a 403. A page token on the unsubscribe, or an unsubscribe token on
//! the page, is refused like a forged, malformed or expired one: the same 403, nothing
//! changed, nothing said of the referent.

use std::collections::BTreeMap;

use axum::Form;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use minijinja::context;
use serde::Serialize;
use sqlx::PgConnection;
use time::OffsetDateTime;

use raccordo_core::domain::Role;
use raccordo_core::notification::NotificationKind;
use raccordo_core::preference_link::{Grant, PreferenceLinks};
use raccordo_core::preferences::{
    Day, LocalTime, Mode, Preferences, QuietHours, Window, is_optional, may_carry_personal_data,
    never_delayed,
};
use raccordo_core::registry::{Actor, PreferenceHolder, load_preferences, set_preferences};

use crate::params::Segment;
use crate::render::{ConsoleError, local_time};
use crate::state::AppState;

const TEMPLATE: &str = "preferences.html";

/// The days of the weekly digest, in the week's order.
const DAYS: [Day; 7] = [
    Day::Monday,
    Day::Tuesday,
    Day::Wednesday,
    Day::Thursday,
    Day::Friday,
    Day::Saturday,
    Day::Sunday,
];

/// What a never-delayed kind does, shown instead of a choice.
const ALWAYS_AT_ONCE: &str = "sempre subito, anche nelle ore di silenzio";
/// What a kind that may carry personal data does, shown instead of a choice.
const ALWAYS_ALONE: &str = "sempre una email per comunicazione, mai in un riepilogo perché può \
     contenere dati personali; nelle ore di silenzio attende la loro fine, salvo se urgente";

/// The kinds a referent of `role` can receive (CONTRACT §5, A1–A5): those of
/// [`NotificationKind::roles`], and those the asylum workers add by name — the desk's own
/// pronta accoglienza and domiciles (A1, A3), the unscoped Tavolo's Monday list (A4).
pub(crate) fn receivable(role: Role) -> Vec<NotificationKind> {
    NotificationKind::ALL
        .into_iter()
        .filter(|k| {
            k.roles().contains(&role)
                || matches!(
                    (role, k),
                    (
                        Role::SportelloAsilo,
                        NotificationKind::AsylumProntaAccoglienza
                            | NotificationKind::AsylumDomicileAssigned
                    ) | (Role::Tavolo, NotificationKind::AsylumWeeklyPriorities)
                )
        })
        .collect()
}

/// The role as the page names it.
fn role_label(role: &str) -> &'static str {
    match Role::parse(role) {
        Ok(Role::StazioneAppaltante) => "Stazione appaltante",
        Ok(Role::Prefettura) => "Prefettura, coordinamento",
        Ok(Role::Comune) => "Comune",
        Ok(Role::ServiziSociali) => "Servizi sociali",
        Ok(Role::Tavolo) => "Tavolo di coordinamento",
        Ok(Role::SportelloAsilo) => "Sportello asilo",
        Err(_) => "Ufficio",
    }
}

/// The kinds shown for `holder`: what its role receives (every kind for a role the hub no
/// longer knows, so that nothing stays out of reach).
fn kinds_of(holder: &PreferenceHolder) -> Vec<NotificationKind> {
    Role::parse(&holder.role).map_or_else(|_| NotificationKind::ALL.to_vec(), receivable)
}

/// Whether the page offers a choice for `kind`.
fn has_choice(kind: NotificationKind) -> bool {
    !never_delayed(kind) && !may_carry_personal_data(kind)
}

/// One kind on the page, its values as the form holds them (text, so that a refused form
/// comes back as it was typed).
#[derive(Debug, Serialize)]
struct Row {
    /// The wire name, in the fields' names.
    kind: &'static str,
    label: &'static str,
    /// The prefix of the elements' ids.
    id: String,
    choice: bool,
    optional: bool,
    /// What happens to a kind without a choice.
    fixed: &'static str,
    mode: String,
    daily_at: String,
    weekday: String,
    weekly_at: String,
}

const DEFAULT_AT: &str = "08:00";

impl Row {
    fn new(index: usize, kind: NotificationKind) -> Self {
        let choice = has_choice(kind);
        Self {
            kind: kind.as_str(),
            label: kind.label_it(),
            id: format!("k{index}"),
            choice,
            optional: is_optional(kind),
            fixed: if choice {
                ""
            } else if never_delayed(kind) {
                ALWAYS_AT_ONCE
            } else {
                ALWAYS_ALONE
            },
            mode: "immediate".into(),
            daily_at: DEFAULT_AT.into(),
            weekday: Day::Monday.as_str().into(),
            weekly_at: DEFAULT_AT.into(),
        }
    }

    /// The row of `kind` showing `mode`.
    fn stored(index: usize, kind: NotificationKind, mode: Mode) -> Self {
        let mut row = Self::new(index, kind);
        row.mode = match mode {
            Mode::Immediate => "immediate".into(),
            Mode::Off => "off".into(),
            Mode::Digest(Window::Hourly) => "hourly".into(),
            Mode::Digest(Window::Daily(at)) => {
                row.daily_at = at.to_string();
                "daily".into()
            }
            Mode::Digest(Window::Weekly(day, at)) => {
                row.weekday = day.as_str().into();
                row.weekly_at = at.to_string();
                "weekly".into()
            }
        };
        row
    }
}

/// The form as it is shown: from the registry, or as the referent sent it.
#[derive(Debug, Serialize)]
struct FormView {
    rows: Vec<Row>,
    quiet_from: String,
    quiet_to: String,
    quiet_weekends: bool,
}

impl FormView {
    fn stored(holder: &PreferenceHolder) -> Self {
        let prefs = &holder.preferences;
        Self {
            rows: kinds_of(holder)
                .into_iter()
                .enumerate()
                .map(|(i, k)| Row::stored(i, k, prefs.mode(k)))
                .collect(),
            quiet_from: prefs
                .quiet_hours
                .map(|q| q.from.to_string())
                .unwrap_or_default(),
            quiet_to: prefs
                .quiet_hours
                .map(|q| q.to.to_string())
                .unwrap_or_default(),
            quiet_weekends: prefs.quiet_weekends,
        }
    }

    /// The form as sent: the shown kinds with the values typed (cut short for display).
    fn sent(holder: &PreferenceHolder, fields: &BTreeMap<String, String>) -> Self {
        let mut view = Self::stored(holder);
        let field = |name: String| fields.get(&name).map(|v| v.chars().take(40).collect());
        for row in view.rows.iter_mut().filter(|r| r.choice) {
            let kind = row.kind;
            if let Some(v) = field(format!("mode.{kind}")) {
                row.mode = v;
            }
            if let Some(v) = field(format!("daily.{kind}")) {
                row.daily_at = v;
            }
            if let Some(v) = field(format!("weekday.{kind}")) {
                row.weekday = v;
            }
            if let Some(v) = field(format!("weekly.{kind}")) {
                row.weekly_at = v;
            }
        }
        view.quiet_from = field("quiet_from".into()).unwrap_or_default();
        view.quiet_to = field("quiet_to".into()).unwrap_or_default();
        view.quiet_weekends = fields.contains_key("quiet_weekends");
        view
    }
}

/// `text` quoted for an error message, cut short.
fn quoted(text: &str) -> String {
    format!("«{}»", text.trim().chars().take(40).collect::<String>())
}

fn time_of(
    label: &str,
    what: &str,
    text: Option<&String>,
    errors: &mut Vec<String>,
) -> Option<LocalTime> {
    let text = text.map(String::as_str).unwrap_or_default();
    match LocalTime::parse(text) {
        Ok(at) => Some(at),
        Err(_) if text.trim().is_empty() => {
            errors.push(format!("«{label}»: manca l'ora {what}."));
            None
        }
        Err(_) => {
            errors.push(format!(
                "«{label}»: {} non è un'ora valida per {what} (scrivere HH:MM, da 00:00 a 23:59).",
                quoted(text)
            ));
            None
        }
    }
}

/// The mode a choice asks for `kind`, or why not.
fn mode_of(
    kind: NotificationKind,
    choice: &str,
    fields: &BTreeMap<String, String>,
    errors: &mut Vec<String>,
) -> Option<Mode> {
    let label = kind.label_it();
    let field = |prefix: &str| fields.get(&format!("{prefix}.{kind}"));
    match choice {
        "immediate" => Some(Mode::Immediate),
        "hourly" => Some(Mode::Digest(Window::Hourly)),
        "daily" => time_of(label, "del riepilogo giornaliero", field("daily"), errors)
            .map(|at| Mode::Digest(Window::Daily(at))),
        "weekly" => {
            let day = field("weekday").and_then(|d| Day::parse(d));
            if day.is_none() {
                errors.push(format!(
                    "«{label}»: scegliere il giorno del riepilogo settimanale."
                ));
            }
            let at = time_of(label, "del riepilogo settimanale", field("weekly"), errors);
            Some(Mode::Digest(Window::Weekly(day?, at?)))
        }
        "off" if is_optional(kind) => Some(Mode::Off),
        "off" => {
            errors.push(format!(
                "«{label}» è prevista dai protocolli e non si può disattivare: si può ricevere \
                 subito o in un riepilogo."
            ));
            None
        }
        other => {
            errors.push(format!(
                "«{label}»: la scelta {} non esiste.",
                quoted(other)
            ));
            None
        }
    }
}

/// The quiet hours the form asks for, or why not.
fn quiet_hours_of(
    fields: &BTreeMap<String, String>,
    errors: &mut Vec<String>,
) -> Option<QuietHours> {
    let from = fields.get("quiet_from").map_or("", |v| v.trim());
    let to = fields.get("quiet_to").map_or("", |v| v.trim());
    if from.is_empty() && to.is_empty() {
        return None;
    }
    if from.is_empty() || to.is_empty() {
        errors.push(
            "Ore di silenzio: indicare sia l'inizio sia la fine, oppure lasciarle vuote entrambe."
                .into(),
        );
        return None;
    }
    let label = "Ore di silenzio";
    let from = time_of(label, "di inizio", fields.get("quiet_from"), errors);
    let to = time_of(label, "di fine", fields.get("quiet_to"), errors);
    let (from, to) = (from?, to?);
    if from == to {
        errors.push("Ore di silenzio: l'inizio e la fine devono essere diversi.".into());
        return None;
    }
    Some(QuietHours { from, to })
}

/// The preferences the form asks for, keeping what the page does not show (the kinds
/// without a choice, those of other roles); or every reason it cannot be saved.
fn read_form(
    holder: &PreferenceHolder,
    fields: &BTreeMap<String, String>,
) -> Result<Preferences, Vec<String>> {
    let shown: Vec<NotificationKind> = kinds_of(holder)
        .into_iter()
        .filter(|k| has_choice(*k))
        .collect();
    let mut errors = Vec::new();
    for name in fields.keys() {
        let Some(kind) = name.strip_prefix("mode.") else {
            continue;
        };
        match NotificationKind::parse(kind) {
            None => errors.push(format!(
                "Il modulo nomina una comunicazione che non esiste: {}.",
                quoted(kind)
            )),
            Some(k) if !shown.contains(&k) => errors.push(format!(
                "«{}» non si può impostare da questa pagina.",
                k.label_it()
            )),
            Some(_) => {}
        }
    }
    let mut prefs = holder.preferences.clone();
    for kind in shown {
        let Some(choice) = fields.get(&format!("mode.{kind}")) else {
            continue;
        };
        match mode_of(kind, choice.trim(), fields, &mut errors) {
            Some(Mode::Immediate) => {
                prefs.kinds.remove(&kind);
            }
            Some(mode) => {
                prefs.kinds.insert(kind, mode);
            }
            None => {}
        }
    }
    prefs.quiet_hours = quiet_hours_of(fields, &mut errors);
    prefs.quiet_weekends = fields.contains_key("quiet_weekends");
    if errors.is_empty() {
        Ok(prefs)
    } else {
        Err(errors)
    }
}

/// One line of the summary after saving.
#[derive(Debug, Serialize)]
struct Line {
    label: &'static str,
    text: String,
}

fn summary(holder: &PreferenceHolder, prefs: &Preferences) -> Vec<Line> {
    kinds_of(holder)
        .into_iter()
        .map(|k| Line {
            label: k.label_it(),
            text: if never_delayed(k) {
                ALWAYS_AT_ONCE.into()
            } else if may_carry_personal_data(k) {
                ALWAYS_ALONE.into()
            } else {
                prefs.mode(k).label_it()
            },
        })
        .collect()
}

fn quiet_text(prefs: &Preferences) -> String {
    prefs.quiet_hours.map_or_else(
        || "nessuna".into(),
        |q| format!("dalle {} alle {} (ora italiana)", q.from, q.to),
    )
}

fn page(
    state: &AppState,
    status: StatusCode,
    ctx: minijinja::Value,
) -> Result<Response, ConsoleError> {
    let html = state.templates.render(TEMPLATE, ctx)?;
    Ok((status, Html(html)).into_response())
}

/// The one answer to every refused token.
fn refused(state: &AppState) -> Result<Response, ConsoleError> {
    page(state, StatusCode::FORBIDDEN, context! { refused => true })
}

/// A valid token for a referent the registry no longer holds.
fn missing(state: &AppState) -> Result<Response, ConsoleError> {
    page(state, StatusCode::NOT_FOUND, context! { missing => true })
}

/// Which link a route takes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Link {
    Page,
    Unsubscribe,
}

/// What `token` grants on a route taking `link`: `Ok(None)` for any refusal; a 404 when
/// the links are not configured.
fn verified(state: &AppState, token: &str, link: Link) -> Result<Option<Grant>, ConsoleError> {
    let Some(links) = PreferenceLinks::from_settings(&state.settings) else {
        return Err(ConsoleError::NotFound("Pagina non trovata."));
    };
    let Ok(grant) = links.verify(token, OffsetDateTime::now_utc()) else {
        return Ok(None);
    };
    let fits = match link {
        Link::Page => grant.kind.is_none(),
        Link::Unsubscribe => grant.kind.is_some(),
    };
    Ok(fits.then_some(grant))
}

/// Locks the referent's row for the rest of `conn`'s transaction and reads it.
async fn locked(
    conn: &mut PgConnection,
    referent_id: &str,
) -> Result<Option<PreferenceHolder>, sqlx::Error> {
    sqlx::query("SELECT 1 FROM referents WHERE referent_id = $1 FOR UPDATE")
        .bind(referent_id)
        .execute(&mut *conn)
        .await?;
    load_preferences(conn, referent_id).await
}

fn office(holder: &PreferenceHolder) -> minijinja::Value {
    context! {
        institution => holder.institution,
        role => role_label(&holder.role),
    }
}

fn days() -> Vec<minijinja::Value> {
    DAYS.iter()
        .map(|d| context! { value => d.as_str(), label => d.label_it() })
        .collect()
}

fn form_page(
    state: &AppState,
    status: StatusCode,
    token: &str,
    grant: &Grant,
    holder: &PreferenceHolder,
    view: FormView,
    errors: Vec<String>,
) -> Result<Response, ConsoleError> {
    page(
        state,
        status,
        context! {
            form => view,
            errors => errors,
            days => days(),
            token => token,
            office => office(holder),
            expires_at => local_time(grant.expires_at),
        },
    )
}

/// `GET /preferenze/<token>`: the office and the form; changes nothing.
pub(crate) async fn show(
    State(state): State<AppState>,
    Segment(token): Segment,
) -> Result<Response, ConsoleError> {
    let Some(grant) = verified(&state, &token, Link::Page)? else {
        return refused(&state);
    };
    let mut conn = state.pool.acquire().await?;
    let Some(holder) = load_preferences(&mut conn, &grant.referent_id).await? else {
        return missing(&state);
    };
    let view = FormView::stored(&holder);
    form_page(
        &state,
        StatusCode::OK,
        &token,
        &grant,
        &holder,
        view,
        Vec::new(),
    )
}

/// `POST /preferenze/<token>`: checks the form and saves it, or a 400 that changes nothing.
pub(crate) async fn save(
    State(state): State<AppState>,
    Segment(token): Segment,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, ConsoleError> {
    let Some(grant) = verified(&state, &token, Link::Page)? else {
        return refused(&state);
    };
    let mut tx = state.pool.begin().await?;
    let Some(holder) = locked(&mut tx, &grant.referent_id).await? else {
        return missing(&state);
    };
    let fields: BTreeMap<String, String> = match form {
        Ok(Form(pairs)) => pairs.into_iter().collect(),
        Err(_) => {
            let view = FormView::stored(&holder);
            let errors = vec!["Il modulo non è stato ricevuto correttamente: riprovare.".into()];
            return form_page(
                &state,
                StatusCode::BAD_REQUEST,
                &token,
                &grant,
                &holder,
                view,
                errors,
            );
        }
    };
    let prefs = match read_form(&holder, &fields) {
        Ok(prefs) => prefs,
        Err(errors) => {
            let view = FormView::sent(&holder, &fields);
            return form_page(
                &state,
                StatusCode::BAD_REQUEST,
                &token,
                &grant,
                &holder,
                view,
                errors,
            );
        }
    };
    let actor = Actor::self_service(&holder.referent_id);
    if !set_preferences(&mut tx, &holder.referent_id, &prefs, &actor).await? {
        return missing(&state);
    }
    tx.commit().await?;
    tracing::info!(
        referent = holder.referent_id,
        "Preferences saved on the self-service page."
    );
    page(
        &state,
        StatusCode::OK,
        context! {
            saved => true,
            token => token,
            office => office(&holder),
            summary => summary(&holder, &prefs),
            quiet => quiet_text(&prefs),
            quiet_weekends => prefs.quiet_weekends,
        },
    )
}

fn mandatory(state: &AppState, kind: NotificationKind) -> Result<Response, ConsoleError> {
    page(
        state,
        StatusCode::FORBIDDEN,
        context! { mandatory => true, kind => kind.label_it() },
    )
}

/// `GET /preferenze/<token>/disiscrivi`: the kind and a button; changes nothing.
pub(crate) async fn confirm_unsubscribe(
    State(state): State<AppState>,
    Segment(token): Segment,
) -> Result<Response, ConsoleError> {
    let Some(grant) = verified(&state, &token, Link::Unsubscribe)? else {
        return refused(&state);
    };
    let Some(kind) = grant.kind else {
        return refused(&state);
    };
    if !is_optional(kind) {
        return mandatory(&state, kind);
    }
    let mut conn = state.pool.acquire().await?;
    let Some(holder) = load_preferences(&mut conn, &grant.referent_id).await? else {
        return missing(&state);
    };
    page(
        &state,
        StatusCode::OK,
        context! {
            unsubscribe => true,
            token => token,
            kind => kind.label_it(),
            office => office(&holder),
            already => holder.preferences.mode(kind) == Mode::Off,
        },
    )
}

/// `POST /preferenze/<token>/disiscrivi`: turns the kind off, keeping every other choice.
/// Whatever the body (RFC 8058's `List-Unsubscribe=One-Click`, form-urlencoded or
/// multipart, or the page's button): the signed token is what is checked.
pub(crate) async fn unsubscribe(
    State(state): State<AppState>,
    Segment(token): Segment,
) -> Result<Response, ConsoleError> {
    let Some(grant) = verified(&state, &token, Link::Unsubscribe)? else {
        return refused(&state);
    };
    let Some(kind) = grant.kind else {
        return refused(&state);
    };
    if !is_optional(kind) {
        return mandatory(&state, kind);
    }
    let mut tx = state.pool.begin().await?;
    let Some(holder) = locked(&mut tx, &grant.referent_id).await? else {
        return missing(&state);
    };
    let already = holder.preferences.mode(kind) == Mode::Off;
    if !already {
        let mut prefs = holder.preferences.clone();
        prefs.kinds.insert(kind, Mode::Off);
        let actor = Actor::self_service(&holder.referent_id);
        if !set_preferences(&mut tx, &holder.referent_id, &prefs, &actor).await? {
            return missing(&state);
        }
        tx.commit().await?;
        tracing::info!(
            referent = holder.referent_id,
            kind = kind.as_str(),
            "A kind turned off by its unsubscribe link."
        );
    }
    page(
        &state,
        StatusCode::OK,
        context! {
            unsubscribed => true,
            kind => kind.label_it(),
            office => office(&holder),
            already => already,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(role: &str) -> PreferenceHolder {
        PreferenceHolder {
            referent_id: "ss-rho".into(),
            institution: "Comune di Rho - Servizi sociali".into(),
            role: role.into(),
            preferences: Preferences::default(),
        }
    }

    fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn every_kind_is_receivable_by_some_role_and_the_desk_gets_its_own() {
        for kind in NotificationKind::ALL {
            assert!(
                Role::ALL.iter().any(|r| receivable(*r).contains(&kind)),
                "{kind}"
            );
        }
        let desk = receivable(Role::SportelloAsilo);
        assert!(desk.contains(&NotificationKind::AsylumProntaAccoglienza));
        assert!(desk.contains(&NotificationKind::AsylumDomicileAssigned));
        assert!(!desk.contains(&NotificationKind::EvictionAlert));
        assert!(receivable(Role::Tavolo).contains(&NotificationKind::AsylumWeeklyPriorities));
    }

    #[test]
    fn a_valid_form_sets_modes_and_quiet_hours_and_keeps_what_it_does_not_show() {
        let mut h = holder("stazione_appaltante");
        h.preferences
            .kinds
            .insert(NotificationKind::EvictionStats, Mode::Off);
        let prefs = read_form(
            &h,
            &fields(&[
                ("mode.housing.offered", "daily"),
                ("daily.housing.offered", "07:30"),
                ("mode.quota.threshold", "weekly"),
                ("weekday.quota.threshold", "friday"),
                ("weekly.quota.threshold", "17:00"),
                ("mode.housing.withdrawn", "hourly"),
                ("mode.quota.safeguard", "immediate"),
                ("quiet_from", "20:00"),
                ("quiet_to", "08:00"),
                ("quiet_weekends", "si"),
            ]),
        )
        .expect("valid");
        assert_eq!(
            prefs.kinds_text(),
            "eviction.stats=off; housing.offered=daily 07:30; housing.withdrawn=hourly; \
             quota.threshold=weekly friday 17:00"
        );
        assert_eq!(
            prefs.quiet_hours.map(|q| q.to_string()).as_deref(),
            Some("20:00-08:00")
        );
        assert!(prefs.quiet_weekends);
    }

    #[test]
    fn wrong_values_are_each_named_in_italian() {
        let h = holder("servizi_sociali");
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[
                    ("mode.eviction.stats", "daily"),
                    ("daily.eviction.stats", "25:00"),
                ],
                "«25:00» non è un'ora valida",
            ),
            (
                &[
                    ("mode.eviction.stats", "weekly"),
                    ("weekday.eviction.stats", "x"),
                    ("weekly.eviction.stats", "08:00"),
                ],
                "scegliere il giorno",
            ),
            (&[("mode.eviction.stats", "sometimes")], "non esiste"),
            (&[("mode.eviction.alert", "hourly")], "non si può impostare"),
            (&[("mode.no.such", "hourly")], "non esiste"),
            (&[("quiet_from", "20:00")], "sia l'inizio sia la fine"),
            (&[("quiet_from", "20:00"), ("quiet_to", "20:00")], "diversi"),
        ];
        for (form, expected) in cases {
            let errors = read_form(&h, &fields(form)).expect_err("refused");
            assert!(
                errors.iter().any(|e| e.contains(expected)),
                "{form:?}: {errors:?}"
            );
        }
        let sa = holder("stazione_appaltante");
        let errors =
            read_form(&sa, &fields(&[("mode.housing.offered", "off")])).expect_err("refused");
        assert!(errors[0].contains("non si può disattivare"), "{errors:?}");
    }

    #[test]
    fn every_state_of_the_page_renders_in_italian_without_the_address() {
        let templates = crate::render::Templates::new();
        let mut h = holder("prefettura");
        h.preferences
            .kinds
            .insert(NotificationKind::EvictionStats, Mode::Off);
        let office = office(&h);
        let form = context! {
            form => FormView::stored(&h),
            errors => vec!["«Soglia»: <b>x</b>"],
            days => days(),
            token => "00ff",
            office => office.clone(),
            expires_at => "2027-01-01 10:00",
        };
        let html = templates.render(TEMPLATE, form).expect("renders");
        assert!(html.contains("action=\"/preferenze/00ff\""), "{html}");
        assert!(html.contains("Statistiche mensili degli sfratti"));
        assert!(html.contains("value=\"off\" checked"), "{html}");
        assert!(html.contains(ALWAYS_AT_ONCE), "{html}");
        assert!(html.contains("&lt;b&gt;"), "errors are escaped");
        let saved = context! {
            saved => true, token => "00ff", office => office.clone(),
            summary => summary(&h, &h.preferences), quiet => quiet_text(&h.preferences),
        };
        let html = templates.render(TEMPLATE, saved).expect("renders");
        assert!(
            html.contains("Preferenze salvate") && html.contains("non inviare"),
            "{html}"
        );
        for ctx in [
            context! { refused => true },
            context! { missing => true },
            context! { mandatory => true, kind => "Soglia di copertura" },
            context! { unsubscribe => true, token => "00ff", kind => "K", office => office.clone() },
            context! { unsubscribed => true, kind => "K", office => office.clone() },
        ] {
            let html = templates.render(TEMPLATE, ctx).expect("renders");
            assert!(
                html.contains("<html lang=\"it\">") && !html.contains('@'),
                "{html}"
            );
        }
    }
}

//! Routing preview: for a comune and a notification kind, the referents who would receive it
//! now, and why — computed by the functions the workers call (`recipients_for`, the
//! statistics' and the monthly verification's audiences), so the preview is what happens.
//! And a referents CSV before its import: added, changed and removed referents, and what
//! each changes in routing. Nothing is written.

use std::collections::BTreeMap;

use axum::Extension;
use axum::extract::State;
use axum::response::Response;
use minijinja::{Value, context};
use serde::Deserialize;
use sqlx::PgConnection;

use raccordo_core::domain::{ComuneIstat, Role, Scope};
use raccordo_core::notification::{NotificationKind, Reach};
use raccordo_core::registry::{
    Comune, Recipient, Referent, list_comuni, list_referents, load_comune, parse_referents,
    recipients_for,
};
use raccordo_eviction::stats::{ComuneCounts, UnitStats, unit_recipients};
use raccordo_quota::monthly::{whole_report_recipients, zona_report_recipients};

use crate::auth::{Operator, page_context};
use crate::params::{Fields, Params, QueryParams, invalid};
use crate::render::ConsoleError;
use crate::state::AppState;

/// The chosen comune and kind.
#[derive(Deserialize)]
pub(crate) struct RoutingQuery {
    #[serde(default)]
    comune: Option<String>,
    #[serde(default)]
    kind: Option<String>,
}

impl QueryParams for RoutingQuery {
    const NAMES: &'static [&'static str] = &["comune", "kind"];
}

/// The kind and the comune's code asked for, each checked when given (empty = not chosen).
fn selection(
    q: &RoutingQuery,
) -> Result<(Option<NotificationKind>, Option<ComuneIstat>), ConsoleError> {
    let given = |v: &Option<String>| v.as_deref().filter(|v| !v.is_empty()).map(str::to_owned);
    let kind = given(&q.kind)
        .map(|k| {
            NotificationKind::parse(&k).ok_or_else(|| {
                invalid(
                    "kind",
                    "un tipo di notifica dell'elenco, ad esempio eviction.alert.",
                )
            })
        })
        .transpose()?;
    let istat = given(&q.comune)
        .map(|c| {
            ComuneIstat::parse(&c).map_err(|_| {
                invalid(
                    "comune",
                    "il codice ISTAT del comune, sei cifre, ad esempio 015146.",
                )
            })
        })
        .transpose()?;
    Ok((kind, istat))
}

/// The recipients of `kind` about `comune`, through the workers' own functions.
async fn recipients(
    conn: &mut PgConnection,
    kind: NotificationKind,
    comune: &Comune,
) -> Result<Vec<Recipient>, sqlx::Error> {
    match kind {
        NotificationKind::EvictionStats => {
            let unit = UnitStats {
                ambito: comune.ambito.clone(),
                comuni: vec![ComuneCounts {
                    ambito: comune.ambito.clone(),
                    istat: comune.istat.to_string(),
                    nome: comune.nome.clone(),
                    counts: BTreeMap::new(),
                }],
            };
            unit_recipients(conn, &unit).await
        }
        NotificationKind::QuotaMonthlyReport => {
            let mut out = whole_report_recipients(&mut *conn).await?;
            for r in zona_report_recipients(conn, &comune.zona).await? {
                if !out.iter().any(|o| o.email == r.email) {
                    out.push(r);
                }
            }
            Ok(out)
        }
        _ => recipients_for(conn, kind, comune).await,
    }
}

fn role_label(role: Role) -> &'static str {
    match role {
        Role::StazioneAppaltante => "stazione appaltante",
        Role::Prefettura => "prefettura",
        Role::Comune => "comune",
        Role::ServiziSociali => "servizi sociali",
        Role::Tavolo => "tavolo di coordinamento",
        Role::SportelloAsilo => "sportello asilo",
    }
}

/// Why a referent of this scope covers `comune`.
fn why(scope: Option<&Scope>, comune: &Comune) -> String {
    match scope {
        Some(Scope::All) => "nessun limite: copre tutta l'area metropolitana".into(),
        Some(Scope::Comune(c)) if c == &comune.istat => {
            format!("referente del comune di {}", comune.nome)
        }
        Some(Scope::Comune(c)) => format!("referente del comune {c}, nello stesso ambito"),
        Some(Scope::Ambito(a)) => {
            format!("referente dell'ambito {a}, di cui {} fa parte", comune.nome)
        }
        Some(Scope::Zona(z)) => {
            format!("referente della zona {z}, di cui {} fa parte", comune.nome)
        }
        None => "referente non più nel registro".into(),
    }
}

fn kind_note(kind: NotificationKind) -> &'static str {
    match (kind, kind.reach()) {
        (_, Reach::ComuneOrAmbito) => {
            "Contiene dati personali: solo i servizi sociali del comune o del suo ambito, mai un referente senza ambito o di zona (minimizzazione, contratto, §1)."
        }
        (NotificationKind::EvictionStats, _) => {
            "Statistiche anonime dell'ambito: servizi sociali dell'ambito o dei suoi comuni, e la prefettura."
        }
        (NotificationKind::QuotaMonthlyReport, _) => {
            "La verifica intera alla prefettura e ai tavoli senza ambito; la parte della zona ai referenti di quella zona."
        }
        _ => "Tutti i referenti dei ruoli previsti che coprono il comune (contratto, §5).",
    }
}

pub(crate) async fn page(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    Params(q): Params<RoutingQuery>,
) -> Result<Response, ConsoleError> {
    let (kind, istat) = selection(&q)?;
    let mut conn = state.pool.acquire().await?;
    let comuni = list_comuni(&mut conn).await?;
    let comune = match istat {
        Some(istat) => Some(load_comune(&mut conn, &istat).await?.ok_or_else(|| {
            invalid(
                "comune",
                "nessun comune del registro ha questo codice ISTAT: sceglierlo dall'elenco.",
            )
        })?),
        None => None,
    };
    let result = match (kind, &comune) {
        (Some(kind), Some(comune)) => {
            let referents: BTreeMap<String, Referent> = list_referents(&mut conn)
                .await?
                .into_iter()
                .map(|r| (r.referent_id.clone(), r))
                .collect();
            let rows: Vec<Value> = recipients(&mut conn, kind, comune)
                .await?
                .into_iter()
                .map(|r| {
                    let scope = referents.get(&r.referent_id).map(|x| &x.scope);
                    context! {
                        referent_id => r.referent_id,
                        institution => r.institution,
                        name => r.name,
                        email => r.email.to_string(),
                        role => role_label(r.role),
                        scope => scope.map(ToString::to_string),
                        why => why(scope, comune),
                    }
                })
                .collect();
            Some(context! {
                kind => kind.as_str(),
                kind_label => kind.label_it(),
                comune => comune.nome,
                istat => comune.istat.to_string(),
                note => kind_note(kind),
                rows => rows,
            })
        }
        _ => None,
    };
    drop(conn);
    let ctx = context! {
        comuni => comuni.iter().map(|c| context! { istat => c.istat.to_string(), nome => c.nome, zona => c.zona }).collect::<Vec<_>>(),
        kinds => NotificationKind::ALL.iter().map(|k| context! { value => k.as_str(), label => k.label_it() }).collect::<Vec<_>>(),
        selected_comune => q.comune,
        selected_kind => q.kind,
        result => result,
        ..page_context(&operator, "routing")
    };
    state.templates.page("routing.html", ctx)
}

/// The referents CSV to preview.
#[derive(Deserialize)]
pub(crate) struct ImportForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    csv: String,
}

/// The kinds a referent of this role and scope can receive (CONTRACT §5): personal data
/// only with a comune or ambito scope; the statistics go to the servizi sociali of an ambito
/// or comune; the monthly verification to unscoped or zona-wide referents.
fn reach_of(role: Role, scope: &Scope) -> Vec<String> {
    let local = matches!(scope, Scope::Comune(_) | Scope::Ambito(_));
    NotificationKind::ALL
        .iter()
        .filter(|k| k.roles().contains(&role))
        .filter(|k| match k {
            _ if k.reach() == Reach::ComuneOrAmbito => local,
            NotificationKind::EvictionStats => role == Role::Prefettura || local,
            NotificationKind::QuotaMonthlyReport => matches!(scope, Scope::All | Scope::Zona(_)),
            _ => true,
        })
        .map(|k| k.as_str().to_owned())
        .collect()
}

/// A scope as a page shows it: a comune by name beside its ISTAT code.
fn scope_label(scope: &Scope, comuni: &[Comune]) -> String {
    match scope {
        Scope::Comune(istat) => match comuni.iter().find(|c| &c.istat == istat) {
            Some(c) => format!("comune {} ({istat})", c.nome),
            None => scope.to_string(),
        },
        other => other.to_string(),
    }
}

fn referent_value(r: &Referent, comuni: &[Comune]) -> Value {
    context! {
        referent_id => r.referent_id,
        institution => r.institution,
        name => r.name,
        email => r.email.to_string(),
        role => role_label(r.role),
        scope => scope_label(&r.scope, comuni),
        receives => reach_of(r.role, &r.scope),
    }
}

pub(crate) async fn preview_import(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    Fields(form): Fields<ImportForm>,
) -> Result<Response, ConsoleError> {
    operator.check_csrf(&form.csrf)?;
    let (rows, errors) = parse_referents(form.csv.as_bytes()).map_err(|e| {
        ConsoleError::BadRequest(format!(
            "Il file non si legge come CSV dei referenti: {}.",
            e.message_it()
        ))
    })?;
    let incoming: Vec<Referent> = rows.into_iter().map(|(_, r)| r).collect();
    let mut conn = state.pool.acquire().await?;
    let current: BTreeMap<String, Referent> = list_referents(&mut conn)
        .await?
        .into_iter()
        .map(|r| (r.referent_id.clone(), r))
        .collect();
    let comuni = list_comuni(&mut conn).await?;
    drop(conn);
    let mut added = Vec::new();
    let mut changed = Vec::new();
    for r in &incoming {
        match current.get(&r.referent_id) {
            None => added.push(referent_value(r, &comuni)),
            Some(old) if old != r => {
                let mut what = Vec::new();
                if old.role != r.role {
                    what.push(format!(
                        "ruolo: {} → {}",
                        role_label(old.role),
                        role_label(r.role)
                    ));
                }
                if old.scope != r.scope {
                    what.push(format!(
                        "ambito di competenza: {} → {}",
                        scope_label(&old.scope, &comuni),
                        scope_label(&r.scope, &comuni)
                    ));
                }
                if old.email != r.email {
                    what.push(format!("email: {} → {}", old.email, r.email));
                }
                if old.institution != r.institution || old.name != r.name {
                    what.push("ente o nome".to_owned());
                }
                let before = reach_of(old.role, &old.scope);
                let after = reach_of(r.role, &r.scope);
                changed.push(context! {
                    r => referent_value(r, &comuni),
                    what => what,
                    gains => after.iter().filter(|k| !before.contains(k)).collect::<Vec<_>>(),
                    loses => before.iter().filter(|k| !after.contains(k)).collect::<Vec<_>>(),
                });
            }
            Some(_) => {}
        }
    }
    // An import updates and adds; it never deletes. Referents missing from the file stay,
    // and are shown so that an operator who expected them to go knows they will not.
    let missing: Vec<Value> = current
        .values()
        .filter(|r| !incoming.iter().any(|i| i.referent_id == r.referent_id))
        .map(|r| referent_value(r, &comuni))
        .collect();
    let ctx = context! {
        diff => context! {
            added => added,
            changed => changed,
            missing => missing,
            // The registry's reason stays in English (CLI, API); an Italian explanation beside it.
            errors => errors.iter().map(|e| context! {
                line => e.line,
                reason => e.reason,
                reason_it => raccordo_core::amqp::reason_it(&e.reason),
            }).collect::<Vec<_>>(),
            rows => incoming.len(),
        },
        comuni => comuni.iter().map(|c| context! { istat => c.istat.to_string(), nome => c.nome, zona => c.zona }).collect::<Vec<_>>(),
        kinds => NotificationKind::ALL.iter().map(|k| context! { value => k.as_str(), label => k.label_it() }).collect::<Vec<_>>(),
        ..page_context(&operator, "routing")
    };
    state.templates.page("routing.html", ctx)
}

//! `raccordo registry list`: every referent with its PEC address, the referent it stands
//! in for (CONTRACT §4, §9 D3) and a summary of its mail preferences (issue 22); `raccordo registry history REFERENT`: every change of one
//! referent — who (the validated publisher, `import:<file>`, `cli`, `db:<user>`), when,
//! before and after (CONTRACT §4).

use time::format_description::well_known::Rfc3339;

use raccordo_core::preferences::Preferences;
use raccordo_core::registry::{Referent, ReferentChange, list_referents, referent_history};
use raccordo_core::settings::Settings;
use serde_json::Value;

use crate::table::{Format, render, render_csv};

/// Every referent, by role and id.
pub(crate) async fn list(settings: &Settings) -> anyhow::Result<Vec<Referent>> {
    let pool = crate::database::connect_db(settings).await?;
    let mut conn = pool.acquire().await?;
    let referents = list_referents(&mut conn).await?;
    drop(conn);
    pool.close().await;
    Ok(referents)
}

/// The referents as a table, CSV (the import's columns, so it can be imported again), or
/// JSON (`[{"referent_id", "institution", "role", "email", "name", "scope", "pec",
/// "deputy_of", "preferences"}]`, `preferences` in the wire form of `registry.referent.v1`).
/// Deputies are shown both ways: whom a referent stands in for, and who stands in for it.
/// The table sums preferences up (`-` for the default); CSV and JSON give them whole.
pub(crate) fn format_list(referents: &[Referent], format: Format) -> anyhow::Result<String> {
    match format {
        Format::Json => Ok(format!("{}\n", serde_json::to_string_pretty(referents)?)),
        Format::Csv => referents_csv(referents),
        Format::Table => {
            let header = [
                "referent",
                "role",
                "scope",
                "email",
                "pec",
                "mail",
                "deputy of",
                "deputies",
            ];
            let rows: Vec<Vec<String>> = referents
                .iter()
                .map(|r| {
                    let deputies: Vec<&str> = referents
                        .iter()
                        .filter(|d| d.deputy_of.as_deref() == Some(r.referent_id.as_str()))
                        .map(|d| d.referent_id.as_str())
                        .collect();
                    vec![
                        r.referent_id.clone(),
                        r.role.as_str().to_owned(),
                        r.scope.to_string(),
                        r.email.as_ref().to_owned(),
                        r.pec.as_ref().map_or("-".into(), |p| p.as_ref().to_owned()),
                        summary(r.preferences.as_ref()),
                        r.deputy_of.clone().unwrap_or_else(|| "-".into()),
                        if deputies.is_empty() {
                            "-".into()
                        } else {
                            deputies.join(", ")
                        },
                    ]
                })
                .collect();
            if rows.is_empty() {
                return Ok("No referent: raccordo import referents FILE adds them.\n".into());
            }
            Ok(render(&header, &rows))
        }
    }
}

/// Preferences in a few words: `-` for the default, else how many kinds are not immediate,
/// the quiet hours and whether weekends are quiet (`2 kinds, quiet 20:00-08:00, weekends`).
fn summary(preferences: Option<&Preferences>) -> String {
    let Some(p) = preferences.filter(|p| !p.is_default()) else {
        return "-".into();
    };
    let mut parts = Vec::new();
    match p.kinds.len() {
        0 => {}
        1 => parts.push("1 kind".to_owned()),
        n => parts.push(format!("{n} kinds")),
    }
    if let Some(q) = p.quiet_hours {
        parts.push(format!("quiet {q}"));
    }
    if p.quiet_weekends {
        parts.push("weekends".to_owned());
    }
    parts.join(", ")
}

/// The referents in the import's columns, so the output imports again.
fn referents_csv(referents: &[Referent]) -> anyhow::Result<String> {
    let header = [
        "referent_id",
        "institution",
        "role",
        "email",
        "name",
        "comune_istat",
        "ambito",
        "zona",
        "pec",
        "deputy_of",
        "preferences",
        "quiet_hours",
        "quiet_weekends",
    ];
    let rows: Vec<Vec<String>> = referents
        .iter()
        .map(|r| {
            // The default as empty columns: imported again, they keep what is stored.
            let prefs = r.preferences.as_ref().filter(|p| !p.is_default());
            let (kind, value) = r.scope.to_columns();
            let scoped = |k: &str| {
                if kind == k {
                    value.unwrap_or_default().to_owned()
                } else {
                    String::new()
                }
            };
            vec![
                r.referent_id.clone(),
                r.institution.clone(),
                r.role.as_str().to_owned(),
                r.email.as_ref().to_owned(),
                r.name.clone().unwrap_or_default(),
                scoped("comune"),
                scoped("ambito"),
                scoped("zona"),
                r.pec
                    .as_ref()
                    .map(|p| p.as_ref().to_owned())
                    .unwrap_or_default(),
                r.deputy_of.clone().unwrap_or_default(),
                prefs.map(Preferences::kinds_text).unwrap_or_default(),
                prefs
                    .and_then(|p| p.quiet_hours)
                    .map(|q| q.to_string())
                    .unwrap_or_default(),
                if prefs.is_some_and(|p| p.quiet_weekends) {
                    "sì".to_owned()
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    render_csv(&header, &rows)
}

/// The changes of `referent_id`, oldest first.
pub(crate) async fn history(
    settings: &Settings,
    referent_id: &str,
) -> anyhow::Result<Vec<ReferentChange>> {
    let pool = crate::database::connect_db(settings).await?;
    let mut conn = pool.acquire().await?;
    let changes = referent_history(&mut conn, referent_id).await?;
    drop(conn);
    pool.close().await;
    Ok(changes)
}

/// The history as a table (one line per change, the fields that changed), CSV, or JSON
/// (`[{"at", "actor", "action", "before", "after"}]`, the rows whole).
pub(crate) fn format_history(
    referent_id: &str,
    changes: &[ReferentChange],
    format: Format,
) -> anyhow::Result<String> {
    if format == Format::Json {
        return Ok(format!("{}\n", serde_json::to_string_pretty(changes)?));
    }
    let header = ["at", "actor", "action", "changes"];
    let rows: Vec<Vec<String>> = changes
        .iter()
        .map(|c| {
            vec![
                c.at.format(&Rfc3339).unwrap_or_default(),
                c.actor.clone(),
                c.action.clone(),
                c.differences()
                    .iter()
                    .map(|(field, before, after)| {
                        format!("{field}: {} → {}", shown(before), shown(after))
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            ]
        })
        .collect();
    if format == Format::Csv {
        return render_csv(&header, &rows);
    }
    if rows.is_empty() {
        return Ok(format!(
            "No change of referent {:?} is recorded.\n",
            referent_id
        ));
    }
    Ok(render(&header, &rows))
}

/// A value for a terminal: a string quoted with its control characters escaped (a row
/// stored before they were refused may hold CR or LF), null as `-`.
fn shown(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use time::OffsetDateTime;

    use super::*;

    fn change(actor: &str, before: Option<Value>, after: Option<Value>) -> ReferentChange {
        ReferentChange {
            at: OffsetDateTime::UNIX_EPOCH,
            actor: actor.into(),
            action: "changed".into(),
            before,
            after,
        }
    }

    #[test]
    fn the_list_sums_preferences_up_and_its_csv_imports_them_again() {
        use raccordo_core::domain::{EmailAddress, Role, Scope};
        use raccordo_core::preferences::QuietHours;

        let referent = |id: &str, preferences: Option<Preferences>| Referent {
            referent_id: id.into(),
            institution: "Comune di Rho".into(),
            role: Role::parse("comune").expect("a role"),
            email: EmailAddress::parse(&format!("{id}@comune.rho.example")).expect("an address"),
            name: None,
            scope: Scope::All,
            pec: None,
            deputy_of: None,
            preferences,
        };
        let chosen = Preferences {
            kinds: Preferences::parse_kinds("housing.offered=daily 08:00; eviction.stats=off")
                .expect("valid"),
            quiet_hours: Some(QuietHours::parse("20:00-08:00").expect("valid")),
            quiet_weekends: true,
        };
        let referents = [
            referent("r1", Some(chosen.clone())),
            referent("r2", Some(Preferences::default())),
        ];

        let table = format_list(&referents, Format::Table).expect("table");
        let csv = format_list(&referents, Format::Csv).expect("csv");

        let line = |id: &str| {
            table
                .lines()
                .find(|l| l.starts_with(&format!("{id} ")))
                .unwrap_or_else(|| panic!("{table}"))
                .to_owned()
        };
        assert!(
            line("r1").contains("2 kinds, quiet 20:00-08:00, weekends"),
            "{table}"
        );
        assert!(line("r2").contains("  -  "), "{table}");
        let (rows, errors) =
            raccordo_core::registry::parse_referents(csv.as_bytes()).expect("a header");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(rows[0].1.preferences, Some(chosen), "{csv}");
        assert_eq!(
            rows[1].1.preferences, None,
            "the default keeps what is stored"
        );
    }

    #[test]
    fn the_table_shows_who_changed_what_with_control_characters_escaped() {
        let changes = [
            change(
                "import:referents.csv",
                None,
                Some(json!({"referent_id": "r1", "name": "Uff\r\nicio"})),
            ),
            change(
                "registro_rho",
                Some(json!({"referent_id": "r1", "name": "Uff\r\nicio"})),
                Some(json!({"referent_id": "r1", "name": "Ufficio"})),
            ),
        ];

        let table = format_history("r1", &changes, Format::Table).expect("table");

        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[2].contains("import:referents.csv"), "{table}");
        assert!(
            lines[2].contains(r#"referent_id: - → "r1"; name: - → "Uff\r\nicio""#),
            "{table}"
        );
        assert!(
            lines[3].starts_with("1970-01-01T00:00:00Z  registro_rho ")
                && lines[3].ends_with(r#"changed  name: "Uff\r\nicio" → "Ufficio""#),
            "{table}"
        );
        let json = format_history("r1", &changes, Format::Json).expect("json");
        let parsed: Value = serde_json::from_str(&json).expect("JSON");
        assert_eq!(parsed[1]["actor"], "registro_rho");
        assert_eq!(parsed[1]["before"]["name"], "Uff\r\nicio");
        assert_eq!(parsed[0]["at"], "1970-01-01T00:00:00Z");
        assert!(
            format_history("r9", &[], Format::Table)
                .expect("empty")
                .contains("No change")
        );
    }
}

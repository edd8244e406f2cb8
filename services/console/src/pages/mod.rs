//! One module per page of the console.

pub(crate) mod ack;
pub(crate) mod assets;
pub(crate) mod coverage;
pub(crate) mod dead_letters;
pub(crate) mod deliveries;
pub(crate) mod emails;
pub(crate) mod evictions;
pub(crate) mod overview;
pub(crate) mod preferences;
pub(crate) mod routing;
pub(crate) mod tavolo;
pub(crate) mod upload;

use crate::render::ConsoleError;

pub(crate) async fn not_found() -> ConsoleError {
    ConsoleError::NotFound("Pagina non trovata.")
}

/// The registry's comuni by ISTAT code: the names shown beside the codes.
pub(crate) async fn comune_names(
    conn: &mut sqlx::PgConnection,
) -> Result<std::collections::HashMap<String, String>, sqlx::Error> {
    Ok(raccordo_core::registry::list_comuni(conn)
        .await?
        .into_iter()
        .map(|c| (c.istat.to_string(), c.nome))
        .collect())
}

/// A comune as a page shows it: "Rho (015182)"; the code alone when the registry does not
/// know it; none for none.
pub(crate) fn comune_label(
    names: &std::collections::HashMap<String, String>,
    istat: Option<&str>,
) -> Option<String> {
    let istat = istat?;
    Some(match names.get(istat) {
        Some(nome) => format!("{nome} ({istat})"),
        None => istat.to_owned(),
    })
}

/// The Italian label of a notification kind, when it is one.
pub(crate) fn kind_label(kind: &str) -> Option<&'static str> {
    raccordo_core::notification::NotificationKind::parse(kind)
        .map(raccordo_core::notification::NotificationKind::label_it)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_comune_is_shown_by_name_and_code() {
        let names = std::collections::HashMap::from([("015182".to_owned(), "Rho".to_owned())]);
        assert_eq!(
            comune_label(&names, Some("015182")).as_deref(),
            Some("Rho (015182)")
        );
        assert_eq!(
            comune_label(&names, Some("015999")).as_deref(),
            Some("015999")
        );
        assert_eq!(comune_label(&names, None), None);
    }
}

//! Ownership of ids (CONTRACT 1.2 §3): a `unit_id`, `facility_id` or procedure belongs to
//! the comune, and where publishers are configured the publisher, that first used it. An
//! event that would move it to another comune, or that another publisher sends, is refused
//! naming the owner; an operator moves it with `raccordo ids move`, recorded here.

use std::fmt;

use sqlx::PgConnection;

use crate::envelope::ANONYMOUS;

/// What kind of id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// `housing.unit.v1`'s `unit_id`.
    Unit,
    /// `reception.occupancy.v1`'s `facility_id`.
    Facility,
    /// An eviction procedure: its docket number is personal, so never named.
    Procedure,
}

impl IdKind {
    /// The name in `id_moves` and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            IdKind::Unit => "unit",
            IdKind::Facility => "facility",
            IdKind::Procedure => "procedure",
        }
    }

    /// Parses the command-line name.
    pub fn parse(s: &str) -> Option<Self> {
        [IdKind::Unit, IdKind::Facility, IdKind::Procedure]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// Who an id belongs to, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub comune: String,
    /// None (recorded before 1.2) or [`ANONYMOUS`]: claimed by the first named publisher.
    pub publisher: Option<String>,
}

impl Owner {
    /// The publisher to store once `publisher` used the id: a named owner stays.
    pub fn publisher_after<'a>(&'a self, publisher: &'a str) -> &'a str {
        match self.publisher.as_deref() {
            Some(owner) if owner != ANONYMOUS => owner,
            _ => publisher,
        }
    }
}

/// An event that would take an id from its owner. The text names the kind, the id (not a
/// procedure's) and the owner, never a personal value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Taken {
    pub kind: IdKind,
    /// None for a procedure.
    pub id: Option<String>,
    pub owner: Owner,
}

impl fmt::Display for Taken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.id {
            Some(id) => write!(f, "{} {id:?}", self.kind.as_str())?,
            None => write!(f, "this {}", self.kind.as_str())?,
        }
        write!(f, " belongs to comune {}", self.owner.comune)?;
        if let Some(publisher) = &self.owner.publisher {
            write!(f, " and publisher {publisher:?}")?;
        }
        f.write_str(
            ": an event may not move it to another comune or another publisher \
             (an operator can: raccordo ids move)",
        )
    }
}

/// Checks that an event of `publisher` about `comune` may use an id owned by `owner`.
pub fn check(
    kind: IdKind,
    id: Option<&str>,
    owner: &Owner,
    comune: &str,
    publisher: &str,
) -> Result<(), Taken> {
    let other_publisher = owner
        .publisher
        .as_deref()
        .is_some_and(|p| p != ANONYMOUS && p != publisher);
    if owner.comune != comune || other_publisher {
        return Err(Taken {
            kind,
            id: id.map(str::to_owned),
            owner: owner.clone(),
        });
    }
    Ok(())
}

/// One operator's move of an id, for the audit.
#[derive(Debug, Clone)]
pub struct Move<'a> {
    pub kind: IdKind,
    /// The id, or a procedure's pseudonym.
    pub subject: &'a str,
    pub from: &'a Owner,
    pub to_comune: &'a str,
    pub to_publisher: Option<&'a str>,
    pub moved_by: &'a str,
    pub reason: &'a str,
}

/// Records a move in `id_moves`; returns its number.
pub async fn record_move(conn: &mut PgConnection, m: &Move<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        r#"
        INSERT INTO id_moves (kind, subject, from_comune, to_comune, from_publisher, to_publisher, moved_by, reason)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        RETURNING id
        "#,
    )
    .bind(m.kind.as_str())
    .bind(m.subject)
    .bind(&m.from.comune)
    .bind(m.to_comune)
    .bind(m.from.publisher.as_deref())
    .bind(m.to_publisher)
    .bind(m.moved_by)
    .bind(m.reason)
    .fetch_one(conn)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(comune: &str, publisher: Option<&str>) -> Owner {
        Owner {
            comune: comune.into(),
            publisher: publisher.map(str::to_owned),
        }
    }

    #[test]
    fn an_id_stays_with_its_comune_and_its_named_publisher() {
        let rho = owner("015182", Some("comune-rho"));
        assert!(check(IdKind::Unit, Some("U1"), &rho, "015182", "comune-rho").is_ok());
        let moved = check(IdKind::Unit, Some("U1"), &rho, "015146", "comune-rho")
            .expect_err("another comune");
        assert_eq!(
            moved.to_string(),
            "unit \"U1\" belongs to comune 015182 and publisher \"comune-rho\": an event may \
             not move it to another comune or another publisher (an operator can: raccordo ids move)"
        );
        assert!(check(IdKind::Unit, Some("U1"), &rho, "015182", "comune-milano").is_err());
    }

    #[test]
    fn an_anonymous_or_unknown_owner_is_claimed_by_the_first_named_publisher() {
        for stored in [None, Some(ANONYMOUS)] {
            let o = owner("015182", stored);
            assert!(check(IdKind::Facility, Some("F1"), &o, "015182", "cas-rho").is_ok());
            assert_eq!(o.publisher_after("cas-rho"), "cas-rho");
        }
        let named = owner("015182", Some("cas-rho"));
        assert_eq!(named.publisher_after("other"), "cas-rho");
    }

    #[test]
    fn a_procedure_is_never_named() {
        let taken = check(
            IdKind::Procedure,
            None,
            &owner("015182", None),
            "015146",
            ANONYMOUS,
        )
        .expect_err("another comune");
        assert!(
            taken
                .to_string()
                .starts_with("this procedure belongs to comune 015182")
        );
    }
}

//! The SPRAR waiting list (rules A4, A5): the cases whose latest placement state is
//! `waiting`, in the one order both the weekly list and the place alert use — priority
//! (`alta`, `media`, `ordinaria`), then the longest wait first, then the pseudonym, so two
//! replicas and two runs list the same cases in the same order.

use sqlx::PgConnection;
use time::Date;

use raccordo_core::payload::WaitingCase;

use crate::event::Priority;

/// A case on the waiting list. `case_key` is the pseudonym: the clear `case_id` is never
/// stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingEntry {
    pub case_key: String,
    pub priority: Priority,
    pub categories: Vec<String>,
    pub since: Date,
    pub desk: String,
}

impl WaitingEntry {
    /// Whole weeks waited by `today` (0 in the first week, never negative).
    pub fn weeks_waiting(&self, today: Date) -> i64 {
        (today - self.since).whole_days().max(0) / 7
    }

    /// The wire form, with the weeks waited by `today`.
    pub fn to_wire(&self, today: Date) -> WaitingCase {
        WaitingCase {
            case: self.case_key.clone(),
            priority: self.priority.as_str().to_owned(),
            categories: self.categories.clone(),
            since: self.since.to_string(),
            weeks_waiting: self.weeks_waiting(today),
            desk: Some(self.desk.clone()).filter(|d| !d.is_empty()),
        }
    }
}

/// Sorts the list: priority, then the longest wait, then the pseudonym.
pub fn order(list: &mut [WaitingEntry]) {
    list.sort_by(|a, b| {
        (a.priority, a.since, &a.case_key).cmp(&(b.priority, b.since, &b.case_key))
    });
}

/// A stored priority; anything else (a row written by hand, `NULL`) is `ordinaria`, so a
/// case never drops off the list.
fn stored_priority(s: Option<&str>) -> Priority {
    match s {
        Some("alta") => Priority::Alta,
        Some("media") => Priority::Media,
        _ => Priority::Ordinaria,
    }
}

type WaitingRow = (String, Option<String>, Vec<String>, Date, String);

/// The waiting list as stored now, in [`order`].
pub async fn load_waiting(conn: &mut PgConnection) -> Result<Vec<WaitingEntry>, sqlx::Error> {
    let rows: Vec<WaitingRow> = sqlx::query_as(
        r#"
        SELECT case_key, priority, categories, since, COALESCE(desk, '')
        FROM asylum_placements
        WHERE status = 'waiting'
        "#,
    )
    .fetch_all(conn)
    .await?;
    let mut list: Vec<WaitingEntry> = rows
        .into_iter()
        .map(
            |(case_key, priority, categories, since, desk)| WaitingEntry {
                case_key,
                priority: stored_priority(priority.as_deref()),
                categories,
                since,
                desk,
            },
        )
        .collect();
    order(&mut list);
    Ok(list)
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;

    fn entry(key: &str, priority: Priority, since: Date) -> WaitingEntry {
        WaitingEntry {
            case_key: key.into(),
            priority,
            categories: vec!["salute".into()],
            since,
            desk: "sportello-1".into(),
        }
    }

    #[test]
    fn the_list_is_ordered_by_priority_then_by_the_longest_wait() {
        let mut list = vec![
            entry("d", Priority::Ordinaria, date!(2026 - 01 - 01)),
            entry("c", Priority::Media, date!(2026 - 11 - 01)),
            entry("b", Priority::Alta, date!(2026 - 11 - 20)),
            entry("a", Priority::Alta, date!(2026 - 10 - 01)),
            entry("e", Priority::Media, date!(2026 - 09 - 01)),
        ];

        order(&mut list);

        let keys: Vec<&str> = list.iter().map(|e| e.case_key.as_str()).collect();
        assert_eq!(keys, ["a", "b", "e", "c", "d"]);
    }

    #[test]
    fn equal_priority_and_date_fall_back_to_the_pseudonym() {
        let mut list = vec![
            entry("z", Priority::Media, date!(2026 - 11 - 01)),
            entry("m", Priority::Media, date!(2026 - 11 - 01)),
        ];

        order(&mut list);

        assert_eq!(list[0].case_key, "m");
    }

    #[test]
    fn weeks_waiting_count_whole_weeks_and_never_go_negative() {
        let e = entry("a", Priority::Alta, date!(2026 - 11 - 30));
        assert_eq!(e.weeks_waiting(date!(2026 - 11 - 30)), 0);
        assert_eq!(e.weeks_waiting(date!(2026 - 12 - 06)), 0);
        assert_eq!(e.weeks_waiting(date!(2026 - 12 - 07)), 1);
        assert_eq!(e.weeks_waiting(date!(2027 - 01 - 04)), 5);
        assert_eq!(e.weeks_waiting(date!(2026 - 11 - 01)), 0);
    }

    #[test]
    fn an_unknown_stored_priority_is_ordinary() {
        assert_eq!(stored_priority(None), Priority::Ordinaria);
        assert_eq!(stored_priority(Some("x")), Priority::Ordinaria);
        assert_eq!(stored_priority(Some("alta")), Priority::Alta);
    }
}

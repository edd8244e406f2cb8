//! `raccordo report priorities`: the SPRAR waiting list in the list's order (priority, then
//! the longest wait) and the free places of the active SPRAR projects per comune (A4), as a
//! terminal table, CSV (the cases) or JSON (the notification's data); `--send` writes this
//! week's list to the outbox now, besides the Monday one.

use anyhow::Context;

use raccordo_asylum::priorities::{SentList, WeeklyList, insert_weekly, load_list};
use raccordo_asylum::weekly::latest_slot;
use raccordo_core::clock::{now, rome_date};
use raccordo_core::settings::Settings;

use crate::database::{Publication, connect_db};
use crate::table::{Format, render, render_csv};

/// The list as of now: the week of the latest Monday 08:00, weeks waited as of today.
pub async fn priorities(settings: &Settings) -> anyhow::Result<WeeklyList> {
    let pool = connect_db(settings).await?;
    let mut conn = pool.acquire().await?;
    let at = now();
    let list = load_list(&mut conn, latest_slot(at), rome_date(at))
        .await
        .context("Failed to read the waiting list")?;
    drop(conn);
    pool.close().await;
    Ok(list)
}

const CASES: [&str; 7] = [
    "#",
    "case",
    "priority",
    "categories",
    "since",
    "weeks",
    "desk",
];

fn case_rows(list: &WeeklyList) -> Vec<Vec<String>> {
    list.cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            vec![
                (i + 1).to_string(),
                c.case_key.clone(),
                c.priority.as_str().to_owned(),
                c.categories.join(";"),
                c.since.to_string(),
                c.weeks_waiting(list.today).to_string(),
                c.desk.clone(),
            ]
        })
        .collect()
}

/// Renders the list: JSON is the `asylum.weekly_priorities` payload; CSV the cases.
pub fn format_priorities(list: &WeeklyList, format: Format) -> anyhow::Result<String> {
    match format {
        Format::Json => Ok(format!(
            "{}\n",
            serde_json::to_string_pretty(&list.payload())?
        )),
        Format::Csv => render_csv(&CASES, &case_rows(list)),
        Format::Table => Ok(priorities_table(list)),
    }
}

fn priorities_table(list: &WeeklyList) -> String {
    const PLACES: [&str; 5] = ["zona", "comune", "istat", "projects", "free places"];
    let mut out = format!(
        "SPRAR waiting list as of {} (week of Monday {}): {} case(s) waiting, {} free SPRAR place(s)\n\n",
        list.today,
        list.monday,
        list.cases.len(),
        list.free_total()
    );
    if list.cases.is_empty() {
        out.push_str("No case is waiting.\n");
    } else {
        out.push_str(&render(&CASES, &case_rows(list)));
    }
    out.push('\n');
    if list.places.is_empty() {
        out.push_str("No active SPRAR project has a free place.\n");
    } else {
        let rows: Vec<Vec<String>> = list
            .places
            .iter()
            .map(|p| {
                vec![
                    p.zona.clone(),
                    p.comune_nome.clone(),
                    p.comune_istat.clone(),
                    p.facilities.to_string(),
                    p.free_places.to_string(),
                ]
            })
            .collect();
        out.push_str(&render(&PLACES, &rows));
    }
    out
}

/// `--send`: writes this week's list to the outbox and publishes it on
/// `{prefix}.events`; if the broker cannot be reached, a running hub's relay does.
pub async fn send(settings: &Settings) -> anyhow::Result<(SentList, Publication)> {
    let pool = connect_db(settings).await?;
    let at = now();
    let mut tx = pool.begin().await?;
    let sent = insert_weekly(&mut tx, latest_slot(at), rome_date(at))
        .await
        .context("Failed to write the weekly priority list")?;
    tx.commit().await?;
    let published = Publication::attempt(&pool, settings).await;
    pool.close().await;
    Ok((sent, published))
}

/// What `--send` did, for the operator.
pub fn describe_sent(sent: &SentList, published: &Publication) -> String {
    let mut out = if sent.recipients == 0 {
        format!(
            "Weekly priority list written ({} case(s) waiting) without recipients: recorded as undeliverable (add sportello_asilo and an unscoped tavolo with raccordo import referents).\n",
            sent.waiting
        )
    } else {
        format!(
            "Weekly priority list written: {} case(s) waiting, {} recipient(s), notification {}.\n",
            sent.waiting, sent.recipients, sent.notification
        )
    };
    out.push_str(&published.describe());
    out
}

//! A6, the Tavolo provinciale asilo's annual relazione-report: a generated year checked
//! figure by figure against a computation made here from the generator's own records (not
//! from the report's SQL), cells under 3 people as `<3`, the Tavolo's records kept by the
//! real binary, the printable HTML with its charts, and the console page for a viewer.
//!
//! The asylum tables are filled directly, as the workers of the other slices would.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use time::macros::datetime;
use time::{Date, OffsetDateTime, UtcOffset};

use raccordo_asylum::tavolo::generate::{self, GenComune, GenDesk, GenYear};
use raccordo_e2e::{TestApp, prepare_with};

use crate::console::{VIEWER, login_as, request, spawn_console};

const YEAR: i32 = 2025;

/// Runs the real binary against this test's database; fails on a non-zero exit.
async fn raccordo(app: &TestApp, args: &[&str]) -> String {
    let out = app
        .command()
        .args(args)
        .output()
        .await
        .expect("the binary runs");
    assert!(
        out.status.success(),
        "raccordo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

async fn raccordo_fails(app: &TestApp, args: &[&str]) -> String {
    let out = app
        .command()
        .args(args)
        .output()
        .await
        .expect("the binary runs");
    assert!(!out.status.success(), "raccordo {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The sample comuni with a third of them in the rotation, and six desks scoped to comuni.
async fn sample(app: &TestApp, cases: usize, seed: u64) -> GenYear {
    sqlx::query("UPDATE comuni SET domicilio = (istat::INT % 3 = 0)")
        .execute(&app.pool)
        .await
        .expect("rotation");
    let rows: Vec<(String, String, i32, bool)> =
        sqlx::query_as("SELECT istat, zona, popolazione, domicilio FROM comuni ORDER BY istat")
            .fetch_all(&app.pool)
            .await
            .expect("comuni");
    let comuni: Vec<GenComune> = rows
        .into_iter()
        .map(|(istat, zona, pop, domicilio)| GenComune {
            istat,
            zona,
            popolazione: i64::from(pop),
            domicilio,
        })
        .collect();
    let desks = (0..6)
        .map(|i| GenDesk {
            referent_id: format!("sportello-gen-{i}"),
            comune_istat: comuni[i * comuni.len() / 6].istat.clone(),
        })
        .collect();
    generate::generate(YEAR, cases, comuni, desks, seed).expect("a year")
}

async fn insert(app: &TestApp, year: &GenYear) {
    let mut conn = app.pool.acquire().await.expect("conn");
    generate::insert_desks(&mut conn, year)
        .await
        .expect("desks");
    generate::insert_year(&mut conn, year, 2_000)
        .await
        .expect("rows");
}

/// 2025 in Europe/Rome: CET, and CEST from 30 March 01:00 UTC to 26 October 01:00 UTC.
fn rome(at: OffsetDateTime) -> OffsetDateTime {
    let summer = at >= datetime!(2025-03-30 01:00 UTC) && at < datetime!(2025-10-26 01:00 UTC);
    let hours = if summer { 2 } else { 1 };
    at.to_offset(UtcOffset::from_hms(hours, 0, 0).expect("offset"))
}

fn in_year(at: OffsetDateTime) -> bool {
    rome(at).year() == YEAR
}

fn in_year_date(d: Date) -> bool {
    d.year() == YEAR
}

/// The continuous median (as PostgreSQL's `percentile_cont(0.5)`).
fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// What the report must say, computed from the generator's records.
#[derive(Debug, Default)]
struct Expected {
    cases: i64,
    within: i64,
    median_hours: Option<f64>,
    categories: BTreeMap<String, i64>,
    months: [i64; 12],
    entries: i64,
    placements: i64,
    median_wait: Option<f64>,
    continuita: Option<f64>,
    median_stay: Option<f64>,
    /// istat → assigned in the year.
    domiciles: BTreeMap<String, i64>,
    comuni: BTreeSet<String>,
}

fn expected(year: &GenYear) -> Expected {
    let mut e = Expected::default();
    let mut hours = Vec::new();
    let (mut waits, mut stays) = (Vec::new(), Vec::new());
    let (mut same, mut placed) = (0_i64, 0_i64);
    let zona_of = |istat: &str| {
        year.comuni
            .iter()
            .find(|c| c.istat == istat)
            .map(|c| c.zona.clone())
    };
    for c in &year.cases {
        if in_year(c.reported_at) {
            e.cases += 1;
            e.months[usize::from(u8::from(rome(c.reported_at).month())) - 1] += 1;
            for cat in &c.categories {
                *e.categories.entry((*cat).to_owned()).or_default() += 1;
            }
            e.comuni.insert(year.comuni[c.comune].istat.clone());
            let first = c
                .interventions
                .iter()
                .filter(|(a, _)| *a != "chiuso")
                .map(|(_, at)| *at)
                .min();
            if let Some(first) = first {
                let h = (first - c.reported_at).whole_seconds() as f64 / 3600.0;
                hours.push(h);
                if h <= 12.0 {
                    e.within += 1;
                }
            }
        }
        if c.placements
            .iter()
            .any(|(s, d, _)| *s == "waiting" && in_year_date(*d))
        {
            e.entries += 1;
        }
        if let Some((_, since, Some(comune))) = c
            .placements
            .iter()
            .find(|(s, d, _)| *s == "placed" && in_year_date(*d))
        {
            e.placements += 1;
            e.comuni.insert(year.comuni[*comune].istat.clone());
            let waited = c
                .placements
                .iter()
                .filter(|(s, d, _)| *s == "waiting" && d <= since)
                .map(|(_, d, _)| *d)
                .max();
            if let Some(w) = waited {
                waits.push((*since - w).whole_days() as f64);
            }
            let desk_zona = zona_of(&year.desks[c.desk].comune_istat);
            placed += 1;
            if desk_zona.is_some() && desk_zona == zona_of(&year.comuni[*comune].istat) {
                same += 1;
            }
        }
        if let Some((_, exit, _)) = c
            .placements
            .iter()
            .find(|(s, d, _)| *s == "exited" && in_year_date(*d))
            && let Some(p) = c
                .placements
                .iter()
                .filter(|(s, d, _)| *s == "placed" && d <= exit)
                .map(|(_, d, _)| *d)
                .max()
        {
            stays.push((*exit - p).whole_days() as f64);
        }
        if let Some((_, _, Some(comune), Some(at))) = c.domicile
            && in_year(at)
        {
            let istat = year.comuni[comune].istat.clone();
            *e.domiciles.entry(istat.clone()).or_default() += 1;
            e.comuni.insert(istat);
        }
    }
    e.median_hours = median(hours).map(round1);
    e.median_wait = median(waits);
    e.median_stay = median(stays);
    e.continuita = (placed > 0).then(|| same as f64 / placed as f64);
    e
}

fn indicator<'a>(report: &'a Value, key: &str) -> &'a Value {
    report["indicators"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["indicator"] == key))
        .unwrap_or_else(|| panic!("indicator {key} in {report}"))
}

fn number(v: &Value, what: &str) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("{what}: a number, got {v}"))
}

fn assert_close(actual: &Value, expected: f64, what: &str) {
    let a = number(actual, what);
    assert!(
        (a - expected).abs() < 1e-9,
        "{what}: report {a}, computed {expected}"
    );
}

/// Records of the Tavolo, through the binary.
async fn tavolo_records(app: &TestApp) {
    for (date, invited, present) in [
        ("2025-02-11", 12, 9),
        ("2025-04-08", 12, 12),
        ("2025-06-10", 10, 7),
    ] {
        raccordo(
            app,
            &[
                "tavolo",
                "meeting",
                "add",
                "--date",
                date,
                "--title",
                "Tavolo plenario",
                "--invited",
                &invited.to_string(),
                "--present",
                &present.to_string(),
                "--participants",
                "Comune capodistretto, AUSL, Questura",
            ],
        )
        .await;
    }
    // Another year's meeting does not count.
    raccordo(
        app,
        &[
            "tavolo",
            "meeting",
            "add",
            "--date",
            "2024-12-15",
            "--title",
            "Preparatorio",
            "--invited",
            "5",
            "--present",
            "5",
        ],
    )
    .await;
    raccordo(
        app,
        &[
            "tavolo",
            "protocol",
            "add",
            "--date",
            "2025-03-01",
            "--title",
            "Protocollo pronta accoglienza",
            "--signatories",
            "Prefettura, 4 comuni capodistretto",
        ],
    )
    .await;
    raccordo(
        app,
        &[
            "tavolo",
            "protocol",
            "add",
            "--date",
            "2025-05-20",
            "--kind",
            "criterio",
            "--title",
            "Criteri per le residenze",
        ],
    )
    .await;
    raccordo(
        app,
        &[
            "tavolo",
            "objective",
            "add",
            "--year",
            "2025",
            "--indicator",
            "continuita_sprar",
            "--target",
            "95%",
            "--description",
            "Continuità SPRAR sul territorio",
        ],
    )
    .await;
    // The same indicator again: the target is replaced, not doubled.
    raccordo(
        app,
        &[
            "tavolo",
            "objective",
            "add",
            "--year",
            "2025",
            "--indicator",
            "continuita_sprar",
            "--target",
            "0.75",
            "--description",
            "Continuità SPRAR sul territorio",
        ],
    )
    .await;
    raccordo(
        app,
        &[
            "tavolo",
            "objective",
            "add",
            "--year",
            "2025",
            "--description",
            "Promuovere tavoli distrettuali interistituzionali",
        ],
    )
    .await;
}

/// Weekly lists sent in the year (and one the year before), as A4's job writes them.
async fn weekly_lists(app: &TestApp, n: i64) {
    sqlx::query(
        r#"
        INSERT INTO notifications (id, kind, payload, created_at, published_at)
        SELECT gen_random_uuid(), 'asylum.weekly_priorities', '{}'::JSONB,
               TIMESTAMPTZ '2025-01-06 08:00:00+01' + make_interval(weeks => i::INT), now()
        FROM generate_series(-1, $1::INT - 1) AS i
        "#,
    )
    .bind(n)
    .execute(&app.pool)
    .await
    .expect("weekly lists");
}

#[tokio::test]
async fn a6_the_report_of_a_generated_year_matches_a_computation_figure_by_figure() {
    let app = prepare_with(|_| {}).await;
    let year = sample(&app, 20_000, 19).await;
    insert(&app, &year).await;
    tavolo_records(&app).await;
    weekly_lists(&app, 50).await;
    let e = expected(&year);
    assert!(
        e.cases > 19_000 && e.placements > 1_000 && e.domiciles.len() > 10,
        "{e:?}"
    );

    let json = raccordo(
        &app,
        &["report", "tavolo", "--year", "2025", "--format", "json"],
    )
    .await;
    let r: Value = serde_json::from_str(&json).expect("JSON");

    assert_eq!(indicator(&r, "pronte_accoglienze")["value"], e.cases);
    assert_close(
        &indicator(&r, "primo_intervento_entro_12_ore")["value"],
        e.within as f64 / e.cases as f64,
        "share within 12 h",
    );
    assert_close(
        &indicator(&r, "ore_mediane_primo_intervento")["value"],
        e.median_hours.expect("hours"),
        "median hours",
    );
    for (i, n) in e.months.iter().enumerate() {
        assert_eq!(r["cases_by_month"][i], *n, "month {}", i + 1);
    }
    for row in r["categories"].as_array().expect("categories") {
        let cat = row["category"].as_str().expect("name");
        assert_eq!(
            row["cases"],
            e.categories.get(cat).copied().unwrap_or(0),
            "{cat}"
        );
    }
    assert_eq!(indicator(&r, "ingressi_lista_attesa")["value"], e.entries);
    assert_eq!(indicator(&r, "inserimenti_sprar")["value"], e.placements);
    assert_close(
        &indicator(&r, "attesa_mediana_giorni")["value"],
        e.median_wait.expect("wait"),
        "median wait",
    );
    assert_close(
        &indicator(&r, "continuita_sprar")["value"],
        e.continuita.expect("continuità"),
        "continuità",
    );
    assert_close(
        &indicator(&r, "permanenza_mediana_giorni")["value"],
        e.median_stay.expect("stay"),
        "median stay",
    );
    check_domiciles(&r, &year, &e);
    assert_eq!(indicator(&r, "comuni_coinvolti")["value"], e.comuni.len());
    assert_eq!(indicator(&r, "incontri")["value"], 3);
    assert_close(
        &indicator(&r, "partecipazione")["value"],
        28.0 / 34.0,
        "participation",
    );
    assert_eq!(indicator(&r, "protocolli_sottoscritti")["value"], 1);
    assert_eq!(indicator(&r, "criteri_condivisi")["value"], 1);
    assert_eq!(indicator(&r, "report_prodotti")["value"], 50);
    check_targets(&r, &e);

    let csv = raccordo(
        &app,
        &["report", "tavolo", "--year", "2025", "--format", "csv"],
    )
    .await;
    assert!(
        csv.starts_with("section,item,value,target,verdict\n"),
        "{csv}"
    );
    assert!(
        csv.contains(&format!("indicatore,pronte_accoglienze,{},", e.cases)),
        "{csv}"
    );
    let html = raccordo(&app, &["report", "tavolo", "--year", "2025"]).await;
    assert!(html.starts_with("<!doctype html>"));
    assert!(
        html.matches("<svg").count() >= 4,
        "charts drawn on the server"
    );
    assert!(html.contains("@media print") && !html.contains("<script"));
    assert!(html.contains("Criteri per le residenze"));
    assert!(
        !html.contains(&year.cases[0].case_key),
        "no pseudonym in the report"
    );
    app.cleanup().await;
}

fn check_domiciles(r: &Value, year: &GenYear, e: &Expected) {
    let total: i64 = e.domiciles.values().sum();
    let population: i64 = year
        .comuni
        .iter()
        .filter(|c| c.domicilio)
        .map(|c| c.popolazione)
        .sum();
    let rows = r["domiciles"].as_array().expect("domiciles");
    let in_rotation = year.comuni.iter().filter(|c| c.domicilio).count();
    assert_eq!(
        rows.len(),
        in_rotation,
        "every comune of the rotation, no other"
    );
    let mut max_dev: f64 = 0.0;
    for row in rows {
        let istat = row["istat"].as_str().expect("istat");
        let c = year
            .comuni
            .iter()
            .find(|c| c.istat == istat)
            .expect("a comune");
        let assigned = e.domiciles.get(istat).copied().unwrap_or(0);
        let fair = total as f64 * c.popolazione as f64 / population as f64;
        max_dev = max_dev.max((assigned as f64 - fair).abs());
        match assigned {
            1 | 2 => assert_eq!(row["assigned"], "<3", "{istat}"),
            n => assert_eq!(row["assigned"], n, "{istat}"),
        }
        assert_close(&row["fair_share"], round1(fair), istat);
    }
    assert_close(
        &indicator(r, "scarto_massimo_domicili")["value"],
        round1(max_dev),
        "max deviation",
    );
    // The year is a stretch of the rotation begun in December: within two, not one.
    assert!(max_dev <= 2.0, "the generated rotation is fair: {max_dev}");
}

fn check_targets(r: &Value, e: &Expected) {
    let c = indicator(r, "continuita_sprar");
    assert_eq!(c["target"], 0.75);
    assert_eq!(c["target_source"], "obiettivo");
    let met = e.continuita.expect("continuità") >= 0.75;
    assert_eq!(c["verdict"], if met { "met" } else { "not_met" });
    let stay = indicator(r, "permanenza_mediana_giorni");
    assert_eq!(stay["target_source"], "predefinito");
    assert_close(&stay["target"], 292.0, "20% under 12 months");
    let within = indicator(r, "primo_intervento_entro_12_ore");
    assert_eq!(within["verdict"], "not_met", "some interventions came late");
    let objectives = r["objectives"].as_array().expect("objectives");
    assert_eq!(objectives.len(), 2, "{objectives:?}");
}

#[tokio::test]
async fn a6_cells_under_three_people_are_shown_as_fewer_than_three() {
    let app = prepare_with(|_| {}).await;
    sqlx::query("UPDATE comuni SET domicilio = istat IN ('015146', '015002')")
        .execute(&app.pool)
        .await
        .expect("rotation");
    // Four cases in March and one in May; one intervention within the hours.
    let cases = [
        (
            "k1",
            "2025-03-03 10:00:00+01",
            Some("2025-03-03 12:00:00+01"),
        ),
        ("k2", "2025-03-04 10:00:00+01", None),
        ("k3", "2025-03-05 10:00:00+01", None),
        ("k4", "2025-03-06 10:00:00+01", None),
        (
            "k5",
            "2025-05-06 10:00:00+02",
            Some("2025-05-07 10:00:00+02"),
        ),
    ];
    for (key, at, first) in cases {
        sqlx::query(
            r#"
            INSERT INTO asylum_cases (case_key, desk, comune_istat, categories, consent,
                                      reported_at, received_at, publisher,
                                      first_intervention_at)
            VALUES ($1, 'sportello-x', '015146', '{salute}', FALSE, $2::TIMESTAMPTZ,
                    $2::TIMESTAMPTZ, 'test', $3::TIMESTAMPTZ)
            "#,
        )
        .bind(key)
        .bind(at)
        .bind(first)
        .execute(&app.pool)
        .await
        .expect("case");
        if let Some(first) = first {
            sqlx::query(
                r#"
                INSERT INTO asylum_interventions (case_key, action, at, by_service, received_at)
                VALUES ($1, 'primo_intervento', $2::TIMESTAMPTZ, 'ss', $2::TIMESTAMPTZ)
                "#,
            )
            .bind(key)
            .bind(first)
            .execute(&app.pool)
            .await
            .expect("intervention");
        }
    }
    sqlx::query(
        r#"
        INSERT INTO asylum_domiciles (request_id, case_key, desk, people, requested_at,
                                      comune_istat, assigned_at, publisher)
        VALUES ('d1', 'k1', 'sportello-x', 4, '2025-03-03 11:00+01', '015146', '2025-03-03 11:00+01', 'test')
        "#,
    )
    .execute(&app.pool)
    .await
    .expect("domicile");

    let json = raccordo(
        &app,
        &["report", "tavolo", "--year", "2025", "--format", "json"],
    )
    .await;
    let r: Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(indicator(&r, "pronte_accoglienze")["value"], 5);
    assert_eq!(
        indicator(&r, "ore_mediane_primo_intervento")["value"],
        "<3",
        "over 2 people"
    );
    assert_eq!(r["cases_by_month"][4], "<3", "May: one person");
    assert_eq!(
        r["cases_by_month"][2], "n.d.",
        "March would tell May from the year's 5"
    );
    let salute = r["categories"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["category"] == "salute"))
        .expect("salute");
    assert_eq!(salute["cases"], 5);
    let milano = r["domiciles"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["istat"] == "015146"))
        .expect("Milano");
    assert_eq!(milano["assigned"], "<3");
    assert_eq!(
        milano["deviation"], "<3",
        "the deviation would tell the count"
    );
    let csv = raccordo(
        &app,
        &["report", "tavolo", "--year", "2025", "--format", "csv"],
    )
    .await;
    assert!(csv.contains("mese,2025-05,<3"), "{csv}");
    let html = raccordo(&app, &["report", "tavolo", "--year", "2025"]).await;
    assert!(html.contains("&lt;3") && html.contains("bar few"));
    app.cleanup().await;
}

#[tokio::test]
async fn a6_the_tavolo_s_records_are_kept_listed_and_checked_by_the_cli() {
    let app = prepare_with(|_| {}).await;
    tavolo_records(&app).await;
    let meetings: Value = serde_json::from_str(
        &raccordo(
            &app,
            &[
                "tavolo", "meeting", "list", "--year", "2025", "--format", "json",
            ],
        )
        .await,
    )
    .expect("JSON");
    assert_eq!(meetings.as_array().map(Vec::len), Some(3));
    assert_eq!(meetings[0]["held_on"], "2025-02-11");
    assert_eq!(meetings[0]["participants"][1], "AUSL");
    let all = raccordo(&app, &["tavolo", "meeting", "list"]).await;
    assert!(
        all.contains("Preparatorio") && all.contains("2024-12-15"),
        "{all}"
    );
    let protocols = raccordo(&app, &["tavolo", "protocol", "list", "--format", "csv"]).await;
    assert!(
        protocols.contains("criterio,Criteri per le residenze"),
        "{protocols}"
    );
    let objectives: Value = serde_json::from_str(
        &raccordo(
            &app,
            &[
                "tavolo",
                "objective",
                "list",
                "--year",
                "2025",
                "--format",
                "json",
            ],
        )
        .await,
    )
    .expect("JSON");
    assert_eq!(objectives.as_array().map(Vec::len), Some(2), "{objectives}");
    assert_eq!(objectives[0]["target"], 0.75);

    let err = raccordo_fails(
        &app,
        &[
            "tavolo",
            "meeting",
            "add",
            "--date",
            "2025-01-01",
            "--title",
            "x",
            "--invited",
            "3",
            "--present",
            "4",
        ],
    )
    .await;
    assert!(err.contains("present"), "{err}");
    let err = raccordo_fails(
        &app,
        &[
            "tavolo",
            "objective",
            "add",
            "--year",
            "2025",
            "--indicator",
            "ignoto",
            "--target",
            "3",
            "--description",
            "x",
        ],
    )
    .await;
    assert!(
        err.contains("continuita_sprar"),
        "the known indicators are named: {err}"
    );
    raccordo_fails(&app, &["report", "tavolo", "--year", "2999"]).await;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM tavolo_meetings")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(count, 4, "nothing recorded from a refused command");
    app.cleanup().await;
}

#[tokio::test]
async fn a6_a_viewer_sees_the_tavolo_page_with_indicators_against_targets() {
    let (app, addr) = spawn_console().await;
    sqlx::query(
        r#"
        INSERT INTO tavolo_meetings (held_on, title, level, invited, present)
        VALUES ('2025-02-11', 'Tavolo <plenario>', 'politico', 10, 8)
        "#,
    )
    .execute(&app.pool)
    .await
    .expect("meeting");
    let cookie = login_as(addr, VIEWER).await;
    let page = request(addr, "GET", "/tavolo?year=2025", Some(&cookie), None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body
            .contains("Tavolo provinciale asilo: indicatori 2025")
    );
    assert!(page.body.contains("data-indicator=\"continuita_sprar\""));
    assert!(
        page.body.contains("≥ 90,0%"),
        "the default target of continuità"
    );
    assert!(page.body.contains("Tavolo &lt;plenario&gt;"), "escaped");
    assert!(page.body.contains("<svg"), "charts");
    assert!(page.body.contains("href=\"/tavolo\""), "in the menu");
    let bad = request(addr, "GET", "/tavolo?year=1850", Some(&cookie), None).await;
    assert_eq!(bad.status, 400);
    let anonymous = request(addr, "GET", "/tavolo", None, None).await;
    assert_ne!(anonymous.status, 200, "a login is needed");
    app.cleanup().await;
}

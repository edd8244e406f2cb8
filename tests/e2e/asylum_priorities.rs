//! The SPRAR waiting list, the Monday list and the place alert (A4, A5), through the real
//! broker, database and SMTP; the Monday 08:00 schedule with an injected clock, two
//! replicas and a downtime over Monday.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raccordo::serve::Workers;
use raccordo_asylum::priorities::WeeklyPriorities;
use raccordo_asylum::weekly::{check, run_week, run_weekly};
use raccordo_core::clock::Clock;
use raccordo_core::pseudonym::case_pseudonym;
use raccordo_core::schedule::RunOutcome;
use raccordo_e2e::{TestApp, prepare_with, spawn_app};
use serde_json::{Value, json};
use sqlx::PgPool;
use time::OffsetDateTime;
use time::macros::{date, datetime};
use tokio_util::sync::CancellationToken;

const SESTO: &str = "015209";
const CINISELLO: &str = "015077";
const MELEGNANO: &str = "015140";

/// The six desks and the Tavolo provinciale asilo of `data/demo/referents_asylum.csv`.
const DESKS: [&str; 6] = [
    "sportello.milano@asilo.mi.example",
    "sportello.rho@asilo.mi.example",
    "sportello.sesto@asilo.mi.example",
    "sportello.legnano@asilo.mi.example",
    "sportello.abbiategrasso@asilo.mi.example",
    "sportello.melegnano@asilo.mi.example",
];
const TAVOLO_ASILO: &str = "tavolo.asilo@cittametropolitana.mi.example";

/// A clock the test sets; counts how often it was read (each scheduler check reads it
/// once), so a test waits for checks, not for time.
struct TestClock {
    now: Mutex<OffsetDateTime>,
    reads: AtomicU64,
}

impl TestClock {
    fn at(now: OffsetDateTime) -> Arc<Self> {
        Arc::new(Self {
            now: Mutex::new(now),
            reads: AtomicU64::new(0),
        })
    }

    fn set(&self, now: OffsetDateTime) {
        *self.now.lock().expect("clock") = now;
    }

    fn reads(&self) -> u64 {
        self.reads.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until the clock was read `n` more times than now.
    async fn wait_for_reads(&self, n: u64) {
        let target = self.reads() + n;
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.reads() < target {
            assert!(Instant::now() < deadline, "the schedulers stopped checking");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Clock for TestClock {
    fn now(&self) -> OffsetDateTime {
        self.reads.fetch_add(1, Ordering::SeqCst);
        *self.now.lock().expect("clock")
    }
}

/// Adds the desks and the unscoped Tavolo provinciale asilo to the registry.
async fn import_desks(app: &TestApp) {
    let csv =
        std::fs::File::open(raccordo_e2e::workspace_root().join("data/demo/referents_asylum.csv"))
            .expect("data/demo/referents_asylum.csv");
    let report = raccordo_core::registry::import_referents(
        &app.pool,
        csv,
        &raccordo_core::registry::Actor::import("data/demo/referents_asylum.csv"),
    )
    .await
    .expect("referents import");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
}

fn waiting(case: &str, priority: &str, since: &str, desk: &str) -> Value {
    json!({
        "case_id": case,
        "status": "waiting",
        "priority": priority,
        "categories": ["nucleo_con_minori"],
        "since": since,
        "desk": desk,
    })
}

fn placed(case: &str, since: &str) -> Value {
    json!({
        "case_id": case,
        "status": "placed",
        "since": since,
        "desk": "sportello-sesto",
        "facility_id": "SPRAR-SSG-01",
        "comune_istat": SESTO,
    })
}

fn sprar(facility: &str, comune: &str, capacity: u32, presences: u32, as_of: &str) -> Value {
    json!({
        "facility_id": facility,
        "comune_istat": comune,
        "reception_kind": "SPRAR",
        "capacity": capacity,
        "presences": presences,
        "as_of": as_of,
    })
}

/// Publishes each event and waits until the hub is quiet, one after the other.
async fn publish_in_order(app: &TestApp, event_type: &str, events: &[Value]) {
    for data in events {
        app.publish(&app.event(event_type, data.clone())).await;
        app.settle().await;
    }
}

fn pseudonym(app: &TestApp, case: &str) -> String {
    case_pseudonym(&app.settings.eviction, case)
}

/// The stored payloads of one kind, oldest first.
async fn payloads(pool: &PgPool, kind: &str) -> Vec<Value> {
    sqlx::query_scalar("SELECT payload FROM notifications WHERE kind = $1 ORDER BY created_at")
        .bind(kind)
        .fetch_all(pool)
        .await
        .expect("payloads")
}

/// The recipients of the emails of `kind`, sorted.
fn addressees(app: &TestApp, kind: &str) -> Vec<String> {
    let mut to: Vec<String> = app
        .emails_of(kind)
        .iter()
        .filter_map(|m| m.header("To"))
        .map(|to| match (to.find('<'), to.rfind('>')) {
            (Some(start), Some(end)) if start < end => to[start + 1..end].to_owned(),
            _ => to,
        })
        .collect();
    to.sort();
    to
}

fn audience() -> Vec<String> {
    let mut all: Vec<String> = DESKS.iter().map(|d| (*d).to_owned()).collect();
    all.push(TAVOLO_ASILO.to_owned());
    all.sort();
    all
}

/// Writes waiting cases straight into the list (the schedule tests run no asylum worker).
async fn seed_waiting(pool: &PgPool, cases: &[(&str, &str, &str)]) {
    for (key, priority, since) in cases {
        sqlx::query(
            r#"
            INSERT INTO asylum_placements (case_key, status, priority, categories, since, desk)
            VALUES ($1, 'waiting', $2, '{salute}', $3::DATE, 'sportello-milano')
            "#,
        )
        .bind(key)
        .bind(priority)
        .bind(since)
        .execute(pool)
        .await
        .expect("a waiting case");
    }
}

/// A hub with the mailer alone (no scheduler of the list with the system's clock), the
/// desks, and three waiting cases.
async fn mailer_hub() -> TestApp {
    let app = prepare_with(|_| {}).await.start(Workers::Mailer).await;
    import_desks(&app).await;
    seed_waiting(
        &app.pool,
        &[
            ("c0ffee000000aaaa", "ordinaria", "2026-09-01"),
            ("c0ffee000000bbbb", "alta", "2026-11-02"),
            ("c0ffee000000cccc", "media", "2026-10-05"),
        ],
    )
    .await;
    app
}

/// A replica of the scheduler: its own pool, checking every 20 ms.
struct Replica {
    token: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Replica {
    async fn start(app: &TestApp, clock: &Arc<TestClock>) -> Self {
        let pool = raccordo_core::db::connect(&app.settings.database)
            .await
            .expect("a replica's pool");
        let token = CancellationToken::new();
        let clock: Arc<dyn Clock> = clock.clone();
        let task = tokio::spawn(run_weekly(
            pool,
            Arc::new(WeeklyPriorities::with_clock(clock.clone())),
            clock,
            Duration::from_millis(20),
            token.clone(),
        ));
        Self { token, task }
    }

    async fn stop(self) {
        self.token.cancel();
        self.task.await.expect("the replica stops");
    }
}

async fn weekly_runs(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT period FROM scheduled_runs WHERE job = 'asylum.weekly_priorities' ORDER BY period",
    )
    .fetch_all(pool)
    .await
    .expect("runs")
}

#[tokio::test]
async fn a4_placements_make_the_waiting_list_by_priority_then_by_wait() {
    let app = spawn_app().await;
    import_desks(&app).await;

    publish_in_order(
        &app,
        "asylum.placement.v1",
        &[
            waiting("SP-01", "ordinaria", "2026-09-01", "sportello-milano"),
            waiting("SP-02", "alta", "2026-11-20", "sportello-rho"),
            waiting("SP-03", "alta", "2026-10-01", "sportello-sesto"),
            waiting("SP-04", "media", "2026-11-01", "sportello-milano"),
            waiting("SP-05", "alta", "2026-08-01", "sportello-milano"),
            placed("SP-05", "2026-11-25"),
            // Arrives late: older than the placement it preceded, it changes nothing.
            waiting("SP-05", "alta", "2026-08-01", "sportello-milano"),
        ],
    )
    .await;

    let mut conn = app.pool.acquire().await.expect("a connection");
    let list = raccordo_asylum::priorities::load_list(
        &mut conn,
        date!(2026 - 12 - 07),
        date!(2026 - 12 - 07),
    )
    .await
    .expect("the list");
    let order: Vec<&str> = list.cases.iter().map(|c| c.case_key.as_str()).collect();
    let expected: Vec<String> = ["SP-03", "SP-02", "SP-04", "SP-01"]
        .iter()
        .map(|c| pseudonym(&app, c))
        .collect();
    assert_eq!(order, expected);
    assert_eq!(list.cases[0].weeks_waiting(list.today), 9);
    let history: i64 =
        sqlx::query_scalar("SELECT count(*) FROM asylum_placement_history WHERE case_key = $1")
            .bind(pseudonym(&app, "SP-05"))
            .fetch_one(&app.pool)
            .await
            .expect("history");
    assert_eq!(history, 3, "every update is kept for the annual report");
    let clear: i64 = sqlx::query_scalar(
        r#"
        SELECT (SELECT count(*) FROM asylum_placements p WHERE p::TEXT LIKE '%SP-0%')
             + (SELECT count(*) FROM asylum_placement_history h WHERE h::TEXT LIKE '%SP-0%')
        "#,
    )
    .fetch_one(&app.pool)
    .await
    .expect("clear ids");
    assert_eq!(clear, 0, "case numbers are stored only as pseudonyms");
    drop(conn);
    app.cleanup().await;
}

#[tokio::test]
async fn a4_the_monday_list_goes_once_at_eight_across_two_replicas() {
    let app = mailer_hub().await;
    let clock = TestClock::at(datetime!(2026-12-13 12:00 UTC)); // Sunday
    let job = WeeklyPriorities::with_clock(clock.clone());

    // A first start records the current week as done: no list for a Monday not witnessed.
    assert_eq!(
        check(&app.pool, &job, clock.as_ref())
            .await
            .expect("checks"),
        RunOutcome::AlreadyDone
    );
    assert_eq!(weekly_runs(&app.pool).await, ["2026-12-07"]);
    // Monday 07:59:59 in Rome: not yet.
    clock.set(datetime!(2026-12-14 06:59:59 UTC));
    assert_eq!(
        check(&app.pool, &job, clock.as_ref())
            .await
            .expect("checks"),
        RunOutcome::AlreadyDone
    );

    // Monday 08:00 in Rome (UTC+1): two replicas check every 20 ms.
    clock.set(datetime!(2026-12-14 07:00 UTC));
    let replicas = [
        Replica::start(&app, &clock).await,
        Replica::start(&app, &clock).await,
    ];
    app.wait_for_emails(7).await;
    clock.wait_for_reads(50).await;
    for replica in replicas {
        replica.stop().await;
    }
    app.settle().await;

    assert_eq!(weekly_runs(&app.pool).await, ["2026-12-07", "2026-12-14"]);
    let lists = payloads(&app.pool, "asylum.weekly_priorities").await;
    assert_eq!(lists.len(), 1, "one list across replicas");
    assert_eq!(addressees(&app, "asylum.weekly_priorities"), audience());
    let list = &lists[0];
    assert_eq!(list["monday"], "2026-12-14");
    assert_eq!(list["week"], "2026-W51");
    let order: Vec<&str> = list["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .filter_map(|c| c["case"].as_str())
        .collect();
    assert_eq!(
        order,
        ["c0ffee000000bbbb", "c0ffee000000cccc", "c0ffee000000aaaa"]
    );
    assert_eq!(list["cases"][0]["weeks_waiting"], 6);
    let mail = &app.emails_of("asylum.weekly_priorities")[0];
    let subject = mail.subject().expect("a subject");
    assert!(subject.contains("14 dicembre 2026"), "{subject}");
    assert!(
        !subject.contains("minori") && !subject.contains("salute"),
        "{subject}"
    );
    let text = mail.text_body().expect("a text body");
    assert!(
        text.contains("1. Caso c0ffee000000 — priorità alta"),
        "{text}"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn a4_a_list_missed_in_a_downtime_over_monday_is_sent_once_when_back() {
    let app = mailer_hub().await;
    let clock = TestClock::at(datetime!(2026-12-11 10:00 UTC)); // Friday

    let replica = Replica::start(&app, &clock).await;
    clock.wait_for_reads(5).await;
    replica.stop().await;
    assert_eq!(weekly_runs(&app.pool).await, ["2026-12-07"]);

    // Down over Monday 14; back on Tuesday: Monday's list goes, late, once — through a
    // restart of both replicas after it went.
    clock.set(datetime!(2026-12-15 09:30 UTC));
    for _ in 0..2 {
        let replicas = [
            Replica::start(&app, &clock).await,
            Replica::start(&app, &clock).await,
        ];
        clock.wait_for_reads(30).await;
        for replica in replicas {
            replica.stop().await;
        }
    }
    app.wait_for_emails(7).await;
    // Down over two Mondays: only the latest list, the older one is stale.
    clock.set(datetime!(2026-12-29 09:30 UTC));
    let replica = Replica::start(&app, &clock).await;
    clock.wait_for_reads(30).await;
    replica.stop().await;
    app.wait_for_emails(14).await;
    app.settle().await;

    assert_eq!(
        weekly_runs(&app.pool).await,
        ["2026-12-07", "2026-12-14", "2026-12-28"]
    );
    let mondays: Vec<Value> = payloads(&app.pool, "asylum.weekly_priorities")
        .await
        .iter()
        .map(|p| p["monday"].clone())
        .collect();
    assert_eq!(mondays, [json!("2026-12-14"), json!("2026-12-28")]);
    assert_eq!(app.emails_of("asylum.weekly_priorities").len(), 14);
    // The same week asked again, by any replica: nothing more.
    let job = WeeklyPriorities::default();
    assert_eq!(
        run_week(&app.pool, &job, date!(2026 - 12 - 28))
            .await
            .expect("runs"),
        RunOutcome::AlreadyDone
    );
    app.cleanup().await;
}

#[tokio::test]
async fn a4_report_priorities_prints_the_list_and_send_mails_the_desks_and_the_tavolo() {
    let app = mailer_hub().await;

    let run = |args: &'static [&'static str]| {
        let mut cmd = app.command();
        cmd.args(args);
        async move { cmd.output().await.expect("raccordo runs") }
    };
    let json_out = run(&["report", "priorities", "--format", "json"]).await;
    assert!(
        json_out.status.success(),
        "{}",
        String::from_utf8_lossy(&json_out.stderr)
    );
    let list: Value = serde_json::from_slice(&json_out.stdout).expect("JSON");
    assert_eq!(list["waiting"], 3);
    assert_eq!(list["alta"], 1);
    assert_eq!(list["cases"][0]["case"], "c0ffee000000bbbb");
    let csv = run(&["report", "priorities", "--format", "csv"]).await;
    let csv = String::from_utf8_lossy(&csv.stdout).into_owned();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "#,case,priority,categories,since,weeks,desk");
    assert!(
        lines[1].starts_with("1,c0ffee000000bbbb,alta,salute,2026-11-02,"),
        "{csv}"
    );
    assert_eq!(lines.len(), 4, "{csv}");
    let table = run(&["report", "priorities"]).await;
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    assert!(table.contains("3 case(s) waiting"), "{table}");
    assert!(
        table.contains("No active SPRAR project has a free place."),
        "{table}"
    );
    assert!(app.emails().is_empty(), "without --send nothing is sent");

    let sent = run(&["report", "priorities", "--send"]).await;
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    assert!(
        String::from_utf8_lossy(&sent.stderr).contains("7 recipient(s)"),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    app.wait_for_emails(7).await;
    app.settle().await;
    assert_eq!(addressees(&app, "asylum.weekly_priorities"), audience());
    assert!(
        !addressees(&app, "asylum.weekly_priorities")
            .iter()
            .any(|a| a.starts_with("tavolo.") && a != TAVOLO_ASILO),
        "no zona's Tavolo"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn a5_freed_sprar_places_while_cases_wait_tell_every_desk_the_first_three() {
    let app = spawn_app().await;
    import_desks(&app).await;
    // Nobody waits yet: freed places alert nobody.
    publish_in_order(
        &app,
        "reception.occupancy.v1",
        &[sprar("SPRAR-SSG-01", SESTO, 10, 6, "2026-11-01")],
    )
    .await;
    publish_in_order(
        &app,
        "asylum.placement.v1",
        &[
            waiting("SP-11", "ordinaria", "2026-09-01", "sportello-milano"),
            waiting("SP-12", "media", "2026-11-01", "sportello-rho"),
            waiting("SP-13", "alta", "2026-11-20", "sportello-sesto"),
            waiting("SP-14", "alta", "2026-10-01", "sportello-milano"),
        ],
    )
    .await;
    let full = app.event(
        "reception.occupancy.v1",
        sprar("SPRAR-SSG-01", SESTO, 10, 10, "2026-11-08"),
    );
    let freed = app.event(
        "reception.occupancy.v1",
        sprar("SPRAR-SSG-01", SESTO, 10, 7, "2026-11-15"),
    );
    for event in [&full, &freed, &freed] {
        // The second `freed` is a redelivery of the same event: nothing more.
        app.publish(event).await;
        app.settle().await;
    }
    publish_in_order(
        &app,
        "reception.occupancy.v1",
        &[
            // Fewer free places than the report before: nothing.
            sprar("SPRAR-SSG-01", SESTO, 10, 8, "2026-11-22"),
            // Late (older than the standing report, Q1): nothing.
            sprar("SPRAR-SSG-01", SESTO, 10, 1, "2026-11-10"),
            // A CAS has no place for the SPRAR list.
            json!({"facility_id": "CAS-SSG-01", "comune_istat": SESTO, "reception_kind": "CAS",
                   "capacity": 40, "presences": 2, "as_of": "2026-11-22"}),
            // An inactive project neither.
            json!({"facility_id": "SPRAR-CIN-01", "comune_istat": CINISELLO, "reception_kind": "SPRAR",
                   "capacity": 12, "presences": 0, "as_of": "2026-11-22", "active": false}),
        ],
    )
    .await;

    let alerts = payloads(&app.pool, "asylum.place_available").await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let alert = &alerts[0];
    assert_eq!(alert["facility_id"], "SPRAR-SSG-01");
    assert_eq!(alert["free_places"], 3);
    assert_eq!(alert["previous_free_places"], 0);
    assert_eq!(alert["waiting"], 4);
    let first: Vec<&str> = alert["first_waiting"]
        .as_array()
        .expect("cases")
        .iter()
        .filter_map(|c| c["case"].as_str())
        .collect();
    let expected: Vec<String> = ["SP-14", "SP-13", "SP-12"]
        .iter()
        .map(|c| pseudonym(&app, c))
        .collect();
    assert_eq!(first, expected);
    let mut desks: Vec<String> = DESKS.iter().map(|d| (*d).to_owned()).collect();
    desks.sort();
    assert_eq!(addressees(&app, "asylum.place_available"), desks);
    let mail = &app.emails_of("asylum.place_available")[0];
    let subject = mail.subject().expect("a subject");
    assert!(
        subject.contains("SPRAR-SSG-01") && subject.contains("3 posti"),
        "{subject}"
    );
    let text = mail.text_body().expect("a text body");
    assert!(
        text.contains(&format!("1. Caso {}", &expected[0][..12])),
        "{text}"
    );
    assert!(!text.contains("SP-14"), "no case number in clear");
    app.cleanup().await;
}

#[tokio::test]
async fn a5_reports_of_one_zona_arriving_together_alert_once_each() {
    let app = spawn_app().await;
    import_desks(&app).await;
    publish_in_order(
        &app,
        "asylum.placement.v1",
        &[waiting(
            "SP-21",
            "alta",
            "2026-11-01",
            "sportello-melegnano",
        )],
    )
    .await;
    let facilities = ["SPRAR-MEL-01", "SPRAR-MEL-02", "SPRAR-MEL-03"];
    for f in facilities {
        app.publish(&app.event(
            "reception.occupancy.v1",
            sprar(f, MELEGNANO, 8, 8, "2026-11-01"),
        ))
        .await;
    }
    app.settle().await;

    // A burst the quota worker may decide in one batch (its zona's): each frees places.
    for (i, f) in facilities.iter().enumerate() {
        let presences = 7 - u32::try_from(i).expect("small");
        app.publish(&app.event(
            "reception.occupancy.v1",
            sprar(f, MELEGNANO, 8, presences, "2026-11-08"),
        ))
        .await;
    }
    app.settle().await;

    let mut freed: Vec<(String, i64)> = payloads(&app.pool, "asylum.place_available")
        .await
        .iter()
        .map(|p| {
            (
                p["facility_id"].as_str().unwrap_or_default().to_owned(),
                p["free_places"].as_i64().unwrap_or_default(),
            )
        })
        .collect();
    freed.sort();
    assert_eq!(
        freed,
        [
            ("SPRAR-MEL-01".to_owned(), 1),
            ("SPRAR-MEL-02".to_owned(), 2),
            ("SPRAR-MEL-03".to_owned(), 3)
        ]
    );
    app.cleanup().await;
}

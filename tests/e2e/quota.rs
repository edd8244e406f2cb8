//! Reception coverage and the 50% threshold (Q1–Q7, salvaguardia), through the real broker,
//! database and SMTP; and exactly one announcement per change under concurrent workers.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use raccordo::serve::{App, Workers};
use raccordo_e2e::{TestApp, spawn_app, spawn_app_with};
use serde_json::{Value, json};

const MELEGNANO: &str = "015140"; // Sud Est, quota 47 (computed)
const SAN_COLOMBANO: &str = "015191"; // Sud Est, quota 21
const COLTURANO: &str = "015082"; // Sud Est, 1952 inhabitants: quota 6
const PAULLO: &str = "015169"; // Sud Est, quota 31
const MEDIGLIA: &str = "015139"; // Sud Est, quota 34
const CINISELLO: &str = "015077"; // Nord Milano
const SESTO: &str = "015209"; // Nord Milano
const MILANO: &str = "015146";

const SA_PREFETTURA: &str = "gare.accoglienza@prefettura.mi.example";
const SA_SUD_EST: &str = "appalti.sudest@cittametropolitana.mi.example";
const COMUNE_MELEGNANO: &str = "accoglienza@comune.melegnano.example";
const TAVOLO_SUD_EST: &str = "tavolo.sudest@cittametropolitana.mi.example";
const TAVOLO_NORD_MILANO: &str = "tavolo.nordmilano@cittametropolitana.mi.example";
const COMUNE_SESTO: &str = "accoglienza@comune.sestosg.example";
const PREFETTURA: &str = "coordinamento@prefettura.mi.example";

fn report(
    facility: &str,
    comune: &str,
    kind: &str,
    capacity: u32,
    presences: u32,
    as_of: &str,
) -> Value {
    json!({
        "facility_id": facility,
        "comune_istat": comune,
        "reception_kind": kind,
        "capacity": capacity,
        "presences": presences,
        "as_of": as_of,
    })
}

fn cas(facility: &str, comune: &str, presences: u32, as_of: &str) -> Value {
    report(facility, comune, "CAS", 1000, presences, as_of)
}

/// `(excluded, rule)` of each `quota.threshold` about `comune`, oldest first.
async fn thresholds(app: &TestApp, comune: &str) -> Vec<(bool, Option<String>)> {
    let rows: Vec<(Value,)> = sqlx::query_as(
        r#"
        SELECT payload
        FROM notifications
        WHERE kind = 'quota.threshold' AND comune_istat = $1
        ORDER BY created_at
        "#,
    )
    .bind(comune)
    .fetch_all(&app.pool)
    .await
    .expect("thresholds");
    rows.into_iter()
        .map(|(p,)| {
            (
                p["excluded"].as_bool().unwrap_or_default(),
                p["rule"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

/// Waits until `n` inbound events have been processed (bounded), then until all is quiet.
async fn wait_for_events(app: &TestApp, n: i64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let done: i64 = sqlx::query_scalar("SELECT count(*) FROM inbox")
            .fetch_one(&app.pool)
            .await
            .expect("inbox count");
        if done >= n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {done} of {n} events processed within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.settle().await;
}

fn recipients(mails: &[raccordo_smtp_sink::ReceivedMail]) -> BTreeSet<String> {
    mails.iter().flat_map(|m| m.to.iter().cloned()).collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn q2_q5_crossing_up_and_back_down_announces_once_each_way_to_all_three_recipients() {
    let app = spawn_app().await;
    // 23 of 47 is below half: nothing.
    app.publish(&app.event(
        "reception.occupancy.v1",
        cas("CAS-MEL-1", MELEGNANO, 23, "2026-11-01"),
    ))
    .await;
    wait_for_events(&app, 1, Duration::from_secs(20)).await;
    assert!(thresholds(&app, MELEGNANO).await.is_empty());

    // 24 of 47 reaches half: excluded, by the comune rule.
    let crossing = app.event(
        "reception.occupancy.v1",
        cas("CAS-MEL-1", MELEGNANO, 24, "2026-11-02"),
    );
    app.publish(&crossing).await;
    let mails = app.wait_for_emails(4).await;
    assert_eq!(
        recipients(&mails),
        set(&[SA_PREFETTURA, SA_SUD_EST, COMUNE_MELEGNANO, TAVOLO_SUD_EST])
    );
    assert_eq!(
        thresholds(&app, MELEGNANO).await,
        vec![(true, Some("comune".into()))]
    );
    let mail = &app.emails_of("quota.threshold")[0];
    let subject = mail.subject().unwrap_or_default();
    assert!(subject.contains("escluso dai bandi"), "{subject}");
    let text = mail.text_body().unwrap_or_default();
    assert!(
        text.contains("Quota assegnata al Comune: 47 posti"),
        "{text}"
    );
    assert!(text.contains("Copertura: 24"), "{text}");
    assert!(text.contains("51,1%"), "{text}");

    // The same event again, and a report that keeps it above: nothing.
    app.publish(&crossing).await;
    app.publish(&app.event(
        "reception.occupancy.v1",
        cas("CAS-MEL-1", MELEGNANO, 30, "2026-11-03"),
    ))
    .await;
    wait_for_events(&app, 3, Duration::from_secs(20)).await;
    assert_eq!(app.emails().len(), 4);

    // Back below half: included again, once.
    app.publish(&app.event(
        "reception.occupancy.v1",
        cas("CAS-MEL-1", MELEGNANO, 10, "2026-11-04"),
    ))
    .await;
    let mails = app.wait_for_emails(8).await;
    assert_eq!(recipients(&mails[4..]), recipients(&mails[..4]));
    assert_eq!(
        thresholds(&app, MELEGNANO).await,
        vec![(true, Some("comune".into())), (false, None)]
    );
    app.settle().await;
    assert_eq!(app.emails().len(), 8);
    assert!(
        app.emails_of("quota.threshold")
            .iter()
            .filter_map(|m| m.subject())
            .any(|s| s.contains("di nuovo incluso"))
    );
    app.cleanup().await;
}

#[tokio::test]
async fn q1_a_late_older_report_changes_nothing_and_alerts_nothing() {
    let app = spawn_app().await;
    app.publish(&app.event(
        "reception.occupancy.v1",
        cas("CAS-MEL-2", MELEGNANO, 30, "2026-11-10"),
    ))
    .await;
    app.wait_for_emails(4).await;

    // Older, arriving late: below half and over capacity — yet it changes and alerts nothing.
    app.publish(&app.event(
        "reception.occupancy.v1",
        report("CAS-MEL-2", MELEGNANO, "CAS", 5, 8, "2026-11-05"),
    ))
    .await;
    wait_for_events(&app, 2, Duration::from_secs(20)).await;
    assert_eq!(thresholds(&app, MELEGNANO).await.len(), 1);
    assert!(
        app.notifications("reception.over_capacity")
            .await
            .is_empty()
    );
    assert_eq!(app.emails().len(), 4);
    let report = raccordo::report_coverage::coverage(&app.settings, Some("Sud Est"))
        .await
        .expect("coverage");
    let melegnano = report
        .comuni()
        .find(|c| c.istat == MELEGNANO)
        .expect("Melegnano");
    assert_eq!(melegnano.coverage, 30);
    assert_eq!(melegnano.last_report.as_deref(), Some("2026-11-10"));

    // Same date, later arrival: it stands.
    app.publish(&app.event(
        "reception.occupancy.v1",
        cas("CAS-MEL-2", MELEGNANO, 3, "2026-11-10"),
    ))
    .await;
    app.wait_for_emails(8).await;
    assert_eq!(
        thresholds(&app, MELEGNANO).await,
        vec![(true, Some("comune".into())), (false, None)]
    );
    app.cleanup().await;
}

#[tokio::test]
async fn q4_a_full_zona_excludes_every_signatory_and_each_gets_its_announcement() {
    let app = spawn_app().await;
    // Nord Milano: 6 comuni, quota 724 in all. One CAS in Cinisello fills it.
    app.publish(&app.event(
        "reception.occupancy.v1",
        cas("CAS-CIN-1", CINISELLO, 724, "2026-11-01"),
    ))
    .await;
    // Cinisello by its own coverage, the five others by the zona rule: one announcement each,
    // to the stazione appaltante and the tavolo, and to Sesto's own referent.
    let mails = app.wait_for_emails(13).await;
    app.settle().await;
    assert_eq!(app.emails().len(), 13);
    let rows = app.notifications("quota.threshold").await;
    assert_eq!(rows.len(), 6);
    assert_eq!(
        thresholds(&app, CINISELLO).await,
        vec![(true, Some("comune".into()))]
    );
    assert_eq!(
        thresholds(&app, SESTO).await,
        vec![(true, Some("zona".into()))]
    );
    let to_tavolo = mails
        .iter()
        .filter(|m| m.to.iter().any(|t| t == TAVOLO_NORD_MILANO))
        .count();
    assert_eq!(to_tavolo, 6);
    assert!(mails.iter().any(|m| m.to.iter().any(|t| t == COMUNE_SESTO)));
    let sesto_text = app
        .emails()
        .iter()
        .filter(|m| m.to.iter().any(|t| t == COMUNE_SESTO))
        .filter_map(|m| m.text_body())
        .next()
        .unwrap_or_default();
    assert!(sesto_text.contains("art. 3, comma 2"), "{sesto_text}");

    // The zona falls short again: the five go back, Cinisello stays excluded by its own rule.
    app.publish(&app.event(
        "reception.occupancy.v1",
        cas("CAS-CIN-1", CINISELLO, 700, "2026-11-02"),
    ))
    .await;
    app.wait_for_emails(13 + 11).await;
    app.settle().await;
    assert_eq!(app.notifications("quota.threshold").await.len(), 11);
    assert_eq!(thresholds(&app, CINISELLO).await.len(), 1);
    assert_eq!(
        thresholds(&app, SESTO).await,
        vec![(true, Some("zona".into())), (false, None)]
    );
    app.cleanup().await;
}

#[tokio::test]
async fn q6_over_capacity_alerts_the_prefettura_once_per_report_that_shows_it() {
    let app = spawn_app().await;
    let over = app.event(
        "reception.occupancy.v1",
        report("CAS-MI-9", MILANO, "CAS", 10, 12, "2026-11-01"),
    );
    app.publish(&over).await;
    let mails = app.wait_for_emails(1).await;
    assert_eq!(recipients(&mails), set(&[PREFETTURA]));
    let text = mails[0].text_body().unwrap_or_default();
    assert!(text.contains("Presenze: 12"), "{text}");
    assert!(text.contains("Eccedenza: 2"), "{text}");

    app.publish(&over).await; // redelivered: the same report
    app.publish(&app.event(
        "reception.occupancy.v1",
        report("CAS-MI-9", MILANO, "CAS", 10, 10, "2026-11-02"),
    ))
    .await;
    app.publish(&app.event(
        "reception.occupancy.v1",
        report("CAS-MI-9", MILANO, "CAS", 10, 13, "2026-11-03"),
    ))
    .await;
    app.wait_for_emails(2).await;
    wait_for_events(&app, 3, Duration::from_secs(20)).await;
    assert_eq!(app.notifications("reception.over_capacity").await.len(), 2);
    assert_eq!(app.emails().len(), 2);
    app.cleanup().await;
}

#[tokio::test]
async fn salvaguardia_entering_and_leaving_tell_the_stazione_appaltante_once_each() {
    let app = spawn_app().await;
    let sprar = |active: bool, as_of: &str| {
        json!({
            "facility_id": "SPRAR-SCL-1", "comune_istat": SAN_COLOMBANO,
            "reception_kind": "SPRAR", "capacity": 4, "presences": 3,
            "as_of": as_of, "active": active,
        })
    };
    app.publish(&app.event("reception.occupancy.v1", sprar(true, "2026-11-01")))
        .await;
    let mails = app.wait_for_emails(2).await;
    assert_eq!(recipients(&mails), set(&[SA_PREFETTURA, SA_SUD_EST]));
    assert!(
        mails[0]
            .subject()
            .unwrap_or_default()
            .contains("Clausola di salvaguardia")
    );
    app.publish(&app.event("reception.occupancy.v1", sprar(true, "2026-11-02")))
        .await;
    wait_for_events(&app, 2, Duration::from_secs(20)).await;
    assert_eq!(app.emails().len(), 2);

    app.publish(&app.event("reception.occupancy.v1", sprar(false, "2026-11-03")))
        .await;
    app.wait_for_emails(4).await;
    app.settle().await;
    let rows: Vec<(Value,)> = sqlx::query_as(
        "SELECT payload FROM notifications WHERE kind = 'quota.safeguard' ORDER BY created_at",
    )
    .fetch_all(&app.pool)
    .await
    .expect("safeguard rows");
    let entered: Vec<bool> = rows
        .iter()
        .map(|(p,)| p["entered"].as_bool().unwrap_or_default())
        .collect();
    assert_eq!(entered, vec![true, false]);
    // 4 active SPRAR places of 21 never reached half: no threshold.
    assert!(thresholds(&app, SAN_COLOMBANO).await.is_empty());
    let report = raccordo::report_coverage::coverage(&app.settings, Some("Sud Est"))
        .await
        .expect("coverage");
    let scl = report
        .comuni()
        .find(|c| c.istat == SAN_COLOMBANO)
        .expect("San Colombano");
    assert!(!scl.safeguard);
    assert_eq!(scl.coverage, 0);
    app.cleanup().await;
}

#[tokio::test]
async fn q7_the_monthly_report_gives_the_prefettura_all_and_each_tavolo_its_zona() {
    let app = spawn_app().await;
    app.publish(&app.event(
        "reception.occupancy.v1",
        cas("CAS-MEL-3", MELEGNANO, 24, "2026-10-20"),
    ))
    .await;
    app.publish(&app.event(
        "reception.occupancy.v1",
        json!({
            "facility_id": "SPRAR-COL-1", "comune_istat": COLTURANO,
            "reception_kind": "SPRAR", "capacity": 2, "presences": 2, "as_of": "2026-10-30",
        }),
    ))
    .await;
    // Melegnano's threshold (4) and Colturano's salvaguardia (2).
    app.wait_for_emails(6).await;
    app.settle().await;

    // The JSON of `report coverage` (CONTRACT §8), through the real binary.
    let output = app
        .command()
        .args([
            "report", "coverage", "--zona", "Sud Est", "--format", "json",
        ])
        .output()
        .await
        .expect("raccordo runs");
    assert!(output.status.success(), "{output:?}");
    let comuni: Vec<Value> = serde_json::from_slice(&output.stdout).expect("a JSON array");
    assert_eq!(comuni.len(), 15);
    let by_istat: BTreeMap<&str, &Value> = comuni
        .iter()
        .map(|c| (c["istat"].as_str().unwrap_or_default(), c))
        .collect();
    let m = by_istat[MELEGNANO];
    assert_eq!(m["nome"], "Melegnano");
    assert_eq!(m["zona"], "Sud Est");
    assert_eq!(m["quota"], 47);
    assert_eq!(m["coverage"], 24);
    assert!((m["ratio"].as_f64().unwrap_or_default() - 24.0 / 47.0).abs() < 1e-9);
    assert_eq!(m["excluded"], true);
    assert_eq!(m["rule"], "comune");
    assert_eq!(m["last_report"], "2026-10-20");
    let c = by_istat[COLTURANO];
    assert_eq!(
        (c["quota"].clone(), c["coverage"].clone()),
        (json!(6), json!(2))
    );
    assert_eq!(c["excluded"], false);
    assert_eq!(c["rule"], Value::Null);
    assert_eq!(c["safeguard"], true);
    assert_eq!(c["flagged"], true);

    // --send: the whole report to the unscoped prefettura, each zona's part to its tavolo.
    let (sent, published) = raccordo::report_coverage::send(&app.settings, None)
        .await
        .expect("send");
    assert!(published.is_published(), "{}", published.describe());
    assert_eq!(sent.notifications.len(), 1 + 8);
    assert_eq!(sent.undeliverable, 0);
    app.wait_for_emails(6 + 9).await;
    app.settle().await;
    let reports = app.emails_of("quota.monthly_report");
    assert_eq!(reports.len(), 9);
    let body_for = |to: &str| {
        reports
            .iter()
            .find(|m| m.to.iter().any(|t| t == to))
            .and_then(|m| m.text_body())
            .unwrap_or_default()
    };
    let whole = body_for(PREFETTURA);
    assert!(whole.contains("ZONA OMOGENEA SUD EST"), "{whole}");
    assert!(whole.contains("ZONA OMOGENEA ALTO MILANESE"), "{whole}");
    let sud_est = body_for(TAVOLO_SUD_EST);
    assert!(
        sud_est
            .contains("- Melegnano: 24 su 47 (51,1%) — escluso dai bandi (copertura del Comune)"),
        "{sud_est}"
    );
    assert!(sud_est.contains("- Colturano: 2 su 6 (33,3%) — incluso nei bandi; clausola di salvaguardia; SOTTO LA SOGLIA"), "{sud_est}");
    assert!(
        !sud_est.contains("ALTO MILANESE"),
        "a tavolo gets its own zona only"
    );
    let html = reports
        .iter()
        .find(|m| m.to.iter().any(|t| t == TAVOLO_SUD_EST))
        .and_then(|m| m.html_body())
        .unwrap_or_default();
    assert!(html.contains("width:51%"), "a coverage bar per comune");
    app.cleanup().await;
}

#[tokio::test]
async fn q7_the_monthly_job_runs_once_per_month_across_replicas() {
    use raccordo_core::clock::YearMonth;
    use raccordo_core::schedule::{RunOutcome, run_once};
    use raccordo_quota::MonthlyVerification;

    let app = spawn_app().await;
    let job = MonthlyVerification::new(&app.settings.quota);
    // The running hub recorded last month as its starting point (no report for months it
    // did not witness); an earlier month shows run_once itself.
    let month = YearMonth::parse("2026-09").expect("a month");
    // The hub's own scheduler takes the job's lock at start: while it holds it, both calls
    // are Busy, and the pair is tried again.
    let mut outcomes = [RunOutcome::Busy, RunOutcome::Busy];
    for _ in 0..100 {
        let (first, second) = tokio::join!(
            run_once(&app.pool, &job, month),
            run_once(&app.pool, &job, month)
        );
        outcomes = [first.expect("runs"), second.expect("runs")];
        if outcomes != [RunOutcome::Busy, RunOutcome::Busy] {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    outcomes.sort_by_key(|o| *o != RunOutcome::Ran);
    assert_eq!(outcomes[0], RunOutcome::Ran, "{outcomes:?}");
    assert_ne!(outcomes[1], RunOutcome::Ran, "{outcomes:?}");
    assert_eq!(
        run_once(&app.pool, &job, month).await.expect("runs"),
        RunOutcome::AlreadyDone
    );
    let mails = app.wait_for_emails(9).await;
    app.settle().await;
    assert_eq!(app.emails().len(), 9);
    assert!(
        mails
            .iter()
            .filter_map(|m| m.subject())
            .all(|s| s.contains("settembre 2026"))
    );
    app.cleanup().await;
}

/// Several workers on separate connections (two hubs on one prefix and database, 4 consumers
/// each) and thousands of interleaved reports: exactly one announcement per change of state.
/// Within a phase every facility's presences only grow (or only shrink) with `as_of`, and
/// reports arrive shuffled: whatever the interleaving, each comune's state — and the zona
/// rule's — changes exactly once per phase, so exactly one `quota.threshold` per comune.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_workers_announce_each_change_exactly_once() {
    const FACILITIES: usize = 4;
    const STEPS: u32 = 25;
    const PHASES: usize = 6;
    let comuni = [MELEGNANO, SAN_COLOMBANO, PAULLO, MEDIGLIA, CINISELLO, SESTO];
    // Every comune of Sud Est (15) and Nord Milano (6) flips, by its own or the zona rule.
    const AFFECTED: usize = 15 + 6;

    let app = spawn_app_with(|s| {
        s.amqp.consumers = 4;
        s.amqp.prefetch = 8;
        s.database.max_connections = 12;
    })
    .await;
    let second = App::start(app.settings.clone(), Workers::Quota)
        .await
        .expect("a second hub starts");
    second
        .wait_ready(Duration::from_secs(20))
        .await
        .expect("the second hub consumes");

    let started = Instant::now();
    let mut published = 0i64;
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for phase in 0..PHASES {
        let up = phase % 2 == 0;
        let mut events = Vec::new();
        for comune in comuni {
            for f in 0..FACILITIES {
                for step in 1..=STEPS {
                    let level = if up { step } else { STEPS - step };
                    let day = phase as u32 * STEPS + step;
                    let as_of = format!("2027-{:02}-{:02}", 1 + day / 28, 1 + day % 28);
                    events.push(app.event(
                        "reception.occupancy.v1",
                        cas(&format!("CAS-{comune}-{f}"), comune, 5 * level, &as_of),
                    ));
                }
            }
        }
        // Fisher–Yates with a fixed xorshift: interleaved, and reproducible.
        for i in (1..events.len()).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            events.swap(i, (seed % (i as u64 + 1)) as usize);
        }
        for e in &events {
            app.publish(e).await;
        }
        published += events.len() as i64;
        wait_for_events(&app, published, Duration::from_secs(60)).await;

        let all = app.notifications("quota.threshold").await;
        assert_eq!(all.len(), AFFECTED * (phase + 1), "phase {phase}");
        let mut per_comune: BTreeMap<String, usize> = BTreeMap::new();
        for (_, comune, _) in &all {
            *per_comune
                .entry(comune.clone().unwrap_or_default())
                .or_default() += 1;
        }
        assert_eq!(per_comune.len(), AFFECTED);
        assert!(
            per_comune.values().all(|n| *n == phase + 1),
            "{per_comune:?}"
        );
        for comune in comuni {
            let history = thresholds(&app, comune).await;
            let expected: Vec<bool> = (0..=phase).map(|p| p % 2 == 0).collect();
            let got: Vec<bool> = history.iter().map(|(e, _)| *e).collect();
            assert_eq!(got, expected, "{comune}");
        }
    }
    let elapsed = started.elapsed();
    eprintln!(
        "concurrency: {published} reports, 8 consumers on 2 hubs, {:.1} s",
        elapsed.as_secs_f64()
    );
    assert!(app.dead_letters().await.is_empty());
    assert!(app.parked().await.is_empty());
    assert!(second.shutdown(Duration::from_secs(10)).await);
    app.cleanup().await;
}

#[tokio::test]
async fn a_batch_of_one_zonas_reports_announces_what_they_would_one_by_one() {
    // One consumer, reports published while it is stopped: they arrive as one batch, all of
    // zona Sud Est, and are decided together.
    let mut app = raccordo_e2e::prepare_with(|s| {
        s.amqp.consumers = 1;
        s.amqp.prefetch = 16;
    })
    .await
    .start(Workers::All)
    .await;
    app.stop_workers().await;
    for data in [
        cas("CAS-A", MELEGNANO, 10, "2026-11-01"),
        // 24 of 47: excluded.
        cas("CAS-B", MELEGNANO, 14, "2026-11-01"),
        // Q1: older than what CAS-A reported; changes nothing.
        cas("CAS-A", MELEGNANO, 5, "2026-10-30"),
        // 34 of 47: still excluded, nothing said.
        cas("CAS-A", MELEGNANO, 20, "2026-11-02"),
        // Q6: more presences than places.
        report("CAS-C", PAULLO, "CAS", 8, 9, "2026-11-02"),
        // 20 of 47: included again.
        cas("CAS-B", MELEGNANO, 0, "2026-11-03"),
    ] {
        app.publish(&app.event("reception.occupancy.v1", data))
            .await;
    }
    let app = app.start(Workers::All).await;
    wait_for_events(&app, 6, Duration::from_secs(20)).await;
    assert_eq!(
        thresholds(&app, MELEGNANO).await,
        vec![(true, Some("comune".into())), (false, None)]
    );
    assert_eq!(app.notifications("reception.over_capacity").await.len(), 1);
    let coverage: i32 =
        sqlx::query_scalar("SELECT coverage FROM quota_state WHERE comune_istat = $1")
            .bind(MELEGNANO)
            .fetch_one(&app.pool)
            .await
            .expect("state");
    assert_eq!(coverage, 20);
    let presences: i32 = sqlx::query_scalar(
        "SELECT presences FROM reception_facilities WHERE facility_id = 'CAS-A'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("facility");
    assert_eq!(
        presences, 20,
        "the older report did not overwrite the newer"
    );
    assert!(app.dead_letters().await.is_empty());
    app.cleanup().await;
}

//! Pronta accoglienza (CONTRACT A1, A2) end to end: a desk's report of a suspected
//! vulnerability reaches the social services of the comune and of its ambito and the desk
//! with the nearest facilities with free places; the person's data only with consent and
//! only to the social services; the 12-hour clock, stopped by an intervention or an
//! acknowledgement, sends one `asylum.intervention_overdue` across replicas.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use raccordo_asylum::pronta::overdue::{Pass, run_pass};
use raccordo_e2e::{TestApp, prepare_with, spawn_app_with};
use raccordo_smtp_sink::ReceivedMail;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::console::{request, spawn_console_with};

const RHO: &str = "015182";
const DESK: &str = "sportello-rho";
const DESK_EMAIL: &str = "sportello.rho@asilo.mi.example";
const SS_RHO: &str = "servizisociali@comune.rho.example";
const SS_AMBITO_RHO: &str = "ufficiodipiano@ambito.rho.example";
const PREFETTURA: &str = "coordinamento@prefettura.mi.example";
const TAVOLO_ASILO: &str = "tavolo.asilo@cittametropolitana.mi.example";
const TAVOLO_ZONA: &str = "tavolo.nordovest@cittametropolitana.mi.example";
const SS_UNSCOPED: &str = "welfare@regione.example";
const SS_ZONA: &str = "welfare.nordovest@cittametropolitana.mi.example";
const PUBLIC_URL: &str = "https://raccordo.cittametropolitana.mi.example";
const ACK_KEY: &str = "a-test-ack-key-of-at-least-thirty-two-bytes";

/// The desks, the Tavolo provinciale asilo, and two social services that must never get
/// a person's data: one unscoped, one for the whole zona.
async fn import_asylum_referents(app: &TestApp) {
    let root = raccordo_e2e::workspace_root();
    let mut csv = std::fs::read_to_string(root.join("data/demo/referents_asylum.csv"))
        .expect("data/demo/referents_asylum.csv");
    if !csv.ends_with('\n') {
        csv.push('\n');
    }
    csv.push_str(&format!(
        "ss-regione,Regione - Welfare,servizi_sociali,{SS_UNSCOPED},,,,\n\
         ss-zona-no,Zona Nord Ovest - Welfare,servizi_sociali,{SS_ZONA},,,,Nord Ovest\n"
    ));
    let report = raccordo_core::registry::import_referents(
        &app.pool,
        csv.as_bytes(),
        &raccordo_core::registry::Actor::import("asylum test"),
    )
    .await
    .expect("referents import");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
}

/// Facilities around Rho, as occupancy reports left them: the expected five, nearest first,
/// are RHO-CAS (the comune), PERO-SPRAR, ARESE-CAS (the ambito), BOLLATE-SPRAR (the zona),
/// MI-CAS-1 (elsewhere, with more free places than Legnano).
async fn insert_facilities(app: &TestApp) {
    for (id, comune, kind, capacity, presences, active) in [
        ("RHO-FULL", RHO, "CAS", 10, 10, true),
        ("RHO-CAS", RHO, "CAS", 10, 8, true),
        ("RHO-SPRAR-OFF", RHO, "SPRAR", 10, 0, false),
        ("PERO-SPRAR", "015170", "SPRAR", 6, 3, true),
        ("ARESE-CAS", "015009", "CAS", 5, 4, true),
        ("BOLLATE-SPRAR", "015027", "SPRAR", 20, 10, true),
        ("LEG-SPRAR", "015118", "SPRAR", 20, 12, true),
        ("MI-CAS-1", "015146", "CAS", 100, 50, true),
        ("MI-CAS-2", "015146", "CAS", 30, 29, true),
    ] {
        sqlx::query(
            r#"
            INSERT INTO reception_facilities
                (facility_id, comune_istat, reception_kind, capacity, presences, as_of, active)
            VALUES ($1, $2, $3, $4, $5, CURRENT_DATE, $6)
            "#,
        )
        .bind(id)
        .bind(comune)
        .bind(kind)
        .bind(capacity)
        .bind(presences)
        .bind(active)
        .execute(&app.pool)
        .await
        .expect("a facility");
    }
}

async fn asylum_app(configure: impl FnOnce(&mut raccordo_core::settings::Settings)) -> TestApp {
    let app = spawn_app_with(configure).await;
    import_asylum_referents(&app).await;
    insert_facilities(&app).await;
    app
}

/// Now, to the second: what survives a round trip through RFC 3339 and PostgreSQL.
fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("zero nanoseconds")
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).expect("formattable")
}

/// A person who says who they are, so that a leak can be found.
fn person(tag: &str) -> Value {
    json!({
        "name": format!("Wombatina {tag}leak"),
        "birth_year": 1999,
        "nationality": "Xandriana",
        "languages": ["francese", "kappese"],
        "phone": "+39 348 5550199",
        "notes": format!("Nota riservata {tag}zorbl"),
    })
}

fn report(case_id: &str, consent: bool, reported_at: OffsetDateTime) -> Value {
    json!({
        "case_id": case_id,
        "desk": DESK,
        "comune_istat": RHO,
        "categories": ["rischio_tratta", "salute"],
        "reported_at": rfc3339(reported_at),
        "consent": consent,
        "person": person(if consent { "Si" } else { "No" }),
    })
}

fn intervention(case_id: &str, action: &str, at: OffsetDateTime) -> Value {
    json!({"case_id": case_id, "action": action, "at": rfc3339(at), "by": "Servizi sociali di Rho"})
}

fn text(m: &ReceivedMail) -> String {
    format!(
        "{}\n{}\n{}",
        m.subject().unwrap_or_default(),
        m.text_body().unwrap_or_default(),
        m.html_body().unwrap_or_default()
    )
}

fn recipients(mails: &[ReceivedMail]) -> BTreeSet<String> {
    mails.iter().flat_map(|m| m.to.clone()).collect()
}

fn set(addresses: &[&str]) -> BTreeSet<String> {
    addresses.iter().map(|a| (*a).to_owned()).collect()
}

async fn due_at(app: &TestApp, case_id: &str) -> OffsetDateTime {
    let key = raccordo_core::pseudonym::case_pseudonym(&app.settings.eviction, case_id);
    sqlx::query_scalar("SELECT due_at FROM asylum_cases WHERE case_key = $1")
        .bind(key)
        .fetch_one(&app.pool)
        .await
        .expect("the case and its clock")
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&app.pool)
        .await
        .expect("count query")
}

#[tokio::test]
async fn a1_a_report_reaches_the_comune_and_ambito_social_services_and_the_desk_with_the_five_nearest_facilities()
 {
    let app = asylum_app(|_| {}).await;
    let now = now();
    app.publish(&app.event(
        "asylum.vulnerability.v1",
        report("SP-RHO-2026-0042", true, now),
    ))
    .await;
    app.wait_for_emails(3).await;
    app.settle().await;

    let mails = app.emails_of("asylum.pronta_accoglienza");
    assert_eq!(
        recipients(&mails),
        set(&[SS_RHO, SS_AMBITO_RHO, DESK_EMAIL]),
        "the comune's and the ambito's social services and the desk, nobody else"
    );
    let notifications = app.notifications("asylum.pronta_accoglienza").await;
    assert_eq!(notifications.len(), 1, "one notification, one id for all");
    let ids: BTreeSet<_> = mails
        .iter()
        .filter_map(|m| m.header("X-Raccordo-Notification"))
        .collect();
    assert_eq!(ids.len(), 1);

    // Nearest first, at most five, only free places of active facilities.
    let listed: Vec<String> = sqlx::query_scalar(
        r#"
        SELECT f ->> 'facility_id'
        FROM notifications, jsonb_array_elements(payload -> 'facilities') WITH ORDINALITY AS x (f, n)
        WHERE kind = 'asylum.pronta_accoglienza'
        ORDER BY n
        "#,
    )
    .fetch_all(&app.pool)
    .await
    .expect("the listed facilities");
    assert_eq!(
        listed,
        [
            "RHO-CAS",
            "PERO-SPRAR",
            "ARESE-CAS",
            "BOLLATE-SPRAR",
            "MI-CAS-1"
        ]
    );
    for m in &mails {
        let body = m.text_body().unwrap_or_default();
        let at = |id: &str| body.find(id).unwrap_or_else(|| panic!("{id} in {body}"));
        assert!(at("RHO-CAS") < at("PERO-SPRAR") && at("BOLLATE-SPRAR") < at("MI-CAS-1"));
        for absent in ["RHO-FULL", "RHO-SPRAR-OFF", "MI-CAS-2", "LEG-SPRAR"] {
            assert!(!body.contains(absent), "{absent} listed");
        }
        let subject = m.subject().unwrap_or_default();
        assert!(
            subject.starts_with("[URGENTE] Pronta accoglienza a Rho"),
            "{subject}"
        );
        for word in ["tratta", "salute", "Wombatina", "SP-RHO", "Xandriana"] {
            assert!(!subject.contains(word), "{word} in the subject {subject:?}");
        }
        assert!(body.contains("possibile vittima di tratta"), "{body}");
    }

    // The person, with consent: to the social services only; never the clear case number.
    for m in &mails {
        let all = text(m);
        assert!(!all.contains("SP-RHO-2026-0042"));
        let to_desk = m.to.contains(&DESK_EMAIL.to_owned());
        assert_eq!(all.contains("Wombatina Sileak"), !to_desk, "{:?}", m.to);
        assert_eq!(all.contains("+39 348 5550199"), !to_desk, "{:?}", m.to);
    }
    assert_eq!(count(&app, "SELECT count(*) FROM asylum_personal").await, 1);
    app.cleanup().await;
}

#[tokio::test]
async fn a1_without_consent_the_person_reaches_nobody_and_is_not_stored() {
    let app = asylum_app(|_| {}).await;
    app.publish(&app.event(
        "asylum.vulnerability.v1",
        report("SP-RHO-2026-0043", false, now()),
    ))
    .await;
    app.wait_for_emails(3).await;
    app.settle().await;
    let mails = app.emails_of("asylum.pronta_accoglienza");
    assert_eq!(
        recipients(&mails),
        set(&[SS_RHO, SS_AMBITO_RHO, DESK_EMAIL])
    );
    for m in &mails {
        let all = text(m);
        for s in [
            "Wombatina",
            "Xandriana",
            "5550199",
            "zorbl",
            "SP-RHO-2026-0043",
        ] {
            assert!(!all.contains(s), "{s} reached {:?}", m.to);
        }
    }
    let social = mails
        .iter()
        .find(|m| m.to.contains(&SS_RHO.to_owned()))
        .expect("the comune's social services");
    assert!(
        social
            .text_body()
            .unwrap_or_default()
            .contains("non ha acconsentito")
    );
    assert_eq!(count(&app, "SELECT count(*) FROM asylum_personal").await, 0);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM notifications WHERE payload::text LIKE '%Wombatina%'"
        )
        .await,
        0
    );
    app.cleanup().await;
}

#[tokio::test]
async fn a2_no_intervention_in_time_sends_one_overdue_notice_across_two_replicas_by_an_injected_clock()
 {
    let app = asylum_app(|_| {}).await;
    let reported = now() - time::Duration::minutes(5);
    app.publish(&app.event(
        "asylum.vulnerability.v1",
        report("SP-RHO-2026-0044", true, reported),
    ))
    .await;
    app.wait_for_emails(3).await;
    app.settle().await;
    let due = due_at(&app, "SP-RHO-2026-0044").await;
    assert_eq!(
        due,
        reported + time::Duration::hours(12),
        "12 hours from the report"
    );
    let settings = app.settings.asylum.clone();

    // A second before the deadline: nothing.
    let early = run_pass(&app.pool, &settings, due - time::Duration::seconds(1))
        .await
        .expect("a pass");
    assert_eq!(early, Pass::default());

    // Two replicas at once, a second after: one notice.
    let late = due + time::Duration::seconds(1);
    let (a, b) = futures_lite::future::zip(
        run_pass(&app.pool, &settings, late),
        run_pass(&app.pool, &settings, late),
    )
    .await;
    let (a, b) = (a.expect("a pass"), b.expect("a pass"));
    assert_eq!(a.overdue + b.overdue, 1, "{a:?} {b:?}");
    // And again, later: nothing more.
    let again = run_pass(&app.pool, &settings, late + time::Duration::hours(1))
        .await
        .expect("a pass");
    assert_eq!(again, Pass::default());
    app.wait_for_emails(7).await;
    app.settle().await;
    assert_eq!(
        app.notifications("asylum.intervention_overdue").await.len(),
        1
    );
    let overdue = app.emails_of("asylum.intervention_overdue");
    assert_eq!(
        recipients(&overdue),
        set(&[PREFETTURA, TAVOLO_ASILO, SS_RHO, SS_AMBITO_RHO]),
        "the Prefettura, the provincial Tavolo (not a zona's) and the same social services"
    );
    for m in &overdue {
        let all = text(m);
        for s in [
            "Wombatina",
            "5550199",
            "zorbl",
            "SP-RHO-2026-0044",
            "tratta",
        ] {
            assert!(!all.contains(s), "{s} in the overdue notice to {:?}", m.to);
        }
        assert!(all.contains("12 ore"), "{all}");
    }
    assert!(recipients(&overdue).is_disjoint(&set(&[
        TAVOLO_ZONA,
        SS_UNSCOPED,
        SS_ZONA,
        DESK_EMAIL
    ])));
    app.cleanup().await;
}

#[tokio::test]
async fn a2_a_presa_in_carico_or_primo_intervento_in_time_stops_the_clock_and_a_late_one_does_not()
{
    let app = asylum_app(|_| {}).await;
    let reported = now() - time::Duration::minutes(5);
    // In time, after the report; in time, published before the report; only late.
    let cases = [
        (
            "SP-RHO-A2-TAKEN",
            "presa_in_carico",
            time::Duration::hours(1),
            false,
        ),
        (
            "SP-RHO-A2-FIRST",
            "primo_intervento",
            time::Duration::hours(11),
            true,
        ),
        (
            "SP-RHO-A2-LATE",
            "primo_intervento",
            time::Duration::hours(13),
            false,
        ),
        (
            "SP-RHO-A2-CLOSED",
            "chiuso",
            time::Duration::hours(1),
            false,
        ),
    ];
    for (case, action, after, before_report) in cases {
        let reported_event = app.event("asylum.vulnerability.v1", report(case, false, reported));
        let intervention = app.event(
            "asylum.intervention.v1",
            intervention(case, action, reported + after),
        );
        if before_report {
            app.publish(&intervention).await;
            app.settle().await;
            app.publish(&reported_event).await;
        } else {
            app.publish(&reported_event).await;
            app.settle().await;
            app.publish(&intervention).await;
        }
    }
    app.wait_for_emails(12).await;
    app.settle().await;
    let pass = run_pass(
        &app.pool,
        &app.settings.asylum,
        reported + time::Duration::hours(14),
    )
    .await
    .expect("a pass");
    assert_eq!(
        pass.overdue, 2,
        "the late intervention and the closed case: {pass:?}"
    );
    let overdue: Vec<String> = sqlx::query_scalar(
        "SELECT case_key FROM asylum_cases WHERE overdue_at IS NOT NULL ORDER BY case_key",
    )
    .fetch_all(&app.pool)
    .await
    .expect("overdue cases");
    let key = |c: &str| raccordo_core::pseudonym::case_pseudonym(&app.settings.eviction, c);
    let mut expected = vec![key("SP-RHO-A2-LATE"), key("SP-RHO-A2-CLOSED")];
    expected.sort();
    assert_eq!(overdue, expected);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM asylum_cases WHERE clock_stopped_at IS NOT NULL"
        )
        .await,
        2
    );
    app.cleanup().await;
}

/// The path of the acknowledgement link in an email's text, if it has one.
fn ack_path(mail: &ReceivedMail) -> Option<String> {
    let text = mail.text_body()?;
    let prefix = format!("{PUBLIC_URL}/ack/");
    text.lines()
        .find_map(|l| l.trim().strip_prefix(&prefix))
        .map(|token| format!("/ack/{token}"))
}

#[tokio::test]
async fn a2_an_acknowledgement_in_time_stops_the_clock() {
    let (app, addr) = spawn_console_with(|s| {
        s.console.public_url = PUBLIC_URL.into();
        s.ack.key = ACK_KEY.to_owned().into();
    })
    .await;
    import_asylum_referents(&app).await;
    let reported = now() - time::Duration::minutes(1);
    for case in ["SP-RHO-ACK-1", "SP-RHO-ACK-2"] {
        app.publish(&app.event("asylum.vulnerability.v1", report(case, true, reported)))
            .await;
    }
    app.wait_for_emails(6).await;
    app.settle().await;
    let acked = app.smtp.mails().into_iter().find(|m| {
        m.to.contains(&SS_AMBITO_RHO.to_owned())
            && text(m).contains(&raccordo_core::pseudonym::case_pseudonym(
                &app.settings.eviction,
                "SP-RHO-ACK-1",
            ))
    });
    let acked = acked.expect("the ambito's notice of the first case");
    let path = ack_path(&acked).expect("a pronta accoglienza carries an acknowledgement link");
    let response = request(addr, "POST", &path, None, Some("")).await;
    assert_eq!(response.status, 200, "{}", response.body);

    let due = due_at(&app, "SP-RHO-ACK-1").await;
    let pass = run_pass(
        &app.pool,
        &app.settings.asylum,
        due + time::Duration::seconds(1),
    )
    .await
    .expect("a pass");
    assert_eq!(
        pass,
        Pass {
            overdue: 1,
            stopped: 1
        }
    );
    let stopped: Vec<String> =
        sqlx::query_scalar("SELECT case_key FROM asylum_cases WHERE clock_stopped_at IS NOT NULL")
            .fetch_all(&app.pool)
            .await
            .expect("stopped clocks");
    assert_eq!(
        stopped,
        [raccordo_core::pseudonym::case_pseudonym(
            &app.settings.eviction,
            "SP-RHO-ACK-1"
        )]
    );
    app.cleanup().await;
}

#[tokio::test]
async fn a2_the_hubs_own_clock_sends_the_overdue_notice_once_with_decimal_hours() {
    // 0.002 hours is 7.2 seconds; the clock is checked every 2.
    let app = asylum_app(|s| s.asylum.first_intervention_hours = 0.002).await;
    app.publish(&app.event(
        "asylum.vulnerability.v1",
        report("SP-RHO-2026-0045", false, now()),
    ))
    .await;
    app.wait_for_emails(7).await;
    app.settle().await;
    assert_eq!(
        app.notifications("asylum.intervention_overdue").await.len(),
        1
    );
    assert_eq!(app.emails_of("asylum.intervention_overdue").len(), 4);
    app.cleanup().await;
}

/// Every message on every queue of the test's prefix, returned to its queue afterwards.
async fn queue_contents(app: &TestApp) -> Vec<(String, String)> {
    use lapin::options::BasicGetOptions;
    let connection = raccordo_core::amqp::connect(&app.settings.amqp, "browse")
        .await
        .expect("connects");
    let mut out = Vec::new();
    for name in app.topology.all_queues() {
        let channel = connection.create_channel().await.expect("a channel");
        while let Ok(Some(msg)) = channel
            .basic_get(name.clone().into(), BasicGetOptions { no_ack: false })
            .await
        {
            out.push((
                name.clone(),
                format!(
                    "{} {:?}",
                    String::from_utf8_lossy(&msg.delivery.data),
                    msg.delivery.properties
                ),
            ));
        }
        let _ = channel.close(200, "browsed".into()).await;
    }
    let _ = connection.close(200, "browsed".into()).await;
    out
}

fn assert_absent(place: &str, haystack: &str, strings: &[&str]) {
    for s in strings {
        assert!(
            !haystack.contains(s),
            "{s:?} leaked into {place}: …{}…",
            haystack
                .find(s)
                .map(|i| &haystack[i.saturating_sub(200)..(i + 200).min(haystack.len())])
                .unwrap_or_default()
        );
    }
}

#[tokio::test]
async fn leak_test_a_persons_data_is_nowhere_but_the_consented_social_services_emails() {
    let app = prepare_with(|s| s.asylum.first_intervention_hours = 0.001).await;
    import_asylum_referents(&app).await;
    insert_facilities(&app).await;
    let log_path = std::env::temp_dir().join(format!(
        "raccordo-asylum-leak-{}.log",
        app.settings.amqp.prefix
    ));
    let mut child = app
        .command()
        .args(["serve", "all"])
        .env("RUST_LOG", "debug")
        .env("RACCORDO__ASYLUM__FIRST_INTERVENTION_HOURS", "0.001")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).expect("log file"))
        .kill_on_drop(true)
        .spawn()
        .expect("raccordo serve starts");
    let now = now();
    app.publish(&app.event(
        "asylum.vulnerability.v1",
        report("SP-LEAK-CONSENT-77", true, now),
    ))
    .await;
    app.publish(&app.event(
        "asylum.vulnerability.v1",
        report("SP-LEAK-REFUSED-78", false, now),
    ))
    .await;
    app.publish(&app.event(
        "asylum.intervention.v1",
        intervention("SP-LEAK-CONSENT-77", "chiuso", now),
    ))
    .await;
    // Two notices of three, then two overdue of four (3.6 s later).
    app.wait_for_emails(14).await;
    app.settle().await;
    let queues = queue_contents(&app).await;
    if let Some(pid) = child.id() {
        let _ = tokio::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    let logs = std::fs::read_to_string(&log_path).expect("the hub's log");
    let db = app
        .settings
        .database
        .database_name()
        .expect("a database name");
    let dump = tokio::process::Command::new("pg_dump")
        .args(["-h", "127.0.0.1", "-U", "postgres", &db])
        .output()
        .await
        .expect("pg_dump runs");
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dump = String::from_utf8_lossy(&dump.stdout).into_owned();

    // The scan covers something real.
    assert!(
        logs.contains("Pronta accoglienza requested."),
        "debug lines captured"
    );
    assert!(dump.contains("COPY public.asylum_cases"));
    assert_eq!(
        app.notifications("asylum.intervention_overdue").await.len(),
        2
    );

    let case_numbers = [
        "SP-LEAK-CONSENT-77",
        "SP-LEAK-REFUSED-78",
        "LEAK-CONSENT",
        "LEAK-REFUSED",
    ];
    let refused = ["Wombatina Noleak", "Nota riservata Nozorbl"];
    let consented = [
        "Wombatina Sileak",
        "Nota riservata Sizorbl",
        "5550199",
        "Xandriana",
    ];
    let everything: Vec<&str> = case_numbers
        .iter()
        .chain(&refused)
        .chain(&consented)
        .copied()
        .collect();
    assert_absent("the logs", &logs, &everything);
    for (queue, content) in &queues {
        assert_absent(queue, content, &everything);
    }
    // The database holds the consented person (asylum_personal, the notice's payload), never
    // the refused one's nor a clear case number.
    assert_absent("the database dump", &dump, &case_numbers);
    assert_absent("the database dump", &dump, &refused);
    assert!(
        dump.contains("Wombatina Sileak"),
        "the consented person is kept"
    );
    for m in app.emails() {
        let all = text(&m);
        assert_absent("a subject", &m.subject().unwrap_or_default(), &everything);
        assert_absent("an email", &all, &case_numbers);
        assert_absent("an email", &all, &refused);
        let kind = m.header("X-Raccordo-Kind").unwrap_or_default();
        let social = m.to.iter().any(|t| t == SS_RHO || t == SS_AMBITO_RHO);
        if kind != "asylum.pronta_accoglienza" || !social {
            assert_absent(&format!("{kind} to {:?}", m.to), &all, &consented);
        }
    }
    let _ = std::fs::remove_file(&log_path);
    app.cleanup().await;
}

#[tokio::test]
async fn a2_d5_an_unacknowledged_pronta_accoglienza_is_reminded_then_escalated_without_the_person()
{
    // 0.001 hours: the reminder after 3.6 s, the escalation after 7.2 s.
    let app = asylum_app(|s| s.escalation.after_hours = 0.001).await;
    app.publish(&app.event(
        "asylum.vulnerability.v1",
        report("SP-RHO-2026-0046", true, now()),
    ))
    .await;
    app.wait_for_emails(8).await;
    app.settle().await;
    let mails = app.emails_of("asylum.pronta_accoglienza");
    let reminders: Vec<&ReceivedMail> = mails
        .iter()
        .filter(|m| m.header("X-Raccordo-Reminder").as_deref() == Some("1"))
        .collect();
    assert_eq!(reminders.len(), 3, "one reminder per recipient");
    for m in &reminders {
        let subject = m.subject().unwrap_or_default();
        assert!(subject.starts_with("[URGENTE] [PROMEMORIA]"), "{subject}");
        let to_desk = m.to.contains(&DESK_EMAIL.to_owned());
        assert_eq!(text(m).contains("Wombatina Sileak"), !to_desk, "{:?}", m.to);
    }
    let escalated = app.emails_of("delivery.unacknowledged");
    assert_eq!(recipients(&escalated), set(&[SS_AMBITO_RHO, PREFETTURA]));
    for m in &escalated {
        assert_absent(
            "the escalation",
            &text(m),
            &["Wombatina", "5550199", "SP-RHO"],
        );
    }
    app.cleanup().await;
}

/// Runs `raccordo <args>` for this test; what it printed, stdout and stderr.
async fn run_cli(app: &TestApp, args: &[&str]) -> String {
    let output = app
        .command()
        .args(args)
        .output()
        .await
        .expect("raccordo runs");
    assert!(
        output.status.success(),
        "raccordo {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test]
async fn leak_test_a_dead_lettered_report_names_the_unknown_desk_and_shows_nothing_of_the_person() {
    let app = asylum_app(|_| {}).await;
    let mut unknown_desk = report("SP-DEAD-2026-0099", true, now());
    unknown_desk["desk"] = json!("sportello-inesistente");
    app.publish(&app.event("asylum.vulnerability.v1", unknown_desk))
        .await;
    let dead = app.wait_for_dead(1).await;
    assert!(
        dead[0].error.contains("sportello-inesistente"),
        "{}",
        dead[0].error
    );
    let mut printed = run_cli(&app, &["dlq", "list"]).await;
    printed.push_str(&run_cli(&app, &["dlq", "list", "--format", "json"]).await);
    let show = run_cli(&app, &["dlq", "show", &dead[0].id]).await;
    assert!(show.contains(&dead[0].id), "{show}");
    printed.push_str(&show);
    printed.push_str(&dead[0].error);
    assert_absent(
        "dlq list and show",
        &printed,
        &[
            "SP-DEAD",
            "DEAD-2026",
            "Wombatina",
            "5550199",
            "zorbl",
            "Xandriana",
        ],
    );
    assert!(app.emails().is_empty());
    assert_eq!(count(&app, "SELECT count(*) FROM asylum_cases").await, 0);
    app.cleanup().await;
}

/// A key of this test only, strong enough for `raccordo eviction rekey`.
const STRONG_KEY: &str = "asylum-rekey-test-key-0123456789abcdef0123456789";

#[tokio::test]
async fn a1_a_rekey_renames_every_case_so_a_later_intervention_still_finds_it() {
    let dir = std::env::temp_dir().join(format!("raccordo-rekey-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let app = asylum_app(|s| {
        s.eviction.allow_development_key = false;
        s.eviction.pseudonym_key = STRONG_KEY.to_owned().into();
    })
    .await;
    let case = "SP-RHO-REKEY-1";
    app.publish(&app.event("asylum.vulnerability.v1", report(case, true, now())))
        .await;
    app.wait_for_emails(3).await;
    app.settle().await;
    let before: String = sqlx::query_scalar("SELECT case_key FROM asylum_cases")
        .fetch_one(&app.pool)
        .await
        .expect("one case");
    let mut app = app;
    app.stop_workers().await;

    let new_key = dir.join("new.key");
    let chain = dir.join("chain.key");
    std::fs::write(&new_key, "e".repeat(64)).expect("new key");
    let output = app
        .command()
        .args(["eviction", "rekey", "--new-key-file"])
        .arg(&new_key)
        .arg("--write-key-file")
        .arg(&chain)
        .output()
        .await
        .expect("raccordo eviction rekey runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("and 1 asylum case(s)"), "{stdout}");
    let after: String = sqlx::query_scalar("SELECT case_key FROM asylum_cases")
        .fetch_one(&app.pool)
        .await
        .expect("one case");
    assert_ne!(after, before, "the case's pseudonym changed");
    // What points at the case followed it.
    for table in ["asylum_personal", "asylum_pronta_notices"] {
        let n: i64 =
            sqlx::query_scalar(&format!("SELECT count(*) FROM {table} WHERE case_key = $1"))
                .bind(&after)
                .fetch_one(&app.pool)
                .await
                .expect("count");
        assert_eq!(n, 1, "{table}");
    }

    // With the chain, the desk's case number leads to the renamed case.
    app.settings.eviction.pseudonym_key = std::fs::read_to_string(&chain).expect("chain").into();
    assert_eq!(
        raccordo_core::pseudonym::case_pseudonym(&app.settings.eviction, case),
        after
    );
    let app = app.start(raccordo::serve::Workers::All).await;
    app.publish(&app.event(
        "asylum.intervention.v1",
        intervention(case, "primo_intervento", now()),
    ))
    .await;
    app.settle().await;
    let stopped: Option<OffsetDateTime> =
        sqlx::query_scalar("SELECT clock_stopped_at FROM asylum_cases WHERE case_key = $1")
            .bind(&after)
            .fetch_one(&app.pool)
            .await
            .expect("the case");
    assert!(
        stopped.is_some(),
        "the intervention stopped the case's clock"
    );
    let _ = std::fs::remove_dir_all(dir);
    app.cleanup().await;
}

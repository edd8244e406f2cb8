//! Issue 22: a referent's mail preferences in the registry — the `preferences` member of
//! `registry.referent.v1` and the `preferences`, `quiet_hours`, `quiet_weekends` import
//! columns. Stored as given; an upsert or a row without them keeps what is stored (what a
//! referent chose on its own page is not undone by its administrator's next update); an
//! invalid one is dead-lettered naming the member, never the value; every change is history.

use raccordo_core::preferences::Preferences;
use raccordo_core::registry::{Actor, import_referents, load_preferences, referent_history};
use raccordo_e2e::{TestApp, prepare_with, spawn_app};
use serde_json::{Value, json};

/// An upsert of the referent `id`, named `name`, with `preferences` when given.
fn upsert(id: &str, name: &str, preferences: Option<Value>) -> Value {
    let mut data = json!({
        "referent_id": id, "action": "upsert", "institution": "Prefettura di Milano",
        "role": "prefettura", "email": format!("{id}@prefettura.mi.example"),
        "name": name, "scope": {}
    });
    if let Some(p) = preferences {
        data["preferences"] = p;
    }
    data
}

/// The stored preferences of `id` (the referent must exist).
async fn stored(app: &TestApp, id: &str) -> Preferences {
    let mut conn = app.pool.acquire().await.expect("a connection");
    load_preferences(&mut conn, id)
        .await
        .expect("the preferences load")
        .unwrap_or_else(|| panic!("{id} is in the registry"))
        .preferences
}

/// The stored name of `id`.
async fn name_of(app: &TestApp, id: &str) -> Option<String> {
    sqlx::query_scalar("SELECT name FROM referents WHERE referent_id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .expect("the referent")
}

fn chosen() -> Value {
    json!({
        "kinds": {"housing.offered": "daily 08:00", "eviction.stats": "off",
                  "quota.threshold": "ogni settimana lunedì 9.00"},
        "quiet_hours": "20:00-08:00",
        "quiet_weekends": true
    })
}

#[tokio::test]
async fn registry_preferences_an_upsert_stores_them_and_an_upsert_without_them_keeps_them() {
    let app = spawn_app().await;

    app.publish(&app.event(
        "registry.referent.v1",
        upsert("pref-pref", "Ufficio", Some(chosen())),
    ))
    .await;
    app.settle().await;

    let first = stored(&app, "pref-pref").await;
    assert_eq!(
        first.kinds_text(),
        "eviction.stats=off; housing.offered=daily 08:00; quota.threshold=weekly monday 09:00"
    );
    assert_eq!(
        first.quiet_hours.map(|q| q.to_string()).as_deref(),
        Some("20:00-08:00")
    );
    assert!(first.quiet_weekends);

    // The administrator renames the office without the member: the choice stays.
    app.publish(&app.event(
        "registry.referent.v1",
        upsert("pref-pref", "Ufficio rinominato", None),
    ))
    .await;
    app.settle().await;

    assert_eq!(
        name_of(&app, "pref-pref").await.as_deref(),
        Some("Ufficio rinominato")
    );
    assert_eq!(stored(&app, "pref-pref").await, first);
    // An empty object is the way back to the default.
    app.publish(&app.event(
        "registry.referent.v1",
        upsert("pref-pref", "Ufficio rinominato", Some(json!({}))),
    ))
    .await;
    app.settle().await;
    assert!(stored(&app, "pref-pref").await.is_default());
    assert!(app.dead_letters().await.is_empty());
    app.cleanup().await;
}

#[tokio::test]
async fn registry_preferences_a_mandatory_kind_turned_off_is_dead_lettered_and_nothing_changes() {
    let app = spawn_app().await;
    app.publish(&app.event(
        "registry.referent.v1",
        upsert("pref-pref", "Ufficio", Some(chosen())),
    ))
    .await;
    app.settle().await;
    let before = stored(&app, "pref-pref").await;

    app.publish(&app.event(
        "registry.referent.v1",
        upsert(
            "pref-pref",
            "Ufficio cambiato",
            Some(json!({"kinds": {"housing.offered": "off"}})),
        ),
    ))
    .await;

    let dead = app.wait_for_dead(1).await;
    assert!(
        dead[0].error.contains("preferences")
            && dead[0]
                .error
                .contains("housing.offered is required by the protocols"),
        "{:?}",
        dead[0].error
    );
    app.settle().await;
    assert_eq!(name_of(&app, "pref-pref").await.as_deref(), Some("Ufficio"));
    assert_eq!(stored(&app, "pref-pref").await, before);

    // A member the schema does not know, and a mode that is none: refused by the schema,
    // naming the member, never what was written.
    app.publish(&app.event(
        "registry.referent.v1",
        upsert(
            "pref-pref",
            "Ufficio cambiato",
            Some(json!({"kinds": {"quota.threshold": "Mario Rossi"}})),
        ),
    ))
    .await;
    app.publish(&app.event(
        "registry.referent.v1",
        upsert(
            "pref-pref",
            "Ufficio cambiato",
            Some(json!({"colour": "blue"})),
        ),
    ))
    .await;

    let dead = app.wait_for_dead(3).await;
    for held in &dead {
        assert!(held.error.contains("preferences"), "{:?}", held.error);
        assert!(!held.error.contains("Mario"), "{:?}", held.error);
    }
    app.settle().await;
    assert_eq!(name_of(&app, "pref-pref").await.as_deref(), Some("Ufficio"));
    assert_eq!(stored(&app, "pref-pref").await, before);
    app.cleanup().await;
}

#[tokio::test]
async fn registry_preferences_an_import_sets_them_and_the_history_shows_the_change() {
    let app = prepare_with(|_| {}).await;
    // `pref-sa` is a referent of the sample registry, imported with the default.
    let csv = "\
referent_id,institution,role,email,name,comune_istat,ambito,zona,preferences,quiet_hours,quiet_weekends
pref-sa,Prefettura di Milano - Area IV Immigrazione,stazione_appaltante,gare.accoglienza@prefettura.mi.example,Ufficio gare accoglienza,,,,housing.offered=daily 08:00; housing.ack=off,19:00-07:30,sì
";

    let report = import_referents(&app.pool, csv.as_bytes(), &Actor::import("prefs.csv"))
        .await
        .expect("the import runs");

    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!((report.inserted, report.updated), (0, 1));
    let prefs = stored(&app, "pref-sa").await;
    assert_eq!(
        prefs.kinds_text(),
        "housing.offered=daily 08:00; housing.ack=off"
    );
    assert_eq!(
        prefs.quiet_hours.map(|q| q.to_string()).as_deref(),
        Some("19:00-07:30")
    );
    assert!(prefs.quiet_weekends);
    let mut conn = app.pool.acquire().await.expect("a connection");
    let history = referent_history(&mut conn, "pref-sa")
        .await
        .expect("history");
    let last = history.last().expect("a change");
    assert_eq!(last.actor, "import:prefs.csv");
    let differences = last.differences();
    let changed: Vec<&str> = differences.iter().map(|(f, _, _)| f.as_str()).collect();
    assert_eq!(changed, ["preferences"], "{differences:?}");
    let (_, before, after) = &differences[0];
    assert_eq!(before, &json!({}));
    assert_eq!(after["kinds"]["housing.offered"], "daily 08:00");
    assert_eq!(after["quiet_hours"], "19:00-07:30");
    assert_eq!(after["quiet_weekends"], true);

    // The sample imported again, without the columns: the preferences stay, and nothing
    // is added to the history.
    let sample = std::fs::read(raccordo_e2e::workspace_root().join("data/referents_sample.csv"))
        .expect("the sample");
    let report = import_referents(&app.pool, sample.as_slice(), &Actor::import("again.csv"))
        .await
        .expect("the import runs");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(stored(&app, "pref-sa").await, prefs);
    let again = referent_history(&mut conn, "pref-sa")
        .await
        .expect("history");
    assert_eq!(
        again.len(),
        history.len(),
        "an unchanged row adds no history"
    );

    // A bad value refuses the file, naming the line and the column.
    let bad = "\
referent_id,institution,role,email,name,comune_istat,ambito,zona,preferences
pref-sa,Prefettura di Milano - Area IV Immigrazione,stazione_appaltante,gare.accoglienza@prefettura.mi.example,Ufficio gare accoglienza,,,,housing.offered=off
";
    let report = import_referents(&app.pool, bad.as_bytes(), &Actor::import("bad.csv"))
        .await
        .expect("the import runs");
    let errors: Vec<String> = report.errors.iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with("line 2: preferences: "), "{errors:?}");
    assert_eq!(stored(&app, "pref-sa").await, prefs);
    drop(conn);
    app.cleanup().await;
}

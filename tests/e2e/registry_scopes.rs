//! Issue 17, finding 5 (registry): a registry publisher limited by
//! `publishers.<user>.scopes` creates, changes and removes only referents whose scope —
//! as stored and as the event would make it — lies within its scopes; every change of a
//! referent is kept as history (who, when, before, after) and printed by
//! `raccordo registry history`. Two real broker users publish.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use raccordo::serve::Workers;
use raccordo_core::amqp::dead_letter::Holding;
use raccordo_core::settings::{PublisherRule, ScopeSetting};
use raccordo_e2e::broker_users::BrokerUser;
use raccordo_e2e::{TestApp, prepare_with};

const RHO: &str = "015182";
const MILANO: &str = "015146";

fn upsert(id: &str, name: &str, scope: Value) -> Value {
    json!({"referent_id": id, "action": "upsert", "institution": "Comune di Rho",
           "role": "servizi_sociali", "email": format!("{id}@comune.rho.example"),
           "name": name, "scope": scope})
}

async fn publish(app: &TestApp, user: &BrokerUser, data: Value) {
    let body = serde_json::to_vec(&app.event("registry.referent.v1", data)).expect("json");
    user.publish(
        &app.topology.inbound_exchange(),
        "registry.referent.v1",
        &body,
        Some(&user.name),
    )
    .await
    .expect("the broker confirms");
}

/// The stored (name, scope_kind, scope_value) of a referent.
async fn referent(app: &TestApp, id: &str) -> Option<(Option<String>, String, Option<String>)> {
    sqlx::query_as("SELECT name, scope_kind, scope_value FROM referents WHERE referent_id = $1")
        .bind(id)
        .fetch_optional(&app.pool)
        .await
        .expect("referent")
}

/// Waits until the referent's stored name is `name` (bounded).
async fn wait_for_name(app: &TestApp, id: &str, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while referent(app, id).await.and_then(|r| r.0).as_deref() != Some(name) {
        assert!(Instant::now() < deadline, "{id} never got the name {name}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `raccordo registry history ID --format FORMAT`'s standard output.
async fn history(app: &TestApp, id: &str, format: &str) -> String {
    let output = app
        .command()
        .args(["registry", "history", id, "--format", format])
        .output()
        .await
        .expect("raccordo registry history runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8")
}

#[tokio::test]
async fn issue17_f5_a_scoped_registry_publisher_is_refused_outside_its_scope_and_history_is_kept() {
    let prepared = prepare_with(|_| {}).await;
    let inbound = prepared.topology.inbound_exchange();
    let url = prepared.settings.amqp.url.clone();
    let scoped =
        BrokerUser::create(&url, &inbound, "registro-rho", "registry\\.referent\\.v1").await;
    let prefettura =
        BrokerUser::create(&url, &inbound, "registro-pref", "registry\\.referent\\.v1").await;
    let (scoped_name, prefettura_name) = (scoped.name.clone(), prefettura.name.clone());
    let app = prepared
        .configure(move |s| {
            s.publishers.allow_anonymous = false;
            s.publishers.users.insert(
                scoped_name,
                PublisherRule {
                    types: vec!["registry.referent.v1".into()],
                    scopes: vec![ScopeSetting {
                        ambito: Some("Rho".into()),
                        ..ScopeSetting::default()
                    }],
                    ..PublisherRule::default()
                },
            );
            s.publishers.users.insert(
                prefettura_name,
                PublisherRule {
                    types: vec!["registry.referent.v1".into()],
                    ..PublisherRule::default()
                },
            );
        })
        .start(Workers::All)
        .await;

    // Within its ambito: a comune of it, or the ambito itself.
    publish(
        &app,
        &scoped,
        upsert("ss-rho-2", "Segretariato", json!({"comune_istat": RHO})),
    )
    .await;
    wait_for_name(&app, "ss-rho-2", "Segretariato").await;

    // Outside: a referent of Milano, the whole area, Milano's referent moved to Rho, and
    // Milano's referent removed.
    publish(
        &app,
        &scoped,
        upsert("ss-mi-2", "Intruso", json!({"comune_istat": MILANO})),
    )
    .await;
    publish(&app, &scoped, upsert("ss-all", "Intruso", json!({}))).await;
    publish(
        &app,
        &scoped,
        upsert("ss-milano", "Intruso", json!({"ambito": "Rho"})),
    )
    .await;
    publish(
        &app,
        &scoped,
        json!({"referent_id": "ss-milano", "action": "remove"}),
    )
    .await;
    let held = app.wait_for_held(Holding::Dead, 4).await;
    let mut reasons: Vec<String> = held.into_iter().map(|m| m.error).collect();
    reasons.sort();
    let user = &scoped.name;
    let mut expected = vec![
        format!(
            "publisher {user:?} may not change referent ss-mi-2: its new scope (comune {MILANO}) is outside publishers.{user}.scopes"
        ),
        format!(
            "publisher {user:?} may not change referent ss-all: its new scope (tutta l'area) is outside publishers.{user}.scopes"
        ),
        format!(
            "publisher {user:?} may not change referent ss-milano: its current scope (comune {MILANO}) is outside publishers.{user}.scopes"
        ),
        format!(
            "publisher {user:?} may not change referent ss-milano: its current scope (comune {MILANO}) is outside publishers.{user}.scopes"
        ),
    ];
    expected.sort();
    assert_eq!(reasons, expected);
    assert_eq!(referent(&app, "ss-mi-2").await, None);
    assert_eq!(referent(&app, "ss-all").await, None);
    assert_eq!(
        referent(&app, "ss-milano").await,
        Some((
            Some("Area Inclusione - emergenza abitativa".into()),
            "comune".into(),
            Some(MILANO.into())
        )),
        "Milano's referent untouched"
    );

    // An unlimited publisher changes the scoped one's referent; then an import does.
    publish(
        &app,
        &prefettura,
        upsert("ss-rho-2", "Segretariato sociale", json!({"ambito": "Rho"})),
    )
    .await;
    wait_for_name(&app, "ss-rho-2", "Segretariato sociale").await;
    let dir = std::env::temp_dir().join(format!("raccordo-history-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("referenti.csv");
    std::fs::write(
        &file,
        "referent_id,institution,role,email,name,comune_istat,ambito,zona\n\
         ss-rho-2,Comune di Rho,servizi_sociali,ss-rho-2@comune.rho.example,Sportello,,Rho,\n",
    )
    .expect("write");
    let output = app
        .command()
        .args(["import", "referents"])
        .arg(&file)
        .output()
        .await
        .expect("raccordo import runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let json: Value =
        serde_json::from_str(&history(&app, "ss-rho-2", "json").await).expect("JSON history");
    let changes = json.as_array().expect("an array");
    assert_eq!(changes.len(), 3, "{json:#}");
    let actors: Vec<&str> = changes.iter().filter_map(|c| c["actor"].as_str()).collect();
    let import_actor = format!("import:{}", file.display());
    assert_eq!(
        actors,
        vec![
            scoped.name.as_str(),
            prefettura.name.as_str(),
            &import_actor
        ]
    );
    let actions: Vec<&str> = changes
        .iter()
        .filter_map(|c| c["action"].as_str())
        .collect();
    assert_eq!(actions, vec!["created", "changed", "changed"]);
    assert_eq!(changes[0]["before"], Value::Null);
    assert_eq!(changes[0]["after"]["name"], "Segretariato");
    assert_eq!(changes[0]["after"]["scope_value"], RHO);
    assert_eq!(changes[1]["before"]["name"], "Segretariato");
    assert_eq!(changes[1]["after"]["name"], "Segretariato sociale");
    assert_eq!(changes[1]["after"]["scope_kind"], "ambito");
    assert_eq!(changes[2]["after"]["name"], "Sportello");
    for change in changes {
        assert!(
            change["at"].as_str().is_some_and(|at| at.contains('T')),
            "{change}"
        );
    }
    let table = history(&app, "ss-rho-2", "table").await;
    assert_eq!(table.lines().count(), 5, "{table}");
    let line = table
        .lines()
        .find(|l| l.contains(&prefettura.name))
        .expect("the prefettura's change");
    assert!(
        line.contains("changed")
            && line.contains(r#"name: "Segretariato" → "Segretariato sociale""#)
            && line.contains(r#"scope_value: "015182" → "Rho""#),
        "{table}"
    );
    // The refused events left no trace; the sample's import did.
    let milano: Value =
        serde_json::from_str(&history(&app, "ss-milano", "json").await).expect("JSON");
    assert_eq!(milano.as_array().map(Vec::len), Some(1), "{milano:#}");
    assert_eq!(milano[0]["actor"], "import:data/referents_sample.csv");
    assert_eq!(milano[0]["action"], "created");

    let _ = std::fs::remove_dir_all(dir);
    scoped.delete().await;
    prefettura.delete().await;
    app.cleanup().await;
}

//! The registry's `pec` and `deputy_of` (contract 1.2 §4, §11): import columns found by
//! header name, validation (a PEC is an address, `deputy_of` names a referent of the
//! registry or of the same file, never the referent itself), the history of each change,
//! registry events, and `raccordo registry list`.

use raccordo_core::registry::{Actor, import_referents, list_referents, referent_history};
use raccordo_e2e::{TestApp, prepare_with, spawn_app};
use serde_json::{Value, json};

/// Columns in another order than the contract lists them; two offices standing in for each
/// other, the first naming one further on in the file.
const MUTUAL: &str = "\
pec,zona,ambito,comune_istat,name,email,role,institution,referent_id,deputy_of
ss.rho@pec.comune.rho.example,,,015182,Segretariato sociale,servizisociali@comune.rho.example,servizi_sociali,Comune di Rho - Servizi sociali,ss-rho,ss-rho-bis
,,,015182,Sportello bis,bis@comune.rho.example,servizi_sociali,Comune di Rho - Servizi sociali,ss-rho-bis,ss-rho
";

async fn app_without_workers() -> TestApp {
    prepare_with(|_| {}).await
}

async fn import(app: &TestApp, csv: &str) -> raccordo_core::registry::ImportReport {
    import_referents(&app.pool, csv.as_bytes(), &Actor::import("deputies.csv"))
        .await
        .expect("the import runs")
}

#[tokio::test]
async fn issue18_referents_import_finds_pec_and_deputy_of_by_header_name_in_any_order() {
    let app = app_without_workers().await;

    let report = import(&app, MUTUAL).await;

    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!((report.inserted, report.updated), (1, 1));
    let mut conn = app.pool.acquire().await.expect("a connection");
    let referents = list_referents(&mut conn).await.expect("referents");
    let rho = referents
        .iter()
        .find(|r| r.referent_id == "ss-rho")
        .expect("ss-rho");
    assert_eq!(
        rho.pec.as_ref().map(AsRef::as_ref),
        Some("ss.rho@pec.comune.rho.example")
    );
    assert_eq!(rho.deputy_of.as_deref(), Some("ss-rho-bis"));
    let bis = referents
        .iter()
        .find(|r| r.referent_id == "ss-rho-bis")
        .expect("ss-rho-bis");
    assert_eq!(
        (bis.pec.as_ref(), bis.deputy_of.as_deref()),
        (None, Some("ss-rho"))
    );
    // The change is history, as for every other field.
    let history = referent_history(&mut conn, "ss-rho")
        .await
        .expect("history");
    let last = history.last().expect("a change");
    assert_eq!(last.actor, "import:deputies.csv");
    let before = last.before.as_ref().expect("it existed");
    let after = last.after.as_ref().expect("it exists");
    assert_eq!(
        (&before["pec"], &after["pec"]),
        (&Value::Null, &json!("ss.rho@pec.comune.rho.example"))
    );
    assert_eq!(after["deputy_of"], "ss-rho-bis");
    // Without the new columns a file imports as before, and clears them.
    let plain = "referent_id,institution,role,email,name,comune_istat,ambito,zona\n\
                 ss-rho,Comune di Rho - Servizi sociali,servizi_sociali,servizisociali@comune.rho.example,Segretariato sociale,015182,,\n";
    assert!(import(&app, plain).await.errors.is_empty());
    let referents = list_referents(&mut conn).await.expect("referents");
    let rho = referents
        .iter()
        .find(|r| r.referent_id == "ss-rho")
        .expect("ss-rho");
    assert_eq!((rho.pec.as_ref(), rho.deputy_of.as_deref()), (None, None));
    drop(conn);
    app.cleanup().await;
}

#[tokio::test]
async fn issue18_a_bad_pec_or_deputy_of_refuses_the_whole_import_naming_each_line() {
    let app = app_without_workers().await;
    let csv = "\
referent_id,institution,role,email,name,comune_istat,ambito,zona,pec,deputy_of
ok-1,Comune di Rho,comune,a@comune.rho.example,,015182,,,,pref-sa
bad-pec,Comune di Rho,comune,b@comune.rho.example,,015182,,,not-an-address,
bad-deputy,Comune di Rho,comune,c@comune.rho.example,,015182,,,,nessuno
self,Comune di Rho,comune,d@comune.rho.example,,015182,,,,self
\"ctl\",Comune di Rho,comune,e@comune.rho.example,,015182,,,\"x@pec.example\r\nBcc: y@evil.example\",
";

    let report = import(&app, csv).await;

    let lines: Vec<(u64, String)> = report
        .errors
        .iter()
        .map(|e| (e.line, e.reason.clone()))
        .collect();
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert_eq!(lines[0].0, 3);
    assert!(lines[0].1.starts_with("pec:"), "{lines:#?}");
    assert_eq!(
        lines[1],
        (
            4,
            "deputy_of \"nessuno\" names no referent of the registry".into()
        )
    );
    assert_eq!(lines[2], (5, "deputy_of names the referent itself".into()));
    assert_eq!(lines[3].0, 6);
    assert!(lines[3].1.contains("column pec"), "{lines:#?}");
    assert!(!lines[3].1.contains("evil"), "{lines:#?}");
    let mut conn = app.pool.acquire().await.expect("a connection");
    let referents = list_referents(&mut conn).await.expect("referents");
    assert!(
        !referents.iter().any(|r| r.referent_id == "ok-1"),
        "all or nothing"
    );
    drop(conn);
    app.cleanup().await;
}

#[tokio::test]
async fn issue18_registry_events_carry_pec_and_deputy_of_and_an_unknown_deputy_is_dead_lettered() {
    let app = spawn_app().await;
    let upsert = |id: &str, deputy_of: &str| {
        json!({
            "referent_id": id, "action": "upsert", "institution": "Prefettura di Milano",
            "role": "prefettura", "email": "vicario@prefettura.mi.example",
            "pec": "vicario@pec.prefettura.mi.example", "deputy_of": deputy_of, "scope": {}
        })
    };

    app.publish(&app.event("registry.referent.v1", upsert("pref-vicario", "pref-sa")))
        .await;
    app.publish(&app.event("registry.referent.v1", upsert("pref-altro", "nessuno")))
        .await;

    let dead = app.wait_for_dead(1).await;
    assert!(
        dead[0]
            .error
            .contains("deputy_of \"nessuno\" names no referent"),
        "{:?}",
        dead[0].error
    );
    app.settle().await;
    let mut conn = app.pool.acquire().await.expect("a connection");
    let referents = list_referents(&mut conn).await.expect("referents");
    let vicario = referents
        .iter()
        .find(|r| r.referent_id == "pref-vicario")
        .expect("stored");
    assert_eq!(vicario.deputy_of.as_deref(), Some("pref-sa"));
    assert_eq!(
        vicario.pec.as_ref().map(AsRef::as_ref),
        Some("vicario@pec.prefettura.mi.example")
    );
    assert!(!referents.iter().any(|r| r.referent_id == "pref-altro"));
    drop(conn);
    app.cleanup().await;
}

#[tokio::test]
async fn issue18_raccordo_registry_list_shows_pec_and_deputies() {
    let app = app_without_workers().await;
    assert!(import(&app, MUTUAL).await.errors.is_empty());

    let json_out = app
        .command()
        .args(["registry", "list", "--format", "json"])
        .output()
        .await
        .expect("raccordo runs");
    let table_out = app
        .command()
        .args(["registry", "list"])
        .output()
        .await
        .expect("raccordo runs");

    assert!(json_out.status.success(), "{json_out:?}");
    let listed: Value = serde_json::from_slice(&json_out.stdout).expect("JSON");
    let rho = listed
        .as_array()
        .and_then(|all| all.iter().find(|r| r["referent_id"] == "ss-rho"))
        .expect("ss-rho listed");
    assert_eq!(rho["pec"], "ss.rho@pec.comune.rho.example");
    assert_eq!(rho["deputy_of"], "ss-rho-bis");
    let table = String::from_utf8(table_out.stdout).expect("UTF-8");
    let line = table
        .lines()
        .find(|l| l.starts_with("ss-rho "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(line.contains("ss.rho@pec.comune.rho.example"), "{line}");
    // Whom it stands in for, and who stands in for it.
    assert!(
        line.trim_end().ends_with("ss-rho-bis  ss-rho-bis"),
        "{line}"
    );
    app.cleanup().await;
}

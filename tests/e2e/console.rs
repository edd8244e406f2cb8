//! The operators' console (issue 9) over HTTP, against a running hub: login required, CSRF
//! refused, a strict CSP on every page, replay of a dead letter recorded in the audit
//! trail, the routing preview of an eviction alert, and the leak test over every page's
//! HTML with the distinctive strings of two families.

use std::net::{IpAddr, SocketAddr};

use raccordo_core::clock::{now, rome_date};
use raccordo_core::domain::format_date;
use raccordo_core::settings::{ConsoleRole, OperatorSettings, Settings};
use raccordo_e2e::families::{NEVER, REVOKING};
use raccordo_e2e::{TestApp, spawn_app_with};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub(crate) const OPERATOR: &str = "operatrice";
/// A user of the Tavolo: role `viewer`.
pub(crate) const VIEWER: &str = "tavolo";
/// The data protection officer: role `privacy`.
pub(crate) const PRIVACY: &str = "dpo";
pub(crate) const PASSWORD: &str = "una password lunga di prova";

/// A user of each role, all with [`PASSWORD`].
pub(crate) fn users() -> Vec<OperatorSettings> {
    let hash = raccordo_console::hash_password(PASSWORD).expect("hashes");
    [
        (OPERATOR, ConsoleRole::Operator),
        (VIEWER, ConsoleRole::Viewer),
        (PRIVACY, ConsoleRole::Privacy),
    ]
    .into_iter()
    .map(|(name, role)| OperatorSettings {
        name: name.into(),
        password_hash: Some(hash.clone().into()),
        role: Some(role),
    })
    .collect()
}

/// A hub with every worker and the console on a free port, a user of each role.
pub(crate) async fn spawn_console() -> (TestApp, SocketAddr) {
    spawn_console_with(|_| {}).await
}

/// Like [`spawn_console`], after `configure` adjusts the settings.
pub(crate) async fn spawn_console_with(
    configure: impl FnOnce(&mut Settings),
) -> (TestApp, SocketAddr) {
    let app = spawn_app_with(|s| {
        s.console.enabled = true;
        s.console.addr = "127.0.0.1:0".into();
        s.console.operators = users();
        configure(s);
    })
    .await;
    let addr = app
        .app
        .as_ref()
        .and_then(|a| a.console_addr)
        .expect("the console listens");
    (app, addr)
}

/// One HTTP/1.1 response.
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Response {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The value of a cookie this response sets.
    pub(crate) fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .filter_map(|(_, v)| v.split(';').next()?.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_owned())
    }
}

/// A request on loopback, with the session cookie if any and a form body for POST.
/// `cookie` is either a cookie (`name=value`) or a whole header line (`Name: value`).
pub(crate) async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    form: Option<&str>,
) -> Response {
    let header = cookie.map(|c| {
        if c.contains(": ") {
            c.to_owned()
        } else {
            format!("Cookie: {c}")
        }
    });
    request_from(None, addr, method, path, header.as_slice(), form).await
}

/// A request from the loopback address `from` (127.0.0.1 when `None`), with these header
/// lines and a form body for POST.
pub(crate) async fn request_from(
    from: Option<IpAddr>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    header_lines: &[String],
    form: Option<&str>,
) -> Response {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    if let Some(ip) = from {
        socket
            .bind(SocketAddr::new(ip, 0))
            .expect("a loopback address binds");
    }
    let mut stream = socket
        .connect(addr)
        .await
        .expect("the console accepts connections");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for line in header_lines {
        head.push_str(&format!("{line}\r\n"));
    }
    let body = form.unwrap_or_default();
    if form.is_some() {
        head.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    head.push_str(body);
    stream.write_all(head.as_bytes()).await.expect("sent");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Response {
        status,
        headers,
        body: body.to_owned(),
    }
}

pub(crate) fn form_encode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            let enc: String = v
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                        (b as char).to_string()
                    }
                    b' ' => "+".into(),
                    other => format!("%{other:02X}"),
                })
                .collect();
            format!("{k}={enc}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// A login attempt as a browser makes it: the form first (its token and cookie), then the
/// post, from `from`.
pub(crate) async fn try_login_from(
    from: Option<IpAddr>,
    addr: SocketAddr,
    user: &str,
    password: &str,
) -> Response {
    let page = request_from(from, addr, "GET", "/login", &[], None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let token = page.cookie("raccordo_login").expect("the form's cookie");
    assert_eq!(
        hidden(&page.body, "login_csrf"),
        token,
        "the form carries its token"
    );
    request_from(
        from,
        addr,
        "POST",
        "/login",
        &[format!("Cookie: raccordo_login={token}")],
        Some(&form_encode(&[
            ("user", user),
            ("password", password),
            ("login_csrf", &token),
        ])),
    )
    .await
}

/// Logs in as `user`; returns the session cookie (`name=value`).
pub(crate) async fn login_as(addr: SocketAddr, user: &str) -> String {
    let r = try_login_from(None, addr, user, PASSWORD).await;
    assert_eq!(r.status, 303, "login redirects: {}", r.body);
    let cookie = r.header("set-cookie").expect("a session cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    let session = r.cookie("raccordo_console").expect("the session cookie");
    format!("raccordo_console={session}")
}

/// Logs in as the operator.
async fn login(addr: SocketAddr) -> String {
    login_as(addr, OPERATOR).await
}

/// The value of the hidden field `name` of a form.
pub(crate) fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let at = html.find(&marker).expect("a form with the field") + marker.len();
    html[at..].split('"').next().expect("a value").to_owned()
}

/// The CSRF token of the session, as every page's forms carry it.
pub(crate) fn csrf_of(html: &str) -> String {
    hidden(html, "csrf")
}

#[tokio::test]
async fn an_unauthenticated_request_gets_the_login_page_and_every_page_sets_a_strict_csp() {
    let (app, addr) = spawn_console().await;
    for path in [
        "/",
        "/dead-letters",
        "/coverage",
        "/emails",
        "/coverage.csv",
    ] {
        let r = request(addr, "GET", path, None, None).await;
        assert_eq!(r.status, 303, "{path} is not served without a login");
        assert_eq!(r.header("location"), Some("/login"));
    }
    let r = request(
        addr,
        "POST",
        "/dead-letters/action",
        None,
        Some("action=purge&holding=all"),
    )
    .await;
    assert_eq!(r.status, 303, "an action is not taken without a login");

    let page = request(addr, "GET", "/login", None, None).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("name=\"password\""));
    let csp = page.header("content-security-policy").expect("a CSP");
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");

    let wrong = try_login_from(None, addr, OPERATOR, "no").await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.cookie("raccordo_console").is_none());

    let cookie = login(addr).await;
    for path in [
        "/",
        "/dead-letters",
        "/coverage",
        "/coverage/015146",
        "/routing",
        "/evictions",
        "/emails",
        "/static/console.css",
    ] {
        let r = request(addr, "GET", path, Some(&cookie), None).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        let csp = r.header("content-security-policy").expect("a CSP");
        assert!(csp.starts_with("default-src 'self'"), "{path}: {csp}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    }
    // The email previews run no script and reach nothing, framed only by the console.
    let r = request(
        addr,
        "GET",
        "/emails/quota.threshold/html",
        Some(&cookie),
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let csp = r.header("content-security-policy").expect("a CSP");
    assert!(
        csp.contains("default-src 'none'") && csp.contains("sandbox"),
        "{csp}"
    );

    // Logging out ends the session.
    let page = request(addr, "GET", "/", Some(&cookie), None).await;
    let csrf = csrf_of(&page.body);
    let out = request(
        addr,
        "POST",
        "/logout",
        Some(&cookie),
        Some(&form_encode(&[("csrf", &csrf)])),
    )
    .await;
    assert_eq!(out.status, 303);
    let r = request(addr, "GET", "/", Some(&cookie), None).await;
    assert_eq!(r.status, 303);
    app.cleanup().await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_header_names_the_operator_and_nothing_else_gets_in() {
    let app = spawn_app_with(|s| {
        s.console.enabled = true;
        s.console.addr = "127.0.0.1:0".into();
        s.console.trusted_user_header = "X-Remote-User".into();
        s.console.trusted_proxies = vec!["127.0.0.1".into()];
        s.console.operators = vec![OperatorSettings {
            name: "m.rossi".into(),
            password_hash: None,
            role: Some(ConsoleRole::Operator),
        }];
    })
    .await;
    let addr = app
        .app
        .as_ref()
        .and_then(|a| a.console_addr)
        .expect("the console listens");
    let r = request(addr, "GET", "/", Some("X-Remote-User: m.rossi"), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("m.rossi"), "the page names the operator");
    let cookie = r
        .header("set-cookie")
        .expect("a session for the CSRF token");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    assert!(!cookie.contains("Secure"), "on loopback: {cookie}");
    let r = request(addr, "GET", "/", None, None).await;
    assert_eq!(r.status, 303, "without the header, the login page");
    let r = try_login_from(None, addr, "m.rossi", "x").await;
    assert_eq!(
        r.status, 401,
        "no password logs in a user configured without one"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn a_replay_without_the_csrf_token_is_refused_and_a_confirmed_one_is_recorded() {
    let (app, addr) = spawn_console().await;
    // A housing unit of a comune the registry does not know yet: dead-lettered (F1).
    app.publish(&app.event(
        "housing.unit.v1",
        json!({"unit_id": "CSL-1", "action": "offered", "comune_istat": "015999",
               "address": "Via Nuova 1", "places": 2, "reception_kind": "CAS",
               "building_type": "casa", "owner_declaration": true}),
    ))
    .await;
    let dead = app.wait_for_dead(1).await;
    let id = dead[0].id.clone();
    let cookie = login(addr).await;
    let list = request(addr, "GET", "/dead-letters", Some(&cookie), None).await;
    assert!(list.body.contains(&id), "the list shows the dead letter");
    let detail = request(
        addr,
        "GET",
        &format!("/dead-letters/{id}"),
        Some(&cookie),
        None,
    )
    .await;
    assert_eq!(detail.status, 200);
    assert!(
        detail.body.contains("015999"),
        "the reason names the comune"
    );
    let confirm = request(
        addr,
        "GET",
        &format!("/dead-letters/confirm?action=replay&holding=dead&id={id}"),
        Some(&cookie),
        None,
    )
    .await;
    assert_eq!(confirm.status, 200);
    let csrf = csrf_of(&confirm.body);

    for token in ["", "0123456789abcdef"] {
        let refused = request(
            addr,
            "POST",
            "/dead-letters/action",
            Some(&cookie),
            Some(&form_encode(&[
                ("csrf", token),
                ("action", "replay"),
                ("holding", "dead"),
                ("id", &id),
            ])),
        )
        .await;
        assert_eq!(
            refused.status, 403,
            "a replay with token {token:?} is refused"
        );
    }
    assert_eq!(app.dead_letters().await.len(), 1, "nothing was replayed");

    // The registry learns the comune; the confirmed replay sends the unit through.
    let comune =
        "istat,nome,popolazione,zona_omogenea,ambito\n015999,Comune di Prova,1500,Sud Est,\n";
    let report = raccordo_core::registry::import_comuni(&app.pool, comune.as_bytes())
        .await
        .expect("import");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let done = request(
        addr,
        "POST",
        "/dead-letters/action",
        Some(&cookie),
        Some(&form_encode(&[
            ("csrf", &csrf),
            ("action", "replay"),
            ("holding", "dead"),
            ("id", &id),
        ])),
    )
    .await;
    assert_eq!(done.status, 303, "{}", done.body);
    app.wait_for_emails(1).await;
    app.settle().await;
    assert!(app.dead_letters().await.is_empty());
    assert_eq!(app.notifications("housing.offered").await.len(), 1);
    let recorded: (String, String, Option<String>, i32) =
        sqlx::query_as("SELECT operator, action, target, affected FROM console_actions")
            .fetch_one(&app.pool)
            .await
            .expect("one action recorded");
    assert_eq!(
        recorded,
        (
            OPERATOR.to_owned(),
            "replay".to_owned(),
            Some(id.clone()),
            1
        )
    );
    let list = request(addr, "GET", "/dead-letters", Some(&cookie), None).await;
    assert!(list.body.contains(OPERATOR), "the page shows who replayed");
    app.cleanup().await;
}

#[tokio::test]
async fn the_routing_preview_of_an_eviction_alert_never_lists_an_unscoped_referent() {
    let (app, addr) = spawn_console().await;
    let extra = "referent_id,institution,role,email,name,comune_istat,ambito,zona\n\
                 ss-regione,Regione Lombardia,servizi_sociali,sociale@regione.example,,,,\n\
                 ss-zona-no,Zona Nord Ovest,servizi_sociali,zona.no@example.org,,,,Nord Ovest\n";
    let report = raccordo_core::registry::import_referents(
        &app.pool,
        extra.as_bytes(),
        &raccordo_core::registry::Actor::cli(),
    )
    .await
    .expect("import");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let cookie = login(addr).await;
    let alert = request(
        addr,
        "GET",
        "/routing?comune=015182&kind=eviction.alert",
        Some(&cookie),
        None,
    )
    .await;
    assert_eq!(alert.status, 200);
    assert!(alert.body.contains("data-referent=\"ss-rho\""));
    assert!(alert.body.contains("data-referent=\"ss-ambito-rho\""));
    assert!(
        !alert.body.contains("data-referent=\"ss-regione\""),
        "unscoped"
    );
    assert!(
        !alert.body.contains("data-referent=\"ss-zona-no\""),
        "zona-wide"
    );
    // The same referents receive what is not personal: the preview is the workers' rule.
    let threshold = request(
        addr,
        "GET",
        "/routing?comune=015182&kind=quota.threshold",
        Some(&cookie),
        None,
    )
    .await;
    assert!(threshold.body.contains("data-referent=\"pref-sa\""));

    // A referents file before import: what it adds and changes.
    let page = request(addr, "GET", "/routing", Some(&cookie), None).await;
    let csrf = csrf_of(&page.body);
    let csv = "referent_id,institution,role,email,name,comune_istat,ambito,zona\n\
               ss-regione,Regione Lombardia,servizi_sociali,sociale@regione.example,,015182,,\n\
               ss-nuovo,Comune di Arese,servizi_sociali,ss@arese.example,,015009,,\n";
    let diff = request(
        addr,
        "POST",
        "/routing/referents",
        Some(&cookie),
        Some(&form_encode(&[("csrf", &csrf), ("csv", csv)])),
    )
    .await;
    assert_eq!(diff.status, 200, "{}", diff.body);
    assert!(diff.body.contains("ss-nuovo"));
    assert!(
        diff.body
            .contains("tutta l&#x27;area → comune Rho (015182)"),
        "{}",
        diff.body
    );
    let refused = request(
        addr,
        "POST",
        "/routing/referents",
        Some(&cookie),
        Some(&form_encode(&[("csv", csv)])),
    )
    .await;
    assert_eq!(refused.status, 403);
    app.cleanup().await;
}

fn consent(procedure: &str, decision: &str, contact: Option<Value>) -> Value {
    let at = OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .expect("formattable");
    let mut c = json!({"procedure_id": procedure, "comune_istat": "015182",
                       "decision": decision, "recorded_by": "Sportello sociale di Rho",
                       "recorded_at": at});
    if let Some(contact) = contact {
        c["contact"] = contact;
    }
    c
}

fn step(procedure: &str, comune: &str, step: &str) -> Value {
    json!({"procedure_id": procedure, "step": step, "occurred_on": format_date(rome_date(now())),
           "comune_istat": comune, "info_material_delivered": true})
}

/// Every page of the console, after `dead_id` was dead-lettered.
fn pages(dead_id: &str) -> Vec<String> {
    let mut pages = vec![
        "/".to_owned(),
        "/dead-letters".to_owned(),
        format!("/dead-letters/{dead_id}"),
        "/coverage".to_owned(),
        "/coverage.csv".to_owned(),
        "/coverage/015182".to_owned(),
        "/coverage/015146".to_owned(),
        "/routing?comune=015182&kind=eviction.alert".to_owned(),
        "/routing?comune=015146&kind=eviction.stats".to_owned(),
        "/evictions".to_owned(),
        "/emails".to_owned(),
    ];
    pages.extend(
        raccordo_mailer::KINDS
            .iter()
            .map(|k| format!("/emails/{k}/html")),
    );
    pages
}

/// Fails on any string of either family in `body`.
fn assert_no_family(path: &str, body: &str) {
    for s in NEVER.strings().into_iter().chain(REVOKING.strings()) {
        assert!(
            !body.contains(s),
            "{s:?} leaked into the console page {path}"
        );
    }
}

/// Fetches every page and fails on any string of either family.
async fn assert_no_family_on_any_page(addr: SocketAddr, cookie: &str, dead_id: &str) {
    for path in pages(dead_id) {
        let r = request(addr, "GET", &path, Some(cookie), None).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_no_family(&path, &r.body);
    }
}

/// The eviction audit as the privacy officer reads it, checked for both families.
async fn audit_without_family(addr: SocketAddr, cookie: &str) -> String {
    let r = request(addr, "GET", "/evictions/audit", Some(cookie), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_no_family("/evictions/audit", &r.body);
    r.body
}

#[tokio::test]
async fn leak_test_no_console_page_shows_a_family_s_personal_data() {
    let (app, addr) = spawn_console().await;
    // The family that never consents, in Milano: counted only.
    for s in ["intimazione", "avviso_sloggio"] {
        let mut e = step(NEVER.procedure, "015146", s);
        e["household"] = NEVER.household();
        app.publish(&app.event("eviction.step.v1", e)).await;
    }
    // The family that consents, in Rho: alerts with its data go to the servizi sociali.
    let mut first = step(REVOKING.procedure, "015182", "intimazione");
    first["household"] = REVOKING.household();
    app.publish(&app.event("eviction.step.v1", first)).await;
    app.publish(&app.event(
        "eviction.consent.v1",
        consent(REVOKING.procedure, "granted", Some(REVOKING.contact())),
    ))
    .await;
    // Consumers compete: the next step is published once the consent has been handled.
    app.wait_for_emails(2).await;
    let mut later = step(REVOKING.procedure, "015182", "convalida");
    later["household"] = REVOKING.household();
    app.publish(&app.event("eviction.step.v1", later)).await;
    // An eviction event that cannot be processed keeps a household in the dead queue,
    // where only the masked body may be shown (C7).
    let mut bad = step("RG-DEAD-1/2026", "015182", "sgombero");
    bad["household"] = NEVER.household();
    app.publish(&app.event("eviction.step.v1", bad)).await;
    app.wait_for_emails(4).await;
    let dead = app.wait_for_dead(1).await;
    app.settle().await;

    assert!(
        app.emails_of("eviction.alert")
            .iter()
            .any(|m| m.text_body().unwrap_or_default().contains(REVOKING.name)),
        "the test can see the strings where consent allows them"
    );
    let cookie = login(addr).await;
    let privacy = login_as(addr, PRIVACY).await;
    assert_no_family_on_any_page(addr, &cookie, &dead[0].id).await;
    let audit = audit_without_family(addr, &privacy).await;
    assert!(
        audit.contains("servizisociali@comune.rho.example"),
        "the audit lists the alerts' recipients"
    );

    // Revocation: the same referents are told, with the docket number they already know.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    app.publish(&app.event(
        "eviction.consent.v1",
        consent(REVOKING.procedure, "revoked", None),
    ))
    .await;
    app.wait_for_emails(6).await;
    app.settle().await;
    assert_no_family_on_any_page(addr, &cookie, &dead[0].id).await;
    let audit = audit_without_family(addr, &privacy).await;
    assert!(audit.contains("eviction.consent_revoked"));
    app.cleanup().await;
}

#[tokio::test]
async fn raccordo_console_hashes_a_password_and_serves_the_console_alone() {
    use std::process::Stdio;
    use tokio::io::AsyncBufReadExt;

    let app = raccordo_e2e::prepare_with(|_| {}).await;
    let mut adding = app
        .command()
        .args(["console", "user", "add", OPERATOR, "--role", "operator"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("raccordo console user add starts");
    let mut stdin = adding.stdin.take().expect("stdin");
    stdin
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .await
        .expect("password written");
    drop(stdin);
    let out = adding.wait_with_output().await.expect("it ends");
    assert!(out.status.success());
    let entry = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        entry.starts_with(&format!(
            "{{ name = \"{OPERATOR}\", role = \"operator\", password_hash = \"$argon2id$"
        )),
        "{entry}"
    );

    let config = std::env::temp_dir().join(format!("{}-console.toml", app.settings.amqp.prefix));
    std::fs::write(
        &config,
        format!(
            "[console]\naddr = \"127.0.0.1:0\"\noperators = [{entry}, {{ name = \"vecchio\" }}]\n"
        ),
    )
    .expect("config written");
    let users = app
        .command()
        .args(["console", "users", "--format", "json"])
        .env("RACCORDO_CONFIG", &config)
        .output()
        .await
        .expect("raccordo console users runs");
    assert!(
        users.status.success(),
        "{}",
        String::from_utf8_lossy(&users.stderr)
    );
    let users: Value = serde_json::from_slice(&users.stdout).expect("JSON");
    assert_eq!(users[0]["name"], OPERATOR);
    assert_eq!(users[0]["role"], "operator");
    assert_eq!(users[0]["login"], "password");
    assert_eq!(users[1]["role"], "viewer", "an entry without a role");
    assert!(
        users[1]["note"]
            .as_str()
            .is_some_and(|n| n.contains("no role")),
        "{users}"
    );
    let mut child = app
        .command()
        .arg("console")
        .env("RACCORDO_CONFIG", &config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("raccordo console starts");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let line = tokio::time::timeout(std::time::Duration::from_secs(20), lines.next_line())
        .await
        .expect("it prints its address in time")
        .expect("stdout")
        .expect("a line");
    let addr: SocketAddr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("an address in {line:?}"));
    let r = request(addr, "GET", "/", None, None).await;
    assert_eq!(r.status, 303, "login required");
    let cookie = login(addr).await;
    let r = request(addr, "GET", "/", Some(&cookie), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("nessun consumatore"),
        "no worker runs beside it"
    );
    let _ = child.kill().await;
    let _ = std::fs::remove_file(&config);
    app.cleanup().await;
}

#[tokio::test]
async fn a_comune_s_history_shows_its_announcements_read_from_their_typed_payloads() {
    let (app, addr) = spawn_console().await;
    // Melegnano, quota 47: 24 presences reach half (excluded); the second report shows more
    // presences than places (over capacity).
    for (facility, capacity, presences) in [("CAS-H-1", 100, 24), ("CAS-H-2", 2, 3)] {
        app.publish(&app.event(
            "reception.occupancy.v1",
            json!({"facility_id": facility, "comune_istat": "015140", "reception_kind": "CAS",
                   "capacity": capacity, "presences": presences, "as_of": "2026-11-02"}),
        ))
        .await;
    }
    app.wait_for_emails(5).await;
    app.settle().await;
    let cookie = login(addr).await;
    let r = request(addr, "GET", "/coverage/015140", Some(&cookie), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("escluso dai bandi"), "{}", r.body);
    // 24 or 27 of 47, as the two consumers took the reports: the figure announced.
    let coverage: i64 = sqlx::query_scalar(
        "SELECT (payload->>'coverage')::BIGINT FROM notifications WHERE kind = 'quota.threshold'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("one threshold");
    assert!(r.body.contains(&format!("{coverage}/47 (")), "{}", r.body);
    assert!(
        r.body.contains("struttura oltre la capienza (CAS-H-2)"),
        "{}",
        r.body
    );
    app.cleanup().await;
}

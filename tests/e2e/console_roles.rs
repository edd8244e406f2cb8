//! Issue 17 in the console: roles on every route (F4), trusted proxies and the login limits
//! (F4), the aggregated eviction audit, paginated dead letters on one connection and bounded
//! report months (F6), replay-all on a snapshot and the purge of one message (F7), login
//! CSRF and the notice after an action (F8) — over HTTP against a running hub, the real
//! broker and PostgreSQL.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::Duration;

use raccordo_console::Access;
use raccordo_core::settings::{ConsoleRole, OperatorSettings};
use raccordo_e2e::TestApp;
use raccordo_e2e::families::{NEVER, REVOKING};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::console::{
    OPERATOR, PASSWORD, PRIVACY, VIEWER, csrf_of, form_encode, login_as, request, request_from,
    spawn_console, spawn_console_with, try_login_from, users,
};

/// A second loopback address: a trusted proxy in these tests.
const PROXY: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// A route's path with its parameters filled in.
fn concrete(path: &str, dead_id: &str) -> String {
    path.replace("{id}", dead_id)
        .replace("{istat}", "015146")
        .replace("{kind}", "quota.threshold")
}

/// A housing unit of a comune the registry does not know: dead-lettered, and again after
/// any replay until the comune is imported.
async fn publish_unknown_comune_unit(app: &TestApp, unit: &str) {
    app.publish(&app.event(
        "housing.unit.v1",
        json!({"unit_id": unit, "action": "offered", "comune_istat": "015999",
               "address": "Via Nuova 1", "places": 2, "reception_kind": "CAS",
               "building_type": "casa", "owner_declaration": true}),
    ))
    .await;
}

#[tokio::test]
async fn issue17_f4_a_viewer_gets_403_on_every_operator_and_privacy_route_and_sees_only_its_menu() {
    let (app, addr) = spawn_console().await;
    publish_unknown_comune_unit(&app, "ROLE-1").await;
    let dead = app.wait_for_dead(1).await;
    let dead_id = dead[0].id.clone();
    let routes = raccordo_console::server::routes();
    assert!(
        routes.iter().any(|r| r.2 == Access::Operator)
            && routes.iter().any(|r| r.2 == Access::Privacy),
        "the table names operator and privacy routes"
    );
    for (user, role) in [
        (VIEWER, ConsoleRole::Viewer),
        (OPERATOR, ConsoleRole::Operator),
        (PRIVACY, ConsoleRole::Privacy),
    ] {
        let cookie = login_as(addr, user).await;
        let home = request(addr, "GET", "/", Some(&cookie), None).await;
        assert_eq!(home.status, 200, "{}", home.body);
        let csrf = csrf_of(&home.body);
        // The navigation shows only what the role may open.
        assert_eq!(
            home.body.contains("href=\"/dead-letters\""),
            role == ConsoleRole::Operator,
            "{user}: dead letters in the menu"
        );
        assert_eq!(
            home.body.contains("href=\"/evictions/audit\""),
            role == ConsoleRole::Privacy,
            "{user}: the audit in the menu"
        );
        for (method, path, access) in &routes {
            // The login page is everybody's; logging out would end the session.
            if *access == Access::Public || *path == "/logout" {
                continue;
            }
            let target = concrete(path, &dead_id);
            // A role that may not act posts a real purge; one that may, a harmless form.
            let action = if access.admits(role) {
                "verifica"
            } else {
                "purge"
            };
            let form = (*method == "POST").then(|| {
                form_encode(&[
                    ("csrf", &csrf),
                    ("action", action),
                    ("holding", "all"),
                    (
                        "csv",
                        "referent_id,institution,role,email,name,comune_istat,ambito,zona\n",
                    ),
                ])
            });
            let r = request(addr, method, &target, Some(&cookie), form.as_deref()).await;
            if access.admits(role) {
                assert_ne!(
                    r.status, 403,
                    "{user} ({role:?}) may {method} {target}: {}",
                    r.body
                );
            } else {
                assert_eq!(r.status, 403, "{user} ({role:?}) may not {method} {target}");
                assert!(
                    r.body.contains("Accesso negato"),
                    "the 403 page says why, in Italian: {}",
                    r.body
                );
                assert!(!r.body.contains(&dead_id), "nothing of the dead letter");
            }
        }
    }
    // The purge the viewer and the privacy officer posted was refused: the letter is there.
    app.settle().await;
    assert_eq!(app.dead_letters().await.len(), 1, "nothing was purged");
    let purges: i64 =
        sqlx::query_scalar("SELECT count(*) FROM console_actions WHERE role <> 'operator'")
            .fetch_one(&app.pool)
            .await
            .expect("count");
    assert_eq!(purges, 0, "no action recorded for another role");
    app.cleanup().await;
}

/// A hub whose console believes `X-Remote-User` from [`PROXY`] only: `m.rossi` (viewer) comes
/// only through the proxy, the users of [`users`] log in with their password.
async fn spawn_proxied_console() -> (TestApp, SocketAddr) {
    spawn_console_with(|s| {
        s.console.trusted_user_header = "X-Remote-User".into();
        s.console.trusted_proxies = vec![format!("{PROXY}/32")];
        let mut all = users();
        all.push(OperatorSettings {
            name: "m.rossi".into(),
            password_hash: None,
            role: Some(ConsoleRole::Viewer),
        });
        all.push(OperatorSettings {
            name: "o.verdi".into(),
            password_hash: None,
            role: Some(ConsoleRole::Operator),
        });
        // An entry of before roles: a password user, never named by the proxy.
        all.push(OperatorSettings {
            name: "vecchio".into(),
            password_hash: users()[0].password_hash.clone(),
            role: None,
        });
        s.console.operators = all;
    })
    .await
}

#[tokio::test]
async fn issue17_f4_the_proxy_header_is_believed_only_from_a_trusted_address() {
    let (app, addr) = spawn_proxied_console().await;
    let header = ["X-Remote-User: o.verdi".to_owned()];
    // From 127.0.0.1, which is not a trusted proxy: the header is ignored.
    let r = request_from(None, addr, "GET", "/dead-letters", &header, None).await;
    assert_eq!(r.status, 303, "an untrusted address gets the login page");
    assert_eq!(r.header("location"), Some("/login"));
    assert!(r.cookie("raccordo_console").is_none());
    // From the proxy: believed, for a configured user, with that user's role.
    let r = request_from(Some(PROXY), addr, "GET", "/dead-letters", &header, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("o.verdi"));
    let r = request_from(
        Some(PROXY),
        addr,
        "GET",
        "/dead-letters",
        &["X-Remote-User: m.rossi".to_owned()],
        None,
    )
    .await;
    assert_eq!(r.status, 403, "m.rossi is a viewer");
    app.cleanup().await;
}

#[tokio::test]
async fn issue17_f7_the_proxy_header_gives_no_session_to_an_unknown_name_nor_replaces_a_password_session()
 {
    let (app, addr) = spawn_proxied_console().await;
    // A name the console does not know, or knows without a role, gets no session, even
    // from the proxy.
    for name in ["intruso", "vecchio"] {
        let r = request_from(
            Some(PROXY),
            addr,
            "GET",
            "/",
            &[format!("X-Remote-User: {name}")],
            None,
        )
        .await;
        assert_eq!(r.status, 403, "{name}: {}", r.body);
        assert!(
            r.cookie("raccordo_console").is_none(),
            "no session for {name}"
        );
        assert!(!r.body.contains(name), "the name is not echoed");
    }

    // The Tavolo logs in with its password (a viewer); a request through the proxy naming
    // an operator does not turn that session into the operator's.
    let cookie = try_login_from(Some(PROXY), addr, VIEWER, PASSWORD).await;
    assert_eq!(cookie.status, 303, "{}", cookie.body);
    let session = cookie.cookie("raccordo_console").expect("a session");
    let lines = [
        format!("Cookie: raccordo_console={session}"),
        "X-Remote-User: o.verdi".to_owned(),
    ];
    let r = request_from(Some(PROXY), addr, "GET", "/dead-letters", &lines, None).await;
    assert_eq!(r.status, 403, "still the viewer: {}", r.body);
    assert!(r.cookie("raccordo_console").is_none(), "no new session");
    let r = request_from(Some(PROXY), addr, "GET", "/", &lines, None).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains(VIEWER) && !r.body.contains("o.verdi"));
    // And the next request, without the header, is still the viewer's.
    let r = request(
        addr,
        "GET",
        "/dead-letters",
        Some(&format!("raccordo_console={session}")),
        None,
    )
    .await;
    assert_eq!(r.status, 403);
    app.cleanup().await;
}

#[tokio::test]
async fn issue17_f4_failed_logins_are_limited_per_user_and_per_address_with_429_and_retry_after() {
    let (app, addr) = spawn_console_with(|s| {
        s.console.login_failures_per_user = 3;
        s.console.login_failures_per_address = 6;
    })
    .await;
    let from = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)));
    for _ in 0..3 {
        let r = try_login_from(from, addr, OPERATOR, "sbagliata").await;
        assert_eq!(r.status, 401);
    }
    // The name is locked: the right password too is refused, from any address.
    for at in [from, Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 4)))] {
        let r = try_login_from(at, addr, OPERATOR, PASSWORD).await;
        assert_eq!(r.status, 429, "{}", r.body);
        let wait: u64 = r
            .header("retry-after")
            .and_then(|v| v.parse().ok())
            .expect("a Retry-After in seconds");
        assert!((1..=15 * 60).contains(&wait), "{wait}");
        assert!(r.body.contains("Troppi tentativi"), "{}", r.body);
        assert!(r.cookie("raccordo_console").is_none());
    }
    // Another user from the same address still logs in, until the address is locked.
    assert_eq!(
        try_login_from(from, addr, PRIVACY, PASSWORD).await.status,
        303
    );
    for name in ["a", "b", "c"] {
        assert_eq!(try_login_from(from, addr, name, "x").await.status, 401);
    }
    let r = try_login_from(from, addr, PRIVACY, PASSWORD).await;
    assert_eq!(r.status, 429, "the address is locked after 6 failures");
    assert!(r.header("retry-after").is_some());
    let elsewhere = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 5)));
    assert_eq!(
        try_login_from(elsewhere, addr, PRIVACY, PASSWORD)
            .await
            .status,
        303
    );
    app.cleanup().await;
}

#[tokio::test]
async fn issue17_f8_weak_hashes_are_refused_at_start_and_the_cookie_is_secure_off_loopback() {
    use argon2::password_hash::{PasswordHasher, SaltString};

    let app = raccordo_e2e::prepare_with(|_| {}).await;
    let weak = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(1024, 1, 1, None).expect("params"),
    )
    .hash_password(
        PASSWORD.as_bytes(),
        &SaltString::encode_b64(b"0123456789abcdef").expect("salt"),
    )
    .expect("hash")
    .to_string();
    let mut settings = app.settings.clone();
    settings.console.addr = "127.0.0.1:0".into();
    settings.console.operators = vec![OperatorSettings {
        name: "debole".into(),
        password_hash: Some(weak.into()),
        role: Some(ConsoleRole::Operator),
    }];
    let token = tokio_util::sync::CancellationToken::new();
    let refused = raccordo_console::serve_console(
        std::sync::Arc::new(settings.clone()),
        app.pool.clone(),
        None,
        token.clone(),
    )
    .await;
    let error = refused
        .expect_err("a weak hash stops the console")
        .to_string();
    assert!(
        error.contains("debole") && error.contains("m=1024"),
        "{error}"
    );

    // Listening on every address, the session cookie is Secure.
    settings.console.addr = "0.0.0.0:0".into();
    settings.console.operators = users();
    let (bound, handle) = raccordo_console::serve_console(
        std::sync::Arc::new(settings),
        app.pool.clone(),
        None,
        token.clone(),
    )
    .await
    .expect("the console starts");
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), bound.port());
    let r = try_login_from(None, addr, VIEWER, PASSWORD).await;
    assert_eq!(r.status, 303);
    let set = r.header("set-cookie").expect("a cookie");
    assert!(set.contains("Secure"), "{set}");
    token.cancel();
    let _ = handle.await;
    app.cleanup().await;
}

#[tokio::test]
async fn issue17_f8_the_login_form_needs_its_own_token_and_the_notice_is_the_hub_s_own() {
    let (app, addr) = spawn_console().await;
    // A login posted from elsewhere carries neither the form's cookie nor its token.
    let forged = request(
        addr,
        "POST",
        "/login",
        None,
        Some(&form_encode(&[("user", OPERATOR), ("password", PASSWORD)])),
    )
    .await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert!(forged.cookie("raccordo_console").is_none());
    // A token that is not the cookie's is refused as well.
    let page = request(addr, "GET", "/login", None, None).await;
    let token = page.cookie("raccordo_login").expect("the form's cookie");
    let mismatched = request(
        addr,
        "POST",
        "/login",
        Some(&format!("raccordo_login={token}")),
        Some(&form_encode(&[
            ("user", OPERATOR),
            ("password", PASSWORD),
            ("login_csrf", &"0".repeat(64)),
        ])),
    )
    .await;
    assert_eq!(mismatched.status, 403);
    assert!(mismatched.cookie("raccordo_console").is_none());

    // The notice after an action: never text from the URL (a number, or a 400: issue 24).
    let cookie = login_as(addr, OPERATOR).await;
    let echoed = request(
        addr,
        "GET",
        "/dead-letters?esito=Tutti+i+dati+sono+stati+cancellati",
        Some(&cookie),
        None,
    )
    .await;
    assert_eq!(echoed.status, 400);
    assert!(!echoed.body.contains("Tutti i dati"), "not echoed");
    assert!(!echoed.body.contains("role=\"status\""), "no notice at all");
    let other = request(addr, "GET", "/dead-letters?esito=1", Some(&cookie), None).await;
    assert!(
        !other.body.contains("role=\"status\""),
        "no such action of this user"
    );
    app.cleanup().await;
}

/// A TCP proxy on loopback that delays everything the upstream sends by `delay`: a broker
/// far away, as the console may see it.
async fn delaying_proxy(
    upstream: SocketAddr,
    delay: Duration,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("bound");
    let task = tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(upstream).await else {
                continue;
            };
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
            });
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match server_read.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    tokio::time::sleep(delay).await;
                    if client_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, task)
}

/// The broker's address from `amqp.url`.
fn broker_addr(app: &TestApp) -> (SocketAddr, url::Url) {
    use secrecy::ExposeSecret;
    let url = url::Url::parse(app.settings.amqp.url.expose_secret()).expect("amqp.url");
    let host: IpAddr = url
        .host_str()
        .and_then(|h| h.parse().ok())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    (SocketAddr::new(host, url.port().unwrap_or(5672)), url)
}

/// The sum of a counter over its labels in Prometheus text.
fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

#[tokio::test]
async fn issue17_f7_replay_all_of_two_messages_that_fail_again_replays_each_once_and_says_2() {
    // The workers run here, next to the broker; the console runs on its own and reaches the
    // broker through 100 ms of latency, so a replayed message that fails again is back in
    // the dead queue long before a replay loop would have finished.
    let app = raccordo_e2e::spawn_app().await;
    for unit in ["SNAP-1", "SNAP-2"] {
        publish_unknown_comune_unit(&app, unit).await;
    }
    let before: Vec<String> = app
        .wait_for_dead(2)
        .await
        .into_iter()
        .map(|m| m.id)
        .collect();
    app.settle().await;
    let dead_lettered = counter(
        &app.metrics().await,
        "raccordo_messages_dead_lettered_total",
    );
    let (upstream, mut url) = broker_addr(&app);
    let (proxy, proxy_task) = delaying_proxy(upstream, Duration::from_millis(100)).await;
    url.set_port(Some(proxy.port())).expect("a port");
    url.set_host(Some("127.0.0.1")).expect("a host");

    let hash = raccordo_console::hash_password(PASSWORD).expect("hash");
    let entry = raccordo_console::users::entry(OPERATOR, ConsoleRole::Operator, Some(&hash))
        .expect("an entry");
    let config = std::env::temp_dir().join(format!("{}-replay.toml", app.settings.amqp.prefix));
    std::fs::write(
        &config,
        format!("[console]\naddr = \"127.0.0.1:0\"\noperators = [{entry}]\n"),
    )
    .expect("config written");
    let mut child = app
        .command()
        .arg("console")
        .env("RACCORDO_CONFIG", &config)
        .env("RACCORDO__AMQP__URL", url.as_str())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("raccordo console starts");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
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

    let cookie = login_as(addr, OPERATOR).await;
    let confirm = request(
        addr,
        "GET",
        "/dead-letters/confirm?action=replay&holding=dead",
        Some(&cookie),
        None,
    )
    .await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    let csrf = csrf_of(&confirm.body);
    let done = tokio::time::timeout(
        Duration::from_secs(30),
        request(
            addr,
            "POST",
            "/dead-letters/action",
            Some(&cookie),
            Some(&form_encode(&[
                ("csrf", &csrf),
                ("action", "replay"),
                ("holding", "dead"),
            ])),
        ),
    )
    .await
    .expect("replay-all ends: each held message is replayed once, not until the queue is empty");
    assert_eq!(done.status, 303, "{}", done.body);
    let location = done
        .header("location")
        .expect("back to the list")
        .to_owned();
    let list = request(addr, "GET", &location, Some(&cookie), None).await;
    assert!(
        list.body.contains("2 messaggi reinviati."),
        "the notice says 2: {}",
        list.body
    );
    let recorded: (String, Option<String>, i32) = sqlx::query_as(
        "SELECT operator, role, affected FROM console_actions WHERE action = 'replay'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("one replay recorded");
    assert_eq!(
        recorded,
        (OPERATOR.to_owned(), Some("operator".to_owned()), 2)
    );

    // Each came back once, with a new id; nothing is replayed behind the operator's back.
    app.settle().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = app.dead_letters().await;
    assert_eq!(after.len(), 2);
    assert!(after.iter().all(|m| !before.contains(&m.id)), "held anew");
    assert_eq!(
        counter(
            &app.metrics().await,
            "raccordo_messages_dead_lettered_total"
        ) - dead_lettered,
        2,
        "each was replayed, and failed, exactly once"
    );

    // `raccordo dlq replay --all` takes the same snapshot, through the same distance.
    let cli = tokio::time::timeout(
        Duration::from_secs(30),
        app.command()
            .args(["dlq", "replay", "--all", "--queue", "dead"])
            .env("RACCORDO__AMQP__URL", url.as_str())
            .output(),
    )
    .await
    .expect("dlq replay --all ends")
    .expect("it runs");
    let out = String::from_utf8_lossy(&cli.stdout);
    assert!(cli.status.success(), "{out}");
    assert!(out.contains("Replayed 2 message(s)"), "{out}");
    app.settle().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.dead_letters().await.len(), 2);
    assert_eq!(
        counter(
            &app.metrics().await,
            "raccordo_messages_dead_lettered_total"
        ) - dead_lettered,
        4
    );
    let _ = child.kill().await;
    proxy_task.abort();
    let _ = std::fs::remove_file(&config);
    app.cleanup().await;
}

#[tokio::test]
async fn issue17_f7_the_purge_of_one_message_leaves_the_others() {
    let (app, addr) = spawn_console().await;
    for unit in ["PURGE-1", "PURGE-2", "PURGE-3"] {
        publish_unknown_comune_unit(&app, unit).await;
    }
    let held: Vec<String> = app
        .wait_for_dead(3)
        .await
        .into_iter()
        .map(|m| m.id)
        .collect();
    app.settle().await;
    let cookie = login_as(addr, OPERATOR).await;
    let detail = request(
        addr,
        "GET",
        &format!("/dead-letters/{}", held[1]),
        Some(&cookie),
        None,
    )
    .await;
    assert!(
        detail.body.contains("Elimina questo messaggio"),
        "a button for this message"
    );
    let confirm = request(
        addr,
        "GET",
        &format!(
            "/dead-letters/confirm?action=purge&holding=dead&id={}",
            held[1]
        ),
        Some(&cookie),
        None,
    )
    .await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    assert!(confirm.body.contains(&held[1]));
    let done = request(
        addr,
        "POST",
        "/dead-letters/action",
        Some(&cookie),
        Some(&form_encode(&[
            ("csrf", &csrf_of(&confirm.body)),
            ("action", "purge"),
            ("holding", "dead"),
            ("id", &held[1]),
        ])),
    )
    .await;
    assert_eq!(done.status, 303, "{}", done.body);
    let list = request(
        addr,
        "GET",
        done.header("location").expect("location"),
        Some(&cookie),
        None,
    )
    .await;
    assert!(
        list.body.contains("1 messaggio eliminato."),
        "{}",
        list.body
    );
    let left: Vec<String> = app.dead_letters().await.into_iter().map(|m| m.id).collect();
    assert_eq!(
        left,
        vec![held[0].clone(), held[2].clone()],
        "the others, in order"
    );
    let recorded: (String, Option<String>, Option<String>, i32) =
        sqlx::query_as("SELECT action, role, target, affected FROM console_actions")
            .fetch_one(&app.pool)
            .await
            .expect("one action");
    assert_eq!(
        recorded,
        (
            "purge".into(),
            Some("operator".into()),
            Some(held[1].clone()),
            1
        )
    );

    // `raccordo dlq purge ID` removes one; an unknown id removes nothing and fails.
    let cli = app
        .command()
        .args(["dlq", "purge", &held[0]])
        .output()
        .await
        .expect("runs");
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    let cli = app
        .command()
        .args(["dlq", "purge", "no-such-id"])
        .output()
        .await
        .expect("runs");
    assert_eq!(cli.status.code(), Some(1));
    let left: Vec<String> = app.dead_letters().await.into_iter().map(|m| m.id).collect();
    assert_eq!(left, vec![held[2].clone()]);
    app.cleanup().await;
}

#[tokio::test]
async fn issue17_f6_report_months_are_bounded_in_the_console_and_the_cli() {
    let (app, addr) = spawn_console().await;
    let viewer = login_as(addr, VIEWER).await;
    let privacy = login_as(addr, PRIVACY).await;
    for month in ["1900-01", "9999-12", "0000-01", "+999-01", "2026-13"] {
        for (path, cookie) in [("/evictions", &viewer), ("/evictions/audit", &privacy)] {
            let r = request(
                addr,
                "GET",
                &format!("{path}?month={month}"),
                Some(cookie),
                None,
            )
            .await;
            assert_eq!(r.status, 400, "{path}?month={month}: {}", r.body);
            assert!(r.body.contains("Mese non valido"), "{}", r.body);
        }
        let cli = app
            .command()
            .args(["report", "evictions", "--month", month])
            .output()
            .await
            .expect("runs");
        assert_eq!(
            cli.status.code(),
            Some(2),
            "report evictions --month {month}"
        );
        assert!(!String::from_utf8_lossy(&cli.stderr).is_empty());
    }
    let r = request(addr, "GET", "/evictions?month=2000-01", Some(&viewer), None).await;
    assert_eq!(r.status, 200, "the first month is served");
    app.cleanup().await;
}

#[tokio::test]
async fn issue17_f6_the_eviction_audit_is_aggregated_as_the_statistics_and_only_for_privacy() {
    let (app, addr) = spawn_console().await;
    // Two families of Rho consent: each alert goes to the same two offices of the servizi sociali.
    for family in [&REVOKING, &NEVER] {
        let mut first = json!({"procedure_id": family.procedure, "step": "intimazione",
            "occurred_on": raccordo_core::domain::format_date(raccordo_core::clock::rome_date(raccordo_core::clock::now())),
            "comune_istat": "015182", "info_material_delivered": true});
        first["household"] = family.household();
        app.publish(&app.event("eviction.step.v1", first)).await;
        // The step first: a consent handled before it would alert again at the step (C3).
        app.settle().await;
        let at = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .expect("formattable");
        app.publish(&app.event(
            "eviction.consent.v1",
            json!({"procedure_id": family.procedure, "comune_istat": "015182",
                   "decision": "granted", "recorded_by": "Sportello sociale di Rho",
                   "recorded_at": at, "contact": family.contact()}),
        ))
        .await;
    }
    app.wait_for_emails(4).await;
    app.settle().await;
    let alerts: i64 =
        sqlx::query_scalar("SELECT count(*) FROM notifications WHERE kind = 'eviction.alert'")
            .fetch_one(&app.pool)
            .await
            .expect("count");
    assert_eq!(alerts, 2, "one alert per family");

    let viewer = login_as(addr, VIEWER).await;
    let r = request(addr, "GET", "/evictions/audit", Some(&viewer), None).await;
    assert_eq!(r.status, 403, "not for the Tavolo");
    let stats = request(addr, "GET", "/evictions", Some(&viewer), None).await;
    assert_eq!(stats.status, 200);
    assert!(
        !stats.body.contains("servizisociali@comune.rho.example"),
        "the statistics name no recipient"
    );

    let privacy = login_as(addr, PRIVACY).await;
    let r = request(addr, "GET", "/evictions/audit", Some(&privacy), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let table = r
        .body
        .split("id=\"audit\"")
        .nth(1)
        .and_then(|t| t.split("</table>").next())
        .expect("the audit table")
        .to_owned();
    // One row per comune, kind and office, however many families: the two alerts to the
    // office of Rho are one row, counted as <3.
    let rows: Vec<&str> = table
        .split("<tr>")
        .filter(|row| {
            row.contains("eviction.alert") && row.contains("servizisociali@comune.rho.example")
        })
        .collect();
    assert_eq!(rows.len(), 1, "{table}");
    assert!(rows[0].contains("&lt;3"), "{}", rows[0]);
    assert!(
        !rows[0].contains(">2<") && !rows[0].contains(">1<"),
        "{}",
        rows[0]
    );
    let consents = r
        .body
        .split("id=\"consents\"")
        .nth(1)
        .expect("the consents");
    assert!(
        consents.contains("Rho") && consents.contains("&lt;3"),
        "{consents}"
    );
    for s in NEVER.strings().into_iter().chain(REVOKING.strings()) {
        assert!(!r.body.contains(s), "{s:?} on the audit");
    }
    app.cleanup().await;
}

#[tokio::test]
async fn issue17_f6_dead_letters_are_paged_within_a_byte_budget_on_one_shared_connection() {
    // A message larger than a page's budget, dead-lettered whole: an installation may allow
    // bodies above 1 MiB (over amqp.max_message_bytes one is held cut to it), then 55 others.
    let (app, addr) = spawn_console_with(|s| s.amqp.max_message_bytes = 2 * 1024 * 1024).await;
    let huge = json!({"specversion": "1.0", "id": "huge-1", "source": "urn:test", "type": "housing.unit.v1",
                      "data": {"notes": "x".repeat(1_200_000)}});
    app.publish_raw("housing.unit.v1", &serde_json::to_vec(&huge).expect("json"))
        .await;
    app.wait_for_dead(1).await;
    for i in 0..55 {
        publish_unknown_comune_unit(&app, &format!("PAGE-{i}")).await;
    }
    let held = app.wait_for_dead(56).await;
    app.settle().await;
    let cookie = login_as(addr, OPERATOR).await;
    let first = request(addr, "GET", "/dead-letters", Some(&cookie), None).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let rows = |html: &str| html.matches("Apri<span").count();
    assert_eq!(
        rows(&first.body),
        1,
        "the huge message fills the page's budget"
    );
    assert!(first.body.contains("1 MiB"), "the page says why it stops");
    assert!(first.body.contains("da=1"), "a link to the next page");
    let second = request(
        addr,
        "GET",
        "/dead-letters?coda=all&da=1",
        Some(&cookie),
        None,
    )
    .await;
    assert_eq!(rows(&second.body), 50);
    assert!(second.body.contains("da=51"));
    let third = request(
        addr,
        "GET",
        "/dead-letters?coda=all&da=51",
        Some(&cookie),
        None,
    )
    .await;
    assert_eq!(rows(&third.body), 5);
    assert!(!third.body.contains("rel=\"next\""));
    // The huge one opens without its body being parsed or shown.
    let detail = request(
        addr,
        "GET",
        &format!("/dead-letters/{}", held[0].id),
        Some(&cookie),
        None,
    )
    .await;
    assert_eq!(detail.status, 200);
    assert!(
        detail.body.contains("not shown"),
        "{}",
        &detail.body[..detail.body.len().min(3000)]
    );
    assert!(detail.body.len() < 100_000, "the page holds no megabyte");
    let bad = request(addr, "GET", "/dead-letters?da=999999", Some(&cookie), None).await;
    assert_eq!(bad.status, 400);
    // Every view went over one connection, which the console keeps.
    let name = format!("{}:console", app.settings.amqp.prefix);
    let connections = tokio::process::Command::new("rabbitmqctl")
        .args([
            "list_connections",
            "client_properties",
            "-q",
            "--no-table-headers",
        ])
        .output()
        .await
        .expect("rabbitmqctl runs");
    let listed = String::from_utf8_lossy(&connections.stdout);
    assert_eq!(
        listed
            .lines()
            .filter(|l| l.contains(&format!("\"{name}\"")))
            .count(),
        1,
        "one console connection: {listed}"
    );
    app.cleanup().await;
}

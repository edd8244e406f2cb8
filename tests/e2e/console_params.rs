//! Issue 24, part 4, in the console: every query parameter and form read into its type and
//! bounds, anything else the console's Italian 400 page (415 for a form of another type)
//! with its security headers — never axum's English rejection text, never a database
//! refusal reported as an outage — over HTTP against a running hub.

use std::net::SocketAddr;

use raccordo_core::clock::{YearMonth, now, rome_date};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::console::{
    OPERATOR, PRIVACY, Response, VIEWER, csrf_of, form_encode, login_as, request, spawn_console,
};

/// What axum and serde say when they refuse a request: never on a console page.
const ENGLISH: [&str; 8] = [
    "Failed to deserialize",
    "Form requests must have",
    "Content-Type",
    "Invalid URL",
    "duplicate field",
    "missing field",
    "invalid digit",
    "Expected request with",
];

/// `r` is the console's Italian error page with this status, with its headers.
fn assert_italian_page(r: &Response, status: u16, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.body);
    let content_type = r.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/html"),
        "{what}: {content_type}"
    );
    assert!(
        r.body.contains("<html lang=\"it\">") && r.body.contains(&format!("Errore {status}")),
        "{what}: {}",
        r.body
    );
    for phrase in ENGLISH {
        assert!(!r.body.contains(phrase), "{what}: «{phrase}» in {}", r.body);
    }
    let csp = r.header("content-security-policy").unwrap_or_default();
    assert!(csp.starts_with("default-src 'self'"), "{what}: {csp}");
    assert_eq!(
        r.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(r.header("x-frame-options"), Some("DENY"), "{what}");
}

/// A POST with this Content-Type (none when `None`) and body, with the session cookie.
async fn post_raw(
    addr: SocketAddr,
    path: &str,
    cookie: &str,
    content_type: Option<&str>,
    body: &str,
) -> Response {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("the console accepts connections");
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nCookie: {cookie}\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(t) = content_type {
        head.push_str(&format!("Content-Type: {t}\r\n"));
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

#[tokio::test]
async fn issue24_report_months_out_of_range_are_italian_400s_never_an_outage() {
    let (app, addr) = spawn_console().await;
    let viewer = login_as(addr, VIEWER).await;
    let privacy = login_as(addr, PRIVACY).await;
    for month in [
        "9999-12", "0000-01", "2026-13", "abc", "1999-12", "2026-00", "-001-12",
    ] {
        for (path, cookie) in [("/evictions", &viewer), ("/evictions/audit", &privacy)] {
            let what = format!("{path}?month={month}");
            let r = request(addr, "GET", &what, Some(cookie), None).await;
            assert_ne!(r.status, 503, "{what}: not an outage");
            assert_italian_page(&r, 400, &what);
            assert!(r.body.contains("Mese non valido"), "{what}: {}", r.body);
            assert!(r.body.contains("«month»"), "{what}: names the parameter");
            assert!(!r.body.contains("gennaio 0"), "{what}");
        }
    }
    let current = YearMonth::current().to_string();
    for (path, cookie) in [("/evictions", &viewer), ("/evictions/audit", &privacy)] {
        for query in [
            String::new(),
            format!("?month={current}"),
            "?month=2000-01".into(),
            "?month=".into(),
        ] {
            let r = request(addr, "GET", &format!("{path}{query}"), Some(cookie), None).await;
            assert_eq!(r.status, 200, "{path}{query}: {}", r.body);
        }
    }
    app.cleanup().await;
}

#[tokio::test]
async fn issue24_a_repeated_unknown_or_odd_parameter_of_every_page_is_an_italian_400() {
    let (app, addr) = spawn_console().await;
    let operator = login_as(addr, OPERATOR).await;
    let privacy = login_as(addr, PRIVACY).await;
    let long = "x".repeat(400);
    let bad: Vec<(String, &str, &str)> = vec![
        // Evictions.
        (
            "/evictions?month=2026-01&month=2026-02".into(),
            "«month» ripetuto",
            "",
        ),
        ("/evictions?mese=2026-01".into(), "«mese» non previsto", ""),
        (
            "/evictions/audit?month=2026-01&month=2026-01".into(),
            "«month» ripetuto",
            "privacy",
        ),
        // The Tavolo.
        ("/tavolo?year=abc".into(), "«year»", ""),
        ("/tavolo?year=1999".into(), "«year»", ""),
        ("/tavolo?year=999999".into(), "«year»", ""),
        ("/tavolo?year=2026&year=2025".into(), "«year» ripetuto", ""),
        ("/tavolo?anno=2026".into(), "«anno» non previsto", ""),
        // Deliveries.
        ("/deliveries?da=abc".into(), "«da»", ""),
        ("/deliveries?da=-1".into(), "«da»", ""),
        ("/deliveries?da=99999999999999999999".into(), "«da»", ""),
        ("/deliveries?tipo=nessuno.tipo".into(), "«tipo»", ""),
        ("/deliveries?comune=12".into(), "«comune»", ""),
        ("/deliveries?stato=lost".into(), "«stato»", ""),
        ("/deliveries?dal=9999-99-99".into(), "«dal»", ""),
        ("/deliveries?al=0000-01-01".into(), "«al»", ""),
        (
            "/deliveries?tipo=housing.ack&tipo=housing.offered".into(),
            "«tipo» ripetuto",
            "",
        ),
        (
            format!("/deliveries?destinatario={long}"),
            "troppo lungo",
            "",
        ),
        (
            "/deliveries?destinatario=a%07b".into(),
            "caratteri di controllo",
            "",
        ),
        ("/deliveries?page=2".into(), "«page» non previsto", ""),
        // Routing.
        (
            "/routing?comune=abc&kind=eviction.alert".into(),
            "«comune»",
            "",
        ),
        (
            "/routing?comune=015999&kind=eviction.alert".into(),
            "«comune»",
            "",
        ),
        ("/routing?comune=015146&kind=nessuno".into(), "«kind»", ""),
        (
            "/routing?comune=015146&comune=015182&kind=eviction.alert".into(),
            "«comune» ripetuto",
            "",
        ),
        // Dead letters.
        ("/dead-letters?coda=tutte".into(), "«coda»", ""),
        ("/dead-letters?da=abc".into(), "«da»", ""),
        ("/dead-letters?da=999999".into(), "«da»", ""),
        ("/dead-letters?esito=abc".into(), "«esito»", ""),
        ("/dead-letters?esito=0".into(), "«esito»", ""),
        (
            "/dead-letters?coda=all&coda=dead".into(),
            "«coda» ripetuto",
            "",
        ),
        ("/dead-letters/confirm".into(), "«action»", ""),
        ("/dead-letters/confirm?action=boh".into(), "«action»", ""),
        (
            "/dead-letters/confirm?action=replay&holding=tutte".into(),
            "«holding»",
            "",
        ),
        (
            "/dead-letters/confirm?action=purge&id=%3Cscript%3E".into(),
            "«id»",
            "",
        ),
        (
            format!("/dead-letters/confirm?action=purge&id={}", "a".repeat(65)),
            "«id»",
            "",
        ),
        // A path segment that is not text.
        ("/coverage/%FF".into(), "Indirizzo non valido", ""),
        ("/deliveries/%FF%FE".into(), "Indirizzo non valido", ""),
    ];
    for (path, expected, who) in &bad {
        let cookie = if *who == "privacy" {
            &privacy
        } else {
            &operator
        };
        let r = request(addr, "GET", path, Some(cookie), None).await;
        assert_italian_page(&r, 400, path);
        assert!(
            r.body.contains(expected),
            "{path}: «{expected}» in {}",
            r.body
        );
        assert!(!r.body.contains(&long), "{path}: the value is not echoed");
        assert!(!r.body.contains("<script>"), "{path}: nothing raw");
    }
    // A long unknown name is cut, and escaped.
    let name = format!("%3Cb%3E{}", "n".repeat(200));
    let r = request(
        addr,
        "GET",
        &format!("/evictions?{name}=1"),
        Some(&operator),
        None,
    )
    .await;
    assert_italian_page(&r, 400, "a long name");
    assert!(!r.body.contains(&"n".repeat(40)), "{}", r.body);
    assert!(
        !r.body.contains("<b>") && r.body.contains("&lt;b&gt;"),
        "{}",
        r.body
    );

    // Every page with sensible values still answers.
    let year = rome_date(now()).year();
    let current = YearMonth::current().to_string();
    let good = [
        "/".to_owned(),
        "/?qualsiasi=1".into(),
        "/coverage".into(),
        "/coverage/015146".into(),
        "/emails".into(),
        "/upload".into(),
        format!("/evictions?month={current}"),
        "/tavolo".into(),
        format!("/tavolo?year={year}"),
        "/tavolo?year=2000".into(),
        "/deliveries".into(),
        "/deliveries?tipo=&comune=&destinatario=&stato=&dal=&al=".into(),
        "/deliveries?stato=sent&tipo=housing.ack&comune=015146&destinatario=comune&dal=2026-01-01&al=2026-12-31&da=0".into(),
        "/deliveries?da=100".into(),
        "/routing".into(),
        "/routing?comune=&kind=".into(),
        "/routing?comune=015146".into(),
        "/routing?comune=015182&kind=eviction.alert".into(),
        "/dead-letters".into(),
        "/dead-letters?coda=dead&da=0".into(),
        "/dead-letters?coda=parked&da=".into(),
        "/dead-letters?esito=1".into(),
        "/dead-letters/confirm?action=replay&holding=all".into(),
        "/dead-letters/confirm?action=purge&holding=dead&id=6f1c7f5e-0000-4000-8000-000000000000"
            .into(),
    ];
    for path in &good {
        let r = request(addr, "GET", path, Some(&operator), None).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
    }
    let r = request(
        addr,
        "GET",
        &format!("/evictions/audit?month={current}"),
        Some(&privacy),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    app.cleanup().await;
}

#[tokio::test]
async fn issue24_a_form_of_another_type_or_with_a_repeated_field_is_an_italian_page() {
    let (app, addr) = spawn_console().await;
    let operator = login_as(addr, OPERATOR).await;
    let page = request(addr, "GET", "/", Some(&operator), None).await;
    let csrf = csrf_of(&page.body);
    let fields = form_encode(&[("csrf", &csrf), ("action", "replay"), ("holding", "all")]);
    for path in [
        "/dead-letters/action",
        "/routing/referents",
        "/upload/preview",
        "/upload/publish",
        "/logout",
        "/login",
    ] {
        for content_type in [Some("text/plain"), Some("application/json"), None] {
            let what = format!("POST {path} as {content_type:?}");
            let r = post_raw(addr, path, &operator, content_type, &fields).await;
            assert_italian_page(&r, 415, &what);
            assert!(r.body.contains("Il modulo"), "{what}: {}", r.body);
        }
    }
    // A repeated field: which action would be taken?
    let repeated = format!("{fields}&action=purge");
    let r = request(
        addr,
        "POST",
        "/dead-letters/action",
        Some(&operator),
        Some(&repeated),
    )
    .await;
    assert_italian_page(&r, 400, "a repeated field");
    assert!(r.body.contains("ripetuto"), "{}", r.body);
    let r = request(
        addr,
        "POST",
        "/dead-letters/action",
        Some(&operator),
        Some(&form_encode(&[("csrf", &csrf), ("action", "boh")])),
    )
    .await;
    assert_italian_page(&r, 400, "an unknown action");
    assert!(r.body.contains("«action»"), "{}", r.body);
    // Still logged in: nothing was done with the refused forms.
    let r = request(addr, "GET", "/", Some(&operator), None).await;
    assert_eq!(r.status, 200);
    app.cleanup().await;
}

//! The referents' own preferences page and one-click unsubscribe (issue 22), end to end:
//! the real hub and console over the real database, the links signed as the mailer signs
//! them (`PreferenceLinks` with `ack.key`).

use raccordo_core::notification::NotificationKind;
use raccordo_core::preference_link::PreferenceLinks;
use raccordo_core::preferences::{LocalTime, Mode, Preferences, QuietHours, Window};
use raccordo_core::registry::{load_preferences, referent_history};
use raccordo_e2e::TestApp;
use time::OffsetDateTime;

use crate::console::{Response, form_encode, request, spawn_console_with};

const PUBLIC_URL: &str = "https://raccordo.cittametropolitana.mi.example";
const KEY: &str = "a-test-ack-key-of-at-least-thirty-two-bytes";
/// The contracting authority of the sample registry: housing offers and thresholds.
const SA: &str = "pref-sa";
const SA_INSTITUTION: &str = "Prefettura di Milano - Area IV Immigrazione";
const SA_EMAIL: &str = "gare.accoglienza@prefettura.mi.example";
/// The Prefettura's coordination: eviction statistics (optional), the monthly verification.
const COORD: &str = "pref-coord";
const ONE_CLICK: &str = "List-Unsubscribe=One-Click";

fn with_links(s: &mut raccordo_core::settings::Settings) {
    s.console.public_url = PUBLIC_URL.into();
    s.ack.key = KEY.to_owned().into();
}

fn links() -> PreferenceLinks {
    PreferenceLinks::new(KEY, PUBLIC_URL, time::Duration::days(90))
}

fn in_a_day() -> OffsetDateTime {
    OffsetDateTime::now_utc() + time::Duration::days(1)
}

fn page_path(referent: &str) -> String {
    format!("/preferenze/{}", links().token(referent, None, in_a_day()))
}

fn unsubscribe_path(referent: &str, kind: NotificationKind) -> String {
    format!(
        "/preferenze/{}/disiscrivi",
        links().token(referent, Some(kind), in_a_day())
    )
}

async fn stored(app: &TestApp, referent: &str) -> Preferences {
    let mut conn = app.pool.acquire().await.expect("a connection");
    load_preferences(&mut conn, referent)
        .await
        .expect("the registry")
        .expect("the referent")
        .preferences
}

/// The actors of the referent's history, oldest first.
async fn actors(app: &TestApp, referent: &str) -> Vec<String> {
    let mut conn = app.pool.acquire().await.expect("a connection");
    referent_history(&mut conn, referent)
        .await
        .expect("the history")
        .into_iter()
        .map(|c| c.actor)
        .collect()
}

/// A page as a public page must be: Italian, the console's policy, never cached, and
/// nothing of the referent's address.
fn assert_public_page(r: &Response) {
    assert!(r.body.contains("<html lang=\"it\">"), "{}", r.body);
    assert!(
        r.header("content-security-policy")
            .is_some_and(|p| p.contains("default-src 'self'") && p.contains("form-action 'self'")),
        "{:?}",
        r.headers
    );
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
    assert!(!r.body.contains('@'), "no address on a public page");
}

/// The page's text, its escaped apostrophes and quotes read back.
fn text(r: &Response) -> String {
    r.body
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&quot;", "\"")
}

/// A daily digest of housing offers at 07:30 and quiet hours 20:00–08:00 and weekends.
fn daily_form() -> String {
    form_encode(&[
        ("mode.housing.offered", "daily"),
        ("daily.housing.offered", "07:30"),
        ("weekday.housing.offered", "monday"),
        ("weekly.housing.offered", "08:00"),
        ("mode.housing.withdrawn", "immediate"),
        ("mode.quota.threshold", "weekly"),
        ("daily.quota.threshold", "08:00"),
        ("weekday.quota.threshold", "friday"),
        ("weekly.quota.threshold", "17:00"),
        ("mode.quota.safeguard", "immediate"),
        ("quiet_from", "20:00"),
        ("quiet_to", "08:00"),
        ("quiet_weekends", "si"),
    ])
}

fn at(hour: u8, minute: u8) -> LocalTime {
    LocalTime { hour, minute }
}

#[tokio::test]
async fn preferences_a_forged_or_expired_link_is_refused_and_changes_nothing() {
    let (app, addr) = spawn_console_with(with_links).await;
    let before = stored(&app, SA).await;
    let history = actors(&app, SA).await;
    let token = links().token(SA, None, in_a_day());
    let off_token = links().token(COORD, Some(NotificationKind::EvictionStats), in_a_day());
    let flipped = |token: &str, at: usize| {
        let mut bytes = token.to_owned().into_bytes();
        bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
        String::from_utf8(bytes).expect("hex")
    };
    let other = PreferenceLinks::new(
        "another-key-of-at-least-thirty-two-bytes!",
        PUBLIC_URL,
        time::Duration::days(90),
    );
    let an_hour_ago = OffsetDateTime::now_utc() - time::Duration::hours(1);
    let pages = [
        ("a changed MAC byte", flipped(&token, token.len() - 1)),
        ("a changed expiry", flipped(&token, 10)),
        ("a changed referent", flipped(&token, 24)),
        ("another key", other.token(SA, None, in_a_day())),
        ("expired", links().token(SA, None, an_hour_ago)),
        ("truncated", token[..token.len() - 2].to_owned()),
        ("not hex", "z".repeat(token.len())),
        ("garbage", "..%2f..%2fetc%2fpasswd".to_owned()),
        // An unsubscribe token does not open the page.
        ("an unsubscribe token", off_token.clone()),
    ];
    let form = daily_form();
    for (what, bad) in &pages {
        for (method, body) in [("GET", None), ("POST", Some(form.as_str()))] {
            let r = request(addr, method, &format!("/preferenze/{bad}"), None, body).await;
            assert_eq!(r.status, 403, "{what} {method}: {}", r.body);
            assert!(r.body.contains("non è valido o è scaduto"), "{what}");
            assert!(
                !r.body.contains("Prefettura"),
                "{what}: nothing of the office"
            );
            assert_public_page(&r);
        }
    }
    let unsubscribes = [
        (
            "a changed MAC byte",
            flipped(&off_token, off_token.len() - 1),
        ),
        (
            "another key",
            other.token(COORD, Some(NotificationKind::EvictionStats), in_a_day()),
        ),
        (
            "expired",
            links().token(COORD, Some(NotificationKind::EvictionStats), an_hour_ago),
        ),
        // A page token does not unsubscribe.
        ("a page token", links().token(COORD, None, in_a_day())),
    ];
    let coord_before = stored(&app, COORD).await;
    for (what, bad) in &unsubscribes {
        for (method, body) in [("GET", None), ("POST", Some(ONE_CLICK))] {
            let path = format!("/preferenze/{bad}/disiscrivi");
            let r = request(addr, method, &path, None, body).await;
            assert_eq!(r.status, 403, "{what} {method}: {}", r.body);
            assert!(r.body.contains("non è valido o è scaduto"), "{what}");
        }
    }
    assert_eq!(stored(&app, SA).await, before);
    assert_eq!(stored(&app, COORD).await, coord_before);
    assert_eq!(actors(&app, SA).await, history);

    // A valid token for an office the registry no longer holds: 404, in Italian.
    for (method, path, body) in [
        ("GET", page_path("gone-office"), None),
        ("POST", page_path("gone-office"), Some(form.as_str())),
        (
            "POST",
            unsubscribe_path("gone-office", NotificationKind::EvictionStats),
            Some(ONE_CLICK),
        ),
    ] {
        let r = request(addr, method, &path, None, body).await;
        assert_eq!(r.status, 404, "{method} {path}: {}", r.body);
        assert!(r.body.contains("non è più tra i destinatari"), "{}", r.body);
    }
    // The real link still works.
    let ok = request(addr, "GET", &format!("/preferenze/{token}"), None, None).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    app.cleanup().await;
}

#[tokio::test]
async fn preferences_the_page_shows_the_office_and_saves_a_digest_and_quiet_hours_as_self_service()
{
    let (app, addr) = spawn_console_with(with_links).await;
    let path = page_path(SA);

    // The office, in Italian, never its address; a choice per kind of its role.
    for _ in 0..2 {
        let page = request(addr, "GET", &path, None, None).await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert_public_page(&page);
        assert!(page.body.contains(SA_INSTITUTION), "{}", page.body);
        assert!(page.body.contains("Stazione appaltante"));
        assert!(!page.body.contains(SA_EMAIL));
        for label in [
            "Nuova disponibilità di alloggio",
            "Alloggio ritirato",
            "Soglia di copertura",
            "Clausola di salvaguardia",
            "Subito",
            "Riepilogo ogni ora",
            "Riepilogo giornaliero",
            "Riepilogo settimanale",
            "Ore di silenzio",
            "sabato e domenica",
        ] {
            assert!(page.body.contains(label), "{label}: {}", page.body);
        }
        // Every kind of this role is required by the protocols: none can be turned off.
        assert!(!page.body.contains("value=\"off\""), "{}", page.body);
        // Other roles' kinds are not offered.
        assert!(!page.body.contains("Avviso di sfratto"));
    }
    assert!(stored(&app, SA).await.is_default(), "a GET changes nothing");

    // Saved: a daily digest, a weekly one, quiet hours and weekends.
    let saved = request(addr, "POST", &path, None, Some(&daily_form())).await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    assert_public_page(&saved);
    assert!(saved.body.contains("Preferenze salvate"), "{}", saved.body);
    assert!(
        saved
            .body
            .contains("in un riepilogo ogni giorno alle 07:30"),
        "{}",
        saved.body
    );
    assert!(
        saved.body.contains("dalle 20:00 alle 08:00"),
        "{}",
        saved.body
    );
    let prefs = stored(&app, SA).await;
    assert_eq!(
        prefs.mode(NotificationKind::HousingOffered),
        Mode::Digest(Window::Daily(at(7, 30)))
    );
    assert_eq!(
        prefs.mode(NotificationKind::QuotaThreshold),
        Mode::Digest(Window::Weekly(
            raccordo_core::preferences::Day::Friday,
            at(17, 0)
        ))
    );
    assert_eq!(
        prefs.mode(NotificationKind::HousingWithdrawn),
        Mode::Immediate
    );
    assert_eq!(
        prefs.quiet_hours,
        Some(QuietHours {
            from: at(20, 0),
            to: at(8, 0)
        })
    );
    assert!(prefs.quiet_weekends);
    let history = actors(&app, SA).await;
    assert_eq!(
        history.last().map(String::as_str),
        Some("self-service:pref-sa")
    );

    // The page shows what was saved.
    let again = request(addr, "GET", &path, None, None).await;
    assert!(again.body.contains("value=\"07:30\""), "{}", again.body);
    assert!(again.body.contains("value=\"20:00\""));

    // Wrong values: 400 in Italian naming each, the form as typed, nothing changed.
    let wrong = [
        (
            form_encode(&[
                ("mode.housing.offered", "daily"),
                ("daily.housing.offered", "25:00"),
            ]),
            "«25:00» non è un'ora valida",
        ),
        (
            form_encode(&[("mode.housing.offered", "off")]),
            "non si può disattivare",
        ),
        (
            form_encode(&[("mode.eviction.alert", "hourly")]),
            "non si può impostare",
        ),
        (
            form_encode(&[("quiet_from", "22:00")]),
            "sia l'inizio sia la fine",
        ),
        (
            form_encode(&[("quiet_from", "9:00"), ("quiet_to", "09:00")]),
            "diversi",
        ),
    ];
    for (form, expected) in &wrong {
        let r = request(addr, "POST", &path, None, Some(form)).await;
        assert_eq!(r.status, 400, "{form}: {}", r.body);
        assert_public_page(&r);
        assert!(text(&r).contains(expected), "{form}: {}", r.body);
        assert!(r.body.contains("non è cambiato nulla"));
        assert_eq!(stored(&app, SA).await, prefs, "{form}");
    }
    assert_eq!(
        actors(&app, SA).await,
        history,
        "no history for a refused form"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn preferences_one_click_unsubscribe_turns_an_optional_kind_off_and_keeps_the_rest() {
    let (app, addr) = spawn_console_with(with_links).await;
    // The Prefettura first asks for a weekly monthly verification and quiet evenings.
    let saved = request(
        addr,
        "POST",
        &page_path(COORD),
        None,
        Some(&form_encode(&[
            ("mode.quota.monthly_report", "weekly"),
            ("weekday.quota.monthly_report", "monday"),
            ("weekly.quota.monthly_report", "09:00"),
            ("quiet_from", "19:00"),
            ("quiet_to", "07:00"),
        ])),
    )
    .await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    let before = stored(&app, COORD).await;
    assert_eq!(
        before.mode(NotificationKind::EvictionStats),
        Mode::Immediate
    );
    let history = actors(&app, COORD).await;

    // A link scanner, or the referent looking first: the kind and a button, nothing changed.
    let path = unsubscribe_path(COORD, NotificationKind::EvictionStats);
    for method in ["GET", "HEAD", "GET"] {
        let r = request(addr, method, &path, None, None).await;
        assert_eq!(r.status, 200, "{method}: {}", r.body);
        if method == "GET" {
            assert_public_page(&r);
            assert!(
                r.body.contains("Statistiche mensili degli sfratti"),
                "{}",
                r.body
            );
            assert!(r.body.contains("Non inviare più questa comunicazione"));
            assert!(
                r.body
                    .contains("name=\"List-Unsubscribe\" value=\"One-Click\"")
            );
        }
    }
    assert_eq!(stored(&app, COORD).await, before);

    // RFC 8058: a POST of List-Unsubscribe=One-Click turns that kind off, and only it.
    let done = request(addr, "POST", &path, None, Some(ONE_CLICK)).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_public_page(&done);
    assert!(done.body.contains("non riceverà più"), "{}", done.body);
    let after = stored(&app, COORD).await;
    assert_eq!(after.mode(NotificationKind::EvictionStats), Mode::Off);
    let mut expected = before.clone();
    expected
        .kinds
        .insert(NotificationKind::EvictionStats, Mode::Off);
    assert_eq!(after, expected, "every other choice kept");
    let mut changed = history.clone();
    changed.push("self-service:pref-coord".into());
    assert_eq!(actors(&app, COORD).await, changed);

    // Again (a provider retrying, the button after the one-click): 200, nothing new.
    let again = request(addr, "POST", &path, None, Some(ONE_CLICK)).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert!(again.body.contains("era già disattivata"), "{}", again.body);
    let shown = request(addr, "GET", &path, None, None).await;
    assert!(shown.body.contains("già disattivata"));
    assert!(!shown.body.contains("<button"));
    assert_eq!(stored(&app, COORD).await, expected);
    assert_eq!(actors(&app, COORD).await, changed);

    // The page offers the optional kind's "Non inviare", checked now.
    let page = request(addr, "GET", &page_path(COORD), None, None).await;
    assert!(page.body.contains("Non inviare"), "{}", page.body);
    assert!(page.body.contains("value=\"off\" checked"), "{}", page.body);

    // A kind the protocols require cannot be unsubscribed, even with a valid signed link.
    let sa_before = stored(&app, SA).await;
    let sa_history = actors(&app, SA).await;
    let mandatory = unsubscribe_path(SA, NotificationKind::HousingOffered);
    for (method, body) in [("GET", None), ("POST", Some(ONE_CLICK))] {
        let r = request(addr, method, &mandatory, None, body).await;
        assert_eq!(r.status, 403, "{method}: {}", r.body);
        assert!(r.body.contains("non si può disattivare"), "{}", r.body);
    }
    assert_eq!(stored(&app, SA).await, sa_before);
    assert_eq!(actors(&app, SA).await, sa_history);
    app.cleanup().await;
}

#[tokio::test]
async fn preferences_pages_do_not_exist_without_a_public_url_and_a_key() {
    let (app, addr) = spawn_console_with(|_| {}).await;
    let before = stored(&app, COORD).await;
    for (method, path, body) in [
        ("GET", page_path(COORD), None),
        ("POST", page_path(COORD), Some(daily_form())),
        (
            "POST",
            unsubscribe_path(COORD, NotificationKind::EvictionStats),
            Some(ONE_CLICK.to_owned()),
        ),
    ] {
        let r = request(addr, method, &path, None, body.as_deref()).await;
        assert_eq!(r.status, 404, "{method} {path}: {}", r.body);
    }
    assert_eq!(stored(&app, COORD).await, before);
    app.cleanup().await;
}

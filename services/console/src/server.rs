//! The console's router and listener.
//!
//! Every route is a row of [`table`], with the [`Access`] it needs; the router is built
//! from that table alone, each route behind [`auth::gate`] for its access, so a route
//! cannot be added without saying who may open it. [`routes`] lists the table for tests.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{MethodRouter, get, post};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use raccordo_core::amqp::Topology;
use raccordo_core::health::Health;
use raccordo_core::settings::Settings;

use crate::auth::{self, Access, Gate, Sessions};
use crate::broker::Broker;
use crate::hashing::Hashing;
use crate::limits::LoginLimits;
use crate::pages;
use crate::render::Templates;
pub(crate) use crate::state::AppState;

/// Why the console did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Users(#[from] crate::users::UsersError),
    #[error("console.trusted_proxies: {0}")]
    Proxies(String),
    #[error("failed to listen on console.addr {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

/// Binds `console.addr` and serves the console until `token` is cancelled; returns the
/// bound address. `health` is the readiness of the workers of this process, if any.
/// Refuses to start on weak password hashes; says loudly what else needs attention.
pub async fn serve_console(
    settings: Arc<Settings>,
    pool: PgPool,
    health: Option<Health>,
    token: CancellationToken,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), StartError> {
    let console = &settings.console;
    for warning in crate::users::check(console)? {
        tracing::warn!("{warning}");
    }
    let trusted_proxies = console.trusted_proxy_nets().map_err(StartError::Proxies)?;
    let listen_error = |source| StartError::Listen {
        addr: console.addr.clone(),
        source,
    };
    let listener = TcpListener::bind(&console.addr)
        .await
        .map_err(listen_error)?;
    let local = listener.local_addr().map_err(listen_error)?;
    // Off loopback the console is reached through an HTTPS proxy: the cookie says so.
    let secure_cookie = console.secure_cookie || !local.ip().is_loopback();
    let broker = Arc::new(Broker::new(
        settings.amqp.clone(),
        Topology::from_settings(&settings),
    ));
    let state = AppState {
        door: Arc::new(raccordo_ingest::Door::new(settings.clone())),
        sessions: Sessions::new(console.session_ttl(), console.session_max()),
        limits: Arc::new(LoginLimits::new(
            console.login_failures_per_user,
            console.login_failures_per_address,
            console.login_lockout(),
        )),
        hashing: Arc::new(Hashing::new(console.hashing_concurrency)),
        trusted_proxies: Arc::new(trusted_proxies),
        secure_cookie,
        broker: broker.clone(),
        settings: settings.clone(),
        pool,
        health,
        templates: Arc::new(Templates::new()),
    };
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let handle = tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move { token.cancelled().await })
            .await;
        if let Err(error) = result {
            tracing::error!(error = %error, "The console failed.");
        }
        broker.close().await;
    });
    tracing::info!(addr = %local, secure_cookie, "Serving the console.");
    Ok((local, handle))
}

/// One route: its method, path, who may open it and its handler.
struct Route {
    method: &'static str,
    path: &'static str,
    access: Access,
    handler: MethodRouter<AppState>,
}

fn route(
    method: &'static str,
    path: &'static str,
    access: Access,
    handler: MethodRouter<AppState>,
) -> Route {
    Route {
        method,
        path,
        access,
        handler,
    }
}

/// The acknowledgement pages (CONTRACT D4): the link of an email, without login; the token
/// is the credential.
fn acknowledgement_routes() -> [Route; 2] {
    [
        route("GET", "/ack/{token}", Access::Public, get(pages::ack::show)),
        route(
            "POST",
            "/ack/{token}",
            Access::Public,
            post(pages::ack::record),
        ),
    ]
}

/// The referents' preferences pages and one-click unsubscribe (issue 22): the links of an
/// email's footer and of `List-Unsubscribe`, without login; the token is the credential.
/// They answer 404 unless `console.public_url` and `ack.key` are set.
fn preference_routes() -> [Route; 4] {
    [
        route(
            "GET",
            "/preferenze/{token}",
            Access::Public,
            get(pages::preferences::show),
        ),
        route(
            "POST",
            "/preferenze/{token}",
            Access::Public,
            post(pages::preferences::save),
        ),
        route(
            "GET",
            "/preferenze/{token}/disiscrivi",
            Access::Public,
            get(pages::preferences::confirm_unsubscribe),
        ),
        route(
            "POST",
            "/preferenze/{token}/disiscrivi",
            Access::Public,
            post(pages::preferences::unsubscribe),
        ),
    ]
}

/// Every route of the console.
fn table() -> Vec<Route> {
    let mut routes = console_routes();
    routes.extend(acknowledgement_routes());
    routes.extend(preference_routes());
    routes
}

/// The console's own pages.
fn console_routes() -> Vec<Route> {
    use Access::{Privacy, Public, Viewer};
    struct M;
    impl M {
        const GET: &'static str = "GET";
        const POST: &'static str = "POST";
    }
    let mut routes = vec![
        route(M::GET, "/login", Public, get(auth::login_page)),
        route(M::POST, "/login", Public, post(auth::login)),
        route(
            M::GET,
            "/static/console.css",
            Public,
            get(pages::assets::css),
        ),
        route(M::GET, "/static/console.js", Public, get(pages::assets::js)),
        route(M::GET, "/", Viewer, get(pages::overview::page)),
        route(M::GET, "/coverage", Viewer, get(pages::coverage::page)),
        route(M::GET, "/coverage.csv", Viewer, get(pages::coverage::csv)),
        route(
            M::GET,
            "/coverage/{istat}",
            Viewer,
            get(pages::coverage::comune),
        ),
        route(M::GET, "/routing", Viewer, get(pages::routing::page)),
        route(
            M::POST,
            "/routing/referents",
            Viewer,
            post(pages::routing::preview_import),
        ),
        route(M::GET, "/evictions", Viewer, get(pages::evictions::page)),
        route(M::GET, "/tavolo", Viewer, get(pages::tavolo::page)),
        route(M::GET, "/emails", Viewer, get(pages::emails::page)),
        route(M::GET, "/deliveries", Viewer, get(pages::deliveries::page)),
        route(
            M::GET,
            "/deliveries/{id}",
            Viewer,
            get(pages::deliveries::timeline),
        ),
        route(
            M::GET,
            "/emails/{kind}/html",
            Viewer,
            get(pages::emails::html),
        ),
        route(M::POST, "/logout", Viewer, post(auth::logout)),
        route(
            M::GET,
            "/evictions/audit",
            Privacy,
            get(pages::evictions::audit),
        ),
    ];
    routes.extend(operator_routes());
    routes
}

/// The pages of the `operator` role: held messages and CSV uploads.
fn operator_routes() -> Vec<Route> {
    use Access::Operator;
    struct M;
    impl M {
        const GET: &'static str = "GET";
        const POST: &'static str = "POST";
    }
    vec![
        route(
            M::GET,
            "/dead-letters",
            Operator,
            get(pages::dead_letters::list),
        ),
        route(
            M::GET,
            "/dead-letters/confirm",
            Operator,
            get(pages::dead_letters::confirm),
        ),
        route(
            M::POST,
            "/dead-letters/action",
            Operator,
            post(pages::dead_letters::act),
        ),
        route(
            M::GET,
            "/dead-letters/{id}",
            Operator,
            get(pages::dead_letters::show),
        ),
        route(M::GET, "/upload", Operator, get(pages::upload::page)),
        route(
            M::POST,
            "/upload/preview",
            Operator,
            post(pages::upload::preview).layer(DefaultBodyLimit::max(pages::upload::FORM_LIMIT)),
        ),
        route(
            M::POST,
            "/upload/publish",
            Operator,
            post(pages::upload::publish).layer(DefaultBodyLimit::max(pages::upload::FORM_LIMIT)),
        ),
    ]
}

/// Every route of the console as (method, path, access): what the router serves.
pub fn routes() -> Vec<(&'static str, &'static str, Access)> {
    table()
        .into_iter()
        .map(|r| (r.method, r.path, r.access))
        .collect()
}

fn router(state: AppState) -> Router {
    let mut paths: BTreeMap<&'static str, MethodRouter<AppState>> = BTreeMap::new();
    for r in table() {
        let handler = match r.access {
            Access::Public => r.handler,
            access => r.handler.route_layer(middleware::from_fn_with_state(
                Gate {
                    state: state.clone(),
                    access,
                },
                auth::gate,
            )),
        };
        let merged = match paths.remove(r.path) {
            Some(existing) => existing.merge(handler),
            None => handler,
        };
        paths.insert(r.path, merged);
    }
    let mut app = Router::new();
    for (path, handler) in paths {
        app = app.route(path, handler);
    }
    app.fallback(pages::not_found)
        .layer(middleware::from_fn(crate::headers::secure))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_listed_once_with_its_access() {
        let routes = routes();
        let mut seen = std::collections::BTreeSet::new();
        for (method, path, _) in &routes {
            assert!(
                seen.insert((method.to_string(), *path)),
                "{method} {path} twice"
            );
        }
        let access = |p: &str| routes.iter().find(|r| r.1 == p).map(|r| r.2);
        assert_eq!(access("/dead-letters/action"), Some(Access::Operator));
        assert_eq!(access("/evictions/audit"), Some(Access::Privacy));
        assert_eq!(access("/login"), Some(Access::Public));
    }
}

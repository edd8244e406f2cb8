//! The console's router and listener.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::middleware;
use axum::routing::{get, post};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use raccordo_core::health::Health;
use raccordo_core::settings::Settings;

use crate::auth::{self, Sessions};
use crate::pages;
use crate::render::Templates;

/// What every handler reads.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) settings: Arc<Settings>,
    pub(crate) pool: PgPool,
    /// The consumers of this process, when the console runs inside `raccordo serve`.
    pub(crate) health: Option<Health>,
    pub(crate) sessions: Sessions,
    pub(crate) templates: Arc<Templates>,
}

/// Binds `console.addr` and serves the console until `token` is cancelled; returns the
/// bound address. `health` is the readiness of the workers of this process, if any.
pub async fn serve_console(
    settings: Arc<Settings>,
    pool: PgPool,
    health: Option<Health>,
    token: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let state = AppState {
        sessions: Sessions::new(settings.console.session_ttl()),
        settings: settings.clone(),
        pool,
        health,
        templates: Arc::new(Templates::new()),
    };
    let listener = TcpListener::bind(&settings.console.addr).await?;
    let local = listener.local_addr()?;
    let app = router(state);
    let handle = tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move { token.cancelled().await })
            .await;
        if let Err(error) = result {
            tracing::error!(error = %error, "The console failed.");
        }
    });
    tracing::info!(addr = %local, "Serving the console.");
    Ok((local, handle))
}

fn router(state: AppState) -> Router {
    let protected = Router::new()
        .route("/", get(pages::overview::page))
        .route("/dead-letters", get(pages::dead_letters::list))
        .route("/dead-letters/confirm", get(pages::dead_letters::confirm))
        .route("/dead-letters/action", post(pages::dead_letters::act))
        .route("/dead-letters/{id}", get(pages::dead_letters::show))
        .route("/coverage", get(pages::coverage::page))
        .route("/coverage.csv", get(pages::coverage::csv))
        .route("/coverage/{istat}", get(pages::coverage::comune))
        .route("/routing", get(pages::routing::page))
        .route("/routing/referents", post(pages::routing::preview_import))
        .route("/evictions", get(pages::evictions::page))
        .route("/emails", get(pages::emails::page))
        .route("/emails/{kind}/html", get(pages::emails::html))
        .route("/logout", post(auth::logout))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_operator,
        ));
    Router::new()
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/static/console.css", get(pages::assets::css))
        .route("/static/console.js", get(pages::assets::js))
        .merge(protected)
        .fallback(pages::not_found)
        .layer(middleware::from_fn(crate::headers::secure))
        .with_state(state)
}

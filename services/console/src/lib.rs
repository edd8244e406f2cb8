//! The operators' web console (issue 9): what the hub knows, to look at rather than read —
//! workers and queues, dead letters one click from replay, coverage of the reception
//! quotas, who would receive what, eviction statistics and the audit trail, and every email
//! as a referent sees it.
//!
//! Server-rendered HTML (axum and minijinja), charts as inline SVG drawn here, CSS and a
//! few lines of progressive JS embedded in the binary: no CDN, no external asset, because a
//! public administration's network often has no internet. Every page sets a strict CSP.
//!
//! The console reads through the functions the CLI and the workers use — the coverage of
//! `raccordo_quota`, the statistics and audit of `raccordo_eviction`, `recipients_for` of
//! the registry, `HeldMessage::masked_body` — so what it shows is what happens. Personal
//! data of families never reaches a page: eviction pages show counts and the audit trail,
//! never the content of an alert.
//!
//! Each user has one role (CONTRACT 1.2 §8): `viewer`, `operator` or `privacy`; every route
//! says which it admits ([`server::routes`]), and the navigation shows only those.
//!
//! # Layout
//! - [`server`]: the route table, the router and [`serve_console`].
//! - `auth`: users (argon2), roles ([`Access`]), a trusted proxy header, sessions, CSRF
//!   (login form included); [`hash_password`].
//! - `limits`: failed logins per name and per address.
//! - `hashing`: password verification, a bounded number at once in memory reused.
//! - [`users`]: the configured users — `raccordo console user add`/`users`, start checks.
//! - `broker`: the one AMQP connection of the console.
//! - `headers`: CSP and the other security headers on every response.
//! - `render`: the embedded templates and the error page.
//! - `params`: query strings, forms and path segments read or refused with an Italian page.
//! - `chart`: inline SVG charts.
//! - `actions`: the audit trail of console actions (`console_actions`).
//! - `pages`: one module per page.

#![cfg_attr(not(test), warn(clippy::too_many_lines))]

mod actions;
mod auth;
mod broker;
mod chart;
mod hashing;
mod headers;
mod limits;
mod pages;
mod params;
mod render;
pub mod server;
mod sessions;
mod state;
pub mod users;

pub use auth::{Access, HashError, hash_password};
pub use server::{StartError, serve_console};

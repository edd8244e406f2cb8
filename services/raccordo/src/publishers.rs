//! `raccordo publishers token add|list|revoke` (CONTRACT 1.2 §10, §11).

use std::io::Write;

use anyhow::{Context, bail};

use raccordo_core::settings::Settings;
use raccordo_ingest::tokens;

use crate::cli::TokenCommand;
use crate::database::connect_db;
use crate::table::{Format, render, render_csv};

/// Runs one token command, writing what it prints to `out`.
pub async fn token(
    command: TokenCommand,
    settings: &Settings,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match command {
        TokenCommand::Add { user } => {
            if !settings.publishers.users.contains_key(&user) {
                let known: Vec<&str> = settings
                    .publishers
                    .users
                    .keys()
                    .map(String::as_str)
                    .collect();
                bail!(
                    "{user:?} is not a [publishers.<user>] of the configuration (configured: {}); add its table first",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                );
            }
            let pool = connect_db(settings).await?;
            let (id, token) = tokens::add(&pool, &user)
                .await
                .context("Failed to store the token")?;
            writeln!(
                out,
                "Token {id} of publisher {user}: it is shown only now; send it as `Authorization: Bearer <token>` to ingest.addr. Revoke it with `raccordo publishers token revoke {id}`."
            )?;
            writeln!(out, "{token}")?;
        }
        TokenCommand::List { format } => {
            let pool = connect_db(settings).await?;
            let rows = tokens::list(&pool).await?;
            let stamp = |t: &time::OffsetDateTime| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default()
            };
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.id.to_string(),
                        r.publisher.clone(),
                        stamp(&r.created_at),
                        r.revoked_at.as_ref().map(stamp).unwrap_or_default(),
                    ]
                })
                .collect();
            let header = ["id", "publisher", "created_at", "revoked_at"];
            match format {
                Format::Table => write!(out, "{}", render(&header, &table))?,
                Format::Csv => write!(out, "{}", render_csv(&header, &table)?)?,
                Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?,
            }
        }
        TokenCommand::Revoke { id } => {
            let pool = connect_db(settings).await?;
            if !tokens::revoke(&pool, id).await? {
                bail!("no live token has id {id} (see `raccordo publishers token list`)");
            }
            writeln!(out, "Token {id} revoked.")?;
        }
    }
    Ok(())
}

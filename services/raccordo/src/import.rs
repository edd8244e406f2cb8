//! `raccordo import comuni|referents FILE`.

use std::path::Path;

use anyhow::Context;

use raccordo_core::registry::{Actor, ImportReport, import_comuni, import_referents};
use raccordo_core::settings::Settings;

/// What to import.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Table {
    Comuni,
    Referents,
}

/// Imports a CSV file (or `-` for standard input); all or nothing.
pub(crate) async fn run(
    settings: &Settings,
    table: Table,
    file: &Path,
) -> anyhow::Result<ImportReport> {
    let input: Box<dyn std::io::Read + Send> = if file == Path::new("-") {
        Box::new(std::io::stdin())
    } else {
        Box::new(
            std::fs::File::open(file)
                .with_context(|| format!("Failed to open {}", file.display()))?,
        )
    };
    let pool = crate::database::connect_db(settings).await?;
    let report = match table {
        Table::Comuni => import_comuni(&pool, input).await,
        Table::Referents => {
            let actor = Actor::import(&file.display().to_string());
            import_referents(&pool, input, &actor).await
        }
    }
    .with_context(|| format!("Failed to import {}", file.display()))?;
    pool.close().await;
    Ok(report)
}

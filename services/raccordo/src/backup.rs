//! `raccordo backup` and `raccordo restore`: the hub's database through `pg_dump` and
//! `pg_restore` of the server's major version, with a manifest that says what the backup
//! holds (release, migration, the pseudonym key's fingerprint, rows per table) so a restore
//! can refuse what would not work: another key, a newer release, a database in use.
//!
//! The broker holds no state of its own worth keeping: unpublished notifications wait in the
//! database's outbox and deliveries carry their delivered marks, so a restored hub re-sends
//! nothing already sent. Its definitions (the publishers' users) can go along.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, bail};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection};
use tokio::io::{AsyncBufReadExt, BufReader};

use raccordo_core::db;
use raccordo_core::settings::Settings;
use raccordo_eviction::Pseudonymizer;

/// The manifest's file name inside a backup folder.
pub const MANIFEST: &str = "manifest.json";
/// The dump's file name inside a backup folder (`pg_dump --format=custom`).
pub const DUMP: &str = "database.dump";
/// The broker definitions' file name, when asked for.
pub const DEFINITIONS: &str = "definitions.json";
/// The manifest's form; a restore refuses any other.
const FORMAT: u32 = 1;

/// What a backup holds, written beside the dump.
#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    /// The manifest's form (1).
    pub format: u32,
    /// The release of the binary that made it.
    pub release: String,
    /// The newest migration applied to the database.
    pub migration_version: i64,
    /// The fingerprint of the pseudonym key chain the database's pseudonyms were made with.
    pub pseudonym_key_fingerprint: String,
    /// When the dump's snapshot was taken (RFC 3339, UTC).
    pub created_at: String,
    /// The database it was taken from.
    pub database: String,
    /// The PostgreSQL server's version.
    pub server_version: String,
    /// The dump file: name, size, SHA-256.
    pub dump: DumpFile,
    /// Rows per table in the dump's snapshot (`schema.table`).
    pub tables: BTreeMap<String, i64>,
    /// The broker definitions' file, when written.
    pub definitions: Option<String>,
}

/// The dump file of a backup.
#[derive(Debug, Serialize, Deserialize)]
pub struct DumpFile {
    pub file: String,
    pub bytes: u64,
    pub sha256: String,
}

/// What `raccordo restore` may overwrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overwrite {
    /// Only an empty (or missing) database.
    Refuse,
    /// Drop and recreate a database that holds tables.
    Force,
}

/// Writes a backup of the configured database into `dir` (created; it must be empty).
pub async fn backup(
    settings: &Settings,
    dir: &Path,
    definitions: bool,
    pg_bin: Option<&Path>,
) -> anyhow::Result<Manifest> {
    prepare_dir(dir)?;
    let database = settings.database.database_name()?;
    let mut conn = PgConnection::connect_with(&settings.database.connect_options()?)
        .await
        .with_context(|| format!("Failed to connect to the database {database}"))?;
    let server_version = db::server_version(&mut conn).await?;
    let pg_dump = pg_tool("pg_dump", major(&server_version)?, pg_bin)?;
    // One snapshot for the counts and the dump: the manifest says exactly what the dump holds.
    sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut conn)
        .await?;
    let snapshot: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
        .fetch_one(&mut conn)
        .await?;
    let created_at = now_rfc3339()?;
    let tables = count_rows(&mut conn).await?;
    let migration_version = applied_migration(&mut conn).await?;
    let pseudonym_key_fingerprint = match stored_fingerprint(&mut conn).await? {
        Some(stored) => stored,
        None => Pseudonymizer::from_settings(&settings.eviction).fingerprint(),
    };
    eprintln!(
        "Dumping {database} ({} tables, {} rows) with {}…",
        tables.len(),
        tables.values().sum::<i64>(),
        pg_dump.display()
    );
    let dump_path = dir.join(DUMP);
    let mut command = tokio::process::Command::new(&pg_dump);
    command
        .args([
            "--format=custom",
            "--no-owner",
            "--no-privileges",
            "--verbose",
        ])
        .arg(format!("--snapshot={snapshot}"))
        .arg(format!("--file={}", dump_path.display()));
    run_with_progress(
        command,
        settings,
        &database,
        "dumping contents of table",
        tables.len(),
    )
    .await
    .context("pg_dump failed")?;
    sqlx::raw_sql("COMMIT").execute(&mut conn).await?;
    conn.close().await?;
    let definitions = if definitions {
        crate::setup::write_definitions(settings, &dir.join(DEFINITIONS))?;
        Some(DEFINITIONS.to_owned())
    } else {
        None
    };
    let manifest = Manifest {
        format: FORMAT,
        release: env!("CARGO_PKG_VERSION").to_owned(),
        migration_version,
        pseudonym_key_fingerprint,
        created_at,
        database,
        server_version,
        dump: DumpFile {
            file: DUMP.to_owned(),
            bytes: std::fs::metadata(&dump_path)?.len(),
            sha256: sha256_file(&dump_path)?,
        },
        tables,
        definitions,
    };
    let text = serde_json::to_string_pretty(&manifest)? + "\n";
    std::fs::write(dir.join(MANIFEST), text)
        .with_context(|| format!("Failed to write {}", dir.join(MANIFEST).display()))?;
    Ok(manifest)
}

/// Restores the backup in `dir` into the configured database, after checking the dump, the
/// key and the release; then checks every table's row count against the manifest.
pub async fn restore(
    settings: &Settings,
    dir: &Path,
    overwrite: Overwrite,
    pg_bin: Option<&Path>,
) -> anyhow::Result<Manifest> {
    let manifest = read_manifest(dir)?;
    check_backup(settings, dir, &manifest)?;
    let database = settings.database.database_name()?;
    let mut conn = PgConnection::connect_with(&settings.database.maintenance_options()?)
        .await
        .context("Failed to reach PostgreSQL (scripts/services.sh starts it)")?;
    let server_version = db::server_version(&mut conn).await?;
    conn.close().await?;
    let pg_restore = pg_tool("pg_restore", major(&server_version)?, pg_bin)?;
    prepare_database(settings, &database, overwrite).await?;
    eprintln!(
        "Restoring {} tables ({} rows, migration {}, made {} by release {}) into {database} with {}…",
        manifest.tables.len(),
        manifest.tables.values().sum::<i64>(),
        manifest.migration_version,
        manifest.created_at,
        manifest.release,
        pg_restore.display()
    );
    let mut command = tokio::process::Command::new(&pg_restore);
    // One transaction: a restore that fails leaves the database empty, not half filled.
    command
        .args([
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            "--single-transaction",
            "--verbose",
        ])
        .arg(format!("--dbname={database}"))
        .arg(dir.join(&manifest.dump.file));
    run_with_progress(
        command,
        settings,
        &database,
        "processing data for table",
        manifest.tables.len(),
    )
    .await
    .context("pg_restore failed")?;
    verify_counts(settings, &manifest).await?;
    Ok(manifest)
}

/// Refuses a backup whose dump is damaged, whose pseudonyms were made with another key, or
/// that a newer release made — before the database is touched.
fn check_backup(settings: &Settings, dir: &Path, manifest: &Manifest) -> anyhow::Result<()> {
    let dump = dir.join(&manifest.dump.file);
    let digest = sha256_file(&dump)?;
    if digest != manifest.dump.sha256 {
        bail!(
            "{} is damaged: its SHA-256 is {digest}, the manifest says {}",
            dump.display(),
            manifest.dump.sha256
        );
    }
    settings.eviction.check_key_for_real_data()?;
    let configured = Pseudonymizer::from_settings(&settings.eviction).fingerprint();
    if configured != manifest.pseudonym_key_fingerprint {
        bail!(
            "the backup's pseudonyms were made with the key chain of fingerprint {}, the \
             configured eviction.pseudonym_key has {}: configure the chain the backup was made \
             with (after a rekey, the old keys and the new one, in order); nothing was restored",
            short(&manifest.pseudonym_key_fingerprint),
            short(&configured)
        );
    }
    let known = db::latest_known();
    if manifest.migration_version > known {
        bail!(
            "the backup was made at migration {} by release {}; this binary knows migrations up \
             to {known}: restore it with that release or a newer one",
            manifest.migration_version,
            manifest.release
        );
    }
    Ok(())
}

/// Creates the database if missing; refuses one with tables unless forced, then recreates it.
async fn prepare_database(
    settings: &Settings,
    database: &str,
    overwrite: Overwrite,
) -> anyhow::Result<()> {
    if !db::create_database_if_missing(&settings.database).await? {
        let mut conn = PgConnection::connect_with(&settings.database.connect_options()?).await?;
        let relations = count_relations(&mut conn).await?;
        conn.close().await?;
        if relations > 0 {
            if overwrite == Overwrite::Refuse {
                bail!(
                    "the database {database} is not empty ({relations} tables, sequences or \
                     views): restore refuses to overwrite it; --force drops and recreates it"
                );
            }
            eprintln!("Dropping and recreating {database} (--force)…");
            db::drop_database(&settings.database).await?;
            db::create_database_if_missing(&settings.database).await?;
        }
    }
    Ok(())
}

/// Compares every table's rows after the restore with the manifest's.
async fn verify_counts(settings: &Settings, manifest: &Manifest) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect_with(&settings.database.connect_options()?).await?;
    let restored = count_rows(&mut conn).await?;
    conn.close().await?;
    let differing: Vec<String> = manifest
        .tables
        .iter()
        .filter(|(table, rows)| restored.get(*table) != Some(rows))
        .map(|(table, rows)| {
            format!(
                "{table}: {rows} in the backup, {} restored",
                restored.get(table).copied().unwrap_or_default()
            )
        })
        .collect();
    if !differing.is_empty() {
        bail!(
            "the restored database differs from the backup: {}",
            differing.join("; ")
        );
    }
    Ok(())
}

/// Reads and checks `dir/manifest.json`.
pub fn read_manifest(dir: &Path) -> anyhow::Result<Manifest> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("Failed to read {} (is it a backup folder?)", path.display()))?;
    let manifest: Manifest = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a backup manifest", path.display()))?;
    if manifest.format != FORMAT {
        bail!(
            "{} has form {}; this release reads form {FORMAT}",
            path.display(),
            manifest.format
        );
    }
    Ok(manifest)
}

/// Creates `dir`, or accepts it when it exists and is empty.
fn prepare_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        let mut entries =
            std::fs::read_dir(dir).with_context(|| format!("Failed to read {}", dir.display()))?;
        if entries.next().is_some() {
            bail!(
                "{} is not empty: a backup goes into a new or empty folder",
                dir.display()
            );
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("Failed to create {}", dir.display()))
}

/// Rows of every table outside PostgreSQL's own schemas, by `schema.table`.
async fn count_rows(conn: &mut PgConnection) -> anyhow::Result<BTreeMap<String, i64>> {
    let tables: Vec<(String, String)> = sqlx::query_as(
        r#"
        SELECT table_schema::text, table_name::text
        FROM information_schema.tables
        WHERE table_type = 'BASE TABLE'
          AND table_schema NOT IN ('pg_catalog', 'information_schema')
        ORDER BY 1, 2
        "#,
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut counts = BTreeMap::new();
    for (schema, table) in tables {
        let quoted = format!("{}.{}", quote_ident(&schema), quote_ident(&table));
        let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {quoted}"))
            .fetch_one(&mut *conn)
            .await
            .with_context(|| format!("Failed to count the rows of {schema}.{table}"))?;
        counts.insert(format!("{schema}.{table}"), rows);
    }
    Ok(counts)
}

async fn count_relations(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        r#"
        SELECT count(*)
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
          AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg\_toast%'
        "#,
    )
    .fetch_one(conn)
    .await
}

async fn applied_migration(conn: &mut PgConnection) -> anyhow::Result<i64> {
    let version: Option<i64> = sqlx::query_scalar(
        r#"
        SELECT max(version)
        FROM _sqlx_migrations
        WHERE success
        "#,
    )
    .fetch_one(conn)
    .await
    .context("Failed to read the applied migrations (run `raccordo setup` first)")?;
    version.context("the database has no migration applied (run `raccordo setup` first)")
}

async fn stored_fingerprint(conn: &mut PgConnection) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        r#"
        SELECT fingerprint
        FROM eviction_key
        "#,
    )
    .fetch_optional(conn)
    .await
}

/// Runs a PostgreSQL client tool against `database` (connection in libpq's variables, so the
/// password never shows in the process list), reporting each table it reaches on stderr.
async fn run_with_progress(
    mut command: tokio::process::Command,
    settings: &Settings,
    database: &str,
    marker: &str,
    total: usize,
) -> anyhow::Result<()> {
    command
        .envs(libpq_env(settings, database)?)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .context("Failed to start the PostgreSQL tool")?;
    let stderr = child.stderr.take().context("the tool's stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    let mut done = 0;
    let mut problems = Vec::new();
    while let Some(line) = lines.next_line().await? {
        if let Some(table) = line.split(marker).nth(1) {
            done += 1;
            eprintln!("  [{done}/{total}] {}", table.trim().trim_matches('"'));
        } else if line.contains("error") || line.contains("warning") {
            problems.push(line);
        }
    }
    let status = child.wait().await?;
    if !status.success() {
        bail!("{status}: {}", problems.join("; "));
    }
    Ok(())
}

/// libpq's variables for the configured server and `database`.
fn libpq_env(settings: &Settings, database: &str) -> anyhow::Result<Vec<(String, String)>> {
    let options = settings.database.connect_options()?;
    let url = url::Url::parse(settings.database.url.expose_secret()).context("database.url")?;
    let mut env = vec![
        ("PGHOST".to_owned(), options.get_host().to_owned()),
        ("PGPORT".to_owned(), options.get_port().to_string()),
        ("PGUSER".to_owned(), options.get_username().to_owned()),
        ("PGDATABASE".to_owned(), database.to_owned()),
    ];
    if let Some(password) = url.password() {
        let password = percent_encoding::percent_decode_str(password).decode_utf8()?;
        env.push(("PGPASSWORD".to_owned(), password.into_owned()));
    }
    for (key, value) in url.query_pairs() {
        let name = match key.as_ref() {
            "sslmode" => "PGSSLMODE",
            "sslrootcert" => "PGSSLROOTCERT",
            "sslcert" => "PGSSLCERT",
            "sslkey" => "PGSSLKEY",
            _ => continue,
        };
        env.push((name.to_owned(), value.into_owned()));
    }
    Ok(env)
}

/// The PostgreSQL tool `name` of the server's major version: from `pg_bin`, then Debian's
/// `/usr/lib/postgresql/<major>/bin`, then `PATH`.
pub fn pg_tool(name: &str, major: u32, pg_bin: Option<&Path>) -> anyhow::Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = pg_bin.map(|dir| dir.join(name)).into_iter().collect();
    candidates.push(PathBuf::from(format!(
        "/usr/lib/postgresql/{major}/bin/{name}"
    )));
    candidates.push(PathBuf::from(name));
    let mut found = Vec::new();
    for candidate in candidates {
        let Ok(output) = std::process::Command::new(&candidate)
            .arg("--version")
            .output()
        else {
            continue;
        };
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        // "pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)"
        let version = text.split_whitespace().nth(2).unwrap_or_default();
        if major_of(version) == Some(major) {
            return Ok(candidate);
        }
        found.push(format!("{} is {}", candidate.display(), text.trim()));
    }
    bail!(
        "{name} of PostgreSQL {major} (the server's version) is missing{}: install Debian's \
         postgresql-client-{major} (apt-get install -y postgresql-client-{major}) or pass \
         --pg-bin DIR",
        if found.is_empty() {
            String::new()
        } else {
            format!(" ({})", found.join(", "))
        }
    )
}

/// The major version of a server version such as `15.20 (Debian 15.20-0+deb12u1)`.
pub fn major(server_version: &str) -> anyhow::Result<u32> {
    major_of(server_version)
        .with_context(|| format!("unreadable PostgreSQL version {server_version:?}"))
}

fn major_of(version: &str) -> Option<u32> {
    version
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|m| m.parse().ok())
}

fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("Failed to open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 16];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub(crate) fn short(fingerprint: &str) -> &str {
    fingerprint.get(..16).unwrap_or(fingerprint)
}

fn now_rfc3339() -> anyhow::Result<String> {
    Ok(time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339)?)
}

#[cfg(test)]
mod tests {
    use super::major_of;

    #[test]
    fn the_major_version_is_read_from_server_and_tool_versions() {
        assert_eq!(major_of("15.20 (Debian 15.20-0+deb12u1)"), Some(15));
        assert_eq!(major_of("9.6.24"), Some(9));
        assert_eq!(major_of("17devel"), Some(17));
        assert_eq!(major_of(""), None);
    }
}

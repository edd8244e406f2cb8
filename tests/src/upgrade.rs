//! Upgrades and backups: the previous release's database restored from its fixture, every
//! stored fact fingerprinted (to compare before and after a migration or a restore), and the
//! lint that keeps new migrations expand-only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sqlx::PgPool;

/// The previous release, whose database the committed fixture holds.
pub const PREVIOUS_RELEASE: &str = "v0.7.0";
/// The newest migration of [`PREVIOUS_RELEASE`]: later ones must keep its processes working.
pub const PREVIOUS_RELEASE_MIGRATION: i64 = 33;

/// The dump of a database the previous release filled: `RACCORDO_UPGRADE_FIXTURE`, else the
/// committed one (`scripts/upgrade.sh fixture` makes it).
pub fn fixture_path() -> PathBuf {
    std::env::var_os("RACCORDO_UPGRADE_FIXTURE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            crate::workspace_root().join(format!("tests/fixtures/upgrade/{PREVIOUS_RELEASE}.dump"))
        })
}

/// Restores a `pg_dump --format=custom` file into the (empty) database of `url`'s settings.
pub async fn restore_dump(settings: &raccordo_core::settings::DatabaseSettings, dump: &Path) {
    use secrecy::ExposeSecret;
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect_with(
        &settings.maintenance_options().expect("database.url"),
    )
    .await
    .expect("PostgreSQL answers");
    let version = raccordo_core::db::server_version(&mut conn)
        .await
        .expect("the server's version");
    let major = raccordo::backup::major(&version).expect("a readable version");
    let pg_restore =
        raccordo::backup::pg_tool("pg_restore", major, None).unwrap_or_else(|e| panic!("{e:#}"));
    let output = tokio::process::Command::new(pg_restore)
        .args([
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            "--single-transaction",
        ])
        .arg(format!("--dbname={}", settings.url.expose_secret()))
        .arg(dump)
        .output()
        .await
        .expect("pg_restore runs");
    assert!(
        output.status.success(),
        "pg_restore of {} failed: {}",
        dump.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Every table's columns (`table` → columns in order), outside PostgreSQL's own schemas.
pub type Columns = BTreeMap<String, Vec<String>>;

/// Every table's [`Fact`], by name.
pub type Facts = BTreeMap<String, Fact>;

/// One table's rows: how many, and a digest of them all (order-independent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact {
    pub rows: i64,
    pub digest: String,
}

/// The columns of every base table of the `public` schema.
pub async fn columns(pool: &PgPool) -> Columns {
    let rows: Vec<(String, String)> = sqlx::query_as(
        r#"
        SELECT c.table_name::text, c.column_name::text
        FROM information_schema.columns c
        JOIN information_schema.tables t
          ON t.table_schema = c.table_schema AND t.table_name = c.table_name
        WHERE c.table_schema = 'public'
          AND t.table_type = 'BASE TABLE'
        ORDER BY c.table_name, c.ordinal_position
        "#,
    )
    .fetch_all(pool)
    .await
    .expect("the columns");
    let mut out = Columns::new();
    for (table, column) in rows {
        out.entry(table).or_default().push(column);
    }
    out
}

/// Each table's rows over `columns` (those of an earlier schema, so that columns a migration
/// adds do not count): the stored facts a migration or a restore must keep.
pub async fn facts(pool: &PgPool, columns: &Columns) -> Facts {
    let mut out = BTreeMap::new();
    for (table, cols) in columns {
        let row = cols.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ");
        let sql = format!(
            "SELECT count(*), coalesce(md5(string_agg(h, '' ORDER BY h)), '') \
             FROM (SELECT md5(ROW({row})::text) AS h FROM {}) rows",
            quote(table)
        );
        let (rows, digest): (i64, String) = sqlx::query_as(&sql)
            .fetch_one(pool)
            .await
            .unwrap_or_else(|e| panic!("the rows of {table}: {e}"));
        out.insert(table.clone(), Fact { rows, digest });
    }
    out
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// What in one migration would break a running replica of the previous release: removing or
/// renaming what it reads or writes, changing a column's type, or a new column it cannot fill.
/// A migration that contracts on purpose says so with a line `-- contract: <why>` and raises
/// `schema_floor` so that binaries using what it removes refuse to start.
pub fn expand_only_violations(sql: &str) -> Vec<String> {
    let contracted = sql
        .lines()
        .any(|l| l.trim_start().starts_with("-- contract:"));
    let code: String = sql
        .lines()
        .map(|l| l.split("--").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join(" ")
        .to_uppercase();
    let statements: Vec<String> = code
        .split(';')
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|s| !s.is_empty())
        .collect();
    let mut found = Vec::new();
    for statement in &statements {
        if let Some(reason) = breaking(statement) {
            found.push(format!("{reason}: {statement}"));
        }
    }
    if contracted {
        if !code.contains("UPDATE SCHEMA_FLOOR") {
            found.push("a `-- contract:` migration must raise schema_floor".to_owned());
        } else {
            found.clear();
        }
    }
    found
}

/// Why one statement (upper case, one space between words) is not expand-only.
fn breaking(statement: &str) -> Option<&'static str> {
    const DROPS: [&str; 9] = [
        "DROP TABLE",
        "DROP COLUMN",
        "DROP VIEW",
        "DROP MATERIALIZED VIEW",
        "DROP FUNCTION",
        "DROP TYPE",
        "DROP SCHEMA",
        "DROP SEQUENCE",
        "TRUNCATE",
    ];
    if DROPS.iter().any(|d| statement.contains(d)) {
        return Some("removes what the previous release may use");
    }
    if statement.contains(" RENAME ") || statement.ends_with(" RENAME") {
        return Some("renames what the previous release may use");
    }
    if statement.starts_with("ALTER TABLE") {
        if statement.contains(" TYPE ") {
            return Some("changes a column's type under the previous release");
        }
        if statement.contains("SET NOT NULL") {
            return Some("makes a column required that the previous release may leave empty");
        }
        if statement.contains("ADD COLUMN")
            && statement.contains("NOT NULL")
            && !statement.contains("DEFAULT")
            && !statement.contains("GENERATED")
        {
            return Some("adds a required column the previous release cannot fill");
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::expand_only_violations;

    #[test]
    fn adding_tables_nullable_columns_and_indexes_is_expand_only() {
        let sql = "-- a comment that says DROP TABLE x\n\
                   CREATE TABLE a (id BIGINT PRIMARY KEY, name TEXT NOT NULL);\n\
                   ALTER TABLE b ADD COLUMN c TEXT;\n\
                   ALTER TABLE b ADD COLUMN d INTEGER NOT NULL DEFAULT 0;\n\
                   CREATE INDEX b_c ON b (c);\n\
                   ALTER TABLE b DROP CONSTRAINT b_fkey;";
        assert_eq!(expand_only_violations(sql), Vec::<String>::new());
    }

    #[test]
    fn drops_renames_type_changes_and_required_columns_are_refused() {
        for sql in [
            "DROP TABLE old_things;",
            "ALTER TABLE b DROP COLUMN c;",
            "ALTER TABLE b RENAME COLUMN c TO d;",
            "ALTER TABLE b RENAME TO c;",
            "ALTER TABLE b ALTER COLUMN c TYPE BIGINT;",
            "ALTER TABLE b ALTER COLUMN c SET NOT NULL;",
            "ALTER TABLE b ADD COLUMN c TEXT NOT NULL;",
            "TRUNCATE inbox;",
        ] {
            assert_eq!(expand_only_violations(sql).len(), 1, "{sql}");
        }
    }

    #[test]
    fn a_contract_migration_is_allowed_only_when_it_raises_the_floor() {
        let without = "-- contract: c is unused since v0.8.0\nALTER TABLE b DROP COLUMN c;";
        assert_eq!(expand_only_violations(without).len(), 2);
        let with = format!("{without}\nUPDATE schema_floor SET version = 40;");
        assert!(expand_only_violations(&with).is_empty());
    }
}

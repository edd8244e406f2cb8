//! Comuni of the Città Metropolitana: zona omogenea, ambito, population, quota, and
//! whether they signed the reception protocol.

use std::io::Read;

use serde::Serialize;
use sqlx::{PgConnection, PgPool};

use super::csv_rows::{Columns, CsvError, ImportError, ImportReport, Parsed, read_rows};
use crate::domain::ComuneIstat;

/// A comune as the registry knows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comune {
    pub istat: ComuneIstat,
    pub nome: String,
    pub popolazione: i32,
    pub zona: String,
    pub ambito: Option<String>,
    /// The Prefettura's table value, when given (otherwise computed: CONTRACT Q3).
    pub quota: Option<i32>,
    /// Signed the reception protocol.
    pub protocollo: bool,
    /// Takes part in the rotation of domiciles for asylum seekers (CONTRACT A3).
    pub domicilio: bool,
}

type ComuneRow = (
    String,
    String,
    i32,
    String,
    Option<String>,
    Option<i32>,
    bool,
    bool,
);

/// A row whose ISTAT code no longer parses (written by hand, or by an older version) is
/// left out, counted and logged: never dropped in silence.
fn from_row(row: ComuneRow) -> Option<Comune> {
    let Ok(istat) = ComuneIstat::parse(&row.0) else {
        metrics::counter!("raccordo_rows_skipped_total", "table" => "comuni").increment(1);
        tracing::warn!(
            table = "comuni",
            "A comuni row with an invalid ISTAT code was skipped."
        );
        return None;
    };
    Some(Comune {
        istat,
        nome: row.1,
        popolazione: row.2,
        zona: row.3,
        ambito: row.4,
        quota: row.5,
        protocollo: row.6,
        domicilio: row.7,
    })
}

/// Loads one comune.
pub async fn load_comune(
    conn: &mut PgConnection,
    istat: &ComuneIstat,
) -> Result<Option<Comune>, sqlx::Error> {
    let row: Option<ComuneRow> = sqlx::query_as(
        r#"
        SELECT istat, nome, popolazione, zona, ambito, quota, protocollo, domicilio
        FROM comuni
        WHERE istat = $1
        "#,
    )
    .bind(istat.as_ref())
    .fetch_optional(conn)
    .await?;
    Ok(row.and_then(from_row))
}

/// Loads one comune an event names; an unknown one makes the event unprocessable.
pub async fn require_comune(
    conn: &mut PgConnection,
    istat: &ComuneIstat,
) -> Result<Comune, crate::amqp::HandleError> {
    load_comune(conn, istat)
        .await?
        .ok_or_else(|| crate::amqp::HandleError::UnknownComune(istat.clone()))
}

/// The comuni of one zona, or all, by zona then ISTAT code (the quota worker's lock order).
pub async fn list_comuni_by_istat(
    conn: &mut PgConnection,
    zona: Option<&str>,
) -> Result<Vec<Comune>, sqlx::Error> {
    let rows: Vec<ComuneRow> = sqlx::query_as(
        r#"
        SELECT istat, nome, popolazione, zona, ambito, quota, protocollo, domicilio
        FROM comuni
        WHERE $1::TEXT IS NULL OR zona = $1
        ORDER BY zona, istat
        "#,
    )
    .bind(zona)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().filter_map(from_row).collect())
}

/// Every comune, by zona then name.
pub async fn list_comuni(conn: &mut PgConnection) -> Result<Vec<Comune>, sqlx::Error> {
    let rows: Vec<ComuneRow> = sqlx::query_as(
        r#"
        SELECT istat, nome, popolazione, zona, ambito, quota, protocollo, domicilio
        FROM comuni
        ORDER BY zona, nome
        "#,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().filter_map(from_row).collect())
}

fn parse_comune(cols: &Columns, record: &csv::StringRecord) -> Result<Comune, String> {
    let istat = ComuneIstat::parse(cols.get(record, "istat")).map_err(|e| e.0)?;
    let nome = cols.get(record, "nome");
    if nome.is_empty() {
        return Err("nome is empty".into());
    }
    let popolazione: i32 = cols
        .get(record, "popolazione")
        .parse()
        .ok()
        .filter(|p| *p >= 0)
        .ok_or("popolazione is not a whole number ≥ 0")?;
    let zona = cols.get(record, "zona_omogenea");
    if zona.is_empty() {
        return Err("zona_omogenea is empty".into());
    }
    let ambito = Some(cols.get(record, "ambito"))
        .filter(|a| !a.is_empty())
        .map(str::to_owned);
    let quota = match cols.get(record, "quota") {
        "" => None,
        q => Some(
            q.parse::<i32>()
                .ok()
                .filter(|q| *q >= 0)
                .ok_or("quota is not a whole number ≥ 0")?,
        ),
    };
    let protocollo = match cols.get(record, "protocollo").to_lowercase().as_str() {
        "" | "si" | "sì" | "true" => true,
        "no" | "false" => false,
        _ => return Err("protocollo must be si, no, true, false or empty".into()),
    };
    let domicilio = match cols.get(record, "domicilio").to_lowercase().as_str() {
        "si" | "sì" | "true" => true,
        "" | "no" | "false" => false,
        _ => return Err("domicilio must be si, no, true, false or empty".into()),
    };
    Ok(Comune {
        istat,
        nome: nome.to_owned(),
        popolazione,
        zona: zona.to_owned(),
        ambito,
        quota,
        protocollo,
        domicilio,
    })
}

/// Parses a comuni CSV (`istat,nome,popolazione,zona_omogenea,ambito[,quota][,protocollo][,domicilio]`)
/// without touching the database: the rows with their line numbers, and every bad line.
/// `Err` when the file cannot be read at all (no header, missing or unknown columns).
pub fn parse_comuni(input: impl Read) -> Result<Parsed<Comune>, CsvError> {
    read_rows(
        input,
        &["istat", "nome", "popolazione", "zona_omogenea", "ambito"],
        &["quota", "protocollo", "domicilio"],
        parse_comune,
        |c: &Comune| format!("istat {}", c.istat),
    )
}

/// Imports comuni from CSV (`istat,nome,popolazione,zona_omogenea,ambito[,quota][,protocollo][,domicilio]`).
/// All or nothing: every bad line is reported and, if there is any, nothing changes.
pub async fn import_comuni(pool: &PgPool, input: impl Read) -> Result<ImportReport, ImportError> {
    let (rows, errors) = parse_comuni(input)?;
    let mut report = ImportReport {
        errors,
        ..ImportReport::default()
    };
    if !report.errors.is_empty() {
        return Ok(report);
    }
    let mut tx = pool.begin().await?;
    for (_, c) in &rows {
        let inserted: bool = sqlx::query_scalar(
            r#"
            INSERT INTO comuni (istat, nome, popolazione, zona, ambito, quota, protocollo, domicilio)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            ON CONFLICT (istat) DO UPDATE
            SET nome = EXCLUDED.nome,
                popolazione = EXCLUDED.popolazione,
                zona = EXCLUDED.zona,
                ambito = EXCLUDED.ambito,
                quota = EXCLUDED.quota,
                protocollo = EXCLUDED.protocollo,
                domicilio = EXCLUDED.domicilio,
                updated_at = now()
            RETURNING (xmax = 0)
            "#,
        )
        .bind(c.istat.as_ref())
        .bind(&c.nome)
        .bind(c.popolazione)
        .bind(&c.zona)
        .bind(&c.ambito)
        .bind(c.quota)
        .bind(c.protocollo)
        .bind(c.domicilio)
        .fetch_one(&mut *tx)
        .await?;
        if inserted {
            report.inserted += 1;
        } else {
            report.updated += 1;
        }
    }
    tx.commit().await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(csv_text: &str) -> Vec<Result<Comune, String>> {
        let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
        let headers = reader.headers().expect("header").clone();
        let cols = Columns::new(
            &headers,
            &["istat", "nome", "popolazione", "zona_omogenea", "ambito"],
            &["quota", "protocollo", "domicilio"],
        )
        .expect("columns");
        reader
            .records()
            .map(|r| parse_comune(&cols, &r.expect("record")))
            .collect()
    }

    #[test]
    fn a_row_parses_with_defaults_for_quota_and_protocollo() {
        let rows = parse(
            "istat,nome,popolazione,zona_omogenea,ambito,quota\n015002,Abbiategrasso,30994,Magentino e Abbiatense,Abbiategrasso,\n",
        );
        let c = rows[0].as_ref().expect("valid");
        assert_eq!(c.quota, None);
        assert!(c.protocollo);
    }

    #[test]
    fn protocollo_no_marks_a_non_signatory() {
        let rows = parse(
            "istat,nome,popolazione,zona_omogenea,ambito,quota,protocollo\n015002,A,1,Z,,3,no\n015003,B,1,Z,,3,maybe\n",
        );
        assert!(!rows[0].as_ref().expect("valid").protocollo);
        assert!(rows[1].is_err());
    }

    #[test]
    fn domicilio_defaults_to_no_and_takes_si() {
        let rows = parse(
            "istat,nome,popolazione,zona_omogenea,ambito,domicilio\n015002,A,1,Z,,si\n015003,B,1,Z,,\n015004,C,1,Z,,forse\n",
        );
        assert!(rows[0].as_ref().expect("valid").domicilio);
        assert!(!rows[1].as_ref().expect("valid").domicilio);
        assert!(rows[2].as_ref().expect_err("bad").contains("domicilio"));
    }

    #[test]
    fn bad_values_are_reported_per_field() {
        let rows = parse(
            "istat,nome,popolazione,zona_omogenea,ambito\n15002,A,1,Z,\n015002,A,-1,Z,\n015002,A,1,,\n",
        );
        assert!(rows[0].as_ref().expect_err("istat").contains("6-digit"));
        assert!(rows[1].as_ref().expect_err("pop").contains("popolazione"));
        assert!(
            rows[2]
                .as_ref()
                .expect_err("zona")
                .contains("zona_omogenea")
        );
    }

    #[test]
    fn a_missing_column_is_named() {
        let headers = csv::StringRecord::from(vec!["istat", "nome"]);
        let err = Columns::new(&headers, &["istat", "nome", "popolazione"], &[])
            .err()
            .expect("missing");
        assert!(err.contains("popolazione"));
    }
}

//! Reading the registry's CSV files: columns by header name, one error per wrong line,
//! repeated keys refused. Imports are all or nothing, so every error is collected first.

use std::collections::HashMap;
use std::io::Read;

use serde::Serialize;

/// What a parse of a CSV file gives: the good rows with the line each starts on, and
/// every bad line.
pub type Parsed<T> = (Vec<(u64, T)>, Vec<RowError>);

/// A line of a CSV file that could not be imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    /// 1-based line number in the file where the record starts (the header is line 1).
    pub line: u64,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// What an import did, or why it did nothing.
#[derive(Debug, Default, Serialize)]
pub struct ImportReport {
    /// Rows new to the registry.
    pub inserted: u64,
    /// Rows that replaced an existing entry.
    pub updated: u64,
    /// Lines refused; when any, nothing was imported.
    pub errors: Vec<RowError>,
}

/// A CSV header looked up by column name.
pub(crate) struct Columns(HashMap<String, usize>);

impl Columns {
    pub(crate) fn new(
        headers: &csv::StringRecord,
        required: &[&str],
        optional: &[&str],
    ) -> Result<Self, String> {
        let map: HashMap<String, usize> = headers
            .iter()
            .enumerate()
            .map(|(i, h)| (h.trim().trim_start_matches('\u{feff}').to_lowercase(), i))
            .collect();
        let missing: Vec<&str> = required
            .iter()
            .copied()
            .filter(|c| !map.contains_key(*c))
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "the header row lacks column(s) {}; expected {}",
                missing.join(", "),
                required
                    .iter()
                    .chain(optional)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(",")
            ));
        }
        let unknown: Vec<&String> = map
            .keys()
            .filter(|k| !required.contains(&k.as_str()) && !optional.contains(&k.as_str()))
            .collect();
        if !unknown.is_empty() {
            let mut names: Vec<&str> = unknown.iter().map(|s| s.as_str()).collect();
            names.sort_unstable();
            return Err(format!("unknown column(s) {}", names.join(", ")));
        }
        Ok(Self(map))
    }

    pub(crate) fn get<'r>(&self, record: &'r csv::StringRecord, name: &str) -> &'r str {
        self.0
            .get(name)
            .and_then(|i| record.get(*i))
            .map(str::trim)
            .unwrap_or_default()
    }
}

/// A parsed row and its line number.
pub(crate) type Numbered<T> = (u64, T);

/// Reads every record of `input`, parses it with `parse`, and refuses a key (named by
/// `key`) seen on an earlier line. Returns the parsed rows with their line numbers, and the
/// errors; a header that lacks a required column is an error of its own.
/// Why a CSV file cannot be read at all (a bad line is a [`RowError`] instead).
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    /// The input could not be read.
    #[error(transparent)]
    Read(#[from] std::io::Error),
    /// Not CSV.
    #[error(transparent)]
    Csv(#[from] csv::Error),
    /// The header lacks a required column or names an unknown one.
    #[error("line 1: {0}")]
    Header(String),
}

/// Why an import changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file cannot be read.
    #[error(transparent)]
    Csv(#[from] CsvError),
    /// The database failed; the import was rolled back.
    #[error("database")]
    Database(#[from] sqlx::Error),
}

pub(crate) fn read_rows<T>(
    mut input: impl Read,
    required: &[&str],
    optional: &[&str],
    parse: impl Fn(&Columns, &csv::StringRecord) -> Result<T, String>,
    key: impl Fn(&T) -> String,
) -> Result<(Vec<Numbered<T>>, Vec<RowError>), CsvError> {
    // Read whole (imports are small) so that a record's byte offset gives its line.
    let mut bytes = Vec::new();
    input.read_to_end(&mut bytes)?;
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(bytes.as_slice());
    let headers = reader.headers()?.clone();
    let cols = Columns::new(&headers, required, optional).map_err(CsvError::Header)?;
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    for (i, record) in reader.records().enumerate() {
        // Where the record starts in the file: blank lines are skipped and a quoted field
        // may span lines, so the record's index is not its line.
        let position = match &record {
            Ok(r) => r.position(),
            Err(e) => e.position(),
        };
        let line = position.map_or(i as u64 + 2, |p| line_of(&bytes, p.byte()));
        match record
            .map_err(|e| e.to_string())
            .and_then(|r| parse(&cols, &r))
        {
            Ok(row) => {
                let k = key(&row);
                if let Some(first) = seen.get(&k) {
                    errors.push(RowError {
                        line,
                        reason: format!("{k} repeats line {first}"),
                    });
                } else {
                    seen.insert(k, line);
                    rows.push((line, row));
                }
            }
            Err(reason) => errors.push(RowError { line, reason }),
        }
    }
    Ok((rows, errors))
}

/// The 1-based line of the first character of the record the `csv` reader saw start at
/// `offset`: its position is taken before the blank lines it skips.
fn line_of(bytes: &[u8], offset: u64) -> u64 {
    let offset = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    let start = bytes[offset..]
        .iter()
        .position(|b| !matches!(b, b'\n' | b'\r'))
        .map_or(bytes.len(), |skip| offset + skip);
    1 + bytes[..start].iter().filter(|b| **b == b'\n').count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(input: &str) -> (Vec<Numbered<String>>, Vec<RowError>) {
        read_rows(
            input.as_bytes(),
            &["k", "v"],
            &[],
            |cols, record| Ok(cols.get(record, "k").to_owned()),
            |k: &String| format!("k {k}"),
        )
        .expect("a header")
    }

    #[test]
    fn line_numbers_are_where_records_start_across_blank_lines_and_quoted_newlines() {
        // Found by fuzz/fuzz_targets/csv_comuni.rs: lines were counted as records + 1.
        let (rows, errors) = read("k,v\n\na,1\n\"b\nb\",2\nc,\"3\n\n3\"\na,4\nd\n");
        let lines: Vec<u64> = rows.iter().map(|(line, _)| *line).collect();
        assert_eq!(lines, vec![3, 4, 6]);
        assert_eq!(
            errors,
            vec![
                RowError {
                    line: 9,
                    reason: "k a repeats line 3".into()
                },
                RowError {
                    line: 10,
                    reason: errors[1].reason.clone()
                },
            ]
        );
    }
}

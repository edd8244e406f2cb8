//! Reading the registry's CSV files: columns by header name, one error per wrong line,
//! repeated keys refused. Imports are all or nothing, so every error is collected first.

use std::collections::HashMap;
use std::io::Read;

use serde::Serialize;

use crate::domain::{CONTROL_CHARACTER, has_control};

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
pub(crate) struct Columns {
    by_name: HashMap<String, usize>,
    /// The names in file order, to name the column of a bad field.
    names: Vec<String>,
}

impl Columns {
    pub(crate) fn new(
        headers: &csv::StringRecord,
        required: &[&str],
        optional: &[&str],
    ) -> Result<Self, String> {
        let names: Vec<String> = headers
            .iter()
            .map(|h| h.trim().trim_start_matches('\u{feff}').to_lowercase())
            .collect();
        let map: HashMap<String, usize> = names
            .iter()
            .enumerate()
            .map(|(i, h)| (h.clone(), i))
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
        Ok(Self {
            by_name: map,
            names,
        })
    }

    pub(crate) fn get<'r>(&self, record: &'r csv::StringRecord, name: &str) -> &'r str {
        self.by_name
            .get(name)
            .and_then(|i| record.get(*i))
            .map(str::trim)
            .unwrap_or_default()
    }
}

impl Columns {
    /// Refuses a record with a control character in any field, naming the first such
    /// column (CONTRACT §4: names and institutions reach email headers, and every field
    /// an operator's terminal). Checked before trimming: a quoted field may end in CR LF.
    fn reject_control(&self, record: &csv::StringRecord) -> Result<(), String> {
        match record.iter().position(has_control) {
            Some(i) => Err(format!(
                "column {} {CONTROL_CHARACTER}",
                self.names.get(i).map_or("?", String::as_str)
            )),
            None => Ok(()),
        }
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

impl CsvError {
    /// What it means, in Italian, for the console (the English text stays for the CLI).
    pub fn message_it(&self) -> &'static str {
        match self {
            CsvError::Read(_) => "il file non si può leggere (è testo UTF-8?)",
            CsvError::Csv(_) => {
                "non è un CSV valido (righe con un numero di campi diverso, virgolette non chiuse?)"
            }
            CsvError::Header(_) => {
                "la prima riga deve nominare le colonne: ne manca una obbligatoria o ce n'è una \
                 sconosciuta (il README elenca le colonne di ogni file)"
            }
        }
    }
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
        match record.map_err(|e| e.to_string()).and_then(|r| {
            cols.reject_control(&r)?;
            parse(&cols, &r)
        }) {
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
    fn a_control_character_in_any_field_refuses_the_row_naming_line_and_column() {
        let (rows, errors) = read("k,v\na,1\n\"b\r\nb\",2\nc,3\u{7}\nd,\"4\r\n\"\ne,\u{85}\n");
        let lines: Vec<u64> = rows.iter().map(|(line, _)| *line).collect();
        assert_eq!(lines, vec![2]);
        let reasons: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            reasons,
            vec![
                format!("line 3: column k {CONTROL_CHARACTER}"),
                format!("line 5: column v {CONTROL_CHARACTER}"),
                format!("line 6: column v {CONTROL_CHARACTER}"),
                format!("line 8: column v {CONTROL_CHARACTER}"),
            ]
        );
    }

    #[test]
    fn line_numbers_are_where_records_start_across_blank_lines_and_quoted_newlines() {
        // Found by fuzz/fuzz_targets/csv_comuni.rs: lines were counted as records + 1. A
        // quoted newline is a control character now, refused, but still counted.
        let (rows, errors) = read("k,v\n\na,1\n\"b\nb\",2\nc,\"3\n\n3\"\na,4\nd\ne,5\n");
        let lines: Vec<u64> = rows.iter().map(|(line, _)| *line).collect();
        assert_eq!(lines, vec![3, 11]);
        let error_lines: Vec<u64> = errors.iter().map(|e| e.line).collect();
        assert_eq!(error_lines, vec![4, 6, 9, 10]);
        assert_eq!(errors[0].reason, format!("column k {CONTROL_CHARACTER}"));
        assert_eq!(errors[1].reason, format!("column v {CONTROL_CHARACTER}"));
        assert_eq!(errors[2].reason, "k a repeats line 3");
    }
}

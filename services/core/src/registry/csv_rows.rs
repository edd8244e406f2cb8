//! Reading the registry's CSV files: columns by header name, one error per wrong line,
//! repeated keys refused. Imports are all or nothing, so every error is collected first.

use std::collections::HashMap;
use std::io::Read;

use serde::Serialize;

/// A line of a CSV file that could not be imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    /// 1-based line number in the file (the header is line 1).
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
pub(crate) fn read_rows<T>(
    input: impl Read,
    required: &[&str],
    optional: &[&str],
    parse: impl Fn(&Columns, &csv::StringRecord) -> Result<T, String>,
    key: impl Fn(&T) -> String,
) -> anyhow::Result<(Vec<Numbered<T>>, Vec<RowError>)> {
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(input);
    let headers = reader.headers()?.clone();
    let cols =
        Columns::new(&headers, required, optional).map_err(|e| anyhow::anyhow!("line 1: {e}"))?;
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    for (i, record) in reader.records().enumerate() {
        let line = i as u64 + 2;
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

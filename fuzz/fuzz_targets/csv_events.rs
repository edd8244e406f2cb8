//! Any bytes as a CSV upload of `housing.unit.v1` and of `reception.occupancy.v1`
//! (`POST /v1/csv/<type>`, CONTRACT 1.2 §10), parsed without the broker. Beyond "no panic":
//! the same result twice; every event re-validates as an inbound event would (envelope,
//! schema, no control character) with its cells trimmed and non-empty; one verdict (event or
//! error) per data record the `csv` crate reads, numbered as a spreadsheet shows rows (the
//! line where the record starts, less the line breaks inside earlier quoted cells); one id
//! never names two different rows; and no row error repeats a cell (the seeds carry the
//! canary `QZXJ` in their cells).

#![no_main]

use std::collections::{BTreeSet, HashMap};

use libfuzzer_sys::fuzz_target;

use raccordo_core::csv_events::{CsvParse, csv_types, parse_csv};
use raccordo_core::envelope::Envelope;
use raccordo_fuzz::csv_lines::assert_trimmed;
use serde_json::Value;

const SOURCE: &str = "urn:fuzz";
const MAX_ROWS: usize = 1000;

fuzz_target!(|data: &[u8]| {
    for event_type in csv_types() {
        let first = parse_csv(event_type, data, SOURCE, MAX_ROWS);
        let second = parse_csv(event_type, data, SOURCE, MAX_ROWS);
        assert_eq!(first, second, "parsing is not deterministic");
        let Ok(parse) = first else {
            continue;
        };
        check(event_type.as_str(), &parse);
        check_rows(data, &parse);
    }
});

/// The verdicts' rows against the `csv` crate's records: as many as the data records (blank
/// ones aside), in order, each at least its rank + 2 and at most the line the record starts
/// on, and exactly that line while no earlier quoted cell held a line break.
fn check_rows(data: &[u8], parse: &CsvParse) {
    let text = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
    let first_line = text
        .split(|b| matches!(b, b'\n' | b'\r'))
        .find(|line| !line.trim_ascii().is_empty())
        .unwrap_or_default();
    let delimiter = if first_line.contains(&b';') && !first_line.contains(&b',') {
        b';'
    } else {
        b','
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(text);
    let mut expected = Vec::new();
    let mut header_seen = false;
    let mut breaks_inside = 0;
    for record in reader.byte_records() {
        let record = record.expect("parse_csv read the file, so the csv crate does");
        let start = first_char(text, record.position().expect("tracked").byte());
        let line = 1 + breaks(&text[..start]);
        let blank = record
            .iter()
            .all(|cell| std::str::from_utf8(cell).expect("UTF-8").trim().is_empty());
        if header_seen && !blank {
            expected.push((expected.len() + 2, line, breaks_inside == 0));
        }
        header_seen |= !blank;
        breaks_inside += record.iter().map(breaks).sum::<usize>();
    }
    let mut rows: Vec<usize> = parse
        .rows
        .iter()
        .map(|r| r.row)
        .chain(parse.errors.iter().map(|e| e.row))
        .collect();
    rows.sort_unstable();
    assert_eq!(
        rows.len(),
        expected.len(),
        "not one verdict per data record"
    );
    for (row, (min, line, exact)) in rows.into_iter().zip(expected) {
        assert!(
            min <= row && row <= line,
            "row {row} outside {min}..={line}"
        );
        assert!(!exact || row == line, "row {row}, line {line}");
    }
}

/// The first byte at or after `byte` that is not a line break (the `csv` reader takes a
/// record's position before the blank lines it skips).
fn first_char(text: &[u8], byte: u64) -> usize {
    let from = usize::try_from(byte).expect("small").min(text.len());
    text[from..]
        .iter()
        .position(|b| !matches!(b, b'\n' | b'\r'))
        .map_or(text.len(), |n| from + n)
}

/// Line breaks as the `csv` reader ends records: CR LF, LF or a lone CR.
fn breaks(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .enumerate()
        .filter(|(i, b)| **b == b'\r' || (**b == b'\n' && (*i == 0 || bytes[i - 1] != b'\r')))
        .count()
}

fn check(event_type: &str, parse: &CsvParse) {
    let numbers: Vec<usize> = parse
        .rows
        .iter()
        .map(|r| r.row)
        .chain(parse.errors.iter().map(|e| e.row))
        .collect();
    let distinct: BTreeSet<usize> = numbers.iter().copied().collect();
    assert_eq!(distinct.len(), numbers.len(), "a row with two verdicts");
    assert!(numbers.len() <= MAX_ROWS, "more rows than the limit");
    assert!(numbers.iter().all(|n| *n >= 2), "a data row before row 2");
    for list in [
        parse.rows.iter().map(|r| r.row).collect::<Vec<_>>(),
        parse.errors.iter().map(|e| e.row).collect(),
    ] {
        assert!(list.is_sorted(), "rows out of file order");
    }
    let mut ids: HashMap<&str, &Value> = HashMap::new();
    for row in &parse.rows {
        let envelope = Envelope::decode_value(row.event.clone())
            .unwrap_or_else(|e| panic!("row {} does not re-validate: {e}", row.row));
        envelope
            .refuse_control_characters()
            .unwrap_or_else(|e| panic!("row {} does not re-validate: {e}", row.row));
        assert_eq!(envelope.event_type.as_str(), event_type);
        assert_eq!(envelope.source, SOURCE);
        assert_trimmed(&envelope.id);
        let data = envelope.data.as_object().expect("valid data is an object");
        for value in data.values() {
            if let Value::String(s) = value {
                assert_trimmed(s);
            }
        }
        let id = row.event["id"].as_str().expect("a valid event has an id");
        let data = &row.event["data"];
        if let Some(earlier) = ids.insert(id, data) {
            assert_eq!(earlier, data, "one id for two different rows");
        }
    }
    for error in &parse.errors {
        let text = error.to_string();
        assert!(
            !text.contains("QZXJ"),
            "a row error repeats a cell: {text:?}"
        );
    }
}

//! The CSV imports' promises checked against the `csv` crate's own reading of the file.

/// Every record gets exactly one verdict (a row or an error), at the line of the file where
/// the record's first character is — what an operator opens the file at — never on a blank
/// line (the `csv` reader skips those, and takes a record's position before skipping).
pub fn assert_one_verdict_per_record(data: &[u8], mut lines: Vec<u64>) {
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(data);
    if reader.headers().is_err() {
        return;
    }
    let mut expected: Vec<u64> = reader
        .records()
        .map(|r| match r {
            Ok(record) => record.position().map(|p| p.byte()),
            Err(e) => e.position().map(|p| p.byte()),
        })
        .map(|byte| first_char_line(data, byte.expect("the csv reader tracks positions")))
        .collect();
    lines.sort_unstable();
    expected.sort_unstable();
    assert_eq!(
        lines,
        expected,
        "the lines reported are not where the records start\ninput: {:?}",
        String::from_utf8_lossy(data)
    );
    let text: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    for line in lines {
        let at = text[(line - 1) as usize];
        assert!(
            at.iter().any(|b| *b != b'\r'),
            "a verdict on blank line {line}"
        );
    }
}

/// 1-based line of the first byte at or after `byte` that is not a line terminator.
fn first_char_line(data: &[u8], byte: u64) -> u64 {
    let from = byte as usize;
    let first = data[from..]
        .iter()
        .position(|b| *b != b'\n' && *b != b'\r')
        .map_or(data.len(), |n| from + n);
    1 + data[..first].iter().filter(|b| **b == b'\n').count() as u64
}

/// A value kept from a CSV cell has no surrounding spaces and is not empty.
pub fn assert_trimmed(s: &str) {
    assert!(!s.is_empty(), "an empty value kept");
    assert_eq!(s, s.trim(), "a value kept untrimmed");
}

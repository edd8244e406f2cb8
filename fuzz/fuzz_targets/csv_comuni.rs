//! Any bytes as a comuni CSV (`raccordo import comuni`), parsed without the database.
//! Beyond "no panic": the same result twice; every row valid as the registry needs it, its
//! key unique and no field of it with a control character (a comune's name reaches email
//! subjects, CONTRACT §4); one verdict (row or error) per record, at the line where the
//! record starts in the file.

#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;

use raccordo_core::domain::{ComuneIstat, has_control};
use raccordo_core::registry::parse_comuni;
use raccordo_fuzz::csv_lines::{assert_one_verdict_per_record, assert_trimmed};

fuzz_target!(|data: &[u8]| {
    let first = parse_comuni(data);
    let second = parse_comuni(data);
    let (rows, errors) = match (first, second) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b, "parsing is not deterministic");
            a
        }
        (Err(a), Err(b)) => {
            assert_eq!(a.to_string(), b.to_string(), "parsing is not deterministic");
            return;
        }
        _ => panic!("parsing is not deterministic"),
    };
    let mut keys = HashSet::new();
    for (_, c) in &rows {
        assert_eq!(ComuneIstat::parse(c.istat.as_ref()).as_ref(), Ok(&c.istat));
        assert!(keys.insert(c.istat.clone()), "istat {} twice", c.istat);
        assert_trimmed(&c.nome);
        assert_trimmed(&c.zona);
        if let Some(a) = &c.ambito {
            assert_trimmed(a);
        }
        for text in [&c.nome, &c.zona].into_iter().chain(c.ambito.as_ref()) {
            assert!(!has_control(text), "a control character imported: {text:?}");
        }
        assert!(c.popolazione >= 0);
        assert!(c.quota.is_none_or(|q| q >= 0));
    }
    let lines: Vec<u64> = rows
        .iter()
        .map(|(line, _)| *line)
        .chain(errors.iter().map(|e| e.line))
        .collect();
    assert_one_verdict_per_record(data, lines);
});

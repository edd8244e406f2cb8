//! Any bytes as a referents CSV (`raccordo import referents`), parsed without the database.
//! Beyond "no panic": the same result twice; every row's email address and scope valid and
//! its id unique, and no field of it with a control character (CONTRACT §4: a name or an
//! institution reaches an email header); one verdict (row or error) per record, at the
//! line where the record starts in the file.

#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;

use raccordo_core::domain::{EmailAddress, Role, Scope, has_control};
use raccordo_core::registry::parse_referents;
use raccordo_fuzz::csv_lines::{assert_one_verdict_per_record, assert_trimmed};

fuzz_target!(|data: &[u8]| {
    let first = parse_referents(data);
    let second = parse_referents(data);
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
    let mut ids = HashSet::new();
    for (_, r) in &rows {
        assert!(ids.insert(r.referent_id.clone()), "referent_id twice");
        assert_trimmed(&r.referent_id);
        assert_trimmed(&r.institution);
        for text in [
            r.referent_id.as_str(),
            r.institution.as_str(),
            r.email.as_ref(),
        ]
        .into_iter()
        .chain(r.name.as_deref())
        {
            assert!(!has_control(text), "a control character imported: {text:?}");
        }
        assert_eq!(EmailAddress::parse(r.email.as_ref()).as_ref(), Ok(&r.email));
        assert_eq!(Role::parse(r.role.as_str()), Ok(r.role));
        let (kind, value) = r.scope.to_columns();
        assert_eq!(Scope::from_columns(kind, value).as_ref(), Ok(&r.scope));
        match &r.scope {
            Scope::Ambito(v) | Scope::Zona(v) => {
                assert_trimmed(v);
                assert!(!has_control(v), "a control character imported: {v:?}");
            }
            Scope::All | Scope::Comune(_) => {}
        }
    }
    let lines: Vec<u64> = rows
        .iter()
        .map(|(line, _)| *line)
        .chain(errors.iter().map(|e| e.line))
        .collect();
    assert_one_verdict_per_record(data, lines);
});

//! The README's configuration tables against `config/default.toml` (issue 24: the operator's
//! configuration complete in the README). No server involved.

use std::collections::BTreeSet;

use config::{Config, File, FileFormat, Value, ValueKind};

/// Every key `config/default.toml` sets, as `section.key` (nested tables flattened).
fn default_keys(text: &str) -> BTreeSet<String> {
    fn walk(prefix: &str, value: &Value, keys: &mut BTreeSet<String>) {
        match &value.kind {
            ValueKind::Table(table) => {
                for (name, inner) in table {
                    let path = if prefix.is_empty() {
                        name.clone()
                    } else {
                        format!("{prefix}.{name}")
                    };
                    walk(&path, inner, keys);
                }
            }
            _ => {
                keys.insert(prefix.to_owned());
            }
        }
    }
    let config = Config::builder()
        .add_source(File::from_str(text, FileFormat::Toml))
        .build()
        .expect("config/default.toml parses");
    let mut keys = BTreeSet::new();
    let tables: std::collections::HashMap<String, Value> =
        config.try_deserialize().expect("a table of sections");
    for (name, value) in &tables {
        walk(name, value, &mut keys);
    }
    keys
}

/// The keys `config/default.toml` names in a comment (`# key = …` or `#   key = …`) under a
/// section: optional settings shown by example.
fn commented_keys(text: &str) -> BTreeSet<String> {
    let mut section = String::new();
    let mut keys = BTreeSet::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
        } else if let Some(comment) = line.strip_prefix('#') {
            let Some((name, _)) = comment.split_once('=') else {
                continue;
            };
            let name = name.trim();
            if !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                keys.insert(format!("{section}.{name}"));
            }
        }
    }
    keys
}

/// The keys in the first cell of every README table headed `| key | default |`.
fn readme_keys(text: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut in_table = false;
    for line in text.lines() {
        if line.starts_with("| key | default |") {
            in_table = true;
            continue;
        }
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        if !in_table {
            continue;
        }
        let first = line.split('|').nth(1).unwrap_or_default();
        for quoted in first.split('`').skip(1).step_by(2) {
            if quoted.contains('.') {
                keys.insert(quoted.to_owned());
            }
        }
    }
    keys
}

fn read(path: &str) -> String {
    std::fs::read_to_string(raccordo_e2e::workspace_root().join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn readme_configuration_tables_name_every_key_of_the_default_configuration() {
    let defaults = default_keys(&read("config/default.toml"));
    let documented = readme_keys(&read("README.md"));
    assert!(defaults.len() > 50, "the defaults were read: {defaults:?}");
    let missing: Vec<&String> = defaults.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "keys of config/default.toml missing from the README's configuration tables: {missing:?}"
    );
}

#[test]
fn readme_configuration_tables_name_only_keys_the_hub_knows() {
    let text = read("config/default.toml");
    let mut known = default_keys(&text);
    known.extend(commented_keys(&text));
    let documented = readme_keys(&read("README.md"));
    assert!(
        documented.len() > 50,
        "the tables were read: {documented:?}"
    );
    let unknown: Vec<&String> = documented
        .iter()
        // `publishers.<user>.types` is shown in default.toml as a commented `types = …`.
        .filter(|key| !known.contains(&key.replace(".<user>", "")))
        .collect();
    assert!(
        unknown.is_empty(),
        "keys in the README's configuration tables that config/default.toml neither sets nor shows: {unknown:?}"
    );
}

#[test]
fn readme_keys_are_found_in_every_configuration_table() {
    let text = "| key | default | meaning |\n|---|---|---|\n| `a.b`, `a.c` | 1 | x |\n\nprose `d.e`\n\
                | key | default | |\n|---|---|---|\n| `f.g` | `h.i` | |\n";
    let keys: Vec<String> = readme_keys(text).into_iter().collect();
    assert_eq!(keys, ["a.b", "a.c", "f.g"]);
    let commented =
        commented_keys("[mail]\n# bounce_imap_url = \"x\"\n# Prose = no\n[p]\n#   types = []\n");
    assert_eq!(
        commented.into_iter().collect::<Vec<_>>(),
        ["mail.bounce_imap_url", "p.types"]
    );
}

/// The first cell of every row of the README's command table (`| command | does |`), with
/// `\|` read as `|`.
fn readme_commands(text: &str) -> Vec<String> {
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in text.lines() {
        if line.starts_with("| command | does |") {
            in_table = true;
            continue;
        }
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        if !in_table || line.starts_with("|---") {
            continue;
        }
        let cell = line.replace("\\|", "\u{1}");
        let first = cell.split('|').nth(1).unwrap_or_default();
        rows.push(
            first
                .replace('\u{1}', "|")
                .replace('`', "")
                .trim()
                .to_owned(),
        );
    }
    rows
}

/// The words of a command cell: names, placeholders and flags, without brackets and bars.
fn words(cell: &str) -> Vec<String> {
    cell.split(|c: char| c.is_whitespace() || matches!(c, '|' | '[' | ']' | '(' | ')' | ','))
        .map(|w| w.split('=').next().unwrap_or_default().to_owned())
        .filter(|w| !w.is_empty())
        .collect()
}

/// Every command of the binary as its path of names (`["dlq", "list"]`) with its long
/// options, from clap's own description of the command line (what `--help` prints).
fn cli_commands() -> Vec<(Vec<String>, BTreeSet<String>)> {
    fn walk(
        command: &clap::Command,
        path: &[String],
        out: &mut Vec<(Vec<String>, BTreeSet<String>)>,
    ) {
        for sub in command.get_subcommands() {
            if sub.is_hide_set() || sub.get_name() == "help" {
                continue;
            }
            let mut here = path.to_vec();
            here.push(sub.get_name().to_owned());
            let flags = sub
                .get_arguments()
                .filter(|a| !a.is_hide_set() && !a.is_global_set())
                .filter_map(|a| a.get_long())
                .filter(|l| !matches!(*l, "help" | "version"))
                .map(|l| format!("--{l}"))
                .collect();
            out.push((here.clone(), flags));
            walk(sub, &here, out);
        }
    }
    let mut out = Vec::new();
    walk(
        &<raccordo::cli::Cli as clap::CommandFactory>::command(),
        &[],
        &mut out,
    );
    out
}

/// Whether `path` appears in `row`'s words in order, after `raccordo`.
fn row_names(row: &[String], path: &[String]) -> bool {
    let mut rest = row.iter().skip_while(|w| *w != "raccordo");
    path.iter().all(|name| rest.any(|w| w == name))
}

#[test]
fn readme_command_table_names_every_command_and_option_of_the_binary() {
    let rows: Vec<Vec<String>> = readme_commands(&read("README.md"))
        .iter()
        .map(|r| words(r))
        .collect();
    assert!(rows.len() > 20, "the table was read: {rows:?}");
    let commands = cli_commands();
    assert!(commands.len() > 30, "the command line was read");
    let mut missing = Vec::new();
    for (path, flags) in &commands {
        let documented: Vec<&Vec<String>> = rows.iter().filter(|r| row_names(r, path)).collect();
        // A group (`raccordo dlq`) is documented by its commands' rows.
        if documented.is_empty() {
            missing.push(format!("raccordo {}", path.join(" ")));
            continue;
        }
        for flag in flags {
            if !documented.iter().any(|r| r.contains(flag)) {
                missing.push(format!("raccordo {} {flag}", path.join(" ")));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "commands and options of `raccordo --help` missing from the README's command table: {missing:#?}"
    );
}

#[test]
fn readme_command_table_names_only_options_the_binary_has() {
    let commands = cli_commands();
    let mut unknown = Vec::new();
    for cell in readme_commands(&read("README.md")) {
        let row = words(&cell);
        let known: BTreeSet<&String> = commands
            .iter()
            .filter(|(path, _)| row_names(&row, path))
            .flat_map(|(_, flags)| flags)
            .collect();
        for flag in row.iter().filter(|w| w.starts_with("--")) {
            if !known.contains(flag) {
                unknown.push(format!("{flag} in `{cell}`"));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "options in the README's command table that `raccordo --help` does not have: {unknown:#?}"
    );
}

#[test]
fn readme_command_rows_are_read_with_their_alternatives() {
    let text = "| command | does |\n|---|---|\n| `raccordo dlq list [--format table\\|json]` | x |\n\
                | `raccordo publishers token add USER \\| list \\| revoke ID` | y |\n\nprose\n";
    let rows = readme_commands(text);
    assert_eq!(
        rows,
        [
            "raccordo dlq list [--format table|json]",
            "raccordo publishers token add USER | list | revoke ID"
        ]
    );
    let row = words(&rows[1]);
    assert!(row_names(
        &row,
        &["publishers".into(), "token".into(), "revoke".into()]
    ));
    assert!(!row_names(&row, &["token".into(), "publishers".into()]));
    assert_eq!(words("raccordo x [--a=1]"), ["raccordo", "x", "--a"]);
}

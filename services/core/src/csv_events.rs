//! CSV files of housing units and occupancy reports as events (contract 1.2 §10).
//!
//! Offices keep `housing.unit.v1` and `reception.occupancy.v1` in spreadsheets. A file's
//! header row names the `data` fields of the type (the `properties` of its schema in
//! `schemas/`, plus an optional `id` column); each data row becomes one structured
//! CloudEvent, validated exactly as an inbound event is ([`Envelope::decode_value`] and
//! [`Envelope::refuse_control_characters`]), or one [`CsvRowError`] naming the row and the
//! column. No error text ever holds a cell's value: a cell may be personal data.
//!
//! # Reading
//! - UTF-8 only (a leading BOM is dropped); the delimiter is `;` when the first non-blank
//!   line holds a `;` and no `,` (what Italian Excel writes), `,` otherwise.
//! - Header names are trimmed and compared case-insensitively; a column with an empty name
//!   is ignored as long as its cells are empty.
//! - Cells are trimmed; an empty cell is an absent field; rows with every cell empty (and
//!   blank lines) are skipped.
//! - A cell is converted by its property's schema `type`: `integer`, `number` (a `,`
//!   decimal separator is accepted in `;` files), `boolean` (`true`/`false`, `sì`/`si`/`no`,
//!   `vero`/`falso`, `1`/`0`, any case) or a string. A property of type `array` or `object`
//!   cannot come from a cell: its column is unknown.
//! - Rows are numbered as a spreadsheet shows them: the header is row 1 (when it is the
//!   file's first line), a quoted cell spanning lines is still one row, and a blank line is
//!   a row of its own.
//!
//! # Event id
//! The `id` cell when given; otherwise `csv-` and the first 32 hex digits of the SHA-256 of
//! `<type>\n<data as JSON with sorted keys>`: the same row uploaded twice is the same event
//! (idempotent, CONTRACT §3), a changed row a new one. Within one file, two different rows
//! with the same id are refused (the second would be a conflict at ingestion).

use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

use serde::Serialize;
use serde_json::{Map, Number, Value};
use sha2::{Digest, Sha256};

use crate::domain::{CONTROL_CHARACTER, has_control};
use crate::envelope::{Envelope, EventType, Rejection};

/// The optional column that gives the event id.
pub const ID_COLUMN: &str = "id";

/// How many characters of a header name an error repeats.
const SHOWN_NAME_CHARS: usize = 64;

/// A data row that became a valid event.
#[derive(Clone, PartialEq, Serialize)]
pub struct CsvRow {
    /// Spreadsheet row number: the header is row 1, the first data row row 2.
    pub row: usize,
    /// The structured CloudEvent (`specversion`, `id`, `source`, `type`, `data`), valid
    /// against the envelope and the type's schema.
    pub event: Value,
}

// `data` holds addresses and free-text notes: never print it (as `Envelope` does not).
impl fmt::Debug for CsvRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CsvRow")
            .field("row", &self.row)
            .field("id", &self.event.get("id").and_then(Value::as_str))
            .finish_non_exhaustive()
    }
}

/// A data row that cannot become an event: where, and why, never the cell's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CsvRowError {
    /// Spreadsheet row number: the header is row 1, the first data row row 2.
    pub row: usize,
    /// The column at fault, when one is (a field name of the type, or `id`).
    pub column: Option<String>,
    /// What is wrong: the rule broken, never the value.
    pub detail: String,
}

impl fmt::Display for CsvRowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.column {
            Some(column) => write!(f, "row {}, column {column}: {}", self.row, self.detail),
            None => write!(f, "row {}: {}", self.row, self.detail),
        }
    }
}

impl CsvRowError {
    /// What is wrong, in Italian, for the console's users (issue 24); the HTTP API's
    /// problem+json keeps [`detail`](Self::detail) in English for integrators. `None` for a
    /// rejection the hub cannot explain: show `detail` as the technical text then.
    pub fn detail_it(&self) -> Option<String> {
        let detail = self.detail.as_str();
        Some(match detail {
            "not a whole number" => "non è un numero intero".to_owned(),
            "not a number" => "non è un numero".to_owned(),
            "not a boolean (true/false, sì/no, 1/0)" => {
                "non è un sì o un no (sì/no, vero/falso, 1/0)".to_owned()
            }
            "more cells than the header row has columns" => {
                "ha più celle delle colonne della riga d'intestazione".to_owned()
            }
            "a cell under a column with no name" => {
                "ha una cella sotto una colonna senza nome".to_owned()
            }
            CONTROL_CHARACTER => {
                "contiene un carattere di controllo (a capo, NUL o simili)".to_owned()
            }
            _ => {
                if let Some(first) = detail
                    .strip_prefix("the same id as row ")
                    .and_then(|rest| rest.strip_suffix(" with other values"))
                {
                    format!("ha lo stesso id della riga {first} ma valori diversi")
                } else {
                    crate::amqp::reason_it(detail)?.to_owned()
                }
            }
        })
    }

    /// The whole error in Italian: "riga 3, colonna places: non è un numero intero"; the
    /// technical English detail follows when there is no Italian rendering of it.
    pub fn message_it(&self) -> String {
        let detail = self
            .detail_it()
            .unwrap_or_else(|| format!("non valida ({})", self.detail));
        match &self.column {
            Some(column) => format!("riga {}, colonna {column}: {detail}", self.row),
            None => format!("riga {}: {detail}", self.row),
        }
    }
}

/// A file's verdict: every data row lands in exactly one of `rows` and `errors`, each in
/// file order.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CsvParse {
    /// The rows that became valid events.
    pub rows: Vec<CsvRow>,
    /// The rows refused.
    pub errors: Vec<CsvRowError>,
}

/// Why a whole file is refused (a bad row is a [`CsvRowError`] instead). Column names are
/// the header's own text, cut to 64 characters with control characters escaped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsvFileError {
    /// The type cannot come from a CSV file.
    #[error("{0} cannot be uploaded as CSV (only housing.unit.v1 and reception.occupancy.v1)")]
    NotCsvType(EventType),
    /// The bytes are not UTF-8 (Excel's plain "CSV" is Windows-1252).
    #[error("not UTF-8 text (line {line} of the file); save it as \"CSV UTF-8\"")]
    NotUtf8 {
        /// 1-based line of the file where the first invalid byte is.
        line: usize,
    },
    /// Nothing but blank lines, or a header row with no names.
    #[error("the file is empty or has no header row")]
    NoHeader,
    /// A column appears twice in the header row.
    #[error("column \"{0}\" appears twice in the header row")]
    DuplicateColumn(String),
    /// A column that is not a field of the type (nor `id`).
    #[error("unknown column \"{column}\"; the columns are {expected}")]
    UnknownColumn {
        /// The header's name, shown safely.
        column: String,
        /// The columns the type allows.
        expected: String,
    },
    /// The header row lacks required fields of the type.
    #[error("the header row lacks the required column(s) {0}")]
    MissingColumn(String),
    /// More data rows than allowed.
    #[error("more than {max} data rows")]
    TooManyRows {
        /// The limit.
        max: usize,
    },
    /// The `csv` reader refused the file.
    #[error("not valid CSV at row {row}")]
    Syntax {
        /// Spreadsheet row where the reader stopped.
        row: usize,
    },
}

impl CsvFileError {
    /// Why the file is refused, in Italian, for the console's users (issue 24); the HTTP
    /// API keeps the English `Display` text.
    pub fn message_it(&self) -> String {
        match self {
            CsvFileError::NotCsvType(t) => format!(
                "il tipo {} non si carica da un file CSV (solo housing.unit.v1 e reception.occupancy.v1)",
                t.as_str()
            ),
            CsvFileError::NotUtf8 { line } => {
                format!("il testo non è UTF-8 (riga {line} del file): salvarlo come «CSV UTF-8»")
            }
            CsvFileError::NoHeader => "il file è vuoto o non ha la riga d'intestazione".to_owned(),
            CsvFileError::DuplicateColumn(c) => {
                format!("la colonna «{c}» compare due volte nella riga d'intestazione")
            }
            CsvFileError::UnknownColumn { column, expected } => {
                format!("colonna «{column}» sconosciuta; le colonne previste sono {expected}")
            }
            CsvFileError::MissingColumn(c) => {
                format!("alla riga d'intestazione mancano le colonne obbligatorie {c}")
            }
            CsvFileError::TooManyRows { max } => format!("più di {max} righe di dati"),
            CsvFileError::Syntax { row } => format!("non è un CSV valido alla riga {row}"),
        }
    }
}

/// The event types a CSV file may hold.
pub fn csv_types() -> [EventType; 2] {
    [EventType::HousingUnit, EventType::ReceptionOccupancy]
}

/// Reads a CSV file of `event_type` into one event per data row (with `source` as their
/// CloudEvents `source`), or one error per bad row. At most `max_rows` data rows. Never
/// panics, whatever the bytes.
pub fn parse_csv(
    event_type: EventType,
    bytes: &[u8],
    source: &str,
    max_rows: usize,
) -> Result<CsvParse, CsvFileError> {
    let fields = fields_of(event_type).ok_or(CsvFileError::NotCsvType(event_type))?;
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|e| CsvFileError::NotUtf8 {
        line: 1 + count_breaks(&bytes[..e.valid_up_to()]),
    })?;
    let delimiter = delimiter_of(text);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(text.as_bytes());
    let mut rows = RowCounter::new(text.as_bytes());
    let mut records = reader.byte_records();
    let header = loop {
        match records.next() {
            None => return Err(CsvFileError::NoHeader),
            Some(Err(e)) => return Err(syntax(&mut rows, &e)),
            Some(Ok(record)) if is_blank(&record) => rows.pass(&record),
            Some(Ok(record)) => {
                rows.pass(&record);
                break record;
            }
        }
    };
    let plan = Plan::new(event_type, fields, &header, delimiter == b';')?;
    let mut parse = CsvParse::default();
    let mut ids: HashMap<String, (usize, usize)> = HashMap::new();
    let mut count = 0usize;
    for record in records {
        let record = record.map_err(|e| syntax(&mut rows, &e))?;
        let row = rows.start_of(&record);
        rows.pass(&record);
        if is_blank(&record) {
            continue;
        }
        count += 1;
        if count > max_rows {
            return Err(CsvFileError::TooManyRows { max: max_rows });
        }
        match plan.event(&record, source) {
            Ok(event) => {
                let id = event.get("id").and_then(Value::as_str).unwrap_or_default();
                if let Some(&(first, at)) = ids.get(id) {
                    if parse.rows.get(at).and_then(|r| r.event.get("data")) != event.get("data") {
                        parse.errors.push(CsvRowError {
                            row,
                            column: plan.has_id.then(|| ID_COLUMN.to_owned()),
                            detail: format!("the same id as row {first} with other values"),
                        });
                        continue;
                    }
                } else {
                    ids.insert(id.to_owned(), (row, parse.rows.len()));
                }
                parse.rows.push(CsvRow { row, event });
            }
            Err((column, detail)) => parse.errors.push(CsvRowError {
                row,
                column,
                detail,
            }),
        }
    }
    Ok(parse)
}

fn syntax(rows: &mut RowCounter<'_>, error: &csv::Error) -> CsvFileError {
    let row = error
        .position()
        .map_or(rows.last + 1, |p| rows.row_at(p.byte()));
    CsvFileError::Syntax { row }
}

/// `;` when the first non-blank line holds a `;` and no `,`; `,` otherwise.
fn delimiter_of(text: &str) -> u8 {
    let header = text
        .split(['\n', '\r'])
        .find(|line| !line.trim().is_empty())
        .unwrap_or_default();
    if header.contains(';') && !header.contains(',') {
        b';'
    } else {
        b','
    }
}

fn is_blank(record: &csv::ByteRecord) -> bool {
    record.iter().all(|cell| cell_text(cell).is_empty())
}

/// A cell's text, trimmed (the file was checked to be UTF-8, so a cell always is).
fn cell_text(cell: &[u8]) -> &str {
    std::str::from_utf8(cell).unwrap_or_default().trim()
}

/// Line breaks as the `csv` reader counts record ends: CR LF, LF or a lone CR.
fn count_breaks(bytes: &[u8]) -> usize {
    let mut n = 0;
    let mut after_cr = false;
    for &b in bytes {
        match b {
            b'\r' => n += 1,
            b'\n' if !after_cr => n += 1,
            _ => {}
        }
        after_cr = b == b'\r';
    }
    n
}

/// Spreadsheet row numbers from the `csv` reader's byte positions: a record starts at the
/// first byte that is not a line break at or after its position (the reader takes it before
/// the blank lines it skips), and the line breaks inside quoted cells before it are not rows.
struct RowCounter<'a> {
    bytes: &'a [u8],
    /// Bytes counted so far.
    cursor: usize,
    /// Line breaks in `bytes[..cursor]`.
    breaks: usize,
    /// Line breaks inside the cells of the records passed.
    inside: usize,
    /// The row of the last record started.
    last: usize,
}

impl<'a> RowCounter<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            cursor: 0,
            breaks: 0,
            inside: 0,
            last: 1,
        }
    }

    /// The row of the record the reader saw start at `byte`.
    fn row_at(&mut self, byte: u64) -> usize {
        let from = usize::try_from(byte)
            .unwrap_or(usize::MAX)
            .clamp(self.cursor, self.bytes.len());
        let start = self.bytes[from..]
            .iter()
            .position(|b| !matches!(b, b'\n' | b'\r'))
            .map_or(self.bytes.len(), |skip| from + skip);
        // `start` is never inside a CR LF: the byte there is not a line break.
        self.breaks += count_breaks(&self.bytes[self.cursor..start]);
        self.cursor = start;
        self.last = 1 + self.breaks.saturating_sub(self.inside);
        self.last
    }

    fn start_of(&mut self, record: &csv::ByteRecord) -> usize {
        match record.position() {
            Some(p) => self.row_at(p.byte()),
            None => self.last + 1,
        }
    }

    /// Counts the line breaks inside `record`'s cells, once it has been numbered.
    fn pass(&mut self, record: &csv::ByteRecord) {
        self.inside += record.iter().map(count_breaks).sum::<usize>();
    }
}

/// How a property's cells become JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    String,
    Integer,
    Number,
    Boolean,
}

/// What a type's schema says of its CSV columns.
struct Fields {
    /// Every property a cell can hold, sorted by name (the order of a parsed schema's
    /// members depends on serde_json's `preserve_order`).
    columns: Vec<(String, Kind)>,
    /// The top-level `required` properties.
    required: Vec<String>,
}

impl Fields {
    fn of(schema_source: &str) -> Self {
        let schema: Value = serde_json::from_str(schema_source).unwrap_or_default();
        let mut columns: Vec<(String, Kind)> = schema
            .get("properties")
            .and_then(Value::as_object)
            .map(|properties| {
                properties
                    .iter()
                    .filter_map(|(name, p)| kind_of(p).map(|k| (name.clone(), k)))
                    .collect()
            })
            .unwrap_or_default();
        columns.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let required = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|names| {
                names
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Self { columns, required }
    }

    fn kind(&self, name: &str) -> Option<Kind> {
        self.columns
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, k)| *k)
    }

    /// The allowed columns, for an error.
    fn expected(&self) -> String {
        let names: Vec<&str> = self.columns.iter().map(|(n, _)| n.as_str()).collect();
        format!("{} and optionally {ID_COLUMN}", names.join(", "))
    }
}

/// The kind of a property's cells; `None` for arrays and objects, which no cell holds.
fn kind_of(property: &Value) -> Option<Kind> {
    let kind = |name: &str| match name {
        "integer" => Some(Kind::Integer),
        "number" => Some(Kind::Number),
        "boolean" => Some(Kind::Boolean),
        "array" | "object" => None,
        _ => Some(Kind::String),
    };
    match property.get("type") {
        Some(Value::String(t)) => kind(t),
        Some(Value::Array(types)) => {
            let names: Vec<&str> = types.iter().filter_map(Value::as_str).collect();
            if names.iter().any(|t| matches!(*t, "array" | "object")) {
                None
            } else {
                names
                    .into_iter()
                    .find(|t| *t != "null")
                    .map_or(Some(Kind::String), kind)
            }
        }
        _ => Some(Kind::String),
    }
}

fn fields_of(event_type: EventType) -> Option<&'static Fields> {
    static FIELDS: OnceLock<HashMap<EventType, Fields>> = OnceLock::new();
    FIELDS
        .get_or_init(|| {
            csv_types()
                .into_iter()
                .map(|t| (t, Fields::of(t.schema_source())))
                .collect()
        })
        .get(&event_type)
}

/// Why a row is refused: the column at fault, if one is, and what is wrong.
type Fault = (Option<String>, String);

/// What a column of the file holds.
#[derive(Debug, Clone, Copy)]
enum Column<'f> {
    Field(&'f str, Kind),
    Id,
    /// A column with an empty header name: its cells must be empty.
    Unnamed,
}

/// A file's columns, checked against its type.
struct Plan<'f> {
    event_type: EventType,
    columns: Vec<Column<'f>>,
    has_id: bool,
    decimal_comma: bool,
}

impl<'f> Plan<'f> {
    fn new(
        event_type: EventType,
        fields: &'f Fields,
        header: &csv::ByteRecord,
        decimal_comma: bool,
    ) -> Result<Self, CsvFileError> {
        let mut columns = Vec::with_capacity(header.len());
        let mut seen: Vec<String> = Vec::new();
        for cell in header {
            let raw = cell_text(cell);
            let name = raw.to_lowercase();
            if name.is_empty() {
                columns.push(Column::Unnamed);
                continue;
            }
            if seen.contains(&name) {
                return Err(CsvFileError::DuplicateColumn(shown(raw)));
            }
            let column = if name == ID_COLUMN && fields.kind(ID_COLUMN).is_none() {
                Column::Id
            } else {
                match fields.columns.iter().find(|(n, _)| *n == name) {
                    Some((n, kind)) => Column::Field(n.as_str(), *kind),
                    None => {
                        return Err(CsvFileError::UnknownColumn {
                            column: shown(raw),
                            expected: fields.expected(),
                        });
                    }
                }
            };
            seen.push(name);
            columns.push(column);
        }
        if seen.is_empty() {
            return Err(CsvFileError::NoHeader);
        }
        let missing: Vec<&str> = fields
            .required
            .iter()
            .filter(|r| !seen.contains(r))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(CsvFileError::MissingColumn(missing.join(", ")));
        }
        let has_id = columns.iter().any(|c| matches!(c, Column::Id));
        Ok(Self {
            event_type,
            columns,
            has_id,
            decimal_comma,
        })
    }

    /// The valid event of one data row, or the column at fault and why.
    fn event(&self, record: &csv::ByteRecord, source: &str) -> Result<Value, Fault> {
        let (id, data) = self.cells(record)?;
        let id = match id {
            Some(id) if has_control(id) => {
                return Err((Some(ID_COLUMN.to_owned()), CONTROL_CHARACTER.to_owned()));
            }
            Some(id) => id.to_owned(),
            None => derived_id(self.event_type, &data),
        };
        let mut event = Map::new();
        event.insert("specversion".into(), Value::from("1.0"));
        event.insert("id".into(), Value::from(id));
        event.insert("source".into(), Value::from(source));
        event.insert("type".into(), Value::from(self.event_type.as_str()));
        event.insert("data".into(), data);
        let event = Value::Object(event);
        Envelope::decode_value(event.clone())
            .and_then(|envelope| envelope.refuse_control_characters())
            .map_err(|rejection| (self.column_of(&rejection), rejection.to_string()))?;
        Ok(event)
    }

    /// The `id` cell, if any, and the `data` object of a row.
    fn cells<'r>(&self, record: &'r csv::ByteRecord) -> Result<(Option<&'r str>, Value), Fault> {
        let mut id = None;
        let mut data = Map::new();
        for (i, cell) in record.iter().enumerate() {
            let text = cell_text(cell);
            if text.is_empty() {
                continue;
            }
            match self.columns.get(i) {
                None => {
                    return Err((None, "more cells than the header row has columns".into()));
                }
                Some(Column::Unnamed) => {
                    return Err((None, "a cell under a column with no name".into()));
                }
                Some(Column::Id) => id = Some(text),
                Some(Column::Field(name, kind)) => {
                    let value = convert(*kind, text, self.decimal_comma)
                        .map_err(|detail| (Some((*name).to_owned()), detail.to_owned()))?;
                    data.insert((*name).to_owned(), value);
                }
            }
        }
        Ok((id, Value::Object(data)))
    }

    /// The column a rejection names (`at /name`, or a missing required property), when it
    /// is one of this file's columns or a field of the type.
    fn column_of(&self, rejection: &Rejection) -> Option<String> {
        let text = rejection.to_string();
        let known = |name: &str| {
            self.columns.iter().any(|c| match c {
                Column::Field(n, _) => *n == name,
                Column::Id => name == ID_COLUMN,
                Column::Unnamed => false,
            }) || fields_of(self.event_type).is_some_and(|f| f.kind(name).is_some())
        };
        let name_after = |rest: &str| -> String {
            rest.trim_start_matches('"')
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect()
        };
        let at = text
            .match_indices("at /")
            .map(|(i, m)| &text[i + m.len()..]);
        let required = text
            .match_indices("missing required property ")
            .map(|(i, m)| &text[i + m.len()..]);
        at.chain(required)
            .map(name_after)
            .find(|name| !name.is_empty() && known(name))
    }
}

/// A cell as JSON of its property's kind; `Err` says what is wrong, never the value.
fn convert(kind: Kind, text: &str, decimal_comma: bool) -> Result<Value, &'static str> {
    match kind {
        Kind::String => Ok(Value::from(text)),
        Kind::Integer => integer(text).map(Value::Number).ok_or("not a whole number"),
        Kind::Number => {
            let text = if decimal_comma {
                text.replace(',', ".")
            } else {
                text.to_owned()
            };
            integer(&text)
                .or_else(|| {
                    if text
                        .bytes()
                        .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
                    {
                        text.parse::<f64>().ok().and_then(Number::from_f64)
                    } else {
                        None
                    }
                })
                .map(Value::Number)
                .ok_or("not a number")
        }
        Kind::Boolean => match text.to_lowercase().as_str() {
            "true" | "sì" | "si" | "vero" | "1" => Ok(Value::Bool(true)),
            "false" | "no" | "falso" | "0" => Ok(Value::Bool(false)),
            _ => Err("not a boolean (true/false, sì/no, 1/0)"),
        },
    }
}

fn integer(text: &str) -> Option<Number> {
    text.parse::<i64>()
        .map(Number::from)
        .or_else(|_| text.parse::<u64>().map(Number::from))
        .ok()
}

/// `csv-` and the first 32 hex digits of SHA-256 over `<type>\n<canonical data>`.
fn derived_id(event_type: EventType, data: &Value) -> String {
    let mut text = String::from(event_type.as_str());
    text.push('\n');
    canonical(data, &mut text);
    let digest = Sha256::digest(text.as_bytes());
    let mut id = String::from("csv-");
    for byte in digest.iter().take(16) {
        id.push_str(&format!("{byte:02x}"));
    }
    id
}

/// Compact JSON with every object's keys sorted, whatever serde_json's `preserve_order`.
fn canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(members) => {
            let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
            sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (name, item)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(name.clone()).to_string());
                out.push(':');
                canonical(item, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// A header name as an error may repeat it: at most 64 characters, control and invisible
/// characters escaped (as Rust's `escape_debug` does), `…` when cut.
fn shown(name: &str) -> String {
    let mut out: String = name
        .chars()
        .take(SHOWN_NAME_CHARS)
        .collect::<String>()
        .escape_debug()
        .collect();
    if name.chars().nth(SHOWN_NAME_CHARS).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod italian {
    use super::*;

    fn error(detail: &str) -> CsvRowError {
        CsvRowError {
            row: 3,
            column: Some("places".into()),
            detail: detail.into(),
        }
    }

    #[test]
    fn every_row_error_the_reader_writes_has_an_italian_rendering() {
        for detail in [
            "not a whole number",
            "not a number",
            "not a boolean (true/false, sì/no, 1/0)",
            "more cells than the header row has columns",
            "a cell under a column with no name",
            CONTROL_CHARACTER,
            "the same id as row 2 with other values",
            "schema violation in housing.unit.v1: at /places: 0 is less than the minimum of 1",
            "envelope violation: missing id",
        ] {
            assert!(error(detail).detail_it().is_some(), "{detail}");
        }
        assert_eq!(
            error("not a whole number").message_it(),
            "riga 3, colonna places: non è un numero intero"
        );
        assert_eq!(
            error("the same id as row 2 with other values")
                .detail_it()
                .as_deref(),
            Some("ha lo stesso id della riga 2 ma valori diversi")
        );
        assert_eq!(error("something new").detail_it(), None);
    }

    #[test]
    fn a_refused_file_is_explained_in_italian_and_keeps_its_english_display() {
        let missing = CsvFileError::MissingColumn("places".into());
        assert_eq!(
            missing.message_it(),
            "alla riga d'intestazione mancano le colonne obbligatorie places"
        );
        assert_eq!(
            missing.to_string(),
            "the header row lacks the required column(s) places"
        );
        assert!(CsvFileError::NoHeader.message_it().contains("intestazione"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HOUSING: &str = "unit_id,action,comune_istat,address,places,reception_kind,building_type,owner_declaration,available_from,notes\n";
    const OCCUPANCY: &str =
        "facility_id;comune_istat;reception_kind;capacity;presences;as_of;active\n";

    fn parse(t: EventType, text: &str) -> CsvParse {
        parse_csv(t, text.as_bytes(), "urn:test", 100).expect("a readable file")
    }

    fn housing(rows: &str) -> CsvParse {
        parse(EventType::HousingUnit, &format!("{HOUSING}{rows}"))
    }

    fn id_of(row: &CsvRow) -> &str {
        row.event["id"].as_str().expect("an id")
    }

    fn rows_of(parse: &CsvParse) -> Vec<usize> {
        parse.rows.iter().map(|r| r.row).collect()
    }

    fn errors_of(parse: &CsvParse) -> Vec<(usize, Option<&str>)> {
        parse
            .errors
            .iter()
            .map(|e| (e.row, e.column.as_deref()))
            .collect()
    }

    #[test]
    fn csv_types_are_housing_and_occupancy() {
        assert_eq!(
            csv_types(),
            [EventType::HousingUnit, EventType::ReceptionOccupancy]
        );
        assert_eq!(
            parse_csv(EventType::EvictionStep, b"procedure_id\n", "urn:test", 10),
            Err(CsvFileError::NotCsvType(EventType::EvictionStep))
        );
    }

    #[test]
    fn good_housing_rows_become_valid_events() {
        let parse = housing(
            "u1,offered,015146,Via Roma 1,4,CAS,appartamento,true,2026-04-01,piano terra\n\
             u2,withdrawn,015146,,,,,,,\n",
        );
        assert!(parse.errors.is_empty(), "{:?}", parse.errors);
        assert_eq!(rows_of(&parse), vec![2, 3]);
        let event = &parse.rows[0].event;
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["source"], "urn:test");
        assert_eq!(event["type"], "housing.unit.v1");
        assert_eq!(
            event["data"],
            json!({"unit_id": "u1", "action": "offered", "comune_istat": "015146",
                   "address": "Via Roma 1", "places": 4, "reception_kind": "CAS",
                   "building_type": "appartamento", "owner_declaration": true,
                   "available_from": "2026-04-01", "notes": "piano terra"})
        );
        assert_eq!(
            parse.rows[1].event["data"],
            json!({"unit_id": "u2", "action": "withdrawn", "comune_istat": "015146"})
        );
        assert!(id_of(&parse.rows[0]).starts_with("csv-"));
        assert_eq!(id_of(&parse.rows[0]).len(), 4 + 32);
        for row in &parse.rows {
            Envelope::decode_value(row.event.clone()).expect("valid");
        }
    }

    #[test]
    fn good_occupancy_rows_with_semicolons_and_italian_booleans() {
        let parse = parse(
            EventType::ReceptionOccupancy,
            &format!(
                "{OCCUPANCY}f1;015146;CAS;30;31;2026-03-01;\n\
                 f2 ; 015002 ; SPRAR ; 12 ; 10 ; 2026-03-01 ; Sì\n\
                 f3;015002;SPRAR;12;10;2026-03-01;no\n\
                 f4;015002;SPRAR;12;10;2026-03-01;FALSO\n"
            ),
        );
        assert!(parse.errors.is_empty(), "{:?}", parse.errors);
        assert_eq!(rows_of(&parse), vec![2, 3, 4, 5]);
        assert_eq!(
            parse.rows[0].event["data"],
            json!({"facility_id": "f1", "comune_istat": "015146", "reception_kind": "CAS",
                   "capacity": 30, "presences": 31, "as_of": "2026-03-01"})
        );
        assert_eq!(parse.rows[1].event["data"]["facility_id"], "f2");
        assert_eq!(parse.rows[1].event["data"]["active"], true);
        assert_eq!(parse.rows[2].event["data"]["active"], false);
        assert_eq!(parse.rows[3].event["data"]["active"], false);
    }

    #[test]
    fn numbers_take_a_decimal_comma_only_in_semicolon_files() {
        assert_eq!(convert(Kind::Number, "2,5", true), Ok(json!(2.5)));
        assert_eq!(convert(Kind::Number, "2.5", true), Ok(json!(2.5)));
        assert_eq!(convert(Kind::Number, "7", true), Ok(json!(7)));
        assert_eq!(convert(Kind::Number, "-1e3", false), Ok(json!(-1000.0)));
        for bad in ["2,5", "1.234,5", "inf", "NaN", "due", "1e999"] {
            assert!(convert(Kind::Number, bad, false).is_err(), "{bad}");
        }
        assert!(convert(Kind::Number, "1.234,5", true).is_err());
        assert_eq!(convert(Kind::Integer, "12", false), Ok(json!(12)));
        assert_eq!(convert(Kind::Integer, "-3", false), Ok(json!(-3)));
        for bad in ["12.5", "12,5", "dodici", "1e2", "", "99999999999999999999"] {
            assert!(convert(Kind::Integer, bad, true).is_err(), "{bad}");
        }
        for (text, expected) in [("TRUE", true), ("si", true), ("1", true), ("False", false)] {
            assert_eq!(convert(Kind::Boolean, text, false), Ok(json!(expected)));
        }
        assert!(convert(Kind::Boolean, "forse", false).is_err());
    }

    #[test]
    fn a_schema_property_that_is_an_object_is_no_column() {
        assert_eq!(kind_of(&json!({"type": "object"})), None);
        assert_eq!(kind_of(&json!({"type": ["array", "null"]})), None);
        assert_eq!(
            kind_of(&json!({"type": ["integer", "null"]})),
            Some(Kind::Integer)
        );
        assert_eq!(kind_of(&json!({"enum": ["a"]})), Some(Kind::String));
        let fields =
            Fields::of(r#"{"properties": {"a": {"type": "string"}, "b": {"type": "object"}}}"#);
        assert_eq!(fields.columns, vec![("a".to_owned(), Kind::String)]);
    }

    #[test]
    fn a_bom_is_dropped() {
        let text = format!("\u{feff}{HOUSING}u1,withdrawn,015146,,,,,,,\n");
        let parse = parse(EventType::HousingUnit, &text);
        assert!(parse.errors.is_empty(), "{:?}", parse.errors);
        assert_eq!(rows_of(&parse), vec![2]);
    }

    #[test]
    fn a_bad_integer_is_an_error_naming_row_and_column() {
        let parse = housing(
            "u1,offered,015146,Via Roma 1,12.5,CAS,casa,true,,\n\
             u2,offered,015146,Via Roma 2,dodici,CAS,casa,true,,\n\
             u3,offered,015146,Via Roma 3,600,CAS,casa,true,,\n\
             u4,offered,015146,Via Roma 4,3,CAS,casa,true,,\n",
        );
        assert_eq!(rows_of(&parse), vec![5]);
        assert_eq!(
            errors_of(&parse),
            vec![
                (2, Some("places")),
                (3, Some("places")),
                (4, Some("places"))
            ]
        );
        assert_eq!(
            parse.errors[0].to_string(),
            "row 2, column places: not a whole number"
        );
        assert!(parse.errors[2].detail.contains("above the maximum 500"));
    }

    #[test]
    fn a_missing_conditional_field_names_its_column() {
        let parse = housing("u1,offered,015146,,3,CAS,casa,true,,\n");
        assert_eq!(errors_of(&parse), vec![(2, Some("address"))]);
        assert!(
            parse.errors[0].detail.contains("address"),
            "{:?}",
            parse.errors
        );
    }

    #[test]
    fn an_unknown_column_refuses_the_file_naming_it_safely() {
        let err = parse_csv(
            EventType::HousingUnit,
            b"unit_id,action,comune_istat,colour\nu1,withdrawn,015146,red\n",
            "urn:test",
            10,
        )
        .expect_err("unknown");
        assert!(matches!(&err, CsvFileError::UnknownColumn { column, .. } if column == "colour"));
        assert!(
            err.to_string().contains("action, address, available_from"),
            "{err}"
        );
        let long = format!(
            "unit_id,action,comune_istat,x\u{1b}[31m{}\n",
            "y".repeat(100)
        );
        let err = parse_csv(EventType::HousingUnit, long.as_bytes(), "urn:test", 10)
            .expect_err("unknown");
        let CsvFileError::UnknownColumn { column, .. } = &err else {
            panic!("{err:?}")
        };
        assert!(column.starts_with("x\\u{1b}[31myyy"), "{column}");
        assert!(column.ends_with('…'), "{column}");
        assert!(!has_control(&err.to_string()));
        assert_eq!(column.chars().count(), "\\u{1b}".len() - 1 + 64 + 1);
    }

    #[test]
    fn duplicated_missing_and_absent_headers_refuse_the_file() {
        let err = |text: &str| {
            parse_csv(EventType::HousingUnit, text.as_bytes(), "urn:test", 10).expect_err(text)
        };
        assert_eq!(
            err("unit_id,action,Unit_ID,comune_istat\n"),
            CsvFileError::DuplicateColumn("Unit_ID".into())
        );
        assert_eq!(
            err("unit_id,address\nu1,Via Roma 1\n"),
            CsvFileError::MissingColumn("action, comune_istat".into())
        );
        assert_eq!(err(""), CsvFileError::NoHeader);
        assert_eq!(err("\u{feff}\n\r\n  \n"), CsvFileError::NoHeader);
        assert_eq!(err(",,\n"), CsvFileError::NoHeader);
        assert_eq!(
            parse_csv(
                EventType::HousingUnit,
                b"unit_id,action\n\xe8\n",
                "urn:test",
                10
            ),
            Err(CsvFileError::NotUtf8 { line: 2 })
        );
    }

    #[test]
    fn more_rows_than_allowed_refuse_the_file() {
        let rows = "u1,withdrawn,015146,,,,,,,\n".repeat(3);
        let text = format!("{HOUSING}{rows}\n\n");
        let ok = parse_csv(EventType::HousingUnit, text.as_bytes(), "urn:test", 3);
        assert_eq!(ok.map(|p| p.rows.len()), Ok(3));
        assert_eq!(
            parse_csv(EventType::HousingUnit, text.as_bytes(), "urn:test", 2),
            Err(CsvFileError::TooManyRows { max: 2 })
        );
    }

    #[test]
    fn a_control_character_in_a_cell_is_an_error_of_its_row() {
        let parse = housing(
            "u1,withdrawn,015146,,,,,,,uno\tdue\n\
             u2,withdrawn,015146,,,,,,,tre\u{85}quattro\n\
             u3,withdrawn,015146,,,,,,,\u{0}\n\
             u4,withdrawn,015146,,,,,,,  spazi  \n",
        );
        assert_eq!(
            errors_of(&parse),
            vec![(2, Some("notes")), (3, Some("notes")), (4, Some("notes"))]
        );
        assert!(parse.errors[0].detail.contains(CONTROL_CHARACTER));
        assert_eq!(rows_of(&parse), vec![5]);
        assert_eq!(parse.rows[0].event["data"]["notes"], "spazi");
    }

    #[test]
    fn rows_are_numbered_as_a_spreadsheet_shows_them() {
        // A quoted cell holding a newline is one row (refused: a control character); a
        // blank line is a row of its own; a row of empty cells is skipped.
        let parse = housing(
            "u1,withdrawn,015146,,,,,,,\"riga uno\nriga due\"\n\
             u2,withdrawn,015146,,,,,,,\n\
             \n\
             ,,,,,,,,,\n\
             u3,withdrawn,015146,,,,,,,\"a\r\n\r\nb\"\r\n\
             u4,withdrawn,015146,,,,,,,\"\nfine\n\"\n",
        );
        assert_eq!(
            errors_of(&parse),
            vec![(2, Some("notes")), (6, Some("notes"))]
        );
        assert_eq!(rows_of(&parse), vec![3, 7]);
        assert_eq!(parse.rows[1].event["data"]["notes"], "fine");
        let header_spans_lines = parse_csv(
            EventType::HousingUnit,
            b"\n\"unit_id\",action,comune_istat,\"notes\"\nu1,withdrawn,015146,\"a\nb\"\nu2,withdrawn,015146,",
            "urn:test",
            10,
        )
        .expect("readable");
        assert_eq!(rows_of(&header_spans_lines), vec![4]);
        assert_eq!(errors_of(&header_spans_lines), vec![(3, Some("notes"))]);
    }

    #[test]
    fn the_same_row_twice_has_the_same_id_and_a_changed_row_another() {
        let first = housing("u1,offered,015146,Via Roma 1,4,CAS,casa,true,,\n");
        let again = housing(
            "u1 , offered,015146,Via Roma 1,4,CAS,casa,sì,,\n\
             u1,offered,015146,Via Roma 1,5,CAS,casa,true,,\n",
        );
        let reordered = parse(
            EventType::HousingUnit,
            "owner_declaration;places;building_type;reception_kind;address;comune_istat;action;unit_id\n\
             1;4;casa;CAS;Via Roma 1;015146;offered;u1\n",
        );
        assert!(first.errors.is_empty() && again.errors.is_empty() && reordered.errors.is_empty());
        assert_eq!(id_of(&first.rows[0]), id_of(&again.rows[0]));
        assert_eq!(id_of(&first.rows[0]), id_of(&reordered.rows[0]));
        assert_ne!(id_of(&first.rows[0]), id_of(&again.rows[1]));
        let expected = {
            let data = r#"{"action":"offered","address":"Via Roma 1","building_type":"casa","comune_istat":"015146","owner_declaration":true,"places":4,"reception_kind":"CAS","unit_id":"u1"}"#;
            let digest = Sha256::digest(format!("housing.unit.v1\n{data}").as_bytes());
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            format!("csv-{}", &hex[..32])
        };
        assert_eq!(id_of(&first.rows[0]), expected);
        // The same row twice in one file: two rows, one event id.
        let twice = housing("u1,withdrawn,015146,,,,,,,\nu1,withdrawn,015146,,,,,,,\n");
        assert_eq!(rows_of(&twice), vec![2, 3]);
        assert_eq!(id_of(&twice.rows[0]), id_of(&twice.rows[1]));
    }

    #[test]
    fn the_id_column_gives_the_event_id() {
        let parse = parse(
            EventType::HousingUnit,
            "ID,unit_id,action,comune_istat\n\
             evt-1,u1,withdrawn,015146\n\
             ,u2,withdrawn,015146\n\
             evt-1,u3,withdrawn,015146\n\
             evt-1,u1,withdrawn,015146\n\
             \"evt\t2\",u4,withdrawn,015146\n",
        );
        assert_eq!(rows_of(&parse), vec![2, 3, 5]);
        assert_eq!(id_of(&parse.rows[0]), "evt-1");
        assert!(id_of(&parse.rows[1]).starts_with("csv-"));
        assert_eq!(errors_of(&parse), vec![(4, Some("id")), (6, Some("id"))]);
        assert_eq!(
            parse.errors[0].to_string(),
            "row 4, column id: the same id as row 2 with other values"
        );
        let long = format!(
            "id,unit_id,action,comune_istat\n{},u1,withdrawn,015146\n",
            "x".repeat(300)
        );
        let parse =
            parse_csv(EventType::HousingUnit, long.as_bytes(), "urn:test", 10).expect("readable");
        assert_eq!(errors_of(&parse), vec![(2, Some("id"))]);
    }

    #[test]
    fn extra_cells_and_unnamed_columns() {
        let parse = parse(
            EventType::HousingUnit,
            "unit_id,action,comune_istat,,\n\
             u1,withdrawn,015146,,\n\
             u2,withdrawn,015146,,x\n\
             u3,withdrawn,015146,,,,\n\
             u4,withdrawn,015146,,,,y\n\
             u5,withdrawn\n",
        );
        assert_eq!(rows_of(&parse), vec![2, 4]);
        assert_eq!(
            errors_of(&parse),
            vec![(3, None), (5, None), (6, Some("comune_istat"))]
        );
    }

    #[test]
    fn no_error_text_holds_a_cell_value() {
        let parse = parse(
            EventType::HousingUnit,
            "id,unit_id,action,comune_istat,address,places,reception_kind,building_type,owner_declaration,available_from,notes\n\
             ,u1,QZXJ,015146,,,,,,,\n\
             ,u2,offered,QZXJ01,Via QZXJ,4,CAS,casa,true,,\n\
             ,u3,offered,015146,Via QZXJ,QZXJ,CAS,casa,true,,\n\
             ,u4,offered,015146,Via QZXJ,4,QZXJ,casa,true,,\n\
             ,u5,offered,015146,Via QZXJ,4,CAS,casa,QZXJ,,\n\
             ,u6,offered,015146,Via QZXJ,4,CAS,casa,true,QZXJ,\n\
             ,u7,withdrawn,015146,,,,,,,\"QZXJ\u{7}\"\n\
             \"QZXJ\u{7}\",u8,withdrawn,015146,,,,,,,\n\
             ,QZXJQZXJQZXJQZXJQZXJQZXJQZXJQZXJQZXJQZXJQZXJQZXJQZXJQZXJQZXJQZXJQZXJ,withdrawn,015146,,,,,,,\n\
             ,u9,withdrawn,015146,,,,,,,QZXJ,extra\n",
        );
        assert!(parse.rows.is_empty(), "{:?}", parse.rows);
        assert_eq!(parse.errors.len(), 10);
        for error in &parse.errors {
            let text = error.to_string();
            assert!(!text.contains("QZXJ"), "{text}");
            assert!(error.column.is_some() || error.row == 11, "{text}");
        }
    }
}

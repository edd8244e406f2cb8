//! The command line (CONTRACT §8).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::dlq::Which;
use crate::import::Table;
use crate::serve::Workers;
use crate::table::Format;
use raccordo_core::clock::YearMonth;
use raccordo_core::settings::{ConsoleRole, LogFormat};

/// Raccordo: the integration hub of the Città Metropolitana di Milano's protocols.
#[derive(Debug, Parser)]
#[command(name = "raccordo", version, about, long_about = None)]
pub struct Cli {
    /// Log lines as text or JSON (overrides log.format).
    #[arg(long, global = true, value_parser = parse_log_format)]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

/// A report's month: from 2000-01 to the current month (Europe/Rome), so its query is bounded.
fn parse_month(s: &str) -> Result<YearMonth, String> {
    YearMonth::parse_report(s, YearMonth::current()).map_err(|e| e.to_string())
}

fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    match s {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err("use text or json".into()),
    }
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the database if missing, run migrations, declare the broker topology.
    Setup {
        /// Also write the RabbitMQ definitions (users, permissions, topic permissions)
        /// that let each publisher of `[publishers]` write only its event types.
        #[arg(long, value_name = "FILE")]
        definitions: Option<PathBuf>,
    },
    /// Back up the hub's database (pg_dump of the server's major version) into a new folder,
    /// with a manifest: release, migration, pseudonym key fingerprint, rows per table.
    Backup(BackupArgs),
    /// Restore a backup folder into the configured database (created if missing), after
    /// checking the dump, the pseudonym key's fingerprint and the release.
    Restore(RestoreArgs),
    /// The asylum desks' protocols: the rotation of domiciles among the comuni (A3).
    Asylum {
        #[command(subcommand)]
        command: AsylumCommand,
    },
    /// Eviction procedures: the pseudonym key.
    Eviction {
        #[command(subcommand)]
        command: EvictionCommand,
    },
    /// Import comuni or referents from a CSV file (all or nothing; importing again updates).
    Import {
        /// comuni: istat,nome,popolazione,zona_omogenea,ambito[,quota][,protocollo];
        /// referents: referent_id,institution,role,email,name,comune_istat,ambito,zona
        /// and optionally pec,deputy_of (columns found by header name, any order).
        table: Table,
        /// The CSV file, or - for standard input.
        file: PathBuf,
    },
    /// The registry of comuni and referents.
    Registry {
        #[command(subcommand)]
        command: RegistryCommand,
    },
    /// Run workers until SIGINT or SIGTERM.
    Serve {
        /// Which workers; `all` runs every one in one process.
        #[arg(default_value = "all")]
        workers: Workers,
    },
    /// Publish newline-delimited CloudEvents to {prefix}.inbound, with confirms.
    Publish {
        /// The file, or - (default) for standard input.
        #[arg(default_value = "-")]
        file: PathBuf,
        /// Send lines as they are, without checking them against the schemas first.
        #[arg(long)]
        no_validate: bool,
        /// Set the AMQP user_id to amqp.url's user, as a publishing system must when
        /// publishers.allow_anonymous is false (RabbitMQ checks it is the connection's own).
        #[arg(long)]
        as_publisher: bool,
        /// CloudEvents binary mode: each event's attributes as `cloudEvents_*` application
        /// properties, its `data` alone as the body (`application/json`).
        #[arg(long)]
        binary: bool,
    },
    /// The Tavolo provinciale asilo's records: meetings, protocols, objectives (A6).
    Tavolo {
        #[command(subcommand)]
        command: crate::tavolo::TavoloCommand,
    },
    /// Retention (GDPR art. 5(1)(e)): what the hub keeps, pruned as `retention.*` says;
    /// one replica runs it daily by itself.
    Retention {
        #[command(subcommand)]
        command: RetentionCommand,
    },
    /// Dead and parked messages, with their reasons.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Reports: reception coverage, the facility census.
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// Notifications sent: kind, recipient, time, SMTP outcome and, for eviction notices,
    /// the consent decision that authorised them.
    Audit {
        /// Only this kind (e.g. eviction.alert).
        #[arg(long)]
        kind: Option<String>,
        /// Only notifications made from this day on, YYYY-MM-DD (Europe/Rome).
        #[arg(long)]
        since: Option<String>,
        /// Only this eviction procedure (docket number; looked up by its pseudonym, never stored).
        #[arg(long)]
        procedure: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// What happened to each delivery of a notification: queued, sent, bounced, PEC
    /// receipts, acknowledged, reminded, escalated… (CONTRACT D1), times in Europe/Rome.
    Timeline {
        /// The notification id (the `X-Raccordo-Notification` header of its emails).
        id: String,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Queues, consumers, dead and parked counts, undeliverable notifications.
    Status {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Measure the hub end to end on its own prefix and database: throughput, latency,
    /// CPU per event, commits per event, memory, against the broker's raw relay.
    Bench(crate::bench::BenchArgs),
    /// Run the hub for a long time at a steady rate with faults on a schedule, on its own
    /// prefix and database: memory, p99 and database size sampled, every email checked.
    Soak(crate::soak::SoakArgs),
    /// The operators' web console alone (`console.*` settings); `hash-password` makes an
    /// operator's password hash.
    Console {
        #[command(subcommand)]
        command: Option<ConsoleCommand>,
    },
    /// The publishing systems of `[publishers]`: their HTTP ingestion tokens.
    Publishers {
        #[command(subcommand)]
        command: PublishersCommand,
    },
    /// Ids and their owners (contract 1.2 §3): an event never moves a unit, a facility or a
    /// procedure to another comune or publisher; an operator does, audited.
    Ids {
        #[command(subcommand)]
        command: IdsCommand,
    },
    /// The whole flow on the sample data of the Città Metropolitana di Milano; the console
    /// stays up with the demo's data until Ctrl-C.
    Demo {
        /// Stop after the summary instead of keeping the console up.
        #[arg(long)]
        exit: bool,
    },
}

/// `raccordo backup …`
#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// The folder to write (created; it must be new or empty).
    pub dir: PathBuf,
    /// Also write the RabbitMQ definitions of `[publishers]` (as `setup --definitions`).
    #[arg(long)]
    pub definitions: bool,
    /// Where pg_dump of the server's major version is (default: Debian's
    /// /usr/lib/postgresql/<major>/bin, then PATH).
    #[arg(long, value_name = "DIR")]
    pub pg_bin: Option<PathBuf>,
}

/// `raccordo restore …`
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The folder `raccordo backup` wrote.
    pub dir: PathBuf,
    /// Drop and recreate the configured database when it is not empty.
    #[arg(long)]
    pub force: bool,
    /// Where pg_restore of the server's major version is (default as for backup).
    #[arg(long, value_name = "DIR")]
    pub pg_bin: Option<PathBuf>,
}

/// `raccordo asylum …`
#[derive(Debug, Subcommand)]
pub enum AsylumCommand {
    /// The rotation of domiciles among the comuni marked domicilio (A3).
    Rotation {
        #[command(subcommand)]
        command: RotationCommand,
    },
}

/// `raccordo asylum rotation …`
#[derive(Debug, Subcommand)]
pub enum RotationCommand {
    /// Take a comune out of the rotation up to and including a day (its credit waits for it).
    Pause {
        /// The comune's ISTAT code (it must be marked domicilio).
        istat: String,
        /// The last day of the pause, YYYY-MM-DD (Europe/Rome).
        #[arg(long, value_parser = crate::domiciles::parse_day)]
        until: time::Date,
    },
    /// Put a paused comune back in the rotation now.
    Resume {
        /// The comune's ISTAT code.
        istat: String,
    },
    /// The comuni of the rotation: population, share, credit, domiciles, pauses, who is next.
    List {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

/// `raccordo eviction …`
#[derive(Debug, Subcommand)]
pub enum EvictionCommand {
    /// Rotate the pseudonym key: every stored pseudonym is hashed under a new key, in one
    /// transaction. Stop the eviction workers first; then configure the chain it writes.
    Rekey {
        /// A file holding the new key (at least 32 bytes, e.g. `openssl rand -hex 32`).
        #[arg(long, value_name = "FILE")]
        new_key_file: PathBuf,
        /// Where to write the chain to configure from now on (eviction.pseudonym_key_file);
        /// created with mode 0600, never overwritten.
        #[arg(long, value_name = "FILE")]
        write_key_file: PathBuf,
        /// Rotate even while eviction consumers are attached (they will stop and retry
        /// until restarted with the new chain).
        #[arg(long)]
        force: bool,
    },
}

/// `raccordo retention …`
#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Delete now what is past its retention, in batches, and print the counts per kind;
    /// the run is logged for the privacy role.
    Run {
        /// Delete nothing: print what would be deleted (logged as a dry run).
        #[arg(long)]
        dry_run: bool,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

/// `raccordo ids …`
#[derive(Debug, Subcommand)]
pub enum IdsCommand {
    /// Give an id to another comune (and publisher); recorded with who and why.
    Move {
        /// unit, facility or procedure.
        #[arg(value_parser = ["unit", "facility", "procedure"])]
        kind: String,
        /// The unit_id or facility_id; for a procedure, its docket number (hashed, never
        /// stored or printed).
        id: String,
        /// The ISTAT code of the comune it belongs to from now on.
        #[arg(long)]
        to: String,
        /// The publisher (a [publishers.<user>]) it belongs to from now on (units and
        /// facilities; default: unchanged).
        #[arg(long)]
        publisher: Option<String>,
        /// A procedure's court (the `source` of its court's events), when several courts
        /// have its docket number.
        #[arg(long)]
        court: Option<String>,
        /// Who moves it (recorded).
        #[arg(long)]
        by: String,
        /// Why (recorded).
        #[arg(long)]
        reason: String,
    },
}

/// `raccordo publishers …`
#[derive(Debug, Subcommand)]
pub enum PublishersCommand {
    /// Bearer tokens for HTTP ingestion (`ingest.addr`).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

/// `raccordo publishers token …`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token for USER (a `[publishers.<user>]` of the configuration): only its hash is
    /// stored; the token is printed once, alone on the last line.
    Add {
        /// The publisher's user name.
        user: String,
    },
    /// Every token: id, publisher, when made, when revoked (never the token).
    List {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Revoke a token by its id (from `list`); at once, on every replica.
    Revoke {
        /// The token's id.
        id: i64,
    },
}

/// `raccordo registry …`
#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Every referent: role, scope, email, PEC address and the referent it stands in for.
    List {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Every change of one referent: when, who (the publisher, import:FILE, cli, db:USER),
    /// what it was before and after.
    History {
        /// The referent's id.
        referent: String,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

/// `raccordo console …`
#[derive(Debug, Subcommand)]
pub enum ConsoleCommand {
    /// Serve the console until SIGINT or SIGTERM (the default).
    Serve,
    /// Read a password from standard input and print its argon2 hash, for
    /// `console.operators[].password_hash`.
    HashPassword,
    /// Console users: add one (prints its `console.operators` entry).
    User {
        #[command(subcommand)]
        command: ConsoleUserCommand,
    },
    /// List the configured console users, their roles and how they log in.
    Users {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

/// `raccordo console user …`
#[derive(Debug, Subcommand)]
pub enum ConsoleUserCommand {
    /// Read a password from standard input and print the user's entry for
    /// `console.operators`, with its argon2 hash; with --proxy-only, no password (the user
    /// comes only through console.trusted_proxies).
    Add {
        /// The login name (1 to 64 characters).
        name: String,
        /// viewer, operator or privacy.
        #[arg(long, value_parser = parse_role)]
        role: ConsoleRole,
        /// No password: the user is named only by the trusted proxy's header.
        #[arg(long)]
        proxy_only: bool,
    },
}

fn parse_role(s: &str) -> Result<ConsoleRole, String> {
    ConsoleRole::parse(s).ok_or_else(|| "use viewer, operator or privacy".into())
}

/// `raccordo report …`
#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Eviction steps per ambito, comune and step in a month (C6); 1 or 2 shown as <3.
    Evictions {
        /// The month, YYYY-MM, from 2000-01 to the current one (steps count in the month of
        /// their occurred_on, Europe/Rome).
        #[arg(long, value_parser = parse_month)]
        month: YearMonth,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        /// Also send `eviction.stats` to each ambito's servizi sociali and the prefettura.
        #[arg(long)]
        send: bool,
    },
    /// Domiciles assigned per comune in a year against its fair share by population (A3).
    Domiciles {
        /// The year, YYYY (assignments count in the year of their time, Europe/Rome).
        #[arg(long, value_parser = crate::domiciles::parse_year)]
        year: i32,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Coverage, quota and state per comune and zona (Q2–Q4, salvaguardia, Q7 flags).
    Coverage {
        /// Only this zona omogenea (e.g. "Sud Est"; Milano is its own).
        #[arg(long)]
        zona: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        /// Also send the monthly verification (Q7) to the Prefettura and each Tavolo.
        #[arg(long)]
        send: bool,
    },
    /// The Tavolo provinciale asilo's annual relazione-report (A6): printable HTML, CSV, JSON.
    Tavolo(crate::tavolo::ReportArgs),
    /// The SPRAR waiting list by priority and wait, and free SPRAR places per comune (A4).
    Priorities {
        /// table, csv (the cases) or json (the weekly list's data).
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        /// Also send this week's list to every sportello_asilo and the unscoped tavolo.
        #[arg(long)]
        send: bool,
    },
    /// Reception facilities: capacity, presences, free places, as of their newest report.
    Facilities {
        /// Only this comune: ISTAT code or exact name.
        #[arg(long)]
        comune: Option<String>,
        /// Only this zona omogenea.
        #[arg(long)]
        zona: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

/// `raccordo dlq …`
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List held messages.
    List {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        /// dead, parked or all.
        #[arg(long, value_enum, default_value_t)]
        queue: Which,
    },
    /// Show one message: reason, headers, body with household and contact masked.
    Show { id: String },
    /// Send held messages back to the queue they came from.
    Replay {
        /// The id of one message (see `dlq list`).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<String>,
        /// Replay every held message.
        #[arg(long)]
        all: bool,
        /// dead, parked or all.
        #[arg(long, value_enum, default_value_t)]
        queue: Which,
    },
    /// Delete held messages: every one of the queue(s), or the one with this id.
    Purge {
        /// The id of one message (see `dlq list`); without it, every held message.
        id: Option<String>,
        /// dead, parked or all.
        #[arg(long, value_enum, default_value_t)]
        queue: Which,
    },
}

//! The options of `raccordo bench`.

use std::path::PathBuf;

use raccordo_core::settings::QueueType;

use super::load::Scenario;

/// Which scenarios to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScenarioChoice {
    Housing,
    Mixed,
    /// housing and mixed (not ingest, which measures another thing).
    All,
    /// The HTTP door alone (`serve ingest`): POST /v1/events structured and batched, over
    /// one connection and many, against the same events published over AMQP.
    Ingest,
}

impl ScenarioChoice {
    /// The scenarios, in the order they run.
    pub fn scenarios(self) -> Vec<Scenario> {
        match self {
            ScenarioChoice::Housing => vec![Scenario::Housing],
            ScenarioChoice::Mixed => vec![Scenario::Mixed],
            ScenarioChoice::All => vec![Scenario::Housing, Scenario::Mixed],
            ScenarioChoice::Ingest => Vec::new(),
        }
    }

    /// The name used in result file names.
    pub fn as_str(self) -> &'static str {
        match self {
            ScenarioChoice::Housing => "housing",
            ScenarioChoice::Mixed => "mixed",
            ScenarioChoice::All => "all",
            ScenarioChoice::Ingest => "ingest",
        }
    }
}

/// The queue type of the hub's work queues and of the raw relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QueueChoice {
    Classic,
    Quorum,
}

impl From<QueueChoice> for QueueType {
    fn from(choice: QueueChoice) -> Self {
        match choice {
            QueueChoice::Classic => QueueType::Classic,
            QueueChoice::Quorum => QueueType::Quorum,
        }
    }
}

/// Events of a hub throughput run when `--events` is not given.
pub const DEFAULT_EVENTS: u64 = 5000;
/// Events of each ingestion mode when `--events` is not given.
pub const DEFAULT_INGEST_EVENTS: u64 = 20_000;

/// `raccordo bench`: the real `serve all` in a child process, on its own prefix and
/// database, fed through the broker and measured from outside.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// housing (offers, 2 emails each), mixed (70% occupancy, 20% eviction, 10% housing),
    /// all (housing and mixed), or ingest (the HTTP door alone against AMQP).
    #[arg(long, value_enum, default_value = "all")]
    pub scenario: ScenarioChoice,
    /// Events of the throughput run (published as fast as confirms allow), default 5000;
    /// with `--scenario ingest`, events of each mode, default 20000.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub events: Option<u64>,
    /// `--scenario ingest`: connections of the concurrent modes, each its own task.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub connections: u64,
    /// `--scenario ingest`: events per batch request (at most `ingest.max_batch`, 500).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(2..=500))]
    pub batch: u64,
    /// Offered rates of the latency runs, events per second (comma-separated); `--rates`
    /// with no value runs none.
    #[arg(long, value_delimiter = ',', num_args = 0.., default_value = "100,500")]
    pub rates: Vec<u32>,
    /// Length of each latency run, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub seconds: u64,
    /// Queue type of the hub's work queues and of the raw relay.
    #[arg(long, value_enum, default_value = "quorum")]
    pub queue_type: QueueChoice,
    /// Messages of the raw two-hop relay (0: skip it).
    #[arg(long, default_value_t = 10000)]
    pub relay_messages: u64,
    /// Publisher confirms awaited at once.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=65535))]
    pub window: u64,
    /// A run fails when no expected email and no event was handled for this long, in seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub stall_seconds: u64,
    /// The SMTP sink's delay before accepting each email (its reply to the end of `DATA`),
    /// in ms, as a relay that scans content takes; comma-separated: every scenario runs at
    /// each. Default: no delay.
    #[arg(long, value_delimiter = ',', num_args = 1.., default_value = "0")]
    pub smtp_latency_ms: Vec<u64>,
    /// The SMTP sink's delay before every other reply (EHLO, MAIL, RCPT, DATA), in ms.
    #[arg(long, default_value_t = 0)]
    pub smtp_command_latency_ms: u64,
    /// Connections the SMTP sink serves at once; one more is greeted with 421 and closed.
    #[arg(long)]
    pub smtp_connection_limit: Option<usize>,
    /// Fraction (0–1) of MAIL FROM the SMTP sink refuses transiently, alternately 451 and
    /// 421 (closing the connection).
    #[arg(long, default_value_t = 0.0)]
    pub smtp_refusal_rate: f64,
    /// The hub's `mail.max_connections` (its own setting when not given).
    #[arg(long)]
    pub mail_max_connections: Option<usize>,
    /// Where the JSON and markdown results are written.
    #[arg(long, default_value = "bench/results")]
    pub out: PathBuf,
}

impl BenchArgs {
    /// Events of a throughput run (`--events`, or the scenario's default).
    pub fn events(&self) -> u64 {
        self.events.unwrap_or(match self.scenario {
            ScenarioChoice::Ingest => DEFAULT_INGEST_EVENTS,
            _ => DEFAULT_EVENTS,
        })
    }
}

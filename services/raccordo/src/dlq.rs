//! `raccordo dlq list|show|replay|purge`: the dead and parked messages, with their reasons.

use anyhow::Context;
use lapin::Connection;

use raccordo_core::amqp::dead_letter::{self, HeldMessage, Holding, ReplayReport, printable};
use raccordo_core::amqp::{Publisher, Topology, connect};
use raccordo_core::settings::Settings;

/// Which holding queue(s) a command works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Which {
    Dead,
    Parked,
    #[default]
    All,
}

impl Which {
    fn holdings(self) -> &'static [Holding] {
        match self {
            Which::Dead => &[Holding::Dead],
            Which::Parked => &[Holding::Parked],
            Which::All => &[Holding::Dead, Holding::Parked],
        }
    }
}

async fn open(settings: &Settings) -> anyhow::Result<(Connection, Topology)> {
    let topology = Topology::from_settings(settings);
    let connection = connect(&settings.amqp, "dlq")
        .await
        .context("Failed to connect to RabbitMQ (scripts/services.sh starts it)")?;
    let publisher = Publisher::open(&connection).await?;
    topology.declare(publisher.channel()).await?;
    Ok((connection, topology))
}

/// Every held message of `which`, oldest first.
pub(crate) async fn list(settings: &Settings, which: Which) -> anyhow::Result<Vec<HeldMessage>> {
    let (connection, topology) = open(settings).await?;
    let mut all = Vec::new();
    for holding in which.holdings() {
        all.extend(
            dead_letter::browse(&connection, &topology, *holding)
                .await
                .context("Failed to read the holding queue")?,
        );
    }
    let _ = connection.close(200, "done".into()).await;
    Ok(all)
}

/// One held message by id (the others are read and dropped on the way).
pub(crate) async fn show(settings: &Settings, id: &str) -> anyhow::Result<Option<HeldMessage>> {
    let (connection, topology) = open(settings).await?;
    let found = dead_letter::find(
        &connection,
        &topology,
        Which::All.holdings(),
        id,
        usize::MAX,
    )
    .await
    .context("Failed to read the holding queue")?;
    let _ = connection.close(200, "done".into()).await;
    Ok(found)
}

/// Re-injects held messages into the queue they came from.
pub(crate) async fn replay(
    settings: &Settings,
    which: Which,
    id: Option<&str>,
) -> anyhow::Result<ReplayReport> {
    let (connection, topology) = open(settings).await?;
    let mut total = ReplayReport::default();
    for holding in which.holdings() {
        let report = dead_letter::replay(&connection, &topology, *holding, id)
            .await
            .context("Failed to replay")?;
        total.replayed += report.replayed;
        total.kept += report.kept;
    }
    let _ = connection.close(200, "done".into()).await;
    Ok(total)
}

/// Deletes the held message `id` from `which`; returns where it was.
pub(crate) async fn purge_one(
    settings: &Settings,
    which: Which,
    id: &str,
) -> anyhow::Result<Option<Holding>> {
    let (connection, topology) = open(settings).await?;
    let mut found = None;
    for holding in which.holdings() {
        if dead_letter::purge_one(&connection, &topology, *holding, id).await? {
            found = Some(*holding);
            break;
        }
    }
    let _ = connection.close(200, "done".into()).await;
    Ok(found)
}

/// Deletes every held message of `which`; returns how many per queue.
pub(crate) async fn purge(
    settings: &Settings,
    which: Which,
) -> anyhow::Result<Vec<(Holding, u32)>> {
    let (connection, topology) = open(settings).await?;
    let mut out = Vec::new();
    for holding in which.holdings() {
        out.push((
            *holding,
            dead_letter::purge(&connection, &topology, *holding).await?,
        ));
    }
    let _ = connection.close(200, "done".into()).await;
    Ok(out)
}

/// The table `dlq list` prints. Every cell goes through [`printable`]: a routing key or an
/// id is the publisher's text and must not drive the operator's terminal.
pub(crate) fn table(messages: &[HeldMessage]) -> String {
    let rows: Vec<Vec<String>> = messages
        .iter()
        .map(|m| {
            [
                format!("{:?}", m.holding).to_lowercase(),
                m.id.clone(),
                m.failed_at.clone(),
                m.routing_key.clone(),
                m.event_id.clone().unwrap_or_default(),
                m.attempt.to_string(),
                m.error.chars().take(100).collect(),
            ]
            .iter()
            .map(|cell| printable(cell))
            .collect()
        })
        .collect();
    crate::table::render(
        &[
            "queue",
            "id",
            "failed_at",
            "routing_key",
            "event_id",
            "attempt",
            "error",
        ],
        &rows,
    )
}

/// The detail `dlq show` prints: reason, the headers and the body as
/// [`HeldMessage::headers`] and [`HeldMessage::masked_body`] allow them (CONTRACT C7).
pub(crate) fn detail(m: &HeldMessage) -> String {
    let mut out = format!(
        "id:          {}\nqueue:       {:?}\nreason:      {}\nfrom queue:  {}\nrouting key: {}\nfailed at:   {}\nattempts:    {}\nsize:        {} bytes\n\nheaders (the hub's own and known properties):\n",
        printable(&m.id),
        m.holding,
        printable(&m.error),
        printable(&m.queue),
        printable(&m.routing_key),
        printable(&m.failed_at),
        m.attempt,
        m.size
    );
    for (k, v) in m.headers() {
        out.push_str(&format!("  {k}: {v}\n"));
    }
    out.push_str("\nbody (known non-personal members only; the rest masked):\n");
    out.push_str(&m.masked_body());
    out.push('\n');
    out
}

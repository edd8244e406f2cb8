//! `raccordo eviction rekey`: rotates the pseudonym key (see `raccordo_eviction::keys`).
//!
//! The new chain is written to its file first (mode 0600, never over an existing file), so
//! an operator never ends with pseudonyms rewritten under a key they no longer have.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use secrecy::{ExposeSecret, SecretString};

use raccordo_core::amqp::{Topology, WorkQueue, connect};
use raccordo_core::settings::Settings;

/// What the rotation did.
pub(crate) struct RekeyReport {
    /// Procedures re-pseudonymised.
    pub procedures: usize,
    /// Asylum cases re-pseudonymised.
    pub cases: usize,
}

/// Rotates the key: refuses while eviction consumers are attached unless `force`.
pub(crate) async fn rekey(
    settings: &Settings,
    new_key_file: &Path,
    write_key_file: &Path,
    force: bool,
    progress: impl FnMut(usize, usize),
) -> anyhow::Result<RekeyReport> {
    settings.eviction.check_key_for_real_data()?;
    let new_key = std::fs::read_to_string(new_key_file)
        .with_context(|| format!("Failed to read the new key from {}", new_key_file.display()))?;
    let new_key = SecretString::from(new_key.trim().to_owned());
    if !force {
        let consumers = eviction_consumers(settings).await.context(
            "Failed to ask RabbitMQ whether eviction workers run (use --force to rotate without asking)",
        )?;
        anyhow::ensure!(
            consumers == 0,
            "{consumers} consumer(s) are attached to {0}.eviction or {0}.asylum: stop the eviction and asylum workers first (or use --force)",
            settings.amqp.prefix
        );
    }
    let mut chain = String::new();
    for key in settings.eviction.pseudonym_keys() {
        chain.push_str(key.expose_secret());
        chain.push('\n');
    }
    chain.push_str(new_key.expose_secret());
    chain.push('\n');
    write_secret_file(write_key_file, &chain)?;

    let pool = crate::database::connect_db(settings).await?;
    let result = raccordo_eviction::keys::rekey(&pool, &settings.eviction, new_key, progress).await;
    pool.close().await;
    match result {
        Ok(rekeyed) => Ok(RekeyReport {
            procedures: rekeyed.procedures,
            cases: rekeyed.cases,
        }),
        Err(error) => {
            // Nothing changed in the database: the new chain must not be used.
            let _ = std::fs::remove_file(write_key_file);
            Err(anyhow::Error::new(error)
                .context("Failed to rotate the pseudonym key; nothing changed"))
        }
    }
}

/// Consumers of the eviction and asylum queues: both pseudonymise under the chain.
async fn eviction_consumers(settings: &Settings) -> anyhow::Result<u32> {
    let connection = connect(&settings.amqp, "rekey").await?;
    let mut consumers = 0;
    for queue in [WorkQueue::Eviction, WorkQueue::Asylum] {
        // A failed passive declare closes its channel: one channel per queue.
        let channel = connection.create_channel().await?;
        let declared = channel
            .queue_declare(
                Topology::from_settings(settings).queue(queue).into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await;
        // A queue that does not exist has no consumers.
        consumers += declared.map(|q| q.consumer_count()).unwrap_or(0);
    }
    let _ = connection.close(200, "rekey".into()).await;
    Ok(consumers)
}

fn write_secret_file(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).with_context(|| {
        format!(
            "Failed to create {} (it must not exist yet)",
            path.display()
        )
    })?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

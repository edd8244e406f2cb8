//! `raccordo setup`: creates the database if missing, runs migrations, declares the topology.

use anyhow::Context;

use raccordo_core::amqp::{Publisher, Topology, connect};
use raccordo_core::db;
use raccordo_core::settings::Settings;

/// What setup did, for the operator.
pub struct SetupReport {
    pub database: String,
    pub created: bool,
    pub prefix: String,
}

/// Runs the three steps; each is idempotent. Refuses a key that would make the
/// pseudonyms of families reversible, or one other than the database was written with.
pub async fn run(settings: &Settings) -> anyhow::Result<SetupReport> {
    settings.eviction.check_key_for_real_data()?;
    let database = settings.database.database_name()?;
    let created = db::create_database_if_missing(&settings.database)
        .await
        .with_context(|| {
            format!("Failed to reach PostgreSQL to create database {database} (scripts/services.sh starts it)")
        })?;
    let pool = crate::database::connect_db(settings).await?;
    db::migrate(&pool)
        .await
        .context("Failed to run the database migrations")?;
    raccordo_eviction::keys::verify_key(&pool, &settings.eviction).await?;
    pool.close().await;
    let connection = connect(&settings.amqp, "setup")
        .await
        .context("Failed to connect to RabbitMQ (scripts/services.sh starts it)")?;
    let topology = Topology::from_settings(settings);
    let redeclared = topology
        .migrate_personal_queues(&connection)
        .await
        .context("Failed to give the personal holding queues their time to live")?;
    for queue in redeclared {
        tracing::info!(
            queue,
            "Holding queue declared anew with the personal-data time to live (C7)."
        );
    }
    let publisher = Publisher::open(&connection).await?;
    topology
        .declare(publisher.channel())
        .await
        .context("Failed to declare the broker topology")?;
    let _ = connection.close(200, "setup done".into()).await;
    Ok(SetupReport {
        database,
        created,
        prefix: settings.amqp.prefix.clone(),
    })
}

/// Writes RabbitMQ definitions (importable with `rabbitmqctl import_definitions` or the
/// management UI) giving each publisher of `[publishers]` its own user, allowed to write
/// only to `{prefix}.inbound` and, through topic permissions, only its event types. The
/// users have no password: set one with `rabbitmqctl change_password`.
pub(crate) fn write_definitions(settings: &Settings, path: &std::path::Path) -> anyhow::Result<()> {
    let definitions = publisher_definitions(settings)?;
    let text = serde_json::to_string_pretty(&definitions)?;
    std::fs::write(path, text + "\n").with_context(|| format!("Failed to write {}", path.display()))
}

/// The definitions [`write_definitions`] writes.
pub fn publisher_definitions(settings: &Settings) -> anyhow::Result<serde_json::Value> {
    use secrecy::ExposeSecret;
    let url = url::Url::parse(settings.amqp.primary_url().expose_secret())
        .context(settings.amqp.addresses_key())?;
    let vhost = match url.path().trim_start_matches('/') {
        "" => "/".to_owned(),
        v => percent_decode(v),
    };
    let inbound = Topology::from_settings(settings).inbound_exchange();
    let escape = |s: &str| s.replace('.', "\\.").replace('-', "\\-");
    let mut users = Vec::new();
    let mut permissions = Vec::new();
    let mut topic_permissions = Vec::new();
    for (user, rule) in &settings.publishers.users {
        users.push(serde_json::json!({
            "name": user,
            "password_hash": "",
            "hashing_algorithm": "rabbit_password_hashing_sha256",
            "tags": [],
        }));
        permissions.push(serde_json::json!({
            "user": user, "vhost": vhost,
            "configure": "^$",
            "write": format!("^{}$", escape(&inbound)),
            "read": "^$",
        }));
        let types: Vec<String> = rule.types.iter().map(|t| escape(t)).collect();
        topic_permissions.push(serde_json::json!({
            "user": user, "vhost": vhost,
            "exchange": inbound,
            "write": format!("^({})$", types.join("|")),
            "read": "^$",
        }));
    }
    Ok(serde_json::json!({
        "users": users,
        "permissions": permissions,
        "topic_permissions": topic_permissions,
    }))
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

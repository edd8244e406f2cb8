//! Data in transit: PostgreSQL and RabbitMQ connections can be encrypted, and asking for
//! TLS never falls back to clear text. The machine's servers are plain (their configuration
//! is not ours to change), so the tests prove that TLS is attempted: a plain server refuses
//! it and the connection fails instead of carrying on in clear.

use std::error::Error as _;

use secrecy::ExposeSecret;
use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use raccordo_core::settings::Settings;

/// The machine's PostgreSQL, its `postgres` database, with `query` appended to the URL.
fn postgres_options(settings: &Settings, query: &str) -> PgConnectOptions {
    let mut url = url::Url::parse(settings.database.url.expose_secret()).expect("database.url");
    url.set_path("/postgres");
    url.set_query(Some(query));
    url.as_str().parse().expect("a PostgreSQL URL")
}

/// Whether the connection is encrypted, as the server sees it.
async fn encrypted(connection: &mut PgConnection) -> bool {
    sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(connection)
        .await
        .expect("pg_stat_ssl")
}

#[tokio::test]
async fn postgres_sslmode_require_and_verify_full_use_tls_and_never_fall_back_to_clear() {
    let settings = Settings::load().expect("the default settings load");
    let mut plain = PgConnection::connect_with(&postgres_options(&settings, "sslmode=disable"))
        .await
        .expect("PostgreSQL answers on 127.0.0.1:5432 (scripts/services.sh starts it)");
    let ssl: String = sqlx::query_scalar("SHOW ssl")
        .fetch_one(&mut plain)
        .await
        .expect("SHOW ssl");
    let cert_file: String = sqlx::query_scalar("SHOW ssl_cert_file")
        .fetch_one(&mut plain)
        .await
        .expect("SHOW ssl_cert_file");
    assert!(!encrypted(&mut plain).await, "sslmode=disable is clear");
    let _ = plain.close().await;

    let require = PgConnection::connect_with(&postgres_options(&settings, "sslmode=require")).await;
    let wrong_name = format!("sslmode=verify-full&sslrootcert={cert_file}");
    let verify_wrong_name =
        PgConnection::connect_with(&postgres_options(&settings, &wrong_name)).await;
    if ssl == "on" {
        let mut connection = require.expect("sslmode=require connects to a TLS server");
        assert!(encrypted(&mut connection).await, "sslmode=require in clear");
        // verify-full checks the name: the server's certificate does not name 127.0.0.1.
        let error = verify_wrong_name
            .map(|_| ())
            .expect_err("verify-full refuses a certificate for another name");
        assert!(error.to_string().contains("certificate"), "{error}");
        // With the name the certificate holds and it as root, verify-full connects.
        if std::fs::metadata(&cert_file).is_ok() {
            let mut options = postgres_options(&settings, &wrong_name);
            options = options.host("localhost");
            let mut connection = PgConnection::connect_with(&options)
                .await
                .expect("verify-full with sslrootcert and the certificate's name");
            assert!(encrypted(&mut connection).await, "verify-full in clear");
        }
    } else {
        // The server said no to TLS; sqlx built without TLS would fail differently
        // ("built without TLS support"), and a silent fallback would connect.
        for connected in [require, verify_wrong_name] {
            match connected {
                Err(sqlx::Error::Tls(error)) => assert!(
                    error.to_string().contains("server does not support TLS"),
                    "{error}"
                ),
                Err(other) => panic!("not a TLS error: {other}"),
                Ok(_) => panic!("connected in clear to a server without TLS"),
            }
        }
    }
}

#[tokio::test]
async fn amqps_urls_are_accepted_and_connect_with_tls_not_in_clear() {
    let mut settings = Settings::load().expect("the default settings load");
    settings.amqp.url = "amqps://guest:guest@127.0.0.1:5672/%2f".to_owned().into();
    settings.amqp.prefix = "tls-check".into();
    settings.validate().expect("amqps:// is a valid amqp.url");

    // Port 5672 speaks plain AMQP: a TLS client cannot complete its handshake there.
    let error = raccordo_core::amqp::connect(&settings.amqp, "tls-check")
        .await
        .map(|_| ())
        .expect_err("a TLS handshake with a plain AMQP port fails");

    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        chain.push_str(" / ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    let lower = chain.to_lowercase();
    assert!(!lower.contains("scheme"), "amqps:// is supported: {chain}");
    assert!(
        [
            "tls",
            "ssl",
            "handshake",
            "corrupt",
            "certificate",
            "invalidcontenttype"
        ]
        .iter()
        .any(|word| lower.contains(word)),
        "a TLS error: {chain}"
    );
}

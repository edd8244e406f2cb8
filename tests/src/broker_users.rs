//! Real broker users for the tests of who may publish what: created with `rabbitmqctl`
//! (which ships with rabbitmq-server), with the permissions `raccordo setup --definitions`
//! describes, and deleted when the test ends.

use lapin::{BasicProperties, Connection};
use secrecy::ExposeSecret;
use uuid::Uuid;

use raccordo_core::amqp::{PublishError, Publisher};

/// A publishing system's own broker user.
pub struct BrokerUser {
    /// Its name (also the AMQP `user_id` it sets).
    pub name: String,
    connection: Connection,
    publisher: Publisher,
}

async fn rabbitmqctl(args: &[&str]) {
    let output = tokio::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .await
        .expect(
            "rabbitmqctl runs (it ships with rabbitmq-server; scripts/services.sh installs it)",
        );
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl BrokerUser {
    /// Creates user `{role}-{uuid}` allowed to write `routing_keys` (a regex alternation)
    /// to `inbound` only, and connects as it.
    pub async fn create(
        amqp_url: &secrecy::SecretString,
        inbound: &str,
        role: &str,
        routing_keys: &str,
    ) -> BrokerUser {
        let name = format!("{role}-{}", &Uuid::new_v4().simple().to_string()[..10]);
        let password = Uuid::new_v4().simple().to_string();
        rabbitmqctl(&["add_user", &name, &password]).await;
        let exchange = format!("^{}$", inbound.replace('.', "\\.").replace('-', "\\-"));
        rabbitmqctl(&["set_permissions", "-p", "/", &name, "^$", &exchange, "^$"]).await;
        rabbitmqctl(&[
            "set_topic_permissions",
            "-p",
            "/",
            &name,
            inbound,
            &format!("^({routing_keys})$"),
            "^$",
        ])
        .await;
        let mut url = url::Url::parse(amqp_url.expose_secret()).expect("amqp.url");
        url.set_username(&name).expect("a user name");
        url.set_password(Some(&password)).expect("a password");
        let connection = Connection::connect(url.as_str(), lapin::ConnectionProperties::default())
            .await
            .expect("the new user connects");
        let publisher = Publisher::open(&connection)
            .await
            .expect("a confirm channel");
        BrokerUser {
            name,
            connection,
            publisher,
        }
    }

    /// Publishes `body` to `exchange` with `routing_key`, setting `user_id` to `user_id`.
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        user_id: Option<&str>,
    ) -> Result<(), PublishError> {
        let mut properties =
            BasicProperties::default().with_content_type("application/cloudevents+json".into());
        if let Some(user) = user_id {
            properties = properties.with_user_id(user.into());
        }
        self.publisher
            .publish(exchange, routing_key, body, properties, false)
            .await
    }

    /// Closes the connection and deletes the user.
    pub async fn delete(self) {
        let _ = self.connection.close(200, "test done".into()).await;
        rabbitmqctl(&["delete_user", &self.name]).await;
    }
}

//! The contract as files: every schema accepts its valid examples and rejects its invalid
//! ones, and the broker definitions shipped for Docker agree with the topology in code.

use std::path::PathBuf;

use raccordo_core::amqp::Topology;
use raccordo_core::envelope::{EventType, validate_data, validate_envelope};
use raccordo_core::settings::RetrySettings;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn examples(folder: &str) -> Vec<(String, Value)> {
    let dir = root().join("schemas/examples").join(folder);
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("entry").path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text = std::fs::read_to_string(&path).expect("readable");
            (
                name,
                serde_json::from_str(&text).expect("examples are JSON"),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn every_event_schema_accepts_its_valid_examples_and_rejects_its_invalid_ones() {
    for event_type in EventType::ALL {
        let all = examples(event_type.as_str());
        let valid = all.iter().filter(|(n, _)| n.starts_with("valid-")).count();
        let invalid = all
            .iter()
            .filter(|(n, _)| n.starts_with("invalid-"))
            .count();
        assert!(valid >= 2 && invalid >= 3, "{event_type}: too few examples");
        for (name, data) in &all {
            let result = validate_data(event_type, data);
            if name.starts_with("valid-") {
                assert!(result.is_ok(), "{event_type}/{name}: {result:?}");
            } else {
                assert!(result.is_err(), "{event_type}/{name} should be refused");
            }
        }
    }
}

#[test]
fn the_envelope_schema_accepts_its_valid_examples_and_rejects_its_invalid_ones() {
    for (name, envelope) in examples("cloudevent.v1") {
        let result = validate_envelope(&envelope);
        assert_eq!(
            result.is_ok(),
            name.starts_with("valid-"),
            "{name}: {result:?}"
        );
    }
}

#[test]
fn docker_definitions_declare_the_exchanges_exactly_as_the_hub_does() {
    let text = std::fs::read_to_string(root().join("docker/rabbitmq/definitions.json"))
        .expect("definitions.json");
    let definitions: Value = serde_json::from_str(&text).expect("definitions are JSON");
    let topology = Topology::new(
        "raccordo",
        &RetrySettings {
            max_attempts: 8,
            initial_delay_ms: 1000,
            max_delay_ms: 60_000,
        },
    );
    let declared = definitions["exchanges"].as_array().expect("exchanges");
    assert_eq!(declared.len(), topology.exchanges().len());
    for spec in topology.exchanges() {
        let found = declared
            .iter()
            .find(|e| e["name"] == spec.name.as_str())
            .unwrap_or_else(|| panic!("{} missing from definitions.json", spec.name));
        let kind = match spec.kind {
            lapin::ExchangeKind::Topic => "topic",
            lapin::ExchangeKind::Fanout => "fanout",
            lapin::ExchangeKind::Direct => "direct",
            lapin::ExchangeKind::Headers => "headers",
            lapin::ExchangeKind::Custom(ref c) => c.as_str(),
        };
        assert_eq!(found["type"], Value::from(kind), "{}", spec.name);
        assert_eq!(found["durable"], Value::Bool(true), "{}", spec.name);
        assert_eq!(found["auto_delete"], Value::Bool(false), "{}", spec.name);
        let mut args: Vec<(String, String)> = found["arguments"]
            .as_object()
            .expect("arguments")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect();
        args.sort();
        let mut expected = spec.arguments.clone();
        expected.sort();
        assert_eq!(args, expected, "arguments of {}", spec.name);
    }
}

#[test]
fn every_publishing_system_may_only_publish_its_types_to_the_inbound_exchange() {
    let text = std::fs::read_to_string(root().join("docker/rabbitmq/definitions.json"))
        .expect("definitions.json");
    let definitions: Value = serde_json::from_str(&text).expect("JSON");
    let permissions = definitions["permissions"].as_array().expect("permissions");
    let publishers: Vec<&Value> = permissions
        .iter()
        .filter(|p| p["user"] != "raccordo")
        .collect();
    assert!(publishers.len() >= 3, "one user per publishing system");
    let topics = definitions["topic_permissions"]
        .as_array()
        .expect("topic permissions");
    for p in publishers {
        assert_eq!(p["write"], r"^raccordo\.inbound$");
        assert_eq!(p["read"], "^$");
        assert_eq!(p["configure"], "^$");
        let topic = topics
            .iter()
            .find(|t| t["user"] == p["user"])
            .unwrap_or_else(|| panic!("{} has no topic permissions", p["user"]));
        assert_eq!(topic["exchange"], "raccordo.inbound");
        let write = topic["write"].as_str().expect("a pattern");
        assert!(write.starts_with("^(") && write.ends_with(")$"), "{write}");
        for key in write[2..write.len() - 2].split('|') {
            let event_type = key.replace('\\', "");
            assert!(
                EventType::parse(&event_type).is_some(),
                "{key} is no event type"
            );
        }
    }
}

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
}

#[test]
fn the_asyncapi_document_names_every_event_type_and_notification_kind() {
    let doc = yaml("schemas/asyncapi.yaml");
    assert_eq!(doc["asyncapi"], "3.0.0");
    let text = serde_json::to_string(&doc).expect("json");
    for event_type in EventType::ALL {
        assert!(text.contains(event_type.as_str()), "{event_type} missing");
    }
    for kind in raccordo_core::notification::NotificationKind::ALL {
        assert!(text.contains(kind.as_str()), "{kind} missing");
    }
    for name in [
        "raccordo.inbound",
        "raccordo.events",
        "raccordo.dead",
        "raccordo.parked",
    ] {
        assert!(text.contains(name), "{name} missing");
    }
}

#[test]
fn compose_runs_the_broker_the_database_a_mail_sink_and_every_worker() {
    let compose = yaml("docker/compose.yml");
    let services = compose["services"].as_object().expect("services");
    for name in [
        "rabbitmq", "postgres", "mailpit", "setup", "housing", "quota", "eviction", "mailer",
        "asylum",
    ] {
        assert!(services.contains_key(name), "service {name} missing");
    }
    for worker in ["housing", "quota", "eviction", "mailer", "asylum"] {
        let command = services[worker]["command"].to_string();
        assert!(
            command.contains("serve") && command.contains(worker),
            "{worker}: {command}"
        );
    }
}

#[test]
fn compose_of_three_rabbitmq_nodes_forms_them_by_peer_discovery_and_gives_every_worker_each_node() {
    let compose = yaml("docker/compose.cluster.yml");
    let services = compose["services"].as_object().expect("services");
    // A key of a service, or of what it merges (`<<: *anchor`).
    let field = |service: &str, key: &str| -> Value {
        let own = &services[service];
        match &own[key] {
            Value::Null => own["<<"][key].clone(),
            value => value.clone(),
        }
    };
    let nodes = ["rabbit-1", "rabbit-2", "rabbit-3"];
    for name in nodes.iter().chain(&[
        "postgres", "mailpit", "setup", "housing", "quota", "eviction", "mailer", "asylum",
    ]) {
        assert!(services.contains_key(*name), "service {name} missing");
    }
    // Each node: its hostname (the node name rabbit@rabbit-N that cluster.conf lists), the
    // cluster's configuration, the same definitions and the shared cookie.
    let conf = std::fs::read_to_string(root().join("docker/rabbitmq/cluster.conf"))
        .expect("docker/rabbitmq/cluster.conf");
    assert!(conf.contains("cluster_formation.peer_discovery_backend = classic_config"));
    for (i, node) in nodes.iter().enumerate() {
        assert_eq!(field(node, "hostname"), *node);
        let line = format!(
            "cluster_formation.classic_config.nodes.{} = rabbit@{node}",
            i + 1
        );
        assert!(conf.contains(&line), "cluster.conf lacks {line}");
        let volumes = field(node, "volumes").to_string();
        for mount in [
            "./rabbitmq/cluster.conf:/etc/rabbitmq/rabbitmq.conf",
            "./rabbitmq/definitions.json:/etc/rabbitmq/definitions.json",
        ] {
            assert!(volumes.contains(mount), "{node} lacks {mount}");
        }
        assert!(
            field(node, "secrets").to_string().contains("erlang_cookie"),
            "{node}: cookie"
        );
        let entrypoint = field(node, "entrypoint").to_string();
        assert!(entrypoint.contains(".erlang.cookie"), "{node}: cookie");
    }
    // Every process of the hub gets every node, in one list the settings accept.
    let settings_of = |service: &str| -> raccordo_core::settings::AmqpSettings {
        let urls = field(service, "environment")["RACCORDO__AMQP__URLS"]
            .as_str()
            .unwrap_or_else(|| panic!("{service}: RACCORDO__AMQP__URLS"))
            .to_owned();
        let toml = format!(
            "url = \"amqp://x@unused:5672/%2f\"\nurls = {:?}\nprefix = \"raccordo\"\n\
             prefetch = 1\nconsumers = 1\nmax_message_bytes = 1\nhandler_timeout_ms = 1\n\
             queue_type = \"quorum\"",
            urls.split(',').collect::<Vec<_>>()
        );
        config::Config::builder()
            .add_source(config::File::from_str(&toml, config::FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize())
            .unwrap_or_else(|e| panic!("{service}: {e}"))
    };
    for service in ["setup", "housing", "quota", "eviction", "mailer", "asylum"] {
        let amqp = settings_of(service);
        let hosts: Vec<String> = amqp
            .addresses()
            .iter()
            .map(|u| {
                let uri: lapin::uri::AMQPUri = secrecy::ExposeSecret::expose_secret(*u)
                    .parse()
                    .expect("an AMQP URL");
                uri.authority.host
            })
            .collect();
        assert_eq!(hosts, nodes, "{service} connects to every node");
    }
    for worker in ["housing", "quota", "eviction", "mailer", "asylum"] {
        let command = field(worker, "command").to_string();
        assert!(
            command.contains("serve") && command.contains(worker),
            "{worker}: {command}"
        );
    }
    let setup = services["setup"]["depends_on"]
        .as_object()
        .expect("setup waits");
    for node in nodes {
        assert_eq!(
            setup[node]["condition"], "service_healthy",
            "setup waits for {node}"
        );
    }
}

/// Whether a string schema bounds its length: `maxLength`, an enum or const, or a pattern
/// whose every repetition is bounded (`{6}`, not `+` or `*`).
fn string_is_bounded(schema: &Value) -> bool {
    let bounded_pattern = schema["pattern"]
        .as_str()
        .is_some_and(|p| p.starts_with('^') && p.ends_with('$') && !p.contains(['+', '*']));
    schema.get("maxLength").is_some()
        || schema.get("enum").is_some()
        || schema.get("const").is_some()
        || bounded_pattern
}

fn unbounded_strings(schema: &Value, path: &str, out: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            let is_string = match &map.get("type") {
                Some(Value::String(t)) => t == "string",
                Some(Value::Array(ts)) => ts.iter().any(|t| t == "string"),
                _ => false,
            };
            if is_string && !string_is_bounded(schema) {
                out.push(path.to_owned());
            }
            for (key, value) in map {
                unbounded_strings(value, &format!("{path}/{key}"), out);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                unbounded_strings(item, &format!("{path}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn every_string_of_every_schema_has_a_bounded_length() {
    let mut unbounded = Vec::new();
    let mut schemas = 0;
    for entry in std::fs::read_dir(root().join("schemas")).expect("schemas/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).expect("readable");
            let schema: Value = serde_json::from_str(&text).expect("schemas are JSON");
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            unbounded_strings(&schema, &name.unwrap_or_default(), &mut unbounded);
            schemas += 1;
        }
    }
    assert!(schemas >= 7, "only {schemas} schemas found");
    assert!(
        unbounded.is_empty(),
        "strings without maxLength: {unbounded:?}"
    );
}

fn envelope_with(member: &str, value: String) -> Value {
    let mut envelope = serde_json::json!({
        "specversion": "1.0",
        "id": "c0a8f6e2-4b1d-4e0b-9f3a-2d6f1b7e9a01",
        "source": "/comune-abbiategrasso/patrimonio",
        "type": "housing.unit.v1",
        "data": {},
    });
    envelope[member] = Value::String(value);
    envelope
}

#[test]
fn the_envelope_limits_id_to_256_source_to_512_and_subject_to_256_characters() {
    for (member, limit) in [("id", 256), ("source", 512), ("subject", 256)] {
        let at_limit = envelope_with(member, "x".repeat(limit));
        assert!(
            validate_envelope(&at_limit).is_ok(),
            "{member} of {limit} characters"
        );
        let over = envelope_with(member, "x".repeat(limit + 1));
        let error = validate_envelope(&over).expect_err("one character too many");
        assert!(error.contains(member), "{member}: {error}");
    }
    let long_fraction = format!("2025-03-20T11:02:00.{}+01:00", "1".repeat(60));
    assert!(validate_envelope(&envelope_with("time", long_fraction)).is_err());
}

#[test]
fn notes_are_limited_to_2000_characters_in_every_event_that_has_them() {
    let cases = [
        (
            EventType::HousingUnit,
            "valid-offered-appartamento.json",
            "/notes",
        ),
        (
            EventType::EvictionStep,
            "valid-accesso-with-household.json",
            "/household/notes",
        ),
        (
            EventType::EvictionConsent,
            "valid-granted-with-contact.json",
            "/contact/notes",
        ),
    ];
    for (event_type, example, pointer) in cases {
        let (_, mut data) = examples(event_type.as_str())
            .into_iter()
            .find(|(name, _)| name == example)
            .unwrap_or_else(|| panic!("{example} missing"));
        *data.pointer_mut(pointer).expect("the example has notes") = "n".repeat(2000).into();
        assert!(
            validate_data(event_type, &data).is_ok(),
            "{event_type}: 2000"
        );
        *data.pointer_mut(pointer).expect("the example has notes") = "n".repeat(2001).into();
        assert!(
            validate_data(event_type, &data).is_err(),
            "{event_type}: 2001"
        );
    }
}

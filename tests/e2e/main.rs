//! End-to-end tests: the real hub against the real RabbitMQ and PostgreSQL of this machine
//! and a real SMTP server, each test in its own database and broker prefix.

mod asylum_priorities;
mod asylum_pronta;
mod asylum_rotation;
mod asylum_tavolo;
mod backup;
mod batching;
mod bench;
mod binary_mode;
mod bounces;
mod broker_restart;
mod cluster;
mod console;
mod console_roles;
mod control_characters;
mod eviction;
mod evidence;
mod evidence_ack;
mod failures;
mod hardening;
mod housing;
mod mailer;
mod mailer_latency;
mod operations;
mod partition;
mod pec;
mod pg_failover;
mod quota;
mod registry_pec;
mod registry_scopes;
mod retention;
mod soak;
mod transport_tls;
mod trust;
mod trust_v12;
mod upgrade;

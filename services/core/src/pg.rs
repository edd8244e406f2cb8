//! What the hub knows of PostgreSQL's faults: which pass by themselves, and whether the
//! server answers. A leaf, so the broker's consume loop can ask without depending on the
//! repository functions of `db` (which depend on the broker for the relay).

use std::time::Duration;

use sqlx::PgPool;

/// Whether a database error may pass by itself: connection loss, pool exhaustion,
/// serialization conflicts, a server shutting down.
pub fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| is_transient_code(&code)),
        _ => false,
    }
}

/// Whether a PostgreSQL SQLSTATE names a fault that passes by itself.
fn is_transient_code(code: &str) -> bool {
    matches!(
        code,
        // serialization_failure, deadlock_detected
        "40001" | "40P01"
        // read_only_sql_transaction: a replica promoted or a primary demoted during a failover
        | "25006"
        // query_canceled (statement_timeout, a cancel), lock_not_available (lock_timeout)
        | "57014" | "55P03"
        // idle_in_transaction_session_timeout
        | "25P03"
    ) || code.starts_with("08") // connection exceptions
        || code.starts_with("57P") // admin shutdown, crash shutdown, cannot connect now
        || code.starts_with("53") // insufficient resources: disk full, out of memory, too many connections
        || code.starts_with("58") // system errors: I/O error, undefined file
}

/// Waits until the database answers, up to `timeout`.
pub async fn ping(pool: &PgPool, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, sqlx::query("SELECT 1").execute(pool)).await,
        Ok(Ok(_))
    )
}

#[cfg(test)]
mod tests {
    use super::is_transient_code;

    #[test]
    fn failover_cancel_lock_and_system_faults_are_transient() {
        for code in [
            "40001", "40P01", "25006", "57014", "55P03", "25P03", "08006", "57P01", "53100",
            "58030", "58000",
        ] {
            assert!(is_transient_code(code), "{code}");
        }
    }

    #[test]
    fn faults_of_the_data_are_permanent() {
        for code in ["23505", "23503", "22007", "42P01", "22008"] {
            assert!(!is_transient_code(code), "{code}");
        }
    }
}

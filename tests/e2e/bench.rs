//! `raccordo bench` as a smoke test: the real binary, a small load, its own prefix and
//! database. Only that it finishes, prints its table, and that every expected email came
//! exactly once are asserted — never a figure.

use std::time::Duration;

use raccordo_e2e::raccordo_bin;
use serde_json::Value;

#[tokio::test]
async fn bench_runs_the_housing_scenario_and_every_expected_email_arrives_once() {
    // Arrange: results in a folder of this test's own; classic queues, as the suite uses.
    let out = std::env::temp_dir().join(format!("raccordo-bench-test-{}", uuid::Uuid::new_v4()));
    let mut command = tokio::process::Command::new(raccordo_bin());
    command
        .args(["bench", "--events", "2000", "--scenario", "housing"])
        .args(["--queue-type", "classic", "--rates", "50", "--seconds", "2"])
        .args(["--relay-messages", "2000", "--stall-seconds", "30", "--out"])
        .arg(&out)
        .env_remove("RACCORDO_CONFIG")
        .kill_on_drop(true);

    // Act
    let output = tokio::time::timeout(Duration::from_secs(170), command.output())
        .await
        .expect("raccordo bench finishes within 170 s")
        .expect("raccordo bench runs");

    // Assert
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("| scenario | SMTP ms | run | events | emails |"),
        "{stdout}"
    );
    assert!(
        stdout.contains("| housing | 0 | throughput | 2000 | 4000/4000 |"),
        "{stdout}"
    );
    let json = std::fs::read_dir(&out)
        .expect("the results folder exists")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("a JSON result");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("readable")).expect("JSON");
    let runs = report["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2, "throughput and one latency run");
    for run in runs {
        assert_eq!(run["emails_received"], run["emails_expected"], "{run}");
        assert_eq!(run["missing"], 0, "{run}");
        assert_eq!(run["duplicates"], 0, "{run}");
    }
    let _ = std::fs::remove_dir_all(&out);
}

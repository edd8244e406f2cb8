//! `raccordo soak`, short: the real binary, two hubs, a kill -9 of one of them and a
//! command fault mid-load. Asserted: every expected email came once, the faults ran, and
//! the CSV, SVG and summary were written — never a figure.

use std::time::Duration;

use raccordo_e2e::raccordo_bin;

#[tokio::test]
async fn soak_a_short_run_with_a_hub_killed_mid_load_loses_and_doubles_nothing() {
    // Arrange: results in a folder of this test's own; classic queues, as the suite uses.
    let out = std::env::temp_dir().join(format!("raccordo-soak-test-{}", uuid::Uuid::new_v4()));
    let marker = out.join("fault-ran");
    let mut command = tokio::process::Command::new(raccordo_bin());
    command
        .args(["soak", "--seconds", "24", "--rate", "25", "--hubs", "2"])
        .args(["--sample-seconds", "2", "--queue-type", "classic"])
        .args([
            "--stall-seconds",
            "60",
            "--fault",
            "8 hub-kill 1",
            "--fault",
        ])
        .arg(format!(
            "14 mkdir -p {0} && echo \"$SOAK_PREFIX $SOAK_HUB_PIDS\" > {0}/fault-ran",
            out.display()
        ))
        .arg("--out")
        .arg(&out)
        .env_remove("RACCORDO_CONFIG")
        .kill_on_drop(true);

    // Act
    let output = tokio::time::timeout(Duration::from_secs(240), command.output())
        .await
        .expect("raccordo soak finishes within 240 s")
        .expect("raccordo soak runs");

    // Assert
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("| events published | 600 ("), "{stdout}");
    assert!(stdout.contains("| missing | 0 |"), "{stdout}");
    assert!(
        stdout.contains("| doubled (another Message-ID) | 0 |"),
        "{stdout}"
    );
    assert!(
        stdout.contains("| `hub-kill 1` | ok: hub 1 ready again"),
        "{stdout}"
    );
    assert!(stdout.contains("Every expected email arrived, none doubled."));
    let ran = std::fs::read_to_string(&marker).expect("the command fault ran");
    assert!(ran.starts_with("raccordo-soak-"), "{ran}");
    assert_eq!(
        ran.split_whitespace().count(),
        3,
        "the prefix and two pids: {ran}"
    );
    let files: Vec<_> = std::fs::read_dir(&out)
        .expect("the results folder exists")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    for extension in ["csv", "svg", "md"] {
        let file = files
            .iter()
            .find(|p| p.extension().is_some_and(|e| e == extension))
            .unwrap_or_else(|| panic!("a .{extension} result in {files:?}"));
        let text = std::fs::read_to_string(file).expect("readable");
        assert!(!text.is_empty(), "{}", file.display());
    }
    let csv = files
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "csv"))
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    assert!(csv.lines().count() >= 12, "a sample every 2 s: {csv}");
    assert_eq!(csv.matches("# fault at").count(), 2, "{csv}");
    let _ = std::fs::remove_dir_all(&out);
}

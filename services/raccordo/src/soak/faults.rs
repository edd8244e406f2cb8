//! The soak's fault schedule: at given seconds into the run, a command of the operator's
//! (stop a RabbitMQ node, promote a standby, cut a proxy) or one of the soak's own
//! (`hub-kill N`: kill -9 one `serve all`, started again at once).

use std::path::Path;
use std::str::FromStr;

use anyhow::Context;

/// One scheduled fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// Seconds after the paced load started.
    pub at_seconds: u64,
    pub action: Action,
}

/// What a fault does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// kill -9 the hub with this number (1-based), then start it again.
    HubKill(usize),
    /// A command line run by `bash -c`, with `SOAK_PREFIX`, `SOAK_DATABASE` and
    /// `SOAK_HUB_PIDS` in its environment.
    Command(String),
}

impl Action {
    /// Short text for the table, the CSV and the plot.
    pub fn label(&self) -> String {
        match self {
            Action::HubKill(n) => format!("hub-kill {n}"),
            Action::Command(command) => command.clone(),
        }
    }
}

impl FromStr for Fault {
    type Err = String;

    /// `SECONDS COMMAND…`, e.g. `600 scripts/rabbit-cluster.sh kill 2` or `900 hub-kill 1`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let (at, rest) = text
            .split_once(char::is_whitespace)
            .ok_or_else(|| format!("`{text}`: expected `SECONDS COMMAND`"))?;
        let at_seconds = at
            .parse::<u64>()
            .map_err(|_| format!("`{at}`: the seconds must be a whole number"))?;
        let rest = rest.trim();
        if rest.is_empty() {
            return Err(format!("`{text}`: the command is missing"));
        }
        let action = match rest.strip_prefix("hub-kill") {
            Some(n) if n.is_empty() || n.starts_with(char::is_whitespace) => {
                let n = n.trim();
                let number = if n.is_empty() {
                    1
                } else {
                    n.parse::<usize>()
                        .ok()
                        .filter(|&n| n >= 1)
                        .ok_or_else(|| format!("`hub-kill {n}`: a hub number from 1"))?
                };
                Action::HubKill(number)
            }
            _ => Action::Command(rest.to_owned()),
        };
        Ok(Fault { at_seconds, action })
    }
}

/// The faults of a file: one per line, blank lines and `#` comments skipped; every bad
/// line named with its number.
pub fn read_file(path: &Path) -> anyhow::Result<Vec<Fault>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("Failed to read the faults file {}", path.display()))?;
    parse_lines(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn parse_lines(text: &str) -> Result<Vec<Fault>, String> {
    let mut faults = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line
            .split_once('#')
            .map_or(line, |(before, _)| before)
            .trim();
        if line.is_empty() {
            continue;
        }
        faults.push(
            line.parse::<Fault>()
                .map_err(|e| format!("line {}: {e}", number + 1))?,
        );
    }
    Ok(faults)
}

/// What happened when a fault ran.
#[derive(Debug, Clone)]
pub struct Ran {
    pub at_seconds: f64,
    pub label: String,
    /// Whether it succeeded (exit status 0; for `hub-kill`, the hub was ready again).
    pub ok: bool,
    /// Its output's last line, or why it failed.
    pub detail: String,
}

/// Runs a command fault; its output goes to the soak's log, its last line to the report.
pub async fn run_command(command: &str, env: &[(String, String)]) -> (bool, String) {
    let output = tokio::process::Command::new("bash")
        .args(["-c", command])
        .envs(env.iter().cloned())
        .stdin(std::process::Stdio::null())
        .output()
        .await;
    match output {
        Ok(output) => {
            let text = String::from_utf8_lossy(&output.stdout).to_string()
                + &String::from_utf8_lossy(&output.stderr);
            let last = text.lines().last().unwrap_or_default().to_owned();
            (output.status.success(), last)
        }
        Err(error) => (false, format!("could not run bash: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_is_seconds_then_a_command_or_a_hub_kill() {
        assert_eq!(
            "600 scripts/rabbit-cluster.sh kill 2".parse::<Fault>(),
            Ok(Fault {
                at_seconds: 600,
                action: Action::Command("scripts/rabbit-cluster.sh kill 2".into())
            })
        );
        assert_eq!(
            "90 hub-kill 2".parse::<Fault>().map(|f| f.action),
            Ok(Action::HubKill(2))
        );
        assert_eq!(
            "90 hub-kill".parse::<Fault>().map(|f| f.action),
            Ok(Action::HubKill(1))
        );
        assert_eq!(
            "90 hub-killer".parse::<Fault>().map(|f| f.action),
            Ok(Action::Command("hub-killer".into()))
        );
    }

    #[test]
    fn a_bad_fault_says_what_is_wrong() {
        assert!(
            "soon kill"
                .parse::<Fault>()
                .expect_err("refused")
                .contains("whole number")
        );
        assert!(
            "600"
                .parse::<Fault>()
                .expect_err("refused")
                .contains("SECONDS COMMAND")
        );
        assert!(
            "60 hub-kill 0"
                .parse::<Fault>()
                .expect_err("refused")
                .contains("from 1")
        );
        let error = parse_lines("# faults\n10 hub-kill 1\n\nlater x\n").expect_err("refused");
        assert!(error.starts_with("line 4:"), "{error}");
        assert_eq!(
            parse_lines("10 hub-kill 1 # the first\n").map(|f| f.len()),
            Ok(1)
        );
    }
}

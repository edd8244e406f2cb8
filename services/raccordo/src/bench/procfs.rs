//! What the benchmark reads from `/proc` (proc(5)): the CPU time of a process or of every
//! process of a program (RabbitMQ's `beam.smp`, PostgreSQL's `postgres`), the peak resident
//! memory of the hub, and the machine's details. Only Linux is supported; elsewhere the
//! figures are reported as unknown.

use std::path::Path;

/// The fields of `/proc/<pid>/stat` the benchmark uses (proc(5), fields 2, 4, 14–17).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stat {
    pub comm: String,
    pub ppid: u32,
    /// User and system time of the process (all its threads), in clock ticks.
    pub own_ticks: u64,
    /// User and system time of its waited-for children that have exited, in clock ticks.
    pub children_ticks: u64,
}

/// Parses one `/proc/<pid>/stat` line. The command name is in parentheses and may itself
/// contain spaces and parentheses, so the fields are counted from the last `)`.
pub(crate) fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    // After ")": state (field 3), ppid (4), … utime (14), stime (15), cutime (16), cstime (17).
    let fields: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    Some(Stat {
        comm,
        ppid: u32::try_from(field(4)?).ok()?,
        own_ticks: field(14)? + field(15)?,
        children_ticks: field(16)? + field(17)?,
    })
}

/// `VmHWM` (peak resident set size) of a `/proc/<pid>/status` text, in bytes.
pub(crate) fn parse_peak_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(parse_kib)
}

/// A `  123456 kB` value of `/proc/meminfo` or `/proc/<pid>/status`, in bytes.
fn parse_kib(value: &str) -> Option<u64> {
    let number = value.trim().strip_suffix("kB")?.trim();
    number.parse::<u64>().ok().map(|kib| kib * 1024)
}

/// The stat of one process, if it exists and is readable.
pub(crate) fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// The peak resident set size of one process, in bytes.
pub(crate) fn peak_rss(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_peak_rss(&text)
}

/// The resident set size of one process now (`VmRSS`), in bytes.
pub(crate) fn rss(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(parse_kib)
}

/// Every process whose command name (`comm`, at most 15 bytes) is `comm`.
pub(crate) fn processes_named(comm: &str) -> Vec<(u32, Stat)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, stat(pid)?)))
        .filter(|(_, s)| s.comm == comm)
        .collect()
}

fn find(set: &[(u32, Stat)], pid: u32) -> Option<&Stat> {
    set.iter().find(|(p, _)| *p == pid).map(|(_, s)| s)
}

/// The ticks one process counts for its program: its own, plus — for a root (a process
/// whose parent is not of the program) — those of its children that exited and were reaped:
/// PostgreSQL backends come and go, and their time moves to the postmaster.
fn contribution(processes: &[(u32, Stat)], stat: &Stat) -> i64 {
    let is_root = !processes.iter().any(|(pid, _)| *pid == stat.ppid);
    let ticks = stat.own_ticks + if is_root { stat.children_ticks } else { 0 };
    i64::try_from(ticks).unwrap_or(i64::MAX)
}

/// CPU ticks a program used between two snapshots of its processes:
/// - a process in both counts its growth;
/// - a new process counts whole if its parent is of the program (a backend forked during
///   the run); otherwise it is not the program's work (a `rabbitmqctl` runs its own
///   `beam.smp`, which must not count as the broker's);
/// - a child that exited is counted by its parent's reaped time, which holds its whole
///   life: what it had used before the first snapshot is taken off again.
pub(crate) fn program_delta(before: &[(u32, Stat)], after: &[(u32, Stat)]) -> u64 {
    let member = |pid: u32| find(before, pid).is_some() || find(after, pid).is_some();
    let mut delta: i64 = 0;
    for (pid, now) in after {
        match find(before, *pid) {
            Some(then) => delta += contribution(after, now) - contribution(before, then),
            None if member(now.ppid) => delta += contribution(after, now),
            None => {}
        }
    }
    for (pid, then) in before {
        if find(after, *pid).is_none() && find(before, then.ppid).is_some() {
            delta -= i64::try_from(then.own_ticks).unwrap_or(0);
        }
    }
    u64::try_from(delta).unwrap_or(0)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on every usual Linux).
pub(crate) fn ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// The first `model name` of a `/proc/cpuinfo` text.
pub(crate) fn parse_cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
}

/// `MemTotal` of a `/proc/meminfo` text, in bytes.
pub(crate) fn parse_mem_total(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(parse_kib)
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(Path::new(path)).ok()
}

/// The CPU model, total memory and kernel release of this machine.
pub(crate) fn machine() -> (Option<String>, Option<u64>, Option<String>) {
    (
        read("/proc/cpuinfo").as_deref().and_then(parse_cpu_model),
        read("/proc/meminfo").as_deref().and_then(parse_mem_total),
        read("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_is_read_from_the_last_parenthesis() {
        // Arrange: a command name with a space and a parenthesis, as a thread may have.
        let line = "4242 (tokio (rt) w) S 17 4242 4242 0 -1 4194560 1500 0 0 0 \
                    250 75 12 3 20 0 9 0 12345 123456789 5000 18446744073709551615";

        // Act
        let stat = parse_stat(line).expect("parses");

        // Assert
        assert_eq!(stat.comm, "tokio (rt) w");
        assert_eq!(stat.ppid, 17);
        assert_eq!(stat.own_ticks, 325);
        assert_eq!(stat.children_ticks, 15);
    }

    #[test]
    fn a_truncated_stat_line_is_refused() {
        assert_eq!(parse_stat("12 (postgres) S 1 12"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn peak_rss_comes_from_vmhwm_in_kib() {
        let status =
            "Name:\traccordo\nVmPeak:\t  900000 kB\nVmHWM:\t   129024 kB\nVmRSS:\t 100 kB\n";
        assert_eq!(parse_peak_rss(status), Some(129_024 * 1024));
        assert_eq!(parse_peak_rss("Name:\tx\n"), None);
    }

    fn proc(ppid: u32, own: u64, children: u64) -> Stat {
        Stat {
            comm: "postgres".into(),
            ppid,
            own_ticks: own,
            children_ticks: children,
        }
    }

    #[test]
    fn a_backend_that_exits_counts_only_what_it_used_during_the_run() {
        // Arrange: a postmaster (parent 1) and a backend that used 20 ticks before the run
        // and 30 during it, then exited and was reaped (its 50 move to the postmaster).
        let before = vec![(100, proc(1, 10, 500)), (101, proc(100, 20, 0))];
        let after = vec![(100, proc(1, 12, 550))];

        // Act
        let delta = program_delta(&before, &after);

        // Assert: 2 of the postmaster, 30 of the backend.
        assert_eq!(delta, 32);
    }

    #[test]
    fn a_new_child_counts_whole_and_a_stranger_of_the_same_name_not_at_all() {
        // Arrange: the broker (pid 200), then a backend-like child of it and a rabbitmqctl
        // VM (parent: a shell) appear.
        let before = vec![(200, proc(1, 1000, 0))];
        let after = vec![
            (200, proc(1, 1100, 0)),
            (201, proc(200, 40, 0)),
            (300, proc(299, 900, 0)),
        ];

        // Act / Assert
        assert_eq!(program_delta(&before, &after), 100 + 40);
    }

    #[test]
    fn cpu_model_and_memory_are_read_from_their_files() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n";
        assert_eq!(
            parse_cpu_model(cpuinfo).as_deref(),
            Some("Intel(R) Xeon(R) CPU @ 2.20GHz")
        );
        assert_eq!(
            parse_mem_total("MemTotal:        8141812 kB\nMemFree: 1 kB\n"),
            Some(8_141_812 * 1024)
        );
    }
}

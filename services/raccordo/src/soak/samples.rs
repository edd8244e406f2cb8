//! What the soak samples every few seconds, written as CSV and drawn as one SVG: the hubs'
//! resident memory, the window's p99 latency, the database's size, and the faults.

use std::fmt::Write as _;
use std::time::Duration;

use super::faults::Ran;

/// One sample.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Seconds since the paced load started.
    pub t: f64,
    /// Events confirmed by the broker so far.
    pub published: u64,
    /// Expected emails arrived so far, of those expected so far.
    pub arrived: u64,
    pub expected: u64,
    /// p99 of publish → SMTP of the emails that first arrived in this window, in ms.
    pub p99_ms: Option<f64>,
    /// Of the same emails.
    pub window_emails: usize,
    /// Resident memory of all hubs together, in MiB.
    pub rss_mib: Option<f64>,
    /// Every table of the hub's database with its indexes and TOAST, in MiB; `None` while
    /// the database did not answer.
    pub tables_mib: Option<f64>,
    /// Hubs whose `/readyz` said 200, of all.
    pub ready: usize,
    pub hubs: usize,
}

/// p99 (nearest rank) of a window's latencies, in ms.
pub fn p99_ms(latencies: Vec<Duration>) -> Option<f64> {
    crate::bench::stats::summarize(latencies).map(|l| l.p99_ms)
}

/// The CSV of the run: one line per sample, then the faults as comment lines.
pub fn csv(samples: &[Sample], faults: &[Ran]) -> String {
    let mut out = String::from(
        "t_s,published,emails_arrived,emails_expected,window_emails,p99_ms,rss_mib,tables_mib,hubs_ready,hubs\n",
    );
    let opt = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_default();
    for s in samples {
        let _ = writeln!(
            out,
            "{:.1},{},{},{},{},{},{},{},{},{}",
            s.t,
            s.published,
            s.arrived,
            s.expected,
            s.window_emails,
            opt(s.p99_ms),
            opt(s.rss_mib),
            opt(s.tables_mib),
            s.ready,
            s.hubs
        );
    }
    for fault in faults {
        let _ = writeln!(
            out,
            "# fault at {:.1} s: {} ({}){}",
            fault.at_seconds,
            fault.label.replace(['\n', '\r'], " "),
            if fault.ok { "ok" } else { "FAILED" },
            if fault.detail.is_empty() {
                String::new()
            } else {
                format!(": {}", fault.detail.replace(['\n', '\r'], " "))
            }
        );
    }
    out
}

/// One value of a sample, when it was measured.
type Measure = fn(&Sample) -> Option<f64>;

const WIDTH: f64 = 900.0;
const PANEL: f64 = 150.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 30.0;
const GAP: f64 = 40.0;

/// Three panels over time (RSS, p99, database size), faults as dashed lines.
pub fn svg(samples: &[Sample], faults: &[Ran], title: &str) -> String {
    let panels: [(&str, Measure); 3] = [
        ("RSS of the hubs (MiB)", |s| s.rss_mib),
        ("p99 publish → SMTP (ms)", |s| s.p99_ms),
        ("Database size (MiB)", |s| s.tables_mib),
    ];
    let height = TOP + 3.0 * (PANEL + GAP) + 10.0 + 14.0 * faults.len() as f64;
    let t_max = samples.iter().map(|s| s.t).fold(1.0_f64, f64::max);
    let x = |t: f64| LEFT + (t / t_max) * (WIDTH - LEFT - RIGHT);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         viewBox=\"0 0 {WIDTH} {height}\" font-family=\"sans-serif\" font-size=\"11\">\n\
         <title>{}</title>\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{LEFT}\" y=\"18\" font-size=\"13\">{}</text>\n",
        escape(title),
        escape(title)
    );
    for (i, (name, value)) in panels.iter().enumerate() {
        let top = TOP + i as f64 * (PANEL + GAP) + 15.0;
        let bottom = top + PANEL;
        let max = samples
            .iter()
            .filter_map(value)
            .fold(0.0_f64, f64::max)
            .max(1.0)
            * 1.1;
        let y = |v: f64| bottom - (v / max) * PANEL;
        let _ = writeln!(
            out,
            "<text x=\"{LEFT}\" y=\"{:.1}\">{}</text>\n\
             <line x1=\"{LEFT}\" y1=\"{bottom:.1}\" x2=\"{:.1}\" y2=\"{bottom:.1}\" stroke=\"#888\"/>\n\
             <line x1=\"{LEFT}\" y1=\"{top:.1}\" x2=\"{LEFT}\" y2=\"{bottom:.1}\" stroke=\"#888\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{:.0}</text>\n\
             <text x=\"{:.1}\" y=\"{bottom:.1}\" text-anchor=\"end\">0</text>",
            top - 4.0,
            escape(name),
            WIDTH - RIGHT,
            LEFT - 4.0,
            top + 4.0,
            max,
            LEFT - 4.0,
        );
        for (number, fault) in faults.iter().enumerate() {
            let fx = x(fault.at_seconds);
            let _ = writeln!(
                out,
                "<line x1=\"{fx:.1}\" y1=\"{top:.1}\" x2=\"{fx:.1}\" y2=\"{bottom:.1}\" \
                 stroke=\"#c00\" stroke-dasharray=\"4 3\"><title>{}</title></line>",
                escape(&fault.label)
            );
            if i == 0 {
                let _ = writeln!(
                    out,
                    "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#c00\" font-size=\"9\">{}</text>",
                    fx + 2.0,
                    top + 10.0 + 10.0 * (number % 3) as f64,
                    number + 1
                );
            }
        }
        out.push_str(&line(samples, *value, x, y));
    }
    let axis_y = TOP + 3.0 * (PANEL + GAP) - 2.0;
    let _ = writeln!(
        out,
        "<text x=\"{LEFT}\" y=\"{axis_y}\">0 min</text>\
         <text x=\"{:.1}\" y=\"{axis_y}\" text-anchor=\"end\">{:.0} min</text>",
        WIDTH - RIGHT,
        t_max / 60.0
    );
    out.push_str(&legend(faults, axis_y));
    out.push_str("</svg>\n");
    out
}

/// A panel's line; it breaks where nothing was measured (the database away).
fn line(
    samples: &[Sample],
    value: Measure,
    x: impl Fn(f64) -> f64,
    y: impl Fn(f64) -> f64,
) -> String {
    let mut path = String::new();
    for s in samples {
        match value(s) {
            Some(v) => {
                let verb = if path.is_empty() || path.ends_with(' ') {
                    'M'
                } else {
                    'L'
                };
                let _ = write!(path, "{verb}{:.1},{:.1}", x(s.t), y(v));
            }
            None => path.push(' '),
        }
    }
    format!(
        "<path d=\"{}\" fill=\"none\" stroke=\"#1f5fa8\" stroke-width=\"1.5\"/>\n",
        path.trim()
    )
}

/// The faults' numbers, times and commands under the panels.
fn legend(faults: &[Ran], axis_y: f64) -> String {
    let mut out = String::new();
    for (number, fault) in faults.iter().enumerate() {
        let _ = writeln!(
            out,
            "<text x=\"{LEFT}\" y=\"{:.1}\" fill=\"#c00\">{} at {:.0} s: {}{}</text>",
            axis_y + 14.0 * (number + 1) as f64,
            number + 1,
            fault.at_seconds,
            escape(&fault.label),
            if fault.ok { "" } else { " (FAILED)" }
        );
    }
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Mean of a value over the samples in `[from, to)` seconds.
pub fn mean_between(samples: &[Sample], value: Measure, from: f64, to: f64) -> Option<f64> {
    let values: Vec<f64> = samples
        .iter()
        .filter(|s| s.t >= from && s.t < to)
        .filter_map(value)
        .collect();
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: f64, rss: Option<f64>) -> Sample {
        Sample {
            t,
            rss_mib: rss,
            hubs: 2,
            ..Sample::default()
        }
    }

    #[test]
    fn the_plot_breaks_its_line_where_nothing_was_measured() {
        let samples = [
            sample(0.0, Some(10.0)),
            sample(10.0, None),
            sample(20.0, Some(12.0)),
        ];
        let svg = svg(&samples, &[], "soak <test>");
        assert!(svg.contains("soak &lt;test&gt;"));
        let rss_path = svg
            .lines()
            .find(|l| l.starts_with("<path"))
            .expect("a path per panel");
        assert_eq!(rss_path.matches('M').count(), 2, "{rss_path}");
        assert!(!rss_path.contains('L'), "{rss_path}");
    }

    #[test]
    fn the_csv_has_a_line_per_sample_and_a_comment_per_fault() {
        let faults = [Ran {
            at_seconds: 5.0,
            label: "hub-kill 1".into(),
            ok: true,
            detail: String::new(),
        }];
        let text = csv(&[sample(0.0, Some(10.0)), sample(10.0, None)], &faults);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[1], "0.0,0,0,0,0,,10.0,,0,2");
        assert_eq!(lines[3], "# fault at 5.0 s: hub-kill 1 (ok)");
        assert_eq!(
            mean_between(
                &[sample(0.0, Some(10.0)), sample(5.0, Some(20.0))],
                |s| s.rss_mib,
                0.0,
                10.0
            ),
            Some(15.0)
        );
    }
}

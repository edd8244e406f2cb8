//! Charts as inline SVG drawn on the server: no JS library, nothing fetched. Each chart has
//! a `<title>` and a `<desc>` for screen readers; labels are escaped here.

use std::fmt::Write;

use crate::render::italian_number;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Bars of per-minute counts (oldest first), labelled as a rate per second.
pub(crate) fn rate_bars(id: &str, title: &str, counts: &[i64]) -> String {
    let (w, h, pad) = (600.0_f64, 120.0_f64, 28.0_f64);
    let max = counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let total: i64 = counts.iter().sum();
    let n = counts.len().max(1) as f64;
    let bar = (w - pad) / n;
    let mut svg = format!(
        r#"<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-labelledby="t-{id} d-{id}"><title id="t-{id}">{t}</title><desc id="d-{id}">{total} in {mins} minuti, al massimo {maxps} al secondo in un minuto</desc>"#,
        id = escape(id),
        t = escape(title),
        mins = counts.len(),
        maxps = italian_number(max / 60.0, 2),
    );
    let _ = write!(
        svg,
        r#"<line class="axis" x1="{pad}" y1="{y}" x2="{w}" y2="{y}"/><text class="label" x="0" y="12">{top}/s</text><text class="label" x="0" y="{y}">0</text>"#,
        y = h - 14.0,
        top = italian_number(max / 60.0, 2),
    );
    for (i, c) in counts.iter().enumerate() {
        let bh = (*c as f64 / max) * (h - 30.0);
        let _ = write!(
            svg,
            r#"<rect class="bar" x="{x:.1}" y="{y:.1}" width="{bw:.1}" height="{bh:.1}"><title>{c} nel minuto</title></rect>"#,
            x = pad + i as f64 * bar,
            y = h - 14.0 - bh,
            bw = (bar - 1.0).max(1.0),
        );
    }
    let _ = write!(
        svg,
        r#"<text class="label" x="{pad}" y="{yb}">-{mins} min</text><text class="label end" x="{w}" y="{yb}">ora</text></svg>"#,
        mins = counts.len(),
        yb = h - 3.0
    );
    svg
}

/// A horizontal gauge of `percentage` of a quota with the 50% and 100% lines.
pub(crate) fn gauge(percentage: f64, excluded: bool) -> String {
    let (w, h) = (200.0_f64, 16.0_f64);
    // The scale runs to 150% so that the 100% line and an overflow both show.
    let scale = |p: f64| (p.clamp(0.0, 150.0) / 150.0) * w;
    format!(
        r#"<svg class="gauge" viewBox="0 0 {w} {h}" role="img" aria-label="{p}% della quota"><rect class="track" x="0" y="2" width="{w}" height="12"/><rect class="{cls}" x="0" y="2" width="{fill:.1}" height="12"/><line class="mark" x1="{m50:.1}" y1="0" x2="{m50:.1}" y2="{h}"/><line class="mark strong" x1="{m100:.1}" y1="0" x2="{m100:.1}" y2="{h}"/></svg>"#,
        p = italian_number(percentage, 1),
        cls = if excluded { "fill excluded" } else { "fill" },
        fill = scale(percentage),
        m50 = scale(50.0),
        m100 = scale(100.0),
    )
}

/// Coverage as a share of quota over time: `(label, percentage)` points, oldest first,
/// drawn as steps, with the 50% and 100% lines.
pub(crate) fn history(points: &[(String, f64)]) -> String {
    let (w, h, left, bottom) = (600.0_f64, 180.0_f64, 40.0_f64, 24.0_f64);
    let top = points
        .iter()
        .map(|p| p.1)
        .fold(120.0_f64, f64::max)
        .min(400.0);
    let y = |p: f64| (h - bottom) - (p.clamp(0.0, top) / top) * (h - bottom - 8.0);
    let n = points.len().max(2) as f64 - 1.0;
    let x = |i: usize| left + (i as f64 / n) * (w - left - 10.0);
    let mut svg = format!(
        r#"<svg class="chart history" viewBox="0 0 {w} {h}" role="img" aria-labelledby="th dh"><title id="th">Copertura in percentuale della quota nel tempo</title><desc id="dh">{n}; linee al 50% (esclusione del comune) e al 100%</desc>"#,
        n = if points.len() == 1 {
            "1 punto".to_owned()
        } else {
            format!("{} punti", points.len())
        }
    );
    for (mark, cls) in [(50.0, "mark"), (100.0, "mark strong")] {
        let _ = write!(
            svg,
            r#"<line class="{cls}" x1="{left}" y1="{yy:.1}" x2="{w}" y2="{yy:.1}"/><text class="label" x="0" y="{ty:.1}">{mark:.0}%</text>"#,
            yy = y(mark),
            ty = y(mark) + 4.0,
        );
    }
    let mut path = String::new();
    for (i, (_, p)) in points.iter().enumerate() {
        let cmd = if i == 0 { 'M' } else { 'H' };
        let _ = write!(path, "{cmd}{:.1} ", x(i));
        if i == 0 {
            let _ = write!(path, "{:.1} ", y(*p));
        } else {
            let _ = write!(path, "V{:.1} ", y(*p));
        }
    }
    let _ = write!(svg, r#"<path class="line" d="{path}"/>"#);
    for (i, (label, p)) in points.iter().enumerate() {
        let _ = write!(
            svg,
            r#"<circle class="dot" cx="{cx:.1}" cy="{cy:.1}" r="4"><title>{l}: {pc}%</title></circle>"#,
            cx = x(i),
            cy = y(*p),
            l = escape(label),
            pc = italian_number(*p, 1),
        );
    }
    if let (Some(first), Some(last)) = (points.first(), points.last()) {
        let _ = write!(
            svg,
            r#"<text class="label" x="{left}" y="{yb}">{a}</text><text class="label end" x="{w}" y="{yb}">{b}</text>"#,
            yb = h - 6.0,
            a = escape(&first.0),
            b = escape(&last.0),
        );
    }
    svg.push_str("</svg>");
    svg
}

/// One value per step of one comune; `None` is a masked count (`<3`), drawn as a hatched
/// stub so it reads as "a few", never as a number.
pub(crate) fn step_bars(title: &str, steps: &[(&str, Option<i64>, bool)]) -> String {
    let (w, h, bottom) = (360.0_f64, 120.0_f64, 30.0_f64);
    let max = steps.iter().filter_map(|s| s.1).max().unwrap_or(3).max(3) as f64;
    let bar = w / steps.len().max(1) as f64;
    let mut svg = format!(
        r#"<svg class="chart small" viewBox="0 0 {w} {h}" role="img" aria-label="{t}">"#,
        t = escape(title)
    );
    for (i, (label, value, few)) in steps.iter().enumerate() {
        let x = i as f64 * bar;
        let (bh, cls, text) = match (value, few) {
            (_, true) => (
                ((2.0 / max) * (h - bottom - 14.0)).max(6.0),
                "bar few",
                "<3".to_owned(),
            ),
            (Some(v), false) => (
                (*v as f64 / max) * (h - bottom - 14.0),
                "bar",
                v.to_string(),
            ),
            (None, false) => (0.0, "bar", "0".to_owned()),
        };
        let _ = write!(
            svg,
            r#"<rect class="{cls}" x="{x:.1}" y="{y:.1}" width="{bw:.1}" height="{bh:.1}"/><text class="label mid" x="{tx:.1}" y="{ty:.1}">{t}</text><text class="label mid" x="{tx:.1}" y="{ly:.1}">{l}</text>"#,
            y = h - bottom - bh,
            bw = bar - 6.0,
            tx = x + (bar - 6.0) / 2.0,
            ty = h - bottom - bh - 3.0,
            t = escape(&text),
            ly = h - 12.0,
            l = escape(label),
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A duration in seconds as a person reads it: `< 1 s`, `45 s`, `12 min`, `3,5 h`, `2 g`.
pub(crate) fn duration_it(seconds: f64) -> String {
    let s = seconds.max(0.0);
    if s < 1.0 {
        "< 1 s".to_owned()
    } else if s < 90.0 {
        format!("{s:.0} s")
    } else if s < 90.0 * 60.0 {
        format!("{:.0} min", s / 60.0)
    } else if s < 48.0 * 3600.0 {
        format!("{} h", italian_number(s / 3600.0, 1))
    } else {
        format!("{:.0} g", s / 86_400.0)
    }
}

/// One row per kind: the median as a bar and the 90th percentile as a tick on the same
/// scale (a square root, so seconds and days both show), with both in words.
pub(crate) fn latency_bars(id: &str, title: &str, rows: &[(String, f64, f64)]) -> String {
    let (w, row_h, label_w) = (600.0_f64, 22.0_f64, 190.0_f64);
    let h = row_h * rows.len().max(1) as f64 + 8.0;
    let max = rows
        .iter()
        .map(|r| r.2.max(r.1))
        .fold(1.0_f64, f64::max)
        .sqrt();
    let scale = |v: f64| (v.max(0.0).sqrt() / max) * (w - label_w - 120.0);
    let mut svg = format!(
        r#"<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-labelledby="t-{id} d-{id}"><title id="t-{id}">{t}</title><desc id="d-{id}">{d}</desc>"#,
        id = escape(id),
        t = escape(title),
        d = escape(
            &rows
                .iter()
                .map(|(k, p50, p90)| format!(
                    "{k}: mediana {}, 90% entro {}",
                    duration_it(*p50),
                    duration_it(*p90)
                ))
                .collect::<Vec<_>>()
                .join("; ")
        ),
    );
    for (i, (kind, p50, p90)) in rows.iter().enumerate() {
        let y = 4.0 + i as f64 * row_h;
        let _ = write!(
            svg,
            r#"<text class="label" x="0" y="{ty:.1}" translate="no">{k}</text><rect class="bar" x="{label_w}" y="{y:.1}" width="{bw:.1}" height="{bh:.1}"/><line class="mark" x1="{mx:.1}" y1="{y:.1}" x2="{mx:.1}" y2="{y2:.1}"/><text class="label" x="{tx:.1}" y="{ty:.1}">{a} · 90% {b}</text>"#,
            ty = y + 13.0,
            k = escape(kind),
            bw = scale(*p50).max(1.0),
            bh = row_h - 8.0,
            mx = label_w + scale(*p90),
            y2 = y + row_h - 8.0,
            tx = label_w + scale(p50.max(*p90)) + 6.0,
            a = duration_it(*p50),
            b = duration_it(*p90),
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_in_every_chart() {
        let svg = history(&[("<b>".into(), 10.0), ("oggi".into(), 60.0)]);
        assert!(!svg.contains("<b>") && svg.contains("&lt;b&gt;"));
        let svg = step_bars("a<b", &[("x<y", Some(3), false), ("z", None, true)]);
        assert!(!svg.contains("x<y") && svg.contains("&lt;3"));
    }

    #[test]
    fn latency_bars_draw_a_bar_and_a_tick_per_kind_with_escaped_labels() {
        let svg = latency_bars(
            "lat",
            "tempi",
            &[
                ("a<b".into(), 30.0, 120.0),
                ("housing.offered".into(), 7200.0, 90_000.0),
            ],
        );
        assert_eq!(svg.matches("class=\"bar\"").count(), 2);
        assert_eq!(svg.matches("class=\"mark\"").count(), 2);
        assert!(!svg.contains("a<b") && svg.contains("a&lt;b"));
        assert!(svg.contains("30 s") && svg.contains("2 min") && svg.contains("2,0 h"));
        assert!(svg.contains("25,0 h"));
    }

    #[test]
    fn rate_bars_draw_one_bar_per_minute() {
        let svg = rate_bars("ev", "eventi", &[0, 60, 120]);
        assert_eq!(svg.matches("<rect").count(), 3);
        assert!(svg.contains("2,00/s"));
    }

    #[test]
    fn the_gauge_marks_half_and_the_whole_quota() {
        let svg = gauge(75.0, true);
        assert_eq!(svg.matches("class=\"mark").count(), 2);
        assert!(svg.contains("fill excluded"));
    }
}

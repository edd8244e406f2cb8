//! The report's charts as inline SVG drawn on the server (as the console's): no script,
//! nothing fetched, printable. A `<3` cell is drawn as a hatched stub, never as a number;
//! every chart has a title and a description for screen readers. Labels are escaped here.

use std::fmt::Write;

use super::indicator::{Cell, Unit, Verdict};
use super::report::{DomicileRow, IndicatorRow};

/// Escapes text for HTML and SVG.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Vertical bars of counts of people, one per label (`<3` as a stub).
pub fn count_bars(id: &str, title: &str, bars: &[(String, Cell)]) -> String {
    let (w, h, bottom, top) = (640.0_f64, 180.0_f64, 34.0_f64, 16.0_f64);
    let max = bars
        .iter()
        .filter_map(|b| b.1.value())
        .fold(3.0_f64, f64::max);
    let slot = w / bars.len().max(1) as f64;
    let plot = h - bottom - top;
    let mut svg = format!(
        r#"<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-labelledby="t-{id} d-{id}"><title id="t-{id}">{t}</title><desc id="d-{id}">{n} barre; i valori sotto 3 persone sono indicati come meno di 3</desc>"#,
        id = escape(id),
        t = escape(title),
        n = bars.len(),
    );
    for (i, (label, cell)) in bars.iter().enumerate() {
        let x = i as f64 * slot;
        let (bh, class) = match cell {
            Cell::Few => ((2.0 / max * plot).max(6.0), "bar few"),
            Cell::Value(v) => (v / max * plot, "bar"),
            Cell::None | Cell::Hidden => (0.0, "bar"),
        };
        let text = cell.display(Unit::Count);
        let _ = write!(
            svg,
            r#"<rect class="{class}" x="{x:.1}" y="{y:.1}" width="{bw:.1}" height="{bh:.1}"><title>{l}: {text}</title></rect><text class="value" x="{cx:.1}" y="{ty:.1}" text-anchor="middle">{text}</text><text class="label" x="{cx:.1}" y="{ly:.1}" text-anchor="middle">{l}</text>"#,
            y = h - bottom - bh,
            bw = (slot - 4.0).max(1.0),
            cx = x + slot / 2.0,
            ty = h - bottom - bh - 3.0,
            ly = h - bottom + 14.0,
            l = escape(label),
            text = escape(&text),
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Each comune's domiciles (bar) against its fair share (tick).
pub fn domicile_bars(rows: &[DomicileRow]) -> String {
    let row_h = 18.0_f64;
    let (w, left) = (640.0_f64, 170.0_f64);
    let h = row_h * rows.len().max(1) as f64 + 8.0;
    let max = rows
        .iter()
        .map(|r| r.assigned.value().unwrap_or(2.0).max(r.fair_share))
        .fold(3.0_f64, f64::max);
    let scale = |v: f64| v / max * (w - left - 50.0);
    let mut svg = format!(
        r#"<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-labelledby="t-dom d-dom"><title id="t-dom">Domicili assegnati per comune e quota equa</title><desc id="d-dom">{n} comuni; la barra è il numero di domicili, il segno verticale la quota equa per popolazione</desc>"#,
        n = rows.len()
    );
    for (i, r) in rows.iter().enumerate() {
        let y = 4.0 + i as f64 * row_h;
        let (bw, class) = match r.assigned {
            Cell::Few => (scale(2.0).max(6.0), "bar few"),
            Cell::Value(v) => (scale(v), "bar"),
            Cell::None | Cell::Hidden => (0.0, "bar"),
        };
        let _ = write!(
            svg,
            r#"<text class="label" x="0" y="{ty:.1}">{nome}</text><rect class="{class}" x="{left}" y="{y:.1}" width="{bw:.1}" height="{bh:.1}"><title>{nome}: {a} (quota equa {fair:.1})</title></rect><line class="mark strong" x1="{fx:.1}" y1="{y:.1}" x2="{fx:.1}" y2="{y2:.1}"/><text class="value" x="{vx:.1}" y="{ty:.1}">{a}</text>"#,
            ty = y + row_h - 6.0,
            nome = escape(&r.nome),
            bh = row_h - 4.0,
            a = escape(&r.assigned.display(Unit::Count)),
            fair = r.fair_share,
            fx = left + scale(r.fair_share),
            y2 = y + row_h - 4.0,
            vx = left + bw.max(scale(r.fair_share)) + 6.0,
        );
    }
    svg.push_str("</svg>");
    svg
}

/// One indicator against its target: a bar of the value and a line at the target.
pub fn indicator_gauge(row: &IndicatorRow) -> String {
    let (w, h) = (220.0_f64, 16.0_f64);
    let value = row.value.value();
    let top = [value, row.target]
        .iter()
        .flatten()
        .fold(1.0_f64, |a, b| a.max(*b))
        * 1.15;
    let scale = |v: f64| (v.max(0.0) / top) * w;
    let class = match row.verdict {
        Verdict::Met => "fill met",
        Verdict::NotMet => "fill missed",
        Verdict::Unknown => "fill",
    };
    let mut svg = format!(
        r#"<svg class="gauge" viewBox="0 0 {w} {h}" role="img" aria-label="{l}: {v}, obiettivo {t}"><rect class="track" x="0" y="2" width="{w}" height="12"/>"#,
        l = escape(row.label),
        v = escape(&row.value_text()),
        t = escape(&row.target_text()),
    );
    if let Some(v) = value {
        let _ = write!(
            svg,
            r#"<rect class="{class}" x="0" y="2" width="{:.1}" height="12"/>"#,
            scale(v)
        );
    }
    if let Some(t) = row.target {
        let _ = write!(
            svg,
            r#"<line class="mark strong" x1="{x:.1}" y1="0" x2="{x:.1}" y2="{h}"/>"#,
            x = scale(t)
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_is_drawn_without_its_number() {
        let svg = count_bars(
            "m",
            "Mesi",
            &[("gen".into(), Cell::Few), ("feb".into(), Cell::Value(7.0))],
        );
        assert!(svg.contains("bar few"));
        assert!(svg.contains("&lt;3"));
        assert!(svg.contains(">7<"));
        assert!(!svg.contains("<3<"));
    }

    #[test]
    fn labels_are_escaped() {
        let svg = count_bars("x", "<b>", &[("<i>".into(), Cell::Value(1.0))]);
        assert!(!svg.contains("<b>") && !svg.contains("<i>"));
    }
}

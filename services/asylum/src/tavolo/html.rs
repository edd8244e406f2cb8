//! The annual report as one printable HTML page: its style inline, its charts inline SVG,
//! nothing fetched (a public administration's printer or archive has no internet). Every
//! text is escaped; only the charts of [`super::chart`], which escape their own labels, are
//! inserted as they are.

use std::fmt::Write;

use super::chart::{self, escape};
use super::indicator::{Cell, Unit};
use super::report::TavoloReport;

const STYLE: &str = r#"
body { font-family: "Titillium Web", "Segoe UI", sans-serif; color: #17324d; margin: 2em auto; max-width: 60em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; border-bottom: 1px solid #c5d0dc; margin-top: 2em; }
table { border-collapse: collapse; width: 100%; font-size: .95em; }
th, td { text-align: left; padding: .25em .5em; border-bottom: 1px solid #e3e8ee; vertical-align: middle; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.met { color: #00703c; } .missed { color: #a3001b; }
svg .bar { fill: #0066cc; } svg .bar.few { fill: #9dbbdc; stroke: #0066cc; stroke-dasharray: 2 2; }
svg .label, svg .value { font-size: 10px; fill: #17324d; }
svg .mark { stroke: #5c6f82; } svg .mark.strong { stroke: #17324d; stroke-width: 2; }
svg .track { fill: #e3e8ee; } svg .fill { fill: #5c6f82; } svg .fill.met { fill: #00703c; } svg .fill.missed { fill: #a3001b; }
svg.chart { width: 100%; height: auto; } svg.gauge { width: 14em; height: 1em; }
.note { color: #5c6f82; font-size: .9em; }
@media print { body { margin: 0; max-width: none; } h2 { break-after: avoid; } table, svg { break-inside: avoid; } }
"#;

const MONTHS: [&str; 12] = [
    "gen", "feb", "mar", "apr", "mag", "giu", "lug", "ago", "set", "ott", "nov", "dic",
];

/// The whole page.
pub fn render_html(report: &TavoloReport) -> String {
    let mut out = format!(
        r#"<!doctype html>
<html lang="it"><head><meta charset="utf-8"><title>Tavolo provinciale asilo · relazione {year}</title><style>{STYLE}</style></head><body>
<h1>Tavolo provinciale asilo — relazione-report {year}</h1>
<p class="note">Generata il {at} (Europe/Rome). Anno solare {year}; primo intervento entro {hours} ore. I valori che riguardano meno di 3 persone sono indicati come «&lt;3»; «n.d.» dove un valore permetterebbe di ricavarne uno nascosto da un totale.</p>
"#,
        year = report.year,
        at = escape(&report.generated_at),
        hours = report.first_intervention_hours,
    );
    indicators(&mut out, report);
    pronta(&mut out, report);
    domiciles(&mut out, report);
    records(&mut out, report);
    out.push_str("</body></html>\n");
    out
}

fn indicators(out: &mut String, report: &TavoloReport) {
    out.push_str("<h2>Indicatori e obiettivi</h2>\n<table><thead><tr><th>Indicatore</th><th>Valore</th><th>Obiettivo</th><th></th><th>Esito</th></tr></thead><tbody>\n");
    for row in &report.indicators {
        let class = match row.verdict {
            super::indicator::Verdict::Met => "met",
            super::indicator::Verdict::NotMet => "missed",
            super::indicator::Verdict::Unknown => "",
        };
        let source = match row.target_source {
            Some("predefinito") => " <span class=\"note\">(predefinito)</span>",
            _ => "",
        };
        let _ = writeln!(
            out,
            r#"<tr><td>{label}</td><td class="n">{value}</td><td class="n">{target}{source}</td><td>{gauge}</td><td class="{class}">{verdict}</td></tr>"#,
            label = escape(row.label),
            value = escape(&row.value_text()),
            target = escape(&row.target_text()),
            gauge = chart::indicator_gauge(row),
            verdict = row.verdict.label(),
        );
    }
    out.push_str("</tbody></table>\n");
}

fn pronta(out: &mut String, report: &TavoloReport) {
    out.push_str("<h2>Pronte accoglienze</h2>\n");
    let months: Vec<(String, Cell)> = MONTHS
        .iter()
        .zip(&report.cases_by_month)
        .map(|(m, c)| ((*m).to_owned(), *c))
        .collect();
    out.push_str(&chart::count_bars(
        "mesi",
        "Pronte accoglienze per mese",
        &months,
    ));
    let categories: Vec<(String, Cell)> = report
        .categories
        .iter()
        .map(|c| (c.category.replace('_', " "), c.cases))
        .collect();
    out.push_str(&chart::count_bars(
        "categorie",
        "Pronte accoglienze per categoria di vulnerabilità",
        &categories,
    ));
    out.push_str("<table><thead><tr><th>Categoria</th><th>Casi</th></tr></thead><tbody>\n");
    for c in &report.categories {
        let _ = writeln!(
            out,
            r#"<tr><td>{}</td><td class="n">{}</td></tr>"#,
            escape(&c.category.replace('_', " ")),
            escape(&c.cases.display(Unit::Count))
        );
    }
    out.push_str("</tbody></table>\n");
    let _ = writeln!(
        out,
        r#"<p>Permanenza mediana rispetto a 12 mesi: {}%.</p>"#,
        escape(&report.stay_against_12_months.display(Unit::Hours))
    );
}

fn domiciles(out: &mut String, report: &TavoloReport) {
    out.push_str("<h2>Domicili per comune e quota equa</h2>\n");
    if report.domiciles.is_empty() {
        out.push_str("<p>Nessun comune aderisce alla rotazione dei domicili.</p>\n");
        return;
    }
    out.push_str(&chart::domicile_bars(&report.domiciles));
    out.push_str("<table><thead><tr><th>Comune</th><th>ISTAT</th><th>Domicili</th><th>Quota equa</th><th>Scarto</th></tr></thead><tbody>\n");
    for d in &report.domiciles {
        let _ = writeln!(
            out,
            r#"<tr><td>{}{}</td><td>{}</td><td class="n">{}</td><td class="n">{:.1}</td><td class="n">{}</td></tr>"#,
            escape(&d.nome),
            if d.in_rotation {
                ""
            } else {
                " <span class=\"note\">(fuori rotazione)</span>"
            },
            escape(&d.istat),
            escape(&d.assigned.display(Unit::Count)),
            d.fair_share,
            escape(&d.deviation.display(Unit::Hours)),
        );
    }
    out.push_str("</tbody></table>\n");
}

fn records(out: &mut String, report: &TavoloReport) {
    out.push_str("<h2>Incontri del Tavolo</h2>\n");
    if report.meetings.is_empty() {
        out.push_str("<p>Nessun incontro registrato.</p>\n");
    } else {
        out.push_str("<table><thead><tr><th>Data</th><th>Incontro</th><th>Livello</th><th>Presenti</th><th>Enti presenti</th></tr></thead><tbody>\n");
        for m in &report.meetings {
            let _ = writeln!(
                out,
                r#"<tr><td>{}</td><td>{}</td><td>{}</td><td class="n">{}/{}</td><td>{}</td></tr>"#,
                m.held_on,
                escape(&m.title),
                escape(&m.level),
                m.present,
                m.invited,
                escape(&m.participants.join(", ")),
            );
        }
        out.push_str("</tbody></table>\n");
    }
    out.push_str("<h2>Protocolli e criteri condivisi</h2>\n");
    if report.protocols.is_empty() {
        out.push_str("<p>Nessun protocollo o criterio registrato.</p>\n");
    } else {
        out.push_str("<table><thead><tr><th>Data</th><th>Titolo</th><th>Tipo</th><th>Firmatari</th></tr></thead><tbody>\n");
        for p in &report.protocols {
            let _ = writeln!(
                out,
                r#"<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                p.signed_on,
                escape(&p.title),
                escape(&p.kind),
                escape(&p.signatories.join(", ")),
            );
        }
        out.push_str("</tbody></table>\n");
    }
    out.push_str("<h2>Obiettivi dell'anno</h2>\n");
    if report.objectives.is_empty() {
        out.push_str("<p>Nessun obiettivo registrato: valgono gli obiettivi predefiniti.</p>\n");
    } else {
        out.push_str("<ul>\n");
        for o in &report.objectives {
            let _ = writeln!(
                out,
                "<li>{}{}</li>",
                escape(&o.description),
                o.indicator
                    .as_deref()
                    .map(|i| format!(" <span class=\"note\">({})</span>", escape(i)))
                    .unwrap_or_default()
            );
        }
        out.push_str("</ul>\n");
    }
}

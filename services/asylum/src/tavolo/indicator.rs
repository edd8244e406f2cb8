//! The indicators of the annual report (A6), their targets and how a figure is shown: a
//! count of people under 3 is `<3` (as the eviction statistics, C6), and so is a share or a
//! median computed over fewer than 3 people, which would tell one person's figure.

use serde::Serialize;

/// One indicator of the relazione-report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Indicator {
    ProntaAccoglienza,
    Within12Hours,
    MedianHours,
    WaitingEntries,
    Placements,
    MedianWaitDays,
    Continuita,
    MedianStayDays,
    DomicileDeviation,
    ComuniInvolved,
    Meetings,
    Participation,
    Protocols,
    Criteria,
    Reports,
}

/// Whether a figure meets its target from above or from below.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    AtLeast,
    AtMost,
}

/// How a figure reads: a count, a share (0–1, shown as %), hours or days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Count,
    Share,
    Hours,
    Days,
}

impl Indicator {
    /// Every indicator, in the report's order.
    pub const ALL: [Indicator; 15] = [
        Indicator::ProntaAccoglienza,
        Indicator::Within12Hours,
        Indicator::MedianHours,
        Indicator::WaitingEntries,
        Indicator::Placements,
        Indicator::MedianWaitDays,
        Indicator::Continuita,
        Indicator::MedianStayDays,
        Indicator::DomicileDeviation,
        Indicator::ComuniInvolved,
        Indicator::Meetings,
        Indicator::Participation,
        Indicator::Protocols,
        Indicator::Criteria,
        Indicator::Reports,
    ];

    /// The key of `raccordo tavolo objective add --indicator` and of the JSON.
    pub fn key(self) -> &'static str {
        match self {
            Indicator::ProntaAccoglienza => "pronte_accoglienze",
            Indicator::Within12Hours => "primo_intervento_entro_12_ore",
            Indicator::MedianHours => "ore_mediane_primo_intervento",
            Indicator::WaitingEntries => "ingressi_lista_attesa",
            Indicator::Placements => "inserimenti_sprar",
            Indicator::MedianWaitDays => "attesa_mediana_giorni",
            Indicator::Continuita => "continuita_sprar",
            Indicator::MedianStayDays => "permanenza_mediana_giorni",
            Indicator::DomicileDeviation => "scarto_massimo_domicili",
            Indicator::ComuniInvolved => "comuni_coinvolti",
            Indicator::Meetings => "incontri",
            Indicator::Participation => "partecipazione",
            Indicator::Protocols => "protocolli_sottoscritti",
            Indicator::Criteria => "criteri_condivisi",
            Indicator::Reports => "report_prodotti",
        }
    }

    /// Parses a key of [`Indicator::key`].
    pub fn parse(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|i| i.key() == key)
    }

    /// The Italian label of the report.
    pub fn label(self) -> &'static str {
        match self {
            Indicator::ProntaAccoglienza => "Pronte accoglienze",
            Indicator::Within12Hours => "Primo intervento entro le ore previste",
            Indicator::MedianHours => "Ore mediane al primo intervento",
            Indicator::WaitingEntries => "Ingressi in lista d'attesa SPRAR",
            Indicator::Placements => "Inserimenti SPRAR",
            Indicator::MedianWaitDays => "Attesa mediana (giorni)",
            Indicator::Continuita => "Continuità SPRAR nella zona dello sportello",
            Indicator::MedianStayDays => "Permanenza mediana (giorni)",
            Indicator::DomicileDeviation => "Scarto massimo dei domicili dalla quota equa",
            Indicator::ComuniInvolved => "Comuni coinvolti",
            Indicator::Meetings => "Incontri del Tavolo",
            Indicator::Participation => "Partecipazione agli incontri",
            Indicator::Protocols => "Protocolli sottoscritti",
            Indicator::Criteria => "Criteri condivisi",
            Indicator::Reports => "Report prodotti (liste settimanali)",
        }
    }

    pub fn unit(self) -> Unit {
        match self {
            Indicator::Within12Hours | Indicator::Continuita | Indicator::Participation => {
                Unit::Share
            }
            Indicator::MedianHours => Unit::Hours,
            Indicator::MedianWaitDays | Indicator::MedianStayDays => Unit::Days,
            _ => Unit::Count,
        }
    }

    pub fn direction(self) -> Direction {
        match self {
            Indicator::MedianHours
            | Indicator::MedianWaitDays
            | Indicator::MedianStayDays
            | Indicator::DomicileDeviation => Direction::AtMost,
            _ => Direction::AtLeast,
        }
    }

    /// Whether the figure counts people (then 1 and 2 are `<3`).
    pub fn counts_people(self) -> bool {
        matches!(
            self,
            Indicator::ProntaAccoglienza | Indicator::WaitingEntries | Indicator::Placements
        )
    }

    /// The target when the year has no objective for it: the sheet's own figures (seed 001:
    /// 90% continuità, first interventions within 12 hours, stays 20% shorter than 12
    /// months), the rotation's promise (within one assignment of the fair share), the
    /// weekly list (52 a year) and the Tavolo's bimonthly meetings (6 a year).
    pub fn default_target(self, first_intervention_hours: f64) -> Option<f64> {
        match self {
            Indicator::Within12Hours => Some(1.0),
            Indicator::MedianHours => Some(first_intervention_hours),
            Indicator::Continuita => Some(0.9),
            Indicator::MedianStayDays => Some(365.0 * 0.8),
            Indicator::DomicileDeviation => Some(1.0),
            Indicator::Meetings => Some(6.0),
            Indicator::Reports => Some(52.0),
            _ => None,
        }
    }
}

/// A figure as shown: nothing to show, `<3`, or a value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell {
    /// No base to compute it on (no case, no meeting).
    None,
    /// A count of 1 or 2 people, or a figure over 1 or 2 people.
    Few,
    /// A count that would let a `<3` of its row be worked out from a shown total
    /// (secondary suppression): `n.d.`.
    Hidden,
    Value(f64),
}

impl Cell {
    /// A count of people: 0 stays 0, 1 and 2 are `<3`.
    pub fn people(n: i64) -> Self {
        match n {
            1 | 2 => Cell::Few,
            n => Cell::Value(n.max(0) as f64),
        }
    }

    /// A count of things that are not people (meetings, protocols, comuni).
    pub fn count(n: i64) -> Self {
        Cell::Value(n as f64)
    }

    /// A figure computed over `base` people: hidden under 3, absent at 0.
    pub fn over(base: i64, value: Option<f64>) -> Self {
        match (base, value) {
            (1 | 2, _) => Cell::Few,
            (_, Some(v)) if base > 0 => Cell::Value(v),
            _ => Cell::None,
        }
    }

    /// The value, when it may be shown.
    pub fn value(self) -> Option<f64> {
        match self {
            Cell::Value(v) => Some(v),
            _ => None,
        }
    }

    /// The cell as text in `unit`: `<3`, `—`, `42`, `93.1%`, `11.5`.
    pub fn display(self, unit: Unit) -> String {
        match self {
            Cell::None => "—".to_owned(),
            Cell::Few => "<3".to_owned(),
            Cell::Hidden => "n.d.".to_owned(),
            Cell::Value(v) => match unit {
                Unit::Count => format!("{v:.0}"),
                Unit::Share => format!("{:.1}%", v * 100.0),
                Unit::Hours | Unit::Days => format!("{v:.1}"),
            },
        }
    }
}

/// Cells that add up to a total shown elsewhere: when exactly one is `<3`, the total would
/// tell it, so the smallest other non-zero cell is hidden too. Returns the index hidden.
pub fn suppress(cells: &mut [Cell]) -> Option<usize> {
    if cells.iter().filter(|c| **c == Cell::Few).count() != 1 {
        return None;
    }
    let (i, _) = cells
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.value().filter(|v| *v > 0.0).map(|v| (i, v)))
        .min_by(|a, b| a.1.total_cmp(&b.1))?;
    cells[i] = Cell::Hidden;
    Some(i)
}

/// JSON: a number, the string `"<3"`, or null.
impl Serialize for Cell {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Cell::None => s.serialize_none(),
            Cell::Few => s.serialize_str("<3"),
            Cell::Hidden => s.serialize_str("n.d."),
            Cell::Value(v) if v.fract() == 0.0 && v.abs() < 1e15 => s.serialize_i64(*v as i64),
            Cell::Value(v) => s.serialize_f64(*v),
        }
    }
}

/// Whether a figure meets its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Met,
    NotMet,
    /// No target, or a figure that cannot be judged (absent or `<3`).
    Unknown,
}

impl Verdict {
    pub fn of(cell: Cell, target: Option<f64>, direction: Direction) -> Self {
        match (cell.value(), target) {
            (Some(v), Some(t)) => {
                let met = match direction {
                    // A share is compared at the precision it is shown with.
                    Direction::AtLeast => v + 1e-9 >= t,
                    Direction::AtMost => v <= t + 1e-9,
                };
                if met { Verdict::Met } else { Verdict::NotMet }
            }
            _ => Verdict::Unknown,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Verdict::Met => "raggiunto",
            Verdict::NotMet => "non raggiunto",
            Verdict::Unknown => "—",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_and_two_people_are_shown_as_fewer_than_three() {
        assert_eq!(Cell::people(0).display(Unit::Count), "0");
        assert_eq!(Cell::people(1).display(Unit::Count), "<3");
        assert_eq!(Cell::people(2).display(Unit::Count), "<3");
        assert_eq!(Cell::people(3).display(Unit::Count), "3");
    }

    #[test]
    fn a_median_over_two_people_is_hidden_and_over_none_is_absent() {
        assert_eq!(Cell::over(2, Some(5.0)), Cell::Few);
        assert_eq!(Cell::over(0, None), Cell::None);
        assert_eq!(Cell::over(3, Some(5.0)), Cell::Value(5.0));
    }

    #[test]
    fn a_lone_few_hides_the_smallest_other_count_too() {
        let mut cells = [
            Cell::Value(9.0),
            Cell::Few,
            Cell::Value(4.0),
            Cell::Value(0.0),
        ];
        assert_eq!(suppress(&mut cells), Some(2));
        assert_eq!(cells[2].display(Unit::Count), "n.d.");
        let mut two = [Cell::Few, Cell::Few, Cell::Value(4.0)];
        assert_eq!(suppress(&mut two), None);
    }

    #[test]
    fn every_key_parses_back_to_its_indicator() {
        for i in Indicator::ALL {
            assert_eq!(Indicator::parse(i.key()), Some(i));
        }
        assert_eq!(Indicator::parse("nonsense"), None);
    }

    #[test]
    fn a_figure_meets_its_target_from_the_right_side() {
        let at_most = Indicator::MedianHours.direction();
        assert_eq!(
            Verdict::of(Cell::Value(11.0), Some(12.0), at_most),
            Verdict::Met
        );
        assert_eq!(
            Verdict::of(Cell::Value(13.0), Some(12.0), at_most),
            Verdict::NotMet
        );
        assert_eq!(
            Verdict::of(Cell::Few, Some(12.0), at_most),
            Verdict::Unknown
        );
    }

    #[test]
    fn json_shows_a_count_a_few_or_nothing() {
        let json = serde_json::to_string(&[
            Cell::Value(4.0),
            Cell::Few,
            Cell::None,
            Cell::Value(0.5),
            Cell::Hidden,
        ])
        .expect("serializes");
        assert_eq!(json, r#"[4,"<3",null,0.5,"n.d."]"#);
    }
}

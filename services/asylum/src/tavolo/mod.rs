//! A6: the Tavolo provinciale asilo's annual relazione-report and its own records.
//!
//! # Layout
//! - [`records`]: meetings, protocols and criteria, objectives (`raccordo tavolo …`).
//! - [`indicator`]: the indicators, their targets, `<3` cells.
//! - [`report`]: the year's figures from the asylum tables, against their targets.
//! - [`html`]: the printable page; [`chart`]: its inline SVG charts (the console's too).
//! - [`generate`]: a year of generated data, to measure and check the report.

pub mod chart;
pub mod generate;
pub mod html;
pub mod indicator;
pub mod records;
pub mod report;

pub use indicator::{Cell, Indicator, Verdict};
pub use report::{ReportParams, TavoloReport, load_report};

//! Reports as tables, and the tables as files: CSV that Danish Excel opens as it should
//! (UTF-8 with a BOM, `;` between cells, decimal comma) and an Excel workbook with one sheet
//! per table and a native chart beside each breakdown.
//!
//! Labels are Danish or English: the words for the domain's values (kinds, themes, referral
//! targets, housing situations) are the tablet app's own (`ui/src/lib/i18n`), the report's
//! words are in `labels.json`; both files are read at compile time, so one word has one source.
//! Every text cell that a spreadsheet could read as a formula is made inert.

use super::{Count, Report, ReportError, Row};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::OnceLock;

/// The languages of the labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    #[default]
    Da,
    En,
}

/// One cell of a table. As JSON: a string, a number, `"<5"` or `null` (a hidden mean).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Cell {
    Text(String),
    Count(Count),
    Int(u64),
    /// A number with decimals (a mean); `None` when hidden.
    Decimal(Option<f64>),
}

/// A table of a report: a title, the column headings and rows whose first cell is the key.
/// The dashboard shows these as they are (`format=tables`), so the words and the order of a
/// report's figures have one definition, here.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Table {
    pub title: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
    /// How to chart its first figure column: a breakdown gets bars, a series over time a
    /// line; an overview none.
    pub chart: Option<ChartKind>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChartKind {
    Bar,
    Line,
}

type Words = HashMap<String, String>;

fn words(lang: Lang) -> &'static Words {
    static DA: OnceLock<Words> = OnceLock::new();
    static EN: OnceLock<Words> = OnceLock::new();
    let load = |app: &str, lang: &str| -> Words {
        let mut out: Words = serde_json::from_str(app).unwrap_or_default();
        let reports: HashMap<String, Words> =
            serde_json::from_str(include_str!("labels.json")).unwrap_or_default();
        out.extend(reports.get(lang).cloned().unwrap_or_default());
        out
    };
    match lang {
        Lang::Da => DA.get_or_init(|| load(include_str!("../../../ui/src/lib/i18n/da.json"), "da")),
        Lang::En => EN.get_or_init(|| load(include_str!("../../../ui/src/lib/i18n/en.json"), "en")),
    }
}

/// The word for `key` (`theme.housing`), or the key itself when there is none.
pub fn label(lang: Lang, key: &str) -> String {
    words(lang)
        .get(key)
        .cloned()
        .unwrap_or_else(|| key.to_owned())
}

/// A report's tables, labelled in `lang`.
pub fn tables(report: &Report, lang: Lang) -> Vec<Table> {
    let l = |k: &str| label(lang, k);
    let overview = |figures: Vec<(&str, Cell)>| Table {
        title: l("table.overview"),
        columns: vec![l("col.figure"), l("col.value")],
        rows: figures
            .into_iter()
            .map(|(k, v)| vec![Cell::Text(l(&format!("col.{k}"))), v])
            .collect(),
        chart: None,
    };
    // A breakdown: the key column's heading, how keys are labelled, the count's heading.
    let breakdown =
        |title: &str, key: &str, count: &str, rows: Vec<(String, Count, Count)>| Table {
            title: l(&format!("table.{title}")),
            columns: vec![
                l(&format!("col.{key}")),
                l(&format!("col.{count}")),
                l("col.people"),
            ],
            rows: rows
                .into_iter()
                .map(|(k, c, p)| vec![Cell::Text(k), Cell::Count(c), Cell::Count(p)])
                .collect(),
            chart: Some(
                if title.starts_with("by_week") || title.starts_with("by_month") {
                    ChartKind::Line
                } else {
                    ChartKind::Bar
                },
            ),
        };
    let plain = |rows: &[Row<String>]| -> Vec<(String, Count, Count)> {
        rows.iter()
            .map(|r| (r.key.clone(), r.count, r.people))
            .collect()
    };
    let worded = |prefix: &str, rows: &[Row<String>]| -> Vec<(String, Count, Count)> {
        rows.iter()
            .map(|r| (l(&format!("{prefix}.{}", r.key)), r.count, r.people))
            .collect()
    };
    let named = |rows: &[Row<Option<String>>]| -> Vec<(String, Count, Count)> {
        rows.iter()
            .map(|r| {
                (
                    r.key.clone().unwrap_or_else(|| l("none")),
                    r.count,
                    r.people,
                )
            })
            .collect()
    };
    let housing = |rows: &[Row<feltbog_core::domain::HousingSituation>]| {
        rows.iter()
            .map(|r| {
                (
                    l(&format!("housing.{}", super::wire(&r.key))),
                    r.count,
                    r.people,
                )
            })
            .collect::<Vec<_>>()
    };
    match report {
        Report::Contacts(r) => vec![
            overview(vec![
                ("contacts", Cell::Count(r.contacts)),
                ("people", Cell::Count(r.people)),
                ("citizens", Cell::Count(r.citizens)),
                ("anonymous_people", Cell::Count(r.anonymous_people)),
                ("new_citizens", Cell::Count(r.new_citizens)),
            ]),
            breakdown("by_week", "week", "contacts", plain(&r.by_week)),
            breakdown("by_month", "month", "contacts", plain(&r.by_month)),
            breakdown(
                "by_kind",
                "kind",
                "contacts",
                worded("visit_kind", &r.by_kind),
            ),
            breakdown(
                "by_theme",
                "theme",
                "contacts",
                worded("theme", &r.by_theme),
            ),
            breakdown("by_site", "site", "contacts", named(&r.by_site)),
            breakdown("by_worker", "worker", "contacts", named(&r.by_worker)),
        ],
        Report::Referrals(r) => vec![
            overview(vec![
                ("referrals", Cell::Count(r.referrals)),
                ("people", Cell::Count(r.people)),
            ]),
            breakdown(
                "by_target",
                "target",
                "referrals",
                worded("referral", &r.by_target),
            ),
            overview(vec![
                ("followed", Cell::Count(r.followed)),
                ("followed_people", Cell::Count(r.followed_people)),
            ]),
            breakdown(
                "by_referral_outcome",
                "outcome",
                "referrals",
                worded("referral_outcome", &r.by_outcome),
            ),
        ],
        Report::Courses(r) => vec![
            overview(vec![
                ("started", Cell::Count(r.started)),
                ("started_people", Cell::Count(r.started_people)),
                ("ended", Cell::Count(r.ended)),
                ("ended_people", Cell::Count(r.ended_people)),
            ]),
            breakdown(
                "started_by_kind",
                "course_kind",
                "courses",
                worded("course_kind", &r.started_by_kind),
            ),
            breakdown(
                "ended_by_ending",
                "course_ending",
                "courses",
                worded("course_ending", &r.ended_by_ending),
            ),
            breakdown(
                "running_by_kind",
                "course_kind",
                "courses",
                worded("course_kind", &r.running_by_kind),
            ),
        ],
        Report::FollowUps(r) => vec![
            overview(vec![
                ("due", Cell::Count(r.due)),
                ("people", Cell::Count(r.people)),
            ]),
            breakdown(
                "by_outcome",
                "outcome",
                "tasks",
                worded("outcome", &r.by_outcome),
            ),
        ],
        Report::Housing(r) => vec![
            overview(vec![("people_moved", Cell::Count(r.people_moved))]),
            breakdown("at_start", "situation", "citizens", housing(&r.at_start)),
            breakdown("at_end", "situation", "citizens", housing(&r.at_end)),
            breakdown(
                "moves",
                "move",
                "moves",
                r.moves
                    .iter()
                    .map(|m| {
                        let from = l(&format!("housing.{}", super::wire(&m.key.from)));
                        let to = l(&format!("housing.{}", super::wire(&m.key.to)));
                        (format!("{from} → {to}"), m.count, m.people)
                    })
                    .collect(),
            ),
            breakdown(
                "kept_home",
                "kept_measure",
                "move_ins",
                worded("kept", &r.kept_home),
            ),
        ],
        Report::Wellbeing(r) => vec![
            overview(vec![
                ("scores", Cell::Count(r.scores)),
                ("people", Cell::Count(r.people)),
                ("mean", Cell::Decimal(r.mean)),
            ]),
            Table {
                title: l("table.by_month"),
                columns: vec![
                    l("col.month"),
                    l("col.mean"),
                    l("col.scores"),
                    l("col.people"),
                ],
                rows: r
                    .by_month
                    .iter()
                    .map(|m| {
                        vec![
                            Cell::Text(m.month.clone()),
                            Cell::Decimal(m.mean),
                            Cell::Count(m.scores),
                            Cell::Count(m.people),
                        ]
                    })
                    .collect(),
                chart: Some(ChartKind::Line),
            },
        ],
        Report::Conflicts(r) => vec![
            overview(vec![
                ("open", Cell::Int(r.open)),
                ("awaiting_decision", Cell::Int(r.awaiting_decision)),
            ]),
            Table {
                title: l("table.by_age"),
                columns: vec![l("col.age"), l("col.open"), l("col.awaiting_decision")],
                rows: r
                    .by_age
                    .iter()
                    .map(|a| {
                        vec![
                            Cell::Text(l(&format!("age.{}", a.age))),
                            Cell::Int(a.open),
                            Cell::Int(a.awaiting_decision),
                        ]
                    })
                    .collect(),
                chart: Some(ChartKind::Bar),
            },
        ],
    }
}

/// A text cell that no spreadsheet runs as a formula: one starting with `=`, `+`, `-`, `@`,
/// a tab or a carriage return gets a leading apostrophe (OWASP's advice for CSV injection).
pub fn inert(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

/// A decimal the Danish way (`6,4`) or the English way (`6.4`).
fn decimal(v: f64, lang: Lang) -> String {
    let text = format!("{v:.1}");
    match lang {
        Lang::Da => text.replace('.', ","),
        Lang::En => text,
    }
}

fn cell_text(cell: &Cell, lang: Lang) -> String {
    match cell {
        Cell::Text(t) => inert(t),
        Cell::Count(Count::Shown(n)) | Cell::Int(n) => n.to_string(),
        Cell::Count(Count::Hidden) => "<5".to_owned(),
        Cell::Decimal(Some(v)) => decimal(*v, lang),
        Cell::Decimal(None) => String::new(),
    }
}

/// The tables as one CSV file for Danish Excel: a BOM, `;` between cells, each table a
/// heading row (its title, then the column headings) and its rows, with an empty line
/// between tables.
pub fn csv(tables: &[Table], lang: Lang) -> Result<Vec<u8>, ReportError> {
    let mut out = "\u{feff}".as_bytes().to_vec();
    let separator = match lang {
        Lang::Da => b';',
        // English Excel also reads `;` when told; one format keeps the test and users simple.
        Lang::En => b';',
    };
    for (i, table) in tables.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b"\r\n");
        }
        let mut w = csv::WriterBuilder::new()
            .delimiter(separator)
            .terminator(csv::Terminator::CRLF)
            .flexible(true)
            .from_writer(Vec::new());
        let mut heading = vec![inert(&table.title)];
        heading.extend(table.columns.iter().map(|c| inert(c)));
        w.write_record(&heading).map_err(|_| ReportError::Export)?;
        for row in &table.rows {
            let mut cells = vec![String::new()];
            cells.extend(row.iter().map(|c| cell_text(c, lang)));
            w.write_record(&cells).map_err(|_| ReportError::Export)?;
        }
        out.extend(w.into_inner().map_err(|_| ReportError::Export)?);
    }
    Ok(out)
}

/// The tables as an Excel workbook: one sheet per table (a heading row, then the rows), and
/// beside each breakdown a native column chart of its first figure. Hidden counts are the
/// text `<5`, so a chart leaves them out.
pub fn xlsx(report_title: &str, tables: &[Table]) -> Result<Vec<u8>, ReportError> {
    use rust_xlsxwriter::{Chart, ChartType, Format, Workbook};
    let err = |_| ReportError::Export;
    let mut book = Workbook::new();
    let bold = Format::new().set_bold();
    let one_decimal = Format::new().set_num_format("0.0");
    let mut used: Vec<String> = Vec::new();
    for table in tables {
        let name = sheet_name(&table.title, &used);
        used.push(name.clone());
        let sheet = book.add_worksheet();
        sheet.set_name(&name).map_err(err)?;
        for (c, heading) in table.columns.iter().enumerate() {
            sheet
                .write_string_with_format(0, c as u16, heading, &bold)
                .map_err(err)?;
        }
        for (r, row) in table.rows.iter().enumerate() {
            let r = r as u32 + 1;
            for (c, cell) in row.iter().enumerate() {
                let c = c as u16;
                match cell {
                    // write_string never makes a formula, whatever the text.
                    Cell::Text(t) => sheet.write_string(r, c, t).map(|_| ()),
                    Cell::Count(Count::Shown(n)) | Cell::Int(n) => {
                        sheet.write_number(r, c, *n as f64).map(|_| ())
                    }
                    Cell::Count(Count::Hidden) => sheet.write_string(r, c, "<5").map(|_| ()),
                    Cell::Decimal(Some(v)) => sheet
                        .write_number_with_format(r, c, *v, &one_decimal)
                        .map(|_| ()),
                    Cell::Decimal(None) => Ok(()),
                }
                .map_err(err)?;
            }
        }
        sheet.set_column_width(0, 28).map_err(err)?;
        if let Some(kind) = table.chart
            && !table.rows.is_empty()
            && table.columns.len() > 1
        {
            let last = table.rows.len() as u32;
            let mut chart = Chart::new(match kind {
                ChartKind::Bar => ChartType::Column,
                ChartKind::Line => ChartType::Line,
            });
            chart
                .add_series()
                .set_name(table.columns[1].as_str())
                .set_categories((name.as_str(), 1, 0, last, 0))
                .set_values((name.as_str(), 1, 1, last, 1));
            chart
                .title()
                .set_name(&format!("{report_title}: {}", table.title));
            chart.legend().set_hidden();
            sheet
                .insert_chart(1, table.columns.len() as u16 + 1, &chart)
                .map_err(err)?;
        }
    }
    book.save_to_buffer().map_err(err)
}

/// A valid, unique sheet name: at most 31 characters, none of `[]:*?/\`.
fn sheet_name(title: &str, used: &[String]) -> String {
    let clean: String = title
        .chars()
        .filter(|c| !"[]:*?/\\".contains(*c))
        .take(28)
        .collect();
    let mut name = clean.clone();
    let mut n = 2;
    while used.iter().any(|u| u.eq_ignore_ascii_case(&name)) {
        name = format!("{clean} {n}");
        n += 1;
    }
    name
}

/// The JSON a report is answered with: the report and its filter, so a saved file says what
/// it covers.
#[derive(Serialize)]
pub struct Answer<'a> {
    pub report: &'static str,
    pub filter: &'a super::Filter,
    pub data: &'a Report,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_a_spreadsheet_would_run_is_made_inert() {
        for bad in ["=1+1", "+SUM(A1)", "-2+3", "@cmd", "\tx", "\r=x"] {
            assert!(inert(bad).starts_with('\''), "{bad:?}");
        }
        assert_eq!(inert("Herberg Nord"), "Herberg Nord");
        assert_eq!(inert("<5"), "<5");
    }

    #[test]
    fn labels_come_from_the_app_and_the_report_words() {
        assert_eq!(label(Lang::Da, "theme.housing"), "Bolig");
        assert_eq!(label(Lang::En, "theme.housing"), "Housing");
        assert_eq!(label(Lang::Da, "table.by_week"), "Efter uge");
        assert_eq!(label(Lang::Da, "no.such"), "no.such");
        assert_eq!(decimal(6.46, Lang::Da), "6,5");
        assert_eq!(decimal(6.4, Lang::En), "6.4");
    }

    #[test]
    fn sheet_names_are_valid_and_unique() {
        let a = sheet_name("Efter uge: [x]/y", &[]);
        assert_eq!(a, "Efter uge xy");
        let b = sheet_name("Efter uge: [x]/y", std::slice::from_ref(&a));
        assert_eq!(b, "Efter uge xy 2");
        assert!(sheet_name(&"x".repeat(80), &[]).chars().count() <= 31);
    }
}

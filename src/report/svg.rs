//! A small SVG writer for the report's charts: horizontal bar charts with one or more series
//! per row (counts, shares next to their targets, percentiles, histograms). Every bar carries
//! `data-key` (the JSON pointer of its number in `report.json`) and `data-value` (that number as
//! `report.json` spells it), and a `<title>` for the tooltip.
//!
//! Written by hand rather than with a chart crate: the report needs one kind of chart, static
//! and text-only, and a few dozen lines give it without a font stack or a drawing backend.

use std::fmt::Write;

/// Bar colours, one per series (Tableau 10).
const COLOURS: [&str; 4] = ["#4c78a8", "#f58518", "#54a24b", "#b279a2"];
const WIDTH: f64 = 600.0;
const LABEL: f64 = 170.0;
const VALUE: f64 = 70.0;
const BAR: f64 = 14.0;
const GAP: f64 = 8.0;
const TOP: f64 = 6.0;
const LEGEND: f64 = 20.0;
/// Labels longer than this are cut (the full label is in the bar's tooltip).
const LABEL_CHARS: usize = 28;

/// One bar: its value (for the length), where `report.json` holds it, and the text shown.
#[derive(Debug, Clone)]
pub struct Cell {
    pub value: f64,
    /// JSON pointer into `report.json`.
    pub key: String,
    /// The number as `report.json` writes it.
    pub json: String,
    pub text: String,
}

/// A row: its label and one cell per series.
#[derive(Debug, Clone)]
pub struct Row {
    pub label: String,
    pub cells: Vec<Cell>,
}

/// XML/HTML text and attribute escaping.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn cut(label: &str) -> String {
    if label.chars().count() <= LABEL_CHARS {
        return label.to_string();
    }
    let head: String = label.chars().take(LABEL_CHARS - 1).collect();
    format!("{head}…")
}

/// A horizontal bar chart with `id`; `series` names the cells of each row (a legend is drawn
/// when there are several). Bars start at zero; negative values extend left of it.
pub fn bar_chart(id: &str, title: &str, series: &[&str], rows: &[Row]) -> String {
    let per_row = series.len().max(1) as f64;
    let legend = if series.len() > 1 { LEGEND } else { 0.0 };
    let row_height = per_row * BAR + GAP;
    let height = TOP + legend + rows.len() as f64 * row_height + GAP;
    let values = rows.iter().flat_map(|r| r.cells.iter().map(|c| c.value));
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((0f64, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let span = if hi > lo { hi - lo } else { 1.0 };
    let plot = WIDTH - LABEL - VALUE;
    let x = |v: f64| LABEL + plot * (v.clamp(lo, hi) - lo) / span;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg id="{}" class="chart" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{}"><title>{}</title>"#,
        esc(id),
        esc(title),
        esc(title)
    );
    if series.len() > 1 {
        for (i, name) in series.iter().enumerate() {
            let lx = LABEL + i as f64 * 120.0;
            let _ = write!(
                s,
                r#"<rect x="{lx}" y="{TOP}" width="10" height="10" fill="{}"/><text x="{}" y="{}" class="legend">{}</text>"#,
                COLOURS[i % COLOURS.len()],
                lx + 14.0,
                TOP + 9.0,
                esc(name)
            );
        }
    }
    let zero = x(0.0);
    if lo < 0.0 {
        let _ = write!(
            s,
            r##"<line x1="{zero}" x2="{zero}" y1="{}" y2="{}" stroke="#888"/>"##,
            TOP + legend,
            height - GAP
        );
    }
    for (r, row) in rows.iter().enumerate() {
        let y0 = TOP + legend + r as f64 * row_height;
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" class="label" text-anchor="end">{}</text>"#,
            LABEL - 6.0,
            y0 + per_row * BAR / 2.0 + 4.0,
            esc(&cut(&row.label))
        );
        for (i, cell) in row.cells.iter().enumerate() {
            let y = y0 + i as f64 * BAR;
            let end = if cell.value.is_finite() {
                x(cell.value)
            } else {
                zero
            };
            let (left, width) = (zero.min(end), (end - zero).abs());
            let name = series.get(i).map_or(String::new(), |n| format!(" {n}"));
            let _ = write!(
                s,
                r#"<rect x="{left:.1}" y="{y}" width="{width:.1}" height="{}" fill="{}" data-key="{}" data-value="{}"><title>{}{}: {}</title></rect><text x="{:.1}" y="{}" class="value">{}</text>"#,
                BAR - 2.0,
                COLOURS[i % COLOURS.len()],
                esc(&cell.key),
                esc(&cell.json),
                esc(&row.label),
                esc(&name),
                esc(&cell.text),
                zero.max(end) + 4.0,
                y + BAR - 4.0,
                esc(&cell.text)
            );
        }
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(value: f64) -> Cell {
        Cell {
            value,
            key: "/a".into(),
            json: value.to_string(),
            text: format!("{value}"),
        }
    }

    #[test]
    fn bars_scale_to_the_largest_value_and_labels_are_escaped() {
        let rows = vec![
            Row {
                label: "a<b".into(),
                cells: vec![cell(2.0)],
            },
            Row {
                label: "c".into(),
                cells: vec![cell(1.0)],
            },
        ];
        let svg = bar_chart("chart-x", "T & U", &["n"], &rows);
        assert!(
            svg.starts_with(r#"<svg id="chart-x" class="chart""#),
            "{svg}"
        );
        assert!(svg.contains(r#"aria-label="T &amp; U""#));
        assert!(svg.contains(">a&lt;b</text>"));
        let plot = WIDTH - LABEL - VALUE;
        assert!(svg.contains(&format!(r#"width="{plot:.1}""#)), "{svg}");
        assert!(svg.contains(&format!(r#"width="{:.1}""#, plot / 2.0)));
        assert!(!svg.contains("legend"), "one series, no legend");
    }

    #[test]
    fn negative_values_extend_left_of_a_zero_line_and_long_labels_are_cut() {
        let rows = vec![Row {
            label: "x".repeat(40),
            cells: vec![cell(-1.0), cell(1.0)],
        }];
        let svg = bar_chart("c", "t", &["a", "b"], &rows);
        assert!(svg.contains("<line"), "a zero line");
        assert!(svg.contains(&format!(">{}…</text>", "x".repeat(27))));
        assert_eq!(svg.matches(r#"class="legend""#).count(), 2);
    }
}

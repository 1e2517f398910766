//! The page: one HTML file with inline CSS, the charts as inline SVG (static, so they show
//! without JavaScript) and the dialogue browser (its data a JSON `<script>` block, its filters
//! vanilla JavaScript). Nothing is fetched from anywhere.
//!
//! Every number shown is a `data-key` (a JSON pointer into `report.json`) with a `data-value`
//! (the number as `report.json` spells it), so tests and readers can tie each one to its source.
//! The script marks `<html data-ready="1">` once the browser is drawn and `data-error` on any
//! uncaught error, which `scripts/report-screenshot.sh` checks.
//!
//! This file holds the page's frame and the cells every section uses; `run` and `text` the
//! sections, `browser` the dialogue browser's head, `page.css` and `browser.js` what is inlined.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Result;
use serde::Serialize;

mod browser;
mod run;
mod text;

use browser::browser_head;
use run::{checks, funnel, judge, labels, progress, summary};
use text::{coverage, distributions, diversity, spread};

use super::svg::{bar_chart, esc, Cell, Row};
use super::{BrowserDialogue, BrowserSummary, ReportData};
use crate::catalog::SIZE_NAMES;
use crate::metrics::coverage::{DimensionReport, DIMENSIONS, GOAL_DIMENSIONS};
use crate::metrics::lexical::Summary;
use crate::status::Share;

/// Charts list at most this many values (the most planned first); `report.json` has all.
const CHART_ROWS: usize = 30;

/// A JSON pointer from its reference tokens (RFC 6901).
fn ptr(tokens: &[&str]) -> String {
    tokens
        .iter()
        .map(|t| format!("/{}", t.replace('~', "~0").replace('/', "~1")))
        .collect()
}

/// A number as `report.json` writes it.
fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("numbers serialize")
}

/// A count with thousands separators: 12,345.
pub fn int(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn pct(share: f64) -> String {
    format!("{:.1}%", 100.0 * share)
}

/// A number shown in the text, tied to its place in `report.json`.
fn num<T: Serialize>(key: &str, value: &T, text: &str) -> String {
    format!(
        r#"<span class="num" data-key="{}" data-value="{}">{}</span>"#,
        esc(key),
        esc(&json(value)),
        esc(text)
    )
}

fn count_cell(key: String, n: u64) -> Cell {
    Cell {
        value: n as f64,
        key,
        json: json(&n),
        text: int(n),
    }
}

fn share_cell(key: String, share: f64) -> Cell {
    Cell {
        value: share,
        key,
        json: json(&share),
        text: pct(share),
    }
}

fn real_cell<T: Serialize + Into<f64> + Copy>(key: String, v: T, decimals: usize) -> Cell {
    let value: f64 = v.into();
    Cell {
        value,
        key,
        json: json(&v),
        text: format!("{value:.decimals$}"),
    }
}

/// One bar per entry of a count map.
fn count_rows<K: ToString>(base: &[&str], map: &BTreeMap<K, u64>) -> Vec<Row> {
    map.iter()
        .map(|(k, n)| {
            let k = k.to_string();
            let key = ptr(&[base, &[k.as_str()]].concat());
            Row {
                label: k,
                cells: vec![count_cell(key, *n)],
            }
        })
        .collect()
}

/// The rows of a count map, cut to [`CHART_ROWS`] (most first) with a note of the rest.
fn top_rows<K: ToString>(base: &[&str], map: &BTreeMap<K, u64>) -> (Vec<Row>, String) {
    let mut rows = count_rows(base, map);
    if rows.len() <= CHART_ROWS {
        return (rows, String::new());
    }
    rows.sort_by(|a, b| b.cells[0].value.total_cmp(&a.cells[0].value));
    let more = rows.len() - CHART_ROWS;
    rows.truncate(CHART_ROWS);
    (rows, more_note(more))
}

fn more_note(more: usize) -> String {
    format!(
        r#"<p class="note">The {CHART_ROWS} largest are shown; {more} more are in report.json.</p>"#
    )
}

fn share_rows<'a>(
    base: &[&str],
    shares: impl Iterator<Item = (&'a String, &'a Share)>,
) -> Vec<Row> {
    shares
        .map(|(name, s)| {
            let at = |field: &str| ptr(&[base, &[name.as_str(), field]].concat());
            Row {
                label: name.clone(),
                cells: vec![
                    share_cell(at("share"), s.share),
                    share_cell(at("target"), s.target),
                ],
            }
        })
        .collect()
}

/// Rows of a summary's statistics (count aside), one cell per side.
fn summary_rows(sides: &[(&[&str], &Summary)]) -> Vec<Row> {
    ["mean", "min", "p50", "p90", "p99", "max"]
        .iter()
        .map(|name| Row {
            label: name.to_string(),
            cells: sides
                .iter()
                .map(|(base, s)| {
                    let key = ptr(&[*base, &[name]].concat());
                    match *name {
                        "mean" => real_cell(key, s.mean, 2),
                        "min" => count_cell(key, s.min),
                        "p50" => count_cell(key, s.p50),
                        "p90" => count_cell(key, s.p90),
                        "p99" => count_cell(key, s.p99),
                        _ => count_cell(key, s.max),
                    }
                })
                .collect(),
        })
        .collect()
}

fn section(out: &mut String, id: &str, title: &str) {
    out.push_str(&format!(r#"<section id="{id}"><h2>{}</h2>"#, esc(title)));
}

fn chart(out: &mut String, heading: &str, svg: String) {
    out.push_str(&format!(
        r#"<figure><figcaption>{}</figcaption>{svg}</figure>"#,
        esc(heading)
    ));
}

/// The browser's coverage in words, for the page and the command's output.
pub fn browser_note(b: &BrowserSummary) -> String {
    if b.dialogues == 0 {
        "no dialogues yet".to_string()
    } else if b.sampled {
        format!(
            "showing {} of {} dialogues (seeded sample, seed {})",
            int(b.shown),
            int(b.dialogues),
            b.seed
        )
    } else {
        format!("showing all {} dialogues", int(b.shown))
    }
}

/// Writes the page.
pub fn write(out: &mut impl Write, r: &ReportData, dialogues: &[BrowserDialogue]) -> Result<()> {
    let s = &r.status;
    let mut page = String::with_capacity(256 << 10);
    page.push_str(&format!(
        r##"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>dgen report: {}</title>
<style>{CSS}</style>
<script>window.addEventListener("error",function(e){{document.documentElement.setAttribute("data-error",String(e.message||e.type));}});</script>
</head><body>
<header><h1>dgen report</h1><p>{} &middot; dgen {} &middot; plan {} &middot; seed {}</p>
<nav><a href="#summary">Summary</a><a href="#progress">Progress</a><a href="#funnel">Funnel</a><a href="#checks">Checks</a>{}<a href="#judge">Judge</a><a href="#diversity">Diversity</a><a href="#spread">Spread</a><a href="#coverage">Coverage</a><a href="#distributions">Distributions</a><a href="#browser">Dialogues</a></nav></header>
<main>
"##,
        esc(&s.store),
        esc(&s.store),
        esc(&s.dgen_version),
        esc(&s.plan_fingerprint),
        num("/seed", &s.seed, &s.seed.to_string()),
        if s.metrics.labels.is_some() {
            r##"<a href="#labels">Labels</a>"##
        } else {
            ""
        },
    ));
    summary(&mut page, r);
    progress(&mut page, r);
    super::concurrency::section(&mut page, &r.in_flight);
    funnel(&mut page, r);
    checks(&mut page, r);
    labels(&mut page, r);
    judge(&mut page, r);
    diversity(&mut page, r);
    spread(&mut page, r);
    coverage(&mut page, r);
    distributions(&mut page, r);
    browser_head(&mut page, r, dialogues);
    out.write_all(page.as_bytes())?;
    // The data: `<` escaped as \u003c, so no `</script>` or `<!--` in a dialogue ends the block.
    out.write_all(br#"<script type="application/json" id="dialogue-data">"#)?;
    serde_json::to_writer(EscapeLt(&mut *out), dialogues)?;
    out.write_all(b"</script>\n<script>")?;
    out.write_all(SCRIPT.as_bytes())?;
    out.write_all(b"</script>\n</section>\n</main></body></html>\n")?;
    Ok(())
}

/// Writes JSON with every `<` as `\u003c` (valid JSON, and inert inside `<script>`).
struct EscapeLt<W>(W);

impl<W: Write> Write for EscapeLt<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        while let Some(i) = rest.iter().position(|b| *b == b'<') {
            self.0.write_all(&rest[..i])?;
            self.0.write_all(br"\u003c")?;
            rest = &rest[i + 1..];
        }
        self.0.write_all(rest)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

fn fact(out: &mut String, label: &str, value: String) {
    out.push_str(&format!(
        r#"<div class="fact"><dt>{}</dt><dd>{value}</dd></div>"#,
        esc(label)
    ));
}

/// The page's style and the browser's script, inlined into every report.
const CSS: &str = include_str!("page.css");
const SCRIPT: &str = include_str!("browser.js");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_get_thousands_separators_and_pointers_escape_slashes() {
        assert_eq!(int(0), "0");
        assert_eq!(int(999), "999");
        assert_eq!(int(1000), "1,000");
        assert_eq!(int(1_234_567), "1,234,567");
        assert_eq!(ptr(&["a", "b/c", "d~e"]), "/a/b~1c/d~0e");
    }

    #[test]
    fn json_in_the_page_cannot_close_its_script_block() {
        let mut out = Vec::new();
        serde_json::to_writer(EscapeLt(&mut out), &["</script><!--", "a<b"]).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains('<'), "{text}");
        let back: Vec<String> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, ["</script><!--", "a<b"]);
    }
}

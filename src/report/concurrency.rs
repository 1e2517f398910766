//! The report's "Requests in flight" section: the requests `dgen run` held open over time and
//! its adaptive limit (see `llm::limiter`), from the store's in-flight series, drawn as an SVG
//! line chart. Kept apart from the bar charts: one kind of data, one small chart.

use std::fmt::Write;

use serde::Serialize;

use super::svg::esc;
use crate::llm::limiter::Sample;

/// The most points the chart draws; a longer series is thinned to this many (each keeping the
/// most requests in flight of the samples it stands for).
pub const POINTS_CAP: usize = 600;
/// A pause longer than this between two samples separates two runs.
const RUN_GAP_MS: u64 = 60_000;

/// The series as `report.json` holds it (under `in_flight`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct InFlightSeries {
    /// Samples in the store (one a second of running, sparser on long runs).
    pub samples: u64,
    pub max_in_flight: u32,
    /// What the chart draws, at most [`POINTS_CAP`].
    pub points: Vec<InFlightPoint>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct InFlightPoint {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub in_flight: u32,
    pub limit: u32,
}

/// Thins the samples to at most [`POINTS_CAP`] points.
pub fn series(samples: &[Sample]) -> InFlightSeries {
    let per_point = samples.len().div_ceil(POINTS_CAP).max(1);
    let points = samples
        .chunks(per_point)
        .map(|chunk| InFlightPoint {
            at_ms: chunk[0].at_ms,
            in_flight: chunk.iter().map(|s| s.in_flight).max().unwrap_or(0),
            limit: chunk.last().map_or(0, |s| s.limit),
        })
        .collect();
    InFlightSeries {
        samples: samples.len() as u64,
        max_in_flight: samples.iter().map(|s| s.in_flight).max().unwrap_or(0),
        points,
    }
}

/// The section; nothing before a run has recorded the series.
pub fn section(out: &mut String, series: &InFlightSeries) {
    if series.points.is_empty() {
        return;
    }
    out.push_str(r#"<section id="in-flight"><h2>Requests in flight</h2>"#);
    out.push_str(&format!(
        "<figure><figcaption>Requests in flight (blue, the most in each sample) and the adaptive limit (orange) over {} s of running; at most {} at once</figcaption>{}</figure>",
        running_seconds(&series.points),
        series.max_in_flight,
        chart(&series.points)
    ));
    out.push_str("</section>\n");
}

/// Seconds of running the points span, pauses between runs left out.
fn running_seconds(points: &[InFlightPoint]) -> u64 {
    points
        .windows(2)
        .map(|w| w[1].at_ms.saturating_sub(w[0].at_ms))
        .filter(|&gap| gap <= RUN_GAP_MS)
        .sum::<u64>()
        / 1000
}

fn chart(points: &[InFlightPoint]) -> String {
    const W: f64 = 600.0;
    const H: f64 = 180.0;
    const LEFT: f64 = 40.0;
    const BOTTOM: f64 = 20.0;
    // Time on the x axis runs over running time: a pause between runs is closed up.
    let mut x = Vec::with_capacity(points.len());
    let mut t = 0u64;
    for (i, p) in points.iter().enumerate() {
        if i > 0 {
            let gap = p.at_ms.saturating_sub(points[i - 1].at_ms);
            t += if gap > RUN_GAP_MS { 0 } else { gap };
        }
        x.push(t);
    }
    let span = (*x.last().unwrap_or(&0)).max(1) as f64;
    let top = points
        .iter()
        .map(|p| p.in_flight.max(p.limit))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let px = |t: u64| LEFT + (W - LEFT - 4.0) * t as f64 / span;
    let py = |v: u32| (H - BOTTOM) - (H - BOTTOM - 6.0) * f64::from(v) / top;
    let line = |value: fn(&InFlightPoint) -> u32| {
        let mut d = String::new();
        for (p, t) in points.iter().zip(&x) {
            let _ = write!(d, "{:.1},{:.1} ", px(*t), py(value(p)));
        }
        d
    };
    let mut svg = format!(
        r#"<svg id="chart-in-flight" class="chart" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{}">"#,
        esc("Requests in flight over time")
    );
    let axis = H - BOTTOM;
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" y1="{axis}" x2="{W}" y2="{axis}" stroke="#999"/><line x1="{LEFT}" y1="6" x2="{LEFT}" y2="{axis}" stroke="#999"/><text x="{:.0}" y="{:.0}" font-size="11" text-anchor="end">{}</text><text x="{:.0}" y="{:.0}" font-size="11" text-anchor="end">0</text><text x="{W}" y="{H}" font-size="11" text-anchor="end">{:.0} s</text>"##,
        LEFT - 4.0,
        py(top as u32) + 4.0,
        top,
        LEFT - 4.0,
        axis,
        span / 1000.0
    );
    let _ = write!(
        svg,
        r##"<polyline fill="none" stroke="#f58518" stroke-width="1.5" points="{}"><title>limit</title></polyline><polyline fill="none" stroke="#4c78a8" stroke-width="1.5" points="{}"><title>requests in flight</title></polyline></svg>"##,
        line(|p| p.limit),
        line(|p| p.in_flight)
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_series_is_thinned_keeping_the_peaks() {
        let samples: Vec<Sample> = (0..1500u64)
            .map(|i| Sample {
                at_ms: i * 1000,
                in_flight: if i == 777 { 50 } else { 3 },
                limit: 4,
            })
            .collect();
        let s = series(&samples);
        assert_eq!(s.samples, 1500);
        assert!(s.points.len() <= POINTS_CAP);
        assert_eq!(s.max_in_flight, 50);
        assert_eq!(s.points.iter().map(|p| p.in_flight).max(), Some(50));
        let mut page = String::new();
        section(&mut page, &s);
        assert!(page.contains(r#"id="chart-in-flight""#));
        assert!(page.contains("over 1497 s of running"));
        let mut none = String::new();
        section(&mut none, &series(&[]));
        assert!(none.is_empty());
    }
}

//! The dialogue browser's head: its filters and the list it fills in (the page's script,
//! `browser.js`, draws it from the JSON data block).

use super::super::ReportData;
use super::*;

fn select(out: &mut String, name: &str, label: &str, any: &str, options: &[String]) {
    out.push_str(&format!(
        r#"<label>{} <select id="filter-{name}"><option value="">{}</option>"#,
        esc(label),
        esc(any)
    ));
    for o in options {
        out.push_str(&format!(
            r#"<option value="{}">{}</option>"#,
            esc(o),
            esc(o)
        ));
    }
    out.push_str("</select></label>");
}

fn distinct<'a>(values: impl Iterator<Item = &'a String>) -> Vec<String> {
    let set: std::collections::BTreeSet<&String> = values.collect();
    set.into_iter().cloned().collect()
}

/// The browser's heading, note and filters; the data and script follow.
pub(super) fn browser_head(out: &mut String, r: &ReportData, dialogues: &[BrowserDialogue]) {
    let b = &r.browser;
    section(out, "browser", "Dialogues");
    let note = if b.dialogues == 0 {
        "No dialogues yet.".to_string()
    } else if b.sampled {
        format!(
            "Showing {} of {} dialogues (seeded sample, seed {}).",
            num("/browser/shown", &b.shown, &int(b.shown)),
            num("/browser/dialogues", &b.dialogues, &int(b.dialogues)),
            b.seed
        )
    } else {
        format!(
            "Showing all {} dialogues.",
            num("/browser/shown", &b.shown, &int(b.shown))
        )
    };
    out.push_str(&format!(r#"<p id="browser-note">{note}</p>"#));
    out.push_str(r#"<noscript><p class="note">The dialogue browser needs JavaScript; the charts above do not.</p></noscript>"#);
    out.push_str(r#"<form id="filters" onsubmit="return false">"#);
    let services = distinct(dialogues.iter().flat_map(|d| d.services.iter()));
    select(out, "service", "service", "any service", &services);
    let outcomes = distinct(dialogues.iter().map(|d| &d.resolution_status));
    select(out, "outcome", "outcome", "any outcome", &outcomes);
    let user = distinct(dialogues.iter().map(|d| &d.user_emotion));
    select(out, "user-emotion", "user emotion", "any", &user);
    let assistant = distinct(dialogues.iter().map(|d| &d.assistant_emotion));
    select(
        out,
        "assistant-emotion",
        "assistant emotion",
        "any",
        &assistant,
    );
    let mut checks = vec!["(none)".to_string()];
    checks.extend(r.checks.iter().map(|c| c.check.to_string()));
    select(out, "check", "check", "any", &checks);
    if r.status.metrics.judge.judged > 0 {
        let mut scores = vec!["(unscored)".to_string()];
        scores.extend((1..=5).map(|s: u8| s.to_string()));
        select(out, "judge", "judge score", "any", &scores);
    }
    out.push_str("</form>");
    out.push_str(r#"<p id="browser-count"></p><div class="browser"><div class="list"><table id="dialogue-list"><thead><tr><th>#</th><th>dialogue</th><th>services</th><th>outcome</th><th>emotions (user / assistant)</th><th>checks</th><th>judge</th></tr></thead><tbody id="dialogue-rows"></tbody></table><button type="button" id="more" hidden>show more</button></div><div id="dialogue-detail"></div></div>"#);
    out.push('\n');
}

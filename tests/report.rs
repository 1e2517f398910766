//! `dgen report`: the page parses, every section and chart is there, every number it shows is
//! `report.json`'s and `report.json` is `dgen status --json` plus the report's own figures; the
//! browser holds every dialogue up to 2,000 and a seeded sample above; a running run answers
//! the request; bad paths are named.

mod common;

use std::collections::BTreeSet;
use std::process::Child;
use std::time::{Duration, Instant};

use common::mock::MockServer;
use common::Env;
use predicates::prelude::*;
use scraper::{Html, Selector};
use serde_json::json;
use serde_json::Value;

const SECTIONS: [&str; 10] = [
    "summary",
    "progress",
    "funnel",
    "checks",
    "judge",
    "diversity",
    "spread",
    "coverage",
    "distributions",
    "browser",
];

/// The charts every report over a run with accepted dialogues has.
fn charts() -> Vec<String> {
    let mut ids: Vec<String> = [
        "states", "funnel", "checks", "distinct", "turns", "words", "spread",
    ]
    .iter()
    .map(|c| format!("chart-{c}"))
    .collect();
    for dim in [
        "service_count",
        "combination",
        "category",
        "region",
        "time_slot",
        "user_emotion",
        "assistant_emotion",
        "outcome",
    ] {
        ids.push(format!("chart-coverage-{dim}"));
    }
    for dist in [
        "service_count",
        "resolution_statuses",
        "combinations",
        "primary_services",
        "categories",
        "regions",
        "time_slots",
        "user_emotions",
        "assistant_emotions",
        "min_turns",
        "max_turns",
    ] {
        ids.push(format!("chart-dist-{dist}"));
    }
    ids
}

fn sel(css: &str) -> Selector {
    Selector::parse(css).unwrap()
}

struct Written {
    html: Html,
    json: Value,
    dialogues: Vec<Value>,
}

fn read_report(env: &Env, html: &str, json: &str) -> Written {
    let text = std::fs::read_to_string(env.path(html)).unwrap();
    let html = Html::parse_document(&text);
    assert!(
        html.errors.is_empty(),
        "the page parses cleanly: {:?}",
        html.errors
    );
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(env.path(json)).unwrap()).unwrap();
    let data = html
        .select(&sel("script#dialogue-data"))
        .next()
        .expect("the browser's data block");
    let dialogues = serde_json::from_str(&data.text().collect::<String>()).unwrap();
    Written {
        html,
        json,
        dialogues,
    }
}

fn text_of(html: &Html, css: &str) -> String {
    html.select(&sel(css))
        .next()
        .unwrap_or_else(|| panic!("no {css}"))
        .text()
        .collect()
}

/// `report.json` without the report's own keys: what `dgen status --json` printed.
fn status_part(report: &Value) -> Value {
    let mut rest = report.clone();
    for key in ["checks", "browser", "in_flight"] {
        rest.as_object_mut().unwrap().remove(key).expect(key);
    }
    rest
}

/// Every number in the page: its `data-value` is `report.json`'s at `data-key`, and the text
/// shown rounds it. Returns how many were checked.
fn numbers_match_the_json(page: &Html, json: &Value) -> usize {
    let mut checked = 0;
    for el in page.select(&sel("[data-key]")) {
        let key = el.value().attr("data-key").unwrap();
        let shown: Value = serde_json::from_str(el.value().attr("data-value").unwrap()).unwrap();
        let want = json
            .pointer(key)
            .unwrap_or_else(|| panic!("{key} is not in report.json"));
        assert_eq!(&shown, want, "the page's {key}");
        if el.value().name() == "span" {
            let text: String = el.text().collect();
            let rounded = shown_number(&text);
            let exact = want.as_f64().unwrap();
            let (value, tolerance) = match rounded {
                (v, decimals, true) => (v / 100.0, 0.5 * 10f64.powi(-(decimals as i32)) / 100.0),
                (v, decimals, false) => (v, 0.5 * 10f64.powi(-(decimals as i32))),
            };
            assert!(
                (value - exact).abs() <= tolerance + 1e-12,
                "{key}: the page shows {text}, report.json has {exact}"
            );
        }
        checked += 1;
    }
    checked
}

/// A number as the page writes it ("12,345", "$0.0012", "+3.4%", "0.853"): its value, its
/// decimals, whether it is a percentage.
fn shown_number(text: &str) -> (f64, usize, bool) {
    let percent = text.ends_with('%');
    let digits: String = text
        .chars()
        .filter(|c| c.is_ascii_digit() || matches!(c, '.' | '-'))
        .collect();
    let decimals = digits.split_once('.').map_or(0, |(_, d)| d.len());
    (
        digits
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {text}")),
        decimals,
        percent,
    )
}

#[test]
fn report_after_a_run_holds_every_section_chart_and_dialogue_with_status_numbers() {
    let env = Env::new();
    let mock = MockServer::start();
    env.plan_for_run(8);
    env.run(&mock, &["--concurrency", "2"]).assert().success();
    let status = env.status_json();
    env.dgen()
        .arg("report")
        .assert()
        .success()
        .stdout("wrote report.html and report.json: showing all 8 dialogues\n");
    let r = read_report(&env, "report.html", "report.json");
    assert_eq!(
        status_part(&r.json),
        status,
        "report.json is status --json plus its own"
    );

    for id in SECTIONS {
        assert!(
            r.html
                .select(&sel(&format!("section#{id} h2")))
                .next()
                .is_some(),
            "section {id}"
        );
    }
    for id in charts() {
        let chart = r
            .html
            .select(&sel(&format!("svg#{id}")))
            .next()
            .unwrap_or_else(|| panic!("chart {id}"));
        let bars = chart.select(&sel("rect[data-key]")).count();
        assert!(bars > 0, "{id} has bars");
    }
    let checked = numbers_match_the_json(&r.html, &r.json);
    assert!(checked > 300, "only {checked} numbers in the page");

    // The figures a reader looks for first, against status --json itself.
    let shown = |key: &str| text_of(&r.html, &format!(r#"span[data-key="{key}"]"#));
    assert_eq!(shown("/metrics/funnel/accepted"), "8");
    assert_eq!(status["metrics"]["funnel"]["accepted"], 8);
    let d1 = status["metrics"]["lexical"]["user"]["distinct_1"]
        .as_f64()
        .unwrap();
    let bar = r
        .html
        .select(&sel(
            r#"svg#chart-distinct rect[data-key="/metrics/lexical/user/distinct_1"]"#,
        ))
        .next()
        .unwrap();
    assert_eq!(
        bar.value()
            .attr("data-value")
            .unwrap()
            .parse::<f64>()
            .unwrap(),
        d1
    );
    let dev = &status["metrics"]["coverage"]["dimensions"]["region"]["largest_deviation"];
    let key = "/metrics/coverage/dimensions/region/largest_deviation/deviation";
    assert_eq!(
        shown(key),
        format!("{:+.1}%", 100.0 * dev["deviation"].as_f64().unwrap())
    );

    // Per-check counts are status's counters under each check's name.
    let checks = r.json["checks"].as_array().unwrap();
    assert_eq!(
        checks.len(),
        dgen::quality::Check::TEXT.len(),
        "a plain store's report has the text checks alone"
    );
    for c in checks {
        let name = c["check"].as_str().unwrap();
        let flagged = status["run"]["checks"]
            .get(name)
            .cloned()
            .unwrap_or(0.into());
        let rejected = status["run"]["rejections"]
            .get(name)
            .cloned()
            .unwrap_or(0.into());
        assert_eq!(
            (&c["flagged"], &c["rejected"]),
            (&flagged, &rejected),
            "{name}"
        );
    }

    // No judge scores in this store: no histogram, no judge filter, and the page says so.
    assert_eq!(r.json["metrics"]["judge"]["judged"], 0);
    assert!(r.html.select(&sel("svg#chart-judge")).next().is_none());
    assert!(r.html.select(&sel("select#filter-judge")).next().is_none());
    assert!(text_of(&r.html, "section#judge").contains("No dialogue has a judge score yet"));

    // The browser: every dialogue, in the export's order, with its checks.
    let exported = env.export_all().records;
    assert_eq!(r.dialogues.len(), 8);
    for (shown, record) in r.dialogues.iter().zip(&exported) {
        assert_eq!(shown["dialogue_id"], record["dialogue_id"]);
        assert_eq!(shown["checks"], record["quality"]["checks"]);
        assert_eq!(shown["persona"], record["persona"]);
        assert_eq!(shown["generated_scenario"], record["generated_scenario"]);
        assert_eq!(shown["turns"].as_array().unwrap().len(), 3);
    }
    let ids: Vec<&Value> = r.dialogues.iter().map(|d| &d["dialogue_id"]).collect();
    let listed: Vec<&Value> = r.json["browser"]["dialogue_ids"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(ids, listed);
    assert_eq!(
        text_of(&r.html, "#browser-note"),
        "Showing all 8 dialogues."
    );

    // Filters list what the dialogues have.
    let options = |id: &str| -> Vec<String> {
        r.html
            .select(&sel(&format!("select#filter-{id} option")))
            .map(|o| o.value().attr("value").unwrap().to_string())
            .collect()
    };
    let services: BTreeSet<String> = r
        .dialogues
        .iter()
        .flat_map(|d| d["services"].as_array().unwrap().iter())
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        options("service")[1..],
        services.into_iter().collect::<Vec<_>>()
    );
    assert_eq!(
        options("check"),
        [
            "",
            "(none)",
            "outcome_mismatch",
            "copied_example",
            "copied_reference",
            "repetitive",
            "off_topic",
            "placeholder",
            "short_utterances",
            "repeated_reply",
            "intent_labels"
        ]
    );
    for id in ["outcome", "user-emotion", "assistant-emotion"] {
        assert!(options(id).len() > 1, "{id} has options");
    }

    // Self-contained: nothing is loaded from anywhere.
    assert!(r
        .html
        .select(&sel("script[src], link, img, iframe"))
        .next()
        .is_none());
    for a in r.html.select(&sel("a[href]")) {
        assert!(a.value().attr("href").unwrap().starts_with('#'));
    }
    let text = std::fs::read_to_string(env.path("report.html")).unwrap();
    assert_eq!(
        text.matches("http").count(),
        text.matches("http://www.w3.org/2000/svg").count(),
        "no URL besides the SVG namespace"
    );
}

#[test]
fn above_2000_dialogues_the_browser_holds_a_seeded_sample_of_2000_and_says_so() {
    let env = Env::new();
    env.plan(10, &[]).assert().success();
    env.dgen()
        .args(["bench-fill", "--dialogues", "2500"])
        .assert()
        .success();
    env.dgen()
        .args(["report", "--out", "a.html", "--json", "a.json"])
        .assert()
        .success()
        .stdout(
            "wrote a.html and a.json: showing 2,000 of 2,500 dialogues (seeded sample, seed 42)\n",
        );
    let r = read_report(&env, "a.html", "a.json");
    assert_eq!(
        text_of(&r.html, "#browser-note"),
        "Showing 2,000 of 2,500 dialogues (seeded sample, seed 42)."
    );
    assert_eq!(r.dialogues.len(), 2000);
    let b = &r.json["browser"];
    assert_eq!(
        (&b["shown"], &b["dialogues"], &b["sampled"]),
        (&2000.into(), &2500.into(), &true.into())
    );
    let seqs: Vec<u64> = r
        .dialogues
        .iter()
        .map(|d| d["seq"].as_u64().unwrap())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "store order, no repeats"
    );
    assert!(*seqs.last().unwrap() < 2500);
    assert!(
        seqs.iter().any(|s| *s >= 2000),
        "drawn from the whole store"
    );
    assert_eq!(status_part(&r.json), env.status_json());
    numbers_match_the_json(&r.html, &r.json);

    // The same store gives the same page, byte for byte.
    env.dgen()
        .args(["report", "--out", "b.html", "--json", "b.json"])
        .assert()
        .success();
    assert!(
        std::fs::read(env.path("a.html")).unwrap() == std::fs::read(env.path("b.html")).unwrap()
    );
}

#[test]
fn a_store_without_dialogues_gets_a_report_that_says_so() {
    let env = Env::new();
    env.plan(5, &[]).assert().success();
    env.dgen()
        .arg("report")
        .assert()
        .success()
        .stdout("wrote report.html and report.json: no dialogues yet\n");
    let r = read_report(&env, "report.html", "report.json");
    assert!(r.dialogues.is_empty());
    assert_eq!(text_of(&r.html, "#browser-note"), "No dialogues yet.");
    for id in SECTIONS {
        assert!(r
            .html
            .select(&sel(&format!("section#{id}")))
            .next()
            .is_some());
    }
    assert!(text_of(&r.html, "section#spread").contains("fewer than two dialogues"));
    numbers_match_the_json(&r.html, &r.json);
}

#[test]
fn bad_paths_and_a_missing_store_are_named_with_the_fix() {
    let env = Env::new();
    env.dgen()
        .arg("report")
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "no store at dgen.redb; create one with `dgen plan --total_generations N`",
        ));
    env.plan(5, &[]).assert().success();
    env.dgen()
        .args(["report", "--out", "missing/r.html"])
        .assert()
        .failure()
        .stderr("error: cannot write missing/r.html: folder missing does not exist; create it or choose another path\n");
    // A JSON that cannot be written leaves no page either (both files or neither).
    env.dgen()
        .args(["report", "--json", "missing/r.json"])
        .assert()
        .failure()
        .stderr("error: cannot write missing/r.json: folder missing does not exist; create it or choose another path\n");
    env.dgen()
        .args(["report", "--out", "same", "--json", "./same"])
        .assert()
        .failure()
        .stderr("error: --out and --json both name same; give them different files\n");
    // The store itself, by any spelling, is never written over.
    let plan_before = std::fs::read(env.dir.path().join("dgen.redb")).unwrap();
    for args in [["--out", "dgen.redb"], ["--json", "./dgen.redb"]] {
        env.dgen()
            .arg("report")
            .args(args)
            .assert()
            .failure()
            .stderr(predicate::str::contains(format!(
                "{} {} is the store dgen.redb itself",
                args[0], args[1]
            )));
    }
    assert_eq!(
        std::fs::read(env.dir.path().join("dgen.redb")).unwrap(),
        plan_before,
        "the store is untouched"
    );
    let mut left: Vec<String> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["dgen.redb"],
        "nothing written, no temporary files left"
    );
}

fn wait_until(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ready() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sigterm(child: &Child) {
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[test]
fn a_report_during_a_run_is_written_by_the_run() {
    let env = Env::new();
    let mock = MockServer::start();
    mock.set_latency(Duration::from_millis(100));
    env.plan_for_run(400);
    env.dgen()
        .args(["bench-fill", "--dialogues", "50"])
        .assert()
        .success();
    let mut run = env.spawn_run(&mock, &["--concurrency", "2"]);
    wait_until("the run's socket", Duration::from_secs(60), || {
        assert!(run.try_wait().unwrap().is_none(), "the run ended early");
        std::os::unix::net::UnixStream::connect(env.path("dgen.redb.sock")).is_ok()
    });
    wait_until("a generated dialogue", Duration::from_secs(120), || {
        common::count_in(&env.status_json(), "done") >= 1
    });
    std::fs::create_dir(env.path("out")).unwrap();
    // Relative paths are the client's, not the run's; the run names the absolute ones.
    let said = format!(
        "wrote {} and {}: showing all ",
        env.path("out/live.html").display(),
        env.path("out/live.json").display()
    );
    env.dgen()
        .args([
            "report",
            "--out",
            "out/live.html",
            "--json",
            "out/live.json",
        ])
        .assert()
        .success()
        .stdout(predicate::str::starts_with(said));
    assert!(run.try_wait().unwrap().is_none(), "the run is still going");
    let r = read_report(&env, "out/live.html", "out/live.json");
    let seen = r.json["browser"]["dialogues"].as_u64().unwrap();
    assert!(seen > 50, "the run's dialogues are in: {seen}");
    assert_eq!(r.dialogues.len() as u64, seen);
    assert!(r.json["metrics"]["funnel"]["accepted"].as_u64().unwrap() >= 1);
    numbers_match_the_json(&r.html, &r.json);
    sigterm(&run);
    assert_eq!(run.wait().unwrap().code(), Some(130));
}

/// `dgen judge` against the store's run endpoint (the mock), short retry delays, no key.
fn judge(env: &Env, extra: &[&str]) -> assert_cmd::Command {
    let mut cmd = env.dgen();
    cmd.env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_KEY")
        .env_remove("OPENAI_BASE_URL")
        .args(["judge", "--retry_base_ms", "20"])
        .args(extra)
        .timeout(Duration::from_secs(300));
    cmd
}

/// The `data-value` of every bar of a chart, by its `data-key`.
fn bars(page: &Html, chart: &str) -> Vec<(String, Value)> {
    page.select(&sel(&format!("svg#{chart} rect[data-key]")))
        .map(|r| {
            let value = serde_json::from_str(r.value().attr("data-value").unwrap()).unwrap();
            (r.value().attr("data-key").unwrap().to_string(), value)
        })
        .collect()
}

#[test]
fn report_after_dgen_judge_shows_status_judge_figures_and_each_dialogues_score() {
    let env = Env::new();
    let mock = MockServer::start();
    env.plan_for_run(6);
    env.run(&mock, &["--concurrency", "2"]).assert().success();
    // One low score among the judged, two dialogues left unjudged.
    mock.judge_low_first(1);
    judge(&env, &["--limit", "4", "--concurrency", "1"])
        .assert()
        .success();
    let status = env.status_json();
    let j = &status["metrics"]["judge"];
    assert_eq!(
        (&j["dialogues"], &j["judged"], &j["mean_overall"]),
        (&json!(6), &json!(4), &json!(4.0))
    );
    assert_eq!(
        j["overall_histogram"],
        json!({"1": 1, "2": 0, "3": 0, "4": 0, "5": 3})
    );
    env.dgen().arg("report").assert().success();
    let r = read_report(&env, "report.html", "report.json");
    assert_eq!(status_part(&r.json), status);
    assert!(r.json.get("judge").is_none(), "one judge section: status's");
    numbers_match_the_json(&r.html, &r.json);

    // The histogram and the means are status --json's `metrics.judge`.
    let want: Vec<(String, Value)> = (1..=5)
        .map(|s| {
            (
                format!("/metrics/judge/overall_histogram/{s}"),
                j["overall_histogram"][s.to_string()].clone(),
            )
        })
        .collect();
    assert_eq!(bars(&r.html, "chart-judge"), want);
    let shown = |key: &str| text_of(&r.html, &format!(r#"span[data-key="{key}"]"#));
    assert_eq!(shown("/metrics/judge/mean_overall"), "4.00");
    assert_eq!(shown("/metrics/judge/judged"), "4");
    assert_eq!(shown("/metrics/judge/calls"), "4");
    assert_eq!(shown("/run/judge_calls"), "4");
    let criteria = bars(&r.html, "chart-judge-criteria");
    assert_eq!(criteria.len(), 7, "{criteria:?}");
    for (key, value) in &criteria {
        let name = key.strip_prefix("/metrics/judge/mean_scores/").unwrap();
        assert_eq!(value, &j["mean_scores"][name], "{name}");
    }
    assert!(text_of(&r.html, "section#judge").contains("4 of 6 dialogues judged"));

    // The browser: each dialogue carries its stored score, and they add up to the histogram.
    let exported = env.export_all().records;
    assert_eq!(r.dialogues.len(), 6);
    let mut histogram = json!({"1": 0, "2": 0, "3": 0, "4": 0, "5": 0});
    for (d, record) in r.dialogues.iter().zip(&exported) {
        assert_eq!(d["dialogue_id"], record["dialogue_id"]);
        assert_eq!(d["judge"], record["quality"]["judge"]);
        if let Some(overall) = d["judge"]["overall"].as_u64() {
            let n = &mut histogram[overall.to_string()];
            *n = json!(n.as_u64().unwrap() + 1);
        }
    }
    assert_eq!(histogram, j["overall_histogram"]);
    let options: Vec<&str> = r
        .html
        .select(&sel("select#filter-judge option"))
        .map(|o| o.value().attr("value").unwrap())
        .collect();
    assert_eq!(options, ["", "(unscored)", "1", "2", "3", "4", "5"]);
}

#[test]
fn a_report_while_dgen_judge_holds_the_store_is_written_by_the_judge() {
    let env = Env::new();
    let mock = MockServer::start();
    env.plan_for_run(20);
    env.run(&mock, &["--concurrency", "2"]).assert().success();
    mock.set_latency(Duration::from_millis(300));
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("dgen"))
        .current_dir(env.dir.path())
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("RUST_LOG")
        .args(["judge", "--concurrency", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    env.wait_for_status("a committed score", |s| {
        s["metrics"]["judge"]["judged"].as_u64() >= Some(1)
    });
    // The judge names the absolute paths: it, not this process, wrote the files.
    let said = format!("wrote {} and ", env.path("report.html").display());
    env.dgen()
        .arg("report")
        .assert()
        .success()
        .stdout(predicate::str::starts_with(said));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the judge is still going"
    );
    let r = read_report(&env, "report.html", "report.json");
    numbers_match_the_json(&r.html, &r.json);
    let judged = r.json["metrics"]["judge"]["judged"].as_u64().unwrap();
    assert!((1..20).contains(&judged), "mid-pass: {judged}");
    let scored = r.dialogues.iter().filter(|d| !d["judge"].is_null()).count() as u64;
    assert_eq!(
        scored, judged,
        "the browser and the figures read one snapshot"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

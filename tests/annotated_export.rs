//! SGD and MultiWOZ 2.2 dialogues in and out: `dgen import` keeps their frames, and `dgen
//! export --sgd/--chat/--multiwoz` writes them back in those layouts. The exports are read by
//! tests/format_checks.py, a stdlib-Python reimplementation of what google-research's
//! schema_guided_dst reader relies on and of OpenAI's chat fine-tuning format rules.

mod common;

use std::path::Path;
use std::process::Command;

use common::mock::MockServer;
use common::{count_in, fixture, Env, TURNS};
use predicates::prelude::*;
use serde_json::{json, Value};

fn import(env: &Env, input: &Path, rows: usize) -> assert_cmd::Command {
    env.one_hot_embeddings("e.npy", rows);
    let mut cmd = env.dgen();
    cmd.arg("import")
        .arg("--output_file")
        .arg(input)
        .args(["--embedding_file", "e.npy"]);
    cmd
}

fn read(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The fixture's three SGD dialogues, in a store with a plain plan.
fn sgd_store() -> Env {
    let env = Env::new();
    env.plan(2, &[]).assert().success();
    import(&env, &fixture("sgd"), 3)
        .assert()
        .success()
        .stdout(predicate::str::contains("imported 3 dialogues"));
    env
}

/// tests/format_checks.py on `path`: its exit status and what it printed.
fn format_checks(kind: &str, path: &Path) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/format_checks.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(kind)
        .arg(path)
        .output()
        .expect("python3 runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn an_sgd_split_round_trips_through_import_and_export_sgd_unchanged() {
    let env = sgd_store();
    env.dgen()
        .args(["export", "--sgd", "out", "--include_imported"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "exported 3 dialogues to the SGD folder out: 1 dialogues_*.json file and schema.json (4 services)",
        ));
    // Every turn: speakers, utterances, frames (states, spans, actions, calls, results).
    let input = read(&fixture("sgd/dialogues_001.json"));
    let output = read(&env.path("out/dialogues_001.json"));
    assert_eq!(output, input);
    let (ok, said) = format_checks("sgd", &env.path("out"));
    assert!(ok, "{said}");
    assert!(
        said.contains("ok: 3 dialogues in 1 files, 4 services"),
        "{said}"
    );
    let schema = read(&env.path("out/schema.json"));
    let media = schema
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service_name"] == "Media_1")
        .unwrap();
    assert_eq!(media["intents"][0]["name"], "PlayMovie");

    // The checks can fail: a span moved off its value is named.
    let mut broken = output.clone();
    broken[1]["turns"][2]["frames"][0]["slots"][0]["start"] = json!(11);
    std::fs::write(
        env.path("out/dialogues_001.json"),
        serde_json::to_string(&broken).unwrap(),
    )
    .unwrap();
    let (ok, said) = format_checks("sgd", &env.path("out"));
    assert!(!ok);
    assert!(
        said.contains("2_00090 turn 2 Media_1: span text ' Red Joan' of title"),
        "{said}"
    );

    // Without --include_imported the imported dialogues stay out, and the earlier export's
    // dialogue files go (schema.json is rewritten).
    env.dgen()
        .args(["export", "--sgd", "out"])
        .assert()
        .success()
        .stdout(predicate::str::contains("exported 0 dialogues"))
        .stdout(predicate::str::contains(
            "left out 3 imported dialogues (add --include_imported to export them)",
        ));
    assert!(!env.path("out/dialogues_001.json").exists());
    assert_eq!(read(&env.path("out/schema.json")), json!([]));
}

#[test]
fn sgd_dialogues_that_do_not_pair_up_are_refused_by_name_and_the_rest_import() {
    let env = Env::new();
    env.plan(2, &[]).assert().success();
    let mut dialogues = read(&fixture("sgd/dialogues_001.json"));
    let list = dialogues.as_array_mut().unwrap();
    let mut ends_on_user = list[1].clone();
    ends_on_user["dialogue_id"] = json!("odd");
    ends_on_user["turns"].as_array_mut().unwrap().pop();
    let mut twice = list[1].clone();
    twice["dialogue_id"] = json!("twice");
    twice["turns"][1]["speaker"] = json!("USER");
    list.push(ends_on_user);
    list.push(twice);
    std::fs::write(env.path("mixed.json"), dialogues.to_string()).unwrap();
    import(&env, &env.path("mixed.json"), 5)
        .assert()
        .success()
        .stdout(predicate::str::contains("imported 3 dialogues"))
        .stderr(predicate::str::contains(
            "refused 2 dialogues that dgen cannot store",
        ))
        .stderr(predicate::str::contains(
            "dialogue 3 (odd): it ends on a USER turn (turn 6)",
        ))
        .stderr(predicate::str::contains(
            "dialogue 4 (twice): turn 1 is spoken by \"USER\" where a SYSTEM turn belongs",
        ));
    assert_eq!(env.status_json()["run"]["imported"], 3);

    // A file of nothing but refused dialogues fails, and imports nothing.
    let only_bad = json!([dialogues[3].clone()]);
    std::fs::write(env.path("bad.json"), only_bad.to_string()).unwrap();
    import(&env, &env.path("bad.json"), 1)
        .assert()
        .failure()
        .stderr(predicate::str::contains("every dialogue was refused"));
    assert_eq!(env.status_json()["run"]["imported"], 3);
}

#[test]
fn chat_export_turns_service_calls_into_answered_tool_calls() {
    let env = sgd_store();
    // With --sgd in one pass: both are written, each said.
    env.dgen()
        .args([
            "export",
            "--chat",
            "chat.jsonl",
            "--sgd",
            "out",
            "--include_imported",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("3 annotated, with tools"))
        .stdout(predicate::str::contains(
            "exported 3 dialogues to the SGD folder out",
        ));
    let (ok, said) = format_checks("chat", &env.path("chat.jsonl"));
    assert!(ok, "{said}");
    let text = std::fs::read_to_string(env.path("chat.jsonl")).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // 2_00090: the call that found nothing is answered with an empty list.
    let media = &lines[1];
    let messages = media["messages"].as_array().unwrap();
    let call = messages
        .iter()
        .find(|m| m["tool_calls"].is_array())
        .unwrap();
    assert_eq!(call["tool_calls"][0]["function"]["name"], "PlayMovie");
    let arguments: Value = serde_json::from_str(
        call["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(arguments, json!({"subtitles": "True", "title": "Red Joan"}));
    let answer = messages.iter().find(|m| m["role"] == "tool").unwrap();
    assert_eq!(answer["content"], "[]");
    assert_eq!(answer["tool_call_id"], call["tool_calls"][0]["id"]);
    // The inferred tool: the call's parameters, a categorical one with its values.
    let tool = &media["tools"][0]["function"];
    assert_eq!(tool["name"], "PlayMovie");
    assert_eq!(
        tool["parameters"]["properties"]["subtitles"],
        json!({"type": "string", "enum": ["True"]})
    );
    // The German dialogue's text is written as is.
    assert!(text.contains("Café Müller in München"));

    // The checks can fail: a tool message for an unknown call is named.
    let broken = text.replacen("\"tool_call_id\":\"call_0_0\"", "\"tool_call_id\":\"x\"", 1);
    std::fs::write(env.path("broken.jsonl"), broken).unwrap();
    let (ok, said) = format_checks("chat", &env.path("broken.jsonl"));
    assert!(!ok);
    assert!(said.contains("tool message answers 'x'"), "{said}");
}

/// A record of the original script's shape: a plain dialogue.
fn plain(i: usize) -> Value {
    json!({
        "dialogue_id": format!("plain-{i}"),
        "services": ["taxi"],
        "turns": [
            {"utterance": format!("I need a taxi to the station, booking {i}."),
             "intent": "book_taxi",
             "assistant_response": format!("Your taxi {i} is booked for noon.")},
        ],
    })
}

#[test]
fn a_plain_store_is_refused_by_export_sgd_but_exports_as_chat_and_multiwoz() {
    let env = Env::new();
    env.plan(2, &[]).assert().success();
    std::fs::write(
        env.path("plain.json"),
        json!([plain(0), plain(1)]).to_string(),
    )
    .unwrap();
    import(&env, &env.path("plain.json"), 2).assert().success();
    // Asked together, the refusal of --sgd stops --chat too: all or nothing.
    env.dgen()
        .args([
            "export",
            "--sgd",
            "out",
            "--chat",
            "chat.jsonl",
            "--include_imported",
        ])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "dialogue plain-0 has no annotation",
        ))
        .stderr(predicate::str::contains("no files were replaced"));
    assert!(!env.path("out/dialogues_001.json").exists());
    assert!(!env.path("out/schema.json").exists());
    assert!(!env.path("chat.jsonl").exists());

    env.dgen()
        .args(["export", "--chat", "chat.jsonl", "--include_imported"])
        .assert()
        .success();
    let (ok, said) = format_checks("chat", &env.path("chat.jsonl"));
    assert!(ok, "{said}");
    let first: Value = serde_json::from_str(
        std::fs::read_to_string(env.path("chat.jsonl"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        first,
        json!({"messages": [
            {"role": "user", "content": "I need a taxi to the station, booking 0."},
            {"role": "assistant", "content": "Your taxi 0 is booked for noon."},
        ]})
    );

    env.dgen()
        .args(["export", "--multiwoz", "mw.json", "--include_imported"])
        .assert()
        .success();
    let mw = read(&env.path("mw.json"));
    assert_eq!(mw[0]["turns"][1]["speaker"], "SYSTEM");
    assert_eq!(mw[0]["turns"][1]["turn_id"], "1");
    assert_eq!(mw[0]["turns"][1]["frames"], json!([]));
}

#[test]
fn multiwoz_export_keeps_states_and_spans_and_is_read_back_by_plan_and_import() {
    let env = sgd_store();
    env.dgen()
        .args(["export", "--multiwoz", "mw.json", "--include_imported"])
        .assert()
        .success()
        .stdout(predicate::str::contains("exported 3 dialogues to mw.json"));
    let mw = read(&env.path("mw.json"));
    let turn = &mw[1]["turns"][2];
    assert_eq!(turn["turn_id"], "2");
    assert_eq!(turn["speaker"], "USER");
    assert_eq!(
        turn["frames"][0],
        json!({
            "service": "Media_1",
            "state": {"active_intent": "PlayMovie", "requested_slots": [],
                      "slot_values": {"subtitles": ["True"], "title": ["Red Joan"]}},
            "slots": [{"slot": "title", "value": "Red Joan", "start": 12, "exclusive_end": 20}],
        })
    );
    // A system frame keeps its spans; its call has no place in MultiWOZ 2.2's layout.
    assert_eq!(
        mw[1]["turns"][5]["frames"][0],
        json!({"service": "Media_1", "slots": []})
    );

    // `dgen plan --dataset` takes the file as base dialogues.
    let mut plan = env.dgen();
    plan.args(["--store", "other.redb", "plan", "--total_generations", "4"])
        .arg("--dataset")
        .arg(env.path("mw.json"))
        .arg("--persona_dataset")
        .arg(fixture("personas_hf"));
    plan.assert().success();
    let items = env.plan_jsonl("other.redb");
    let ids = ["125_00066", "2_00090", "dgen_fixture_00001"];
    assert!(items
        .iter()
        .all(|i| ids.contains(&i["base_dialogue_id"].as_str().unwrap())));

    // Imported as MultiWOZ 2.2 (with a copied value, which has no offsets and is dropped) and
    // exported as SGD, the states and spans are the fixture's.
    let mut with_copy = mw.clone();
    with_copy[1]["turns"][2]["frames"][0]["slots"]
        .as_array_mut()
        .unwrap()
        .push(json!({"slot": "subtitles", "copy_from": "x", "value": "True"}));
    std::fs::write(env.path("mw2.json"), with_copy.to_string()).unwrap();
    let again = Env::new();
    again.plan(2, &[]).assert().success();
    import(&again, &env.path("mw2.json"), 3).assert().success();
    again
        .dgen()
        .args(["export", "--sgd", "out", "--include_imported"])
        .assert()
        .success();
    let sgd = read(&again.path("out/dialogues_001.json"));
    let input = read(&fixture("sgd/dialogues_001.json"));
    for (d, (out, inp)) in sgd
        .as_array()
        .unwrap()
        .iter()
        .zip(input.as_array().unwrap())
        .enumerate()
    {
        for (t, (a, b)) in out["turns"]
            .as_array()
            .unwrap()
            .iter()
            .zip(inp["turns"].as_array().unwrap())
            .enumerate()
        {
            assert_eq!(a["utterance"], b["utterance"]);
            for (fa, fb) in a["frames"]
                .as_array()
                .unwrap()
                .iter()
                .zip(b["frames"].as_array().unwrap())
            {
                assert_eq!(fa["state"], fb["state"], "dialogue {d} turn {t}");
                assert_eq!(fa["slots"], fb["slots"], "dialogue {d} turn {t}");
            }
        }
    }
}

/// An annotated answer as the model gives it (values as the text says them), right in every label.
const ANSWER: &str = include_str!("../fixtures/annotated_answer.json");

#[test]
fn a_dgen_annotated_dialogue_exports_as_sgd_with_the_plans_schema() {
    let schema = dgen::schema::Schema::builtin();
    let (turns, annotation) =
        dgen::parse::annotated::parse_annotated(ANSWER, 1, 5, "hotel", &schema).unwrap();
    // As `dgen export` writes an annotated dialogue: the labels beside the record.
    let record = json!({
        "dialogue_id": "hotel_generated_1",
        "services": ["hotel"],
        "turns": turns.iter().map(|t| json!({
            "utterance": t.utterance, "intent": t.intent,
            "assistant_response": t.assistant_response})).collect::<Vec<_>>(),
        "annotation": annotation,
    });
    let env = Env::new();
    env.plan(2, &["--annotate"]).assert().success();
    std::fs::write(env.path("own.json"), json!([record]).to_string()).unwrap();
    import(&env, &env.path("own.json"), 1).assert().success();
    env.dgen()
        .args([
            "export",
            "--sgd",
            "out",
            "--chat",
            "chat.jsonl",
            "--include_imported",
        ])
        .assert()
        .success();
    let (ok, said) = format_checks("sgd", &env.path("out"));
    assert!(ok, "{said}");
    let (ok, said) = format_checks("chat", &env.path("chat.jsonl"));
    assert!(ok, "{said}");
    // The plan's schema describes the service, not one inferred from the dialogue.
    let written = read(&env.path("out/schema.json"));
    assert_eq!(written, json!(schema.only(["hotel"]).services));
    let sgd = read(&env.path("out/dialogues_001.json"));
    let system = &sgd[0]["turns"][3]["frames"][0];
    assert_eq!(system["service_call"]["method"], "book_hotel");
    assert_eq!(system["service_results"][0]["hotel-ref"], "7GAWK");
    // And `dgen export` then `dgen import` keeps the labels: the SGD export of the import of
    // the export is the same.
    env.dgen()
        .args([
            "export",
            "--output_file",
            "again.json",
            "--only",
            "dialogues",
            "--include_imported",
        ])
        .assert()
        .success();
    let again = Env::new();
    again.plan(2, &["--annotate"]).assert().success();
    import(&again, &env.path("again.json"), 1)
        .assert()
        .success();
    again
        .dgen()
        .args(["export", "--sgd", "out", "--include_imported"])
        .assert()
        .success();
    assert_eq!(read(&again.path("out/dialogues_001.json")), sgd);
}

#[test]
fn while_a_run_holds_the_store_the_run_writes_the_exports_and_refuses_sgd_for_plain_dialogues() {
    let env = Env::new();
    let mock = MockServer::start();
    mock.set_latency(std::time::Duration::from_millis(300));
    env.plan_for_run(16);
    let mut child = env.spawn_run(&mock, &["--concurrency", "2"]);
    env.wait_for_status("an accepted dialogue", |s| count_in(s, "done") >= 1);
    env.dgen()
        .args(["export", "--chat", "chat.jsonl", "--multiwoz", "mw.json"])
        .assert()
        .success()
        .stdout(predicate::str::contains("(0 annotated, with tools) to "))
        .stdout(predicate::str::contains("in MultiWOZ 2.2's layout"));
    env.dgen()
        .args(["export", "--sgd", "out"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("has no annotation"));
    // `extract --item` asks the run too.
    env.dgen()
        .args(["extract", "--item", "15"])
        .assert()
        .success()
        .stdout(predicate::str::starts_with("item: 15 of 16 (plan "));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run is still going, so the run answered"
    );
    let (ok, said) = format_checks("chat", &env.path("chat.jsonl"));
    assert!(ok, "{said}");
    assert!(!read(&env.path("mw.json")).as_array().unwrap().is_empty());
    assert!(child.wait().unwrap().success());
}

#[test]
fn an_annotated_run_exports_sgd_and_chat_files_their_readers_accept() {
    let env = Env::new();
    let mock = MockServer::start();
    env.plan(6, &[&["--annotate"][..], &TURNS[..]].concat())
        .assert()
        .success();
    env.run(&mock, &["--concurrency", "3"]).assert().success();
    env.dgen()
        .args([
            "export",
            "--sgd",
            "out",
            "--chat",
            "chat.jsonl",
            "--multiwoz",
            "mw.json",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "exported 6 dialogues to the SGD folder out",
        ))
        .stdout(predicate::str::contains("(6 annotated, with tools)"));
    let (ok, said) = format_checks("sgd", &env.path("out"));
    assert!(ok, "{said}");
    let (ok, said) = format_checks("chat", &env.path("chat.jsonl"));
    assert!(ok, "{said}");
    // Every service of schema.json is the plan's (the built-in schema's), none inferred.
    let schema = read(&env.path("out/schema.json"));
    assert!(!schema.as_array().unwrap().is_empty());
    let builtin = dgen::schema::Schema::builtin();
    for s in schema.as_array().unwrap() {
        let name = s["service_name"].as_str().unwrap();
        assert_eq!(s, &json!(builtin.service(name).unwrap()), "{name}");
    }
    let mut plan = env.dgen();
    plan.args(["--store", "again.redb", "plan", "--total_generations", "3"])
        .arg("--dataset")
        .arg(env.path("mw.json"))
        .arg("--persona_dataset")
        .arg(fixture("personas_hf"));
    plan.assert().success();
}

//! The annotated mode end to end: `dgen plan --annotate` and `dgen run` against the mock, which
//! answers annotated requests with labelled dialogues pursuing the request's goals and, when
//! switched, with wrong labels the label checks must catch; kill -9 and resume; the plan's
//! determinism; a user's own schema and value pools; bad schema files.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::mock::{Fault, LabelFault, MockServer};
use common::{Env, TURNS};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

/// `dgen plan --annotate` on the fixtures with [`TURNS`] and `extra`.
fn plan_annotated(env: &Env, n: u64, extra: &[&str]) -> assert_cmd::Command {
    env.plan(n, &[&["--annotate"][..], &TURNS[..], extra].concat())
}

fn builtin_schema() -> Vec<Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/schema.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn service<'a>(schema: &'a [Value], name: &str) -> &'a Value {
    schema
        .iter()
        .find(|s| s["service_name"] == name)
        .unwrap_or_else(|| panic!("no service {name} in the schema"))
}

fn intent<'a>(service: &'a Value, name: &str) -> &'a Value {
    service["intents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("no intent {name} in {}", service["service_name"]))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// A state's slot values as slot -> values.
fn slot_values(state: &Value) -> BTreeMap<String, Vec<String>> {
    state["slot_values"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), strings(v)))
        .collect()
}

/// Checks one exported record's annotation against its text, its goals and the schema, as a
/// reader of the labels would rely on them, and returns how many spans it has: every span
/// is where the text says its value, every state value was said by then, a service's state
/// keeps every value it held, the final states hold the goals, the call carries the state's
/// values and returns only its intent's result slots, and the calls and the last turn follow
/// the planned outcome.
fn check_record(record: &Value, schema: &[Value]) -> usize {
    let id = record["dialogue_id"].as_str().unwrap();
    let a = &record["annotation"];
    assert!(
        record["quality"].get("annotation").is_none(),
        "{id}: the labels are beside the quality record, not in it"
    );
    let goals = a["goals"].as_array().expect("goals");
    let turns = a["turns"].as_array().expect("annotated turns");
    let text = record["turns"].as_array().unwrap();
    assert_eq!(turns.len(), text.len(), "{id}: a frame set per turn");
    assert_eq!(
        a["labels"],
        json!({"grounded": true, "goal_realized": true}),
        "{id}"
    );
    let primary = &goals[0];
    let primary_service = primary["service"].as_str().unwrap();
    let primary_intent = intent(
        service(schema, primary_service),
        primary["intent"].as_str().unwrap(),
    );
    let mut said = String::new();
    let mut spans = 0;
    let mut last: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut requested: BTreeSet<(String, String)> = BTreeSet::new();
    let mut calls = Vec::new();
    for (i, (frames, shown)) in turns.iter().zip(text).enumerate() {
        let utterance = shown["utterance"].as_str().unwrap();
        assert_eq!(shown["intent"], primary["intent"], "{id} turn {i}");
        said.push_str(&utterance.to_lowercase());
        let chars: Vec<char> = utterance.chars().collect();
        for frame in frames["user"].as_array().unwrap() {
            let name = frame["service"].as_str().unwrap().to_string();
            let values = slot_values(&frame["state"]);
            for span in frame["slots"].as_array().unwrap() {
                let (start, end) = (
                    span["start"].as_u64().unwrap() as usize,
                    span["exclusive_end"].as_u64().unwrap() as usize,
                );
                let shown: String = chars[start..end].iter().collect();
                let slot = span["slot"].as_str().unwrap();
                assert!(
                    values[slot].iter().any(|v| v.eq_ignore_ascii_case(&shown)),
                    "{id} turn {i}: span {slot} {start}..{end} is \"{shown}\", not a value of {values:?}"
                );
                spans += 1;
            }
            for (slot, vs) in &values {
                for v in vs {
                    assert!(
                        said.contains(&v.to_lowercase()),
                        "{id} turn {i}: {slot} = {v} was not said"
                    );
                }
            }
            if let Some(before) = last.get(&name) {
                for (slot, vs) in before {
                    assert_eq!(values.get(slot), Some(vs), "{id} turn {i}: {slot} kept");
                }
            }
            for slot in strings(&frame["state"]["requested_slots"]) {
                requested.insert((name.clone(), slot));
            }
            last.insert(name, values);
        }
        let reply = shown["assistant_response"].as_str().unwrap();
        said.push_str(&reply.to_lowercase());
        let reply: Vec<char> = reply.chars().collect();
        for frame in frames["assistant"].as_array().unwrap() {
            // The reply's spans point at a value of the state or of the call's results.
            let name = frame["service"].as_str().unwrap();
            let mut known: Vec<String> = last
                .get(name)
                .map(|m| m.values().flatten().cloned().collect())
                .unwrap_or_default();
            for row in frame["service_results"].as_array().into_iter().flatten() {
                known.extend(
                    row.as_object()
                        .unwrap()
                        .values()
                        .map(|v| v.as_str().unwrap().to_string()),
                );
            }
            for span in frame["slots"].as_array().unwrap() {
                let (start, end) = (
                    span["start"].as_u64().unwrap() as usize,
                    span["exclusive_end"].as_u64().unwrap() as usize,
                );
                let shown: String = reply[start..end].iter().collect();
                assert!(
                    known.iter().any(|v| v.eq_ignore_ascii_case(&shown)),
                    "{id} turn {i}: the reply's span {start}..{end} is \"{shown}\", not a known value"
                );
                spans += 1;
            }
            if let Some(call) = frame.get("service_call") {
                calls.push((
                    i,
                    frame["service"].clone(),
                    call.clone(),
                    frame["service_results"].clone(),
                ));
            }
        }
    }
    for goal in goals {
        let name = goal["service"].as_str().unwrap();
        for pair in goal["inform"].as_array().unwrap() {
            let (slot, value) = (pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
            assert!(
                last[name]
                    .get(slot)
                    .is_some_and(|vs| vs.iter().any(|v| v == value)),
                "{id}: the goal's {slot} = {value} is not in {name}'s final state"
            );
        }
        for slot in strings(&goal["request"]) {
            assert!(
                requested.contains(&(name.to_string(), slot.clone())),
                "{id}: {slot} asked"
            );
        }
    }
    let handover = turns.last().unwrap()["handover"] == true;
    match record["resolution_status"].as_str().unwrap() {
        "Escalated" => {
            assert!(calls.is_empty(), "{id}: Escalated makes no call");
            assert!(handover, "{id}: Escalated hands over in its last turn");
        }
        status => {
            assert_eq!(calls.len(), 1, "{id}: one call");
            let (turn, service, call, results) = &calls[0];
            assert_eq!(service, primary_service, "{id}");
            assert_eq!(call["method"], primary["intent"], "{id}");
            let state = &last[primary_service];
            assert_eq!(*turn + 1, turns.len(), "{id}: the call is in the last turn");
            let parameters = call["parameters"].as_object().unwrap();
            for required in strings(&primary_intent["required_slots"]) {
                assert!(
                    parameters.contains_key(&required),
                    "{id}: {required} passed"
                );
            }
            for (slot, value) in parameters {
                assert_eq!(
                    state.get(slot).map(|vs| &vs[..]),
                    Some(&[value.as_str().unwrap().to_string()][..]),
                    "{id}: the call's {slot} is the state's"
                );
            }
            let results = results.as_array().unwrap();
            assert!(!handover, "{id}");
            if status == "Resolved" {
                assert!(
                    !results.is_empty(),
                    "{id}: Resolved's call returns a result"
                );
                let allowed = strings(&primary_intent["result_slots"]);
                for row in results {
                    for slot in row.as_object().unwrap().keys() {
                        assert!(allowed.contains(slot), "{id}: result slot {slot}");
                    }
                }
            } else {
                assert!(results.is_empty(), "{id}: Failed's call returns nothing");
            }
        }
    }
    spans
}

fn run_report(env: &Env, store: &str) -> Value {
    env.status_json_of(store)["run"].clone()
}

#[test]
fn an_annotated_run_accepts_every_item_with_labels_that_match_text_goals_and_calls() {
    let env = Env::new();
    let mock = MockServer::start();
    // The annotated request's strict schema keeps to OpenAI's subset, or the mock answers 400.
    mock.refuse_unsupported_schemas();
    plan_annotated(&env, 12, &[]).assert().success();
    env.run(&mock, &["--concurrency", "3"]).assert().success();
    let request = mock
        .requests()
        .into_iter()
        .find(|r| r.dialogue)
        .unwrap()
        .body;
    assert_eq!(
        request["response_format"]["json_schema"]["name"],
        "annotated_dialogue"
    );
    assert_eq!(env.state_count("done"), 12);
    assert_eq!(mock.dialogue_calls(), 12, "nothing was re-attempted");
    let run = run_report(&env, "dgen.redb");
    assert_eq!(run["rejections"], json!({}), "{run}");
    assert_eq!(run["checks"], json!({}), "nothing flagged: {run}");

    let records = env.export_all().records;
    assert_eq!(records.len(), 12);
    let schema = builtin_schema();
    let spans: usize = records.iter().map(|r| check_record(r, &schema)).sum();
    assert!(spans >= 12, "{spans} spans in 12 dialogues");
    let outcomes: BTreeSet<&str> = records
        .iter()
        .map(|r| r["resolution_status"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        BTreeSet::from(["Escalated", "Failed", "Resolved"]),
        "the plan covers every outcome, so every branch above ran"
    );
    // The mock's dialogues differ from one another (dedup kept them all), and each request
    // carried its own goal.
    let goals: BTreeSet<String> = records
        .iter()
        .map(|r| r["annotation"]["goals"].to_string())
        .collect();
    assert_eq!(goals.len(), 12);
    // The readers of a plain store read an annotated one too.
    env.dgen().arg("status").assert().success();
    env.dgen().arg("report").assert().success();
    assert!(env.path("report.html").is_file());
}

/// The built-in catalog cut down to one service, whose items end as `statuses` say.
fn one_service_catalog(env: &Env, file: &str, service: &str, statuses: Value) {
    let builtin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/catalog.json");
    let mut catalog: Value =
        serde_json::from_str(&std::fs::read_to_string(builtin).unwrap()).unwrap();
    catalog["core_services"] = json!([service]);
    catalog["service_count_weights"] =
        json!({"single": 1.0, "double": 0.0, "triple": 0.0, "quadruple": 0.0});
    catalog["logical_combinations"] = json!({"double": [], "triple": [], "quadruple": []});
    catalog["scenario_categories"]
        .as_object_mut()
        .unwrap()
        .retain(|k, _| k == "general" || k == service);
    catalog["resolution_statuses"] = statuses;
    std::fs::write(env.path(file), catalog.to_string()).unwrap();
}

/// A catalog of the built-in hotel service alone: every goal books a hotel, so every fault
/// has a place to be planted.
fn hotel_catalog(env: &Env, file: &str, statuses: Value) {
    one_service_catalog(env, file, "hotel", statuses);
}

#[test]
fn each_planted_label_fault_is_rejected_by_its_own_check_and_the_item_reattempted() {
    let env = Env::new();
    hotel_catalog(&env, "hotel.json", json!({"Resolved": 1.0}));
    plan_annotated(&env, 2, &["--catalog", "hotel.json"])
        .assert()
        .success();
    let mock = MockServer::start();
    mock.push(LabelFault::ALL.map(|f| Fault::Labels(vec![f])));
    env.run(&mock, &["--concurrency", "1", "--max_attempts", "8"])
        .assert()
        .success();
    assert_eq!(env.state_count("done"), 2);
    assert_eq!(mock.dialogue_calls(), 2 + LabelFault::ALL.len());
    let expected: BTreeMap<&str, u64> = LabelFault::ALL.iter().map(|f| (f.check(), 1)).collect();
    let run = run_report(&env, "dgen.redb");
    assert_eq!(run["rejections"], json!(expected), "{run}");
    let schema = builtin_schema();
    for record in env.export_all().records {
        check_record(&record, &schema);
    }

    // All six in one answer, every label check flagging: one dialogue shows them all.
    plan_annotated(
        &env,
        1,
        &["--catalog", "hotel.json", "--store", "flag.redb"],
    )
    .assert()
    .success();
    let mock = MockServer::start();
    mock.push([Fault::Labels(LabelFault::ALL.to_vec())]);
    let flag_all = "unknown_label=flag,categorical_value=flag,ungrounded=flag,dropped_slot=flag,goal_unrealized=flag,invalid_call=flag,outcome_calls=flag";
    env.run(&mock, &["--store", "flag.redb", "--checks", flag_all])
        .assert()
        .success();
    assert_eq!(mock.dialogue_calls(), 1);
    let checks = run_report(&env, "flag.redb")["checks"].clone();
    for fault in LabelFault::ALL {
        assert_eq!(checks[fault.check()], 1, "{fault:?}: {checks}");
    }
    let file = env.path("flag.json");
    env.dgen()
        .args(["--store", "flag.redb", "export", "--output_file"])
        .arg(&file)
        .assert()
        .success();
    let records: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    assert_eq!(
        records[0]["annotation"]["labels"]["grounded"], false,
        "the ungrounded value shows in the summary too"
    );
}

#[test]
fn the_mock_binarys_fault_switch_plants_outcome_faults_for_failed_and_escalated_items() {
    let env = Env::new();
    hotel_catalog(&env, "hotel.json", json!({"Failed": 0.5, "Escalated": 0.5}));
    plan_annotated(&env, 5, &["--catalog", "hotel.json"])
        .assert()
        .success();
    let statuses: BTreeSet<String> = env
        .plan_jsonl("dgen.redb")
        .iter()
        .map(|i| i["resolution_status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(statuses.len(), 2, "both outcomes planned: {statuses:?}");
    let mut mock = std::process::Command::new(assert_cmd::cargo::cargo_bin("dgen-mock-llm"))
        .args([
            "--annotated-faults",
            "outcome_calls",
            "--annotated-faults-every",
            "2",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut url = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(mock.stdout.as_mut().unwrap()),
        &mut url,
    )
    .unwrap();
    let result = env
        .dgen()
        .env_remove("OPENAI_API_KEY")
        .args(["run", "--base_url", url.trim(), "--retry_base_ms", "20"])
        .args(["--concurrency", "1", "--max_attempts", "4"])
        .timeout(Duration::from_secs(300))
        .output()
        .unwrap();
    mock.kill().unwrap();
    mock.wait().unwrap();
    assert!(result.status.success(), "{result:?}");
    assert_eq!(env.state_count("done"), 5);
    // Every second dialogue answer was faulty: the 2nd, 4th, 6th and 8th, each followed by an
    // accepted one, until the 9th answer completed the fifth item.
    let run = run_report(&env, "dgen.redb");
    assert_eq!(run["rejections"], json!({"outcome_calls": 4}), "{run}");
    let schema = builtin_schema();
    for record in env.export_all().records {
        check_record(&record, &schema);
    }
}

/// (dialogue id -> (hash, annotation)) of everything exported.
fn committed(env: &Env) -> BTreeMap<String, (String, String)> {
    if env.state_count("done") == 0 {
        return BTreeMap::new();
    }
    let out = env.export_all();
    assert_eq!(out.records.len(), out.hashes.len());
    let map: BTreeMap<String, (String, String)> = out
        .records
        .iter()
        .zip(&out.hashes)
        .map(|(r, h)| {
            let annotation = &r["annotation"];
            assert!(annotation["turns"].is_array(), "{r}");
            (
                r["dialogue_id"].as_str().unwrap().to_string(),
                (h.clone(), annotation.to_string()),
            )
        })
        .collect();
    assert_eq!(map.len(), out.records.len(), "dialogue ids are unique");
    let hashes: BTreeSet<&String> = out.hashes.iter().collect();
    assert_eq!(hashes.len(), out.hashes.len(), "hashes are unique");
    assert_eq!(env.state_count("done") as usize, out.records.len());
    map
}

#[test]
fn kill_9_during_an_annotated_run_loses_no_dialogue_and_no_annotation() {
    let env = Env::new();
    let mock = MockServer::start();
    mock.set_latency(Duration::from_millis(60));
    let n = 40;
    plan_annotated(&env, n, &[]).assert().success();
    let args = ["--concurrency", "4"];
    let mut rng = ChaCha8Rng::seed_from_u64(19);
    let mut seen = BTreeMap::new();
    for _ in 0..4 {
        let mut child = env.spawn_run(&mock, &args);
        // Killed once it has made progress, at a random moment after: mid-call, mid-commit.
        let floor = seen.len() as u64 + 3;
        env.wait_for_status("progress before the kill", |s| {
            common::count_in(s, "done") >= floor
        });
        std::thread::sleep(Duration::from_millis(rng.random_range(0..250)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let now = committed(&env);
        for (id, kept) in &seen {
            assert_eq!(now.get(id), Some(kept), "{id} was committed before a kill");
        }
        seen = now;
    }
    assert!(
        (12..n).contains(&(seen.len() as u64)),
        "the kills interrupted the run ({} done)",
        seen.len()
    );
    env.run(&mock, &args).assert().success();
    let all = committed(&env);
    assert_eq!(all.len() as u64, n);
    for (id, kept) in &seen {
        assert_eq!(all.get(id), Some(kept), "{id} survived the kills unchanged");
    }
    assert_eq!(env.state_count("pending"), 0);
    let schema = builtin_schema();
    for record in env.export_all().records {
        check_record(&record, &schema);
    }
}

#[test]
fn an_annotated_plan_is_deterministic_and_differs_from_the_plain_one() {
    let env = Env::new();
    let a = env.fingerprint(&mut plan_annotated(&env, 30, &["--store", "a.redb"]));
    let b = env.fingerprint(&mut plan_annotated(&env, 30, &["--store", "b.redb"]));
    assert_eq!(a, b);
    assert_eq!(env.plan_lines("a.redb"), env.plan_lines("b.redb"));
    let plain =
        env.fingerprint(&mut env.plan(30, &[&["--store", "p.redb"][..], &TURNS[..]].concat()));
    assert_ne!(
        a, plain,
        "the goals are part of the annotated plan's fingerprint"
    );
    let other = env.fingerprint(&mut plan_annotated(
        &env,
        30,
        &["--store", "c.redb", "--seed", "7"],
    ));
    assert_ne!(a, other);
}

/// A product's own service, in SGD's format: a gym whose classes are booked.
const GYM_SCHEMA: &str = r#"[{"service_name": "gym", "description": "A fitness club",
  "slots": [{"name": "gym-branch", "is_categorical": false, "possible_values": []},
            {"name": "gym-class", "is_categorical": true, "possible_values": ["yoga", "spinning", "boxing"]},
            {"name": "gym-day", "is_categorical": true, "possible_values": ["monday", "friday"]},
            {"name": "gym-member_id", "is_categorical": false, "possible_values": []}],
  "intents": [{"name": "book_class", "is_transactional": true,
               "required_slots": ["gym-branch", "gym-class"],
               "optional_slots": {"gym-day": "dontcare"},
               "result_slots": ["gym-branch", "gym-class", "gym-member_id"]}]}]"#;

fn gym_catalog(env: &Env) {
    let outcomes = json!({"Resolved": 0.4, "Failed": 0.3, "Escalated": 0.3});
    one_service_catalog(env, "gym.json", "gym", outcomes);
}

#[test]
fn a_users_own_schema_and_value_pools_drive_goals_prompts_and_labels() {
    let env = Env::new();
    gym_catalog(&env);
    std::fs::write(env.path("schema.json"), GYM_SCHEMA).unwrap();
    std::fs::write(
        env.path("values.json"),
        r#"{"gym-branch": ["Riverside Arena", "Northgate Studio"]}"#,
    )
    .unwrap();
    let files = [
        "--catalog",
        "gym.json",
        "--services_schema",
        "schema.json",
        "--slot_values",
        "values.json",
    ];
    plan_annotated(&env, 4, &files).assert().success();
    let mock = MockServer::start();
    env.run(&mock, &[]).assert().success();
    assert_eq!(env.state_count("done"), 4);
    let run = run_report(&env, "dgen.redb");
    assert_eq!(run["rejections"], json!({}), "{run}");
    // The request showed the model the user's service and a goal from the user's pool.
    let request = &mock
        .requests()
        .into_iter()
        .find(|r| r.dialogue)
        .unwrap()
        .body;
    let system = request["messages"][0]["content"].as_str().unwrap();
    assert!(system.contains("\"service_name\":\"gym\""), "{system}");
    let schema: Vec<Value> = serde_json::from_str(GYM_SCHEMA).unwrap();
    for record in env.export_all().records {
        check_record(&record, &schema);
        let goal = &record["annotation"]["goals"][0];
        assert_eq!(goal["intent"], "book_class");
        let branch = goal["inform"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p[0] == "gym-branch")
            .unwrap();
        assert!(
            ["Riverside Arena", "Northgate Studio"].contains(&branch[1].as_str().unwrap()),
            "{goal}"
        );
    }
}

#[test]
fn bad_schema_and_value_files_are_refused_with_the_fix_and_no_store() {
    let env = Env::new();
    gym_catalog(&env);
    let refused = |extra: &[&str], expected: &[&str]| {
        let out = plan_annotated(&env, 2, extra).assert().failure();
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
        for text in expected {
            assert!(stderr.contains(text), "{text:?} not in: {stderr}");
        }
        assert!(!env.path("dgen.redb").exists(), "no store after: {stderr}");
    };
    std::fs::write(env.path("notjson.json"), "{\"service_name\": ").unwrap();
    refused(
        &["--services_schema", "notjson.json"],
        &[
            "--services_schema",
            "notjson.json",
            "is not a schema.json in SGD's format",
        ],
    );
    std::fs::write(
        env.path("missing_slot.json"),
        GYM_SCHEMA.replace(
            "\"required_slots\": [\"gym-branch\", \"gym-class\"]",
            "\"required_slots\": [\"gym-coach\"]",
        ),
    )
    .unwrap();
    refused(
        &["--services_schema", "missing_slot.json"],
        &["\"gym-coach\"", "add it to the service's slots"],
    );
    refused(
        &["--catalog", "gym.json"],
        &["\"gym\" has no schema", "--services_schema"],
    );
    std::fs::write(env.path("schema.json"), GYM_SCHEMA).unwrap();
    refused(
        &["--catalog", "gym.json", "--services_schema", "schema.json"],
        &["\"gym-branch\"", "--slot_values"],
    );
    std::fs::write(env.path("empty.json"), r#"{"gym-branch": [" "]}"#).unwrap();
    refused(
        &[
            "--catalog",
            "gym.json",
            "--services_schema",
            "schema.json",
            "--slot_values",
            "empty.json",
        ],
        &["--slot_values", "\"gym-branch\" has an empty value"],
    );
    let out = env
        .plan(2, &["--services_schema", "schema.json"])
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(stderr.contains("--annotate"), "{stderr}");
}

#[test]
fn a_batch_run_checks_and_keeps_the_labels_like_an_online_one() {
    let env = Env::new();
    plan_annotated(&env, 4, &[]).assert().success();
    let mock = MockServer::start();
    // The first dialogue answer drops a slot: its item goes into a later round.
    mock.push([Fault::Labels(vec![LabelFault::DroppedSlot])]);
    env.run(&mock, &["--batch", "--wait", "--poll_interval", "0.05"])
        .assert()
        .success();
    assert_eq!(env.state_count("done"), 4);
    assert!(mock.batches(|b| b.batches.len()) >= 4, "two rounds of two");
    let run = run_report(&env, "dgen.redb");
    assert_eq!(run["rejections"], json!({"dropped_slot": 1}), "{run}");
    let schema = builtin_schema();
    let records = env.export_all().records;
    assert_eq!(records.len(), 4);
    for record in records {
        check_record(&record, &schema);
    }
}

/// (dialogue id -> annotation) of a store's export.
fn annotations_of(env: &Env, store: &str) -> BTreeMap<String, Value> {
    let file = env.path(&format!("{store}.json"));
    env.dgen()
        .args(["--store", store, "export", "--output_file"])
        .arg(&file)
        .assert()
        .success();
    let records: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    records
        .into_iter()
        .map(|r| {
            (
                r["dialogue_id"].as_str().unwrap().to_string(),
                r["annotation"].clone(),
            )
        })
        .collect()
}

#[test]
fn shards_of_an_annotated_plan_merge_with_their_labels() {
    let env = Env::new();
    let mock = MockServer::start();
    let mut shards = BTreeMap::new();
    for i in 0..2 {
        let store = format!("s{i}.redb");
        plan_annotated(&env, 6, &["--store", &store, "--shard", &format!("{i}/2")])
            .assert()
            .success();
        env.run(&mock, &["--store", &store]).assert().success();
        shards.extend(annotations_of(&env, &store));
    }
    assert_eq!(shards.len(), 6);
    env.dgen()
        .args(["merge", "s0.redb", "s1.redb", "--into", "all.redb"])
        .assert()
        .success();
    let merged = annotations_of(&env, "all.redb");
    assert_eq!(
        merged, shards,
        "every dialogue kept its labels through the merge"
    );
    assert!(merged.values().all(|a| a["turns"].is_array()));
}

#[test]
fn an_annotated_run_on_a_local_server_stand_in_accepts_every_item() {
    let env = Env::new();
    plan_annotated(&env, 3, &[]).assert().success();
    // The mock binary stands in for llama-server (it takes its flags): the request path of a
    // local server (the full schema, every slot's values constrained) end to end. The mock
    // enforces no schema; this pins that the path builds its requests and keeps the labels.
    std::fs::write(env.path("fake.gguf"), b"GGUF stand-in").unwrap();
    let server = assert_cmd::cargo::cargo_bin("dgen-mock-llm");
    env.dgen()
        .env_remove("OPENAI_API_KEY")
        .args(["run", "--local_model", "fake.gguf", "--llama_server"])
        .arg(server)
        .timeout(Duration::from_secs(120))
        .assert()
        .success();
    assert_eq!(env.state_count("done"), 3);
    let schema = builtin_schema();
    for record in env.export_all().records {
        check_record(&record, &schema);
    }
}

/// Per slot, the distinct first values the states of a MultiWOZ 2.2 JSON file hold.
fn frame_values(file: &std::path::Path) -> BTreeMap<String, BTreeSet<String>> {
    let dialogues: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for turn in dialogues
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| d["turns"].as_array().unwrap())
    {
        for frame in turn["frames"].as_array().unwrap() {
            let Some(values) = frame["state"]["slot_values"].as_object() else {
                continue;
            };
            for (slot, said) in values {
                let first = said[0].as_str().unwrap().to_string();
                out.entry(slot.clone()).or_default().insert(first);
            }
        }
    }
    out
}

/// The goals `dgen extract --item N --json` shows for each of the store's `n` items.
fn extracted_goals(env: &Env, store: &str, n: u64) -> Vec<Value> {
    (0..n)
        .flat_map(|i| {
            let shown = env.stdout(env.dgen().args([
                "--store",
                store,
                "extract",
                "--item",
                &i.to_string(),
                "--json",
            ]));
            let shown: Value = serde_json::from_str(&shown).unwrap();
            assert_eq!(shown["index"], i);
            shown["goals"].as_array().unwrap().clone()
        })
        .collect()
}

#[test]
fn goals_draw_the_values_the_base_dialogues_frames_hold_and_extract_shows_them() {
    // A first run whose goals say values no built-in pool has (each built-in value + " Vale"),
    // exported in MultiWOZ 2.2's JSON and the Hugging Face layout: base dialogues with frames.
    let env = Env::new();
    let builtin = dgen::schema::ValuePools::builtin();
    let own: BTreeMap<&String, Vec<String>> = builtin
        .slots
        .iter()
        .map(|(slot, values)| (slot, values.iter().map(|v| format!("{v} Vale")).collect()))
        .collect();
    std::fs::write(env.path("own.json"), json!(own).to_string()).unwrap();
    plan_annotated(&env, 24, &["--slot_values", "own.json"])
        .assert()
        .success();
    let mock = MockServer::start();
    env.run(&mock, &["--concurrency", "4"]).assert().success();
    env.dgen()
        .args(["export", "--multiwoz", "mw.json"])
        .assert()
        .success();
    env.dgen().args(["export", "--hf", "hf"]).assert().success();
    let said = frame_values(&env.path("mw.json"));

    // Planned on those dialogues without --slot_values, the goals draw the frames' values for
    // the slots the frames give at least three values, and the built-in ones for the others.
    let plan_on = |store: &str, dataset: &str, extra: &[&str]| {
        let mut plan = env.dgen();
        plan.args([
            "--store",
            store,
            "plan",
            "--total_generations",
            "30",
            "--annotate",
        ])
        .arg("--dataset")
        .arg(env.path(dataset))
        .arg("--persona_dataset")
        .arg(common::fixture("personas_hf"))
        .args(extra);
        env.stdout(&mut plan)
    };
    let out = plan_on("json.redb", "mw.json", &[]);
    let from_frames = said
        .iter()
        .filter(|(slot, values)| values.len() >= 3 && builtin.slots.contains_key(*slot))
        .count();
    assert!(from_frames > 0, "{said:?}");
    assert!(
        out.contains(&format!(
            "value pools: {from_frames} slot(s) from the frames of 24 base dialogues"
        )),
        "{out}"
    );
    let mut drawn_from_frames = 0;
    for goal in extracted_goals(&env, "json.redb", 30) {
        for pair in goal["inform"].as_array().unwrap() {
            let (slot, value) = (pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
            let Some(pool) = builtin.slots.get(slot) else {
                continue; // categorical: the schema's possible values
            };
            match said.get(slot).filter(|values| values.len() >= 3) {
                Some(values) => {
                    assert!(values.contains(value), "{slot}={value} not in {values:?}");
                    drawn_from_frames += 1;
                }
                None => assert!(pool.contains(&value.to_string()), "{slot}={value}"),
            }
        }
    }
    assert!(drawn_from_frames >= 10, "{drawn_from_frames}");

    // The Hugging Face layout of the same dialogues gives the same values, so the same plan.
    let hf = plan_on("hf.redb", "hf", &["--split", "train"]);
    let fingerprint = |out: &str| {
        out.lines()
            .find(|l| l.starts_with("plan fingerprint: "))
            .unwrap()
            .to_string()
    };
    assert_eq!(fingerprint(&hf), fingerprint(&out));
    // A split the folder's data/ files are not named for is refused, not read as all of them.
    env.dgen()
        .args([
            "--store",
            "v.redb",
            "plan",
            "--total_generations",
            "2",
            "--split",
            "validation",
        ])
        .arg("--dataset")
        .arg(env.path("hf"))
        .arg("--persona_dataset")
        .arg(common::fixture("personas_hf"))
        .assert()
        .failure()
        .stderr(predicates::str::contains(
            "has no split \"validation\": its files are of split(s) train; pass --split train",
        ));

    // --slot_values still wins, slot by slot.
    let slot = said
        .iter()
        .find(|(slot, values)| values.len() >= 3 && builtin.slots.contains_key(*slot))
        .unwrap()
        .0;
    std::fs::write(
        env.path("mine.json"),
        json!({ slot: ["Mine A", "Mine B", "Mine C"] }).to_string(),
    )
    .unwrap();
    plan_on("mine.redb", "mw.json", &["--slot_values", "mine.json"]);
    let mut mine = 0;
    for goal in extracted_goals(&env, "mine.redb", 30) {
        for pair in goal["inform"].as_array().unwrap() {
            if pair[0] == slot.as_str() {
                assert!(pair[1].as_str().unwrap().starts_with("Mine "), "{pair}");
                mine += 1;
            }
        }
    }
    assert!(mine > 0, "no goal of 30 gives {slot}");
}

#[test]
fn extract_item_shows_what_the_plan_drew_and_the_goals_the_run_will_ask_for() {
    let env = Env::new();
    plan_annotated(&env, 3, &[]).assert().success();
    let text = env.stdout(env.dgen().args(["extract", "--item", "2"]));
    let shown: Value =
        serde_json::from_str(&env.stdout(env.dgen().args(["extract", "--item", "2", "--json"])))
            .unwrap();
    let item = &shown;
    assert!(text.starts_with("item: 2 of 3 (plan "), "{text}");
    assert!(text.contains("state: pending after 0 attempt(s)"), "{text}");
    assert!(text.contains(&format!(
        "outcome: {}",
        item["resolution_status"].as_str().unwrap()
    )));
    assert!(text.contains(&format!(
        "persona {}: {}",
        item["persona_index"],
        shown["persona"].as_str().unwrap()
    )));
    // One line per goal, as the request will give them (the dry run's request has the same).
    let goals = shown["goals"].as_array().unwrap();
    assert_eq!(goals.len(), item["services"].as_array().unwrap().len());
    let lines: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != "user goals:")
        .skip(1)
        .collect();
    assert_eq!(lines.len(), goals.len(), "{text}");
    for (line, goal) in lines.iter().zip(goals) {
        let gives: Vec<String> = goal["inform"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| format!("{}={}", p[0].as_str().unwrap(), p[1].as_str().unwrap()))
            .collect();
        let asks = strings(&goal["request"]);
        let mut expected = format!(
            "  {}: {} ({})",
            goal["service"].as_str().unwrap(),
            goal["intent"].as_str().unwrap(),
            gives.join(", ")
        );
        if !asks.is_empty() {
            expected.push_str(&format!(", asks for {}", asks.join(", ")));
        }
        assert_eq!(*line, expected);
    }
    // `export --plan_file` writes the same goals beside each item.
    assert_eq!(env.plan_jsonl("dgen.redb")[2]["goals"], shown["goals"]);
    let dry = env.stdout(env.dgen().args(["run", "--dry_run", "--limit", "3"]));
    for goal in goals {
        for pair in goal["inform"].as_array().unwrap() {
            assert!(dry.contains(pair[1].as_str().unwrap()), "{goal}");
        }
    }
    // A plain plan's item has no goals; an index past the plan names the valid ones.
    let plain = Env::new();
    plain.plan(3, &[]).assert().success();
    let text = plain.stdout(plain.dgen().args(["extract", "--item", "0"]));
    assert!(
        text.contains("services: ") && !text.contains("user goals"),
        "{text}"
    );
    plain
        .dgen()
        .args(["extract", "--item", "3"])
        .assert()
        .failure()
        .stderr(predicates::str::contains(
            "its plan has 3 items (valid indices 0..=2)",
        ));
    plain
        .dgen()
        .args(["--store", "none.redb", "extract", "--item", "0"])
        .assert()
        .failure()
        .stderr(predicates::str::contains("none.redb"));
    // A shard's store shows its own items and names the shard that holds another.
    let mut shard = plain.plan(8, &["--shard", "1/4"]);
    shard.args(["--store", "s1.redb"]);
    shard.assert().success();
    let s1 = ["--store", "s1.redb", "extract", "--item"];
    let text = plain.stdout(plain.dgen().args(s1).arg("5"));
    assert!(text.starts_with("item: 5 of 8"), "{text}");
    plain
        .dgen()
        .args(s1)
        .arg("2")
        .assert()
        .failure()
        .stderr(predicates::str::contains(
            "it holds shard 1/4 (the items whose index divided by 4 leaves 1); item 2 is in the store of shard 2/4",
        ));
    plain
        .dgen()
        .args(s1)
        .arg("8")
        .assert()
        .failure()
        .stderr(predicates::str::contains("its plan has 8 items"));
}

#[test]
fn frames_whose_slot_names_the_schema_lacks_leave_the_pools_and_say_why() {
    // The SGD fixture's frames name SGD's slots (`event_date`), not the built-in schema's.
    let env = Env::new();
    let mut plan = env.dgen();
    plan.args([
        "plan",
        "--total_generations",
        "3",
        "--annotate",
        "--dataset",
    ])
    .arg(common::fixture("sgd"))
    .arg("--persona_dataset")
    .arg(common::fixture("personas_hf"));
    let out = env.stdout(&mut plan);
    assert!(
        out.contains("none a free-text slot of the plan's schema")
            && out.contains("--services_schema"),
        "{out}"
    );
}

#[test]
fn an_annotated_run_over_two_endpoints_is_judged_and_reported_like_a_plain_one() {
    let env = Env::new();
    let (a, b) = (MockServer::start(), MockServer::start());
    plan_annotated(&env, 12, &[]).assert().success();
    env.dgen()
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_KEY")
        .env_remove("OPENAI_BASE_URL")
        .args(["run", "--endpoint", &a.url, "--endpoint", &b.url])
        .args(["--concurrency", "4", "--retry_base_ms", "20"])
        .timeout(Duration::from_secs(300))
        .assert()
        .success();
    assert_eq!(env.state_count("done"), 12);
    // Both endpoints answered annotated dialogue requests.
    for mock in [&a, &b] {
        assert!(
            mock.requests().iter().any(|r| r.dialogue),
            "an endpoint got no dialogue request"
        );
    }
    let schema = builtin_schema();
    let records = env.export_all().records;
    assert_eq!(records.len(), 12);
    for record in &records {
        check_record(record, &schema);
    }
    // The judge scores every annotated dialogue; the report shows them with the label figures.
    env.dgen()
        .env_remove("OPENAI_API_KEY")
        .args(["judge", "--judge_base_url", &a.url, "--retry_base_ms", "20"])
        .timeout(Duration::from_secs(300))
        .assert()
        .success();
    assert_eq!(a.judge_calls(), 12);
    env.dgen().arg("report").assert().success();
    let report = run_report(&env, "dgen.redb");
    assert_eq!(report["rejections"], json!({}), "{report}");
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(env.path("report.json")).unwrap()).unwrap();
    assert_eq!(
        json["metrics"]["judge"]["judged"], 12,
        "{}",
        json["metrics"]["judge"]
    );
    assert_eq!(
        json["metrics"]["labels"]["annotated"], 12,
        "{}",
        json["metrics"]["labels"]
    );
}

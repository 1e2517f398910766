//! `--embed_workers` / `--embed_threads`: several embedding sessions side by side give the same
//! result as one, and the defaults follow the CPUs the process may use.

mod common;

use std::collections::BTreeMap;

use common::mock::MockServer;
use common::Env;

/// A run of 12 items with `flags`, one call at a time (the mock's answers follow its call
/// count); its accepted dialogues by id, with their embeddings.
fn accepted(flags: &[&str]) -> BTreeMap<String, (serde_json::Value, Vec<f32>)> {
    let env = Env::new();
    let mock = MockServer::start();
    env.plan_for_run(12);
    env.run(&mock, &[&["--concurrency", "1"], flags].concat())
        .assert()
        .success();
    assert_eq!(env.state_count("done"), 12);
    let out = env.export_all();
    out.records
        .into_iter()
        .zip(out.embeddings)
        .map(|(r, e)| {
            (
                r["dialogue_id"].as_str().unwrap().to_string(),
                (r["turns"].clone(), e),
            )
        })
        .collect()
}

#[test]
fn several_sessions_accept_the_same_dialogues_with_the_same_embeddings() {
    let one = accepted(&["--embed_workers", "1", "--embed_threads", "2"]);
    let two = accepted(&["--embed_workers", "2", "--embed_threads", "1"]);
    let default = accepted(&[]);
    assert_eq!(one.len(), 12);
    for other in [&two, &default] {
        assert_eq!(
            one.keys().collect::<Vec<_>>(),
            other.keys().collect::<Vec<_>>()
        );
        for (id, (turns, embedding)) in &one {
            let (other_turns, other_embedding) = &other[id];
            assert_eq!(turns, other_turns, "{id}");
            // Sessions with another intra-op thread count may split a kernel's work differently;
            // the same text embeds the same to within float rounding.
            let diff = embedding
                .iter()
                .zip(other_embedding)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(diff < 1e-5, "{id}: embeddings differ by {diff}");
        }
    }
}

/// Pinned to one CPU by its affinity mask, a run starts one single-threaded session, whatever
/// the host has; asked for more, it starts what was asked.
#[test]
fn the_default_follows_the_affinity_mask() {
    let env = Env::new();
    let mock = MockServer::start();
    env.plan_for_run(2);
    let run = env.run(&mock, &["-v", "--concurrency", "2"]);
    let mut pinned = std::process::Command::new("taskset");
    pinned
        .args(["-c", "0"])
        .arg(run.get_program())
        .args(run.get_args())
        .current_dir(env.dir.path())
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_KEY")
        .env_remove("RUST_LOG");
    let out = pinned.output().expect("taskset (util-linux) runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("embedding sessions: 1, intra-op threads each: 1"),
        "{log}"
    );

    let env = Env::new();
    env.plan_for_run(4);
    let out = env
        .run(
            &mock,
            &["-v", "--embed_workers", "3", "--embed_threads", "2"],
        )
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("embedding sessions: 3, intra-op threads each: 2"));
}

#[test]
fn zero_workers_is_refused_with_the_flag_named() {
    let env = Env::new();
    env.plan_for_run(1);
    let out = env
        .dgen()
        .args([
            "run",
            "--base_url",
            "http://127.0.0.1:9",
            "--embed_workers",
            "0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--embed_workers"));
}

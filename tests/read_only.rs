//! Commands that only read the store (`status`, `export`) or are refused (`plan` of another
//! plan without `--force`) leave the store file byte-identical, so a finished store can be
//! inspected on a read-only mount or while it is being copied.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::mock::MockServer;
use common::Env;
use predicates::prelude::*;

fn store_bytes(env: &Env) -> Vec<u8> {
    std::fs::read(env.path("dgen.redb")).unwrap()
}

#[test]
fn status_export_and_a_refused_plan_leave_the_store_byte_identical() {
    let env = Env::new();
    let mock = MockServer::start();
    env.plan_for_run(3);
    env.run(&mock, &["--concurrency", "1"]).assert().success();
    let before = store_bytes(&env);
    let unchanged = |what: &str| {
        assert!(
            store_bytes(&env) == before,
            "{what} changed the store's bytes"
        );
    };

    env.dgen().arg("status").assert().success();
    unchanged("dgen status");
    env.dgen().args(["status", "--json"]).assert().success();
    unchanged("dgen status --json");
    env.export_all();
    unchanged("dgen export");
    env.dgen()
        .args(["export", "--plan_file", "plan.jsonl"])
        .assert()
        .success();
    unchanged("dgen export --plan_file");
    env.plan(3, &common::TURNS)
        .assert()
        .success()
        .stdout(predicate::str::contains("already holds this plan"));
    unchanged("dgen plan of the same plan");
    env.plan(4, &common::TURNS)
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "already holds a different plan (fingerprint",
        ));
    unchanged("a refused dgen plan");
    env.plan(4, &[&common::TURNS[..], &["--force"]].concat())
        .assert()
        .failure()
        .stderr(predicate::str::contains("refusing --force"));
    unchanged("a refused dgen plan --force");

    // A store file nobody may write (as root the mode does not stop a write, so the bytes are
    // the check).
    let store = env.path("dgen.redb");
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o444)).unwrap();
    env.dgen()
        .args(["status", "--json"])
        .assert()
        .success()
        .stdout(predicate::str::contains("\"total_items\": 3"));
    env.dgen()
        .args(["export", "--output_file", "ro.json", "--only", "dialogues"])
        .assert()
        .success()
        .stdout(predicate::str::contains("exported 3 dialogues"));
    unchanged("status and export of a 0444 store");
}

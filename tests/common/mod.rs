//! Helpers shared by the integration tests: the `dgen` binary in a temp dir, the bundled
//! fixtures, and the real data in `../shared/data` when it is there.
#![allow(dead_code)]

pub mod mock;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use tempfile::TempDir;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

pub fn fixture(name: &str) -> PathBuf {
    fixtures().join(name)
}

/// `../shared/data` beside the project, when this checkout has it.
pub fn shared_data() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    dir.join("multiwoz22_dev/dialogues.json")
        .is_file()
        .then_some(dir)
}

pub struct Env {
    pub dir: TempDir,
}

impl Env {
    pub fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `dgen` running in the temp dir with the store `dgen.redb` there.
    pub fn dgen(&self) -> Command {
        let mut cmd = Command::cargo_bin("dgen").unwrap();
        cmd.current_dir(self.dir.path()).env_remove("RUST_LOG");
        cmd
    }

    /// `dgen plan` on the bundled fixtures.
    pub fn plan(&self, n: u64, extra: &[&str]) -> Command {
        let mut cmd = self.dgen();
        cmd.arg("plan")
            .arg("--total_generations")
            .arg(n.to_string())
            .arg("--dataset")
            .arg(fixture("multiwoz_hf"))
            .arg("--persona_dataset")
            .arg(fixture("personas_hf"))
            .args(extra);
        cmd
    }

    pub fn stdout(&self, cmd: &mut Command) -> String {
        let out = cmd.assert().success().get_output().stdout.clone();
        String::from_utf8(out).unwrap()
    }

    /// The fingerprint line `dgen plan` prints.
    pub fn fingerprint(&self, cmd: &mut Command) -> String {
        let out = self.stdout(cmd);
        out.lines()
            .find_map(|l| l.strip_prefix("plan fingerprint: "))
            .unwrap_or_else(|| panic!("no fingerprint in {out}"))
            .to_string()
    }

    pub fn plan_jsonl(&self, store: &str) -> Vec<serde_json::Value> {
        let file = self.path(&format!("{store}.plan.jsonl"));
        self.dgen()
            .args(["--store", store, "export", "--plan_file"])
            .arg(&file)
            .assert()
            .success();
        std::fs::read_to_string(file)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

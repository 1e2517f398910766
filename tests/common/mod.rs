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

/// `../shared/data` beside the project. Only `#[ignore]`d tests use it, and they fail (never
/// skip) when it is missing.
pub fn shared_data() -> PathBuf {
    // `DGEN_SHARED_DATA` for a checkout that is not beside `shared/` (a git worktree).
    let dir = std::env::var_os("DGEN_SHARED_DATA").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"),
        PathBuf::from,
    );
    assert!(
        dir.join("multiwoz22_dev/dialogues.json").is_file(),
        "{} lacks the real MultiWOZ data (multiwoz22_dev/dialogues.json); this test needs it",
        dir.display()
    );
    dir
}

pub struct Env {
    pub dir: TempDir,
}

/// The variables `dgen plan` reads its shard from when no flag gives one.
pub const SCHEDULER_VARS: [&str; 7] = [
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_COUNT",
    "SLURM_ARRAY_TASK_MIN",
    "SLURM_ARRAY_TASK_MAX",
    "SLURM_ARRAY_TASK_STEP",
    "JOB_COMPLETION_INDEX",
    "DGEN_SHARD_COUNT",
];

impl Env {
    pub fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `n` unit vectors of 384 dimensions (one-hot) as the NPY file `name`, for `dgen import`
    /// without the embedding model.
    pub fn one_hot_embeddings(&self, name: &str, n: usize) {
        let mut npy = dgen::output::npy::header(n as u64, 384);
        for i in 0..n {
            for d in 0..384 {
                let x: f32 = if d == i % 384 { 1.0 } else { 0.0 };
                npy.extend_from_slice(&x.to_le_bytes());
            }
        }
        std::fs::write(self.path(name), npy).unwrap();
    }

    /// `dgen` running in the temp dir with the store `dgen.redb` there.
    pub fn dgen(&self) -> Command {
        let mut cmd = Command::cargo_bin("dgen").unwrap();
        cmd.current_dir(self.dir.path()).env_remove("RUST_LOG");
        // Inside a Slurm job array or a Kubernetes Indexed Job, `dgen plan` would plan a shard.
        for var in SCHEDULER_VARS {
            cmd.env_remove(var);
        }
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
        self.plan_lines(store)
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The store's plan as `dgen export --plan_file` writes it, line by line, unparsed.
    pub fn plan_lines(&self, store: &str) -> Vec<String> {
        let file = self.path(&format!("{store}.plan.jsonl"));
        self.dgen()
            .args(["--store", store, "export", "--plan_file"])
            .arg(&file)
            .assert()
            .success();
        std::fs::read_to_string(file)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// Turn bounds every run test plans with, so the mock's 3-turn answers always fit.
pub const TURNS: [&str; 6] = ["--min_turns", "3", "3", "--max_turns", "6", "6"];

impl Env {
    /// `dgen plan` on the fixtures with [`TURNS`].
    pub fn plan_for_run(&self, n: u64) {
        self.plan(n, &TURNS).assert().success();
    }

    /// The same, into another store.
    pub fn plan_for_run_in(&self, store: &str, n: u64) {
        self.plan(n, &[&["--store", store][..], &TURNS[..]].concat())
            .assert()
            .success();
    }

    /// `dgen status --json` of another store.
    pub fn status_json_of(&self, store: &str) -> serde_json::Value {
        serde_json::from_str(&self.stdout(self.dgen().args(["--store", store, "status", "--json"])))
            .unwrap()
    }

    /// `dgen run` against the mock, with short retry delays; no key in the environment.
    pub fn run(&self, mock: &mock::MockServer, extra: &[&str]) -> Command {
        let mut cmd = self.dgen();
        cmd.env_remove("OPENAI_API_KEY")
            .env_remove("OPENAI_KEY")
            .env_remove("OPENAI_BASE_URL")
            .args(["run", "--base_url", &mock.url, "--retry_base_ms", "20"])
            .args(extra)
            .timeout(std::time::Duration::from_secs(300));
        cmd
    }

    /// The same as [`Env::run`] as a child process, for signal tests.
    pub fn spawn_run(&self, mock: &mock::MockServer, extra: &[&str]) -> std::process::Child {
        std::process::Command::new(assert_cmd::cargo::cargo_bin("dgen"))
            .current_dir(self.dir.path())
            .env_remove("OPENAI_API_KEY")
            .env_remove("OPENAI_KEY")
            .env_remove("OPENAI_BASE_URL")
            .env_remove("RUST_LOG")
            .args(["run", "--base_url", &mock.url, "--retry_base_ms", "20"])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Polls `dgen status --json` (a running run answers it) until `ready` holds for it, and
    /// returns that status; fails after 3 minutes naming `what`.
    pub fn wait_for_status(
        &self,
        what: &str,
        ready: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let started = std::time::Instant::now();
        loop {
            let status = self.status_json();
            if ready(&status) {
                return status;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(180),
                "{what} did not happen within 180 s: {status}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    pub fn status_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout(self.dgen().args(["status", "--json"]))).unwrap()
    }

    pub fn state_count(&self, state: &str) -> u64 {
        count_in(&self.status_json(), state)
    }
}

/// Items in `state` in a `dgen status --json` report.
pub fn count_in(status: &serde_json::Value, state: &str) -> u64 {
    status["states"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["state"] == state)
        .map(|s| s["count"].as_u64().unwrap())
        .unwrap()
}

impl Env {
    /// `dgen export` into the temp dir; the three files parsed: (records, hashes, npy rows).
    pub fn export_all(&self) -> Exported {
        self.dgen().arg("export").assert().success();
        let records: Vec<serde_json::Value> = serde_json::from_str(
            &std::fs::read_to_string(self.path("generated_dialogues.json")).unwrap(),
        )
        .unwrap();
        let hashes: Vec<String> = serde_json::from_str(
            &std::fs::read_to_string(self.path("dialogue_hashes.json")).unwrap(),
        )
        .unwrap();
        let embeddings = read_npy(&self.path("dialogue_embeddings.npy"));
        Exported {
            records,
            hashes,
            embeddings,
        }
    }
}

pub struct Exported {
    pub records: Vec<serde_json::Value>,
    pub hashes: Vec<String>,
    pub embeddings: Vec<Vec<f32>>,
}

/// A minimal NPY reader (v1, '<f4', C order, 2-D), independent of dgen's writer.
pub fn read_npy(path: &Path) -> Vec<Vec<f32>> {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00", "NPY v1 magic");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(
        header.contains("'descr': '<f4'") && header.contains("'fortran_order': False"),
        "{header}"
    );
    assert_eq!((10 + header_len) % 64, 0, "header padded to 64 bytes");
    let shape = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let dims: Vec<usize> = shape
        .split(',')
        .filter_map(|d| d.trim().parse().ok())
        .collect();
    let (rows, cols) = (dims[0], dims[1]);
    let data = &bytes[10 + header_len..];
    assert_eq!(data.len(), rows * cols * 4, "data size matches the shape");
    data.chunks_exact(cols * 4)
        .map(|row| {
            row.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        })
        .collect()
}

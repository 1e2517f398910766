//! Requests to a running `dgen run`. redb lets one process open a store, so while a run holds
//! it, `dgen export` and `dgen status` hand their request to the run through files beside the
//! store (`<store>.request-<id>.json`); the run answers from a read snapshot between commits,
//! without stopping, and writes `<store>.response-<id>.json`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::cli::{ExportArgs, StatusArgs};
use crate::store::Store;

#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    Export(ExportArgs),
    Status(StatusArgs),
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    /// What the command prints: its stdout on success, the error otherwise.
    pub output: String,
}

fn sibling(store: &Path, kind: &str, id: &str) -> PathBuf {
    let name = store
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dgen.redb".into());
    store.with_file_name(format!("{name}.{kind}-{id}.json"))
}

fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let temp = path.with_extension("json.tmp");
    std::fs::write(&temp, text).with_context(|| format!("cannot write {}", temp.display()))?;
    std::fs::rename(&temp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Makes relative paths absolute, since the run may work in another folder.
fn absolute(path: &mut PathBuf) -> Result<()> {
    *path = std::path::absolute(&*path)?;
    Ok(())
}

/// Sends a request to the run holding `store` and waits for its answer.
pub fn ask(store: &Path, mut request: Request, timeout: Duration) -> Result<Response> {
    if let Request::Export(args) = &mut request {
        absolute(&mut args.output_file)?;
        absolute(&mut args.hash_file)?;
        absolute(&mut args.embedding_file)?;
        for p in [args.jsonl.as_mut(), args.plan_file.as_mut()]
            .into_iter()
            .flatten()
        {
            absolute(p)?;
        }
    }
    let id = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    let request_path = sibling(store, "request", &id);
    let response_path = sibling(store, "response", &id);
    write_atomically(&request_path, &serde_json::to_string(&request)?)?;
    let started = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(&response_path) {
            let _ = std::fs::remove_file(&response_path);
            return Ok(serde_json::from_str(&text)?);
        }
        if started.elapsed() > timeout {
            let _ = std::fs::remove_file(&request_path);
            bail!(
                "store {} is in use by another dgen process that did not answer within {:.0} s (only `dgen run` answers export and status requests); try again when it has finished",
                store.display(),
                timeout.as_secs_f64()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Pending request files for `store`, oldest first.
pub fn pending(store: &Path) -> Vec<(String, PathBuf)> {
    let Some(name) = store.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Vec::new();
    };
    let dir = match store.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let prefix = format!("{name}.request-");
    let mut found: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let file = e.file_name().to_string_lossy().into_owned();
            let id = file
                .strip_prefix(&prefix)?
                .strip_suffix(".json")?
                .to_string();
            Some((id, e.path()))
        })
        .collect();
    found.sort();
    found
}

/// Answers every pending request from a read snapshot of `store`.
pub fn serve(store: &Store, answer: impl Fn(&Store, Request) -> Result<String>) {
    for (id, path) in pending(store.path()) {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let _ = std::fs::remove_file(&path);
        let response = match serde_json::from_str::<Request>(&text) {
            Ok(request) => match answer(store, request) {
                Ok(output) => Response { ok: true, output },
                Err(e) => Response {
                    ok: false,
                    output: format!("{e:#}"),
                },
            },
            Err(e) => Response {
                ok: false,
                output: format!("unreadable request: {e}"),
            },
        };
        let body = serde_json::to_string(&response).unwrap_or_default();
        if let Err(e) = write_atomically(&sibling(store.path(), "response", &id), &body) {
            tracing::warn!("cannot answer a request: {e:#}");
        }
    }
}

/// For a command that found the store held: asks the run and prints its answer.
pub fn print_answer(store: &Path, request: Request) -> Result<std::process::ExitCode> {
    let response = ask(store, request, Duration::from_secs(120))?;
    if !response.ok {
        bail!("{}", response.output);
    }
    print!("{}", response.output);
    Ok(std::process::ExitCode::SUCCESS)
}

/// What a run answers: the same code paths as the commands themselves.
pub fn answer(store: &Store, request: Request) -> Result<String> {
    match request {
        Request::Export(args) => crate::output::export::execute(
            store,
            &crate::commands::export::job(&args),
            &std::sync::atomic::AtomicBool::new(false),
        ),
        Request::Status(args) => crate::status::render(store, &args),
    }
}

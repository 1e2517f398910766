//! Export, status and report while a `dgen run` holds the store. The command opens the store itself
//! when it can; when a run holds it, the command asks the run over [`ipc`], and the run answers
//! with [`answer`], the same code paths the commands use, from read snapshots.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::ipc::{self, protocol, NoRun, Request, Response, Unreached};
use crate::output::export::{self, DialogueFiles, ExportJob};
use crate::output::formats::FormatJob;
use crate::output::hf::splits::SplitSpec;
use crate::output::hf::{Codec, HfJob};
use crate::report::{self, ReportJob};
use crate::status::{self, StatusOptions};
use crate::store::{Store, StoreInUse};

/// A run that is finishing has removed its socket but may still hold the store a moment.
const FINISHING: Duration = Duration::from_millis(250);
const TRIES: u32 = 8;

/// Prints what `local` says about the store, or, while a run holds it, what the run answers to
/// `request`.
pub fn here_or_by_the_run(
    store_path: &Path,
    cache: Option<usize>,
    local: impl Fn(&Store) -> Result<String>,
    request: impl Fn() -> Result<Request>,
) -> Result<ExitCode> {
    let mut unreached = None;
    for _ in 0..TRIES {
        let err = match Store::open_read_only(store_path, cache) {
            Ok(store) => {
                print!("{}", local(&store)?);
                return Ok(ExitCode::SUCCESS);
            }
            Err(e) if e.is::<StoreInUse>() => e,
            Err(e) => return Err(e),
        };
        match ipc::ask(store_path, &request()?) {
            Ok(Response::Ok { output }) => {
                print!("{output}");
                return Ok(ExitCode::SUCCESS);
            }
            Ok(Response::Err { message }) => bail!("{message}"),
            Err(e) => match e.downcast::<NoRun>() {
                Ok(no_run) => {
                    drop(err);
                    unreached = Some(no_run);
                }
                Err(e) => return Err(e),
            },
        }
        std::thread::sleep(FINISHING);
    }
    let socket = ipc::socket_path(store_path);
    match unreached.map(|n| n.why) {
        Some(Unreached::Refused(Some(holder))) if holder.host != ipc::this_host() => bail!(
            "store {} is held by a dgen run on host {} (pid {}), whose socket {} cannot be reached from this host ({}): a Unix socket does not cross hosts on a shared filesystem. Run the command on {}, or when that run has finished",
            store_path.display(),
            holder.host,
            holder.pid,
            socket.display(),
            ipc::this_host(),
            holder.host,
        ),
        Some(Unreached::TooLong(e)) => bail!(
            "store {} is held by another process, and a dgen run holding it cannot be asked: {e}",
            store_path.display()
        ),
        Some(Unreached::Refused(_)) => bail!(
            "store {} is held by another process, and it is not a dgen run answering requests (the socket {} is a killed run's, no process listens on it); wait until that process (dgen plan, import or bench-fill, say) has finished, then run the command again",
            store_path.display(),
            socket.display()
        ),
        _ => bail!(
            "store {} is held by another process, and it is not a dgen run answering requests (no socket at {}); wait until that process (dgen plan, import or bench-fill, say) has finished, then run the command again",
            store_path.display(),
            socket.display()
        ),
    }
}

/// For the run: answers export, status and report requests until the returned server is
/// dropped. A run that cannot bind its socket goes on, unreachable, and says so; one whose
/// socket path a program listens on does not start, since requests would go to that program.
pub fn serve(store: &Arc<Store>) -> Result<Option<ipc::Server>> {
    let for_handler = store.clone();
    let handler = move |request, cancel: &AtomicBool| answer(&for_handler, request, cancel);
    match ipc::Server::start(store.path(), handler) {
        Ok(server) => Ok(Some(server)),
        Err(e) if e.is::<ipc::server::Occupied>() => Err(e),
        Err(e) => {
            tracing::warn!("{e:#}; dgen export, status and report cannot reach this run");
            Ok(None)
        }
    }
}

/// What a run answers: the same code paths as the commands themselves.
pub fn answer(store: &Store, request: Request, cancel: &AtomicBool) -> Result<String> {
    match request {
        Request::Status(r) => status::render(
            store,
            &StatusOptions {
                json: r.json,
                price_input: r.price_input,
                price_output: r.price_output,
                ..StatusOptions::default()
            },
        ),
        Request::Item(r) => super::extract::render_item(store, r.index, r.json),
        Request::ExportPlan(r) => {
            export::execute(store, &ExportJob::Plan(absolute(r.plan_file)?), cancel)
        }
        Request::ExportDialogues(r) => {
            let files = DialogueFiles {
                dialogues: r.dialogues.map(absolute).transpose()?,
                hashes: r.hashes.map(absolute).transpose()?,
                embeddings: r.embeddings.map(absolute).transpose()?,
                jsonl: r.jsonl.map(absolute).transpose()?,
                include_imported: r.include_imported,
            };
            export::execute(store, &ExportJob::Dialogues(files), cancel)
        }
        Request::ExportHf(r) => {
            let spec = r
                .splits
                .iter()
                .map(|(name, fraction)| format!("{name}={fraction}"))
                .collect::<Vec<_>>()
                .join(",");
            let job = HfJob {
                dir: absolute(r.dir)?,
                splits: SplitSpec::parse(&spec).map_err(anyhow::Error::msg)?,
                split_seed: r.split_seed,
                codec: match r.compression.as_str() {
                    "zstd" => Codec::Zstd,
                    "snappy" => Codec::Snappy,
                    other => bail!("unknown compression \"{other}\" in the request"),
                },
                shard_rows: r.shard_rows.max(1),
                shard_bytes: r.shard_bytes.max(1),
                embeddings: r.embeddings,
                include_imported: r.include_imported,
            };
            export::execute(store, &ExportJob::Hf(job), cancel)
        }
        Request::ExportFormat(r) => {
            let job = FormatJob {
                sgd: r.sgd.map(absolute).transpose()?,
                chat: r.chat.map(absolute).transpose()?,
                multiwoz: r.multiwoz.map(absolute).transpose()?,
                include_imported: r.include_imported,
            };
            export::execute(store, &ExportJob::Format(job), cancel)
        }
        Request::Report(r) => {
            let job = ReportJob {
                html: absolute(r.html)?,
                json: absolute(r.json)?,
                price_input: r.price_input,
                price_output: r.price_output,
                ..ReportJob::default()
            };
            report::execute(store, &job, cancel)
        }
    }
}

/// The run works in its own folder: it takes only absolute paths.
fn absolute(path: PathBuf) -> Result<PathBuf> {
    if !path.is_absolute() {
        bail!(
            "the request names the relative path {}; a run needs absolute paths",
            path.display()
        );
    }
    Ok(path)
}

/// The request for `job`, with paths made absolute against this process's folder.
pub fn export_request(job: &ExportJob) -> Result<Request> {
    let abs = |p: &Option<PathBuf>| p.as_deref().map(std::path::absolute).transpose();
    Ok(match job {
        ExportJob::Plan(plan_file) => Request::ExportPlan(protocol::ExportPlanRequest {
            plan_file: std::path::absolute(plan_file)?,
        }),
        ExportJob::Dialogues(f) => Request::ExportDialogues(protocol::ExportDialoguesRequest {
            dialogues: abs(&f.dialogues)?,
            hashes: abs(&f.hashes)?,
            embeddings: abs(&f.embeddings)?,
            jsonl: abs(&f.jsonl)?,
            include_imported: f.include_imported,
        }),
        ExportJob::Hf(job) => Request::ExportHf(protocol::ExportHfRequest {
            dir: std::path::absolute(&job.dir)?,
            splits: job.splits.pairs().to_vec(),
            split_seed: job.split_seed,
            compression: match job.codec {
                Codec::Snappy => "snappy".into(),
                Codec::Zstd => "zstd".into(),
            },
            shard_rows: job.shard_rows,
            shard_bytes: job.shard_bytes,
            embeddings: job.embeddings,
            include_imported: job.include_imported,
        }),
        ExportJob::Format(job) => Request::ExportFormat(protocol::ExportFormatRequest {
            sgd: abs(&job.sgd)?,
            chat: abs(&job.chat)?,
            multiwoz: abs(&job.multiwoz)?,
            include_imported: job.include_imported,
        }),
    })
}

/// The request for a report, with paths made absolute against this process's folder.
pub fn report_request(job: &ReportJob) -> Result<Request> {
    Ok(Request::Report(protocol::ReportRequest {
        html: std::path::absolute(&job.html)?,
        json: std::path::absolute(&job.json)?,
        price_input: job.price_input,
        price_output: job.price_output,
    }))
}

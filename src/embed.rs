//! Sentence embeddings with all-MiniLM-L6-v2 (int8 ONNX) through fastembed, fully offline: the
//! model, tokenizer and ONNX Runtime library come from `scripts/fetch-assets.sh`. Mean pooling,
//! L2-normalised, 384 dimensions, inputs truncated at 256 tokens like sentence-transformers.
//! K worker threads, each with its own ONNX session of a fixed intra-op thread count, serve
//! requests in batches from one queue, so async tasks never block on them. One session running
//! its thread pool over every core scales badly (batches of 4 leave most threads waiting);
//! one single-threaded session per core does not.
//!
//! Memory: each session plans its buffers per run rather than caching a memory pattern per input
//! shape (those patterns kept the CPU arena at about 100 MB a session), and the sessions load one
//! after another with glibc's free pages handed back after each load, so the loads' transient
//! memory neither adds up nor stays. On 2 cores `dgen run` peaks at about 450 MB instead of 635.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use fastembed::{
    InitOptionsUserDefined, Pooling, TextEmbedding, TokenizerFiles, UserDefinedEmbeddingModel,
};
use tokio::sync::{mpsc, oneshot};

pub const DIM: usize = 384;
pub const MAX_TOKENS: usize = 256;
/// Recorded in the store: embeddings of different models or settings never mix.
pub const EMBEDDING_ID: &str = "all-MiniLM-L6-v2/int8-onnx/mean/l2/256";
/// Texts per ONNX call: larger batches are no faster on 2 cores and cost memory (16: 790 MB
/// RSS, 4: 330 MB, same texts/s).
const BATCH: usize = 4;

pub mod cpus;

/// `--embed_workers` and `--embed_threads` resolved: sessions, and intra-op threads each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parallelism {
    pub workers: usize,
    pub threads: usize,
}

impl Parallelism {
    /// What was asked, the rest filled in from the `cpus` this process may use: by default
    /// one single-threaded session per CPU.
    pub fn resolve(workers: Option<usize>, threads: Option<usize>, cpus: usize) -> Parallelism {
        let cpus = cpus.max(1);
        let (workers, threads) = match (workers, threads) {
            (Some(w), Some(t)) => (w, t),
            (Some(w), None) => (w, (cpus / w.max(1)).max(1)),
            (None, Some(t)) => ((cpus / t.max(1)).max(1), t),
            (None, None) => (cpus, 1),
        };
        Parallelism {
            workers: workers.max(1),
            threads: threads.max(1),
        }
    }

    pub fn from_flags(workers: Option<usize>, threads: Option<usize>) -> Parallelism {
        Parallelism::resolve(workers, threads, cpus::available())
    }
}

/// `--assets_dir`, else `$DGEN_CACHE_DIR`, else `~/.cache/dgen`.
pub fn assets_dir(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("DGEN_CACHE_DIR") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache/dgen")
}

/// Loads the ONNX Runtime library once per process, by path: `$ORT_DYLIB_PATH` when set, else
/// the one `scripts/fetch-assets.sh` put in the assets folder. The environment is never changed.
fn load_onnx_runtime(dir: &Path) -> Result<()> {
    static LOADED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let lib = match std::env::var_os("ORT_DYLIB_PATH") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => dir.join("onnxruntime/libonnxruntime.so.1.31.1"),
    };
    let loaded = LOADED.get_or_init(|| {
        if !lib.is_file() {
            return Err(format!(
                "ONNX Runtime library {} is missing; run scripts/fetch-assets.sh or set ORT_DYLIB_PATH",
                lib.display()
            ));
        }
        ort::init_from(&lib)
            .map(drop)
            .map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", lib.display()))
    });
    loaded.clone().map_err(anyhow::Error::msg)
}

pub struct Embedder {
    model: TextEmbedding,
}

impl Embedder {
    /// One session with `threads` intra-op threads, which sleep rather than spin when idle
    /// (spinning only burns the CPU the other sessions need).
    pub fn load(dir: &Path, threads: usize) -> Result<Embedder> {
        let model_dir = dir.join("all-MiniLM-L6-v2");
        let read = |name: &str| -> Result<Vec<u8>> {
            let path = model_dir.join(name);
            std::fs::read(&path).with_context(|| {
                format!(
                    "embedding asset {} is missing; run scripts/fetch-assets.sh (or pass --assets_dir)",
                    path.display()
                )
            })
        };
        let onnx = read("model.onnx")?;
        let tokenizer = TokenizerFiles {
            tokenizer_file: read("tokenizer.json")?,
            config_file: read("config.json")?,
            special_tokens_map_file: read("special_tokens_map.json")?,
            tokenizer_config_file: read("tokenizer_config.json")?,
        };
        load_onnx_runtime(dir)?;
        let model = UserDefinedEmbeddingModel::new(onnx, tokenizer).with_pooling(Pooling::Mean);
        let options = InitOptionsUserDefined::new()
            .with_max_length(MAX_TOKENS)
            .with_intra_threads(threads.max(1))
            .with_session_config("session.intra_op.allow_spinning", "0")
            .with_session_config("session.inter_op.allow_spinning", "0")
            // A memory pattern is one block per input shape kept in the arena; with batches of
            // every length it held about 100 MB a session. Same results, no slower here.
            .with_session_config("session.enable_mem_pattern", "0");
        let model = TextEmbedding::try_new_from_user_defined(model, options)
            .map_err(|e| anyhow::anyhow!("cannot load the embedding model: {e}"))?;
        Ok(Embedder { model })
    }

    pub fn embed(&mut self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let out = self
            .model
            .embed(texts, Some(BATCH))
            .map_err(|e| anyhow::anyhow!("embedding failed: {e}"))?;
        for v in &out {
            if v.len() != DIM {
                bail!(
                    "the embedding model returned {} dimensions, expected {DIM}",
                    v.len()
                );
            }
        }
        Ok(out)
    }
}

type Job = (String, oneshot::Sender<Result<Vec<f32>, String>>);

/// The embedders on their own threads; cheap to clone.
#[derive(Clone)]
pub struct EmbedService {
    tx: mpsc::UnboundedSender<Job>,
}

/// The embedder threads, to wait for once every [`EmbedService`] is gone: ONNX Runtime torn
/// down by the process exit in the middle of a batch prints errors.
pub struct EmbedWorker(Vec<std::thread::JoinHandle<()>>);

impl EmbedWorker {
    /// Waits up to `limit` for the threads to finish their batches and end.
    pub fn finish(self, limit: std::time::Duration) {
        let started = std::time::Instant::now();
        while !self.0.iter().all(|t| t.is_finished()) && started.elapsed() < limit {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        for thread in self.0 {
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

impl EmbedService {
    /// `parallelism.workers` threads, each loading its own session from `dir` (one at a time)
    /// and taking batches from the one queue; returns once every session is loaded, or the
    /// first error.
    pub fn start(dir: &Path, parallelism: Parallelism) -> Result<(EmbedService, EmbedWorker)> {
        let (tx, rx) = mpsc::unbounded_channel::<Job>();
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<()>>();
        let loading = std::sync::Arc::new(std::sync::Mutex::new(()));
        let mut threads = Vec::with_capacity(parallelism.workers);
        for k in 0..parallelism.workers {
            let (rx, ready, dir) = (rx.clone(), ready_tx.clone(), dir.to_path_buf());
            let loading = loading.clone();
            let thread = std::thread::Builder::new()
                .name(format!("embedder-{k}"))
                .spawn(
                    move || match load_in_turn(&loading, &dir, parallelism.threads) {
                        Ok(embedder) => {
                            let _ = ready.send(Ok(()));
                            drop(ready);
                            serve(embedder, &rx);
                        }
                        Err(e) => {
                            let _ = ready.send(Err(e));
                        }
                    },
                )
                .context("cannot start an embedder thread")?;
            threads.push(thread);
        }
        drop(ready_tx);
        for _ in 0..parallelism.workers {
            ready_rx
                .recv()
                .map_err(|_| anyhow::anyhow!("an embedder thread ended while loading"))??;
        }
        tracing::debug!(
            "embedding sessions: {}, intra-op threads each: {}",
            parallelism.workers,
            parallelism.threads
        );
        Ok((EmbedService { tx }, EmbedWorker(threads)))
    }

    pub async fn embed(&self, text: String) -> Result<Vec<f32>> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((text, reply))
            .map_err(|_| anyhow::anyhow!("the embedder stopped"))?;
        rx.await
            .map_err(|_| anyhow::anyhow!("the embedder stopped"))?
            .map_err(anyhow::Error::msg)
    }
}

/// Loads a session while holding `loading`, then returns the free memory the load left to the
/// system: a load peaks at about 250 MB, most of it freed at once, and loads side by side (or
/// their leftovers in each thread's malloc arena) would add up.
fn load_in_turn(loading: &std::sync::Mutex<()>, dir: &Path, threads: usize) -> Result<Embedder> {
    let _turn = loading
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let embedder = Embedder::load(dir, threads);
    release_free_memory();
    embedder
}

/// glibc keeps freed memory in its arenas; `malloc_trim` gives their free pages back.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn release_free_memory() {
    // SAFETY: malloc_trim takes no pointers and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() {}

/// One worker's loop: takes up to a batch from the queue (holding the queue only while it
/// takes), embeds it, answers; ends when every sender is gone.
fn serve(mut embedder: Embedder, rx: &std::sync::Mutex<mpsc::UnboundedReceiver<Job>>) {
    loop {
        let mut jobs = Vec::with_capacity(BATCH);
        {
            let Ok(mut rx) = rx.lock() else { return };
            let Some(first) = rx.blocking_recv() else {
                return;
            };
            jobs.push(first);
            while jobs.len() < BATCH {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
        }
        // Attempts cancelled while they waited need no embedding.
        jobs.retain(|(_, reply)| !reply.is_closed());
        if jobs.is_empty() {
            continue;
        }
        let texts: Vec<String> = jobs.iter().map(|(t, _)| t.clone()).collect();
        match embedder.embed(&texts) {
            Ok(vectors) => {
                for ((_, reply), v) in jobs.into_iter().zip(vectors) {
                    let _ = reply.send(Ok(v));
                }
            }
            Err(e) => {
                for (_, reply) in jobs {
                    let _ = reply.send(Err(e.to_string()));
                }
            }
        }
    }
}

/// Embeds `texts` in order on `parallelism.workers` sessions at once (for import), each
/// taking every K-th batch.
pub fn embed_all(dir: &Path, parallelism: Parallelism, texts: &[String]) -> Result<Vec<Vec<f32>>> {
    const CHUNK: usize = 16;
    let chunks: Vec<&[String]> = texts.chunks(CHUNK).collect();
    let workers = parallelism.workers.min(chunks.len()).max(1);
    type Done = Vec<(usize, Vec<Vec<f32>>)>;
    let results: Vec<Result<Done>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|k| {
                let chunks = &chunks;
                s.spawn(move || -> Result<Done> {
                    let mut embedder = Embedder::load(dir, parallelism.threads)?;
                    (k..chunks.len())
                        .step_by(workers)
                        .map(|i| Ok((i, embedder.embed(chunks[i])?)))
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("an embedder thread panicked")))
            })
            .collect()
    });
    let mut done: Done = Vec::with_capacity(chunks.len());
    for r in results {
        done.extend(r?);
    }
    done.sort_by_key(|(i, _)| *i);
    Ok(done.into_iter().flat_map(|(_, v)| v).collect())
}

#[cfg(test)]
mod tests {
    use super::Parallelism;

    #[test]
    fn defaults_are_one_single_threaded_session_per_cpu() {
        let p = |w, t, cpus| {
            let r = Parallelism::resolve(w, t, cpus);
            (r.workers, r.threads)
        };
        assert_eq!(p(None, None, 2), (2, 1));
        assert_eq!(p(None, None, 15), (15, 1));
        assert_eq!(p(None, Some(2), 15), (7, 2));
        assert_eq!(p(Some(4), None, 16), (4, 4));
        assert_eq!(p(Some(3), Some(3), 2), (3, 3));
        assert_eq!(p(None, Some(8), 2), (1, 8));
        assert_eq!(p(None, None, 0), (1, 1));
    }
}

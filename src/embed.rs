//! Sentence embeddings with all-MiniLM-L6-v2 (int8 ONNX) through fastembed, fully offline: the
//! model, tokenizer and ONNX Runtime library come from `scripts/fetch-assets.sh`. Mean pooling,
//! L2-normalised, 384 dimensions, inputs truncated at 256 tokens like sentence-transformers.
//! One thread owns the model and serves requests in batches, so async tasks never block on it.

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
    pub fn load(dir: &Path) -> Result<Embedder> {
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
        let options = InitOptionsUserDefined::new().with_max_length(MAX_TOKENS);
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

/// The embedder on its own thread; cheap to clone.
#[derive(Clone)]
pub struct EmbedService {
    tx: mpsc::UnboundedSender<Job>,
}

/// The embedder thread, to wait for once every [`EmbedService`] is gone: ONNX Runtime torn down
/// by the process exit in the middle of a batch prints errors.
pub struct EmbedWorker(std::thread::JoinHandle<()>);

impl EmbedWorker {
    /// Waits up to `limit` for the thread to finish its batch and end.
    pub fn finish(self, limit: std::time::Duration) {
        let started = std::time::Instant::now();
        while !self.0.is_finished() && started.elapsed() < limit {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        if self.0.is_finished() {
            let _ = self.0.join();
        }
    }
}

impl EmbedService {
    pub fn start(mut embedder: Embedder) -> Result<(EmbedService, EmbedWorker)> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("embedder".into())
            .spawn(move || {
                while let Some(first) = rx.blocking_recv() {
                    let mut jobs = vec![first];
                    while jobs.len() < BATCH {
                        match rx.try_recv() {
                            Ok(job) => jobs.push(job),
                            Err(_) => break,
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
            })
            .context("cannot start the embedder thread")?;
        Ok((EmbedService { tx }, EmbedWorker(thread)))
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

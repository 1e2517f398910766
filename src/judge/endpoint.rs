//! Where `dgen judge` (and the discrimination benchmark) reach the judge: `--judge_base_url`,
//! a local model started for the command, or by default what the store's run used — its base
//! URL, or the local model it started. The API key is the run's (`OPENAI_API_KEY`, …).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};

use super::rubric::{JudgeSchema, JudgeSettings};
use super::Judge;
use crate::cli::JudgeEndpointArgs;
use crate::embed;
use crate::llm::local_server::{self, LocalServer};
use crate::llm::{Endpoint, Limits, LlmClient, RetryPolicy};
use crate::run::credentials;
use crate::store::RunEndpoint;

const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// A judge ready to call, and the llama-server it runs on, if dgen started one (stopped when
/// this is dropped).
pub struct Launched {
    pub judge: Judge,
    pub base_url: String,
    pub concurrency: usize,
    pub server: Option<LocalServer>,
}

/// What the store knows of its run: the model and where it was called.
#[derive(Default)]
pub struct RunDefaults {
    pub model: Option<String>,
    pub endpoint: Option<RunEndpoint>,
}

/// The model name a local GGUF file goes by (as `dgen run` names it).
pub fn local_model_name(path: &Path) -> String {
    path.file_stem()
        .map_or_else(|| "local".into(), |s| s.to_string_lossy().into_owned())
}

/// Settles the judge's endpoint and model, starts llama-server when the judge is local, and
/// checks that a remote endpoint has a key. Call from the main thread (see `LocalServer`).
pub fn launch(args: &JudgeEndpointArgs, defaults: &RunDefaults) -> Result<Launched> {
    let assets = embed::assets_dir(args.assets_dir.as_deref());
    let recorded = defaults.endpoint.as_ref();
    let local: Option<PathBuf> = match (&args.local_model, args.local, &args.judge_base_url) {
        (Some(path), _, _) => Some(path.clone()),
        (None, true, _) => Some(assets.join(local_server::DEFAULT_MODEL)),
        (None, false, Some(_)) => None,
        (None, false, None) => recorded.and_then(|r| r.local_model.clone()),
    };
    let model = match (&args.judge_model, &local) {
        (Some(m), _) => m.clone(),
        (None, Some(path)) => local_model_name(path),
        (None, None) => defaults
            .model
            .clone()
            .unwrap_or_else(|| "gpt-4o-mini".into()),
    };
    let key = credentials::api_key();
    let server = match &local {
        Some(path) => Some(LocalServer::start(&args.server.settings(
            &assets,
            path,
            PathBuf::from("llama-server.log"),
        ))?),
        None => None,
    };
    let base_url = match (&server, &args.judge_base_url) {
        (Some(s), _) => s.base_url.clone(),
        (None, Some(url)) => url.clone(),
        (None, None) => recorded
            .and_then(|r| r.base_url.clone())
            .or_else(|| std::env::var("OPENAI_BASE_URL").ok())
            .unwrap_or_else(|| DEFAULT_BASE_URL.into()),
    };
    if key.is_none() && server.is_none() && !credentials::is_loopback(&base_url) {
        bail!(
            "no API key for the judge at {base_url}: set OPENAI_API_KEY (or OPENAI_KEY), or put OPENAI_KEY=... in ./.env.local; or judge on a local model with --local, or another endpoint with --judge_base_url"
        );
    }
    let concurrency = args.concurrency.unwrap_or(if server.is_some() {
        args.server.slots
    } else {
        8
    });
    let endpoint = Endpoint {
        base_url: base_url.clone(),
        api_key: key,
        timeout: args.request_timeout,
        retry: RetryPolicy {
            max_retries: args.max_retries,
            base: Duration::from_millis(args.retry_base_ms),
            cap: Duration::from_secs(60),
        },
        limits: Limits::ceiling(concurrency),
    };
    let judge = Judge {
        client: LlmClient::new(&endpoint)?,
        settings: JudgeSettings {
            model,
            // llama-server enforces full JSON Schema; hosted endpoints get OpenAI's subset.
            schema: if server.is_some() {
                JudgeSchema::Full
            } else {
                JudgeSchema::Strict
            },
            max_tokens: args.max_tokens,
        },
    };
    Ok(Launched {
        judge,
        base_url,
        concurrency,
        server,
    })
}

//! Where `dgen judge` (and the discrimination benchmark) reach the judge: `--judge_base_url`,
//! a local model started for the command, or by default what the store's run used — its base
//! URL, or the local model it started. A base URL read from the store is used only when it is
//! loopback or one the user's own settings name, since a store can come from someone else.
//!
//! The judge's key ([`judge_key`], shared with `dgen run --judge`): `--judge_key_env NAME`'s
//! variable when given; on a llama-server dgen started, that server's own key; else the key
//! the user's settings already send to that URL — the run's endpoint's, or `OPENAI_API_KEY`
//! for OpenAI and `$OPENAI_BASE_URL` — and none for another loopback URL. Any other URL is
//! refused until `--judge_key_env` says which key it takes: a key meant for one endpoint never
//! goes to another on a guess.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::rubric::{JudgeSchema, JudgeSettings};
use super::Judge;
use crate::embed;
use crate::llm::credentials;
use crate::llm::local_server::{self, LocalServer, ServerOptions};
use crate::llm::{CallSettings, Endpoint, LatencyBackoff, Limits, LlmClient, Secret};
use crate::store::RunEndpoint;

const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// Where the judge is reached and how it is called, as the user asked (`dgen judge`,
/// `judge-discrimination`); `launch` settles what is left open.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// The judge's base URL [default: the store's run's, else $OPENAI_BASE_URL, else OpenAI's].
    pub base_url: Option<String>,
    /// The judge's model [default: the store's run's].
    pub model: Option<String>,
    /// `--judge_key_env`: the environment variable holding the judge's key.
    pub key_env: Option<String>,
    /// The cached default local model.
    pub local: bool,
    /// A local GGUF model.
    pub local_model: Option<PathBuf>,
    pub server: ServerOptions,
    /// Calls in flight [default: 8, or the local server's slots].
    pub concurrency: Option<usize>,
    pub latency_backoff: LatencyBackoff,
    pub calls: CallSettings,
    pub max_tokens: u32,
    pub assets_dir: Option<PathBuf>,
}

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
pub fn launch(args: &EndpointConfig, defaults: &RunDefaults) -> Result<Launched> {
    let assets = embed::assets_dir(args.assets_dir.as_deref());
    let recorded = defaults.endpoint.as_ref();
    let local: Option<PathBuf> = match (&args.local_model, args.local, &args.base_url) {
        (Some(path), _, _) => Some(path.clone()),
        (None, true, _) => Some(assets.join(local_server::DEFAULT_MODEL)),
        (None, false, Some(_)) => None,
        (None, false, None) => recorded.and_then(|r| r.local_model.clone()),
    };
    let model = match (&args.model, &local) {
        (Some(m), _) => m.clone(),
        (None, Some(path)) => local_model_name(path),
        (None, None) => defaults
            .model
            .clone()
            .unwrap_or_else(|| "gpt-4o-mini".into()),
    };
    let server = match &local {
        Some(path) => Some(LocalServer::start(&args.server.settings(
            &assets,
            path,
            PathBuf::from("llama-server.log"),
        ))?),
        None => None,
    };
    let recorded_url = recorded
        .and_then(|r| r.base_url.as_deref())
        .filter(|url| credentials::is_loopback(url));
    let (base_url, key) = match (&server, &args.base_url) {
        (Some(s), _) => {
            if args.key_env.is_some() {
                bail!("--judge_key_env names the key of a remote judge; the local model's llama-server takes a key of dgen's own: leave --judge_key_env out, or pass --judge_base_url");
            }
            (s.base_url.clone(), Some(s.key.clone()))
        }
        (None, url) => {
            let url = match url {
                Some(url) => url.clone(),
                None => {
                    let from_env = std::env::var("OPENAI_BASE_URL").ok();
                    match recorded.and_then(|r| r.base_url.as_deref()) {
                        Some(url) => trusted_recorded_url(url, from_env.as_deref())?,
                        None => from_env.unwrap_or_else(|| DEFAULT_BASE_URL.into()),
                    }
                }
            };
            // The store's loopback endpoint got the run's default key.
            let default = credentials::api_key();
            let known: Vec<(&str, Option<&Secret>)> = recorded_url
                .map(|u| (u, default.as_ref()))
                .into_iter()
                .collect();
            let key = judge_key(args.key_env.as_deref(), &url, &known)?;
            (url, key)
        }
    };
    let latency_backoff = server.is_some() || args.latency_backoff.applies_to(&base_url);
    let concurrency = args.concurrency.unwrap_or(if server.is_some() {
        args.server.slots
    } else {
        8
    });
    let endpoint = Endpoint {
        base_url: base_url.clone(),
        api_key: key,
        timeout: args.calls.timeout,
        retry: args.calls.retry,
        limits: Limits {
            latency_backoff,
            ..Limits::ceiling(concurrency)
        },
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

/// The judge's key at `url` when it is not a llama-server dgen started: `key_env`'s variable
/// (`--judge_key_env`); else the key of a `known` endpoint at that URL (one the user's settings
/// already send a key to); else `OPENAI_API_KEY` for OpenAI and `$OPENAI_BASE_URL`; else none
/// for a loopback URL. Another URL is refused, naming the flag that settles it.
pub fn judge_key(
    key_env: Option<&str>,
    url: &str,
    known: &[(&str, Option<&Secret>)],
) -> Result<Option<Secret>> {
    let key = if let Some(name) = key_env {
        Some(credentials::from_var(name, "--judge_key_env")?)
    } else if let Some((_, key)) = known.iter().find(|(k, _)| same_url(k, url)) {
        key.cloned()
    } else if same_url(url, DEFAULT_BASE_URL)
        || std::env::var("OPENAI_BASE_URL").is_ok_and(|env| same_url(&env, url))
    {
        credentials::api_key()
    } else if credentials::is_loopback(url) {
        tracing::info!(
            "the judge at {url} gets no API key (a loopback URL that is none of the run's endpoints); if it needs one, name its variable with --judge_key_env NAME"
        );
        None
    } else {
        bail!(
            "which API key does the judge at {url} take? dgen sends OPENAI_API_KEY only to OpenAI, to $OPENAI_BASE_URL and to the run's own endpoints, and this is none of them: name the environment variable holding the judge's key with --judge_key_env NAME (--judge_key_env OPENAI_API_KEY to send that one there)"
        );
    };
    if key.is_none() && !credentials::is_loopback(url) {
        bail!(
            "no API key for the judge at {url}: set OPENAI_API_KEY (or OPENAI_KEY), or put OPENAI_KEY=... in ./.env.local; or name the judge's own with --judge_key_env NAME; or judge on a local model with --local"
        );
    }
    Ok(key)
}

/// Whether two URLs name one endpoint: parsed (default ports and case settled), `localhost`
/// as 127.0.0.1, a trailing `/` aside.
fn same_url(a: &str, b: &str) -> bool {
    let canonical = |url: &str| {
        let trimmed = url.trim_end_matches('/');
        match reqwest::Url::parse(trimmed) {
            Ok(mut parsed) => {
                if parsed.host_str() == Some("localhost") {
                    let _ = parsed.set_host(Some("127.0.0.1"));
                }
                parsed.as_str().trim_end_matches('/').to_string()
            }
            Err(_) => trimmed.to_string(),
        }
    };
    canonical(a) == canonical(b)
}

/// The base URL the store's run recorded, if the API key may go there without being told:
/// a loopback endpoint, `$OPENAI_BASE_URL` or OpenAI's. Anything else is refused, naming the
/// URL, so that a store from elsewhere cannot direct the key to a server of its choosing.
fn trusted_recorded_url(recorded: &str, from_env: Option<&str>) -> Result<String> {
    if credentials::is_loopback(recorded)
        || same_url(recorded, DEFAULT_BASE_URL)
        || from_env.is_some_and(|env| same_url(recorded, env))
    {
        return Ok(recorded.to_string());
    }
    bail!(
        "the store's run called {recorded}, and dgen judge sends an API key there only when told: pass --judge_base_url {recorded} --judge_key_env NAME (the variable holding that endpoint's key) to judge there, or --judge_base_url with another endpoint"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_goes_to_a_recorded_url_only_when_loopback_or_the_user_s_own() {
        for url in [
            "http://127.0.0.1:8080/v1",
            "http://localhost:1234/v1/",
            "http://[::1]:9/v1",
            "https://api.openai.com/v1/",
        ] {
            assert_eq!(trusted_recorded_url(url, None).unwrap(), url);
        }
        let evil = "https://evil.example/v1";
        let refused = trusted_recorded_url(evil, None).unwrap_err().to_string();
        assert!(
            refused.contains("--judge_base_url https://evil.example/v1"),
            "{refused}"
        );
        let refused = trusted_recorded_url(evil, Some("https://other.example/v1")).unwrap_err();
        assert!(refused.to_string().contains(evil), "{refused}");
        assert_eq!(
            trusted_recorded_url(evil, Some("https://evil.example/v1/")).unwrap(),
            evil
        );
        // A loopback-looking name that is not loopback.
        assert!(trusted_recorded_url("http://127.0.0.1.evil.example/v1", None).is_err());
    }

    #[test]
    fn the_run_endpoint_s_key_follows_its_url_however_it_is_spelled() {
        let key = Secret::new("gpu-secret".into());
        let known = [("http://127.0.0.1:8000/v1", Some(&key))];
        for url in [
            "http://localhost:8000/v1",
            "http://127.0.0.1:8000/v1/",
            "HTTP://LOCALHOST:8000/v1",
        ] {
            let got = judge_key(None, url, &known).unwrap();
            assert_eq!(
                got.map(|k| k.expose().to_string()),
                Some("gpu-secret".into()),
                "{url}"
            );
        }
        // Another port is another server: no key.
        assert!(judge_key(None, "http://localhost:8001/v1", &known)
            .unwrap()
            .is_none());
    }
}

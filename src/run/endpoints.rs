//! Where a run sends its requests: `--base_url` (one endpoint, as always), `--endpoint URL`
//! repeated, or `--endpoints FILE`, a TOML list of `[[endpoint]]` tables:
//!
//! ```toml
//! [[endpoint]]
//! url = "http://gpu1:8000/v1"   # required
//! model = "llama-3.1-8b"        # default: --model
//! key_env = "GPU1_API_KEY"      # the environment variable holding its key; default: the run's key
//! weight = 2                    # share of the free room, above 0; default 1
//! max_concurrency = 32          # its ceiling of requests in flight; default: --concurrency, else 16
//! name = "gpu1"                 # in logs and `dgen status`; default: host, port and path
//! ```
//!
//! Keys never come from the file (an inline key would end up in backups and diffs): it names
//! the variable, and the key is read from the environment. Messages about the file never quote
//! its lines, so a key pasted into it by mistake is not echoed.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::llm::credentials;
use crate::llm::{Endpoint, Limits, PoolEndpoint, Secret};
use crate::run::RunConfig;

/// `--base_url`'s default, which `--endpoint`/`--endpoints` replace without a word.
const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// The most requests in flight one endpoint may be given (as `--concurrency`).
const MAX_CONCURRENCY: i64 = crate::llm::MAX_PARALLEL as i64;
/// The highest weight: beyond it a weight only says "always this one", which 1e6 says too.
const MAX_WEIGHT: f64 = 1e6;

const KEYS: &[&str] = &[
    "url",
    "model",
    "key_env",
    "weight",
    "max_concurrency",
    "name",
];

/// One endpoint, settled: everything but the key is safe to print.
#[derive(Debug, Clone)]
pub struct EndpointSpec {
    pub name: String,
    pub url: String,
    pub model: String,
    pub key: Option<Secret>,
    /// Where the key came from, for messages: a variable's name, never its value.
    pub key_source: String,
    pub weight: f64,
    pub max_concurrency: Option<usize>,
}

impl EndpointSpec {
    /// A remote endpoint without a key is refused before any work; loopback ones need none.
    pub fn check_key(&self) -> Result<()> {
        if self.key.is_none() && !credentials::is_loopback(&self.url) {
            bail!(
                "no API key for {}: set {}; loopback endpoints need none",
                self.url,
                self.key_source
            );
        }
        Ok(())
    }
}

/// The run's endpoints from its flags; `model` is the run's model (`--model` or the catalog's).
pub fn resolve(config: &RunConfig, model: &str) -> Result<Vec<EndpointSpec>> {
    let default_key = || {
        (
            credentials::api_key(),
            "OPENAI_API_KEY (or OPENAI_KEY), or put OPENAI_KEY=... in ./.env.local".to_string(),
        )
    };
    let given = config.endpoints.is_some() || !config.endpoint.is_empty();
    let from_env = std::env::var("OPENAI_BASE_URL").is_ok_and(|v| v == config.base_url);
    if given && config.base_url != DEFAULT_BASE_URL && !from_env {
        tracing::warn!(
            "--base_url {} is not called: --endpoint/--endpoints name this run's endpoints (add it as one of them)",
            config.base_url
        );
    }
    let specs = if let Some(file) = &config.endpoints {
        from_file(file, model)?
    } else {
        let urls = if config.endpoint.is_empty() {
            vec![config.base_url.clone()]
        } else {
            config.endpoint.clone()
        };
        urls.into_iter()
            .map(|url| {
                check_url(&url).map_err(|why| anyhow::anyhow!("--endpoint {url}: {why}"))?;
                let (key, key_source) = default_key();
                Ok(EndpointSpec {
                    name: display_name(&url),
                    url,
                    model: model.to_string(),
                    key,
                    key_source,
                    weight: 1.0,
                    max_concurrency: None,
                })
            })
            .collect::<Result<Vec<_>>>()?
    };
    Ok(unique_names(specs))
}

/// What the pool calls: each endpoint with the run's timeout, retries and per-minute limits,
/// and its own ceiling (its `max_concurrency`, else `ceiling`).
pub fn pool_endpoints(
    specs: &[EndpointSpec],
    config: &RunConfig,
    ceiling: usize,
) -> Vec<PoolEndpoint> {
    specs
        .iter()
        .map(|spec| PoolEndpoint {
            name: spec.name.clone(),
            model: spec.model.clone(),
            weight: spec.weight,
            endpoint: Endpoint {
                api_key: spec.key.clone(),
                timeout: config.calls.timeout,
                retry: config.calls.retry,
                limits: Limits {
                    ceiling: spec.max_concurrency.unwrap_or(ceiling),
                    rpm: config.rpm,
                    tpm: config.tpm,
                    latency_backoff: config.latency_backoff.applies_to(&spec.url),
                },
                base_url: spec.url.clone(),
            },
        })
        .collect()
}

/// The label the store records as the run's model: the endpoints' model, or their distinct
/// models joined with `+` (a later run must use the same set).
pub fn model_label(specs: &[EndpointSpec]) -> String {
    let models: BTreeSet<&str> = specs.iter().map(|s| s.model.as_str()).collect();
    models.into_iter().collect::<Vec<_>>().join("+")
}

fn from_file(path: &Path, model: &str) -> Result<Vec<EndpointSpec>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --endpoints {}", path.display()))?;
    let file = path.display();
    let table: toml::Table = toml::from_str(&text).map_err(|e| {
        // The message and the line, never the line's text: it may hold a pasted key.
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
        anyhow::anyhow!(
            "--endpoints {file} is not valid TOML{}: {}",
            line.map_or(String::new(), |l| format!(" (line {l})")),
            e.message().trim()
        )
    })?;
    for key in table.keys() {
        if key != "endpoint" {
            bail!(
                "--endpoints {file}: unknown table or key `{key}`; the file holds [[endpoint]] tables only"
            );
        }
    }
    let Some(list) = table.get("endpoint").and_then(|v| v.as_array()) else {
        bail!(
            "--endpoints {file} names no endpoint; add an [[endpoint]] table with url = \"http://host:port/v1\" for each"
        );
    };
    if list.is_empty() {
        bail!("--endpoints {file} names no endpoint; add an [[endpoint]] table for each");
    }
    list.iter()
        .enumerate()
        .map(|(i, value)| {
            let at = format!("--endpoints {file}, endpoint {}", i + 1);
            let Some(t) = value.as_table() else {
                bail!("{at}: write it as an [[endpoint]] table");
            };
            one(t, &at, model)
        })
        .collect()
}

fn one(t: &toml::Table, at: &str, model: &str) -> Result<EndpointSpec> {
    for key in t.keys() {
        if !KEYS.contains(&key.as_str()) {
            let hint = if key.contains("key") || key.contains("token") || key.contains("secret") {
                " (an API key never goes in the file: put it in an environment variable and name that variable with key_env = \"VAR\")"
            } else {
                ""
            };
            bail!(
                "{at}: unknown key `{key}`{hint}; the keys are {}",
                KEYS.join(", ")
            );
        }
    }
    let text = |key: &str| -> Result<Option<String>> {
        match t.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_string())),
            Some(_) => bail!("{at}: {key} must be a non-empty string"),
        }
    };
    let Some(url) = text("url")? else {
        bail!("{at} has no url; give each [[endpoint]] a url = \"http://host:port/v1\"");
    };
    if let Err(why) = check_url(&url) {
        bail!("{at}: url {why}");
    }
    let weight = match t.get("weight") {
        None => 1.0,
        Some(toml::Value::Float(w)) => *w,
        Some(toml::Value::Integer(w)) => *w as f64,
        Some(_) => bail!("{at}: weight must be a number above 0, e.g. weight = 2"),
    };
    if !(weight.is_finite() && weight > 0.0 && weight <= MAX_WEIGHT) {
        bail!(
            "{at}: weight = {weight} is not allowed; give a number above 0 and at most {MAX_WEIGHT} (its share of the free room: 2 fills it twice as readily as 1)"
        );
    }
    let max_concurrency = match t.get("max_concurrency") {
        None => None,
        Some(toml::Value::Integer(n)) if (1..=MAX_CONCURRENCY).contains(n) => Some(*n as usize),
        Some(_) => bail!(
            "{at}: max_concurrency must be a whole number from 1 to {MAX_CONCURRENCY}, e.g. max_concurrency = 16"
        ),
    };
    let (key, key_source) = match text("key_env")? {
        Some(var) => {
            if !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                bail!(
                    "{at}: key_env must name an environment variable (letters, digits, _), such as key_env = \"GPU1_API_KEY\"; the key itself goes in that variable"
                );
            }
            match std::env::var(&var) {
                Ok(v) if !v.trim().is_empty() => (Some(Secret::new(v.trim().to_string())), var),
                _ if !credentials::shown(&var) => bail!(
                    "{at}: the variable key_env names is not set in the environment (its name is not shown: with lowercase letters it may be a key pasted by mistake); export VAR=<the endpoint's API key> and write key_env = \"VAR\""
                ),
                _ => bail!(
                    "{at}: key_env = \"{var}\", but {var} is not set in the environment; export {var}=<the endpoint's API key>, or remove key_env for an endpoint that needs no key"
                ),
            }
        }
        None => (
            credentials::api_key(),
            "OPENAI_API_KEY (or OPENAI_KEY), or key_env = \"VAR\" for this endpoint".to_string(),
        ),
    };
    Ok(EndpointSpec {
        name: text("name")?.unwrap_or_else(|| display_name(&url)),
        model: text("model")?.unwrap_or_else(|| model.to_string()),
        url,
        key,
        key_source,
        weight,
        max_concurrency,
    })
}

/// An http(s) URL, without credentials in it (they would reach logs and the store).
fn check_url(url: &str) -> std::result::Result<(), String> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| format!("is not a URL ({e}); write it like http://host:port/v1"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("must start with http:// or https://".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(
            "carries credentials; remove them from the URL and put the key in an environment variable (key_env)"
                .into(),
        );
    }
    Ok(())
}

/// Host, port and path: what logs and `dgen status` call an endpoint without a name.
fn display_name(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!(
            "{}{}{}",
            u.host_str().unwrap_or("?"),
            u.port().map_or(String::new(), |p| format!(":{p}")),
            u.path().trim_end_matches('/')
        ),
        Err(_) => url.to_string(),
    }
}

/// Names that repeat get `#2`, `#3`: the store counts per name.
fn unique_names(mut specs: Vec<EndpointSpec>) -> Vec<EndpointSpec> {
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for spec in &mut specs {
        let base = spec.name.clone();
        let mut n = 1;
        while !seen.insert(spec.name.clone()) {
            n += 1;
            spec.name = format!("{base}#{n}");
        }
    }
    specs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_host_port_path_and_unique() {
        assert_eq!(
            display_name("http://127.0.0.1:8000/v1/"),
            "127.0.0.1:8000/v1"
        );
        let spec = |url: &str| EndpointSpec {
            name: display_name(url),
            url: url.into(),
            model: "m".into(),
            key: None,
            key_source: String::new(),
            weight: 1.0,
            max_concurrency: None,
        };
        let names: Vec<String> = unique_names(vec![spec("http://a/v1"), spec("http://a/v1")])
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["a/v1", "a/v1#2"]);
    }

    #[test]
    fn urls_with_credentials_are_refused() {
        assert!(check_url("http://user:pw@host/v1").is_err());
        assert!(check_url("ftp://host/v1").is_err());
        assert!(check_url("https://host/v1").is_ok());
    }
}
